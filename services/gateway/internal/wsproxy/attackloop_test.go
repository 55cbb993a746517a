package wsproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// waitConsumed waits until the gateway has read everything c wrote: c's socket has nothing
// unacknowledged and the gateway's socket at the other end has nothing unread
// (/proc/net/tcp). Writes made after it returns arrive in a later read of the gateway.
func waitConsumed(t testing.TB, c net.Conn) {
	t.Helper()
	mine := procKey(c.LocalAddr(), c.RemoteAddr())
	theirs := procKey(c.RemoteAddr(), c.LocalAddr())
	deadline := time.Now().Add(waitFor)
	for {
		q := tcpQueues(t)
		if m, ok := q[mine]; ok && m[0] == 0 {
			if g, ok := q[theirs]; ok && g[1] == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not read what %v wrote", c.LocalAddr())
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// procKey is how /proc/net/tcp names a socket: local and remote IPv4 address.
func procKey(local, remote net.Addr) string {
	f := func(a net.Addr) string {
		ta := a.(*net.TCPAddr)
		ip := ta.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port)
	}
	return f(local) + " " + f(remote)
}

// tcpQueues returns the send and receive queues of every IPv4 TCP socket.
func tcpQueues(t testing.TB) map[string][2]int64 {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skip("no /proc/net/tcp")
	}
	q := map[string][2]int64{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		tx, rx, _ := strings.Cut(f[4], ":")
		a, _ := strconv.ParseInt(tx, 16, 64)
		r, _ := strconv.ParseInt(rx, 16, 64)
		q[f[1]+" "+f[2]] = [2]int64{a, r}
	}
	return q
}

// writeSplit writes b in pieces cut at cuts, each read by the gateway before the next.
func writeSplit(t testing.TB, c net.Conn, b []byte, cuts ...int) {
	t.Helper()
	prev := 0
	for _, cut := range append(cuts, len(b)) {
		if _, err := c.Write(b[prev:cut]); err != nil {
			t.Fatal(err)
		}
		waitConsumed(t, c)
		prev = cut
	}
}

// TestAttackHeldHeaderThenEnd: a checked text frame's header arrives over two reads (so the
// relay holds it until payload passes the check), and then the client's connection ends
// before any payload. The backend must still get its close frame at once, as when a header
// arrives whole.
func TestAttackHeldHeaderThenEnd(t *testing.T) {
	t.Parallel()
	client, back, gw := attackPair(t, "", withLimits(wsproxy.Limits{CloseTimeout: 4 * waitFor, ValidateUTF8: true}))
	f := mustFrame(t, true, 0, frame.OpText, true, []byte("hello"))
	writeSplit(t, client.Conn, f[:6], 1) // header (2 bytes + mask) in two reads, no payload
	client.Conn.(*net.TCPConn).CloseWrite()
	firstFrameIsClose(t, "backend", back, frame.CloseGoingAway)
	back.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
	if st := gw.result(t); st.ClosedBy != wsproxy.ByClient || st.CloseCode != frame.CloseAbnormal {
		t.Errorf("stats = %+v, want closed by the client with 1006", st)
	}
}

// TestAttackSplitSmallTextInvalid: a small text frame (far under 32 KiB) arrives over two
// reads and its second half is not UTF-8. As for a frame that arrives whole, the client must
// get 1007 and the backend 1001 with nothing of the frame before it (Limits.ValidateUTF8:
// only frames over 32 KiB may be cut). The event-loop engine holds a checked text frame of
// up to 32 KiB until it has come whole.
func TestAttackSplitSmallTextInvalid(t *testing.T) {
	t.Parallel()
	client, back, gw := attackPair(t, "", withLimits(wsproxy.Limits{CloseTimeout: waitFor, ValidateUTF8: true}))
	payload := append(bytes.Repeat([]byte("ok"), 50), 0xff, 'x')
	f := mustFrame(t, true, 0, frame.OpText, true, payload)
	writeSplit(t, client.Conn, f, 6+50)
	firstFrameIsClose(t, "client", client, frame.CloseInvalidPayload)
	firstFrameIsClose(t, "backend", back, frame.CloseGoingAway)
	client.Close()
	back.Close()
	if st := gw.result(t); st.ClosedBy != wsproxy.ByGateway || st.CloseCode != frame.CloseInvalidPayload {
		t.Errorf("stats = %+v, want closed by the gateway with 1007", st)
	}
}

// TestAttackByteByByte relays frames both ways one byte per read: headers, masks, control
// frames between fragments, and UTF-8 characters all cut at every boundary. Every byte
// must arrive unchanged and the counts must be right.
func TestAttackByteByByte(t *testing.T) {
	t.Parallel()
	client, back, gw := attackPair(t, "", withLimits(wsproxy.Limits{CloseTimeout: waitFor, ValidateUTF8: true, MaxMessageBytes: 1 << 20}))
	for _, masked := range []bool{true, false} {
		from, to := client, back
		if !masked {
			from, to = back, client
		}
		var in bytes.Buffer
		in.Write(mustFrame(t, false, 0, frame.OpText, masked, []byte("h\xc3")))
		in.Write(mustFrame(t, true, 0, frame.OpPing, masked, []byte("p")))
		in.Write(mustFrame(t, false, 0, frame.OpContinuation, masked, []byte("\xa9\xf0\x9f")))
		in.Write(mustFrame(t, true, 0, frame.OpPong, masked, nil))
		in.Write(mustFrame(t, true, 0, frame.OpContinuation, masked, []byte("\x98\x80")))
		in.Write(mustFrame(t, true, 0, frame.OpText, masked, bytes.Repeat([]byte("€"), 60))) // 16-bit length
		in.Write(mustFrame(t, true, 0, frame.OpBinary, masked, nil))
		in.Write(mustFrame(t, true, 0, frame.OpText, masked, nil))
		b := in.Bytes()
		cuts := make([]int, 0, len(b))
		for i := 1; i < len(b)-4; i++ {
			if i < 50 || i%31 == 0 || i > len(b)-20 { // every boundary but within the long frame
				cuts = append(cuts, i)
			}
		}
		writeSplit(t, from.Conn, b, cuts...)
		got := make([]byte, len(b))
		if _, err := ioReadFull(to, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("masked=%v: frames changed in transit:\n got %x\nwant %x", masked, got, b)
		}
	}
	client.Write(mustFrame(t, true, 0, frame.OpClose, true, []byte{0x03, 0xe8}))
	back.readClose(t)
	back.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
	client.readClose(t)
	st := gw.result(t)
	if st.MessagesIn != 4 || st.MessagesOut != 4 || st.BytesIn != 7+180 || st.BytesOut != 7+180 || st.ClosedBy != wsproxy.ByClient {
		t.Errorf("stats = %+v, want 4 messages and 187 bytes each way, closed by the client", st)
	}
}

// TestAttackStalledReaderPinged: a client stops reading while the backend sends as fast as
// it can. The relay's queue toward the client fills and its keepalive ping waits behind it;
// the client cannot answer a ping it has not been sent, so it must not be judged gone (as
// on the goroutine engine, where the ping waits for the blocked write). The backend, which
// answers, sees four pings go by: three intervals with the client stalled.
func TestAttackStalledReaderPinged(t *testing.T) {
	t.Parallel()
	const interval = 250 * time.Millisecond
	be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
	gw := startGateway(t, be.url(), withLimits(wsproxy.Limits{PingInterval: interval, CloseTimeout: waitFor}))
	client := rawDial(t, gw.url("/"))
	b := be.conn(t)
	pings := make(chan struct{}, 16)
	b.SetPingHandler(func(string) error {
		// No pong: the backend's writes wait behind its messages, and the relay, which
		// stopped reading the backend, does not judge it.
		pings <- struct{}{}
		return nil
	})
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := b.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	go func() {
		msg := make([]byte, 4<<10-4) // frames of 4 KiB: reads end between frames
		for b.WriteMessage(websocket.BinaryMessage, msg) == nil {
		}
	}()
	for range 4 {
		select {
		case <-pings:
		case err := <-closed:
			t.Fatalf("the session ended while the client was only slow: %v", err)
		case <-time.After(waitFor):
			t.Fatal("the backend got no keepalive ping")
		}
	}
	client.Close()
	b.Close()
	if st := gw.result(t); st.Reason == "ping timeout" {
		t.Errorf("stats = %+v: a slow client was judged gone", st)
	}
}

// TestAttackIdleDuringLargeFrame: a large frame trickles in for longer than the idle
// timeout, each piece well within it. Bytes of a frame are activity (the goroutine engine
// counts each read of a frame larger than its buffer): the session must stay open.
func TestAttackIdleDuringLargeFrame(t *testing.T) {
	t.Parallel()
	const idle = 600 * time.Millisecond
	client, back, gw := attackPair(t, "", withLimits(wsproxy.Limits{CloseTimeout: waitFor, IdleTimeout: idle}))
	payload := bytes.Repeat([]byte("z"), 64<<10)
	f := mustFrame(t, true, 0, frame.OpBinary, true, payload)
	go func() {
		start := time.Now()
		i := 0
		for ; time.Since(start) < 2*idle; i += 1 << 10 {
			client.Write(f[i : i+1<<10])
			time.Sleep(idle / 6)
		}
		client.Write(f[i:])
	}()
	h, p := back.readFrame(t)
	if h.Opcode != frame.OpBinary || !bytes.Equal(p, payload) {
		t.Fatalf("backend got a %v frame of %d bytes", h.Opcode, len(p))
	}
	client.Write(mustFrame(t, true, 0, frame.OpClose, true, []byte{0x03, 0xe8}))
	if code, reason := back.readClose(t); code != frame.CloseNormal {
		t.Fatalf("backend got close %d %q, want the client's 1000", code, reason)
	}
	back.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
	if st := gw.result(t); st.ClosedBy != wsproxy.ByClient {
		t.Errorf("stats = %+v, want closed by the client", st)
	}
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if b, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// tcpSession prepares a session on the test engine between two loopback TCP connections
// and returns the client's and backend's ends.
func tcpSession(t testing.TB, limits wsproxy.Limits, deflate bool) (client, backend net.Conn, s *wsproxy.Session) {
	t.Helper()
	client, gwClient := tcpPair(t)
	backend, gwBackend := tcpPair(t)
	resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{}}
	if deflate {
		resp.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
	}
	s = testEngine.NewSession(gwClient, nil, &wsproxy.Backend{Conn: gwBackend, Response: resp}, limits, wsproxy.Hooks{})
	return client, backend, s
}

// FuzzLoopRelayFrames is FuzzRelayFrames over loopback TCP, so that it runs on the engine
// under test (the event loop by default), with the client's bytes written in pieces cut
// where split says, each a separate segment.
func FuzzLoopRelayFrames(f *testing.F) {
	m := [4]byte{1, 2, 3, 4}
	fr := func(fin bool, rsv uint8, op frame.Opcode, p string) []byte {
		b, _ := frame.AppendFrame(nil, frame.Header{Fin: fin, Rsv: rsv, Opcode: op, Masked: true, Mask: m}, []byte(p))
		return b
	}
	cat := func(frames ...[]byte) []byte { return bytes.Join(frames, nil) }
	f.Add(cat(fr(true, 0, frame.OpText, "hello"), fr(true, 0, frame.OpClose, "\x03\xe8bye")), []byte{1, 3, 7}, false, false)
	f.Add(cat(fr(false, frame.Rsv1, frame.OpText, "x"), fr(true, frame.Rsv1, frame.OpContinuation, "y")), []byte{2, 9}, true, false)
	f.Add(cat(fr(false, 0, frame.OpText, "\xc3"), fr(true, 0, frame.OpPing, ""), fr(true, 0, frame.OpContinuation, "\xa9")), []byte{1, 1, 1, 1, 1, 1, 1, 1}, false, true)
	f.Add(fr(true, 0, frame.OpText, strings.Repeat("é", 100)+"\xff"), []byte{6, 50}, false, true)
	f.Add(fr(true, 0, frame.OpText, strings.Repeat("é", 30000)+"\xff"), []byte{200, 200}, false, true)
	f.Add(fr(true, 0, frame.OpClose, "\x03"), []byte{1}, false, false)
	f.Add([]byte{0x83, 0x80, 0, 0, 0, 0}, []byte{1}, false, false)
	f.Fuzz(func(t *testing.T, in, split []byte, deflate, validate bool) {
		ended := make(chan wsproxy.Stats, 2)
		client, backend, s := tcpSession(t, wsproxy.Limits{CloseTimeout: 50 * time.Millisecond, ValidateUTF8: validate}, deflate)
		s.Start(context.Background(), func(st wsproxy.Stats) { ended <- st })
		go io.Copy(io.Discard, client)
		go func() {
			rest := in
			for _, n := range split {
				k := min(int(n), len(rest))
				if _, err := client.Write(rest[:k]); err != nil {
					break
				}
				rest = rest[k:]
			}
			client.Write(rest)
			client.Close()
		}()
		err := checkRelayed(backend, deflate, validate)
		backend.Close()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		if len(ended) > 0 {
			t.Fatal("done called twice")
		}
		if err != nil {
			t.Fatalf("backend received a frame the relay must not pass: %v", err)
		}
	})
}

// TestAttackCloseRacesEnd ends many sessions while Close is called on them from other
// goroutines: done must run exactly once per session, after both descriptors are closed,
// and no descriptor may leak.
func TestAttackCloseRacesEnd(t *testing.T) {
	const n = 40
	var dones atomic.Int32
	var wg sync.WaitGroup
	before := 0
	for i := range n + 1 {
		if i == 1 {
			// The first session opened whatever the engine opens once (the parker's set).
			wg.Wait()
			before = openFDs(t)
		}
		ended := make(chan struct{})
		client, backend, s := tcpSession(t, wsproxy.Limits{CloseTimeout: waitFor}, false)
		s.Start(context.Background(), func(wsproxy.Stats) {
			dones.Add(1)
			close(ended) // a second call panics
		})
		wg.Add(3)
		go func() {
			defer wg.Done()
			for range 3 {
				s.Close(frame.CloseGoingAway, "racing")
				s.Stats()
			}
		}()
		go func() { // the client closes first, or answers the gateway's close
			defer wg.Done()
			if i%2 == 0 {
				client.Write(mustFrame(t, true, 0, frame.OpClose, true, []byte{0x03, 0xe8}))
			}
			br := bufio.NewReader(client)
			for {
				if _, err := br.ReadByte(); err != nil {
					break
				}
				client.Write(mustFrame(t, true, 0, frame.OpClose, true, []byte{0x03, 0xe8}))
			}
			client.Close()
		}()
		go func() {
			defer wg.Done()
			br := bufio.NewReader(backend)
			for {
				if _, err := br.ReadByte(); err != nil {
					break
				}
				backend.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
			}
			backend.Close()
		}()
		select {
		case <-ended:
		case <-time.After(2 * waitFor):
			t.Fatalf("session %d did not end", i)
		}
	}
	wg.Wait()
	if got := dones.Load(); got != n+1 {
		t.Errorf("done ran %d times for %d sessions", got, n)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the sessions, %d before", after, before)
	}
}

func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestAttackDataThenEnd: a client's last frame and the end of its connection reach the
// gateway together (here before the session starts, so that one edge of epoll reports
// both). Reading must go on past the frame to the end, which ends the session: the backend
// gets the frame, then close 1001.
func TestAttackDataThenEnd(t *testing.T) {
	t.Parallel()
	client, backend, s := tcpSession(t, wsproxy.Limits{CloseTimeout: 4 * waitFor}, false)
	defer client.Close()
	defer backend.Close()
	f := mustFrame(t, true, 0, frame.OpText, true, []byte("last words"))
	client.Write(f)
	client.(*net.TCPConn).CloseWrite()
	waitFinAcked(t, client)
	ended := make(chan wsproxy.Stats, 1)
	s.Start(context.Background(), func(st wsproxy.Stats) { ended <- st })
	back := rawConn{backend, bufio.NewReader(backend)}
	if h, p := back.readFrame(t); h.Opcode != frame.OpText || string(p) != "last words" {
		t.Fatalf("backend got a %v frame %q", h.Opcode, p)
	}
	firstFrameIsClose(t, "backend", back, frame.CloseGoingAway)
	backend.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
	select {
	case st := <-ended:
		if st.ClosedBy != wsproxy.ByClient || st.CloseCode != frame.CloseAbnormal || st.MessagesIn != 1 {
			t.Errorf("stats = %+v, want one message and closed by the client with 1006", st)
		}
	case <-time.After(waitFor):
		t.Fatal("session did not end")
	}
}

// waitFinAcked waits until c's FIN has been acknowledged (FIN_WAIT2 in /proc/net/tcp).
func waitFinAcked(t testing.TB, c net.Conn) {
	t.Helper()
	key := procKey(c.LocalAddr(), c.RemoteAddr())
	deadline := time.Now().Add(waitFor)
	for {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Skip("no /proc/net/tcp")
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[1]+" "+f[2] == key && f[3] == "05" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("FIN not acknowledged")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// TestAttackSmuggleAfterViolation: after the client broke the protocol, what it sends next
// is read only to be dropped. None of it may reach the backend, which gets its close frame
// and nothing after it.
func TestAttackSmuggleAfterViolation(t *testing.T) {
	t.Parallel()
	client, back, gw := attackPair(t, "", withLimits(wsproxy.Limits{CloseTimeout: waitFor}))
	client.Write(mustFrame(t, true, frame.Rsv1, frame.OpBinary, true, []byte("x")))
	firstFrameIsClose(t, "client", client, frame.CloseProtocolError)
	client.Write(mustFrame(t, true, 0, frame.OpText, true, []byte("smuggled")))
	waitConsumed(t, client.Conn)
	firstFrameIsClose(t, "backend", back, frame.CloseGoingAway)
	back.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
	back.SetReadDeadline(time.Now().Add(waitFor))
	if rest, err := io.ReadAll(back.r); err != nil || len(rest) > 0 {
		t.Errorf("backend got %x (%v) after its close frame, want nothing", rest, err)
	}
	if st := gw.result(t); st.CloseCode != frame.CloseProtocolError || st.MessagesIn != 0 {
		t.Errorf("stats = %+v, want 1002 and no message", st)
	}
}
