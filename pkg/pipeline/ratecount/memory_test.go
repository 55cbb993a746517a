package ratecount

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testNow is the start of the tests' clock.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock for counters.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

type countResult struct {
	allowed   bool
	remaining int64
	retry     time.Duration
}

func TestSlidingWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock(testNow) // testNow starts a 10 s bucket
	m := NewMemory(WithClock(clock.now))
	call := func(n int64) countResult {
		a, r, d := m.Sliding(ctx, "k", 3, 10*time.Second, n)
		return countResult{a, r, d}
	}
	steps := []struct {
		name    string
		advance time.Duration
		n       int64
		want    countResult
	}{
		{name: "first", n: 1, want: countResult{true, 2, 0}},
		{name: "second", n: 1, want: countResult{true, 1, 0}},
		{name: "peek does not count", n: 0, want: countResult{true, 1, 0}},
		{name: "third", n: 1, want: countResult{true, 0, 0}},
		// Full bucket: one call fits once a third of it has slid out of the window, 10 s + 10/3 s.
		{name: "fourth refused", n: 1, want: countResult{false, 0, 13333333334 * time.Nanosecond}},
		{name: "peek at the limit", n: 0, want: countResult{false, 0, 13333333334 * time.Nanosecond}},
		{name: "next bucket, previous still weighs fully", advance: 10 * time.Second, n: 1, want: countResult{false, 0, 3333333334 * time.Nanosecond}},
		{name: "half of the previous bucket has slid out", advance: 5 * time.Second, n: 1, want: countResult{true, 0, 0}},
		{name: "two windows later everything is forgotten", advance: 20 * time.Second, n: 3, want: countResult{true, 0, 0}},
		{name: "more than the limit never fits", n: 4, want: countResult{false, 0, 10 * time.Second}},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		if got := call(st.n); got != st.want {
			t.Fatalf("%s: got %+v, want %+v", st.name, got, st.want)
		}
	}
}

// TestSlidingRetryAfter checks that retryAfter is exact: a call refused now fits after
// retryAfter and not a millisecond before.
func TestSlidingRetryAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		limit  int64
		offset time.Duration // where in the bucket the calls are made
		window time.Duration
	}{
		{5, 0, time.Minute}, {5, 20 * time.Second, time.Minute}, {1, 59 * time.Second, time.Minute}, {100, 3 * time.Second, 10 * time.Second},
	} {
		t.Run(fmt.Sprintf("%d/%v@%v", tc.limit, tc.window, tc.offset), func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock(testNow.Add(tc.offset))
			m := NewMemory(WithClock(clock.now))
			for i := int64(0); i < tc.limit; i++ {
				if ok, _, _ := m.Sliding(ctx, "k", tc.limit, tc.window, 1); !ok {
					t.Fatalf("call %d refused", i+1)
				}
			}
			ok, _, retry := m.Sliding(ctx, "k", tc.limit, tc.window, 1)
			if ok || retry <= 0 {
				t.Fatalf("over the limit: allowed=%v retry=%v", ok, retry)
			}
			clock.advance(retry - time.Millisecond)
			if ok, _, _ := m.Sliding(ctx, "k", tc.limit, tc.window, 0); ok {
				t.Errorf("a call fits %v before retryAfter", time.Millisecond)
			}
			clock.advance(time.Millisecond)
			if ok, _, _ := m.Sliding(ctx, "k", tc.limit, tc.window, 1); !ok {
				t.Errorf("a call does not fit after retryAfter %v", retry)
			}
		})
	}
}

func TestFixedWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newFakeClock(testNow)
	m := NewMemory(WithClock(clock.now))
	start := testNow.Add(-10 * time.Minute)
	call := func(key string, period time.Duration, start time.Time, n int64) countResult {
		a, r, d := m.Fixed(ctx, key, 2, period, start, n)
		return countResult{a, r, d}
	}
	steps := []struct {
		name    string
		advance time.Duration
		key     string
		period  time.Duration
		start   time.Time
		n       int64
		want    countResult
	}{
		{name: "first", key: "a", period: time.Hour, start: start, n: 1, want: countResult{true, 1, 0}},
		{name: "second", key: "a", period: time.Hour, start: start, n: 1, want: countResult{true, 0, 0}},
		{name: "refused until the period ends", key: "a", period: time.Hour, start: start, n: 1, want: countResult{false, 0, 50 * time.Minute}},
		{name: "new period", advance: 50 * time.Minute, key: "a", period: time.Hour, start: start, n: 2, want: countResult{true, 0, 0}},
		{name: "start in year 1", key: "b", period: 300 * time.Second, start: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), n: 3, want: countResult{false, 2, 300 * time.Second}},
		{name: "forever", key: "c", period: 0, start: start, n: 2, want: countResult{true, 0, 0}},
		{name: "forever, much later", advance: 1000 * time.Hour, key: "c", period: 0, start: start, n: 1, want: countResult{false, 0, 0}},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		if got := call(st.key, st.period, st.start, st.n); got != st.want {
			t.Fatalf("%s: got %+v, want %+v", st.name, got, st.want)
		}
	}
}

// TestCountersConcurrent checks that limits hold exactly under concurrent callers.
func TestCountersConcurrent(t *testing.T) {
	t.Parallel()
	const limit, workers, calls = 1000, 32, 100
	m := NewMemory()
	for _, kind := range []string{"sliding", "fixed"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range calls {
						var ok bool
						if kind == "sliding" {
							ok, _, _ = m.Sliding(context.Background(), "shared-sliding", limit, time.Hour, 1)
						} else {
							ok, _, _ = m.Fixed(context.Background(), "shared-fixed", limit, 0, time.Time{}, 1)
						}
						if ok {
							allowed.Add(1)
						}
						// Unrelated keys on the same shards at the same time.
						m.Sliding(context.Background(), fmt.Sprintf("other-%d-%d", w, i), 1, time.Second, 1)
					}
				})
			}
			wg.Wait()
			if got := allowed.Load(); got != limit {
				t.Errorf("%d calls allowed, want exactly %d", got, limit)
			}
		})
	}
}

func TestCountersBoundedMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("cap", func(t *testing.T) {
		t.Parallel()
		m := NewMemory(WithMaxKeys(128))
		for i := range 10000 {
			m.Sliding(ctx, fmt.Sprintf("k%d", i), 10, time.Minute, 1)
		}
		if n := m.Len(); n > 128 {
			t.Errorf("%d keys held, want at most 128", n)
		}
	})
	t.Run("expired keys go first", func(t *testing.T) {
		t.Parallel()
		clock := newFakeClock(testNow)
		m := NewMemory(WithClock(clock.now), WithMaxKeys(2*counterShards))
		// Three keys on one shard, which holds two.
		var keys []string
		target := m.shard("k0")
		for i := 0; len(keys) < 3; i++ {
			if k := fmt.Sprintf("k%d", i); m.shard(k) == target {
				keys = append(keys, k)
			}
		}
		idle, live, fresh := keys[0], keys[1], keys[2]
		m.Sliding(ctx, idle, 1, time.Second, 1)
		clock.advance(time.Minute)
		if ok, _, _ := m.Sliding(ctx, live, 1, time.Hour, 1); !ok {
			t.Fatal("live key refused")
		}
		m.Sliding(ctx, fresh, 1, time.Second, 1) // the shard is full: the idle key is swept
		if ok, _, _ := m.Sliding(ctx, live, 1, time.Hour, 1); ok {
			t.Error("the live key was evicted: its limit restarted")
		}
		target.mu.Lock()
		_, idleHeld := target.m[idle]
		target.mu.Unlock()
		if idleHeld {
			t.Error("the expired key is still held")
		}
	})
}
