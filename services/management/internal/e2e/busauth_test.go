package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// busRefused is what a node logs once the bus has refused its reconnections.
const busRefused = "the bus refused this node"

// TestAttackGatewayKeyRegenerationCutsBus: regenerating the key that signed a node's gateway
// token disconnects the node from the bus through management's API alone, and the bus refuses
// it from then on (issue 12). That other gateways keep the bus is busauth's
// TestAttackRevokedGatewayCutOff.
func TestAttackGatewayKeyRegenerationCutsBus(t *testing.T) {
	s := newStack(t)
	victim := s.startNode(t, "victim", nodeOptions{token: s.token(t, "primary")})

	start := time.Now()
	s.must(t, []int{204}, http.MethodPost, "/gateways/gw/regenerateKey", map[string]any{"keyType": "primary"})
	took := eventually(t, 30*time.Second, func() string {
		if !strings.Contains(victim.log.String(), busRefused) {
			return "the node of the regenerated key is still on the bus"
		}
		return ""
	})
	t.Logf("the node of the regenerated key lost the bus %v after the regeneration was requested (%v of it after the answer)", time.Since(start), took)
}
