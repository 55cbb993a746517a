package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// propagation bounds how long a change may take to reach every node.
const propagation = 5 * time.Second

// TestConfigChanges starts two nodes, checks they serve the same configuration (scenario 5),
// then changes the configuration through management and measures how long each node takes
// to enforce it, without a restart (scenario 4).
func TestConfigChanges(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "first", "first", be.wsURL("/first"), nil)
	keyA := s.subscription(t, "a", "/apis", "active")
	keyB := s.subscription(t, "b", "/apis", "active")
	nodes := []*node{s.startNode(t, "gw1", nodeOptions{}), s.startNode(t, "gw2", nodeOptions{token: s.token(t, "secondary")})}

	status := func(t testing.TB, n *node, path, key string) int {
		st, _, _ := handshake(t, n.ws(path), keyHeader(key))
		return st
	}
	// until waits until every node answers want on path with key, and logs how long it took.
	until := func(t *testing.T, what, path, key string, want int) {
		t.Helper()
		start := time.Now()
		for _, n := range nodes {
			eventually(t, propagation-time.Since(start), func() string {
				if got := status(t, n, path, key); got != want {
					return fmt.Sprintf("%s on %s: handshake %s answered %d, want %d", what, n.name, path, got, want)
				}
				return ""
			})
		}
		t.Logf("%s: enforced on every node %v after management's 2xx", what, time.Since(start).Round(time.Millisecond))
	}

	t.Run("both nodes serve the same configuration", func(t *testing.T) {
		for _, n := range nodes {
			_, h := connect(t, n.ws("/first"), keyHeader(keyA))
			if h.Path != "/first" {
				t.Errorf("%s: backend path %q", n.name, h.Path)
			}
			st, hdr, body := handshake(t, n.ws("/first"), keyHeader("wrong"))
			wantGatewayError(t, st, hdr, body, http.StatusUnauthorized,
				"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.")
		}
	})

	// The steps run in order: each builds on the configuration the previous one left.
	t.Run("API created and linked after start", func(t *testing.T) {
		if got := status(t, nodes[0], "/late", keyA); got != http.StatusNotFound {
			t.Fatalf("before the API exists: %d, want 404", got)
		}
		s.put(t, "/apis/late", map[string]any{"displayName": "Late", "type": "websocket", "serviceUrl": be.wsURL("/late"),
			"path": "late", "protocols": []string{"ws"}})
		s.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/late", nil)
		until(t, "new API", "/late", keyA, http.StatusSwitchingProtocols)
	})

	t.Run("subscription suspended", func(t *testing.T) {
		var revoked, kept []*websocket.Conn
		for _, n := range nodes {
			ca, _ := connect(t, n.ws("/first"), keyHeader(keyA))
			cb, _ := connect(t, n.ws("/first"), keyHeader(keyB))
			revoked, kept = append(revoked, ca), append(kept, cb)
		}
		s.must(t, []int{200}, http.MethodPatch, "/subscriptions/a", map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
		until(t, "suspension", "/first", keyA, http.StatusUnauthorized)
		if got := status(t, nodes[1], "/first", keyB); got != http.StatusSwitchingProtocols {
			t.Errorf("another subscription after the suspension: %d, want 101", got)
		}
		// Live revocation (docs/design.md §4): open sessions of the suspended subscription end with
		// 1008 on every node; the others carry on.
		for i, c := range revoked {
			_ = c.SetReadDeadline(time.Now().Add(propagation))
			if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
				t.Errorf("%s: session of the suspended subscription: %v, want close 1008", nodes[i].name, err)
			}
		}
		for i, c := range kept {
			if err := c.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, data, err := c.ReadMessage(); err != nil || string(data) != "still here" {
				t.Errorf("%s: session of another subscription: %q, %v; want its echo", nodes[i].name, data, err)
			}
		}
	})

	t.Run("subscription reactivated", func(t *testing.T) {
		s.must(t, []int{200}, http.MethodPatch, "/subscriptions/a", map[string]any{"properties": map[string]any{"state": "active"}}, "If-Match", "*")
		until(t, "reactivation", "/first", keyA, http.StatusSwitchingProtocols)
	})

	t.Run("key regenerated", func(t *testing.T) {
		s.must(t, []int{200, 204}, http.MethodPost, "/subscriptions/a/regeneratePrimaryKey", nil)
		until(t, "key regeneration", "/first", keyA, http.StatusUnauthorized)
		keyA = s.subscription(t, "a", "/apis", "active")
		until(t, "the new key", "/first", keyA, http.StatusSwitchingProtocols)
	})

	t.Run("policy changed", func(t *testing.T) {
		s.handshakePolicy(t, "first", `<policies><inbound><base/><ip-filter action="forbid"><address>127.0.0.1</address></ip-filter></inbound></policies>`)
		until(t, "new policy", "/first", keyB, http.StatusForbidden)
		if got := status(t, nodes[0], "/late", keyB); got != http.StatusSwitchingProtocols {
			t.Errorf("an API whose policy did not change: %d, want 101", got)
		}
		s.handshakePolicy(t, "first", `<policies><inbound><base/></inbound></policies>`)
		until(t, "policy relaxed", "/first", keyB, http.StatusSwitchingProtocols)
	})

	t.Run("global policy changed", func(t *testing.T) {
		s.put(t, "/policies/policy", map[string]any{"format": "xml", "value": `<policies><inbound>
			<return-response><set-status code="503" reason="Maintenance"/></return-response></inbound></policies>`})
		until(t, "global policy", "/late", keyB, http.StatusServiceUnavailable)
		s.must(t, []int{200, 204}, http.MethodDelete, "/policies/policy", nil, "If-Match", "*")
		until(t, "global policy removed", "/late", keyB, http.StatusSwitchingProtocols)
	})

	t.Run("API unlinked from the gateway", func(t *testing.T) {
		open, _ := connect(t, nodes[0].ws("/late"), keyHeader(keyB))
		s.must(t, []int{200, 204}, http.MethodDelete, "/gateways/gw/apis/late", nil)
		until(t, "unlink", "/late", keyB, http.StatusNotFound)
		_ = open.SetReadDeadline(time.Now().Add(propagation))
		if _, _, err := open.ReadMessage(); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
			t.Errorf("open session on the unlinked API: %v, want close 1008", err)
		}
		if got := status(t, nodes[1], "/first", keyB); got != http.StatusSwitchingProtocols {
			t.Errorf("the API still linked: %d, want 101", got)
		}
	})

	t.Run("API added to a product", func(t *testing.T) {
		s.put(t, "/products/silver", map[string]any{"displayName": "Silver", "subscriptionRequired": true})
		silver := s.subscription(t, "silver", "/products/silver", "active")
		if got := status(t, nodes[0], "/first", silver); got != http.StatusUnauthorized {
			t.Fatalf("product key before the API is in the product: %d, want 401", got)
		}
		s.must(t, []int{200, 201}, http.MethodPut, "/products/silver/apis/first", nil)
		until(t, "product link", "/first", silver, http.StatusSwitchingProtocols)
		s.put(t, "/products/silver/policies/policy", map[string]any{"format": "xml", "value": `<policies><inbound><base/>
			<check-header name="X-Silver" failed-check-httpcode="403" failed-check-error-message="silver only" ignore-case="true"/></inbound></policies>`})
		until(t, "product policy", "/first", silver, http.StatusForbidden)
		if got := status(t, nodes[1], "/first", keyB); got != http.StatusSwitchingProtocols {
			t.Errorf("a key outside the product after the product policy: %d, want 101", got)
		}
	})

	t.Run("named values changed", func(t *testing.T) {
		s.put(t, "/namedValues/greeting", map[string]any{"displayName": "greeting", "value": "hello"})
		s.put(t, "/namedValues/tenant", map[string]any{"displayName": "tenant", "value": "tenant-secret-1", "secret": true})
		s.secret("tenant-secret-1", "a secret named value")
		s.secret("tenant-secret-2", "a secret named value")
		s.handshakePolicy(t, "first", `<policies><inbound><base/>
			<set-header name="X-Greeting" exists-action="override"><value>{{greeting}}</value></set-header>
			<check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="wrong tenant" ignore-case="false"><value>{{tenant}}</value></check-header>
		</inbound></policies>`)
		withTenant := func(v string) http.Header {
			return http.Header{"Ocp-Apim-Subscription-Key": {keyB}, "X-Tenant": {v}}
		}
		greeting := func(n *node, tenant string) string {
			c, resp, err := dialer.Dial(n.ws("/first"), withTenant(tenant))
			if err != nil {
				return "handshake " + describe(resp)
			}
			defer c.Close()
			var h hello
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err := c.ReadJSON(&h); err != nil {
				return err.Error()
			}
			return h.Header.Get("X-Greeting")
		}
		for _, n := range nodes {
			eventually(t, propagation, func() string {
				if got := greeting(n, "tenant-secret-1"); got != "hello" {
					return n.name + ": X-Greeting " + got
				}
				return ""
			})
		}
		s.put(t, "/namedValues/greeting", map[string]any{"displayName": "greeting", "value": "bonjour"})
		start := time.Now()
		for _, n := range nodes {
			eventually(t, propagation, func() string {
				if got := greeting(n, "tenant-secret-1"); got != "bonjour" {
					return n.name + ": X-Greeting " + got
				}
				return ""
			})
		}
		t.Logf("plain named value: on every node %v after management's 2xx", time.Since(start).Round(time.Millisecond))
		s.put(t, "/namedValues/tenant", map[string]any{"displayName": "tenant", "value": "tenant-secret-2", "secret": true})
		start = time.Now()
		for _, n := range nodes {
			eventually(t, propagation, func() string {
				if got, _, _ := handshake(t, n.ws("/first"), withTenant("tenant-secret-1")); got != http.StatusForbidden {
					return fmt.Sprintf("%s: old secret value answered %d", n.name, got)
				}
				if got := greeting(n, "tenant-secret-2"); got != "bonjour" {
					return n.name + ": new secret value: " + got
				}
				return ""
			})
		}
		t.Logf("secret named value: on every node %v after management's 2xx", time.Since(start).Round(time.Millisecond))
		s.handshakePolicy(t, "first", `<policies><inbound><base/></inbound></policies>`)
		until(t, "policy reset", "/first", keyB, http.StatusSwitchingProtocols)
	})

	t.Run("subscription deleted", func(t *testing.T) {
		s.must(t, []int{200, 204}, http.MethodDelete, "/subscriptions/a", nil, "If-Match", "*")
		until(t, "deletion", "/first", keyA, http.StatusUnauthorized)
	})

	t.Run("API path changed", func(t *testing.T) {
		s.must(t, []int{200}, http.MethodPatch, "/apis/first", map[string]any{"properties": map[string]any{"path": "moved"}}, "If-Match", "*")
		until(t, "new path", "/moved", keyB, http.StatusSwitchingProtocols)
		until(t, "old path gone", "/first", keyB, http.StatusNotFound)
	})

	t.Run("gateway deleted", func(t *testing.T) {
		s.must(t, []int{200, 204}, http.MethodDelete, "/gateways/gw", nil, "If-Match", "*")
		until(t, "gateway deletion", "/moved", keyB, http.StatusNotFound)
	})
}
