package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestBadToken checks that a node whose token management refuses exits at once, saying why
// (scenario 7).
func TestBadToken(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	good := s.token(t, "primary")
	id := good[:strings.IndexByte(good, '&')]
	var keys struct{ Primary, Secondary string }
	keysResp := s.must(t, []int{200}, http.MethodPost, "/gateways/gw/listKeys", nil)
	if err := json.Unmarshal(keysResp.Body, &keys); err != nil {
		t.Fatal(err)
	}
	s.secret(keys.Primary, "the gateway's primary key")
	s.secret(keys.Secondary, "the gateway's secondary key")
	// forge signs a token as generateToken does (APIM's documented format), with any expiry.
	forge := func(expiry time.Time) string {
		exp := expiry.UTC().Format("200601021504")
		m := hmac.New(sha512.New, []byte(keys.Secondary))
		fmt.Fprintf(m, "%s\n%s", id, exp)
		return id + "&" + exp + "&" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	// A forged token with a future expiry works: only the expiry makes the expired one bad.
	if r := s.env.Do(t, http.MethodGet, "/gatehouse/gateway/v1/config", nil, "Authorization", "GatewayKey "+forge(time.Now().Add(time.Hour))); r.Status != http.StatusOK {
		t.Fatalf("a forged valid token: %d %s", r.Status, r.Body)
	}
	regenerated := s.token(t, "primary")
	s.must(t, []int{200, 204}, http.MethodPost, "/gateways/gw/regenerateKey", map[string]any{"keyType": "primary"})

	for _, tc := range []struct{ name, token string }{
		{"garbage", "not-a-token"},
		{"tampered signature", good[:len(good)-6] + "AAAAA="},
		{"expired", forge(time.Now().Add(-time.Hour))},
		{"signed with a regenerated key", regenerated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			n := s.startNode(t, tc.name, nodeOptions{token: tc.token, noListen: true})
			code := n.waitExit(t, 30*time.Second)
			took := time.Since(start)
			if code == 0 {
				t.Errorf("exit code 0, want non-zero")
			}
			// Twice what an idle machine needs to start a node under -race: a node that kept
			// retrying its token would take longer; one that never gave up fails waitExit.
			if took > 10*time.Second {
				t.Errorf("exited after %v, want within 10 s", took)
			}
			if log := n.log.String(); !strings.Contains(log, "token") {
				t.Errorf("stderr does not mention the token:\n%s", log)
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		out, code := runGateway(t, "GATEWAY_TOKEN=", "MANAGEMENT_URL="+s.env.URL)
		if code == 0 || !strings.Contains(out, "GATEWAY_TOKEN") {
			t.Errorf("exit %d, output %q; want non-zero and a message naming GATEWAY_TOKEN", code, out)
		}
	})
}

// TestNodeLimits checks the node-wide WebSocket limits an operator sets (docs/design.md §3,
// step 9: defaults from GATEWAY_MAX_MESSAGE_BYTES and GATEWAY_IDLE_TIMEOUT).
func TestNodeLimits(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	// A backend that accepts connections and never answers the upgrade.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hole.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	s.wsAPI(t, "slow", "slow", "ws://"+hole.Addr().String()+"/", nil)
	key := s.subscription(t, "all", "/apis", "active")
	n := s.startNode(t, "limited", nodeOptions{env: []string{"GATEWAY_MAX_MESSAGE_BYTES=4096", "GATEWAY_IDLE_TIMEOUT=1s",
		"GATEWAY_BACKEND_CONNECT_TIMEOUT=500ms"}})

	t.Run("backend handshake timeout", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		status, hdr, body := handshake(t, n.ws("/slow"), keyHeader(key))
		wantGatewayError(t, status, hdr, body, http.StatusGatewayTimeout, "Backend service unavailable")
		// Half the 10 s default: the configured 500 ms applied, with room for a loaded machine.
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("answered after %v, want about the 500 ms connect timeout", took)
		}
	})

	t.Run("message too big", func(t *testing.T) {
		t.Parallel()
		c, _ := connect(t, n.ws("/chat?conn=big"), keyHeader(key))
		if err := c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 4096)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, data, err := c.ReadMessage(); err != nil || len(data) != 4096 {
			t.Fatalf("a message of exactly the limit: %d bytes, %v", len(data), err)
		}
		if err := c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 4097)); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Errorf("client: %v, want close 1009", err)
		}
		if ce := be.closeReceived(t, "big"); ce.Code != websocket.CloseMessageTooBig {
			t.Errorf("backend got close %d, want 1009", ce.Code)
		}
	})

	t.Run("idle timeout", func(t *testing.T) {
		t.Parallel()
		c, _ := connect(t, n.ws("/chat?conn=idle"), keyHeader(key))
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
			t.Errorf("client: %v, want close 1001", err)
		}
		if took := time.Since(start); took < 900*time.Millisecond {
			t.Errorf("closed after %v, before the 1 s idle timeout", took)
		}
		if ce := be.closeReceived(t, "idle"); ce.Code != websocket.CloseGoingAway {
			t.Errorf("backend got close %d, want 1001", ce.Code)
		}
	})
}
