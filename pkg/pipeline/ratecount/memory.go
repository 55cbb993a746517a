// Package ratecount counts calls for rate-limit and quota policies: the Counters a compiled
// pipeline uses, the window maths on one key's State, and Memory, the in-process Counters of
// one gateway node. A cluster-wide Counters (gateway/internal/clustercount) keeps the same
// State per key in a shared store and decides with the same State methods, so a node that
// falls back to Memory decides as the fleet would.
package ratecount

import (
	"context"
	"sync"
	"time"
)

// Counters hold rate-limit and quota state. It lives outside the compiled configuration,
// keyed by the policy's counter key, so a configuration swap does not reset limits.
type Counters interface {
	// Sliding counts n calls against limit in the sliding window ending now. When the call
	// would exceed the limit it is not counted, allowed is false and retryAfter says when one
	// call will fit again. With n = 0 nothing is counted and allowed reports whether one more
	// call would fit.
	Sliding(ctx context.Context, key string, limit int64, window time.Duration, n int64) (allowed bool, remaining int64, retryAfter time.Duration)
	// Fixed counts n against limit in the fixed period containing now, periods starting at
	// start; a zero period is one period that never ends. Same results as Sliding.
	Fixed(ctx context.Context, key string, limit int64, period time.Duration, start time.Time, n int64) (allowed bool, remaining int64, retryAfter time.Duration)
}

// Memory is the in-process Counters of one gateway node: a State per key (State.Sliding and
// State.Fixed say how windows are counted).
//
// Keys are spread over shards with their own locks. A key is stored once it counts a call. It
// expires once its state can no longer affect a decision (two windows, or the end of its
// period) and is swept lazily; when a shard holds its share of MaxKeys live keys, arbitrary
// keys are evicted, which restarts their counts. Memory is safe for concurrent use.
type Memory struct {
	now         func() time.Time
	maxPerShard int
	shards      [counterShards]counterShard
}

const (
	counterShards = 64
	// defaultMaxKeys bounds the memory of the counters: about 100 bytes per key.
	defaultMaxKeys = 1 << 20
	// sweepEvery is how many new keys a shard takes between sweeps of expired keys.
	sweepEvery = 1024
)

type counterShard struct {
	mu  sync.Mutex
	m   map[string]*State
	ops int
}

// Option configures NewMemory.
type Option func(*Memory)

// WithClock makes the counters read time from now instead of time.Now (for tests).
func WithClock(now func() time.Time) Option {
	return func(m *Memory) { m.now = now }
}

// WithMaxKeys bounds the number of keys held (default 1 048 576).
func WithMaxKeys(n int) Option {
	return func(m *Memory) { m.maxPerShard = max(n/counterShards, 1) }
}

// NewMemory returns empty in-memory counters.
func NewMemory(opts ...Option) *Memory {
	m := &Memory{now: time.Now, maxPerShard: defaultMaxKeys / counterShards}
	for _, o := range opts {
		o(m)
	}
	for i := range m.shards {
		m.shards[i].m = make(map[string]*State)
	}
	return m
}

var _ Counters = (*Memory)(nil)

func (m *Memory) shard(key string) *counterShard {
	// FNV-1a, inline so that hashing does not allocate.
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return &m.shards[h%counterShards]
}

// lock locks the shard of key and returns it with the key's state (zero if none) and the
// stored state, nil if none.
func (m *Memory) lock(key string) (*counterShard, State, *State) {
	s := m.shard(key)
	s.mu.Lock()
	held := s.m[key]
	if held == nil {
		return s, State{}, nil
	}
	return s, *held, held
}

// store writes st back as key's state when counted, adding the key if held is nil, and
// unlocks the shard.
func (s *counterShard) store(key string, held *State, st State, counted bool, now int64, maxKeys int) {
	if counted {
		if held == nil {
			held = s.add(key, now, maxKeys)
		}
		*held = st
	}
	s.mu.Unlock()
}

// add stores a new key, sweeping expired keys every sweepEvery additions and evicting
// arbitrary ones when the shard is full. The shard lock is held.
func (s *counterShard) add(key string, now int64, maxKeys int) *State {
	s.ops++
	if s.ops >= sweepEvery || len(s.m) >= maxKeys {
		s.ops = 0
		for k, v := range s.m {
			if v.Expires != 0 && v.Expires <= now {
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
	st := &State{}
	s.m[key] = st
	return st
}

// Sliding implements Counters with State.Sliding.
func (m *Memory) Sliding(_ context.Context, key string, limit int64, window time.Duration, n int64) (bool, int64, time.Duration) {
	now := m.now().UnixNano()
	s, st, held := m.lock(key)
	r, counted := st.Sliding(limit, window, n, now)
	s.store(key, held, st, counted, now, m.maxPerShard)
	return r.Allowed, r.Remaining, r.RetryAfter
}

// Fixed implements Counters with State.Fixed.
func (m *Memory) Fixed(_ context.Context, key string, limit int64, period time.Duration, start time.Time, n int64) (bool, int64, time.Duration) {
	t := m.now()
	s, st, held := m.lock(key)
	r, counted := st.Fixed(limit, period, start, n, t)
	s.store(key, held, st, counted, t.UnixNano(), m.maxPerShard)
	return r.Allowed, r.Remaining, r.RetryAfter
}

// Len returns the number of keys held, expired ones not yet swept included.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
