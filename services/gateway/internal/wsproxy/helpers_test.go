package wsproxy_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// waitFor bounds every wait in these tests.
const waitFor = 5 * time.Second

// gateway is the gateway's WebSocket path cut down to what wsproxy needs: it forwards a
// few client headers and the query, dials the backend, passes refusals back, accepts the
// client and runs the session.
type gateway struct {
	srv       *httptest.Server
	backend   string
	limits    wsproxy.Limits
	hooks     wsproxy.Hooks
	tls       *tls.Config
	ctx       context.Context
	engine    *wsproxy.Engine // nil: the goroutine engine
	clientTLS bool            // clients reach the gateway over TLS (wss)
	front     *wsproxy.Front  // serves plain clients from the loops; nil: net/http does
	// dialEngine dials ws backends from its loops; nil: net.Dial does
	dialEngine *wsproxy.Engine
	sessions   chan *wsproxy.Session
	stats      chan wsproxy.Stats
	dialErrs   chan error
}

type gatewayOption func(*gateway)

func withLimits(l wsproxy.Limits) gatewayOption     { return func(g *gateway) { g.limits = l } }
func withHooks(h wsproxy.Hooks) gatewayOption       { return func(g *gateway) { g.hooks = h } }
func withTLS(c *tls.Config) gatewayOption           { return func(g *gateway) { g.tls = c } }
func withContext(ctx context.Context) gatewayOption { return func(g *gateway) { g.ctx = ctx } }

// withClientTLS makes clients reach the gateway over TLS; dial it with g.dialer().
func withClientTLS() gatewayOption { return func(g *gateway) { g.clientTLS = true } }

// dialer returns a dialer that trusts the gateway's test certificate.
func (g *gateway) dialer() *websocket.Dialer {
	d := *websocket.DefaultDialer
	if g.clientTLS {
		d.TLSClientConfig = g.srv.Client().Transport.(*http.Transport).TLSClientConfig
	}
	return &d
}

// withGoroutineEngine runs the gateway's sessions on the goroutine engine whatever
// -wsproxy.engine says.
func withGoroutineEngine() gatewayOption {
	return func(g *gateway) { g.engine, g.dialEngine = nil, nil }
}

func startGateway(t testing.TB, backendURL string, opts ...gatewayOption) *gateway {
	t.Helper()
	g := &gateway{
		backend:    backendURL,
		limits:     wsproxy.Limits{CloseTimeout: 2 * time.Second},
		ctx:        context.Background(),
		engine:     testEngine,
		dialEngine: frontEngine(),
		sessions:   make(chan *wsproxy.Session, 16),
		stats:      make(chan wsproxy.Stats, 16),
		dialErrs:   make(chan error, 16),
	}
	for _, o := range opts {
		o(g)
	}
	if g.clientTLS {
		g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
		g.srv.Listener = wsproxy.TLSListener(g.srv.Listener) // as the node wraps its TLS listeners
		g.srv.StartTLS()
	} else {
		g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
		if g.engine != nil && *frontFlag { // as the node serves its plain listener
			front, err := g.engine.Front(g.srv.Listener, wsproxy.FrontOptions{Handler: g.srv.Config.Handler})
			if err != nil && !errors.Is(err, errors.ErrUnsupported) {
				t.Fatal(err)
			}
			if err == nil {
				g.srv.Listener, g.front = front, front
			}
		}
		g.srv.Start()
	}
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gateway) serve(w http.ResponseWriter, r *http.Request) {
	u, err := url.Parse(g.backend)
	if err != nil {
		panic(err)
	}
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	hdr := http.Header{}
	for _, name := range []string{"Origin", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "X-Test"} {
		if v := r.Header.Values(name); len(v) > 0 {
			hdr[name] = v
		}
	}
	hdr.Set("X-Forwarded-For", "192.0.2.1")
	be, refused, err := wsproxy.Dial(r.Context(), wsproxy.DialRequest{
		URL: u, Header: hdr, Key: r.Header.Get("Sec-WebSocket-Key"), TLS: g.tls, Timeout: 2 * time.Second,
		Engine: g.dialEngine,
	})
	if err != nil {
		g.dialErrs <- err
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, `{"statusCode":502,"message":"Bad gateway"}`)
		return
	}
	if refused != nil {
		for k, v := range refused.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(refused.Status)
		w.Write(refused.Body)
		return
	}
	w.Header().Set("X-Request-Id", "req-1")
	var s *wsproxy.Session
	var conn net.Conn
	var br *bufio.Reader
	if conn, br, err = wsproxy.Upgrade(w, r, be); err == nil {
		s = g.engine.NewSession(conn, br, be, g.limits, g.hooks)
	}
	if err != nil {
		g.dialErrs <- err
		return
	}
	g.sessions <- s
	g.stats <- s.Run(g.ctx)
}

func (g *gateway) url(path string) string { return "ws" + strings.TrimPrefix(g.srv.URL, "http") + path }

func (g *gateway) session(t testing.TB) *wsproxy.Session {
	t.Helper()
	select {
	case s := <-g.sessions:
		return s
	case <-time.After(waitFor):
		t.Fatal("no session started")
		return nil
	}
}

func (g *gateway) result(t testing.TB) wsproxy.Stats {
	t.Helper()
	select {
	case s := <-g.stats:
		return s
	case <-time.After(waitFor):
		t.Fatal("session did not end")
		return wsproxy.Stats{}
	}
}

// backend is a gorilla WebSocket server whose connections the test drives.
type backend struct {
	srv   *httptest.Server
	conns chan *websocket.Conn
	reqs  chan *http.Request
}

// startBackend serves up with handle on each connection, in a new goroutine per
// connection; a nil handle hands connections to the test through conns.
func startBackend(t testing.TB, up websocket.Upgrader, handle func(*websocket.Conn), respHeader http.Header, useTLS bool) *backend {
	t.Helper()
	b := &backend{conns: make(chan *websocket.Conn, 16), reqs: make(chan *http.Request, 16)}
	up.CheckOrigin = func(*http.Request) bool { return true }
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.reqs <- r
		c, err := up.Upgrade(w, r, respHeader)
		if err != nil {
			return
		}
		if handle == nil {
			b.conns <- c
			return
		}
		defer c.Close()
		handle(c)
	})
	b.srv = httptest.NewUnstartedServer(h)
	b.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed TLS handshakes are expected
	if useTLS {
		b.srv.StartTLS()
	} else {
		b.srv.Start()
	}
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) url() string { return "ws" + strings.TrimPrefix(b.srv.URL, "http") }

func (b *backend) conn(t testing.TB) *websocket.Conn {
	t.Helper()
	select {
	case c := <-b.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(waitFor):
		t.Fatal("backend got no connection")
		return nil
	}
}

// echo writes back every message until the connection fails.
func echo(c *websocket.Conn) {
	for {
		typ, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(typ, p); err != nil {
			return
		}
	}
}

func dialGorilla(t testing.TB, d *websocket.Dialer, u string, h http.Header) (*websocket.Conn, *http.Response) {
	t.Helper()
	if d == nil {
		d = &websocket.Dialer{}
	}
	d.HandshakeTimeout = waitFor
	c, resp, err := d.Dial(u, h)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", u, err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c, resp
}

// readClose reads until the connection reports a close frame and returns it.
func readClose(t testing.TB, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v, want a close frame", err)
		}
		return ce
	}
}

// readLoop reads in the background, so that gorilla answers pings and closes.
func readLoop(c *websocket.Conn) {
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
}

// rawConn is a WebSocket connection handled frame by frame.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

const rawKey = "dGhlIHNhbXBsZSBub25jZQ=="

// rawDial opens a WebSocket connection by hand, for tests that need exact frames.
func rawDial(t testing.TB, u string) rawConn {
	t.Helper()
	return rawDialExt(t, u, "")
}

// rawDialExt is rawDial offering the extensions ext (none when empty).
func rawDialExt(t testing.TB, u, ext string) rawConn {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if ext != "" {
		ext = "Sec-WebSocket-Extensions: " + ext + "\r\n"
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n", pu.RequestURI(), pu.Host, rawKey, ext)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != accept(rawKey) {
		t.Fatalf("handshake answered %s %v", resp.Status, resp.Header)
	}
	return rawConn{conn, br}
}

func accept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// startRawBackend upgrades by hand and hands each connection to the test.
func startRawBackend(t testing.TB) (*httptest.Server, chan rawConn) {
	t.Helper()
	conns := make(chan rawConn, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		// The extensions offered are accepted as they come: the frames are the test's.
		ext := ""
		if v := r.Header.Get("Sec-WebSocket-Extensions"); v != "" {
			ext = "Sec-WebSocket-Extensions: " + v + "\r\n"
		}
		fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\n%s\r\n", accept(r.Header.Get("Sec-WebSocket-Key")), ext)
		conns <- rawConn{conn, brw.Reader}
	}))
	t.Cleanup(srv.Close)
	return srv, conns
}

func takeRaw(t testing.TB, conns chan rawConn) rawConn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(waitFor):
		t.Fatal("raw backend got no connection")
		return rawConn{}
	}
}

// readFrame reads one frame and returns its header and unmasked payload.
func (c rawConn) readFrame(t testing.TB) (frame.Header, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitFor))
	p, err := c.r.Peek(2)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	p, err = c.r.Peek(frame.HeaderLen(p[0], p[1]))
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	h, n, err := frame.Parse(p)
	if err != nil {
		t.Fatalf("parse frame: %v", err)
	}
	c.r.Discard(n)
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, payload); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	if h.Masked {
		frame.MaskBytes(h.Mask, 0, payload)
	}
	return h, payload
}

// readClose reads frames until a close frame and returns its code and reason.
func (c rawConn) readClose(t testing.TB) (uint16, string) {
	t.Helper()
	for {
		h, p := c.readFrame(t)
		if h.Opcode == frame.OpClose {
			code, reason, err := frame.ParseClose(p)
			if err != nil {
				t.Fatal(err)
			}
			return code, string(reason)
		}
	}
}

// mustFrame encodes one frame, masked with a fixed key when masked is set.
func mustFrame(t testing.TB, fin bool, rsv uint8, op frame.Opcode, masked bool, payload []byte) []byte {
	t.Helper()
	h := frame.Header{Fin: fin, Rsv: rsv, Opcode: op, Masked: masked}
	if masked {
		h.Mask = [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	}
	b, err := frame.AppendFrame(nil, h, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
