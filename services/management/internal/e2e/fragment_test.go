package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestFragmentOnTwoNodes includes a policy fragment in a WebSocket API's onHandshake policy and
// checks that two real nodes enforce it, then that both enforce the fragment's new content
// once it changes (issue 14): the policy itself is never written again.
func TestFragmentOnTwoNodes(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.put(t, "/policyFragments/tenant-check", map[string]any{"format": "xml", "value": `<fragment>
		<check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="Tenant not allowed" ignore-case="true">
			<value>contoso</value>
		</check-header>
	</fragment>`})
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	s.handshakePolicy(t, "chat", `<policies><inbound><base /><include-fragment fragment-id="tenant-check" /></inbound></policies>`)
	key := s.subscription(t, "all", "/apis", "active")
	nodes := s.startNodes(t, "frag", 2, nodeOptions{})
	s.converge(t, 2)

	tenant := func(name string) http.Header {
		h := keyHeader(key)
		h.Set("X-Tenant", name)
		return h
	}
	for _, n := range nodes {
		if st, _, body := handshake(t, n.ws("/chat"), tenant("contoso")); st != http.StatusSwitchingProtocols {
			t.Fatalf("%s: contoso's handshake = %d %s, want 101", n.name, st, body)
		}
		if st, _, body := handshake(t, n.ws("/chat"), tenant("fabrikam")); st != http.StatusForbidden {
			t.Fatalf("%s: fabrikam's handshake = %d %s, want 403 from the fragment", n.name, st, body)
		}
	}

	s.put(t, "/policyFragments/tenant-check", map[string]any{"format": "xml", "value": `<fragment>
		<check-header name="X-Tenant" failed-check-httpcode="401" failed-check-error-message="Tenant not allowed" ignore-case="true">
			<value>fabrikam</value>
		</check-header>
	</fragment>`})
	for _, n := range nodes {
		eventually(t, 30*time.Second, func() string {
			st, _, body := handshake(t, n.ws("/chat"), tenant("fabrikam"))
			if st != http.StatusSwitchingProtocols {
				return fmt.Sprintf("%s: fabrikam's handshake = %d %s, want 101 once the fragment changed", n.name, st, body)
			}
			return ""
		})
		if st, _, body := handshake(t, n.ws("/chat"), tenant("contoso")); st != http.StatusUnauthorized {
			t.Errorf("%s: contoso's handshake = %d %s, want 401 from the changed fragment", n.name, st, body)
		}
	}
	wantFailures(t, s, 2, "")
}
