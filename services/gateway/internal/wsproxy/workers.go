package wsproxy

import "sync"

// workers runs functions on goroutines it keeps for the next ones: the upgrade requests a
// Front serves each need a goroutine whose stack has grown to what the handshake uses (the
// policies, the backend's dial and its answer). A goroutine started for each paid for that
// growth every time (a new stack, a copy, and the first touches of its memory: 4% of a
// handshake's CPU, docs/performance.md); a kept one has it already, until the collector
// shrinks a stack that stayed idle through a cycle.
type workers struct {
	max     int // idle goroutines kept
	mu      sync.Mutex
	idle    []chan func()
	stopped bool
}

// run runs fn on an idle goroutine, or a new one.
func (p *workers) run(fn func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		ch := p.idle[n-1] // the most recently used: its stack is the likeliest to be warm
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		ch <- fn
		return
	}
	p.mu.Unlock()
	go p.work(fn)
}

// work runs fn, then what run hands it, while the pool has room for it when it is idle.
// fn must not panic (Front.serve recovers its handler's panics).
func (p *workers) work(fn func()) {
	var ch chan func()
	for {
		fn()
		fn = nil // an idle goroutine holds nothing of the last request
		p.mu.Lock()
		if p.stopped || len(p.idle) >= p.max {
			p.mu.Unlock()
			return
		}
		if ch == nil {
			ch = make(chan func(), 1)
		}
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		var ok bool
		if fn, ok = <-ch; !ok {
			return
		}
	}
}

// stop ends the idle goroutines, and each busy one once its function returns; run still
// runs what it is given, on a goroutine of its own.
func (p *workers) stop() {
	p.mu.Lock()
	p.stopped = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ch := range idle {
		close(ch)
	}
}
