package e2e

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"gatehouse.dev/management/internal/app"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/management/internal/signing"
)

// TestSigningKeyRotation rotates management's signing key as an operator does ("management
// rotate-signing-key", app.RotateSigningKey, from outside the running management) under a
// running gateway node. The running management signs with the new key once it reads the keys
// again; the node meets a change signed by a key it does not know, drops it, fetches a snapshot
// that lists the key, and enforces the change; its heartbeats keep verifying, so it stays
// listed and the fleet converges; and a node started afterwards follows the new key from its
// first snapshot.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	key := s.subscription(t, "a", "/apis", "active")
	first := s.startNode(t, "first", nodeOptions{})
	s.converge(t, 1)
	old := s.env.Keys.Signer().KeyID()

	id, err := app.RotateSigningKey(t.Context(), app.Config{DatabaseURL: s.env.DBURL, EncryptionKey: mgmttest.EncryptionKey}, nil)
	if err != nil {
		t.Fatalf("rotating the signing key: %v", err)
	}
	if id == old {
		t.Fatalf("the rotation kept key %s", id)
	}
	// Replicas read the keys every signing.RefreshEvery.
	eventually(t, 2*signing.RefreshEvery, func() string {
		if got := s.env.Keys.Signer().KeyID(); got != id {
			return "management still signs with " + got
		}
		return ""
	})

	// The first change signed with the new key: a suspension.
	s.must(t, []int{200}, http.MethodPatch, "/subscriptions/a", map[string]any{"properties": map[string]any{"state": "suspended"}}, "If-Match", "*")
	eventually(t, propagation, func() string {
		if st, _, _ := handshake(t, first.ws("/chat"), keyHeader(key)); st != http.StatusUnauthorized {
			return "the suspended key still answers " + strconv.Itoa(st)
		}
		return ""
	})
	// The node met the key on that change: dropped, then a snapshot.
	if log := first.log.String(); !strings.Contains(log, `"msg":"configuration change dropped","reason":"forged"`) || !strings.Contains(log, "unknown or expired key id") {
		t.Errorf("the node did not drop the change signed by the key it did not know yet:\n%s", log)
	}
	s.converge(t, 1)

	second := s.startNode(t, "second", nodeOptions{})
	s.must(t, []int{200}, http.MethodPatch, "/subscriptions/a", map[string]any{"properties": map[string]any{"state": "active"}}, "If-Match", "*")
	s.converge(t, 2)
	for _, n := range []*node{first, second} {
		if st, _, body := handshake(t, n.ws("/chat"), keyHeader(key)); st != http.StatusSwitchingProtocols {
			t.Errorf("%s after the rotation: %d %s", n.name, st, body)
		}
	}
	if got := s.env.Keys.VerifyKeys(); len(got) != 2 {
		t.Errorf("management lists %d verification keys, want the new and the retired one", len(got))
	}
}
