package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/management/internal/mgmttest"
)

// openPortalConsole opens the test console of the stack's management (issue 6) on api of the
// stack's service through nodeID, with token and query.
func (s *stack) openPortalConsole(t *testing.T, token, api, nodeID string, query map[string]string) *mgmttest.Console {
	t.Helper()
	return s.env.OpenConsole(t, map[string]any{"authorization": "Bearer " + token, "service": s.svc, "api": api, "node": nodeID, "query": query})
}

// TestPortalConsole drives the test console through a real gateway node to a Web PubSub-like
// backend: the node reports its URL, the console connects through it, relays both ways, shows
// the gateway's and the backend's refusals with their bodies, and keeps keys out of sight.
func TestPortalConsole(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const hubToken = "hub-access-token-console"
	s.secret(hubToken, "the backend's access token")
	hub := newBackend(t, "hub", hubToken)
	s.wsAPI(t, "chat", "chat", hub.wsURL("/client/hubs/chat"), nil)
	s.put(t, "/users/alice", map[string]any{"email": "alice@example.com", "firstName": "Alice", "lastName": "Liddell"})
	s.put(t, "/subscriptions/alice-chat", map[string]any{"scope": "/apis/chat", "displayName": "Alice on chat", "ownerId": "/users/alice", "state": "active"})
	var keys struct{ PrimaryKey string }
	if err := json.Unmarshal(s.must(t, []int{200}, "POST", "/subscriptions/alice-chat/listSecrets", nil).Body, &keys); err != nil {
		t.Fatal(err)
	}
	key := keys.PrimaryKey
	s.secret(key, "alice's subscription key")
	r := s.must(t, []int{200}, "POST", "/users/alice/token", map[string]any{"properties": map[string]any{
		"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}})
	alice, _ := r.JSON()["value"].(string)
	s.secret(alice, "alice's user token")

	n := s.startNode(t, "gw1", nodeOptions{})
	// The node reports the URL of its traffic listener; the console offers it, to alice too.
	var nodeID string
	eventually(t, 20*time.Second, func() string {
		r := s.env.Do(t, "GET", "/gatehouse/portal/v1/services/svc/consolenodes", nil, "Authorization", "Bearer "+alice)
		var l struct {
			Value []struct{ NodeID, URL, Gateway string }
		}
		_ = json.Unmarshal(r.Body, &l)
		if len(l.Value) != 1 || l.Value[0].URL != "ws://"+n.traffic || l.Value[0].Gateway != "gw" {
			return "consolenodes: " + string(r.Body)
		}
		nodeID = l.Value[0].NodeID
		return ""
	})
	if nodes := s.must(t, []int{200}, "GET", "/gateways/gw/nodes", nil); !strings.Contains(string(nodes.Body), `"url":"ws://`+n.traffic+`"`) {
		t.Errorf("the nodes extension does not show the node's URL: %s", nodes.Body)
	}

	t.Run("send and receive", func(t *testing.T) {
		for name, token := range map[string]string{"admin": s.env.Token, "consumer": alice} {
			pc := s.openPortalConsole(t, token, "chat", nodeID, map[string]string{"subscription-key": key, "access_token": hubToken, "room": "lobby"})
			hs := pc.Next()
			if hs.Type != "handshake" || hs.Status != http.StatusSwitchingProtocols {
				t.Fatalf("%s: handshake %+v", name, hs)
			}
			if want := "ws://" + n.traffic + "/chat?access_token=***&room=lobby&subscription-key=***"; hs.URL != want {
				t.Errorf("%s: url %s, want %s", name, hs.URL, want)
			}
			var h hello
			if msg := pc.Next(); msg.Type != "message" || json.Unmarshal([]byte(msg.Data), &h) != nil || h.Backend != "hub" {
				t.Fatalf("%s: first message %+v, want the backend's hello", name, msg)
			}
			if h.Path != "/client/hubs/chat" || h.Query.Get("access_token") != hubToken || h.Query.Get("room") != "lobby" || h.Query.Has("subscription-key") {
				t.Errorf("%s: the backend saw %s?%v", name, h.Path, h.Query)
			}
			pc.Send(map[string]any{"type": "send", "data": "hello from the console"})
			if msg := pc.Next(); msg.Type != "message" || msg.Data != "hello from the console" || msg.Time == "" {
				t.Errorf("%s: echo %+v", name, msg)
			}
			pc.Send(map[string]any{"type": "send", "data": "close:4001:bye"})
			if ev := pc.Next(); ev.Type != "close" || ev.CloseCode() != 4001 || ev.Reason != "bye" {
				t.Errorf("%s: after the backend closed: %+v", name, ev)
			}
			if code := pc.Closed(); code != websocket.CloseNormalClosure {
				t.Errorf("%s: console closed with %d, want 1000", name, code)
			}
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		pc := s.openPortalConsole(t, alice, "chat", nodeID, map[string]string{"subscription-key": key, "access_token": hubToken, "conn": "console-1"})
		if hs := pc.Next(); hs.Status != http.StatusSwitchingProtocols {
			t.Fatalf("handshake %+v", hs)
		}
		pc.Next() // hello
		pc.Send(map[string]any{"type": "close"})
		if ev := pc.Next(); ev.Type != "close" || ev.CloseCode() != 1000 {
			t.Errorf("after Disconnect: %+v", ev)
		}
		if ce := hub.closeReceived(t, "console-1"); ce.Code != websocket.CloseNormalClosure {
			t.Errorf("the backend received close %d, want 1000", ce.Code)
		}
		pc.Closed()
	})

	t.Run("refusals show their body", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			query map[string]string
			body  string
		}{
			{"wrong key", map[string]string{"subscription-key": "0123456789abcdef0123456789abcdef", "access_token": hubToken},
				`"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."`},
			{"no key", map[string]string{"access_token": hubToken}, `"message":"Access denied due to missing subscription key.`},
			{"wrong access token", map[string]string{"subscription-key": key, "access_token": "wrong"}, `{"code":"Unauthorized","message":"Invalid access token"}`},
		} {
			pc := s.openPortalConsole(t, alice, "chat", nodeID, tc.query)
			hs := pc.Next()
			if hs.Status != http.StatusUnauthorized || !strings.Contains(hs.Body, tc.body) {
				t.Errorf("%s: handshake %d %q, want 401 with %s", tc.name, hs.Status, hs.Body, tc.body)
			}
			if code := pc.Closed(); code != websocket.CloseNormalClosure {
				t.Errorf("%s: closed with %d, want 1000", tc.name, code)
			}
		}
	})

	t.Run("only the service's live nodes", func(t *testing.T) {
		for name, nodeRef := range map[string]string{"unknown node": "no-such-node", "a URL": "ws://" + n.traffic, "empty": ""} {
			pc := s.openPortalConsole(t, s.env.Token, "chat", nodeRef, map[string]string{"subscription-key": key})
			if ev := pc.Next(); ev.Type != "error" || ev.ErrorCode() != "ResourceNotFound" {
				t.Errorf("%s: %+v, want a ResourceNotFound error", name, ev)
			}
			if code := pc.Closed(); code != websocket.ClosePolicyViolation {
				t.Errorf("%s: closed with %d, want 1008", name, code)
			}
		}
	})

	log := s.env.Log.String()
	for _, secret := range []string{key, hubToken, alice, alice[strings.LastIndexByte(alice, '&')+1:], "0123456789abcdef0123456789abcdef"} {
		if strings.Contains(log, secret) {
			t.Errorf("management logged a secret (%.8s...)", secret)
		}
	}
}
