package breaker

import (
	"slices"
	"testing"
	"time"

	"gatehouse.dev/pkg/backend"
)

// clock is a settable clock for the breakers' windows and trip durations.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBreaker(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	var changes []bool
	s := &Set{Now: c.now, OnChange: func(_ string, open bool) { changes = append(changes, open) }}
	rule := &backend.Breaker{Count: 2, Interval: 10 * time.Second, TripDuration: 5 * time.Second, Errors: true, AcceptRetryAfter: true}
	b := s.For("be", rule)

	b.Record(true, 0)
	c.t = c.t.Add(11 * time.Second) // the first failure leaves the window
	b.Record(true, 0)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("open after one failure within the interval")
	}
	b.Record(true, 0)
	if ok, wait := b.Allow(); ok || wait != 5*time.Second {
		t.Fatalf("after two failures: allow %v wait %v, want open for the trip duration", ok, wait)
	}
	if s.For("BE", rule) != b {
		t.Error("the same rule does not keep the breaker")
	}
	c.t = c.t.Add(5 * time.Second)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("still open after the trip duration")
	}
	// A backend's Retry-After replaces the trip duration when the rule accepts it.
	b.Record(true, 0)
	b.Record(true, 30*time.Second)
	if _, wait := b.Allow(); wait != 30*time.Second {
		t.Errorf("wait %v, want the backend's Retry-After", wait)
	}
	// ... at most MaxRetryAfter.
	c.t = c.t.Add(30 * time.Second)
	if ok, _ := b.Allow(); !ok {
		t.Fatal("still open after the backend's Retry-After")
	}
	b.Record(true, 0)
	b.Record(true, 24*365*time.Hour)
	if _, wait := b.Allow(); wait != MaxRetryAfter {
		t.Errorf("wait %v after a Retry-After of a year, want MaxRetryAfter", wait)
	}
	if want := []bool{true, false, true, false, true}; len(changes) != len(want) || !slices.Equal(changes, want) {
		t.Errorf("changes %v, want %v", changes, want)
	}
	// Percentage: half the calls.
	p := s.For("pct", &backend.Breaker{Percentage: 50, Interval: time.Minute, TripDuration: time.Second, Statuses: []backend.StatusRange{{Min: 500, Max: 599}}})
	p.Record(false, 0)
	p.Record(false, 0)
	p.Record(true, 0)
	if ok, _ := p.Allow(); !ok {
		t.Error("open at one failure in three")
	}
	p.Record(true, 0)
	if ok, _ := p.Allow(); ok {
		t.Error("closed at two failures in four")
	}
}
