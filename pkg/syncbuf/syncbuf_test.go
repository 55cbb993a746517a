package syncbuf_test

import (
	"strings"
	"sync"
	"testing"

	"gatehouse.dev/pkg/syncbuf"
)

// TestConcurrentWritesAndReads: lines written by many goroutines while another reads all
// arrive whole (the race detector checks the rest).
func TestConcurrentWritesAndReads(t *testing.T) {
	var b syncbuf.Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("line\n"))
			}
		})
	}
	stop := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.String()
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-read
	if got := strings.Count(b.String(), "line\n"); got != 800 {
		t.Errorf("%d lines, want 800", got)
	}
}
