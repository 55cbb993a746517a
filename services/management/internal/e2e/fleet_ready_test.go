package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFleetReadiness checks when a node turns ready (/readyz 200): once it has a configuration
// and counts limits with the fleet, so that a load balancer never sends it traffic it would
// count on its own; or, when NATS is unreachable, GATEWAY_NATS_READY_TIMEOUT after its
// configuration, counting on its own and saying so.
func TestFleetReadiness(t *testing.T) {
	t.Parallel()
	// Each subtest has a management of its own, so that the nodes it lists are its own.
	setup := func(t *testing.T) (*stack, string) {
		s := newStack(t)
		be := newBackend(t, "main", "")
		s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
		s.wsAPI(t, "probe", "probe", be.wsURL("/probe"), nil)
		s.handshakePolicy(t, "probe", `<policies><inbound><base/><limit-connections max="1" per="key" counter-key="probe"/></inbound></policies>`)
		return s, s.subscription(t, "all", "/apis", "active")
	}

	t.Run("ready once it counts with the fleet", func(t *testing.T) {
		t.Parallel()
		s, key := setup(t)
		first := s.startNode(t, "first", nodeOptions{})
		hold, err := dialSession(first.ws("/probe"), keyHeader(key))
		if err != nil {
			t.Fatalf("the only place of the probe on %s: %v", first.name, err)
		}
		defer hold.Close()
		// A node that turned ready but did not yet follow the fleet's connection counts would
		// admit a second session.
		second := s.startNode(t, "second", nodeOptions{noWait: true})
		pollReady(t, second, 2*time.Millisecond)
		status, _, body := handshake(t, second.ws("/probe"), keyHeader(key))
		if status != http.StatusTooManyRequests {
			t.Errorf("first handshake on %s once ready, while %s holds the only place: %d %s, want 429", second.name, first.name, status, body)
		}
		if l := second.log.String(); !strings.Contains(l, "ready: counting rate limits, quotas and connections with the fleet") {
			t.Errorf("%s did not log that it counts with the fleet:\n%s", second.name, l)
		}
	})

	t.Run("NATS down at start", func(t *testing.T) {
		t.Parallel()
		const timeout = 2 * time.Second
		s, key := setup(t)
		bus := newTCPProxy(t, strings.TrimPrefix(s.env.NATS.ClientURL(), "nats://"))
		bus.setUp(false)
		n := s.startNode(t, "no-nats", nodeOptions{noWait: true,
			env: []string{"NATS_URL=nats://" + bus.addr(), "GATEWAY_NATS_READY_TIMEOUT=" + timeout.String()}})
		eventually(t, 15*time.Second, func() string {
			if !strings.Contains(n.log.String(), `"configuration installed from snapshot"`) {
				return n.name + " has no configuration yet"
			}
			return ""
		})
		configured := time.Now()
		readyAfter := pollReady(t, n, 20*time.Millisecond).Sub(configured)
		t.Logf("ready %v after its configuration", readyAfter.Round(time.Millisecond))
		if readyAfter < timeout-200*time.Millisecond || readyAfter > timeout+5*time.Second {
			t.Errorf("ready %v after its configuration, want about GATEWAY_NATS_READY_TIMEOUT=%v", readyAfter, timeout)
		}
		if body := readyzBody(t, n); !strings.Contains(body, "counted on this node only") {
			t.Errorf("/readyz says %q, want it to say limits are counted on this node only", body)
		}
		if l := n.log.String(); !strings.Contains(l, "ready without NATS") {
			t.Errorf("%s did not log that it is ready without NATS:\n%s", n.name, l)
		}
		// The data path does not need NATS.
		c, _ := connect(t, n.ws("/chat"), keyHeader(key))
		c.Close()

		bus.setUp(true)
		eventually(t, 3*propagation, func() string {
			if body := readyzBody(t, n); body != "ready" {
				return fmt.Sprintf("/readyz says %q once NATS is back, want \"ready\"", body)
			}
			v := s.fleet(t, "")
			if live := v.live(); len(live) != 1 || !live[0].Properties.Healthy || live[0].Properties.LastError != "" {
				return fmt.Sprintf("nodes once NATS is back: %+v, want %s live and healthy without error", v.nodes, n.name)
			}
			return ""
		})
		if l := n.log.String(); !strings.Contains(l, "with the fleet again") {
			t.Errorf("%s did not log that it counts with the fleet again:\n%s", n.name, l)
		}
	})
}

// pollReady polls the node's /readyz every interval until it answers 200 (for up to 15 s) and
// returns when it did.
func pollReady(t *testing.T, n *node, interval time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if n.readyz(t) == http.StatusOK {
			return time.Now()
		}
		select {
		case <-n.exited:
			t.Fatalf("gateway %s exited before ready: %v\n%s", n.name, n.err, n.log)
		case <-time.After(interval):
		}
	}
	t.Fatalf("gateway %s not ready within 15 s\n%s", n.name, n.log)
	return time.Time{}
}

// readyzBody is the body of the node's /readyz.
func readyzBody(t *testing.T, n *node) string {
	t.Helper()
	resp, err := http.Get("http://" + n.admin + "/readyz")
	if err != nil {
		t.Fatalf("readyz of %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
