package clustercount_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/clustercount"
)

// gateway is one node as the connection limit sees it: its Connections and its open
// connections of each counter, oldest first.
type gateway struct {
	id    string
	conns *clustercount.Connections
	nats  *node
	stop  func()

	mu      sync.Mutex
	open    map[string][]lease
	evicted []string // names of the connections OnEvict closed
}

type lease struct {
	name    string
	release func()
}

// startGateway runs a node's Connections, of testService unless opt names another, until the
// test ends or stop is called.
func startGateway(t *testing.T, srv *natsServer, id string, opt clustercount.ConnectionsOptions) *gateway {
	t.Helper()
	g := &gateway{id: id, nats: connect(t, srv), open: make(map[string][]lease)}
	opt.NodeID = id
	opt.JetStream = g.nats.jetStream
	if opt.ServiceID == nil {
		opt.ServiceID = serviceID(testService)
	}
	opt.OnEvict = g.evictOldest
	if opt.Timeout == 0 {
		opt.Timeout = 2 * time.Second // a local decision would spoil the counts under -race
	}
	var err error
	if g.conns, err = clustercount.NewConnections(opt); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.conns.Run(ctx) }()
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(g.stop)
	eventually(t, 5*time.Second, id+" sharing counts", g.conns.Shared)
	return g
}

// connect opens a connection named name of counter, if the limit allows.
func (g *gateway) connect(counter, name string, limit int) bool {
	ok, release := g.conns.Acquire(context.Background(), counter, limit)
	if ok {
		g.mu.Lock()
		g.open[counter] = append(g.open[counter], lease{name, release})
		g.mu.Unlock()
	}
	return ok
}

// evictOldest is OnEvict: it closes the oldest connection of counter.
func (g *gateway) evictOldest(counter string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.open[counter]
	if len(l) == 0 {
		return false
	}
	g.open[counter] = l[1:]
	g.evicted = append(g.evicted, l[0].name)
	l[0].release()
	return true
}

func (g *gateway) closeAll(counter string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.open[counter] {
		l.release()
	}
	delete(g.open, counter)
}

// TestConnectionLimitAcrossNodes races ten connections per node on three nodes against a
// fleet-wide limit of five.
func TestConnectionLimitAcrossNodes(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	const limit = 5
	var nodes []*gateway
	for i := range 3 {
		nodes = append(nodes, startGateway(t, srv, fmt.Sprintf("node-%d", i), clustercount.ConnectionsOptions{}))
	}
	for round := range 3 {
		counter := "conn|policy|sub"
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted := 0
		for _, g := range nodes {
			for i := range 10 {
				wg.Go(func() {
					if g.connect(counter, fmt.Sprintf("%s/%d", g.id, i), limit) {
						mu.Lock()
						admitted++
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		if admitted != limit {
			t.Errorf("round %d: %d connections admitted, want %d", round, admitted, limit)
		}
		for _, g := range nodes {
			// Rejected connections count until their nodes publish the rejection.
			eventually(t, 2*time.Second, g.id+" counting the admitted connections", func() bool { return g.conns.Count(counter) == admitted })
		}
		for _, g := range nodes {
			g.closeAll(counter)
		}
		for _, g := range nodes {
			eventually(t, 2*time.Second, g.id+" seeing the connections closed", func() bool { return g.conns.Count(counter) == 0 })
		}
	}
}

// TestConnectionsOfDeadNodeExpire stops a node holding connections: the others count them
// until the bucket's TTL drops its counts.
func TestConnectionsOfDeadNodeExpire(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	opt := clustercount.ConnectionsOptions{Refresh: 100 * time.Millisecond, TTL: 600 * time.Millisecond}
	alive := startGateway(t, srv, "alive", opt)
	dead := startGateway(t, srv, "dead", opt)
	const counter, limit = "conn|policy|key", 4
	for i := range 3 {
		if !dead.connect(counter, fmt.Sprint("dead/", i), limit) {
			t.Fatalf("connection %d rejected", i)
		}
	}
	dead.stop()
	dead.nats.nc.Close()
	diedAt := time.Now()

	var got []bool
	for i := range 2 {
		got = append(got, alive.connect(counter, fmt.Sprint("alive/", i), limit))
	}
	if diff := cmp.Diff([]bool{true, false}, got); diff != "" {
		t.Errorf("right after the node died (-want +got):\n%s", diff)
	}
	eventually(t, 3*time.Second, "dead node's connections expiring", func() bool {
		return alive.connect(counter, "alive/late", limit)
	})
	if took := time.Since(diedAt); took < 400*time.Millisecond {
		t.Errorf("dead node's connections stopped counting after %v, before its TTL", took)
	}
	for i := range 3 {
		alive.connect(counter, fmt.Sprint("alive/more", i), limit)
	}
	if got := alive.conns.Count(counter); got != limit {
		t.Errorf("alive counts %d connections, want %d", got, limit)
	}
}

// TestEvictOldest fills a limit across three nodes and makes room for new connections by
// closing the oldest ones, wherever they are.
func TestEvictOldest(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	nodes := map[string]*gateway{}
	for _, id := range []string{"a", "b", "c"} {
		nodes[id] = startGateway(t, srv, id, clustercount.ConnectionsOptions{})
	}
	const counter, limit = "conn|policy|sub", 5
	for _, name := range []string{"b/1", "a/1", "a/2", "c/1", "c/2"} {
		if !nodes[name[:1]].connect(counter, name, limit) {
			t.Fatalf("%s rejected", name)
		}
		// This sleep stays: it spaces the start times that eviction orders by. A slow machine
		// only spaces them further.
		time.Sleep(5 * time.Millisecond)
	}
	c := nodes["c"]
	for i := range 4 {
		name := fmt.Sprint("c/new", i)
		if c.connect(counter, name, limit) {
			t.Fatalf("%s admitted over the limit", name)
		}
		if !c.conns.EvictOldest(t.Context(), counter) {
			t.Fatalf("eviction %d closed nothing", i)
		}
		if !c.connect(counter, name, limit) {
			t.Fatalf("%s rejected after an eviction", name)
		}
	}
	got := map[string][]string{}
	for id, g := range nodes {
		g.mu.Lock()
		got[id] = g.evicted
		g.mu.Unlock()
	}
	want := map[string][]string{"a": {"a/1", "a/2"}, "b": {"b/1"}, "c": {"c/1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("evicted (-want +got):\n%s", diff)
	}
	if n := c.conns.Count(counter); n != limit {
		t.Errorf("c counts %d connections, want %d", n, limit)
	}
}

// TestConnectionsPrepare checks that Prepare makes a running Connections follow the fleet as
// soon as the node has a JetStream context, not at its next poll.
func TestConnectionsPrepare(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	n := connect(t, srv)
	js := n.js.Swap(nil)
	// Run looks for the JetStream context every Refresh/4: 15 s here.
	var looked atomic.Int32
	conns, err := clustercount.NewConnections(clustercount.ConnectionsOptions{NodeID: "prepared", ServiceID: serviceID(testService),
		JetStream: func() jetstream.JetStream { looked.Add(1); return n.jetStream() }, Refresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- conns.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 5*time.Second, "Run's first look for NATS", func() bool { return looked.Load() > 0 })
	// Run found nothing and waits for its next poll, 15 s away.
	if conns.Shared() {
		t.Fatal("Shared before NATS is known")
	}
	n.js.Store(js)
	start := time.Now()
	conns.Prepare()
	eventually(t, 5*time.Second, "Shared after Prepare", conns.Shared)
	t.Logf("shared %v after Prepare", time.Since(start).Round(time.Millisecond))
}
