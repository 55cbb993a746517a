package fleet_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/gatewaykeys/gatewaykeystest"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"

	"gatehouse.dev/pkg/testwait"
)

// harness is a Registry subscribed to an in-process NATS server, and a connection that plays
// the gateway nodes.
type harness struct {
	reg *fleet.Registry
	pub *nats.Conn
	// conn opens another connection to the harness's server, as management's user.
	conn func() *nats.Conn
}

func start(t *testing.T, opt fleet.Options) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	conn := func() *nats.Conn {
		nc, err := nats.Connect(ns.ClientURL(), ns.UserInfo())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	if opt.Keys == nil {
		opt.Keys = gatewaykeystest.Auth{}
	}
	reg := fleet.New(opt)
	sub, err := reg.Subscribe(conn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &harness{reg: reg, pub: conn(), conn: conn}
}

// send publishes hb as a node would, on its own subject.
func (h *harness) send(t *testing.T, hb configwire.Heartbeat) {
	t.Helper()
	h.sendOn(t, bus.HeartbeatSubject(hb.ServiceID, hb.Gateway), hb)
}

func (h *harness) sendOn(t *testing.T, subject string, v any) {
	t.Helper()
	raw, ok := v.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.pub.PublishMsg(signed(subject, raw)); err != nil {
		t.Fatal(err)
	}
	if err := h.pub.Flush(); err != nil {
		t.Fatal(err)
	}
}

// sync sends a marker heartbeat and waits until the Registry has it: everything published
// before it has been handled, since one subscription handles messages in order.
func (h *harness) sync(t *testing.T) {
	t.Helper()
	marker := beat("marker", "svc-marker", "gw", 0)
	h.send(t, marker)
	eventually(t, "the marker heartbeat arrives", func() bool {
		for _, n := range h.reg.Nodes("svc-marker", "") {
			if n.NodeID == "marker" && n.Sent.Equal(marker.Sent) {
				return true
			}
		}
		return false
	})
}

func beat(node, service, gateway string, revision int64) configwire.Heartbeat {
	return configwire.Heartbeat{NodeID: node, ServiceID: service, Gateway: gateway, Revision: revision, Healthy: true,
		Connections: 1, Started: time.Now().Add(-time.Minute), Sent: time.Now(), Hostname: "host-" + node, Version: "v1"}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

// view is the part of a Node the tests compare.
type view struct {
	Node, Gateway string
	Revision      int64
	Live          bool
}

func views(ns []fleet.Node) []view {
	out := []view{}
	for _, n := range ns {
		out = append(out, view{n.NodeID, n.Gateway, n.Revision, n.Live})
	}
	return out
}

func TestNodes(t *testing.T) {
	t.Parallel()
	h := start(t, fleet.Options{})
	h.send(t, beat("b", "svc-1", "edge", 4))
	h.send(t, beat("a", "svc-1", "edge", 5))
	h.send(t, beat("c", "svc-1", "Core", 5))
	h.send(t, beat("d", "svc-2", "edge", 9))
	h.sync(t)

	for _, tc := range []struct {
		name, service, gateway string
		want                   []view
	}{
		{"one gateway", "svc-1", "edge", []view{{"a", "edge", 5, true}, {"b", "edge", 4, true}}},
		{"gateway names ignore case", "svc-1", "EDGE", []view{{"a", "edge", 5, true}, {"b", "edge", 4, true}}},
		{"every gateway of a service", "svc-1", "", []view{{"c", "Core", 5, true}, {"a", "edge", 5, true}, {"b", "edge", 4, true}}},
		{"other service", "svc-2", "", []view{{"d", "edge", 9, true}}},
		{"unknown gateway", "svc-1", "nowhere", []view{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tc.want, views(h.reg.Nodes(tc.service, tc.gateway))); diff != "" {
				t.Errorf("Nodes(%q, %q) (-want +got):\n%s", tc.service, tc.gateway, diff)
			}
		})
	}

	got := h.reg.Nodes("svc-1", "edge")[0]
	if got.Hostname != "host-a" || got.Connections != 1 || !got.Healthy || got.LastSeen.IsZero() {
		t.Errorf("node a = %+v, want its heartbeat's fields and when it was seen", got)
	}
}

func TestNodesIgnoreBadAndOldHeartbeats(t *testing.T) {
	t.Parallel()
	h := start(t, fleet.Options{})
	newer := beat("a", "svc-1", "edge", 5)
	h.send(t, newer)
	older := beat("a", "svc-1", "edge", 4)
	older.Sent = newer.Sent.Add(-time.Second)
	h.send(t, older)                                                                                   // overtaken
	h.sendOn(t, bus.HeartbeatSubject("svc-1", "other"), beat("x", "svc-1", "edge", 1))                 // subject not its own
	h.sendOn(t, bus.HeartbeatSubject("svc-1", "edge"), []byte("{not json"))                            // undecodable
	h.send(t, configwire.Heartbeat{NodeID: "", ServiceID: "svc-1", Gateway: "edge", Sent: time.Now()}) // no node id
	neg := beat("y", "svc-1", "edge", 1)
	neg.Connections = -1
	h.send(t, neg) // invalid
	h.sync(t)

	if diff := cmp.Diff([]view{{"a", "edge", 5, true}}, views(h.reg.Nodes("svc-1", ""))); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
}

func TestNodesGoStaleThenAway(t *testing.T) {
	t.Parallel()
	h := start(t, fleet.Options{LiveFor: 200 * time.Millisecond, ForgetAfter: time.Second})
	slow := beat("slow", "svc-1", "edge", 1)
	slow.Interval = time.Hour // reports hourly: live for three hours
	h.send(t, beat("a", "svc-1", "edge", 1))
	h.send(t, slow)
	h.sync(t)

	eventually(t, "node a goes stale", func() bool {
		ns := h.reg.Nodes("svc-1", "edge")
		return len(ns) == 2 && !ns[0].Live
	})
	if diff := cmp.Diff([]view{{"a", "edge", 1, false}, {"slow", "edge", 1, true}}, views(h.reg.Nodes("svc-1", "edge"))); diff != "" {
		t.Errorf("nodes once a is stale (-want +got):\n%s", diff)
	}
	eventually(t, "node a is forgotten", func() bool { return len(h.reg.Nodes("svc-1", "edge")) == 1 })

	// A node that stops leaves at once.
	stop := beat("slow", "svc-1", "edge", 1)
	stop.Stopping = true
	h.send(t, stop)
	h.sync(t)
	if got := h.reg.Nodes("svc-1", "edge"); len(got) != 0 {
		t.Errorf("nodes after the last one stopped: %v", views(got))
	}
}

func TestWait(t *testing.T) {
	t.Parallel()

	t.Run("returns when every live node catches up", func(t *testing.T) {
		t.Parallel()
		h := start(t, fleet.Options{})
		h.send(t, beat("a", "svc-1", "edge", 3))
		h.send(t, beat("b", "svc-1", "edge", 3))
		h.send(t, beat("c", "svc-1", "other", 1)) // another gateway does not hold edge up
		h.sync(t)
		done := make(chan error, 1)
		go func() {
			_, err := h.reg.Wait(context.Background(), "svc-1", "edge", 4)
			done <- err
		}()
		h.send(t, beat("a", "svc-1", "edge", 4))
		h.sync(t)
		select {
		case err := <-done:
			t.Fatalf("Wait returned (%v) while node b serves revision 3", err)
		case <-time.After(50 * time.Millisecond):
		}
		h.send(t, beat("b", "svc-1", "edge", 5))
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return after every node reached the revision")
		}
	})

	t.Run("times out naming the nodes behind", func(t *testing.T) {
		t.Parallel()
		h := start(t, fleet.Options{})
		h.send(t, beat("a", "svc-1", "edge", 7))
		h.send(t, beat("b", "svc-1", "edge", 6))
		h.send(t, beat("c", "svc-1", "core", 2))
		h.sync(t)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		behind, err := h.reg.Wait(ctx, "svc-1", "", 7)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait error = %v, want DeadlineExceeded", err)
		}
		if diff := cmp.Diff([]view{{"b", "edge", 6, true}, {"c", "core", 2, true}}, views(behind)); diff != "" {
			t.Errorf("nodes behind (-want +got):\n%s", diff)
		}
	})

	t.Run("a node that goes stale stops holding it up", func(t *testing.T) {
		t.Parallel()
		h := start(t, fleet.Options{LiveFor: 300 * time.Millisecond})
		h.send(t, beat("gone", "svc-1", "edge", 1))
		h.sync(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		began := time.Now()
		if behind, err := h.reg.Wait(ctx, "svc-1", "edge", 2); err != nil {
			t.Fatalf("Wait = %v, %v; want nil once the node went stale", views(behind), err)
		}
		// Far above LiveFor (300 ms), far below the 10 s context: the node went stale, and
		// Wait did not run into its deadline.
		if took := time.Since(began); took > 5*time.Second {
			t.Errorf("Wait took %v", took)
		}
	})

	t.Run("a node that stops stops holding it up", func(t *testing.T) {
		t.Parallel()
		h := start(t, fleet.Options{})
		h.send(t, beat("a", "svc-1", "edge", 1))
		h.sync(t)
		done := make(chan error, 1)
		go func() {
			_, err := h.reg.Wait(context.Background(), "svc-1", "edge", 2)
			done <- err
		}()
		stop := beat("a", "svc-1", "edge", 1)
		stop.Stopping = true
		h.send(t, stop)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Wait = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Wait did not return after the node stopped")
		}
	})

	t.Run("no nodes", func(t *testing.T) {
		t.Parallel()
		h := start(t, fleet.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if behind, err := h.reg.Wait(ctx, "svc-1", "edge", 100); err != nil || behind != nil {
			t.Errorf("Wait with no nodes = %v, %v; want nil, nil", behind, err)
		}
		var none *fleet.Registry
		if behind, err := none.Wait(ctx, "svc-1", "edge", 100); err != nil || behind != nil || none.Nodes("svc-1", "") != nil {
			t.Errorf("a nil Registry waited or knew nodes: %v, %v", behind, err)
		}
	})
}

// TestHeartbeatsAcrossNATSRestart kills the NATS server under the Registry and starts another
// one (a new server identity, the same address and store): core NATS keeps no subscription
// across that, so heartbeats arrive again only because the client sends its subscription
// anew when it reconnects.
func TestHeartbeatsAcrossNATSRestart(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	auth, err := natsembed.NewAuth() // the same credentials across the restart
	if err != nil {
		t.Fatal(err)
	}
	startNATS := func(listen string) *natsembed.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ns, err := natsembed.Start(ctx, natsembed.Options{Listen: listen, StoreDir: store, Auth: &auth})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	ns := startNATS("127.0.0.1:0")
	url := ns.ClientURL()
	conn := func() *nats.Conn {
		// As management and the gateway connect: reconnecting for ever.
		nc, err := nats.Connect(url, ns.UserInfo(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	reg := fleet.New(fleet.Options{Keys: gatewaykeystest.Auth{}})
	sub, err := reg.Subscribe(conn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	h := &harness{reg: reg, pub: conn()}
	revision := func() int64 {
		for _, n := range reg.Nodes("svc", "gw") {
			return n.Revision
		}
		return 0
	}

	h.send(t, beat("n1", "svc", "gw", 1))
	eventually(t, "the first heartbeat arrives", func() bool { return revision() == 1 })
	ns.Shutdown()
	ns = startNATS(strings.TrimPrefix(url, "nats://"))
	t.Cleanup(ns.Shutdown)
	// The node keeps reporting; a heartbeat sent while its connection is down waits in the
	// client's reconnect buffer.
	eventually(t, "a heartbeat after the restart arrives", func() bool {
		raw, err := json.Marshal(beat("n1", "svc", "gw", 2))
		if err != nil {
			t.Fatal(err)
		}
		_ = h.pub.PublishMsg(signed(bus.HeartbeatSubject("svc", "gw"), raw)) // one per poll until one arrives
		return revision() == 2
	})
}

// signed is a message on subject with data, authenticated as a node of the gateway the data
// names (when it is a heartbeat) would: with that gateway's node key.
func signed(subject string, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	var hb configwire.Heartbeat
	if json.Unmarshal(data, &hb) == nil {
		m.Header.Set(bus.HeaderNodeAuth, gatewaykeystest.NodeKey(hb.ServiceID, hb.Gateway).Sign(subject, data))
	}
	return m
}

// testSigningKey signs the tests' live-connection requests.
var testSigningKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
