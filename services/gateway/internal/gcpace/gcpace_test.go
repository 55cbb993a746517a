package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		live, headroom uint64
		base, want     int
	}{
		{live: 8 * mib, headroom: 32 * mib, base: 100, want: 400},
		{live: 64 * mib, headroom: 32 * mib, base: 100, want: 100}, // GOGC alone gives more room
		{live: 16 * mib, headroom: 32 * mib, base: 300, want: 300}, // never below the environment's
		{live: 1024, headroom: 32 * mib, base: 100, want: maxPercent},
		{live: 0, headroom: 32 * mib, base: 100, want: maxPercent},
	}
	for _, c := range cases {
		if got := Percent(c.live, c.headroom, c.base); got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.live, c.headroom, c.base, got, c.want)
		}
	}
}

func TestQuiet(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		allocated, inUse, live uint64
		want                   bool
	}{
		{allocated: 1 * mib, inUse: 90 * mib, live: 30 * mib, want: true},   // idle with the headroom full of garbage
		{allocated: 60 * mib, inUse: 90 * mib, live: 30 * mib, want: false}, // busy: the headroom is used
		{allocated: 1 * mib, inUse: 32 * mib, live: 30 * mib, want: false},  // idle with little garbage: nothing to give
		{allocated: 4 * mib, inUse: 90 * mib, live: 30 * mib, want: false},  // a sixteenth of 64 MiB a second is not quiet
		{allocated: 3 * mib, inUse: 47 * mib, live: 30 * mib, want: true},   // more than a quarter of 64 MiB over live
	}
	for _, c := range cases {
		if got := Quiet(c.allocated, c.inUse, c.live, 64*mib); got != c.want {
			t.Errorf("Quiet(%d MiB allocated, %d MiB in use, %d MiB live) = %v, want %v", c.allocated/mib, c.inUse/mib, c.live/mib, got, c.want)
		}
	}
}

// TestStartPacesEachCycle: after collections, GOGC is what Percent says for the live heap,
// and stop restores the environment's.
func TestStartPacesEachCycle(t *testing.T) {
	t.Setenv("GOGC", "100")
	defer debug.SetGCPercent(100)
	stop := Start(256 << 20)
	got := 100
	for i := 0; i < 1000 && got == 100; i++ {
		runtime.GC() // the finalizer of each cycle runs after it, on its own goroutine
		runtime.Gosched()
		got = gogc()
	}
	if got <= 100 {
		t.Fatalf("GOGC after collections with a small heap: %d, want more than 100", got)
	}
	stop()
	if got := gogc(); got != 100 {
		t.Fatalf("GOGC after stop: %d, want 100", got)
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
