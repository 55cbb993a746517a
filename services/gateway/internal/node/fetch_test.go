package node_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/node"
	"gatehouse.dev/pkg/testwait"
)

// TestAttackPolicyFetchEgress: the keys validate-jwt fetches (openid-config) come through the
// node's egress dialer, as backends do. With the identity provider's address allowed, a token
// it signed opens a session; with it denied (GATEWAY_EGRESS_DENY), the node never connects to
// it and the token is refused (issue 12: a policy must not reach metadata or the node's own
// listeners either).
func TestAttackPolicyFetchEgress(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	var fetches atomic.Int32
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":%q}]}`, base64.RawURLEncoding.EncodeToString(secret))
	}))
	t.Cleanup(idp.Close)
	policy := fmt.Sprintf(`<policies><inbound><validate-jwt header-name="X-Token"><openid-config url="%s/jwks"/></validate-jwt></inbound></policies>`, idp.URL)
	token := hs256(secret, fmt.Sprintf(`{"sub":"u1","exp":%d}`, time.Now().Add(time.Hour).Unix()))
	_, idpPort, _ := net.SplitHostPort(idp.Listener.Addr().String())

	for _, tc := range []struct {
		name, deny string
		want       int
		fetched    bool
	}{
		{"allowed", "none", http.StatusSwitchingProtocols, true},
		{"denied", "127.0.0.0/8:" + idpPort, http.StatusUnauthorized, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fetches.Load()
			mgmt := startManagementWith(t, "nats://127.0.0.1:1", startBackend(t), policy)
			n, err := node.New(node.Config{Token: "gw1&202601010000&sig", ManagementURL: mgmt, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
				CacheDir: t.TempDir(), EgressDeny: tc.deny}, slog.New(slog.NewJSONHandler(t.Output(), nil)))
			if err != nil {
				t.Fatal(err)
			}
			runNode(t, n)
			var status int
			testwait.Until(t, 30*time.Second, "the configuration installed", func() bool {
				status = upgradeStatus(t, n, token)
				return status != http.StatusServiceUnavailable
			})
			if status != tc.want {
				t.Errorf("upgrade with a token the identity provider signed: %d, want %d", status, tc.want)
			}
			if fetched := fetches.Load() > before; fetched != tc.fetched {
				t.Errorf("the node fetched the keys: %v, want %v", fetched, tc.fetched)
			}
		})
	}
}

// runNode runs n until the test ends, then waits for Run to return.
func runNode(t *testing.T, n *node.Node) {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- n.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// hs256 is a JWT of claims signed with HS256 under key id k1.
func hs256(secret []byte, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"HS256","typ":"JWT","kid":"k1"}`)) + "." + enc([]byte(claims))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + enc(mac.Sum(nil))
}

// upgradeStatus is the status of a WebSocket upgrade to chat carrying token.
func upgradeStatus(t *testing.T, n *node.Node, token string) int {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+n.TrafficAddr().String()+"/chat", http.Header{"X-Token": {token}})
	if c != nil {
		c.Close()
	}
	if resp == nil {
		t.Fatalf("upgrade: %v", err)
	}
	return resp.StatusCode
}
