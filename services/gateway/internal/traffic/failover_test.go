package traffic

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// TestFailoverSkipsMemberOpenedMeanwhile serves a WebSocket API through a pool of backend a
// (priority 1) and b (priority 2), each with a breaker opening at its first 5xx. While the
// handshake is at a, b's breaker opens (other requests failed there); a refuses with 503. The
// handshake must not go on to b, whose circuit is open now: the client gets a's 503 and b
// sees no request.
func TestFailoverSkipsMemberOpenedMeanwhile(t *testing.T) {
	t.Parallel()
	var h *Handler
	var cfg atomic.Pointer[compiled.Config]
	var atB atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := cfg.Load().Backend("b")
		h.breakers.For(b.Name, b.Breaker).Record(true, 0)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(a.Close)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atB.Add(1)
		up := websocket.Upgrader{}
		if c, err := up.Upgrade(w, r, nil); err == nil {
			c.Close()
		}
	}))
	t.Cleanup(b.Close)

	breakerRule := map[string]any{"rules": []map[string]any{{"name": "r", "tripDuration": "PT1H",
		"failureCondition": map[string]any{"count": 1, "interval": "PT1M", "statusCodeRanges": []map[string]any{{"min": 500, "max": 599}}}}}}
	arm := "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc/backends/"
	snap := configwire.Snapshot{ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 1, Entities: []configwire.Entity{
		entity(t, configwire.KindGateway, "", "gw1", map[string]any{}),
		entity(t, configwire.KindBackend, "", "a", map[string]any{"url": "ws" + strings.TrimPrefix(a.URL, "http"), "protocol": "http",
			"type": "Single", "circuitBreaker": breakerRule}),
		entity(t, configwire.KindBackend, "", "b", map[string]any{"url": "ws" + strings.TrimPrefix(b.URL, "http"), "protocol": "http",
			"type": "Single", "circuitBreaker": breakerRule}),
		entity(t, configwire.KindBackend, "", "pool", map[string]any{"type": "Pool", "pool": map[string]any{"services": []map[string]any{
			{"id": arm + "a", "priority": 1}, {"id": arm + "b", "priority": 2}}}}),
		entity(t, configwire.KindAPI, "", "echo", map[string]any{"displayName": "echo", "path": "echo", "type": "websocket",
			"serviceUrl": "ws://127.0.0.1:1", "protocols": []string{"ws"}, "subscriptionRequired": false}),
		entity(t, configwire.KindOperation, "apis/echo", "onHandshake", map[string]any{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
		entity(t, configwire.KindPolicy, "apis/echo", "policy", map[string]any{"format": "xml",
			"value": `<policies><inbound><base /><set-backend-service backend-id="pool" /></inbound></policies>`}),
		{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "echo", Revision: 1},
	}}
	c, err := compiled.NewBuilder(pipeline.Env{}).Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failures(); len(f) > 0 {
		t.Fatalf("the configuration has failures: %+v", f)
	}
	cfg.Store(c)
	h = New(&cfg, Options{})
	gw := httptest.NewServer(h)
	t.Cleanup(gw.Close)

	conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(gw.URL, "http")+"/echo", nil)
	if err == nil {
		conn.Close()
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("the handshake answered %v (%v), want a's 503", resp, err)
	}
	if n := atB.Load(); n != 0 {
		t.Errorf("b, whose circuit opened during the handshake, got %d requests", n)
	}
}
