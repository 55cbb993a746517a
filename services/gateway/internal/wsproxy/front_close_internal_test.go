//go:build linux

package wsproxy

import (
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
)

// TestFrontCloseRacesHandover: a connection handed over while the front closes is either
// closed by Close or closed by the handover, never left in the list nobody accepts from
// (a descriptor held for the life of the process).
func TestFrontCloseRacesHandover(t *testing.T) {
	e, err := NewEngine(EngineOptions{Loops: 1, NoRing: true})
	if err != nil {
		t.Skip(err)
	}
	for iter := range 600 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := e.Front(ln, FrontOptions{Handler: http.NotFoundHandler()})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var peers []int
		start := make(chan struct{})
		for range 64 {
			fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			peers = append(peers, fds[1])
			c := &bareConn{fd: fds[0], remote: &net.TCPAddr{}}
			wg.Go(func() { <-start; f.handover(c, nil) })
		}
		wg.Go(func() { <-start; f.Close() })
		close(start)
		wg.Wait()
		f.mu.Lock()
		left := len(f.handed)
		f.mu.Unlock()
		for _, p := range peers {
			syscall.Close(p)
		}
		if left != 0 {
			t.Fatalf("iteration %d: %d connections handed over after Close, held open for good", iter, left)
		}
	}
}
