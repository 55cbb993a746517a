package api_test

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/management/internal/mgmttest"
)

// nodeStandIn stands in for a gateway node's traffic listener: it upgrades requests carrying the key
// "good-key" and echoes every message, and refuses others with 401 and a body longer than the
// 1 KiB a WebSocket client library keeps. It records the path and query of every request.
type nodeStandIn struct {
	srv  *httptest.Server
	seen chan string
}

// refusal is the stand-in node's 401 body: 3 KiB.
var refusal = `{"statusCode":401,"message":"Access denied due to invalid subscription key.","padding":"` + strings.Repeat("x", 3<<10) + `"}`

func newNodeStandIn(t *testing.T) *nodeStandIn {
	t.Helper()
	n := &nodeStandIn{seen: make(chan string, 64)}
	up := websocket.Upgrader{}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.seen <- r.URL.RequestURI()
		if r.URL.Query().Get("subscription-key") != "good-key" {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `SubscriptionKey realm="api"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, refusal)
			return
		}
		c, err := up.Upgrade(w, r, http.Header{"X-Node": {"fake"}})
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, data); err != nil {
				return
			}
		}
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *nodeStandIn) url() string { return "ws" + strings.TrimPrefix(n.srv.URL, "http") }

// lastRequest is the path and query of the node's latest request.
func (n *nodeStandIn) lastRequest(t *testing.T) string {
	t.Helper()
	select {
	case s := <-n.seen:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the node received no request")
		return ""
	}
}

// wantConsoleError reads an error event with code, then the close with closeCode.
func wantConsoleError(t *testing.T, c *mgmttest.Console, code string, closeCode int) {
	t.Helper()
	if ev := c.Next(); ev.Type != "error" || ev.ErrorCode() != code || ev.Message == "" {
		t.Errorf("event %+v, want an error %s", ev, code)
	}
	if got := c.Closed(); got != closeCode {
		t.Errorf("close code %d, want %d", got, closeCode)
	}
}

func TestConsole(t *testing.T) {
	t.Parallel()
	env, iss, a, b := startTenants(t)
	node := newNodeStandIn(t)
	idA, idB := serviceIDOf(t, env, tenantA, "rg", "svc-a"), serviceIDOf(t, env, tenantB, "rg", "svc-b")
	announceNode(t, env, idA, "gw1", "node-a", node.url())
	announceNode(t, env, idB, "gw1", "node-b", node.url())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	announceNode(t, env, idA, "gw1", "node-dead", "ws://"+deadAddr)
	announceNode(t, env, idA, "gw1", "node-silent", "")
	env.Must(t, []int{201}, "PUT", a.svc+"/apis/other", props(map[string]any{"displayName": "Other", "type": "websocket",
		"serviceUrl": "wss://other.example.com", "path": "other", "subscriptionKeyParameterNames": map[string]any{"header": "X-Key", "query": "apikey"}}))
	admin := "Bearer " + env.Token
	consumer := "Bearer " + userToken(t, env, a.svc, "u1")
	open := func(auth, svc, api, nodeID string, query map[string]string, path string) map[string]any {
		return map[string]any{"authorization": auth, "service": svc, "api": api, "node": nodeID, "query": query, "path": path}
	}
	good := map[string]string{"subscription-key": "good-key", "access_token": "tok-secret-123", "room": "lobby"}

	t.Run("relay", func(t *testing.T) {
		s := env.OpenConsole(t, open(admin, a.svc, "chat", "node-a", good, ""))
		hs := s.Next()
		if hs.Type != "handshake" || hs.Status != 101 {
			t.Fatalf("handshake %+v, want status 101", hs)
		}
		if hs.Headers["X-Node"] != "fake" || hs.Headers["Upgrade"] != "websocket" {
			t.Errorf("handshake headers %v", hs.Headers)
		}
		if want := node.url() + "/chat?access_token=***&room=lobby&subscription-key=***"; hs.URL != want {
			t.Errorf("url %v, want %s", hs.URL, want)
		}
		if hs.MS == nil || *hs.MS < 0 {
			t.Errorf("ms %v", hs.MS)
		}
		if got := node.lastRequest(t); got != "/chat?access_token=tok-secret-123&room=lobby&subscription-key=good-key" {
			t.Errorf("the node was asked for %s", got)
		}

		s.Send(map[string]any{"type": "send", "data": "hello"})
		if ev := s.Next(); ev.Type != "message" || ev.Data != "hello" || ev.Binary {
			t.Errorf("echo of a text message: %+v", ev)
		} else if _, err := time.Parse(time.RFC3339Nano, ev.Time); err != nil {
			t.Errorf("message time %v: %v", ev.Time, err)
		}
		bin := base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})
		s.Send(map[string]any{"type": "send", "data": bin, "binary": true})
		if ev := s.Next(); ev.Type != "message" || ev.Data != bin || !ev.Binary {
			t.Errorf("echo of a binary message: %+v", ev)
		}
		s.Send(map[string]any{"type": "send", "data": "%%%", "binary": true})
		if ev := s.Next(); ev.Type != "error" || ev.ErrorCode() != "InvalidRequestContent" {
			t.Errorf("a binary frame that is not base64: %+v", ev)
		}
		s.Send(map[string]any{"type": "shout"})
		if ev := s.Next(); ev.Type != "error" {
			t.Errorf("an unknown frame type: %+v", ev)
		}
		s.Send(map[string]any{"type": "send", "data": "still here"})
		if ev := s.Next(); ev.Data != "still here" {
			t.Errorf("after a bad frame: %+v", ev)
		}
		s.Send(map[string]any{"type": "close"})
		if ev := s.Next(); ev.Type != "close" || ev.CloseCode() != 1000 {
			t.Errorf("after close: %+v, want the node's close 1000", ev)
		}
		if got := s.Closed(); got != websocket.CloseNormalClosure {
			t.Errorf("console closed with %d, want 1000", got)
		}
	})

	t.Run("refusal body in full", func(t *testing.T) {
		s := env.OpenConsole(t, open(admin, a.svc, "chat", "node-a", map[string]string{"subscription-key": "bad-key-456"}, ""))
		hs := s.Next()
		if hs.Status != 401 || hs.Body != refusal {
			t.Errorf("handshake status %v, body of %d bytes; want 401 and the stand-in node's %d-byte body", hs.Status, len(hs.Body), len(refusal))
		}
		if hs.Headers["Www-Authenticate"] != `SubscriptionKey realm="api"` {
			t.Errorf("handshake headers %v", hs.Headers)
		}
		if hs.URL != node.url()+"/chat?subscription-key=***" {
			t.Errorf("url %v", hs.URL)
		}
		if got := s.Closed(); got != websocket.CloseNormalClosure {
			t.Errorf("close %d after a refusal, want 1000", got)
		}
		node.lastRequest(t)
	})

	t.Run("the API's own key parameter is redacted", func(t *testing.T) {
		s := env.OpenConsole(t, open(admin, a.svc, "other", "node-a", map[string]string{"apikey": "api-key-789", "subscription-key": "good-key"}, ""))
		if hs := s.Next(); hs.URL != node.url()+"/other?apikey=***&subscription-key=***" {
			t.Errorf("url %v", hs.URL)
		}
		node.lastRequest(t)
	})

	t.Run("path stays below the API", func(t *testing.T) {
		for path, want := range map[string]string{
			"sub/path":     "/chat/sub/path?subscription-key=good-key",
			"/sub/":        "/chat/sub/?subscription-key=good-key",
			"a%20b":        "/chat/a%20b?subscription-key=good-key",
			"files/x..y.z": "/chat/files/x..y.z?subscription-key=good-key",
		} {
			s := env.OpenConsole(t, open(admin, a.svc, "chat", "node-a", map[string]string{"subscription-key": "good-key"}, path))
			if hs := s.Next(); hs.Type != "handshake" {
				t.Errorf("path %q: %+v", path, hs)
			}
			if got := node.lastRequest(t); got != want {
				t.Errorf("path %q reached %s on the node, want %s", path, got, want)
			}
		}
	})

	t.Run("reader and consumer", func(t *testing.T) {
		for name, auth := range map[string]string{"reader": iss.token(t, "Reader", tenantA), "consumer": consumer} {
			s := env.OpenConsole(t, open(auth, a.svc, "chat", "node-a", map[string]string{"subscription-key": "good-key"}, ""))
			if hs := s.Next(); hs.Status != 101 {
				t.Errorf("%s: handshake %+v", name, hs)
			}
			node.lastRequest(t)
		}
	})

	for _, tc := range []struct {
		name      string
		open      any
		code      string
		closeCode int
	}{
		{"not JSON", "hello", "InvalidRequestContent", websocket.ClosePolicyViolation},
		{"no token", open("", a.svc, "chat", "node-a", good, ""), "AuthenticationFailed", websocket.ClosePolicyViolation},
		{"bad token", open("Bearer nope", a.svc, "chat", "node-a", good, ""), "AuthenticationFailed", websocket.ClosePolicyViolation},
		{"bad service id", open(admin, "svc-a", "chat", "node-a", good, ""), "ValidationError", websocket.ClosePolicyViolation},
		{"another tenant", open(iss.token(t, "Contributor", tenantB), a.svc, "chat", "node-a", good, ""), "AuthorizationFailed", websocket.ClosePolicyViolation},
		{"consumer on another service", open(consumer, b.svc, "chat", "node-b", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"consumer on an API of none of its subscriptions", open(consumer, a.svc, "other", "node-a", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"unknown API", open(admin, a.svc, "nope", "node-a", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"unknown node", open(admin, a.svc, "chat", "node-z", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"no node", open(admin, a.svc, "chat", "", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"a node of another service", open(admin, a.svc, "chat", "node-b", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"a node without a URL", open(admin, a.svc, "chat", "node-silent", good, ""), "ResourceNotFound", websocket.ClosePolicyViolation},
		{"a URL instead of a node", map[string]any{"authorization": admin, "service": a.svc, "api": "chat", "node": node.url(), "url": node.url()}, "ResourceNotFound", websocket.ClosePolicyViolation},
		{"an unreachable node", open(admin, a.svc, "chat", "node-dead", good, ""), "ServiceUnavailable", websocket.CloseInternalServerErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantConsoleError(t, env.OpenConsole(t, tc.open), tc.code, tc.closeCode)
		})
	}
	select {
	case got := <-node.seen:
		t.Errorf("a refused console request reached the node: %s", got)
	default:
	}

	t.Run("another origin", func(t *testing.T) {
		_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(env.URL, "http")+mgmttest.ConsolePath,
			http.Header{"Origin": {"https://evil.example.com"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("a console opened from another origin: %v, %v", err, resp)
		}
	})

	log := env.Log.String()
	for _, secret := range []string{"good-key", "bad-key-456", "tok-secret-123", "api-key-789", strings.TrimPrefix(consumer, "Bearer ")} {
		if strings.Contains(log, secret) {
			t.Errorf("management logged %q", secret)
		}
	}
	if !strings.Contains(log, `"msg":"test console"`) || !strings.Contains(log, "subscription-key=***") {
		t.Errorf("management logged no test console session with its redacted URL:\n%s", log)
	}
}

// TestAttackConsolePathTraversal: no path in the opening message reaches anything on the node
// but the API's own paths (issue 12: "../metrics" was cleaned into the node's /metrics). Each
// is refused before any connection is made.
func TestAttackConsolePathTraversal(t *testing.T) {
	t.Parallel()
	env, _, a, _ := startTenants(t)
	node := newNodeStandIn(t)
	announceNode(t, env, serviceIDOf(t, env, tenantA, "rg", "svc-a"), "gw1", "node-a", node.url())
	for _, path := range []string{
		"../metrics", "../../../admin", "..", ".", "./x", "x/../../metrics", "x/..",
		"%2e%2e/metrics", "%2E%2E%2Fmetrics", "x%2f..%2f..%2fmetrics", ".%2e/metrics",
		"..\\metrics", "x%5c..%5cmetrics",
		"//evil.example.com/x", "http://evil.example.com/x", "ws:%2F%2Fevil.example.com",
		"x//y", "x?y=1", "x#frag", "x%00y", "x\ny", "%zz",
	} {
		s := env.OpenConsole(t, map[string]any{"authorization": "Bearer " + env.Token, "service": a.svc, "api": "chat", "node": "node-a",
			"query": map[string]string{"subscription-key": "good-key"}, "path": path})
		wantConsoleError(t, s, "ValidationError", websocket.ClosePolicyViolation)
	}
	select {
	case got := <-node.seen:
		t.Errorf("the node was reached at %s", got)
	default:
	}
}
