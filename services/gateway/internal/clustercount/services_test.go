package clustercount_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/gateway/internal/clustercount"
	"gatehouse.dev/pkg/bus"
)

const otherService = "5f0c9a4e-8f6b-4b1a-b1f2-3c4d5e6f7a8b"

// TestServicesDoNotShareCounts runs nodes of two services on one NATS with the same limit
// keys: each service spends its own rate limit, quota and connection limit, evictions stay
// within a service, and every key in the buckets is under its service's token (what the bus
// confines a node to, issue 12).
func TestServicesDoNotShareCounts(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	opt := func(svc string) clustercount.CountersOptions {
		return clustercount.CountersOptions{ServiceID: serviceID(svc), Timeout: 2 * time.Second}
	}
	a1, a2 := newCounters(t, connect(t, srv), opt(testService)), newCounters(t, connect(t, srv), opt(testService))
	b := newCounters(t, connect(t, srv), opt(otherService))
	fallbacks := a1.Fallbacks() + a2.Fallbacks() + b.Fallbacks()

	quota := func(c *clustercount.Counters) bool {
		ok, _, _ := c.Fixed(t.Context(), "q|policy|sub", 2, 0, time.Time{}, 1)
		return ok
	}
	rate := func(c *clustercount.Counters) bool {
		ok, _, _ := c.Sliding(t.Context(), "rl|policy|sub", 1, time.Hour, 1)
		return ok
	}
	got := []bool{quota(a1), quota(a2), quota(a1), quota(b), quota(b), quota(b), rate(a1), rate(a2), rate(b)}
	want := []bool{true, true, false, true, true, false, true, false, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("quota of 2 (A, A, A, B, B, B) and rate limit of 1 (A, A, B) on the same keys (-want +got):\n%s", diff)
	}
	if n := a1.Fallbacks() + a2.Fallbacks() + b.Fallbacks() - fallbacks; n != 0 {
		t.Errorf("%d calls counted locally", n)
	}

	ga := startGateway(t, srv, "a", clustercount.ConnectionsOptions{ServiceID: serviceID(testService)})
	ga2 := startGateway(t, srv, "a2", clustercount.ConnectionsOptions{ServiceID: serviceID(testService)})
	gb := startGateway(t, srv, "b", clustercount.ConnectionsOptions{ServiceID: serviceID(otherService)})
	gb2 := startGateway(t, srv, "b2", clustercount.ConnectionsOptions{ServiceID: serviceID(otherService)})
	const counter = "conn|policy|sub"
	got = []bool{ga.connect(counter, "a/1", 1), gb.connect(counter, "b/1", 1), ga2.connect(counter, "a2/1", 1), gb2.connect(counter, "b2/1", 1)}
	if diff := cmp.Diff([]bool{true, true, false, false}, got); diff != "" {
		t.Errorf("connection limit of 1 (A, B, A, B) on the same counter (-want +got):\n%s", diff)
	}
	if n := ga2.conns.Count(counter); n != 1 {
		t.Errorf("a node of A counts %d connections, want A's 1", n)
	}
	if !gb2.conns.EvictOldest(t.Context(), counter) {
		t.Fatal("B's eviction closed nothing")
	}
	evicted := map[string][]string{}
	for _, g := range []*gateway{ga, ga2, gb, gb2} {
		g.mu.Lock()
		if len(g.evicted) > 0 {
			evicted[g.id] = g.evicted
		}
		g.mu.Unlock()
	}
	if diff := cmp.Diff(map[string][]string{"b": {"b/1"}}, evicted); diff != "" {
		t.Errorf("B's eviction closed (-want +got):\n%s", diff)
	}

	js := connect(t, srv).jetStream()
	for _, bucket := range []string{bus.RatesBucket, bus.QuotasBucket, bus.ConnectionsBucket} {
		kv, err := js.KeyValue(t.Context(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		lister, err := kv.ListKeys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for key := range lister.Keys() {
			if !strings.HasPrefix(key, bus.ServiceToken(testService)+".") && !strings.HasPrefix(key, bus.ServiceToken(otherService)+".") {
				t.Errorf("%s holds key %q, under neither service's token", bucket, key)
			}
		}
	}
}

// TestCountersWaitForTheService: before the node knows its service (its first snapshot) calls
// are counted locally and the counters are not shared; once it does, they count for the fleet.
func TestCountersWaitForTheService(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	var svc atomic.Value
	svc.Store("")
	c := clustercount.NewCounters(clustercount.CountersOptions{JetStream: connect(t, srv).jetStream, Timeout: 2 * time.Second,
		ServiceID: func() string { return svc.Load().(string) }})
	c.Prepare(t.Context())
	if ok, _, _ := c.Fixed(t.Context(), "q|early", 10, 0, time.Time{}, 1); !ok || c.Fallbacks() != 1 {
		t.Errorf("a call before the service is known: allowed %v, %d counted locally; want true, 1", ok, c.Fallbacks())
	}
	if c.Shared() {
		t.Error("Shared before the service is known")
	}
	svc.Store(testService)
	waitRemote(t, c)
	eventually(t, 5*time.Second, "Shared once the service is known", c.Shared)
}
