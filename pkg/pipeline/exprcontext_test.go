package pipeline

import (
	"testing"

	"gatehouse.dev/pkg/pipeline/expr"
)

// TestExprContext checks what expressions read of a Request through runCtx (the language
// itself is tested in package expr).
func TestExprContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		expr  string
		setup func(r *Request)
		want  string
	}{
		{name: "request", expr: `@(context.RequestId + "|" + context.Request.IpAddress + "|" + context.Request.Method + "|" + context.Request.Url.Host + context.Request.Url.Path + "|" + context.Timestamp.ToString())`, want: "req-1|10.0.0.1|GET|gw.example/echo|2025-03-01T12:00:00.0000000Z"},
		{name: "subscription", expr: `@(context.Subscription.Id + "|" + context.Subscription.Name + "|" + context.Subscription.Key)`, want: "sub1|Sub One|k1"},
		{name: "absent subscription user product", expr: `@((context.Subscription?.Id ?? "-") + (context.User?.Id ?? "-") + (context.Product?.Name ?? "-"))`, setup: func(r *Request) { r.Subscription, r.User, r.Product = nil, nil, nil }, want: "---"},
		{name: "user product api operation", expr: `@(context.User.Id + context.Product.Id + context.Product.Name + context.Api.Id + context.Api.Name + context.Api.Path + context.Operation.Id + context.Operation.Method)`, want: "u1starterStarter/apis/echoEchoechoonHandshakeGET"},
		{name: "api service url and operation template", expr: `@(context.Api.ServiceUrl + context.Operation.UrlTemplate + context.Operation.Name)`, want: "ws://backend.internal/ws/onHandshake"},
		{name: "deployment", expr: `@(context.Deployment.GatewayId + context.Deployment.Region + context.Deployment.ServiceName)`, want: "gw1eusvc"},
		{name: "headers query variables", expr: `@(context.Request.Headers.GetValueOrDefault("X-A", "") + context.Request.Url.Query.GetValueOrDefault("q", "") + context.Variables["v"])`, setup: func(r *Request) {
			r.Header.Set("X-A", "a")
			r.Query.Set("q", "b")
			r.Variables = map[string]any{"v": 3}
		}, want: "ab3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x, err := expr.CompileText(tc.expr)
			if err != nil {
				t.Fatalf("CompileText(%s): %v", tc.expr, err)
			}
			req := testRequest()
			if tc.setup != nil {
				tc.setup(req)
			}
			got, err := x.Eval(runCtxFor(req))
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if got != tc.want {
				t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
	t.Run("absent subscription is a null reference", func(t *testing.T) {
		t.Parallel()
		x, err := expr.CompileText(`@(context.Subscription.Id)`)
		if err != nil {
			t.Fatal(err)
		}
		req := testRequest()
		req.Subscription = nil
		if _, err := x.Eval(runCtxFor(req)); err == nil || err.Error() != "Object reference not set to an instance of an object." {
			t.Errorf("Eval error = %v, want a null reference", err)
		}
	})
}
