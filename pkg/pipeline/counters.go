package pipeline

import (
	"context"
	"math"
	"sync"
	"time"
)

// MemoryCounters is the in-process Counters of one gateway node.
//
// Sliding windows use the two-bucket approximation: a counter keeps the calls of the current
// fixed bucket (one window long) and of the previous one, and estimates the calls in the
// window ending now as previous × (the share of the previous bucket still inside the window)
// + current. Memory per key is constant whatever the limit; within one bucket the count is
// exact, and across the boundary it assumes the previous bucket's calls were spread evenly.
//
// Fixed windows count calls in consecutive periods from a start time; a zero period is one
// period that never ends.
//
// Keys are spread over shards with their own locks. A key expires once its state can no
// longer affect a decision (two windows, or the end of its period) and is swept lazily; when a
// shard holds its share of MaxKeys live keys, arbitrary keys are evicted, which restarts their
// counts. MemoryCounters is safe for concurrent use.
type MemoryCounters struct {
	now         func() time.Time
	maxPerShard int
	shards      [counterShards]counterShard
}

const (
	counterShards = 64
	// defaultMaxKeys bounds the memory of the counters: about 100 bytes per key.
	defaultMaxKeys = 1 << 20
	// sweepEvery is how many updates a shard takes between sweeps of expired keys.
	sweepEvery = 1024
)

type counterShard struct {
	mu  sync.Mutex
	m   map[string]*counter
	ops int
}

// counter is the state of one key. For sliding windows idx is the current bucket (now /
// window) and prev/curr the counts of the previous and current bucket; for fixed windows idx
// is the period and curr its count.
type counter struct {
	size    int64 // window or period in nanoseconds (fixed: seconds, 0 = forever)
	idx     int64
	prev    int64
	curr    int64
	expires int64 // Unix nanoseconds; math.MaxInt64 = never
}

// MemoryOption configures NewMemoryCounters.
type MemoryOption func(*MemoryCounters)

// WithClock makes the counters read time from now instead of time.Now (for tests).
func WithClock(now func() time.Time) MemoryOption {
	return func(m *MemoryCounters) { m.now = now }
}

// WithMaxKeys bounds the number of keys held (default 1 048 576).
func WithMaxKeys(n int) MemoryOption {
	return func(m *MemoryCounters) { m.maxPerShard = max(n/counterShards, 1) }
}

// NewMemoryCounters returns empty in-memory counters.
func NewMemoryCounters(opts ...MemoryOption) *MemoryCounters {
	m := &MemoryCounters{now: time.Now, maxPerShard: defaultMaxKeys / counterShards}
	for _, o := range opts {
		o(m)
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*counter)
	}
	return m
}

var _ Counters = (*MemoryCounters)(nil)

func (m *MemoryCounters) shard(key string) *counterShard {
	// FNV-1a, inline so that hashing does not allocate.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &m.shards[h%counterShards]
}

// get returns the counter of key, creating it unless create is false (then it may be nil).
// The shard lock is held.
func (s *counterShard) get(key string, now int64, maxKeys int, create bool) *counter {
	c := s.m[key]
	if c != nil || !create {
		return c
	}
	s.ops++
	if s.ops >= sweepEvery || len(s.m) >= maxKeys {
		s.ops = 0
		for k, v := range s.m {
			if v.expires <= now {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < maxKeys {
				break
			}
			delete(s.m, k)
		}
	}
	c = &counter{}
	s.m[key] = c
	return c
}

// Sliding implements Counters with the two-bucket approximation.
func (m *MemoryCounters) Sliding(_ context.Context, key string, limit int64, window time.Duration, n int64) (bool, int64, time.Duration) {
	if window <= 0 {
		window = time.Second
	}
	now := m.now().UnixNano()
	w := int64(window)
	idx := now / w
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(key, now, m.maxPerShard, n > 0)
	var prev, curr int64
	if c != nil {
		if c.size != w || idx-c.idx > 1 || idx < c.idx-1 {
			c.size, c.idx, c.prev, c.curr = w, idx, 0, 0
		} else if idx == c.idx+1 {
			c.idx, c.prev, c.curr = idx, c.curr, 0
		}
		prev, curr = c.prev, c.curr
	}
	elapsed := now - idx*w
	weight := float64(w-elapsed) / float64(w)
	est := float64(prev)*weight + float64(curr)
	// n = 0 asks whether one more call would fit. The tolerance absorbs rounding in the
	// weight, so that a call fits exactly when retryAfter said it would.
	allowed := est+float64(max(n, 1)) <= float64(limit)+1e-9
	if allowed && n > 0 {
		c.curr += n
		c.expires = (idx + 2) * w
		est += float64(n)
	}
	remaining := max(limit-int64(math.Ceil(est-1e-9)), 0)
	if allowed {
		return true, remaining, 0
	}
	return false, remaining, slidingRetry(prev, curr, max(n, 1), limit, w, elapsed)
}

// slidingRetry returns how long until need calls fit: first as the previous bucket's weight
// decays, else after the current bucket becomes the previous one.
func slidingRetry(prev, curr, need, limit, w, elapsed int64) time.Duration {
	rest := w - elapsed // until the bucket boundary
	if room := float64(limit - curr - need); room >= 0 && prev > 0 {
		// prev × (rest - t) / w ≤ room
		t := float64(rest) - room*float64(w)/float64(prev)
		return time.Duration(math.Ceil(max(t, 0)))
	}
	room := float64(limit - need)
	if room < 0 {
		return time.Duration(w)
	}
	if curr == 0 {
		return time.Duration(rest)
	}
	// After the boundary: curr × (w - t) / w ≤ room.
	t := float64(w) - room*float64(w)/float64(curr)
	return time.Duration(rest) + time.Duration(math.Ceil(max(t, 0)))
}

// Fixed implements Counters. Periods are counted in whole seconds from start, so that starts
// centuries back (quota-by-key's default 0001-01-01) do not overflow.
func (m *MemoryCounters) Fixed(_ context.Context, key string, limit int64, period time.Duration, start time.Time, n int64) (bool, int64, time.Duration) {
	t := m.now()
	now := t.UnixNano()
	var p, idx, expires int64 = 0, 0, math.MaxInt64
	var retry time.Duration
	if period > 0 {
		p = max(int64(period/time.Second), 1)
		diff := t.Unix() - start.Unix()
		idx = diff / p
		if diff%p < 0 {
			idx--
		}
		into := time.Duration(diff-idx*p)*time.Second + time.Duration(t.Nanosecond()-start.Nanosecond())
		retry = time.Duration(p)*time.Second - into
		if retry <= 0 {
			retry = time.Nanosecond
		}
		expires = now + int64(retry)
	}
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(key, now, m.maxPerShard, n > 0)
	var count int64
	if c != nil {
		if c.size != p || c.idx != idx {
			c.size, c.idx, c.curr = p, idx, 0
		}
		count = c.curr
	}
	allowed := count+max(n, 1) <= limit // n = 0: would one more call fit?
	if allowed && n > 0 {
		c.curr += n
		c.expires = expires
		count += n
	}
	remaining := max(limit-count, 0)
	if allowed {
		return true, remaining, 0
	}
	return false, remaining, retry
}

// Len returns the number of keys held, expired ones not yet swept included.
func (m *MemoryCounters) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
