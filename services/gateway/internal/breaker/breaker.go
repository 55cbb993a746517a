// Package breaker holds the circuit-breaker state of a node's backends (docs/backends.md):
// runtime state kept outside the compiled configuration, keyed by backend name, so that a
// configuration swap does not reset it unless the backend's rule changed.
package breaker

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"gatehouse.dev/pkg/backend"
)

// buckets is how many slices the failure window is counted in.
const buckets = 10

// Set holds the breakers of a node. It is safe for concurrent use.
type Set struct {
	mu sync.Mutex
	m  map[string]*Breaker
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnChange is called (outside any lock) when a breaker opens (open true) or closes; nil
	// calls nothing. The node records it in metrics.
	OnChange func(name string, open bool)
}

// For returns the breaker of the backend name under rule, a new closed one when the backend
// had none or another rule.
func (s *Set) For(name string, r *backend.Breaker) *Breaker {
	key := strings.ToLower(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.m[key]; b != nil && b.rule == ruleOf(r) {
		return b
	}
	if s.m == nil {
		s.m = map[string]*Breaker{}
	}
	b := &Breaker{set: s, name: name, rule: ruleOf(r)}
	s.m[key] = b
	return b
}

// Breaker is the state of one backend's breaker.
type Breaker struct {
	set  *Set
	name string
	rule rule

	mu        sync.Mutex
	openUntil time.Time
	// start is the beginning of the bucket at index cur; calls and fails count per bucket.
	start       time.Time
	cur         int
	calls, fail [buckets]int64
}

// rule is the comparable form of a compiled rule: an identical rule in a new configuration
// keeps the breaker's state.
type rule struct {
	count, percentage      int64
	interval, tripDuration time.Duration
	acceptRetryAfter       bool
	statuses               string
}

func ruleOf(b *backend.Breaker) rule {
	return rule{b.Count, b.Percentage, b.Interval, b.TripDuration, b.AcceptRetryAfter, fmt.Sprint(b.Errors, b.Statuses)}
}

func (b *Breaker) now() time.Time {
	if b.set.Now != nil {
		return b.set.Now()
	}
	return time.Now()
}

// Allow reports whether the backend may be called now; when not, how long until the breaker
// closes.
func (b *Breaker) Allow() (bool, time.Duration) {
	now := b.now()
	b.mu.Lock()
	if b.openUntil.IsZero() {
		b.mu.Unlock()
		return true, 0
	}
	if wait := b.openUntil.Sub(now); wait > 0 {
		b.mu.Unlock()
		return false, wait
	}
	b.openUntil, b.start, b.calls, b.fail = time.Time{}, time.Time{}, [buckets]int64{}, [buckets]int64{}
	b.mu.Unlock()
	b.changed(false)
	return true, 0
}

// MaxRetryAfter bounds how long a backend's Retry-After keeps its breaker open, so that a
// wrong header (a date years ahead, a value in milliseconds) cannot take a backend out of
// service for longer than an hour; a rule's own tripDuration is not bounded by it.
const MaxRetryAfter = time.Hour

// Record counts one call's outcome: failed says whether it counts as a failure of the rule;
// retryAfter is the backend's Retry-After (0: none), which opens the breaker for that long,
// at most MaxRetryAfter, when the rule accepts it.
func (b *Breaker) Record(failed bool, retryAfter time.Duration) {
	r := b.rule
	now := b.now()
	b.mu.Lock()
	if !b.openUntil.IsZero() { // calls admitted before it opened still finish
		b.mu.Unlock()
		return
	}
	b.advance(now, r.interval/buckets)
	b.calls[b.cur]++
	if failed {
		b.fail[b.cur]++
	}
	var calls, fails int64
	for i := range buckets {
		calls, fails = calls+b.calls[i], fails+b.fail[i]
	}
	trip := failed && (r.count > 0 && fails >= r.count || r.percentage > 0 && fails*100 >= r.percentage*calls)
	if trip {
		wait := r.tripDuration
		if r.acceptRetryAfter && retryAfter > 0 {
			wait = min(retryAfter, MaxRetryAfter)
		}
		b.openUntil = now.Add(wait)
	}
	b.mu.Unlock()
	if trip {
		b.changed(true)
	}
}

// advance moves the window to now, clearing the buckets that fell out of it.
func (b *Breaker) advance(now time.Time, width time.Duration) {
	if width <= 0 {
		width = time.Millisecond
	}
	if b.start.IsZero() {
		b.start = now
		return
	}
	for n := 0; now.Sub(b.start) >= width && n < buckets; n++ {
		b.cur = (b.cur + 1) % buckets
		b.calls[b.cur], b.fail[b.cur] = 0, 0
		b.start = b.start.Add(width)
	}
	if now.Sub(b.start) >= width { // idle longer than the whole window
		b.start = now
	}
}

// changed reports a state change to the set's OnChange.
func (b *Breaker) changed(open bool) {
	if f := b.set.OnChange; f != nil {
		f(b.name, open)
	}
}
