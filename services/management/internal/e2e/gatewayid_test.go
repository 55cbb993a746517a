package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDeploymentGatewayID checks that a policy sees, as context.Deployment.GatewayId, the name
// of the gateway resource whose token the node runs with (APIM: "returns 'managed' for managed
// gateways", and the self-hosted gateway's resource name otherwise): two nodes of two gateway
// resources serving one API each tell the backend their own.
func TestDeploymentGatewayID(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	s.handshakePolicy(t, "chat", `<policies><inbound><base/>`+
		`<set-header name="X-Gw" exists-action="override"><value>@(context.Deployment.GatewayId)</value></set-header>`+
		`</inbound></policies>`)
	s.put(t, "/gateways/edge", map[string]any{"locationData": map[string]any{"name": "edge"}})
	s.must(t, []int{200, 201}, http.MethodPut, "/gateways/edge/apis/chat", nil)
	r := s.must(t, []int{200}, http.MethodPost, "/gateways/edge/generateToken",
		map[string]any{"keyType": "primary", "expiry": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)})
	edgeToken, _ := r.JSON()["value"].(string)
	if edgeToken == "" {
		t.Fatalf("generateToken: %s", r.Body)
	}
	s.secret(edgeToken[strings.LastIndexByte(edgeToken, '&')+1:], "the signature of a gateway token")
	key := s.subscription(t, "all", "/apis", "active")

	for _, tc := range []struct{ gateway, token string }{
		{"gw", ""}, // the stack's gateway resource, with a token of its own
		{"edge", edgeToken},
	} {
		t.Run(tc.gateway, func(t *testing.T) {
			t.Parallel()
			n := s.startNode(t, tc.gateway, nodeOptions{token: tc.token})
			_, h := connect(t, n.ws("/chat"), keyHeader(key))
			if got := h.Header.Get("X-Gw"); got != tc.gateway {
				t.Errorf("the backend saw X-Gw %q, want the gateway resource %q", got, tc.gateway)
			}
		})
	}
}
