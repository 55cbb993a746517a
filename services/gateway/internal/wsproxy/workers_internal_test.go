package wsproxy

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"gatehouse.dev/pkg/testwait"
)

// TestWorkers: every function handed to the pool runs once, however many run at once; the
// goroutines are reused, and no more than the pool's bound wait idle.
func TestWorkers(t *testing.T) {
	p := &workers{max: 4}
	idle := func(want int) {
		t.Helper()
		testwait.Until(t, 10*time.Second, fmt.Sprintf("%d idle goroutines", want), func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.idle) == want
		})
	}
	var mu sync.Mutex
	ran := map[int]int{}
	var wg sync.WaitGroup
	release := make(chan struct{})
	for i := range 16 {
		wg.Add(1)
		p.run(func() {
			defer wg.Done()
			<-release // all 16 at once: the pool has to start 16 goroutines
			mu.Lock()
			ran[i]++
			mu.Unlock()
		})
	}
	close(release)
	wg.Wait()
	for i := range 16 {
		if ran[i] != 1 {
			t.Errorf("function %d ran %d times", i, ran[i])
		}
	}
	idle(4)

	// One after the other, they run on one goroutine.
	ids := map[string]bool{}
	for range 8 {
		done := make(chan string)
		p.run(func() { done <- goroutineID() })
		ids[<-done] = true
		idle(4)
	}
	if len(ids) != 1 {
		t.Errorf("8 functions one after the other ran on %d goroutines, want 1", len(ids))
	}

	// Stopped, the pool keeps none, and still runs what it is given.
	p.stop()
	idle(0)
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
	idle(0)
}

// goroutineID is the calling goroutine's number, from its stack's first line.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := bytes.Fields(buf)
	return string(f[1])
}
