package heartbeat_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/gateway/internal/heartbeat"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// startNATS runs a NATS server in-process on a free port and returns its client URL.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return ns.ClientURL()
}

// listener collects the heartbeats published on a server.
type listener struct {
	ch chan configwire.Heartbeat
}

func listen(t *testing.T, url string) *listener {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l := &listener{ch: make(chan configwire.Heartbeat, 1024)}
	_, err = nc.Subscribe(bus.HeartbeatSubjects, func(m *nats.Msg) {
		var hb configwire.Heartbeat
		if err := json.Unmarshal(m.Data, &hb); err != nil {
			t.Errorf("undecodable heartbeat %q: %v", m.Data, err)
			return
		}
		if want := bus.HeartbeatSubject(hb.ServiceID, hb.Gateway); m.Subject != want {
			t.Errorf("heartbeat on %q, want %q", m.Subject, want)
		}
		if err := hb.Validate(); err != nil {
			t.Errorf("published heartbeat does not validate: %v", err)
		}
		if err := testNodeKey.Verify(m.Subject, m.Data, m.Header.Get(bus.HeaderNodeAuth)); err != nil {
			t.Errorf("heartbeat authentication: %v", err)
		}
		l.ch <- hb
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

// next returns the next heartbeat, failing the test if none arrives within d.
func (l *listener) next(t *testing.T, d time.Duration) configwire.Heartbeat {
	t.Helper()
	select {
	case hb := <-l.ch:
		return hb
	case <-time.After(d):
		t.Fatalf("no heartbeat within %v", d)
		return configwire.Heartbeat{}
	}
}

// none fails the test if a heartbeat arrives within d.
func (l *listener) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case hb := <-l.ch:
		t.Fatalf("unexpected heartbeat %+v", hb)
	case <-time.After(d):
	}
}

// node is a fake node state that tests change while the Publisher reads it.
type node struct {
	mu sync.Mutex
	st heartbeat.State
}

func (n *node) set(f func(*heartbeat.State)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(&n.st)
}

func (n *node) state() heartbeat.State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.st
}

// run starts p.Run and returns a function that stops it and returns Run's error.
func run(t *testing.T, p *heartbeat.Publisher) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

var ignoreTimes = cmpopts.IgnoreFields(configwire.Heartbeat{}, "Started", "Sent")

func TestPublisherReportsStateAndChanges(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	l := listen(t, url)
	n := &node{st: heartbeat.State{ServiceID: "svc-1", Gateway: "edge.eu", Revision: 7, Connections: 3, Healthy: true}}
	before := time.Now()
	p := heartbeat.New(nil, heartbeat.Options{Key: testKey, URLs: []string{url}, State: n.state, Interval: time.Hour,
		NodeID: "node-a", Version: "v1.2.3", Hostname: "gw-1"})
	stop := run(t, p)

	want := configwire.Heartbeat{NodeID: "node-a", ServiceID: "svc-1", Gateway: "edge.eu", Revision: 7, Connections: 3,
		Healthy: true, Interval: time.Hour, Version: "v1.2.3", Hostname: "gw-1"}
	first := l.next(t, 5*time.Second)
	if diff := cmp.Diff(want, first, ignoreTimes); diff != "" {
		t.Errorf("first heartbeat (-want +got):\n%s", diff)
	}
	if first.Started.Before(before.Add(-time.Second)) || first.Sent.Before(first.Started) {
		t.Errorf("started %v, sent %v: want started about now and sent after it", first.Started, first.Sent)
	}

	// An install is reported at once, not after the hour-long interval.
	n.set(func(s *heartbeat.State) {
		s.Revision, s.Healthy, s.LastError = 8, false, "policy on api 'echo' does not compile"
	})
	p.Notify()
	got := l.next(t, 2*time.Second)
	want.Revision, want.Healthy, want.LastError = 8, false, "policy on api 'echo' does not compile"
	if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
		t.Errorf("heartbeat after Notify (-want +got):\n%s", diff)
	}
	if !got.Started.Equal(first.Started) {
		t.Errorf("started changed from %v to %v", first.Started, got.Started)
	}

	// Stopping says goodbye.
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	last := l.next(t, 2*time.Second)
	want.Stopping = true
	if diff := cmp.Diff(want, last, ignoreTimes); diff != "" {
		t.Errorf("last heartbeat (-want +got):\n%s", diff)
	}
}

func TestPublisherInterval(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	l := listen(t, url)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	n := &node{st: heartbeat.State{ServiceID: "svc-1", Gateway: "edge", Revision: 1, Healthy: true}}
	p := heartbeat.New(nc, heartbeat.Options{Key: testKey, State: n.state, Interval: 50 * time.Millisecond})
	stop := run(t, p)
	var ids []string
	var sent []time.Time
	for i := 0; i < 4; i++ {
		n.set(func(s *heartbeat.State) { s.Connections = i })
		hb := l.next(t, 5*time.Second)
		ids, sent = append(ids, hb.NodeID), append(sent, hb.Sent)
	}
	if ids[0] == "" || ids[0] != ids[3] {
		t.Errorf("node ids %v: want one non-empty id for the process", ids)
	}
	// Management drops a heartbeat not sent after the node's last as a replay.
	for i := 1; i < len(sent); i++ {
		if !sent[i].After(sent[i-1]) {
			t.Errorf("heartbeat %d sent at %v, not after the one before (%v)", i, sent[i], sent[i-1])
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !nc.IsConnected() {
		t.Error("Run closed the connection it was given")
	}
}

func TestPublisherCoalescesBursts(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	l := listen(t, url)
	n := &node{st: heartbeat.State{ServiceID: "svc-1", Gateway: "edge", Healthy: true}}
	p := heartbeat.New(nil, heartbeat.Options{Key: testKey, URLs: []string{url}, State: n.state, Interval: time.Hour})
	run(t, p)
	l.next(t, 5*time.Second)

	const installs = 1000
	for i := 1; i <= installs; i++ {
		n.set(func(s *heartbeat.State) { s.Revision = int64(i) })
		p.Notify()
	}
	var got []int64
	deadline := time.After(500 * time.Millisecond)
collect:
	for {
		select {
		case hb := <-l.ch:
			got = append(got, hb.Revision)
		case <-deadline:
			break collect
		}
	}
	if len(got) == 0 || got[len(got)-1] != installs {
		t.Fatalf("revisions reported after a burst: %v, want the last to be %d", got, installs)
	}
	if len(got) > 3 {
		t.Errorf("a burst of %d installs sent %d heartbeats (%v), want them coalesced", installs, len(got), got)
	}
}

func TestPublisherWaitsForConfigurationAndConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		give func(t *testing.T, p *heartbeat.Publisher, url string) *nats.Conn
	}{
		{"SetURLs", func(t *testing.T, p *heartbeat.Publisher, url string) *nats.Conn {
			p.SetURLs([]string{url + ", "})
			return nil
		}},
		{"UseConn", func(t *testing.T, p *heartbeat.Publisher, url string) *nats.Conn {
			nc, err := nats.Connect(url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			p.UseConn(nc)
			return nc
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := startNATS(t)
			l := listen(t, url)
			n := &node{}
			p := heartbeat.New(nil, heartbeat.Options{Key: testKey, State: n.state, Interval: 20 * time.Millisecond})
			stop := run(t, p)

			// Nowhere to publish yet: nothing is sent, and Run must not fail.
			n.set(func(s *heartbeat.State) { s.ServiceID, s.Gateway, s.Revision = "svc-1", "edge", 4 })
			l.none(t, 100*time.Millisecond)

			// A connection arrives, but the node has no configuration loaded.
			n.set(func(s *heartbeat.State) { s.ServiceID, s.Gateway = "", "" })
			borrowed := tc.give(t, p, url)
			p.SetURLs([]string{"nats://127.0.0.1:1"}) // ignored: the first wins
			l.none(t, 100*time.Millisecond)

			n.set(func(s *heartbeat.State) { s.ServiceID, s.Gateway = "svc-1", "edge" })
			if hb := l.next(t, 5*time.Second); hb.Revision != 4 || hb.Gateway != "edge" {
				t.Errorf("heartbeat %+v, want revision 4 of gateway edge", hb)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if borrowed != nil && borrowed.IsClosed() {
				t.Error("Run closed the connection it borrowed")
			}
		})
	}
}

func TestPublisherBoundsStrings(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	l := listen(t, url)
	long := strings.Repeat("é", configwire.MaxHeartbeatErrorBytes) // 2 bytes each
	n := &node{st: heartbeat.State{ServiceID: "svc-1", Gateway: "edge", LastError: long}}
	p := heartbeat.New(nil, heartbeat.Options{Key: testKey, URLs: []string{url}, State: n.state, Hostname: strings.Repeat("h", 1000)})
	run(t, p)
	hb := l.next(t, 5*time.Second) // the listener also checks hb.Validate()
	if len(hb.LastError) > configwire.MaxHeartbeatErrorBytes || !utf8.ValidString(hb.LastError) || !strings.HasPrefix(long, hb.LastError) {
		t.Errorf("lastError of %d bytes (valid UTF-8: %v): want a prefix of the error within %d bytes",
			len(hb.LastError), utf8.ValidString(hb.LastError), configwire.MaxHeartbeatErrorBytes)
	}
}

func TestPublisherMalformedURL(t *testing.T) {
	t.Parallel()
	p := heartbeat.New(nil, heartbeat.Options{Key: testKey, URLs: []string{"nats://[::1"}, State: func() heartbeat.State { return heartbeat.State{} }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Run(ctx); err == nil {
		t.Error("Run with a malformed URL = nil, want an error")
	}
}

// testNodeKey is the node key the tests' publishers authenticate with.
var testNodeKey = configwire.DeriveNodeKey("k1", []byte("root"), "svc", "gw", []byte("gateway key"))

func testKey() (configwire.NodeKey, bool) { return testNodeKey, true }
