package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/pkg/configwire"
)

// TestFailStatic checks that a node starts from its cached configuration while management is
// down, and that a node with neither answers 503 (scenario 6).
func TestFailStatic(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	key := s.subscription(t, "all", "/apis", "active")
	token := s.token(t, "primary")
	down := "http://" + closedAddr(t)

	t.Run("restart from cache", func(t *testing.T) {
		t.Parallel()
		first := s.startNode(t, "first", nodeOptions{token: token})
		c, _ := connect(t, first.ws("/chat"), keyHeader(key))
		first.stop(t)
		// Stopping drains: open sessions get 1001 "going away".
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Errorf("open session on the stopped node: %v, want close 1001", err)
		}

		second := s.startNode(t, "from-cache", nodeOptions{token: token, managementURL: down, cacheDir: first.cacheDir})
		_, h := connect(t, second.ws("/chat"), keyHeader(key))
		if h.Path != "/chat" {
			t.Errorf("backend path %q", h.Path)
		}
		st, hdr, body := handshake(t, second.ws("/chat"), keyHeader("wrong"))
		wantGatewayError(t, st, hdr, body, http.StatusUnauthorized,
			"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.")
	})

	// A node restarted from its cache must not bring back access that was revoked before it
	// stopped.
	revokedThenRestarted := func(t *testing.T, name string, waitForCache bool) {
		sub := s.subscription(t, name, "/apis/chat", "active")
		first := s.startNode(t, name+"-first", nodeOptions{token: token})
		s.must(t, []int{200}, http.MethodPatch, "/subscriptions/"+name, map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
		eventually(t, propagation, func() string {
			if st, _, _ := handshake(t, first.ws("/chat"), keyHeader(sub)); st != http.StatusUnauthorized {
				return fmt.Sprintf("suspended subscription: %d, want 401", st)
			}
			return ""
		})
		if waitForCache {
			// Incremental changes reach the cache file after a short delay (5 s by default).
			eventually(t, 10*time.Second, func() string {
				f, err := os.Open(filepath.Join(first.cacheDir, "config.snapshot"))
				if err != nil {
					return "no cache file yet"
				}
				defer f.Close()
				suspended := false
				_, _ = configwire.ReadSnapshot(f, configwire.SnapshotHandler{
					Entity: func(configwire.Entity) error { return nil },
					Subscription: func(s configwire.Subscription) error {
						suspended = suspended || s.Name == name && s.State == "suspended"
						return nil
					},
				})
				if !suspended {
					return "the cache does not hold the suspension yet"
				}
				return ""
			})
		}
		first.stop(t)
		second := s.startNode(t, name+"-second", nodeOptions{token: token, managementURL: down, cacheDir: first.cacheDir})
		st, hdr, body := handshake(t, second.ws("/chat"), keyHeader(sub))
		wantGatewayError(t, st, hdr, body, http.StatusUnauthorized,
			"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.")
	}
	t.Run("restart from cache after incremental changes", func(t *testing.T) {
		t.Parallel()
		revokedThenRestarted(t, "revoked-cached", true)
	})
	t.Run("restart right after a change", func(t *testing.T) {
		t.Parallel()
		revokedThenRestarted(t, "revoked-fresh", false)
	})

	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		mgmt := newTCPProxy(t, strings.TrimPrefix(s.env.URL, "http://"))
		bus := newTCPProxy(t, strings.TrimPrefix(s.env.NATS.ClientURL(), "nats://"))
		n := s.startNode(t, "partitioned", nodeOptions{token: token, managementURL: "http://" + mgmt.addr(),
			env: []string{"NATS_URL=nats://" + bus.addr()}})
		victim := s.subscription(t, "victim", "/apis/chat", "active")
		eventually(t, propagation, func() string {
			if st, _, _ := handshake(t, n.ws("/chat"), keyHeader(victim)); st != http.StatusSwitchingProtocols {
				return fmt.Sprintf("new subscription: %d", st)
			}
			return ""
		})

		mgmt.setUp(false)
		bus.setUp(false)
		s.must(t, []int{200}, http.MethodPatch, "/subscriptions/victim", map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
		s.wsAPI(t, "during", "during", be.wsURL("/during"), nil)
		// This sleep stays: it gives the changes time to reach the node wrongly while it is cut
		// off. A slow machine only makes the checks below less sensitive; it cannot fail them.
		time.Sleep(300 * time.Millisecond)
		// Cut off, the node keeps serving what it has.
		if got := n.readyz(t); got != http.StatusOK {
			t.Errorf("/readyz during the outage: %d, want 200", got)
		}
		connect(t, n.ws("/chat"), keyHeader(key))
		if st, _, _ := handshake(t, n.ws("/during"), keyHeader(key)); st != http.StatusNotFound {
			t.Errorf("an API created during the outage: %d before the outage ends, want 404", st)
		}

		mgmt.setUp(true)
		bus.setUp(true)
		start := time.Now()
		eventually(t, 3*propagation, func() string {
			if st, _, _ := handshake(t, n.ws("/during"), keyHeader(key)); st != http.StatusSwitchingProtocols {
				return fmt.Sprintf("API created during the outage: %d", st)
			}
			if st, _, _ := handshake(t, n.ws("/chat"), keyHeader(victim)); st != http.StatusUnauthorized {
				return fmt.Sprintf("subscription suspended during the outage: %d", st)
			}
			return ""
		})
		t.Logf("converged %v after the outage ended", time.Since(start).Round(time.Millisecond))
	})

	t.Run("started from cache during an outage, then converges", func(t *testing.T) {
		t.Parallel()
		mgmt := newTCPProxy(t, strings.TrimPrefix(s.env.URL, "http://"))
		bus := newTCPProxy(t, strings.TrimPrefix(s.env.NATS.ClientURL(), "nats://"))
		opts := nodeOptions{token: token, managementURL: "http://" + mgmt.addr(), env: []string{"NATS_URL=nats://" + bus.addr()}}
		first := s.startNode(t, "before-outage", opts)
		first.stop(t)

		mgmt.setUp(false)
		bus.setUp(false)
		s.wsAPI(t, "meanwhile", "meanwhile", be.wsURL("/meanwhile"), nil)
		opts.cacheDir = first.cacheDir
		n := s.startNode(t, "during-outage", opts)
		connect(t, n.ws("/chat"), keyHeader(key))
		if st, _, _ := handshake(t, n.ws("/meanwhile"), keyHeader(key)); st != http.StatusNotFound {
			t.Errorf("an API created during the outage: %d before the outage ends, want 404", st)
		}

		mgmt.setUp(true)
		bus.setUp(true)
		start := time.Now()
		eventually(t, 3*propagation, func() string {
			if st, _, _ := handshake(t, n.ws("/meanwhile"), keyHeader(key)); st != http.StatusSwitchingProtocols {
				return fmt.Sprintf("API created during the outage: %d", st)
			}
			return ""
		})
		t.Logf("converged %v after the outage ended", time.Since(start).Round(time.Millisecond))
		// And it follows the change stream from then on.
		s.handshakePolicy(t, "meanwhile", `<policies><inbound><base/><return-response><set-status code="410" reason="Gone"/></return-response></inbound></policies>`)
		eventually(t, propagation, func() string {
			if st, _, _ := handshake(t, n.ws("/meanwhile"), keyHeader(key)); st != http.StatusGone {
				return fmt.Sprintf("policy after the outage: %d", st)
			}
			return ""
		})
	})

	t.Run("no cache, no management", func(t *testing.T) {
		t.Parallel()
		n := s.startNode(t, "empty", nodeOptions{token: token, managementURL: down, noWait: true})
		if got := n.readyz(t); got != http.StatusServiceUnavailable {
			t.Errorf("/readyz %d, want 503", got)
		}
		st, hdr, body := handshake(t, n.ws("/chat"), keyHeader(key))
		if st != http.StatusServiceUnavailable || !strings.Contains(body, `"statusCode":503`) ||
			!strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("handshake: %d %q (Content-Type %q), want 503 with APIM's JSON body", st, body, hdr.Get("Content-Type"))
		}
		resp, err := http.Get(n.http("/status-0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("health probe %d, want 200: the node is alive", resp.StatusCode)
		}
	})
}
