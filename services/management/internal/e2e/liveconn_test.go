package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// liveConn is one entry of GET .../connections.
type liveConn struct {
	Name       string `json:"name"`
	Properties struct {
		Node         string    `json:"node"`
		Gateway      string    `json:"gateway"`
		API          string    `json:"api"`
		Subscription string    `json:"subscription"`
		Since        time.Time `json:"since"`
		MessagesIn   int64     `json:"messagesIn"`
		MessagesOut  int64     `json:"messagesOut"`
	} `json:"properties"`
}

// liveConns lists the service's open connections; query filters them.
func (s *stack) liveConns(t *testing.T, query string) []liveConn {
	t.Helper()
	r := s.must(t, []int{200}, http.MethodGet, "/connections"+query, nil)
	var body struct {
		Value []liveConn `json:"value"`
		Count int        `json:"count"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Count != len(body.Value) {
		t.Fatalf("connections list %s: %v", r.Body, err)
	}
	return body.Value
}

// openLive opens a session through n and returns its watcher and correlation id.
func openLive(t *testing.T, n *node, label, path, key string) (*watched, string) {
	t.Helper()
	c, resp, err := dialer.Dial(n.ws(path), keyHeader(key))
	if err != nil {
		t.Fatalf("%s: handshake: %v (%s)", label, err, describe(resp))
	}
	t.Cleanup(func() { c.Close() })
	id := resp.Header.Get("X-Correlation-ID")
	var h hello
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&h); err != nil {
		t.Fatalf("%s: reading the backend's hello: %v", label, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if id == "" {
		t.Fatalf("%s: the 101 carries no X-Correlation-ID", label)
	}
	return watch(c, n.name, label), id
}

// TestLiveConnections lists the sessions open on two real gateway nodes through management,
// closes one by its id and then every session of a subscription, and checks that the clients
// get 1008 "closed by an administrator" while the other sessions carry on.
func TestLiveConnections(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "chat", "chat", be.wsURL("/chat"), nil)
	s.wsAPI(t, "news", "news", be.wsURL("/news"), nil)
	aliceKey := s.subscription(t, "alice", "/apis", "active")
	bobKey := s.subscription(t, "bob", "/apis", "active")
	nodes := s.startNodes(t, "gw", 2, nodeOptions{})
	s.converge(t, 2)
	live := map[string]bool{} // node ids
	for _, n := range s.fleet(t, "").live() {
		live[n.Name] = true
	}

	a1, a1ID := openLive(t, nodes[0], "alice on gw1", "/chat", aliceKey)
	a2, a2ID := openLive(t, nodes[1], "alice on gw2", "/news", aliceKey)
	b1, b1ID := openLive(t, nodes[0], "bob on gw1", "/chat", bobKey)
	if err := a1.echo("hello", 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// The list shows every session with who, where and since when; a session may be
	// registered a moment after its client saw the 101.
	var all []liveConn
	eventually(t, 5*time.Second, func() string {
		all = s.liveConns(t, "")
		if len(all) != 3 {
			return fmt.Sprintf("%d connections listed, want 3", len(all))
		}
		return ""
	})
	type row struct{ id, api, sub, gateway string }
	var got []row
	nodeOf := map[string]string{}
	for _, c := range all {
		got = append(got, row{c.Name, c.Properties.API, c.Properties.Subscription, c.Properties.Gateway})
		nodeOf[c.Name] = c.Properties.Node
		if !live[c.Properties.Node] {
			t.Errorf("%s: node %q is not a live node of gw", c.Name, c.Properties.Node)
		}
		if age := time.Since(c.Properties.Since); age < 0 || age > time.Minute {
			t.Errorf("%s: since %v", c.Name, c.Properties.Since)
		}
	}
	want := []row{{a1ID, "chat", "alice", "gw"}, {a2ID, "news", "alice", "gw"}, {b1ID, "chat", "bob", "gw"}}
	sort.Slice(got, func(i, j int) bool { return got[i].id < got[j].id })
	sort.Slice(want, func(i, j int) bool { return want[i].id < want[j].id })
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connections %v, want %v", got, want)
	}
	if nodeOf[a1ID] != nodeOf[b1ID] || nodeOf[a1ID] == nodeOf[a2ID] {
		t.Errorf("nodes %v: a1 and b1 share gw1, a2 is on gw2", nodeOf)
	}
	for _, c := range all {
		// Out: the backend's hello and the echo.
		if c.Name == a1ID && (c.Properties.MessagesIn != 1 || c.Properties.MessagesOut != 2) {
			t.Errorf("alice on gw1: messages in/out %d/%d, want 1/2", c.Properties.MessagesIn, c.Properties.MessagesOut)
		}
	}
	if got := s.liveConns(t, "?subscription=bob"); len(got) != 1 || got[0].Name != b1ID {
		t.Errorf("bob's connections: %v", got)
	}
	if got := s.liveConns(t, "?node="+nodeOf[a2ID]); len(got) != 1 || got[0].Name != a2ID {
		t.Errorf("gw2's connections: %v", got)
	}

	// Closing one connection by its id.
	s.must(t, []int{204}, http.MethodPost, "/connections/"+a1ID+"/close", nil)
	if !a1.wait(5 * time.Second) {
		t.Fatal("alice's session on gw1 is still open after its close")
	}
	if a1.code != 1008 || a1.reason != "closed by an administrator" {
		t.Errorf("alice on gw1: %s, want close 1008 \"closed by an administrator\"", a1.describeClose())
	}
	for _, w := range []*watched{a2, b1} {
		if err := w.echo("still here", 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	s.must(t, []int{404}, http.MethodPost, "/connections/"+a1ID+"/close", nil)

	// Closing every connection of a subscription.
	r := s.must(t, []int{200}, http.MethodPost, "/subscriptions/alice/closeConnections", nil)
	if n, _ := r.JSON()["closed"].(float64); n != 1 {
		t.Errorf("closeConnections: %s, want 1 closed", r.Body)
	}
	if !a2.wait(5 * time.Second) {
		t.Fatal("alice's session on gw2 is still open after closeConnections")
	}
	if a2.code != 1008 || a2.reason != "closed by an administrator" {
		t.Errorf("alice on gw2: %s, want close 1008 \"closed by an administrator\"", a2.describeClose())
	}
	if err := b1.echo("still here", 5*time.Second); err != nil {
		t.Error(err)
	}
	eventually(t, 5*time.Second, func() string {
		var names []string
		for _, c := range s.liveConns(t, "") {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != b1ID {
			return fmt.Sprintf("connections %v, want only bob's %s", names, b1ID)
		}
		return ""
	})
}
