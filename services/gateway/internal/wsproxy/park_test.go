package wsproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/testwait"
)

// waitParked waits until n sides of s are parked.
func waitParked(t *testing.T, s *wsproxy.Session, n int) {
	t.Helper()
	testwait.For(t, wsproxy.ParkAfter+waitFor, func() string {
		if got := s.Parked(); got != n {
			return fmt.Sprintf("%d sides parked, want %d", got, n)
		}
		return ""
	})
}

// TestParking checks that a quiet session hands both directions to the parker and relays,
// closes and ends as usual from there.
func TestParking(t *testing.T) {
	t.Parallel()
	if !wsproxy.Parking {
		t.Skip("quiet connections are parked on Linux only")
	}
	t.Run("messages after a quiet spell", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, echo, nil, false)
		gw := startGateway(t, be.url(), withGoroutineEngine())
		c, _ := dialGorilla(t, nil, gw.url("/"), nil)
		s := gw.session(t)
		for round := range 2 {
			waitParked(t, s, 2)
			msg := []byte{'a' + byte(round)}
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(waitFor))
			if _, p, err := c.ReadMessage(); err != nil || string(p) != string(msg) {
				t.Fatalf("round %d: echo %q, %v; want %q", round, p, err, msg)
			}
		}
		c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
		if ce := readClose(t, c); ce.Code != websocket.CloseNormalClosure {
			t.Errorf("client got close %d, want the backend's 1000", ce.Code)
		}
		if st := gw.result(t); st.MessagesIn != 2 || st.MessagesOut != 2 || st.ClosedBy != wsproxy.ByClient {
			t.Errorf("stats = %+v, want 2 messages each way, closed by the client", st)
		}
	})
	t.Run("client vanishes while parked", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
		gw := startGateway(t, be.url(), withGoroutineEngine())
		c, _ := dialGorilla(t, nil, gw.url("/"), nil)
		bc := be.conn(t)
		s := gw.session(t)
		waitParked(t, s, 2)
		c.NetConn().Close()
		if ce := readClose(t, bc); ce.Code != websocket.CloseGoingAway {
			t.Errorf("backend got close %d, want 1001", ce.Code)
		}
		bc.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
		if st := gw.result(t); st.ClosedBy != wsproxy.ByClient || st.CloseCode != 1006 {
			t.Errorf("stats = %+v, want the client gone with 1006", st)
		}
	})
	t.Run("closing handshake never answered", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
		ctx, cancel := context.WithCancel(context.Background())
		gw := startGateway(t, be.url(), withGoroutineEngine(), withContext(ctx), withLimits(wsproxy.Limits{CloseTimeout: 300 * time.Millisecond}))
		dialGorilla(t, nil, gw.url("/"), nil)
		be.conn(t)
		s := gw.session(t)
		waitParked(t, s, 2)
		// Neither side reads or answers: the sides stay parked until the grace period ends
		// and the teardown takes them back from the parker.
		start := time.Now()
		cancel()
		st := gw.result(t)
		if st.ClosedBy != wsproxy.ByGateway || st.CloseCode != 1001 {
			t.Errorf("stats = %+v, want the gateway closing with 1001", st)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("ended %v after the close, before the 300ms grace", d)
		}
		if n := s.Parked(); n != 0 {
			t.Errorf("%d sides still parked after the session ended", n)
		}
	})
}
