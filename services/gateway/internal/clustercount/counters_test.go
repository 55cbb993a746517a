package clustercount_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/gateway/internal/clustercount"
	"gatehouse.dev/pkg/pipeline/ratecount"
)

// newCounters returns Counters over n's connection, of testService unless opt names another,
// waiting until they count through NATS.
func newCounters(t *testing.T, n *node, opt clustercount.CountersOptions) *clustercount.Counters {
	t.Helper()
	opt.JetStream = n.jetStream
	if opt.ServiceID == nil {
		opt.ServiceID = serviceID(testService)
	}
	c := clustercount.NewCounters(opt)
	waitRemote(t, c)
	return c
}

// waitRemote waits until a call of c is decided through NATS.
func waitRemote(t *testing.T, c *clustercount.Counters) {
	t.Helper()
	eventually(t, 5*time.Second, "counting through NATS", func() bool {
		before := c.Fallbacks()
		c.Fixed(t.Context(), "probe", 1, 0, time.Time{}, 0)
		c.Sliding(t.Context(), "probe", 1, time.Second, 0)
		return c.Fallbacks() == before
	})
}

type decision struct {
	Allowed   bool
	Remaining int64
	Retry     bool // retryAfter > 0
}

// TestCountersMatchMemory checks that one node's cluster counters decide as the in-memory ones.
func TestCountersMatchMemory(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	c := newCounters(t, connect(t, srv), clustercount.CountersOptions{Timeout: 2 * time.Second})
	calls := []struct{ limit, n int64 }{{5, 0}, {5, 2}, {5, 0}, {5, 3}, {5, 0}, {5, 1}, {6, 1}, {6, 2}, {10, 0}, {10, 20}, {10, 4}}
	tests := []struct {
		name string
		call func(cs ratecount.Counters, ctx context.Context, key string, limit, n int64) (bool, int64, time.Duration)
	}{
		{"sliding", func(cs ratecount.Counters, ctx context.Context, key string, limit, n int64) (bool, int64, time.Duration) {
			return cs.Sliding(ctx, key, limit, time.Hour, n)
		}},
		{"fixed", func(cs ratecount.Counters, ctx context.Context, key string, limit, n int64) (bool, int64, time.Duration) {
			return cs.Fixed(ctx, key, limit, 0, time.Time{}, n)
		}},
		{"fixed period", func(cs ratecount.Counters, ctx context.Context, key string, limit, n int64) (bool, int64, time.Duration) {
			return cs.Fixed(ctx, key, limit, 24*time.Hour, time.Now().Add(-time.Hour), n)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := ratecount.NewMemory()
			var want, got []decision
			before := c.Fallbacks()
			for _, call := range calls {
				ok, rem, retry := tc.call(mem, t.Context(), "k "+tc.name, call.limit, call.n)
				want = append(want, decision{ok, rem, retry > 0})
				ok, rem, retry = tc.call(c, t.Context(), "k "+tc.name, call.limit, call.n)
				got = append(got, decision{ok, rem, retry > 0})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decisions (-memory +cluster):\n%s", diff)
			}
			if n := c.Fallbacks() - before; n != 0 {
				t.Errorf("%d calls counted locally", n)
			}
		})
	}
}

// TestCountersShareLimit runs three nodes against one rate limit of 100 calls per 2 s: the
// fleet admits within 10 % of 100 calls per window, where separate nodes would admit 300.
func TestCountersShareLimit(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	const (
		limit   = 100
		window  = 2 * time.Second
		windows = 3
		workers = 4 // per node
	)
	var nodes []*clustercount.Counters
	for range 3 {
		// A generous timeout: a call that fell back to local counting would spoil the count.
		nodes = append(nodes, newCounters(t, connect(t, srv), clustercount.CountersOptions{Timeout: 2 * time.Second}))
	}
	var fallbacks int64
	for _, c := range nodes {
		fallbacks -= c.Fallbacks()
	}

	// Start at a window boundary, so that every window counted is whole. This sleep stays:
	// the windows are the wall clock's, and a late wake-up only shortens the first window's
	// head, which the workers' demand (far above the limit) still fills.
	first := time.Now().UnixNano()/int64(window) + 1
	time.Sleep(time.Until(time.Unix(0, first*int64(window))))
	end := time.Unix(0, (first+windows)*int64(window))

	var mu sync.Mutex
	allowed := make(map[int64]int)
	var wg sync.WaitGroup
	for _, c := range nodes {
		for range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					ok, _, _ := c.Sliding(t.Context(), "rl|policy|sub", limit, window, 1)
					at := time.Now().UnixNano() / int64(window)
					if ok && at < first+windows {
						mu.Lock()
						allowed[at]++
						mu.Unlock()
					}
					time.Sleep(2 * time.Millisecond) // paces the demand; stays: a slow machine still asks far more than limit per window
				}
			})
		}
	}
	wg.Wait()
	for _, c := range nodes {
		fallbacks += c.Fallbacks()
	}
	if fallbacks != 0 {
		t.Errorf("%d calls counted locally", fallbacks)
	}
	for w := first; w < first+windows; w++ {
		if n := allowed[w]; n < limit*9/10 || n > limit*11/10 {
			t.Errorf("window %d admitted %d calls, want %d ± 10 %%", w-first, n, limit)
		}
	}
	t.Logf("admitted per window: %v", allowed)
}

// TestFirstCallsCountForTheFleet checks that the very first call of a node, made while its KV
// buckets are still being bound, is counted through NATS rather than on the node alone.
func TestFirstCallsCountForTheFleet(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	var got []bool
	var fallbacks int64
	for range 3 {
		c := clustercount.NewCounters(clustercount.CountersOptions{JetStream: connect(t, srv).jetStream, ServiceID: serviceID(testService),
			Timeout: 2 * time.Second})
		ok, _, _ := c.Fixed(t.Context(), "q|first", 2, 0, time.Time{}, 1)
		got = append(got, ok)
		fallbacks += c.Fallbacks()
	}
	if diff := cmp.Diff([]bool{true, true, false}, got); diff != "" {
		t.Errorf("first calls of three nodes against a quota of 2 (-want +got):\n%s", diff)
	}
	if fallbacks != 0 {
		t.Errorf("%d calls counted locally", fallbacks)
	}
}

// TestQuotaSurvivesRestart spends a quota through three nodes, replaces all of them and
// restarts NATS: the new nodes see what the old ones spent.
func TestQuotaSurvivesRestart(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	const limit, period = 50, time.Hour
	start := time.Now().Add(-10 * time.Minute)
	quota := func(c *clustercount.Counters, n int64) (bool, int64, time.Duration) {
		return c.Fixed(t.Context(), "q|policy|sub", limit, period, start, n)
	}
	var wg sync.WaitGroup
	for range 3 {
		n := connect(t, srv)
		c := newCounters(t, n, clustercount.CountersOptions{Timeout: 2 * time.Second})
		wg.Go(func() {
			defer n.nc.Close()
			for range 10 {
				if ok, _, _ := quota(c, 1); !ok {
					t.Error("call rejected within the quota")
				}
			}
		})
	}
	wg.Wait()

	srv.stop()
	srv.start()

	var fresh []*clustercount.Counters
	for range 3 {
		fresh = append(fresh, newCounters(t, connect(t, srv), clustercount.CountersOptions{Timeout: 2 * time.Second}))
	}
	if ok, rem, _ := quota(fresh[0], 0); !ok || rem != limit-30 {
		t.Fatalf("after restart: allowed %v, remaining %d; want true, %d", ok, rem, limit-30)
	}
	for i := range limit - 30 {
		if ok, _, _ := quota(fresh[i%3], 1); !ok {
			t.Fatalf("call %d of the remaining quota rejected", i)
		}
	}
	ok, rem, retry := quota(fresh[2], 1)
	want := time.Until(start.Add(period))
	if ok || rem != 0 || retry < want-time.Minute || retry > want+time.Second {
		t.Errorf("over quota: allowed %v, remaining %d, retry after %v; want false, 0, about %v", ok, rem, retry, want)
	}
}

// TestCountersFallBackWhileNATSIsDown stops NATS under a node: calls stay fast, counted on the
// node, and go back to NATS when it returns.
func TestCountersFallBackWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	n := connect(t, srv)
	// Each call gives NATS at most Timeout: none may block on the outage itself (the client
	// reconnecting), which would take seconds. The bound is far above Timeout so that a
	// loaded machine does not miss it.
	const timeout, bound = 50 * time.Millisecond, 5 * time.Second
	c := newCounters(t, n, clustercount.CountersOptions{Backoff: 100 * time.Millisecond, Timeout: timeout})
	other := newCounters(t, connect(t, srv), clustercount.CountersOptions{Timeout: 2 * time.Second})

	srv.stop()
	before := c.Fallbacks()
	for i := range 20 {
		begin := time.Now()
		ok, _, _ := c.Fixed(t.Context(), "q|down", 10, 0, time.Time{}, 1)
		if took := time.Since(begin); took >= bound {
			t.Errorf("call %d took %v with NATS down: it waited for the outage, not for Timeout", i, took)
		}
		if want := i < 10; ok != want {
			t.Errorf("call %d allowed %v, want %v (local limit)", i, ok, want)
		}
	}
	if got := c.Fallbacks() - before; got != 20 {
		t.Errorf("%d calls counted locally, want 20", got)
	}

	srv.start()
	// Back on NATS, calls count for the fleet again. (Under load a call may still miss the
	// 50 ms timeout and count locally: retry until two go through.)
	eventually(t, 5*time.Second, "counting through NATS again", func() bool {
		before := c.Fallbacks()
		c.Fixed(t.Context(), "q|up", 100, 0, time.Time{}, 1)
		c.Sliding(t.Context(), "rl|up", 100, time.Minute, 1)
		return c.Fallbacks() == before
	})
	waitRemote(t, other)
	if _, rem, _ := other.Fixed(t.Context(), "q|up", 100, 0, time.Time{}, 0); rem == 100 {
		t.Error("the other node sees none of the quota's calls")
	}
	if _, rem, _ := other.Sliding(t.Context(), "rl|up", 100, time.Minute, 0); rem == 100 {
		t.Error("the other node sees none of the rate limit's calls")
	}
}

// TestCountersExpire checks that the keys of windows and periods that are over leave the
// buckets, and those of quotas that never renew stay.
func TestCountersExpire(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	n := connect(t, srv)
	c := newCounters(t, n, clustercount.CountersOptions{Timeout: 2 * time.Second})
	c.Sliding(t.Context(), "rl|short", 10, time.Second, 1)
	c.Fixed(t.Context(), "q|short", 10, time.Second, time.Now(), 1)
	c.Fixed(t.Context(), "q|forever", 10, 0, time.Time{}, 1)
	keys := func(bucket string) int {
		kv, err := n.jetStream().KeyValue(t.Context(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		lister, err := kv.ListKeys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		count := 0
		for range lister.Keys() {
			count++
		}
		return count
	}
	// The probes of newCounters wrote nothing, so each bucket holds the keys above.
	if r, q := keys(clustercount.DefaultRateBucket), keys(clustercount.DefaultQuotaBucket); r != 1 || q != 2 {
		t.Fatalf("buckets hold %d rate and %d quota keys, want 1 and 2", r, q)
	}
	eventually(t, 8*time.Second, "expired keys leaving", func() bool {
		return keys(clustercount.DefaultRateBucket) == 0 && keys(clustercount.DefaultQuotaBucket) == 1
	})
	if ok, rem, _ := c.Fixed(t.Context(), "q|forever", 10, 0, time.Time{}, 0); !ok || rem != 9 {
		t.Errorf("quota that never renews: allowed %v, remaining %d; want true, 9", ok, rem)
	}
}

// TestCountersShared checks what Shared reports: false until the node knows NATS and its
// buckets are bound, true once Prepare has bound them, false while NATS is down.
func TestCountersShared(t *testing.T) {
	t.Parallel()
	srv := startNATS(t)
	n := connect(t, srv)
	js := n.js.Swap(nil) // NATS not known yet, as before a node's first snapshot
	c := clustercount.NewCounters(clustercount.CountersOptions{JetStream: n.jetStream, ServiceID: serviceID(testService), Timeout: 2 * time.Second})
	c.Prepare(t.Context())
	if c.Shared() {
		t.Fatal("Shared before NATS is known")
	}
	n.js.Store(js)
	c.Prepare(t.Context())
	eventually(t, 5*time.Second, "Shared after Prepare", c.Shared)
	before := c.Fallbacks()
	c.Fixed(t.Context(), "q|shared", 10, 0, time.Time{}, 1)
	if c.Fallbacks() != before {
		t.Error("a call counted locally while Shared")
	}

	// A restarted server lost the memory-stored rate bucket: the counters bind again, as
	// the gateway has them do while they are not shared, before they say they are.
	srv.stop()
	eventually(t, 5*time.Second, "not Shared with NATS down", func() bool { return !c.Shared() })
	srv.start()
	eventually(t, 10*time.Second, "Shared again once NATS is back", func() bool {
		if c.Shared() {
			return true
		}
		c.Prepare(t.Context())
		return false
	})
	before = c.Fallbacks()
	if ok, _, _ := c.Sliding(t.Context(), "rl|after-restart", 10, time.Minute, 1); !ok || c.Fallbacks() != before {
		t.Errorf("first rate-limit call after NATS restarted: allowed %v, counted locally %v", ok, c.Fallbacks() != before)
	}
}
