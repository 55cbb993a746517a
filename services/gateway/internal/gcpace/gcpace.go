// Package gcpace paces the garbage collector of a process whose live heap is small next to
// what it allocates: a gateway node holds a few megabytes of configuration and sessions and
// allocates that much every few hundred requests. With GOGC's default the collector then
// runs several times a second, and each run marks the whole live heap again, so that its
// cost grows with the request rate rather than with the heap (docs/performance.md, "The
// collector's pace"). Start lets the heap grow by at least a fixed headroom between
// collections: GOGC is raised while the live heap is small, and left as it is once the
// heap is large enough for GOGC alone to give that room. GOMEMLIMIT, when set, still
// bounds the heap. Once the process goes quiet (it allocates less than a sixteenth of the
// headroom in a second) while its heap holds more than a quarter of the headroom above the
// live heap, that memory goes back to the system (debug.FreeOSMemory): the headroom is for
// throughput, not for an idle node to keep.
//
// bytedance/gopkg's gctuner does the same with a threshold; it reads the heap with
// runtime.ReadMemStats, which stops the world at every collection, and lowers GOGC below
// the environment's value as the heap nears the threshold. This package reads the live heap
// from runtime/metrics and never collects more often than GOGC says.
package gcpace

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

// maxPercent bounds the GOGC Start sets: a heap of a few hundred kilobytes (a test) does not
// make it boundless.
const maxPercent = 5000

// Start paces the collector for headroom bytes between collections, until stop is called
// (which restores GOGC). It does nothing when GOGC is off or headroom is 0.
func Start(headroom uint64) (stop func()) {
	base := 100
	if v, ok := os.LookupEnv("GOGC"); ok {
		if v == "off" {
			return func() {}
		}
		if n, err := strconv.Atoi(v); err == nil {
			base = n
		}
	}
	if headroom == 0 {
		return func() {}
	}
	p := &pacer{headroom: headroom, base: base, set: base}
	p.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	p.arm()
	done := make(chan struct{})
	go p.watch(done)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.stopped {
			p.stopped = true
			close(done)
			debug.SetGCPercent(base)
		}
	}
}

// watch gives the headroom back to the system each second the process is quiet.
func (p *pacer) watch(done <-chan struct{}) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last uint64
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		metrics.Read(samples)
		allocs := samples[0].Value.Uint64()
		if Quiet(allocs-last, samples[1].Value.Uint64(), samples[2].Value.Uint64(), p.headroom) {
			debug.FreeOSMemory()
		}
		last = allocs
	}
}

// Quiet reports whether a process that allocated allocated bytes in the last second, whose
// heap objects take inUse bytes of which live survived the last collection, should give
// the headroom back: it allocates little, and holds much more than it needs.
func Quiet(allocated, inUse, live, headroom uint64) bool {
	return allocated < headroom/16 && inUse > live+headroom/4
}

type pacer struct {
	headroom uint64
	base     int

	mu      sync.Mutex
	set     int // the GOGC set last
	sample  []metrics.Sample
	stopped bool
}

// cycle is an object the collector frees at every cycle: its finalizer paces the next one.
type cycle struct{ p *pacer }

func (p *pacer) arm() {
	runtime.SetFinalizer(&cycle{p: p}, func(c *cycle) {
		if c.p.pace() {
			c.p.arm()
		}
	})
}

// pace sets GOGC for the live heap the last cycle left; false once stopped.
func (p *pacer) pace() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	metrics.Read(p.sample)
	if p.sample[0].Value.Kind() != metrics.KindUint64 {
		return true
	}
	percent := Percent(p.sample[0].Value.Uint64(), p.headroom, p.base)
	// Small changes are not worth the call: it takes the heap's lock.
	if d := percent - p.set; d > p.set/10 || -d > p.set/10 {
		p.set = percent
		debug.SetGCPercent(percent)
	}
	return true
}

// Percent is the GOGC that lets a live heap of live bytes grow by headroom before the next
// collection, and never less than base.
func Percent(live, headroom uint64, base int) int {
	if live == 0 {
		return maxPercent
	}
	percent := headroom * 100 / live
	if percent > maxPercent {
		return maxPercent
	}
	return max(base, int(percent))
}
