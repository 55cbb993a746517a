package pipeline

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// policyCase is one request through a pipeline made of policies.
type policyCase struct {
	name     string
	policies string
	setup    func(r *Request)
	want     *Response
	// check inspects the request after a nil response.
	check func(t *testing.T, r *Request)
}

func runPolicyCases(t *testing.T, tests []policyCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := compileInbound(t, testEnv(), tc.policies)
			req := testRequest()
			if tc.setup != nil {
				tc.setup(req)
			}
			got := p.Run(context.Background(), req)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("Run response mismatch (-want +got):\n%s", diff)
			}
			if tc.check != nil {
				tc.check(t, req)
			}
		})
	}
}

func TestCheckHeader(t *testing.T) {
	t.Parallel()
	const withValues = `<check-header name="X-Key" failed-check-httpcode="403" failed-check-error-message="" ignore-case="%s"><value>Alpha</value><value>beta</value></check-header>`
	runPolicyCases(t, []policyCase{
		{
			name:     "present, presence only",
			policies: `<check-header name="X-Key" failed-check-httpcode="401" failed-check-error-message="Not authorized" ignore-case="false" />`,
			setup:    func(r *Request) { r.Header.Set("X-Key", "anything") },
		},
		{
			name:     "missing with configured message",
			policies: `<check-header name="X-Key" failed-check-httpcode="401" failed-check-error-message="Not authorized" ignore-case="false" />`,
			want:     &Response{Status: 401, Message: "Not authorized", Source: "check-header", Reason: "HeaderNotFound"},
		},
		{
			name:     "missing with empty message gives the predefined one",
			policies: `<check-header name="x-key" failed-check-httpcode="401" failed-check-error-message="" ignore-case="false" />`,
			want:     &Response{Status: 401, Message: "Header X-Key was not found in the request. Access denied.", Source: "check-header", Reason: "HeaderNotFound"},
		},
		{
			name:     "listed value",
			policies: strings.Replace(withValues, "%s", "false", 1),
			setup:    func(r *Request) { r.Header.Set("X-Key", "beta") },
		},
		{
			name:     "value not allowed",
			policies: strings.Replace(withValues, "%s", "false", 1),
			setup:    func(r *Request) { r.Header.Set("X-Key", "alpha") },
			want:     &Response{Status: 403, Message: "Header X-Key value of alpha is not allowed. Access denied.", Source: "check-header", Reason: "HeaderValueNotAllowed"},
		},
		{
			name:     "ignore-case matches",
			policies: strings.Replace(withValues, "%s", "true", 1),
			setup:    func(r *Request) { r.Header.Set("X-Key", "ALPHA") },
		},
		{
			name:     "value from an expression",
			policies: `<check-header name="X-Sub" failed-check-httpcode="401" failed-check-error-message="wrong" ignore-case="false"><value>@(context.Subscription.Id)</value></check-header>`,
			setup:    func(r *Request) { r.Header.Set("X-Sub", "sub1") },
		},
	})
}

func TestIPFilter(t *testing.T) {
	t.Parallel()
	const allow = `<ip-filter action="allow"><address>10.0.0.7</address><address-range from="10.0.0.0" to="10.0.0.5" /><address-range from="2001:db8::" to="2001:db8::ff" /></ip-filter>`
	const forbid = `<ip-filter action="forbid"><address>10.0.0.1</address></ip-filter>`
	ip := func(s string) func(*Request) { return func(r *Request) { r.ClientIP = netip.MustParseAddr(s) } }
	notAllowed := func(ip string) *Response {
		return &Response{Status: 403, Message: "Caller IP address " + ip + " is not allowed. Access denied.", Source: "ip-filter", Reason: "CallerIpNotAllowed"}
	}
	runPolicyCases(t, []policyCase{
		{name: "allow: in range", policies: allow, setup: ip("10.0.0.1")},
		{name: "allow: range bound", policies: allow, setup: ip("10.0.0.5")},
		{name: "allow: address", policies: allow, setup: ip("10.0.0.7")},
		{name: "allow: IPv4-mapped IPv6 caller", policies: allow, setup: ip("::ffff:10.0.0.2")},
		{name: "allow: IPv6 range", policies: allow, setup: ip("2001:db8::10")},
		{name: "allow: not listed", policies: allow, setup: ip("10.0.0.6"), want: notAllowed("10.0.0.6")},
		{name: "allow: IPv6 not listed", policies: allow, setup: ip("2001:db8::1:0"), want: notAllowed("2001:db8::1:0")},
		{
			name: "forbid: listed", policies: forbid,
			want: &Response{Status: 403, Message: "Caller IP address is blocked. Access denied.", Source: "ip-filter", Reason: "CallerIpBlocked"},
		},
		{name: "forbid: not listed", policies: forbid, setup: ip("10.0.0.2")},
		{
			name: "unknown caller", policies: allow, setup: func(r *Request) { r.ClientIP = netip.Addr{} },
			want: &Response{Status: 403, Message: "Failed to establish IP address for the caller. Access denied.", Source: "ip-filter", Reason: "FailedToParseCallerIP"},
		},
		{
			name:     "action from an expression",
			policies: `<ip-filter action="@(context.Product.Id == "starter" ? "forbid" : "allow")"><address>10.0.0.1</address></ip-filter>`,
			want:     &Response{Status: 403, Message: "Caller IP address is blocked. Access denied.", Source: "ip-filter", Reason: "CallerIpBlocked"},
		},
	})
}

func TestSetHeader(t *testing.T) {
	t.Parallel()
	header := func(name string, want ...string) func(t *testing.T, r *Request) {
		return func(t *testing.T, r *Request) {
			t.Helper()
			if diff := cmp.Diff(want, r.Header[name]); diff != "" {
				t.Errorf("header %s (-want +got):\n%s", name, diff)
			}
		}
	}
	existing := func(r *Request) { r.Header.Set("X-A", "old") }
	runPolicyCases(t, []policyCase{
		{name: "override is the default", policies: `<set-header name="x-a"><value>new</value></set-header>`, setup: existing, check: header("X-A", "new")},
		{name: "override with several values joins them", policies: `<set-header name="X-A" exists-action="override"><value>1</value><value>2</value></set-header>`, check: header("X-A", "1,2")},
		{name: "some headers keep separate values", policies: `<set-header name="Warning"><value>1</value><value>2</value></set-header>`, check: header("Warning", "1", "2")},
		{name: "skip keeps an existing header", policies: `<set-header name="X-A" exists-action="skip"><value>new</value></set-header>`, setup: existing, check: header("X-A", "old")},
		{name: "skip sets a missing header", policies: `<set-header name="X-A" exists-action="skip"><value>new</value></set-header>`, check: header("X-A", "new")},
		{name: "append", policies: `<set-header name="X-A" exists-action="append"><value>new</value></set-header>`, setup: existing, check: header("X-A", "old", "new")},
		{name: "delete", policies: `<set-header name="X-A" exists-action="delete" />`, setup: existing, check: header("X-A")},
		{
			name:     "expression value",
			policies: `<set-header name="X-Caller"><value>@(context.Subscription.Name + "/" + context.Request.IpAddress)</value></set-header>`,
			check:    header("X-Caller", "Sub One/10.0.0.1"),
		},
		{
			name:     "expression failing at run time",
			policies: `<set-header name="X-V"><value>@(context.Variables["missing"].ToString())</value></set-header>`,
			want:     &Response{Status: 500, Message: "Internal server error", Source: "set-header", Reason: "ExpressionValueEvaluationFailure"},
		},
	})
}

func TestSetQueryParameter(t *testing.T) {
	t.Parallel()
	query := func(want url.Values) func(t *testing.T, r *Request) {
		return func(t *testing.T, r *Request) {
			t.Helper()
			if diff := cmp.Diff(want, r.Query); diff != "" {
				t.Errorf("query (-want +got):\n%s", diff)
			}
		}
	}
	existing := func(r *Request) { r.Query.Set("v", "1") }
	runPolicyCases(t, []policyCase{
		{name: "override", policies: `<set-query-parameter name="v"><value>2</value></set-query-parameter>`, setup: existing, check: query(url.Values{"v": {"2"}})},
		{name: "several values", policies: `<set-query-parameter name="v"><value>2</value><value>3</value></set-query-parameter>`, check: query(url.Values{"v": {"2", "3"}})},
		{name: "skip", policies: `<set-query-parameter name="v" exists-action="skip"><value>2</value></set-query-parameter>`, setup: existing, check: query(url.Values{"v": {"1"}})},
		{name: "append", policies: `<set-query-parameter name="v" exists-action="append"><value>2</value></set-query-parameter>`, setup: existing, check: query(url.Values{"v": {"1", "2"}})},
		{name: "delete", policies: `<set-query-parameter name="v" exists-action="delete" />`, setup: existing, check: query(url.Values{})},
		{
			name:     "expression",
			policies: `<set-query-parameter name="access_token"><value>@(context.Request.Headers.GetValueOrDefault("X-Token", "none"))</value></set-query-parameter>`,
			check:    query(url.Values{"access_token": {"none"}}),
		},
	})
}

func TestSetBackendService(t *testing.T) {
	t.Parallel()
	backend := func(want string) func(t *testing.T, r *Request) {
		return func(t *testing.T, r *Request) {
			t.Helper()
			if got := r.Backend.String(); got != want {
				t.Errorf("Backend = %s, want %s", got, want)
			}
		}
	}
	runPolicyCases(t, []policyCase{
		{name: "literal base-url", policies: `<set-backend-service base-url="wss://other.example/hub" />`, check: backend("wss://other.example/hub")},
		{
			name:     "expression base-url",
			policies: `<set-backend-service base-url="@("ws://" + context.Deployment.Region + ".backend/ws")" />`,
			check:    backend("ws://eu.backend/ws"),
		},
		{
			name:     "expression giving a bad URL",
			policies: `<set-backend-service base-url="@("not a url")" />`,
			want:     &Response{Status: 500, Message: "Internal server error", Source: "set-backend-service", Reason: "ExpressionValueEvaluationFailure"},
		},
	})

	t.Run("backend-id", func(t *testing.T) {
		t.Parallel()
		doc := inboundDoc(t, `<set-backend-service backend-id="hub" />`)
		if _, err := Compile(Scopes{API: doc}, testEnv()); err == nil || !strings.Contains(err.Error(), "backend-id is not supported") {
			t.Errorf("Compile without backends: error = %v, want backend-id is not supported", err)
		}
		env := testEnv()
		env.Backends = map[string]string{"hub": "wss://hub.example/client"}
		p, err := Compile(Scopes{API: doc}, env)
		if err != nil {
			t.Fatalf("Compile: %v", err)
		}
		req := testRequest()
		if r := p.Run(context.Background(), req); r != nil {
			t.Fatalf("Run = %+v", r)
		}
		backend("wss://hub.example/client")(t, req)
	})
}

func TestReturnResponse(t *testing.T) {
	t.Parallel()
	runPolicyCases(t, []policyCase{
		{
			name: "status, headers and body",
			policies: `<return-response>
				<set-status code="401" reason="Unauthorized" />
				<set-header name="WWW-Authenticate" exists-action="override"><value>Bearer error="invalid_token"</value></set-header>
				<set-body>{"error":"@(no expression here)"}</set-body>
			</return-response>`,
			want: &Response{
				Status: 401,
				Header: http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}},
				Body:   []byte(`{"error":"@(no expression here)"}`),
				Source: "return-response",
			},
		},
		{
			name:     "defaults to 200 without a body",
			policies: `<return-response />`,
			want:     &Response{Status: 200, Header: http.Header{}, Body: []byte{}, Source: "return-response"},
		},
		{
			name:     "body from an expression",
			policies: `<return-response><set-status code="403" /><set-body>@("denied for " + context.Subscription.Id)</set-body></return-response>`,
			want:     &Response{Status: 403, Header: http.Header{}, Body: []byte("denied for sub1"), Source: "return-response"},
		},
		{
			name:     "later policies do not run",
			policies: `<return-response><set-status code="204" /></return-response><set-header name="X-After"><value>1</value></set-header>`,
			want:     &Response{Status: 204, Header: http.Header{}, Body: []byte{}, Source: "return-response"},
		},
	})
}

func TestChooseAndSetVariable(t *testing.T) {
	t.Parallel()
	const choose = `
		<set-variable name="tier" value="@(context.Request.Headers.GetValueOrDefault("X-Tier", "free"))" />
		<choose>
			<when condition="@((string)context.Variables["tier"] == "gold")">
				<set-header name="X-Limit"><value>1000</value></set-header>
			</when>
			<when condition="@(context.Variables.GetValueOrDefault<string>("tier", "") == "blocked")">
				<return-response><set-status code="403" /></return-response>
			</when>
			<otherwise>
				<set-header name="X-Limit"><value>10</value></set-header>
			</otherwise>
		</choose>`
	limit := func(want string) func(t *testing.T, r *Request) {
		return func(t *testing.T, r *Request) {
			t.Helper()
			if got := r.Header.Get("X-Limit"); got != want {
				t.Errorf("X-Limit = %q, want %q", got, want)
			}
		}
	}
	runPolicyCases(t, []policyCase{
		{name: "first branch", policies: choose, setup: func(r *Request) { r.Header.Set("X-Tier", "gold") }, check: limit("1000")},
		{
			name: "second branch ends the pipeline", policies: choose, setup: func(r *Request) { r.Header.Set("X-Tier", "blocked") },
			want: &Response{Status: 403, Header: http.Header{}, Body: []byte{}, Source: "return-response"},
		},
		{name: "otherwise", policies: choose, check: limit("10")},
		{
			name:     "set-variable keeps expression types",
			policies: `<set-variable name="n" value="@(40 + 2)" /><set-variable name="b" value="@(1 == 1)" /><set-variable name="s" value="literal" />`,
			check: func(t *testing.T, r *Request) {
				want := map[string]any{"n": 42, "b": true, "s": "literal"}
				if diff := cmp.Diff(want, r.Variables); diff != "" {
					t.Errorf("Variables (-want +got):\n%s", diff)
				}
			},
		},
	})
}

// limitRun is one request of a limit sequence.
type limitRun struct {
	setup func(r *Request)
	want  *Response
}

// runLimitSequence sends the requests in order through one pipeline with a clock that the
// requests may advance.
func runLimitSequence(t *testing.T, policies string, runs []limitRun) {
	t.Helper()
	p := compileInbound(t, testEnv(), policies)
	for i, run := range runs {
		req := testRequest()
		if run.setup != nil {
			run.setup(req)
		}
		got := p.Run(context.Background(), req)
		if diff := cmp.Diff(run.want, got); diff != "" {
			t.Fatalf("request %d: response mismatch (-want +got):\n%s", i+1, diff)
		}
	}
}

func rateLimited(secs string, extra http.Header) *Response {
	h := http.Header{"Retry-After": {secs}}
	for k, v := range extra {
		h[k] = v
	}
	return &Response{Status: 429, Header: h, Message: "Rate limit is exceeded. Try again in " + secs + " seconds.", Source: "rate-limit", Reason: "RateLimitExceeded"}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	t.Run("per subscription", func(t *testing.T) {
		t.Parallel()
		// Two calls at the start of a 60 s bucket: the two-bucket estimate frees one call
		// 90 s later, when half of the previous bucket has slid out.
		runLimitSequence(t, `<rate-limit calls="2" renewal-period="60" />`, []limitRun{
			{}, {}, {want: rateLimited("90", nil)},
			{setup: func(r *Request) { r.Subscription.ID = "sub2" }},
		})
	})
	t.Run("no subscription, no limit", func(t *testing.T) {
		t.Parallel()
		noSub := func(r *Request) { r.Subscription = nil }
		runLimitSequence(t, `<rate-limit calls="1" renewal-period="60" />`, []limitRun{{setup: noSub}, {setup: noSub}, {setup: noSub}})
	})
	t.Run("headers and variables", func(t *testing.T) {
		t.Parallel()
		p := compileInbound(t, testEnv(), `<rate-limit calls="2" renewal-period="10" retry-after-header-name="X-Retry" remaining-calls-header-name="X-Remaining" remaining-calls-variable-name="left" total-calls-header-name="X-Total" />`)
		req := testRequest()
		if r := p.Run(context.Background(), req); r != nil {
			t.Fatalf("first call: %+v", r)
		}
		if diff := cmp.Diff(http.Header{"X-Remaining": {"1"}, "X-Total": {"2"}}, req.ResponseHeader); diff != "" {
			t.Errorf("ResponseHeader (-want +got):\n%s", diff)
		}
		if req.Variables["left"] != 1 {
			t.Errorf("variable left = %v, want 1", req.Variables["left"])
		}
		p.Run(context.Background(), testRequest())
		got := p.Run(context.Background(), testRequest())
		want := &Response{Status: 429, Header: http.Header{"X-Retry": {"15"}, "X-Remaining": {"0"}, "X-Total": {"2"}},
			Message: "Rate limit is exceeded. Try again in 15 seconds.", Source: "rate-limit", Reason: "RateLimitExceeded"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("third call (-want +got):\n%s", diff)
		}
	})
	t.Run("api and operation limits", func(t *testing.T) {
		t.Parallel()
		const pol = `<rate-limit calls="100" renewal-period="60">
			<api id="echo" calls="3" renewal-period="60"><operation name="onHandshake" calls="2" renewal-period="60" /></api>
			<api name="Other" calls="1" renewal-period="60" />
		</rate-limit>`
		otherOp := func(r *Request) { r.Operation.Name, r.Operation.ID = "send", "send" }
		runLimitSequence(t, pol, []limitRun{
			{}, {}, {want: rateLimited("90", nil)}, // the operation's limit; the API's counted 3
			{setup: otherOp, want: rateLimited("80", nil)},
		})
	})
}

func TestRateLimitByKey(t *testing.T) {
	t.Parallel()
	byKey := func(secs string) *Response {
		r := rateLimited(secs, nil)
		r.Source = "rate-limit-by-key"
		return r
	}
	fromIP := func(ip string) func(*Request) {
		return func(r *Request) { r.ClientIP = netip.MustParseAddr(ip) }
	}
	t.Run("per key", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<rate-limit-by-key calls="1" renewal-period="30" counter-key="@(context.Request.IpAddress)" />`, []limitRun{
			{}, {want: byKey("60")}, {setup: fromIP("10.0.0.2")},
		})
	})
	t.Run("increment condition false counts nothing but still checks", func(t *testing.T) {
		t.Parallel()
		const pol = `<rate-limit-by-key calls="1" renewal-period="30" counter-key="k" increment-condition="@(context.Request.Headers.ContainsKey("X-Count"))" />`
		count := func(r *Request) { r.Header.Set("X-Count", "1") }
		runLimitSequence(t, pol, []limitRun{{}, {}, {setup: count}, {want: byKey("60")}})
	})
	t.Run("increment condition on the response counts every call", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<rate-limit-by-key calls="1" renewal-period="30" counter-key="k" increment-condition="@(context.Response.StatusCode == 200)" />`,
			[]limitRun{{}, {want: byKey("60")}})
	})
	t.Run("increment count", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<rate-limit-by-key calls="3" renewal-period="30" counter-key="k" increment-count="2" />`,
			[]limitRun{{}, {want: byKey("45")}})
	})
	t.Run("one counter for every scope", func(t *testing.T) {
		t.Parallel()
		env := testEnv()
		pol := `<rate-limit-by-key calls="2" renewal-period="60" counter-key="@(context.Subscription.Id)" />`
		p, err := Compile(Scopes{Global: inboundDoc(t, pol), API: inboundDoc(t, "<base />"+pol)}, env)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []*Response{nil, nil, byKey("90")} {
			if diff := cmp.Diff(want, p.Run(context.Background(), testRequest())); diff != "" {
				t.Fatalf("request %d (-want +got):\n%s", i+1, diff)
			}
		}
	})
}

func TestQuota(t *testing.T) {
	t.Parallel()
	outOf := func(in, secs string) *Response {
		return &Response{Status: 403, Header: http.Header{"Retry-After": {secs}},
			Message: "Out of call volume quota. Quota will be replenished in " + in + ".", Source: "quota", Reason: "QuotaExceeded"}
	}
	started := func(d time.Duration) func(*Request) {
		return func(r *Request) { r.Subscription.StartDate = testNow.Add(-d) }
	}
	t.Run("fixed periods from the subscription start", func(t *testing.T) {
		t.Parallel()
		s := started(90 * time.Minute)
		runLimitSequence(t, `<quota calls="2" renewal-period="3600" />`, []limitRun{
			{setup: s}, {setup: s}, {setup: s, want: outOf("00:30:00", "1800")},
		})
	})
	t.Run("days in the time span", func(t *testing.T) {
		t.Parallel()
		s := started(time.Hour)
		runLimitSequence(t, `<quota calls="1" renewal-period="P2D" />`, []limitRun{{setup: s}, {setup: s, want: outOf("1.23:00:00", "169200")}})
	})
	t.Run("forever", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<quota calls="1" renewal-period="0" />`, []limitRun{{},
			{want: &Response{Status: 403, Message: "Out of call volume quota.", Source: "quota", Reason: "QuotaExceeded"}}})
	})
	t.Run("bandwidth only is not enforced", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<quota bandwidth="1" renewal-period="3600" />`, []limitRun{{}, {}, {}})
	})
	t.Run("api limit", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<quota calls="10" renewal-period="3600"><api name="Echo" calls="1" renewal-period="60" /></quota>`,
			[]limitRun{{}, {want: outOf("00:01:00", "60")}})
	})
	t.Run("by key", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<quota-by-key calls="1" renewal-period="300" counter-key="@(context.Request.IpAddress)" />`, []limitRun{
			{}, {want: outOf("00:05:00", "300")}, {setup: func(r *Request) { r.ClientIP = netip.MustParseAddr("10.9.9.9") }},
		})
	})
	t.Run("by key with first period start", func(t *testing.T) {
		t.Parallel()
		runLimitSequence(t, `<quota-by-key calls="1" renewal-period="300" counter-key="k" first-period-start="2025-03-01T11:58:00Z" />`,
			[]limitRun{{}, {want: outOf("00:03:00", "180")}})
	})
}
