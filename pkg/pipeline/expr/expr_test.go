package expr

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// testContext is a Context over plain values: a handshake from 10.0.0.1 with a subscription.
// A field missing from fields is absent.
type testContext struct {
	fields    map[Field]string
	now       time.Time
	http      *http.Request
	header    http.Header
	query     url.Values
	variables map[string]any
}

func (c *testContext) Field(f Field) (string, bool) {
	s, ok := c.fields[f]
	return s, ok
}
func (c *testContext) Timestamp() time.Time      { return c.now }
func (c *testContext) HTTP() *http.Request       { return c.http }
func (c *testContext) Header() http.Header       { return c.header }
func (c *testContext) Query() url.Values         { return c.query }
func (c *testContext) Variables() map[string]any { return c.variables }

func newTestContext() *testContext {
	return &testContext{
		fields: map[Field]string{
			RequestID: "req-1", RequestIPAddress: "10.0.0.1",
			SubscriptionID: "sub1", SubscriptionName: "Sub One", SubscriptionKey: "k1",
			UserID: "u1", ProductID: "starter", ProductName: "Starter",
			APIID: "/apis/echo", APIName: "Echo", APIPath: "echo", APIServiceURL: "ws://backend.internal/ws",
			OperationID: "onHandshake", OperationName: "onHandshake", OperationMethod: "GET", OperationURLTemplate: "/",
			DeploymentGatewayID: "gw1", DeploymentRegion: "eu", DeploymentServiceName: "svc",
		},
		now:    time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		http:   httptest.NewRequest(http.MethodGet, "http://gw.example/echo?x=1", nil),
		header: http.Header{},
		query:  url.Values{},
	}
}

// noSubscription removes context.Subscription.
func (c *testContext) noSubscription() {
	delete(c.fields, SubscriptionID)
	delete(c.fields, SubscriptionName)
	delete(c.fields, SubscriptionKey)
}

// unsignedJwt makes a token with claims (AsJwt does not check signatures).
func unsignedJwt(t testing.TB, claims map[string]any) string {
	t.Helper()
	seg := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return seg(map[string]any{"alg": "HS256", "typ": "JWT"}) + "." + seg(claims) + ".c2ln"
}

func TestExprEval(t *testing.T) {
	t.Parallel()
	jwtTok := unsignedJwt(t, map[string]any{"sub": "alice", "roles": []any{"a", "b"}, "iss": "https://idp"})
	tests := []struct {
		name  string
		expr  string
		setup func(r *testContext)
		want  string
	}{
		{name: "arithmetic precedence", expr: `@(1 + 2 * 3 - 4 / 2 % 3)`, want: "5"},
		{name: "unary minus and parentheses", expr: `@(-(2 + 3) * 2)`, want: "-10"},
		{name: "concat with int and bool", expr: `@("a" + 1 + true)`, want: "a1True"},
		{name: "int then string concatenation", expr: `@(1 + 2 + "x")`, want: "3x"},
		{name: "null coalescing", expr: `@(null ?? "x")`, want: "x"},
		{name: "ternary", expr: `@(1 < 2 ? "yes" : "no")`, want: "yes"},
		{name: "logic short-circuits", expr: `@(false && context.Variables["missing"] == null)`, want: "False"},
		{name: "not and or", expr: `@(!false || false)`, want: "True"},
		{name: "string equality", expr: `@("a" == "a" && "a" != "b")`, want: "True"},
		{name: "null equality", expr: `@(context.Request.Headers.GetValueOrDefault("X-None") == null)`, want: "True"},
		{name: "relational", expr: `@(3 >= 3 && 2 <= 1 == false && 4 > 1)`, want: "True"},
		{name: "header with default", expr: `@(context.Request.Headers.GetValueOrDefault("X-Tenant", "none"))`, want: "none"},
		{
			name: "header present", expr: `@(context.Request.Headers.GetValueOrDefault("x-tenant", "none"))`,
			setup: func(r *testContext) { r.header.Set("X-Tenant", "Contoso") }, want: "Contoso",
		},
		{
			name: "multi-valued header joined", expr: `@(context.Request.Headers.GetValueOrDefault("X-A", ""))`,
			setup: func(r *testContext) { r.header.Add("X-A", "1"); r.header.Add("X-A", "2") }, want: "1,2",
		},
		{
			name: "header name from expression", expr: `@(context.Request.Headers.GetValueOrDefault("x-" + "a", ""))`,
			setup: func(r *testContext) { r.header.Set("X-A", "v") }, want: "v",
		},
		{
			name: "headers ContainsKey and indexer", expr: `@(context.Request.Headers.ContainsKey("X-A") && context.Request.Headers["X-A"][0] == "v")`,
			setup: func(r *testContext) { r.header.Set("X-A", "v") }, want: "True",
		},
		{
			name: "query", expr: `@(context.Request.Url.Query.GetValueOrDefault("v", "0") + context.Request.Url.Query.ContainsKey("w"))`,
			setup: func(r *testContext) { r.query.Set("v", "2") }, want: "2False",
		},
		{name: "ip address", expr: `@(context.Request.IpAddress)`, want: "10.0.0.1"},
		{name: "method", expr: `@(context.Request.Method)`, want: "GET"},
		{name: "url parts", expr: `@(context.Request.Url.Scheme + "://" + context.Request.Url.Host + ":" + context.Request.Url.Port + context.Request.Url.Path)`, want: "http://gw.example:80/echo"},
		{name: "original url", expr: `@(context.Request.OriginalUrl.Path)`, want: "/echo"},
		{name: "subscription", expr: `@(context.Subscription.Id + "|" + context.Subscription.Name + "|" + context.Subscription.Key)`, want: "sub1|Sub One|k1"},
		{name: "null-conditional without subscription", expr: `@(context.Subscription?.Id ?? "anonymous")`, setup: func(r *testContext) { r.noSubscription() }, want: "anonymous"},
		{name: "user product api operation", expr: `@(context.User.Id + context.Product.Id + context.Product.Name + context.Api.Id + context.Api.Name + context.Api.Path + context.Operation.Id + context.Operation.Method)`, want: "u1starterStarter/apis/echoEchoechoonHandshakeGET"},
		{name: "api service url and operation template", expr: `@(context.Api.ServiceUrl + context.Operation.UrlTemplate + context.Operation.Name)`, want: "ws://backend.internal/ws/onHandshake"},
		{name: "deployment", expr: `@(context.Deployment.GatewayId + context.Deployment.Region + context.Deployment.ServiceName)`, want: "gw1eusvc"},
		{name: "request id", expr: `@(context.RequestId)`, want: "req-1"},
		{name: "timestamp", expr: `@(context.Timestamp.ToString())`, want: "2025-03-01T12:00:00.0000000Z"},
		{name: "variables indexer", expr: `@(context.Variables["n"])`, setup: func(r *testContext) { r.variables = map[string]any{"n": 5} }, want: "5"},
		{name: "variables typed default", expr: `@(context.Variables.GetValueOrDefault<string>("missing", "d"))`, want: "d"},
		{name: "variables typed int", expr: `@(context.Variables.GetValueOrDefault<int>("n") + 1)`, setup: func(r *testContext) { r.variables = map[string]any{"n": 41} }, want: "42"},
		{name: "variables untyped default", expr: `@(context.Variables.GetValueOrDefault("s", "x").ToUpper())`, setup: func(r *testContext) { r.variables = map[string]any{"s": "abc"} }, want: "ABC"},
		{name: "variables contains", expr: `@(context.Variables.ContainsKey("s"))`, want: "False"},
		{name: "cast variable", expr: `@(((string)context.Variables["s"]).Length)`, setup: func(r *testContext) { r.variables = map[string]any{"s": "héllo"} }, want: "5"},
		{name: "object member checked at run time", expr: `@(context.Variables["s"].ToString().Contains("ll"))`, setup: func(r *testContext) { r.variables = map[string]any{"s": "hello"} }, want: "True"},
		{name: "lower upper", expr: `@("AbC".ToLower() + "AbC".ToUpperInvariant())`, want: "abcABC"},
		{name: "contains starts ends", expr: `@("hello".Contains("ell") && "hello".StartsWith("he") && "hello".EndsWith("lo"))`, want: "True"},
		{name: "trim", expr: `@("  x ".Trim() + "|" + " x".TrimStart() + "|" + "x ".TrimEnd())`, want: "x|x|x"},
		{name: "split with char", expr: `@("a,b,,c".Split(',')[1] + "a,b,,c".Split(',').Length)`, want: "b4"},
		{name: "split several separators", expr: `@("a;b c".Split(";", " ").Last())`, want: "c"},
		{name: "substring replace indexof", expr: `@("gatehouse".Substring(4) + "gatehouse".Substring(0, 4).Replace("g", "G") + "gatehouse".IndexOf("house"))`, want: "houseGate4"},
		{name: "string statics", expr: `@(string.IsNullOrEmpty("") && string.IsNullOrWhiteSpace("  ") && !string.IsNullOrEmpty("x"))`, want: "True"},
		{name: "int ToString", expr: `@((7).ToString() + true.ToString())`, want: "7True"},
		{name: "interpolated", expr: `@($"{context.Api.Name}-{1 + 1}-{{x}}")`, want: "Echo-2-{x}"},
		{name: "nested interpolation", expr: `@($"<{$"[{context.Api.Name.ToLower()}]"}>")`, want: "<[echo]>"},
		{name: "verbatim string", expr: `@(@"a\b""c")`, want: `a\b"c`},
		{name: "escapes", expr: `@("\u0041\t\"")`, want: "A\t\""},
		{name: "comments", expr: `@(1 /* one */ + 1 // two
		)`, want: "2"},
		{
			name: "AsJwt on Authorization", expr: `@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims.GetValueOrDefault("sub",""))`,
			setup: func(r *testContext) { r.header.Set("Authorization", "Bearer "+jwtTok) }, want: "alice",
		},
		{name: "AsJwt on garbage is null", expr: `@("not a token".AsJwt() == null)`, want: "True"},
		{
			name: "AsJwt without header", expr: `@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims.GetValueOrDefault("sub","") ?? "none")`,
			want: "none",
		},
		{
			name: "jwt variable cast", expr: `@(((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("sub", "") + ((Jwt)context.Variables["jwt"]).Subject)`,
			setup: func(r *testContext) { r.variables = map[string]any{"jwt": ParseJwt(jwtTok)} }, want: "alicealice",
		},
		{
			name: "jwt claims array", expr: `@(context.Variables.GetValueOrDefault<Jwt>("jwt").Claims.GetValueOrDefault("roles") + context.Variables.GetValueOrDefault<Jwt>("jwt").Claims["roles"].Length)`,
			setup: func(r *testContext) { r.variables = map[string]any{"jwt": ParseJwt(jwtTok)} }, want: "a,b2",
		},
		{
			name: "jwt issuer and algorithm", expr: `@(((Jwt)context.Variables["jwt"]).Issuer + " " + ((Jwt)context.Variables["jwt"]).Algorithm)`,
			setup: func(r *testContext) { r.variables = map[string]any{"jwt": ParseJwt(jwtTok)} }, want: "https://idp HS256",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := Compile(tc.expr, Options{})
			if err != nil {
				t.Fatalf("Compile(%s): %v", tc.expr, err)
			}
			req := newTestContext()
			if tc.setup != nil {
				tc.setup(req)
			}
			v, err := e.root.eval(req)
			if err != nil {
				t.Fatalf("eval: %v", err)
			}
			if got := v.text(); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestExprCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expr    string
		wantMsg string
		wantCol int
	}{
		{`@(context.Request.Foo)`, "Unknown or unsupported member 'Foo' of 'context.Request'", 19},
		{`@(context.Request.Body)`, "'Body' of 'context.Request'", 19},
		{`@{ return 1; }`, "Multi-statement expressions", 1},
		{`  @(1)`[0:2] + "x", "must start with '@('", 3},
		{`@("a" == 1)`, "Operator '==' cannot be applied to operands of type 'string' and 'int'", 7},
		{`@(context.Request)`, "'context.Request' is not a value", 3},
		{`@(1 +)`, "Unexpected ')'", 6},
		{`@(1 + 2`, "Expected ')'", 8},
		{`@("a".Foo())`, "Unknown member 'Foo' of 'string'", 7},
		{`@("a".Claims)`, "'string' does not contain a definition for 'Claims'", 7},
		{`@("a".Length())`, "'Length' is a property", 7},
		{`@("a".ToLower)`, "'ToLower' is a method", 7},
		{`@("a".StartsWith(1))`, "The argument must be of type 'string', not 'int'", 18},
		{`@(context.Response.StatusCode == 200)`, "'context.Response' does not exist", 11},
		{`@(1.5)`, "Only decimal integer literals", 3},
		{`@(foo)`, "Unknown name 'foo'", 3},
		{`@(1) x`, "Unexpected text after the end", 6},
		{`@("abc`, "not closed", 3},
		{`@(!"a")`, "The operand of '!' must be of type 'bool'", 3},
		{`@(1 ? 2 : 3)`, "The condition must be of type 'bool'", 3},
		{`@((int)"a")`, "Cannot convert type 'string' to 'int'", 3},
		{`@("a" < "b")`, "Operator '<' cannot be applied", 7},
		{`@($"{1:N2}")`, "Format specifiers", 7},
		{`@(context.Variables.GetValueOrDefault<Foo>("x"))`, "Unsupported type argument", 39},
		{`@(context.Request.Headers.GetValueOrDefault(1))`, "The argument must be of type 'string'", 45},
		{`@(` + strings.Repeat("(", 200) + `1` + strings.Repeat(")", 200) + `)`, "nested too deeply", 0},
		{`@(99999999999999999999)`, "out of range", 3},
		{`@('')`, "Empty character literal", 3},
		{`@($"{$"{$"{$"{$"{$"{1}"}"}"}"}"}")`, "Interpolated strings are nested too deeply", 0},
	}
	for _, tc := range tests {
		t.Run(tc.expr[:min(len(tc.expr), 40)], func(t *testing.T) {
			t.Parallel()
			_, err := Compile(tc.expr, Options{})
			var xe *Error
			if !errors.As(err, &xe) {
				t.Fatalf("Compile(%s) error = %v, want *Error", tc.expr, err)
			}
			if !strings.Contains(xe.Msg, tc.wantMsg) {
				t.Errorf("message = %q, want it to contain %q", xe.Msg, tc.wantMsg)
			}
			if tc.wantCol != 0 && xe.Column != tc.wantCol {
				t.Errorf("column = %d, want %d (%s)", xe.Column, tc.wantCol, xe.Msg)
			}
		})
	}
}

func TestExprRuntimeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		expr    string
		vars    map[string]any
		noSub   bool
		wantMsg string
	}{
		{name: "member of absent subscription", expr: `@(context.Subscription.Id)`, noSub: true, wantMsg: "Object reference not set"},
		{name: "missing variable", expr: `@(context.Variables["x"])`, wantMsg: "The given key 'x' was not present"},
		{name: "bad cast", expr: `@((int)context.Variables["s"])`, vars: map[string]any{"s": "a"}, wantMsg: "Unable to cast object of type 'string' to type 'int'"},
		{name: "typed get of other type", expr: `@(context.Variables.GetValueOrDefault<bool>("s"))`, vars: map[string]any{"s": "a"}, wantMsg: "Unable to cast"},
		{name: "divide by zero", expr: `@(1 / context.Variables.GetValueOrDefault<int>("zero", 0))`, wantMsg: "divide by zero"},
		{name: "method on null", expr: `@(context.Request.Headers.GetValueOrDefault("X-None").ToLower())`, wantMsg: "Object reference not set"},
		{name: "index out of range", expr: `@("a,b".Split(',')[5])`, wantMsg: "outside the bounds"},
		{name: "substring out of range", expr: `@("abc".Substring(2, 5))`, wantMsg: "Index and length"},
		{name: "member missing on runtime type", expr: `@(context.Variables["n"].Contains("1"))`, vars: map[string]any{"n": 1}, wantMsg: "'int' does not contain a definition for 'Contains'"},
		{name: "response status", expr: `@(context.Response.StatusCode)`, wantMsg: "context.Response is not available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, err := Compile(tc.expr, Options{AllowResponse: true})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			req := newTestContext()
			req.variables = tc.vars
			if tc.noSub {
				req.noSubscription()
			}
			_, err = e.root.eval(req)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("eval error = %v, want it to contain %q", err, tc.wantMsg)
			}
		})
	}
}

func FuzzExpr(f *testing.F) {
	for _, s := range []string{
		`@(1 + 2 * 3)`,
		`@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Claims.GetValueOrDefault("sub",""))`,
		`@(((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("sub",""))`,
		`@($"{context.Api.Name}-{1 + 1}-{{x}}")`,
		`@(context.Variables.GetValueOrDefault<int>("n", 3) > 2 ? "a" : "b")`,
		`@("a,b".Split(',')[1].ToUpper().Substring(0, 1))`,
		`@(@"x""y" + 'c' + null ?? "z")`,
		`@{ return 1; }`,
		`@(context.Subscription?.Id ?? context.Request.IpAddress)`,
		`@(-1 / -1 % 7)`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, src := range []string{s, "@(" + s + ")"} {
			e, err := Compile(src, Options{AllowResponse: true})
			if err != nil {
				var xe *Error
				if !errors.As(err, &xe) {
					t.Fatalf("Compile(%q) error %T, want *Error", src, err)
				}
				continue
			}
			req := newTestContext()
			req.variables = map[string]any{"jwt": ParseJwt(s), "n": 3, "s": s}
			_, _ = e.root.eval(req)
		}
	})
}
