package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/policy"
)

// mark is a policy that appends v to the X-Order header, to observe the order policies run in.
func mark(v string) string {
	return `<set-header name="X-Order" exists-action="append"><value>` + v + `</value></set-header>`
}

func TestCompose(t *testing.T) {
	t.Parallel()
	parse := func(s string) *policy.Document {
		if s == "" {
			return nil
		}
		d, err := policy.Parse(s, policy.FormatRawXML)
		if err != nil {
			t.Fatalf("parse %s: %v", s, err)
		}
		return d
	}
	in := func(policies string) string { return "<policies><inbound>" + policies + "</inbound></policies>" }
	tests := []struct {
		name                        string
		global, product, api, opDoc string
		want                        []string
		wantSkipped                 []string
	}{
		{
			name:    "base inlines the parent at its position, narrowest first",
			global:  in(mark("g") + "<base/>"),
			product: in(mark("p") + "<base/>"),
			api:     in("<base/>" + mark("a")),
			opDoc:   in(mark("o1") + "<base/>" + mark("o2")),
			want:    []string{"o1", "p", "g", "a", "o2"},
		},
		{
			name:    "a section without base stops inheritance",
			global:  in(mark("g")),
			product: in(mark("p") + "<base/>"),
			api:     in(mark("a")),
			opDoc:   in("<base/>" + mark("o")),
			want:    []string{"a", "o"},
		},
		{
			name:   "absent scopes are skipped",
			global: in(mark("g")),
			api:    in("<base/>" + mark("a")),
			want:   []string{"g", "a"},
		},
		{
			name:    "a document without inbound inherits",
			global:  in(mark("g")),
			product: "<policies><outbound/></policies>",
			opDoc:   in(mark("o") + "<base/>"),
			want:    []string{"o", "g"},
		},
		{
			name:    "an empty inbound section inherits nothing",
			global:  in(mark("g")),
			product: "<policies><inbound/></policies>",
			opDoc:   in("<base/>" + mark("o")),
			want:    []string{"o"},
		},
		{
			name:        "unsupported policies are skipped, also inside choose",
			global:      in(`<cors><allowed-origins><origin>*</origin></allowed-origins></cors>` + mark("g")),
			product:     in(`<base/><choose><when condition="@(true)"><mock-response status-code="200" />` + mark("p") + `</when></choose>`),
			want:        []string{"g", "p"},
			wantSkipped: []string{"cors", "mock-response"},
		},
		{
			name:   "no scopes",
			want:   nil,
			global: "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := Compile(Scopes{Global: parse(tc.global), Product: parse(tc.product), API: parse(tc.api), Operation: parse(tc.opDoc)}, testEnv())
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			req := testRequest()
			if r := p.Run(context.Background(), req); r != nil {
				t.Fatalf("Run = %+v", r)
			}
			if diff := cmp.Diff(tc.want, req.Header["X-Order"]); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSkipped, p.Skipped()); diff != "" {
				t.Errorf("Skipped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFirstRejectionWins(t *testing.T) {
	t.Parallel()
	p := compileInbound(t, testEnv(), `
		<check-header name="X-A" failed-check-httpcode="401" failed-check-error-message="first" ignore-case="false" />
		<check-header name="X-B" failed-check-httpcode="403" failed-check-error-message="second" ignore-case="false" />`)
	got := p.Run(context.Background(), testRequest())
	want := &Response{Status: 401, Message: "first", Source: "check-header", Reason: "HeaderNotFound"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Run (-want +got):\n%s", diff)
	}
}

func TestNamedValues(t *testing.T) {
	t.Parallel()
	env := testEnv()
	env.NamedValues = map[string]string{
		"secret-key": "s3cr3t",
		"limit":      "1",
		"caller":     "@(context.Subscription.Id)",
		"Display":    "by display name",
	}
	p, err := Compile(Scopes{
		Global: inboundDoc(t, `<cors><allowed-origins><origin>{{not-defined-but-skipped}}</origin></allowed-origins></cors>`),
		API: inboundDoc(t, `<base/>
			<set-header name="X-Key"><value>{{Secret-Key}}</value></set-header>
			<set-header name="X-Caller"><value>{{caller}}</value></set-header>
			<set-header name="X-Display"><value>{{Display}}</value></set-header>
			<rate-limit calls="{{limit}}" renewal-period="60" />`),
	}, env)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	req := testRequest()
	if r := p.Run(context.Background(), req); r != nil {
		t.Fatalf("first Run = %+v", r)
	}
	for name, want := range map[string]string{"X-Key": "s3cr3t", "X-Caller": "sub1", "X-Display": "by display name"} {
		if got := req.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if r := p.Run(context.Background(), testRequest()); r == nil || r.Status != 429 {
		t.Errorf("second Run = %+v, want 429 from calls={{limit}}=1", r)
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policies string
		env      func(*Env)
		want     []string // substrings of the error
	}{
		{
			name:     "missing named value",
			policies: `<set-header name="X"><value>{{nope}}</value></set-header>`,
			want:     []string{"api:echo inbound: set-header on line 3, column 1", "named value 'nope' is not defined"},
		},
		{
			name:     "named value that breaks validation",
			policies: `<rate-limit calls="{{n}}" renewal-period="60" />`,
			env:      func(e *Env) { e.NamedValues = map[string]string{"n": "many"} },
			want:     []string{"rate-limit on line 3", "after named value substitution", "'calls'"},
		},
		{
			name:     "unknown expression member",
			policies: "<set-variable name=\"v\" value=\"x\" />\n<set-header name=\"X\"><value>@(context.Foo)</value></set-header>",
			want:     []string{"set-header on line 4, column 1", "expression error at column 11", "'Foo'"},
		},
		{
			name:     "multi-statement expression",
			policies: `<set-variable name="v" value="@{ return 1; }" />`,
			want:     []string{"set-variable on line 3", "Multi-statement"},
		},
		{
			name:     "nested policy names itself",
			policies: `<choose><when condition="@(true)"><set-backend-service backend-id="x" /></when></choose>`,
			want:     []string{"set-backend-service on line 3, column 35", "backend-id is not supported"},
		},
		{
			name:     "choose condition must be a bool",
			policies: `<choose><when condition="@(&quot;yes&quot;)"><set-variable name="a" value="b" /></when></choose>`,
			want:     []string{"choose on line 3", "when[1]: condition: the expression must give a bool, not 'string'"},
		},
		{
			name:     "limits need counters",
			policies: `<rate-limit calls="1" renewal-period="1" />`,
			env:      func(e *Env) { e.Counters = nil },
			want:     []string{"rate-limit on line 3", "Env.Counters is nil"},
		},
		{
			name:     "openid-config needs a key source",
			policies: `<validate-jwt header-name="Authorization"><openid-config url="https://idp.example/.well-known/openid-configuration" /></validate-jwt>`,
			want:     []string{"validate-jwt on line 3", "Env.Keys is nil"},
		},
		{
			name:     "certificate keys",
			policies: `<validate-jwt header-name="Authorization"><issuer-signing-keys><key certificate-id="c" /></issuer-signing-keys></validate-jwt>`,
			want:     []string{"certificate-id keys are not supported"},
		},
		{
			name:     "liquid body",
			policies: `<return-response><set-body template="liquid">{{body.x}}</set-body></return-response>`,
			env:      func(e *Env) { e.NamedValues = map[string]string{"body.x": "v"} },
			want:     []string{"Liquid templates are not supported"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := policy.Parse("<policies>\n<inbound>\n"+tc.policies+"\n</inbound>\n</policies>", policy.FormatXML)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			env := testEnv()
			if tc.env != nil {
				tc.env(&env)
			}
			_, err = Compile(Scopes{API: doc, IDs: ScopeIDs{API: "echo"}}, env)
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("Compile error = %v, want *CompileError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestCounterIdentity(t *testing.T) {
	t.Parallel()
	env := testEnv()
	product := inboundDoc(t, `<rate-limit calls="1" renewal-period="60" />`)
	api := inboundDoc(t, `<base/>`)
	compile := func(productID, apiID string) *Pipeline {
		p, err := Compile(Scopes{Product: product, API: api, IDs: ScopeIDs{Product: productID, API: apiID}}, env)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(p *Pipeline) int {
		if r := p.Run(context.Background(), testRequest()); r != nil {
			return r.Status
		}
		return 200
	}
	starterEcho, starterChat, proChat := compile("starter", "echo"), compile("starter", "chat"), compile("pro", "chat")
	if got := run(starterEcho); got != 200 {
		t.Fatalf("first call = %d", got)
	}
	if got := run(starterChat); got != 429 {
		t.Errorf("same product, other API = %d, want 429 (one counter per product policy)", got)
	}
	if got := run(proChat); got != 200 {
		t.Errorf("other product = %d, want 200 (its own counter)", got)
	}

	// A policy with an id keeps its counter when it moves within its section.
	before := compileWith(t, env, `<rate-limit id="rl" calls="1" renewal-period="60" />`)
	after := compileWith(t, env, `<set-variable name="x" value="y" /><rate-limit id="rl" calls="1" renewal-period="60" />`)
	if got := run(before); got != 200 {
		t.Fatalf("first call = %d", got)
	}
	if got := run(after); got != 429 {
		t.Errorf("after the policy moved = %d, want 429 (same counter)", got)
	}
}

func compileWith(t *testing.T, env Env, policies string) *Pipeline {
	t.Helper()
	p, err := Compile(Scopes{API: inboundDoc(t, policies), IDs: ScopeIDs{API: "moved"}}, env)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCompilersMatchRegistry checks that every element with a compiler is one pkg/policy
// decodes to a typed policy: a compiler for an unsupported or unknown name would never run.
func TestCompilersMatchRegistry(t *testing.T) {
	t.Parallel()
	b := &builder{reg: policy.NewRegistry()}
	for name := range compilers {
		if b.unsupported(name) {
			t.Errorf("%s has a compiler but pkg/policy decodes it as unsupported", name)
		}
		if _, err := b.reg.Decode(&policy.Element{Name: name}); err != nil && strings.Contains(err.Error(), "Unknown policy") {
			t.Errorf("%s has a compiler but pkg/policy does not know it", name)
		}
	}
}
