package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// usageTotals is what a chart of the portal's analytics must add up to.
type usageTotals struct {
	Opened      int            `json:"opened"`
	Closed      int            `json:"closed"`
	MessagesIn  int            `json:"messagesIn"`
	MessagesOut int            `json:"messagesOut"`
	BytesIn     int            `json:"bytesIn"`
	BytesOut    int            `json:"bytesOut"`
	Refused     map[string]int `json:"refused"`
}

// session opens a WebSocket through the node with key, sends messages and reads their
// echoes, adding what travelled to each of totals, and returns the open connection.
func session(t *testing.T, n *node, key string, messages []string, totals ...*usageTotals) *websocket.Conn {
	t.Helper()
	c, resp, err := dialer.Dial(n.ws("/chat"), keyHeader(key))
	if err != nil {
		t.Fatalf("handshake: %v (%s)", err, describe(resp))
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, hello, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("the backend's hello: %v", err)
	}
	out, in := len(hello), 0
	for _, m := range messages {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, echo, err := c.ReadMessage(); err != nil || string(echo) != m {
			t.Fatalf("echo of %q: %q, %v", m, echo, err)
		}
		in += len(m)
		out += len(m)
	}
	_ = c.SetReadDeadline(time.Time{})
	for _, tot := range totals {
		tot.Opened++
		tot.MessagesIn += len(messages)
		tot.MessagesOut += 1 + len(messages)
		tot.BytesIn += in
		tot.BytesOut += out
	}
	return c
}

// closeNormally closes c with 1000 and waits for the gateway's answering close.
func closeNormally(t *testing.T, c *websocket.Conn, totals ...*usageTotals) {
	t.Helper()
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	for _, tot := range totals {
		tot.Closed++
	}
}

// TestAnalyticsInBrowser sends real traffic through a real node: sessions of two consumers'
// subscriptions, and a refused handshake. The browser script (analytics.test.mjs) then closes
// one open session from "Live now", suspends a subscription with a session open and finds
// that session in the connection log with 1008 and its reason within seconds, filters and
// exports the log, waits for the analytics charts to add up to what was sent (the data behind
// each chart), checks the breakdowns, keyboard use and a 400 px window, and signs in as a
// consumer, who sees their own usage and log entries only. Screenshots go to
// $GATEHOUSE_ARTIFACTS/analytics.
func TestAnalyticsInBrowser(t *testing.T) {
	chromium, nodeBin := browserPrerequisites(t)
	s := newStack(t)
	be := newBackend(t, "demo", "")
	s.wsAPI(t, "chat", "chat", be.wsURL(""), nil)
	for _, u := range []string{"alice", "bob"} {
		s.put(t, "/users/"+u, map[string]any{"email": u + "@example.com", "firstName": u, "lastName": "Example"})
	}
	keys := map[string]string{}
	for sub, owner := range map[string]string{"alice-sub": "alice", "alice-sub2": "alice", "bob-sub": "bob"} {
		keys[sub] = s.ownedSubscription(t, sub, owner)
	}
	r := s.must(t, []int{200}, http.MethodPost, "/users/alice/token", map[string]any{"properties": map[string]any{
		"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}})
	aliceToken, _ := r.JSON()["value"].(string)
	s.secret(aliceToken, "alice's consumer token")
	n := s.startNode(t, "analytics-node", nodeOptions{})

	var all, alice usageTotals
	all.Refused = map[string]int{"401 SubscriptionKeyInvalid": 1}
	for i := range 2 {
		c := session(t, n, keys["alice-sub"], []string{fmt.Sprintf("hello %d", i), "how are you", "bye"}, &all, &alice)
		closeNormally(t, c, &all, &alice)
	}
	closeNormally(t, session(t, n, keys["bob-sub"], []string{"bob here", "bye"}, &all), &all)
	// Left open: bob's is closed from Live now, alice's second subscription's is revoked by
	// its suspension.
	session(t, n, keys["bob-sub"], []string{"still here"}, &all)
	revoked := session(t, n, keys["alice-sub2"], []string{"watching"}, &all, &alice)
	all.Closed += 2
	alice.Closed++
	if status, _, _ := handshake(t, n.ws("/chat"), keyHeader("not-a-key")); status != http.StatusUnauthorized {
		t.Fatalf("a wrong key's handshake: %d, want 401", status)
	}
	expect, err := json.Marshal(map[string]any{"all": all, "alice": alice})
	if err != nil {
		t.Fatal(err)
	}

	runBrowserScript(t, s, nodeBin, "analytics.test.mjs", "analytics",
		"PORTAL_URL="+s.env.URL+"/portal/",
		"ADMIN_TOKEN="+s.env.Token,
		"ALICE_TOKEN="+aliceToken,
		"EXPECT="+string(expect),
		"CHROMIUM="+chromium)

	// The session the suspension revoked got 1008 from the gateway.
	_ = revoked.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := revoked.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			if ce.Code != websocket.ClosePolicyViolation {
				t.Errorf("the suspended subscription's session closed with %d, want 1008", ce.Code)
			}
			break
		}
		if err != nil {
			t.Fatalf("the suspended subscription's session: %v", err)
		}
	}
}
