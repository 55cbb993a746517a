package fleet_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/gatewaykeys/gatewaykeystest"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// TestAttackForgedHeartbeat: a heartbeat advertising a node URL that is not authenticated with
// its gateway's node key (none, the key of another gateway, a key id management does not
// know, or a real authentication of other bytes) is dropped and counted, so the node is never
// listed and the test console never dials it.
func TestAttackForgedHeartbeat(t *testing.T) {
	t.Parallel()
	rej := &gatewaykeystest.Rejections{}
	h := start(t, fleet.Options{Rejected: rej.Add})
	forged := beat("evil", "svc", "victim", 1)
	forged.URL = "ws://attacker.example:8080"
	raw, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	subject := bus.HeartbeatSubject("svc", "victim")
	genuine := beat("evil", "svc", "victim", 1)
	genuineRaw, err := json.Marshal(genuine)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, auth, want string
	}{
		{"unsigned", "", "heartbeat unsigned"},
		// A node of gateway "mine" knows its own key, not the victim's.
		{"the key of another gateway", gatewaykeystest.NodeKey("svc", "mine").Sign(subject, raw), "heartbeat forged"},
		{"the key of another service", gatewaykeystest.NodeKey("svc2", "victim").Sign(subject, raw), "heartbeat forged"},
		{"an unknown key id", configwire.DeriveNodeKey("kother", []byte("test root"), "svc", "victim", []byte("gateway key")).Sign(subject, raw), "heartbeat forged"},
		{"the victim's authentication of other bytes", gatewaykeystest.NodeKey("svc", "victim").Sign(subject, genuineRaw), "heartbeat forged"},
		{"the victim's authentication on another subject", gatewaykeystest.NodeKey("svc", "victim").Sign(bus.HeartbeatSubject("svc", "other"), raw), "heartbeat forged"},
		{"garbage", "ktest.!!!", "heartbeat forged"},
	} {
		before := len(rej.List())
		m := &nats.Msg{Subject: subject, Data: raw, Header: nats.Header{}}
		if tc.auth != "" {
			m.Header.Set(bus.HeaderNodeAuth, tc.auth)
		}
		if err := h.pub.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		h.sync(t)
		if got := rej.List(); len(got) != before+1 || got[before] != tc.want {
			t.Errorf("%s: rejections %v, want %q added", tc.name, got[before:], tc.want)
		}
		if n := h.reg.Nodes("svc", ""); len(n) != 0 {
			t.Errorf("%s: listed %+v", tc.name, n)
		}
	}
}

// TestAttackForgedReply: a live-connection reply that is not authenticated with the node key of
// the gateway the answering node belongs to is left out, and counted.
func TestAttackForgedReply(t *testing.T) {
	t.Parallel()
	rej := &gatewaykeystest.Rejections{}
	h := start(t, fleet.Options{Rejected: rej.Add})
	h.send(t, beat("n1", "svc", "gw", 1))
	eventually(t, "n1 listed", func() bool { return len(h.reg.Nodes("svc", "")) == 1 })

	// The attacker sees the request and answers for n1 before it does, with a key of its own
	// gateway; n1 itself does not answer.
	sub, err := h.pub.Subscribe(bus.ConnectionsSubject("svc"), func(m *nats.Msg) {
		data, _ := json.Marshal(configwire.ConnectionsReply{Node: "n1", Gateway: "gw", Closed: 1000})
		r := &nats.Msg{Subject: m.Reply, Data: data, Header: nats.Header{}}
		r.Header.Set(bus.HeaderNodeAuth, gatewaykeystest.NodeKey("svc", "mine").Sign(m.Reply, data))
		_ = h.pub.PublishMsg(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.pub.Flush(); err != nil {
		t.Fatal(err)
	}
	nc := h.conn() // management's side of the request
	signer := configwire.NewSigner(testSigningKey)
	c := fleet.NewConnections(nc, h.reg, func() *configwire.Signer { return signer }, nil)
	n, err := c.Close(t.Context(), "svc", configwire.ConnectionFilter{Subscription: "s"})
	if err != nil || n != 0 {
		t.Errorf("Close = %d, %v; want 0 closed by a forged reply", n, err)
	}
	if got := rej.List(); !slices.Contains(got, "reply forged") {
		t.Errorf("rejections %v, want a forged reply", got)
	}
}

// TestAttackReplayedHeartbeat: a node's own authenticated heartbeat, captured and published
// again, is dropped and counted (issue 12): right away, after a newer one, after the node
// stopped, and after management forgot the node, so a replay never lists a node again; and a
// heartbeat sent more than MaxSkew from management's clock, either way, is dropped as stale.
func TestAttackReplayedHeartbeat(t *testing.T) {
	t.Parallel()
	rej := &gatewaykeystest.Rejections{}
	h := start(t, fleet.Options{Rejected: rej.Add, LiveFor: 100 * time.Millisecond, ForgetAfter: 300 * time.Millisecond})
	capture := func(hb configwire.Heartbeat) *nats.Msg {
		raw, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		return signed(bus.HeartbeatSubject(hb.ServiceID, hb.Gateway), raw)
	}
	// publish sends m, waits until the Registry handled it, and checks that it added want to
	// the rejections ("" for none) and that n1 is listed at revision listed (0: not listed).
	publish := func(what string, m *nats.Msg, want string, listed int64) {
		t.Helper()
		before := len(rej.List())
		if err := h.pub.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		h.sync(t)
		got := rej.List()[before:]
		if want == "" && len(got) != 0 || want != "" && !slices.Equal(got, []string{want}) {
			t.Errorf("%s: rejections %v, want %q", what, got, want)
		}
		var rev int64
		for _, n := range h.reg.Nodes("svc", "gw") {
			rev = n.Revision
		}
		if rev != listed {
			t.Errorf("%s: n1 listed at revision %d, want %d", what, rev, listed)
		}
	}

	first := capture(beat("n1", "svc", "gw", 1))
	publish("the genuine heartbeat", first, "", 1)
	publish("the same heartbeat again", first, "heartbeat replayed", 1)
	second := beat("n1", "svc", "gw", 2)
	publish("the node's next heartbeat", capture(second), "", 2)
	publish("the first heartbeat after the second", first, "heartbeat replayed", 2)
	stop := beat("n1", "svc", "gw", 2)
	stop.Stopping = true
	publish("the node stopping", capture(stop), "", 0)
	publish("the second heartbeat after the node stopped", capture(second), "heartbeat replayed", 0)

	// A node management forgets (LiveFor and ForgetAfter passed) is not listed again by a
	// replay of its last heartbeat, which is still within MaxSkew.
	last := capture(beat("n1", "svc", "gw", 3))
	publish("a node starting again under the same id", last, "", 3)
	eventually(t, "n1 forgotten", func() bool { return len(h.reg.Nodes("svc", "gw")) == 0 })
	publish("the forgotten node's last heartbeat again", last, "heartbeat replayed", 0)

	for _, off := range []time.Duration{-fleet.DefaultMaxSkew - time.Minute, fleet.DefaultMaxSkew + time.Minute} {
		hb := beat("n1", "svc", "gw", 4)
		hb.Sent = time.Now().Add(off)
		publish(fmt.Sprintf("a heartbeat sent %v from now", off), capture(hb), "heartbeat stale", 0)
	}
}
