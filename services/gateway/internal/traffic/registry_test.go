package traffic

import (
	"bufio"
	"context"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// openPiped registers in g a session over in-memory connections whose client and backend
// answer the gateway's close frame at once, as well-behaved peers do. The connections are
// net.Pipe, so the session runs inside a synctest bubble.
func openPiped(t *testing.T, g *Registry) {
	t.Helper()
	client, clientPeer := net.Pipe()
	backend, backendPeer := net.Pipe()
	go answerClose(t, clientPeer, true)
	go answerClose(t, backendPeer, false)
	s := wsproxy.NewSession(client, nil, &wsproxy.Backend{Conn: backend}, wsproxy.Limits{}, wsproxy.Hooks{})
	id := g.add(s, ConnInfo{API: "chat"}, nil)
	s.Start(t.Context(), func(wsproxy.Stats) { g.remove(id) })
}

// answerClose reads frames from conn until a close frame, answers it with close 1000 (masked
// as a client's when masked), then reads until the gateway closes the connection.
func answerClose(t *testing.T, conn net.Conn, masked bool) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		p, err := r.Peek(2)
		if err != nil {
			t.Errorf("reading a frame: %v", err)
			return
		}
		p, err = r.Peek(frame.HeaderLen(p[0], p[1]))
		if err != nil {
			t.Errorf("reading a frame: %v", err)
			return
		}
		h, n, err := frame.Parse(p)
		if err != nil {
			t.Errorf("parsing a frame: %v", err)
			return
		}
		if _, err := r.Discard(n + int(h.Length)); err != nil {
			t.Errorf("reading a frame: %v", err)
			return
		}
		if h.Opcode == frame.OpClose {
			break
		}
	}
	var mask *[4]byte
	if masked {
		mask = &[4]byte{1, 2, 3, 4}
	}
	if _, err := conn.Write(frame.AppendClose(nil, 1000, "", mask)); err != nil {
		t.Errorf("answering the close: %v", err)
		return
	}
	_, _ = io.Copy(io.Discard, r)
}

// TestDrainEndsWithTheLastSession checks that Drain returns as soon as its sessions have
// closed: it pauses between closes to spread reconnects, never after the last one. The
// bubble's clock moves only while every goroutine waits, so the time Drain took is exactly
// the pauses it made.
func TestDrainEndsWithTheLastSession(t *testing.T) {
	t.Parallel()
	const timeout = 30 * time.Second
	for _, tc := range []struct {
		name     string
		sessions int
		want     time.Duration // the pauses: 70% of the timeout, shared by the gaps between closes
	}{
		{"none", 0, 0},
		{"one", 1, 0},
		{"two", 2, timeout * 7 / 10 / 2},
		{"three", 3, 2 * (timeout * 7 / 10 / 3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				g := NewRegistry()
				for range tc.sessions {
					openPiped(t, g)
				}
				synctest.Wait()
				ctx, cancel := context.WithTimeout(t.Context(), timeout)
				defer cancel()
				start := time.Now()
				g.Drain(ctx, 1001, "gateway shutting down")
				if took := time.Since(start); took != tc.want {
					t.Errorf("Drain took %v, want %v", took, tc.want)
				}
				if ctx.Err() != nil {
					t.Errorf("Drain returned at its deadline, with %d sessions open", g.Len())
				}
				if n := g.Len(); n != 0 {
					t.Errorf("%d sessions open after Drain", n)
				}
			})
		})
	}
}

// TestDrainClosesLateSessions checks that a session registered after Drain started (its
// handshake was under way) is closed at once.
func TestDrainClosesLateSessions(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := NewRegistry()
		openPiped(t, g)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		drained := make(chan struct{})
		go func() { defer close(drained); g.Drain(ctx, 1001, "gateway shutting down") }()
		synctest.Wait()
		select {
		case <-drained:
		default:
			t.Fatal("Drain still waits after its only session closed")
		}
		openPiped(t, g)
		synctest.Wait()
		if n := g.Len(); n != 0 {
			t.Errorf("%d sessions open after a late one registered during the drain", n)
		}
	})
}
