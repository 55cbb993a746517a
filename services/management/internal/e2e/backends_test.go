package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBackendPools runs backend entities through management and a real node (issue 14): a
// priority pool whose first member is down serves every client from the live member, a 3:1
// weighted pool splits handshakes about 3:1, credentials reach the backend, and a circuit
// breaker trips (503 with Retry-After) and closes again after its trip duration.
func TestBackendPools(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	live, heavy, light, flakyBE := newBackend(t, "live", ""), newBackend(t, "heavy", ""), newBackend(t, "light", ""), newBackend(t, "flaky", "")
	flaky := newTCPProxy(t, strings.TrimPrefix(flakyBE.srv.URL, "http://"))
	s.put(t, "/namedValues/cred", map[string]any{"displayName": "cred", "value": "backend-credential-value", "secret": true})
	s.secret("backend-credential-value", "the secret named value cred")
	single := func(name, u string, extra map[string]any) {
		p := map[string]any{"url": u, "protocol": "http"}
		for k, v := range extra {
			p[k] = v
		}
		s.put(t, "/backends/"+name, p)
	}
	member := func(name string, priority, weight int) map[string]any {
		return map[string]any{"id": s.svc + "/backends/" + name, "priority": priority, "weight": weight}
	}
	single("down", "ws://"+closedAddr(t)+"/", nil)
	single("live", live.wsURL("/"), map[string]any{"credentials": map[string]any{"header": map[string]any{"x-cred": []string{"{{cred}}"}}}})
	single("heavy", heavy.wsURL("/"), nil)
	single("light", light.wsURL("/"), nil)
	single("flaky", "ws://"+flaky.addr()+"/", map[string]any{"circuitBreaker": map[string]any{"rules": []any{map[string]any{
		"name": "trip-fast", "tripDuration": "PT2S", "failureCondition": map[string]any{
			"count": 2, "interval": "PT1M", "errorReasons": []string{"Server errors"}}}}}})
	s.put(t, "/backends/failover", map[string]any{"type": "Pool", "pool": map[string]any{"services": []any{member("down", 1, 1), member("live", 2, 1)}}})
	s.put(t, "/backends/split", map[string]any{"type": "Pool", "pool": map[string]any{"services": []any{member("heavy", 0, 3), member("light", 0, 1)}}})
	for _, api := range []string{"failover", "split", "flaky"} {
		s.wsAPI(t, api, api, live.wsURL("/not-used"), nil)
		s.handshakePolicy(t, api, `<policies><inbound><base /><set-backend-service backend-id="`+api+`" /></inbound></policies>`)
	}
	key := s.subscription(t, "pools", "/apis", "active")
	n := s.startNode(t, "gw1", nodeOptions{})
	s.converge(t, 1)
	wantFailures(t, s, 1, "")

	t.Run("priority failover at connect", func(t *testing.T) {
		for range 10 {
			c, h := connect(t, n.ws("/failover"), keyHeader(key))
			c.Close()
			if h.Backend != "live" {
				t.Fatalf("reached %q, want the live member of the pool", h.Backend)
			}
			if got := h.Header.Get("X-Cred"); got != "backend-credential-value" {
				t.Fatalf("the backend got x-cred %q, want the named value's value", got)
			}
		}
	})

	t.Run("weighted split", func(t *testing.T) {
		const total = 200
		heavyCount := 0
		for range total {
			c, h := connect(t, n.ws("/split"), keyHeader(key))
			c.Close()
			if h.Backend == "heavy" {
				heavyCount++
			}
		}
		// 3:1 weights: 75% expected; 60–90% holds with overwhelming probability for 200 draws.
		if share := float64(heavyCount) / total; share < 0.60 || share > 0.90 {
			t.Errorf("heavy (weight 3) got %d of %d handshakes (%.0f%%), want 60–90%%", heavyCount, total, 100*share)
		}
	})

	t.Run("circuit breaker trips and recovers", func(t *testing.T) {
		flaky.setUp(false)
		for i := range 2 {
			if st, _, body := handshake(t, n.ws("/flaky"), keyHeader(key)); st != http.StatusBadGateway {
				t.Fatalf("failure %d: %d %s, want 502 from the unreachable backend", i+1, st, body)
			}
		}
		st, hdr, body := handshake(t, n.ws("/flaky"), keyHeader(key))
		if st != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, `"statusCode":503`) {
			t.Fatalf("with the breaker open: %d Retry-After %q %s, want 503 with Retry-After and the gateway's body", st, hdr.Get("Retry-After"), body)
		}
		flaky.setUp(true)
		eventually(t, 60*time.Second, func() string {
			st, _, body := handshake(t, n.ws("/flaky"), keyHeader(key))
			if st != http.StatusSwitchingProtocols {
				return fmt.Sprintf("handshake %d %s, want 101 once the trip duration passed", st, body)
			}
			return ""
		})
	})
}
