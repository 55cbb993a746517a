package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/pkg/testwait"
)

// TestFleetDrain stops a node with open sessions as an orchestrator does, with SIGTERM and
// GATEWAY_DRAIN_TIMEOUT=4s: /readyz turns 503 at once, new upgrades are refused, the open
// sessions get 1001 "gateway shutting down" spread over the budget rather than all at once,
// and the process exits within the budget.
func TestFleetDrain(t *testing.T) {
	t.Parallel()
	const (
		sessions = 20
		budget   = 4 * time.Second
	)
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	key := s.subscription(t, "all", "/apis", "active")
	n := s.startNode(t, "draining", nodeOptions{env: []string{"GATEWAY_DRAIN_TIMEOUT=" + budget.String()}})
	other := s.startNode(t, "staying", nodeOptions{})
	var open []*watched
	for i := range sessions {
		open = append(open, watchSession(t, n, fmt.Sprint("session ", i), fmt.Sprint("/chat?conn=drain-", i), keyHeader(key)))
	}
	elsewhere := watchSession(t, other, "session on another node", "/chat", keyHeader(key))
	if st := n.readyz(t); st != http.StatusOK {
		t.Fatalf("readyz before SIGTERM: %d", st)
	}

	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	// /readyz answers 503 at once, so load balancers take the node out of rotation: before
	// the drain has closed half of the sessions (an order of events, which no load changes).
	testwait.Until(t, budget, "readyz 503 within the drain budget", func() bool {
		return n.readyz(t) == http.StatusServiceUnavailable
	})
	readyzAfter := time.Since(sent)
	if closed := closedCount(open); closed >= sessions/2 {
		t.Errorf("readyz turned 503 only after %d of %d sessions were closed, want at once", closed, sessions)
	}

	// New upgrades are refused while the open sessions drain: the connection is refused, or
	// answered 503.
	refused := func(when string) {
		c, resp, err := dialer.Dial(n.ws("/chat"), keyHeader(key))
		switch {
		case err == nil:
			c.Close()
			t.Errorf("%s: a new upgrade got 101, want it refused", when)
		case resp != nil && resp.StatusCode != http.StatusServiceUnavailable:
			t.Errorf("%s: a new upgrade got %d, want connection refused or 503", when, resp.StatusCode)
		case resp == nil && !strings.Contains(err.Error(), "connection refused"):
			t.Errorf("%s: a new upgrade failed with %v, want connection refused or 503", when, err)
		}
	}
	refused("right after SIGTERM")
	eventually(t, budget+time.Second, func() string {
		if closed := closedCount(open); closed < sessions/2 {
			return fmt.Sprintf("%d of %d sessions closed, waiting for half", closed, sessions)
		}
		return ""
	})
	refused("half-way through the drain")

	var offsets []time.Duration
	for _, w := range open {
		if !w.wait(budget + time.Second) {
			t.Fatalf("%s: still open %v after SIGTERM", w.label, budget+time.Second)
		}
		if w.code != websocket.CloseGoingAway || w.reason != "gateway shutting down" {
			t.Errorf("%s: %s, want close 1001 \"gateway shutting down\"", w.label, w.describeClose())
		}
		offsets = append(offsets, w.closedAt.Sub(sent))
	}
	if ce := be.closeReceived(t, "drain-0"); ce.Code != websocket.CloseGoingAway {
		t.Errorf("backend received close %d %q, want 1001", ce.Code, ce.Text)
	}
	code := n.waitExit(t, budget+2*time.Second)
	exited := time.Since(sent)

	slices.Sort(offsets)
	spread := offsets[len(offsets)-1] - offsets[0]
	var gaps latencies
	for i := 1; i < len(offsets); i++ {
		gaps = append(gaps, offsets[i]-offsets[i-1])
	}
	t.Logf("SIGTERM → readyz 503 in %v; %d closes from %v to %v (spread %v, gaps %v); exit %d after %v",
		readyzAfter.Round(time.Millisecond), len(offsets), offsets[0].Round(time.Millisecond), offsets[len(offsets)-1].Round(time.Millisecond),
		spread.Round(time.Millisecond), gaps, code, exited.Round(time.Millisecond))
	// The closes are spread over most of the budget, not sent at the same instant.
	if spread < budget/3 {
		t.Errorf("closes spread over %v, want over a good part of the %v budget", spread, budget)
	}
	if last := offsets[len(offsets)-1]; last > budget {
		t.Errorf("last close %v after SIGTERM, beyond the %v budget", last, budget)
	}
	if code != 0 {
		t.Errorf("exit code %d after %v, want 0", code, exited)
	}
	// The other node is not concerned.
	if err := elsewhere.echo("still here", 5*time.Second); err != nil {
		t.Error(err)
	}
}

// closedCount is how many of the sessions have ended.
func closedCount(sessions []*watched) int {
	n := 0
	for _, w := range sessions {
		if w.closed() {
			n++
		}
	}
	return n
}
