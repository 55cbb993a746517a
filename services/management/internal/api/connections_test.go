package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// fakeNode answers live-connection requests on the Env's NATS connection as a gateway node
// does, from a fixed set of connections, and records the closes it was asked for.
type fakeNode struct {
	id, gateway string
	// key authenticates its replies; verifier checks management's requests.
	key      configwire.NodeKey
	verifier *configwire.Verifier

	mu     sync.Mutex
	conns  []configwire.Connection
	closes []configwire.ConnectionsRequest
}

func (f *fleetFixture) fakeNode(t *testing.T, id, gateway string, conns ...configwire.Connection) *fakeNode {
	t.Helper()
	v, verr := configwire.NewVerifier(f.env.Keys.VerifyKeys())
	if verr != nil {
		t.Fatal(verr)
	}
	n := &fakeNode{id: id, gateway: gateway, conns: conns, key: f.env.NodeKey(t, f.serviceID, gateway), verifier: v}
	sub, err := f.env.NC.Subscribe(bus.ConnectionsSubject(f.serviceID), n.answer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := f.env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	f.publish(t, f.beat(id, gateway, 1))
	return n
}

func (n *fakeNode) answer(m *nats.Msg) {
	var req configwire.ConnectionsRequest
	rep := configwire.ConnectionsReply{Node: n.id, Gateway: n.gateway}
	if err := n.verifier.VerifyRequest(m.Subject, m.Reply, m.Data, m.Header.Get(bus.HeaderSignature)); err != nil {
		rep.Error = "request not signed by management: " + err.Error()
	} else if err := json.Unmarshal(m.Data, &req); err != nil {
		rep.Error = err.Error()
	} else if err := req.Validate(); err != nil {
		rep.Error = err.Error()
	} else if req.Filter.Node == "" || req.Filter.Node == n.id {
		f := req.Filter
		n.mu.Lock()
		if req.Op == configwire.ConnectionsClose {
			n.closes = append(n.closes, req)
		}
		n.conns = slices.DeleteFunc(n.conns, func(c configwire.Connection) bool {
			if (f.ID != "" && f.ID != c.ID) || (f.API != "" && !strings.EqualFold(f.API, c.API)) ||
				(f.Subscription != "" && !strings.EqualFold(f.Subscription, c.Subscription)) {
				return false
			}
			rep.Connections = append(rep.Connections, c)
			return req.Op == configwire.ConnectionsClose
		})
		if req.Op == configwire.ConnectionsClose {
			rep.Closed = len(rep.Connections)
		}
		n.mu.Unlock()
	}
	raw, _ := json.Marshal(rep)
	r := &nats.Msg{Subject: m.Reply, Data: raw, Header: nats.Header{}}
	r.Header.Set(bus.HeaderNodeAuth, n.key.Sign(m.Reply, raw))
	_ = m.RespondMsg(r)
}

func (n *fakeNode) closeRequests() []configwire.ConnectionsRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.closes)
}

// connectionList is the body of GET .../connections.
type connectionList struct {
	Value []struct {
		ID         string         `json:"id"`
		Type       string         `json:"type"`
		Name       string         `json:"name"`
		Properties map[string]any `json:"properties"`
	} `json:"value"`
	Count int `json:"count"`
}

func (f *fleetFixture) connections(t *testing.T, query string) connectionList {
	t.Helper()
	r := f.env.Must(t, []int{200}, "GET", f.svc+"/connections"+query, nil)
	var l connectionList
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("%s: %v", r.Body, err)
	}
	if l.Count != len(l.Value) {
		t.Errorf("count %d for %d connections", l.Count, len(l.Value))
	}
	return l
}

func (l connectionList) names() []string {
	var out []string
	for _, c := range l.Value {
		out = append(out, c.Name)
	}
	return out
}

func TestConnections(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t, fleet.Options{})
	f.env.Must(t, []int{201}, "PUT", f.svc+"/subscriptions/alice", props(map[string]any{"scope": "/apis", "displayName": "Alice"}))
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	conn := func(id, api, sub string, age time.Duration) configwire.Connection {
		return configwire.Connection{ID: id, API: api, Subscription: sub, ClientIP: "192.0.2.7", Since: t0.Add(-age),
			MessagesIn: 3, MessagesOut: 4, BytesIn: 30, BytesOut: 40}
	}
	a := f.fakeNode(t, "node-a", "edge", conn("c1", "chat", "alice", time.Minute), conn("c2", "news", "bob", 3*time.Minute))
	b := f.fakeNode(t, "node-b", "core", conn("c3", "chat", "alice", 2*time.Minute))

	all := f.connections(t, "")
	if got, want := all.names(), []string{"c2", "c3", "c1"}; !cmp.Equal(got, want) {
		t.Fatalf("connections %v, want %v (oldest first)", got, want)
	}
	c3 := all.Value[1]
	if want := f.svc + "/connections/c3"; c3.ID != want || c3.Type != "Microsoft.ApiManagement/service/connections" {
		t.Errorf("id %q type %q, want %q and the connections type", c3.ID, c3.Type, want)
	}
	wantProps := map[string]any{"node": "node-b", "gateway": "core", "api": "chat", "subscription": "alice", "clientIp": "192.0.2.7",
		"since": "2025-06-01T11:58:00Z", "messagesIn": 3.0, "messagesOut": 4.0, "bytesIn": 30.0, "bytesOut": 40.0}
	if diff := cmp.Diff(wantProps, c3.Properties); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}

	for _, tc := range []struct{ query, want string }{
		{"?api=CHAT", "c3,c1"},
		{"?subscription=alice", "c3,c1"},
		{"?node=node-a", "c2,c1"},
		{"?node=node-b&api=news", ""},
		{"?node=unknown-node", ""},
	} {
		if got := strings.Join(f.connections(t, tc.query).names(), ","); got != tc.want {
			t.Errorf("GET connections%s: %q, want %q", tc.query, got, tc.want)
		}
	}
	if len(a.closeRequests())+len(b.closeRequests()) != 0 {
		t.Fatal("a list closed connections")
	}

	// Closing one connection: every node is asked; the one holding it closes it.
	f.env.Must(t, []int{204}, "POST", f.svc+"/connections/c1/close", nil)
	want := []configwire.ConnectionsRequest{{Op: "close", Filter: configwire.ConnectionFilter{ID: "c1"}, Code: 1008, Reason: "closed by an administrator"}}
	if diff := cmp.Diff(want, a.closeRequests()); diff != "" {
		t.Errorf("close requests node-a got (-want +got):\n%s", diff)
	}
	if got := strings.Join(f.connections(t, "").names(), ","); got != "c2,c3" {
		t.Errorf("after closing c1: %q, want c2,c3", got)
	}
	if r := f.env.Do(t, "POST", f.svc+"/connections/c1/close", nil); r.Status != 404 || r.ErrorCode() != "ResourceNotFound" {
		t.Errorf("closing c1 again: %d %s, want 404 ResourceNotFound", r.Status, r.Body)
	}

	// Closing a subscription's connections, its name in any case.
	r := f.env.Must(t, []int{200}, "POST", f.svc+"/subscriptions/ALICE/closeConnections", nil)
	if diff := cmp.Diff(map[string]any{"closed": 1.0}, r.JSON()); diff != "" {
		t.Errorf("closeConnections (-want +got):\n%s", diff)
	}
	// node-b was asked to close c1 twice, then alice's connections.
	if got := b.closeRequests(); len(got) != 3 || got[2].Filter != (configwire.ConnectionFilter{Subscription: "alice"}) || got[2].Code != 1008 {
		t.Errorf("close requests node-b got: %+v", got)
	}
	if got := strings.Join(f.connections(t, "").names(), ","); got != "c2" {
		t.Errorf("after closing alice's: %q, want c2", got)
	}
	if r := f.env.Do(t, "POST", f.svc+"/subscriptions/nobody/closeConnections", nil); r.Status != 404 {
		t.Errorf("closeConnections of an unknown subscription: %d %s, want 404", r.Status, r.Body)
	}
	if r := f.env.Do(t, "GET", f.svc+"/connections?api="+strings.Repeat("x", 257), nil); r.Status != 400 {
		t.Errorf("an overlong filter: %d, want 400", r.Status)
	}
	if r := f.env.Do(t, "GET", "/subscriptions/nodes-sub/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/missing/connections", nil); r.Status != 404 {
		t.Errorf("connections of an unknown service: %d, want 404", r.Status)
	}
}

// TestConnectionsSilentNode checks that a live node that does not answer costs about a second,
// not the answers of the others.
func TestConnectionsSilentNode(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t, fleet.Options{})
	f.fakeNode(t, "node-a", "edge", configwire.Connection{ID: "c1", API: "chat", Since: time.Now()})
	f.publish(t, f.beat("node-silent", "edge", 1)) // live, but answers nothing

	start := time.Now()
	got := f.connections(t, "").names()
	took := time.Since(start)
	if !cmp.Equal(got, []string{"c1"}) {
		t.Errorf("connections %v, want [c1]", got)
	}
	// Ten times the wait: a loaded machine stays below it, a list that waited for the silent
	// node beyond its second would not.
	if took < 900*time.Millisecond || took > 10*fleet.ConnectionsWait {
		t.Errorf("the list took %v, want about the 1 s wait for the silent node", took)
	}
	// Asking only the answering node does not wait for the silent one: management logs each
	// request that a node left waiting, and this one adds no such line.
	const late = "did not answer a live-connection request in time"
	before := strings.Count(f.env.Log.String(), late)
	if before == 0 {
		t.Fatalf("the unfiltered list logged no node that answered late")
	}
	if got := f.connections(t, "?node=node-a").names(); !cmp.Equal(got, []string{"c1"}) {
		t.Errorf("connections of node-a %v, want [c1]", got)
	}
	if after := strings.Count(f.env.Log.String(), late); after != before {
		t.Errorf("a list filtered to an answering node waited for the silent one")
	}
}

// TestConnectionsReader checks that a Reader may list connections but not close them.
func TestConnectionsReader(t *testing.T) {
	t.Parallel()
	env, iss, a, _ := startTenants(t)
	reader := iss.token(t, "Reader", tenantA)
	env.Must(t, []int{200}, "GET", a.svc+"/connections", nil, "Authorization", reader)
	for _, rel := range []string{"/connections/c1/close", "/subscriptions/alice/closeConnections"} {
		wantAuthError(t, env.Do(t, http.MethodPost, a.svc+rel, nil, "Authorization", reader), 403, "AuthorizationFailed", nil)
	}
}
