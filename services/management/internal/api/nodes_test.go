package api_test

import (
	"context"
	"encoding/json"
	"github.com/nats-io/nats.go"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// fleetFixture is a service with gateways edge and core, and a fake gateway fleet that
// publishes heartbeats on the Env's NATS connection.
type fleetFixture struct {
	env       *mgmttest.Env
	svc       string // ARM path
	ref       catalog.ServiceRef
	serviceID string // internal id, as nodes report it
}

func newFleetFixture(t *testing.T, opt fleet.Options) *fleetFixture {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true, Fleet: opt})
	svc := env.CreateService(t, "nodes-sub", "rg1", "nodes")
	for _, gw := range []string{"edge", "core"} {
		env.Must(t, []int{201}, "PUT", svc+"/gateways/"+gw, props(map[string]any{"locationData": map[string]any{"name": "Amsterdam"}}))
	}
	f := &fleetFixture{env: env, svc: svc, ref: catalog.ServiceRef{Subscription: "nodes-sub", ResourceGroup: "rg1", Name: "nodes"}}
	s, err := env.Catalog.GetService(context.Background(), f.ref)
	if err != nil {
		t.Fatal(err)
	}
	f.serviceID = s.ID
	return f
}

// revision is the service's current configuration revision.
func (f *fleetFixture) revision(t *testing.T) int64 {
	t.Helper()
	s, err := f.env.Catalog.GetService(context.Background(), f.ref)
	if err != nil {
		t.Fatal(err)
	}
	return s.Revision
}

// beat is a heartbeat of node on gateway at revision, sent now.
func (f *fleetFixture) beat(node, gateway string, revision int64) configwire.Heartbeat {
	return configwire.Heartbeat{NodeID: node, ServiceID: f.serviceID, Gateway: gateway, Revision: revision, Connections: 2,
		Healthy: true, Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Sent: time.Now(), Interval: time.Second,
		Version: "v0.9.0", Hostname: "host-" + node}
}

// publish sends hb as a gateway node does and waits until management has it.
func (f *fleetFixture) publish(t *testing.T, hb configwire.Heartbeat) {
	t.Helper()
	raw, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: bus.HeartbeatSubject(hb.ServiceID, hb.Gateway), Data: raw, Header: nats.Header{}}
	m.Header.Set(bus.HeaderNodeAuth, f.env.NodeKey(t, hb.ServiceID, hb.Gateway).Sign(m.Subject, raw))
	if err := f.env.NC.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "management receiving the heartbeat of node "+hb.NodeID, func() bool {
		for _, n := range f.env.Fleet.Nodes(hb.ServiceID, hb.Gateway) {
			if n.NodeID == hb.NodeID && n.Sent.Equal(hb.Sent) {
				return true
			}
		}
		return false
	})
}

// nodeList is the body of a nodes list.
type nodeList struct {
	Value []nodeItem `json:"value"`
	Count int        `json:"count"`
}

type nodeItem struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	Properties struct {
		Revision      int64     `json:"revision"`
		Connections   int       `json:"connections"`
		Healthy       bool      `json:"healthy"`
		LastError     string    `json:"lastError"`
		LastHeartbeat time.Time `json:"lastHeartbeat"`
		Started       time.Time `json:"started"`
		Hostname      string    `json:"hostname"`
		Version       string    `json:"version"`
		Status        string    `json:"status"`
	} `json:"properties"`
}

func decodeNodes(t *testing.T, r mgmttest.Response) nodeList {
	t.Helper()
	var l nodeList
	if err := json.Unmarshal(r.Body, &l); err != nil {
		t.Fatalf("nodes body %s: %v", r.Body, err)
	}
	if l.Count != len(l.Value) {
		t.Errorf("count %d for %d nodes", l.Count, len(l.Value))
	}
	return l
}

// statuses maps node names to "revision/status".
func statuses(l nodeList) map[string]string {
	out := map[string]string{}
	for _, n := range l.Value {
		out[n.Name] = strconv.FormatInt(n.Properties.Revision, 10) + "/" + n.Properties.Status
	}
	return out
}

func TestGatewayNodesList(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t, fleet.Options{})
	env := f.env

	empty := env.Must(t, []int{200}, "GET", f.svc+"/gateways/edge/nodes", nil)
	if got := decodeNodes(t, empty); got.Value == nil || len(got.Value) != 0 {
		t.Errorf("nodes of a gateway no node reported for: %s", empty.Body)
	}
	if got, want := empty.Header.Get("Gatehouse-Revision"), strconv.FormatInt(f.revision(t), 10); got != want {
		t.Errorf("Gatehouse-Revision = %q, want the service revision %s", got, want)
	}
	if got := empty.Header.Get("Gatehouse-Converged"); got != "" {
		t.Errorf("Gatehouse-Converged = %q without waitForRevision, want none", got)
	}
	nf := env.Must(t, []int{404}, "GET", f.svc+"/gateways/missing/nodes", nil)
	wantCode(t, nf, "ResourceNotFound")
	env.Must(t, []int{404}, "GET", mgmttest.ServicePath("nodes-sub", "rg1", "other")+"/gateways/edge/nodes", nil)

	before := time.Now()
	sick := f.beat("n2", "edge", 3)
	sick.Healthy, sick.LastError = false, "management answered 503"
	f.publish(t, sick)
	f.publish(t, f.beat("n1", "edge", 4))
	f.publish(t, f.beat("n3", "core", 4))
	// A node of gateway edge of another service.
	otherSvc := env.CreateService(t, "nodes-sub", "rg1", "nodes-other")
	env.Must(t, []int{201}, "PUT", otherSvc+"/gateways/edge", props(map[string]any{"locationData": map[string]any{"name": "Elsewhere"}}))
	other := f.beat("n4", "edge", 4)
	other.ServiceID = serviceIDOf(t, env, "nodes-sub", "rg1", "nodes-other")
	f.publish(t, other)
	after := time.Now()

	r := env.Must(t, []int{200}, "GET", f.svc+"/gateways/edge/nodes", nil)
	got := decodeNodes(t, r)
	want := nodeList{Count: 2}
	for _, n := range []struct {
		name     string
		revision int64
		healthy  bool
		lastErr  string
	}{{"n1", 4, true, ""}, {"n2", 3, false, "management answered 503"}} {
		var it nodeItem
		it.ID = "/subscriptions/nodes-sub/resourceGroups/rg1/providers/Microsoft.ApiManagement/service/nodes/gateways/edge/nodes/" + n.name
		it.Type, it.Name = "Microsoft.ApiManagement/service/gateways/nodes", n.name
		p := &it.Properties
		p.Revision, p.Connections, p.Healthy, p.LastError = n.revision, 2, n.healthy, n.lastErr
		p.Started, p.Hostname, p.Version, p.Status = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), "host-"+n.name, "v0.9.0", "live"
		want.Value = append(want.Value, it)
	}
	for i := range got.Value {
		hb := got.Value[i].Properties.LastHeartbeat
		if hb.Before(before.Add(-time.Second)) || hb.After(after.Add(time.Second)) {
			t.Errorf("node %s: lastHeartbeat %v, want between %v and %v", got.Value[i].Name, hb, before, after)
		}
		got.Value[i].Properties.LastHeartbeat = time.Time{}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodes of edge (-want +got):\n%s", diff)
	}

	// Gateway names compare as ARM names do; ids use the stored name.
	upper := decodeNodes(t, env.Must(t, []int{200}, "GET", f.svc+"/gateways/EDGE/nodes", nil))
	if len(upper.Value) != 2 || upper.Value[0].ID != want.Value[0].ID {
		t.Errorf("GET .../gateways/EDGE/nodes = %+v, want edge's nodes", upper.Value)
	}
}

func TestGatewayNodesWaitForRevision(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t, fleet.Options{})
	env := f.env
	rev := f.revision(t)
	if rev < 2 {
		t.Fatalf("revision %d after creating two gateways, want at least 2", rev)
	}
	f.publish(t, f.beat("a", "edge", rev))
	f.publish(t, f.beat("b", "edge", rev-1))
	f.publish(t, f.beat("c", "core", 0)) // another gateway does not hold edge up

	for _, tc := range []struct {
		name, query string
		want        string
		minTook     time.Duration
	}{
		{"reached", "waitForRevision=" + strconv.FormatInt(rev-1, 10) + "&timeout=10s", "true", 0},
		{"latest not reached", "waitForRevision=latest&timeout=200ms", "false", 200 * time.Millisecond},
		{"timeout in seconds", "waitForRevision=" + strconv.FormatInt(rev, 10) + "&timeout=1", "false", time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			r := env.Must(t, []int{200}, "GET", f.svc+"/gateways/edge/nodes?"+tc.query, nil)
			took := time.Since(began)
			if got := r.Header.Get("Gatehouse-Converged"); got != tc.want {
				t.Errorf("Gatehouse-Converged = %q, want %q", got, tc.want)
			}
			// Converged at once: half the 10 s timeout, far above what a loaded machine needs.
			if took < tc.minTook || (tc.minTook == 0 && took > 5*time.Second) {
				t.Errorf("answered after %v, want after the %v timeout", took, tc.minTook)
			}
			wantNodes := map[string]string{"a": strconv.FormatInt(rev, 10) + "/live", "b": strconv.FormatInt(rev-1, 10) + "/live"}
			if diff := cmp.Diff(wantNodes, statuses(decodeNodes(t, r))); diff != "" {
				t.Errorf("nodes (-want +got):\n%s", diff)
			}
		})
	}

	// A caller waits for a write to reach the fleet; the lagging node catches up meanwhile.
	env.Must(t, []int{201}, "PUT", f.svc+"/apis/echo", props(map[string]any{
		"displayName": "Echo", "type": "websocket", "serviceUrl": "wss://echo.example.com", "path": "echo"}))
	written := f.revision(t)
	if written <= rev {
		t.Fatalf("revision after a write = %d, want above %d", written, rev)
	}
	type answer struct {
		r    mgmttest.Response
		took time.Duration
	}
	done := make(chan answer, 1)
	began := time.Now()
	go func() {
		// Not env.Do: it may call t.Fatal, which only the test goroutine may.
		var a answer
		defer func() { a.took = time.Since(began); done <- a }()
		req, err := http.NewRequest("GET", env.URL+f.svc+"/gateways/edge/nodes?waitForRevision=latest&timeout=30s&api-version="+mgmttest.APIVersion, nil)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+env.Token)
		resp, err := env.Client.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		a.r = mgmttest.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	}()
	// This sleep and the 100 ms below stay: they give the wait a chance to answer wrongly on
	// node a's heartbeat. A slow machine only makes the test less sensitive; it cannot fail it.
	time.Sleep(100 * time.Millisecond)
	f.publish(t, f.beat("a", "edge", written))
	select {
	case a := <-done:
		t.Fatalf("the wait answered (%s) while node b serves revision %d", a.r.Header.Get("Gatehouse-Converged"), rev-1)
	case <-time.After(100 * time.Millisecond):
	}
	f.publish(t, f.beat("b", "edge", written))
	a := <-done
	if a.r.Status != 200 || a.r.Header.Get("Gatehouse-Converged") != "true" {
		t.Fatalf("wait answered %d, Gatehouse-Converged %q; body %s", a.r.Status, a.r.Header.Get("Gatehouse-Converged"), a.r.Body)
	}
	if a.took > 10*time.Second { // a third of the 30 s timeout: it was not waited for
		t.Errorf("the wait took %v after the nodes caught up", a.took)
	}
	if got := a.r.Header.Get("Gatehouse-Revision"); got != strconv.FormatInt(written, 10) {
		t.Errorf("Gatehouse-Revision = %q, want %d", got, written)
	}
}

func TestGatewayNodesStaleNodesDoNotHoldUp(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t, fleet.Options{LiveFor: 200 * time.Millisecond})
	old := f.beat("old", "edge", 0)
	old.Interval = 0 // liveness by management's window alone
	f.publish(t, old)
	testwait.Until(t, 10*time.Second, "the silent node going stale", func() bool {
		return !f.env.Fleet.Nodes(f.serviceID, "edge")[0].Live
	})
	began := time.Now()
	r := f.env.Must(t, []int{200}, "GET", f.svc+"/gateways/edge/nodes?waitForRevision=latest&timeout=10s", nil)
	// Half the request's 10 s timeout: far above what a loaded machine needs to answer.
	if got := r.Header.Get("Gatehouse-Converged"); got != "true" || time.Since(began) > 5*time.Second {
		t.Errorf("Gatehouse-Converged = %q after %v, want true at once: a stale node is not waited for", got, time.Since(began))
	}
	if diff := cmp.Diff(map[string]string{"old": "0/stale"}, statuses(decodeNodes(t, r))); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
}

func TestGatewayNodesBadQuery(t *testing.T) {
	t.Parallel()
	f := newFleetFixture(t, fleet.Options{})
	for _, tc := range []struct{ query, target string }{
		{"waitForRevision=soon", "waitForRevision"},
		{"waitForRevision=-1", "waitForRevision"},
		{"waitForRevision=1&timeout=61s", "timeout"},
		{"waitForRevision=1&timeout=2m", "timeout"},
		{"waitForRevision=1&timeout=0", "timeout"},
		{"waitForRevision=1&timeout=-5s", "timeout"},
		{"waitForRevision=1&timeout=forever", "timeout"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			t.Parallel()
			r := f.env.Must(t, []int{400}, "GET", f.svc+"/gateways/edge/nodes?"+tc.query, nil)
			wantCode(t, r, "ValidationError")
			if e, _ := r.JSON()["error"].(map[string]any); e["target"] != tc.target {
				t.Errorf("error target %v, want %s", e["target"], tc.target)
			}
		})
	}
}
