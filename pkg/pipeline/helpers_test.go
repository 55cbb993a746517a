package pipeline

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"gatehouse.dev/pkg/pipeline/ratecount"
	"gatehouse.dev/pkg/policy"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// inboundDoc parses a document whose inbound section holds policies (rawxml, so expressions
// need no escaping).
func inboundDoc(t testing.TB, policies string) *policy.Document {
	t.Helper()
	d, err := policy.Parse("<policies>\n<inbound>\n"+policies+"\n</inbound>\n</policies>", policy.FormatRawXML)
	if err != nil {
		t.Fatalf("parse policy: %v", err)
	}
	return d
}

// testRequest is a handshake from 10.0.0.1 with a subscription.
func testRequest() *Request {
	h := httptest.NewRequest(http.MethodGet, "http://gw.example/echo?x=1", nil)
	return &Request{
		HTTP:         h,
		ClientIP:     netip.MustParseAddr("10.0.0.1"),
		Header:       http.Header{},
		Query:        url.Values{},
		Backend:      &url.URL{Scheme: "ws", Host: "backend.internal", Path: "/ws"},
		API:          APIInfo{ID: "/apis/echo", Name: "Echo", Path: "echo", ServiceURL: "ws://backend.internal/ws"},
		Operation:    OperationInfo{ID: "onHandshake", Name: "onHandshake", Method: "GET", URLTemplate: "/"},
		Product:      &ProductInfo{ID: "starter", Name: "Starter"},
		Subscription: &SubscriptionInfo{ID: "sub1", Name: "Sub One", Key: "k1"},
		User:         &UserInfo{ID: "u1"},
		Deployment:   DeploymentInfo{GatewayID: "gw1", Region: "eu", ServiceName: "svc"},
		RequestID:    "req-1",
		Now:          testNow,
	}
}

// testEnv is an environment with fresh counters on the test clock.
func testEnv() Env {
	return Env{
		Counters: ratecount.NewMemory(ratecount.WithClock(func() time.Time { return testNow })),
		Log:      slog.New(slog.DiscardHandler),
		Now:      func() time.Time { return testNow },
	}
}

// compileInbound compiles one API-scope document.
func compileInbound(t testing.TB, env Env, policies string) *Pipeline {
	t.Helper()
	p, err := Compile(Scopes{API: inboundDoc(t, policies)}, env)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

// runCtxFor makes the evaluation context of req.
func runCtxFor(req *Request) *runCtx {
	return &runCtx{ctx: context.Background(), req: req, now: req.Now, log: slog.New(slog.DiscardHandler)}
}

// hs256 signs claims with key (HS256) and an optional kid.
func hs256(t testing.TB, key []byte, kid string, claims map[string]any) string {
	t.Helper()
	hdr := map[string]any{"alg": "HS256", "typ": "JWT"}
	if kid != "" {
		hdr["kid"] = kid
	}
	signing := segment(t, hdr) + "." + segment(t, claims)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// unsigned returns an "alg":"none" token.
func unsigned(t testing.TB, claims map[string]any) string {
	return segment(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + segment(t, claims) + "."
}
