package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestNodeUsageAuthenticated: a gateway node's usage reaches management's reports
// authenticated: the batch it publishes when it stops names its gateway and carries its node
// key, so management stores it and counts no usage batch as rejected (issue 12).
func TestNodeUsageAuthenticated(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	key := s.subscription(t, "a", "/apis", "active")
	n := s.startNode(t, "usage", nodeOptions{})
	eventually(t, propagation, func() string {
		if st, _, body := handshake(t, n.ws("/chat"), keyHeader(key)); st != http.StatusSwitchingProtocols {
			return fmt.Sprintf("the node answers %d %s", st, body)
		}
		return ""
	})
	// A stopping node publishes what it counted, the minute not yet over included.
	n.stop(t)
	eventually(t, 30*time.Second, func() string {
		var success int64
		if err := s.env.Pool.QueryRow(t.Context(), `SELECT COALESCE(sum(handshakes_success), 0) FROM usage`).Scan(&success); err != nil {
			t.Fatal(err)
		}
		if success == 0 {
			return "no successful handshake stored"
		}
		return ""
	})
	for _, reason := range []string{"unsigned", "forged"} {
		if got := s.rejected(t, "usage", reason); got != 0 {
			t.Errorf("%v usage batches rejected as %s", got, reason)
		}
	}
}
