package wsproxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
	"gatehouse.dev/pkg/testwait"
)

type message struct {
	Type int
	Data []byte
}

func TestRelayMessages(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{}, echo, nil, false)
	gw := startGateway(t, be.url())
	c, _ := dialGorilla(t, nil, gw.url("/echo"), nil)

	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: streamed in chunks
	sent := []message{
		{websocket.TextMessage, []byte("hello")},
		{websocket.BinaryMessage, []byte{0, 1, 2, 255}},
		{websocket.TextMessage, []byte{}},
		{websocket.BinaryMessage, big},
	}
	var got []message
	for _, m := range sent {
		if err := c.WriteMessage(m.Type, m.Data); err != nil {
			t.Fatal(err)
		}
		typ, p, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, message{typ, p})
	}
	// bytes.Equal keeps the comparison of the 160 KiB message fast.
	if diff := cmp.Diff(sent, got, cmp.Comparer(bytes.Equal)); diff != "" {
		t.Errorf("echoed messages (-sent +got):\n%s", diff)
	}
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"))
	if ce := readClose(t, c); ce.Code != websocket.CloseNormalClosure {
		t.Errorf("client got close %d, want the backend's 1000 reply", ce.Code)
	}
	st := gw.result(t)
	// Bytes are the messages' payload, however gorilla fragments them: no headers, no close.
	payload := int64(len("hello") + 4 + 0 + len(big))
	want := wsproxy.Stats{MessagesIn: 4, MessagesOut: 4, BytesIn: payload, BytesOut: payload,
		CloseCode: 1000, ClosedBy: wsproxy.ByClient, Reason: "done"}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestFragmentedMessages(t *testing.T) {
	t.Parallel()
	// Small write buffers make gorilla send each message as many frames, both ways.
	be := startBackend(t, websocket.Upgrader{WriteBufferSize: 64}, echo, nil, false)
	gw := startGateway(t, be.url())
	c, _ := dialGorilla(t, &websocket.Dialer{WriteBufferSize: 64}, gw.url("/"), nil)

	msg := strings.Repeat("fragment-", 200)
	w, err := c.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msg); i += 100 {
		w.Write([]byte(msg[i:min(i+100, len(msg))]))
	}
	w.Close()
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != msg {
		t.Errorf("echo = %d bytes, want the %d sent", len(p), len(msg))
	}
	c.Close()
	st := gw.result(t)
	if st.MessagesIn != 1 || st.MessagesOut != 1 {
		t.Errorf("messages in/out = %d/%d, want 1/1 for one message of %d frames", st.MessagesIn, st.MessagesOut, len(msg)/64)
	}
}

// TestFramesVerbatim checks that frames cross the gateway byte for byte: masking,
// fragmentation, a ping between fragments and reserved bits included (RSV1, which
// permessage-deflate, negotiated here, gives a meaning).
func TestFramesVerbatim(t *testing.T) {
	t.Parallel()
	srv, conns := startRawBackend(t)
	gw := startGateway(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	client := rawDialExt(t, gw.url("/"), "permessage-deflate")
	back := takeRaw(t, conns)

	var in bytes.Buffer
	in.Write(mustFrame(t, false, 0, frame.OpText, true, []byte("hel")))
	in.Write(mustFrame(t, true, 0, frame.OpPing, true, []byte("mid")))
	in.Write(mustFrame(t, true, 0, frame.OpContinuation, true, []byte("lo")))
	in.Write(mustFrame(t, true, frame.Rsv1, frame.OpBinary, true, bytes.Repeat([]byte{7}, 70000)))
	out := bytes.Buffer{}
	out.Write(mustFrame(t, true, 0, frame.OpPong, false, []byte("mid")))
	out.Write(mustFrame(t, false, 0, frame.OpBinary, false, bytes.Repeat([]byte{1}, 5000)))
	out.Write(mustFrame(t, true, 0, frame.OpContinuation, false, nil))

	for _, tc := range []struct {
		name     string
		from, to rawConn
		data     []byte
	}{
		{"client to backend", client, back, in.Bytes()},
		{"backend to client", back, client, out.Bytes()},
	} {
		go tc.from.Write(tc.data)
		got := make([]byte, len(tc.data))
		tc.to.SetReadDeadline(time.Now().Add(waitFor))
		if _, err := io.ReadFull(tc.to.r, got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.data) {
			t.Errorf("%s: frames changed in transit", tc.name)
		}
	}
	client.Write(mustFrame(t, true, 0, frame.OpClose, true, []byte{0x03, 0xE8}))
	if code, _ := back.readClose(t); code != 1000 {
		t.Errorf("backend got close %d, want 1000", code)
	}
	back.Write(mustFrame(t, true, 0, frame.OpClose, false, []byte{0x03, 0xE8}))
	if code, _ := client.readClose(t); code != 1000 {
		t.Errorf("client got close %d, want 1000", code)
	}
	st := gw.result(t)
	if st.MessagesIn != 2 || st.MessagesOut != 1 {
		t.Errorf("messages in/out = %d/%d, want 2/1", st.MessagesIn, st.MessagesOut)
	}
	// Payload of data frames only: not the ping, pong or close frames, nor any header.
	if wantIn, wantOut := int64(len("hel")+len("lo")+70000), int64(5000); st.BytesIn != wantIn || st.BytesOut != wantOut {
		t.Errorf("bytes in/out = %d/%d, want %d/%d", st.BytesIn, st.BytesOut, wantIn, wantOut)
	}
}

func TestPingPongPassThrough(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
	gw := startGateway(t, be.url())
	c, _ := dialGorilla(t, nil, gw.url("/"), nil)
	bc := be.conn(t)

	clientPongs, backendPings, backendPongs, clientPings := make(chan string, 1), make(chan string, 1), make(chan string, 1), make(chan string, 1)
	c.SetPongHandler(func(s string) error { clientPongs <- s; return nil })
	c.SetPingHandler(func(s string) error {
		clientPings <- s
		return c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(waitFor))
	})
	bc.SetPingHandler(func(s string) error {
		backendPings <- s
		return bc.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(waitFor))
	})
	bc.SetPongHandler(func(s string) error { backendPongs <- s; return nil })
	readLoop(c)
	readLoop(bc)

	c.WriteControl(websocket.PingMessage, []byte("from client"), time.Now().Add(waitFor))
	bc.WriteControl(websocket.PingMessage, []byte("from backend"), time.Now().Add(waitFor))
	for _, tc := range []struct {
		name string
		ch   chan string
		want string
	}{
		{"backend sees client ping", backendPings, "from client"},
		{"client sees backend pong", clientPongs, "from client"},
		{"client sees backend ping", clientPings, "from backend"},
		{"backend sees client pong", backendPongs, "from backend"},
	} {
		select {
		case got := <-tc.ch:
			if got != tc.want {
				t.Errorf("%s: payload %q, want %q", tc.name, got, tc.want)
			}
		case <-time.After(waitFor):
			t.Errorf("%s: nothing arrived", tc.name)
		}
	}
	st := gw.session(t).Stats()
	if st.MessagesIn != 0 || st.MessagesOut != 0 || st.BytesIn != 0 || st.BytesOut != 0 {
		t.Errorf("stats = %+v, want control frames counted neither as messages nor as bytes", st)
	}
}

func TestCloseCodesPassThrough(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		byClient bool
		code     int
		reason   string
	}{
		{"client closes", true, 4000, "bye"},
		{"backend closes", false, websocket.CloseInternalServerErr, "oops"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
			gw := startGateway(t, be.url())
			c, _ := dialGorilla(t, nil, gw.url("/"), nil)
			bc := be.conn(t)
			closer, peer, wantBy := c, bc, wsproxy.ByClient
			if !tc.byClient {
				closer, peer, wantBy = bc, c, wsproxy.ByBackend
			}
			readLoop(closer) // answers... and lets the reply be read
			closer.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(tc.code, tc.reason), time.Now().Add(waitFor))
			ce := readClose(t, peer) // gorilla replies with the same code
			if ce.Code != tc.code || ce.Text != tc.reason {
				t.Errorf("peer got close %d %q, want %d %q", ce.Code, ce.Text, tc.code, tc.reason)
			}
			st := gw.result(t)
			if st.ClosedBy != wantBy || st.CloseCode != uint16(tc.code) || st.Reason != tc.reason {
				t.Errorf("stats = %+v, want closed by %s with %d %q", st, wantBy, tc.code, tc.reason)
			}
		})
	}
}

func TestPermessageDeflate(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{EnableCompression: true}, echo, nil, false)
	gw := startGateway(t, be.url())
	c, resp := dialGorilla(t, &websocket.Dialer{EnableCompression: true}, gw.url("/"), nil)
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("Sec-WebSocket-Extensions = %q, want permessage-deflate negotiated end to end", ext)
	}
	msg := strings.Repeat("compress me please ", 1000)
	for range 3 {
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(p) != msg {
			t.Fatalf("echo = %d bytes, want the %d sent", len(p), len(msg))
		}
	}
	st := gw.session(t).Stats()
	if st.MessagesIn != 3 || st.BytesIn >= int64(len(msg)) {
		t.Errorf("stats = %+v, want 3 messages compressed below %d bytes in all", st, len(msg))
	}
}

func TestSubprotocol(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{Subprotocols: []string{"b"}}, nil, nil, false)
	gw := startGateway(t, be.url())
	c, _ := dialGorilla(t, &websocket.Dialer{Subprotocols: []string{"a", "b"}}, gw.url("/"), nil)
	bc := be.conn(t)
	if c.Subprotocol() != "b" || bc.Subprotocol() != "b" {
		t.Errorf("subprotocol client %q backend %q, want b at both ends", c.Subprotocol(), bc.Subprotocol())
	}
}

func TestHandshakeHeaders(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{}, nil, http.Header{"Set-Cookie": {"affinity=node-7"}}, false)
	gw := startGateway(t, be.url())
	_, resp := dialGorilla(t, nil, gw.url("/chat?room=1&access_token=t0k"), http.Header{"Origin": {"https://app.example"}, "X-Test": {"yes"}})
	r := <-be.reqs
	got := map[string]string{
		"path":            r.URL.Path,
		"query":           r.URL.RawQuery,
		"origin":          r.Header.Get("Origin"),
		"x-test":          r.Header.Get("X-Test"),
		"x-forwarded-for": r.Header.Get("X-Forwarded-For"),
		"101 set-cookie":  resp.Header.Get("Set-Cookie"),
		"101 request id":  resp.Header.Get("X-Request-Id"),
	}
	want := map[string]string{
		"path":            "/chat",
		"query":           "room=1&access_token=t0k",
		"origin":          "https://app.example",
		"x-test":          "yes",
		"x-forwarded-for": "192.0.2.1",
		"101 set-cookie":  "affinity=node-7",
		"101 request id":  "req-1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("handshake (-want +got):\n%s", diff)
	}
}

func TestMaxMessageBytes(t *testing.T) {
	t.Parallel()
	const limit = 1000
	tests := []struct {
		name        string
		fromBackend bool
		writeBuf    int // small buffers fragment the message, so the limit spans frames
	}{
		{"from client", false, 0},
		{"from client fragmented", false, 64},
		{"from backend", true, 0},
		{"from backend fragmented", true, 64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := startBackend(t, websocket.Upgrader{WriteBufferSize: tc.writeBuf}, nil, nil, false)
			gw := startGateway(t, be.url(), withLimits(wsproxy.Limits{MaxMessageBytes: limit, CloseTimeout: 2 * time.Second}))
			c, _ := dialGorilla(t, &websocket.Dialer{WriteBufferSize: tc.writeBuf}, gw.url("/"), nil)
			bc := be.conn(t)
			sender, receiver := c, bc
			if tc.fromBackend {
				sender, receiver = bc, c
			}
			// A message of exactly the limit passes.
			if err := sender.WriteMessage(websocket.BinaryMessage, make([]byte, limit)); err != nil {
				t.Fatal(err)
			}
			receiver.SetReadDeadline(time.Now().Add(waitFor))
			if _, p, err := receiver.ReadMessage(); err != nil || len(p) != limit {
				t.Fatalf("message at the limit: %d bytes, %v", len(p), err)
			}
			if err := sender.WriteMessage(websocket.BinaryMessage, make([]byte, limit+1)); err != nil {
				t.Fatal(err)
			}
			for name, conn := range map[string]*websocket.Conn{"sender": sender, "receiver": receiver} {
				if ce := readClose(t, conn); ce.Code != websocket.CloseMessageTooBig || ce.Text != "message too big" {
					t.Errorf("%s got close %d %q, want 1009 \"message too big\"", name, ce.Code, ce.Text)
				}
			}
			st := gw.result(t)
			if st.ClosedBy != wsproxy.ByGateway || st.CloseCode != 1009 || st.MessagesIn+st.MessagesOut != 1 {
				t.Errorf("stats = %+v, want the gateway closing with 1009 after 1 message", st)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	t.Run("quiet session closes", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
		gw := startGateway(t, be.url(), withLimits(wsproxy.Limits{IdleTimeout: idle}))
		start := time.Now()
		c, _ := dialGorilla(t, nil, gw.url("/"), nil)
		bc := be.conn(t)
		for name, conn := range map[string]*websocket.Conn{"client": c, "backend": bc} {
			if ce := readClose(t, conn); ce.Code != websocket.CloseGoingAway || ce.Text != "idle timeout" {
				t.Errorf("%s got close %d %q, want 1001 \"idle timeout\"", name, ce.Code, ce.Text)
			}
		}
		if d := time.Since(start); d < idle {
			t.Errorf("closed after %v, before the %v idle timeout", d, idle)
		}
		if st := gw.result(t); st.ClosedBy != wsproxy.ByGateway || st.Reason != "idle timeout" {
			t.Errorf("stats = %+v, want a gateway idle timeout", st)
		}
	})
	t.Run("endpoint pings keep it open", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, echo, nil, false)
		// A longer timeout than above, pinged every tenth of it: a loaded machine that stalls
		// a sleep by several tenths still pings in time.
		const pingedIdle = time.Second
		gw := startGateway(t, be.url(), withLimits(wsproxy.Limits{IdleTimeout: pingedIdle}))
		c, _ := dialGorilla(t, nil, gw.url("/"), nil)
		start := time.Now()
		for time.Since(start) < 3*pingedIdle/2 {
			// This sleep stays: the pings must be spread over more than the idle timeout.
			time.Sleep(pingedIdle / 10)
			if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(waitFor)); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.WriteMessage(websocket.TextMessage, []byte("still there?")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(waitFor))
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "still there?" {
			t.Errorf("after %v of pings: %q, %v; want the echo", time.Since(start), p, err)
		}
	})
}

func TestKeepalivePings(t *testing.T) {
	t.Parallel()
	const interval = 100 * time.Millisecond
	t.Run("answered pings are not relayed", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
		// No idle timeout the wait for four pings could outlast on a loaded machine: pings are
		// not messages, so an idle timeout would close the session whatever they did.
		gw := startGateway(t, be.url(), withLimits(wsproxy.Limits{PingInterval: interval, IdleTimeout: time.Hour}))
		c, _ := dialGorilla(t, nil, gw.url("/"), nil)
		bc := be.conn(t)
		var pings, pongs atomic.Int32
		for _, conn := range []*websocket.Conn{c, bc} {
			conn.SetPingHandler(func(s string) error {
				pings.Add(1)
				return conn.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(waitFor))
			})
			conn.SetPongHandler(func(string) error { pongs.Add(1); return nil })
		}
		readLoop(bc)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		testwait.Until(t, waitFor, "several keepalive pings", func() bool { return pings.Load() >= 4 })
		if pongs.Load() != 0 {
			t.Errorf("endpoints got %d pongs, want the keepalive pongs swallowed", pongs.Load())
		}
		if s := gw.session(t).Stats(); s.ClosedBy != "" {
			t.Errorf("session closed: %+v", s)
		}
	})
	t.Run("silent client is dropped", func(t *testing.T) {
		t.Parallel()
		be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
		gw := startGateway(t, be.url(), withLimits(wsproxy.Limits{PingInterval: interval, CloseTimeout: time.Second}))
		rawDial(t, gw.url("/")) // never answers anything
		bc := be.conn(t)
		start := time.Now()
		if ce := readClose(t, bc); ce.Code != websocket.CloseGoingAway {
			t.Errorf("backend got close %d, want 1001", ce.Code)
		}
		if d := time.Since(start); d < interval {
			t.Errorf("dropped after %v, want about %v", d, 2*interval)
		}
		st := gw.result(t)
		if st.ClosedBy != wsproxy.ByClient || st.CloseCode != 1006 || st.Reason != "ping timeout" {
			t.Errorf("stats = %+v, want the client gone with 1006 \"ping timeout\"", st)
		}
	})
}

func TestSessionClose(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		close      func(s *wsproxy.Session, cancel context.CancelFunc)
		wantCode   int
		wantReason string
	}{
		{"revocation", func(s *wsproxy.Session, _ context.CancelFunc) { s.Close(1008, "subscription revoked") }, 1008, "subscription revoked"},
		{"context ends", func(_ *wsproxy.Session, cancel context.CancelFunc) { cancel() }, 1001, "going away"},
		{"unsendable code", func(s *wsproxy.Session, _ context.CancelFunc) { s.Close(1006, "drain") }, 1001, "drain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
			gw := startGateway(t, be.url(), withContext(ctx))
			c, _ := dialGorilla(t, nil, gw.url("/"), nil)
			bc := be.conn(t)
			tc.close(gw.session(t), cancel)
			for name, conn := range map[string]*websocket.Conn{"client": c, "backend": bc} {
				if ce := readClose(t, conn); ce.Code != tc.wantCode || ce.Text != tc.wantReason {
					t.Errorf("%s got close %d %q, want %d %q", name, ce.Code, ce.Text, tc.wantCode, tc.wantReason)
				}
			}
			want := wsproxy.Stats{ClosedBy: wsproxy.ByGateway, CloseCode: uint16(tc.wantCode), Reason: tc.wantReason}
			if diff := cmp.Diff(want, gw.result(t)); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCloseDuringLargeFrame(t *testing.T) {
	t.Parallel()
	// The backend is sent the start of a large frame and then Close is called: the
	// injected close frame must wait for the frame to end, not land inside it.
	srv, conns := startRawBackend(t)
	gw := startGateway(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	client := rawDial(t, gw.url("/"))
	back := takeRaw(t, conns)
	s := gw.session(t)

	f := mustFrame(t, true, 0, frame.OpBinary, true, bytes.Repeat([]byte("x"), 100000))
	client.Write(f[:50000])
	back.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := back.r.Peek(2); err != nil { // the gateway is inside the frame now
		t.Fatalf("backend got no start of the frame: %v", err)
	}
	s.Close(1008, "subscription revoked")
	// This sleep stays: it gives a wrong writer time to put the close frame inside the large
	// one. A slow machine only makes the test less likely to catch that; it cannot fail it.
	time.Sleep(50 * time.Millisecond)
	client.Write(f[50000:])
	h, p := back.readFrame(t)
	if h.Opcode != frame.OpBinary || len(p) != 100000 {
		t.Fatalf("backend got %v frame of %d bytes, want the whole binary frame", h.Opcode, len(p))
	}
	if code, reason := back.readClose(t); code != 1008 || reason != "subscription revoked" {
		t.Errorf("backend close %d %q after the frame, want 1008", code, reason)
	}
}

func TestConnectionDrop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dropClient bool
		wantBy     string
	}{
		{"client drops", true, wsproxy.ByClient},
		{"backend drops", false, wsproxy.ByBackend},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
			gw := startGateway(t, be.url())
			c, _ := dialGorilla(t, nil, gw.url("/"), nil)
			bc := be.conn(t)
			dropped, other := c, bc
			if !tc.dropClient {
				dropped, other = bc, c
			}
			dropped.NetConn().Close()
			if ce := readClose(t, other); ce.Code != websocket.CloseGoingAway || ce.Text != "going away" {
				t.Errorf("other side got close %d %q, want 1001 \"going away\"", ce.Code, ce.Text)
			}
			st := gw.result(t)
			if st.ClosedBy != tc.wantBy || st.CloseCode != 1006 {
				t.Errorf("stats = %+v, want closed by %s with 1006", st, tc.wantBy)
			}
		})
	}
}

func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		send []byte
	}{
		{"unmasked client frame", []byte{0x81, 0x02, 'h', 'i'}},
		{"reserved opcode", []byte{0x83, 0x80, 0, 0, 0, 0}},
		{"continuation without a message", []byte{0x80, 0x80, 0, 0, 0, 0}},
		{"new message inside a fragmented one", []byte{0x01, 0x80, 0, 0, 0, 0, 0x81, 0x80, 0, 0, 0, 0}},
		{"fragmented ping", []byte{0x09, 0x80, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
			gw := startGateway(t, be.url())
			client := rawDial(t, gw.url("/"))
			bc := be.conn(t)
			client.Write(tc.send)
			if code, _ := client.readClose(t); code != 1002 {
				t.Errorf("client got close %d, want 1002", code)
			}
			if ce := readClose(t, bc); ce.Code != websocket.CloseGoingAway {
				t.Errorf("backend got close %d, want 1001", ce.Code)
			}
			if st := gw.result(t); st.ClosedBy != wsproxy.ByGateway || st.CloseCode != 1002 {
				t.Errorf("stats = %+v, want the gateway closing with 1002", st)
			}
		})
	}
}

func TestMessageStartHook(t *testing.T) {
	t.Parallel()
	var in atomic.Int32
	hooks := wsproxy.Hooks{MessageStart: func(dir wsproxy.Direction) (uint16, string) {
		if dir == wsproxy.FromClient && in.Add(1) > 2 {
			return 1008, "message rate exceeded"
		}
		return 0, ""
	}}
	be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
	gw := startGateway(t, be.url(), withHooks(hooks))
	c, _ := dialGorilla(t, nil, gw.url("/"), nil)
	bc := be.conn(t)
	for _, m := range []string{"one", "two", "three"} {
		c.WriteMessage(websocket.TextMessage, []byte(m))
	}
	var got []string
	bc.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, p, err := bc.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1008 || ce.Text != "message rate exceeded" {
				t.Errorf("backend read ended with %v, want close 1008", err)
			}
			break
		}
		got = append(got, string(p))
	}
	if diff := cmp.Diff([]string{"one", "two"}, got); diff != "" {
		t.Errorf("backend messages (-want +got):\n%s", diff)
	}
	if ce := readClose(t, c); ce.Code != 1008 {
		t.Errorf("client got close %d, want 1008", ce.Code)
	}
	gw.result(t)
}

// TestManySessionsAtOnce relays messages of many sizes over many sessions at once, so that
// the event loops read and write for several sessions in one batch, and checks every echo
// and every session's counts.
func TestManySessionsAtOnce(t *testing.T) {
	t.Parallel()
	manySessions(t)
}

func manySessions(t *testing.T, opts ...gatewayOption) {
	manySessionsTo(t, false, opts...)
}

// manySessionsTo is manySessions with a wss backend when backendTLS.
func manySessionsTo(t *testing.T, backendTLS bool, opts ...gatewayOption) {
	const sessions, perSession = 14, 60 // the helpers buffer 16 sessions
	be := startBackend(t, websocket.Upgrader{}, echo, nil, backendTLS)
	if backendTLS { // be.url() is wss://
		opts = append(opts, withTLS(trusting(be)))
	}
	gw := startGateway(t, be.url(), opts...)
	before := wsproxy.RingBatches()
	errs := make(chan error, sessions)
	for n := range sessions {
		c, _ := dialGorilla(t, gw.dialer(), gw.url("/echo"), nil)
		go func() {
			rnd := rand.New(rand.NewPCG(uint64(n), 7))
			sent := make([][]byte, perSession)
			for i := range sent {
				size := rnd.IntN(300)
				if i%7 == 3 {
					size = 20_000 + rnd.IntN(60_000) // over one read
				}
				sent[i] = make([]byte, size)
				for j := range sent[i] {
					sent[i][j] = byte(rnd.Uint32())
				}
			}
			wrote := make(chan struct{})
			go func() { // pipelined: the relay has several messages of a session at once
				defer close(wrote)
				for _, m := range sent {
					if err := c.WriteMessage(websocket.BinaryMessage, m); err != nil {
						return
					}
				}
			}()
			for i, m := range sent {
				c.SetReadDeadline(time.Now().Add(waitFor))
				_, p, err := c.ReadMessage()
				if err != nil || !bytes.Equal(p, m) {
					errs <- fmt.Errorf("session %d message %d: %d bytes back (%v), want the %d sent", n, i, len(p), err, len(m))
					return
				}
			}
			<-wrote
			c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"))
			errs <- nil
		}()
	}
	for range sessions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for range sessions {
		if st := gw.result(t); st.MessagesIn != perSession || st.MessagesOut != perSession || st.CloseCode != 1000 {
			t.Errorf("stats = %+v, want %d messages each way and 1000", st, perSession)
		}
	}
	// TLS sides are decrypted as they are read, never batched: only plain clients' sessions
	// are sure to put several reads in one batch.
	if testEngine.UsesRing() && !gw.clientTLS && !backendTLS && wsproxy.RingBatches() == before {
		t.Error("no batch of reads went through io_uring")
	}
}

// TestTLSSessions runs sessions with TLS on the client's side, the backend's (wss), or both: on
// the event-loop engine crypto/tls decrypts and encrypts each TLS side on the loop.
func TestTLSSessions(t *testing.T) {
	t.Parallel()
	for _, sides := range []struct {
		name            string
		client, backend bool
	}{{"TLS client", true, false}, {"TLS backend", false, true}, {"TLS both", true, true}} {
		t.Run(sides.name, func(t *testing.T) {
			t.Parallel()
			// start starts a backend running handle and a gateway in front of it.
			start := func(t *testing.T, handle func(*websocket.Conn)) *gateway {
				be := startBackend(t, websocket.Upgrader{}, handle, nil, sides.backend)
				var opts []gatewayOption
				if sides.client {
					opts = append(opts, withClientTLS())
				}
				if sides.backend { // be.url() is wss://
					opts = append(opts, withTLS(trusting(be)))
				}
				return startGateway(t, be.url(), opts...)
			}
			t.Run("messages and close", func(t *testing.T) {
				t.Parallel()
				gw := start(t, echo)
				c, _ := dialGorilla(t, gw.dialer(), gw.url("/echo"), nil)
				// A TLS backend moves onto the loop when wsproxy.Dial has an engine.
				onLoop := testEngine != nil && (!sides.backend || gw.dialEngine != nil)
				s := gw.session(t)
				if s.OnLoop() != onLoop {
					t.Errorf("session on the event loop: %v, want %v", s.OnLoop(), onLoop)
				}
				big := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB: many TLS records
				sent := [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{7}, 300), big}
				for _, m := range sent {
					if err := c.WriteMessage(websocket.BinaryMessage, m); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(waitFor))
					if _, p, err := c.ReadMessage(); err != nil || !bytes.Equal(p, m) {
						t.Fatalf("echo of %d bytes: %d bytes, %v", len(m), len(p), err)
					}
				}
				// The ciphertext of the 160 KiB message is not kept once sent.
				if cb, bb := s.TLSBuffers(); cb > 17<<10 || bb > 17<<10 {
					t.Errorf("ciphertext buffers kept after the echo: %d bytes (client side), %d (backend side)", cb, bb)
				}
				c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"))
				if ce := readClose(t, c); ce.Code != websocket.CloseNormalClosure {
					t.Errorf("client got close %d, want the backend's 1000", ce.Code)
				}
				payload := int64(5 + 0 + 300 + len(big))
				want := wsproxy.Stats{MessagesIn: 4, MessagesOut: 4, BytesIn: payload, BytesOut: payload,
					CloseCode: 1000, ClosedBy: wsproxy.ByClient, Reason: "done"}
				if diff := cmp.Diff(want, gw.result(t)); diff != "" {
					t.Errorf("stats (-want +got):\n%s", diff)
				}
			})
			t.Run("backend sends first and closes", func(t *testing.T) {
				t.Parallel()
				gw := start(t, func(c *websocket.Conn) {
					// Sent with the 101's flight: crypto/tls may have read it during the
					// upgrade, before the loop takes the connection.
					c.WriteMessage(websocket.TextMessage, []byte("welcome"))
					c.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 70_000))
					c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye"))
					c.SetReadDeadline(time.Now().Add(waitFor))
					c.ReadMessage() // the client's echo of the close
				})
				c, _ := dialGorilla(t, gw.dialer(), gw.url("/"), nil)
				c.SetReadDeadline(time.Now().Add(waitFor))
				if _, p, err := c.ReadMessage(); err != nil || string(p) != "welcome" {
					t.Fatalf("first message %q, %v", p, err)
				}
				if _, p, err := c.ReadMessage(); err != nil || len(p) != 70_000 {
					t.Fatalf("second message: %d bytes, %v", len(p), err)
				}
				if ce := readClose(t, c); ce.Code != 4000 || ce.Text != "bye" {
					t.Errorf("client got close %d %q, want 4000 bye", ce.Code, ce.Text)
				}
				c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, ""))
				if st := gw.result(t); st.ClosedBy != wsproxy.ByBackend || st.CloseCode != 4000 || st.MessagesOut != 2 {
					t.Errorf("stats = %+v, want 2 messages out, closed by the backend with 4000", st)
				}
			})
			t.Run("gateway close", func(t *testing.T) {
				t.Parallel()
				gw := start(t, echo)
				c, _ := dialGorilla(t, gw.dialer(), gw.url("/echo"), nil)
				gw.session(t).Close(4001, "revoked")
				if ce := readClose(t, c); ce.Code != 4001 || ce.Text != "revoked" {
					t.Errorf("client got close %d %q, want 4001 revoked", ce.Code, ce.Text)
				}
				c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, ""))
				if st := gw.result(t); st.ClosedBy != wsproxy.ByGateway || st.CloseCode != 4001 {
					t.Errorf("stats = %+v, want closed by the gateway with 4001", st)
				}
			})
			t.Run("many sessions", func(t *testing.T) {
				t.Parallel()
				var opts []gatewayOption
				if sides.client {
					opts = append(opts, withClientTLS())
				}
				manySessionsTo(t, sides.backend, opts...)
			})
		})
	}
}

// trusting returns a TLS configuration that trusts be's test certificate.
func trusting(be *backend) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(be.srv.Certificate())
	return &tls.Config{RootCAs: pool}
}
