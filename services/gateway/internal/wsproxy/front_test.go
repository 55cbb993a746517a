//go:build linux

package wsproxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
)

// TestFrontServesUpgrades: an upgrade request is served by the loops themselves, and the
// session relays.
func TestFrontServesUpgrades(t *testing.T) {
	if testEngine == nil || !*frontFlag {
		t.Skip("needs the loop engine with -wsproxy.front (the Makefile runs the suite both ways)")
	}
	be := startBackend(t, websocket.Upgrader{}, echo, nil, false)
	g := startGateway(t, be.url())
	for i := range 3 {
		c, _ := dialGorilla(t, websocket.DefaultDialer, g.url("/echo"), nil)
		msg := fmt.Sprintf("hello %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(waitFor))
		if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
			t.Fatalf("echo: %q, %v", got, err)
		}
		c.Close()
	}
	if _, served := g.front.Counts(); served != 3 {
		t.Errorf("the front served %d upgrades, want 3", served)
	}
}

// sendRaw opens a connection to addr, writes req on it as it is, and returns a reader of the
// answer; the connection closes with the test and gives up after waitFor.
func sendRaw(t *testing.T, addr, req string) *bufio.Reader {
	t.Helper()
	conn, br := dialRaw(t, addr)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return br
}

// dialRaw connects to addr for requests written by hand, and a reader of the answers: the
// connection closes at the test's end, and its reads and writes fail after waitFor.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(waitFor))
	return conn, bufio.NewReader(conn)
}

// testFront is a Front whose handed-over connections net/http serves; handed receives a
// value each time net/http takes one.
type testFront struct {
	*wsproxy.Front
	handed chan struct{}
}

// Accept is the Front's, telling handed.
func (f *testFront) Accept() (net.Conn, error) {
	c, err := f.Front.Accept()
	if err == nil {
		select {
		case f.handed <- struct{}{}:
		default:
		}
	}
	return c, err
}

// startFront serves h on a Front over a new listener, with net/http taking what the front
// hands over, and returns the address.
func startFront(t *testing.T, h http.Handler) (*testFront, string) {
	t.Helper()
	if testEngine == nil {
		t.Skip("the front needs the loop engine (the Makefile runs the suite on it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := testEngine.Front(ln, wsproxy.FrontOptions{Handler: h, MaxHeaderBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFront{Front: f, handed: make(chan struct{}, 64)}
	srv := &http.Server{Handler: h}
	go srv.Serve(tf)
	t.Cleanup(func() { srv.Close() })
	return tf, ln.Addr().String()
}

// TestFrontHandsOver: what the front does not serve itself (other requests, upgrade
// requests that are not plain or did not come whole, the next request after a refused
// upgrade) net/http serves, on the same connection, as if it had accepted it.
func TestFrontHandsOver(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by := "net/http"
		if strings.HasSuffix(fmt.Sprintf("%T", w), "frontWriter") {
			by = "front"
		}
		w.Header().Set("X-Served-By", by)
		if r.Header.Get("Upgrade") != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="x"`)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"statusCode":401,"message":"no"}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s host=%s body=%q remote=%v", r.Method, r.RequestURI, r.Proto, r.Host, body, r.RemoteAddr != "")
	})
	f, addr := startFront(t, h)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitFor))
	br := bufio.NewReader(conn)
	roundTrip := func(req string) (*http.Response, string) {
		t.Helper()
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}
	upgrade := "GET /ws HTTP/1.1\r\nHost: gw.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

	// A refused upgrade: the front answers as net/http would, and keeps the connection.
	resp, body := roundTrip(upgrade)
	if resp.StatusCode != http.StatusUnauthorized || body != `{"statusCode":401,"message":"no"}` ||
		resp.Header.Get("X-Served-By") != "front" || resp.Header.Get("WWW-Authenticate") == "" ||
		resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(body)) || resp.Close {
		t.Fatalf("refused upgrade: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// The next requests on the connection go to net/http.
	resp, body = roundTrip("GET /plain?a=1 HTTP/1.1\r\nHost: gw.example\r\n\r\n")
	if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "net/http" || body != `GET /plain?a=1 HTTP/1.1 host=gw.example body="" remote=true` {
		t.Fatalf("after the refusal: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, _ = roundTrip(upgrade)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Served-By") != "net/http" {
		t.Fatalf("an upgrade on a handed-over connection: %d %v", resp.StatusCode, resp.Header)
	}

	// Each of these, on a connection of its own, is net/http's: what they get is its answer.
	for _, c := range []struct{ name, req, status, by string }{
		{"POST with a body", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", "200", "net/http"},
		{"HTTP/1.0 upgrade", "GET /ws HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "401", "net/http"},
		{"two Host headers", "GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "400", ""},
		{"no Host", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "400", ""},
		{"upgrade with a body", "GET /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nx", "401", "net/http"},
		{"absolute form", "GET http://a/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "401", "net/http"},
		{"header over the limit", "GET /ws HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "401", "net/http"},
		{"bad request line", "GET /ws\r\nHost: a\r\n\r\n", "400", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := http.ReadResponse(sendRaw(t, addr, c.req), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(resp.StatusCode); got != c.status || resp.Header.Get("X-Served-By") != c.by {
				t.Errorf("status %s, served by %q; want %s, %q", got, resp.Header.Get("X-Served-By"), c.status, c.by)
			}
		})
	}

	// An upgrade request cut in two: the front reads the first part only and hands the
	// connection over, so net/http reads the rest and serves it.
	for len(f.handed) > 0 {
		<-f.handed
	}
	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	io.WriteString(conn2, upgrade[:20])
	select {
	case <-f.handed:
	case <-time.After(waitFor):
		t.Fatal("the front did not hand the connection over")
	}
	io.WriteString(conn2, upgrade[20:])
	conn2.SetDeadline(time.Now().Add(waitFor))
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Served-By") != "net/http" {
		t.Fatalf("split upgrade: %d %v", resp.StatusCode, resp.Header)
	}

	// Closed: no more connections.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Accept(); err == nil {
		t.Fatal("Accept after Close succeeded")
	}
	if c, err := net.DialTimeout("tcp", addr, waitFor); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Close")
	}
}

// TestLoopDial: a ws backend dialed from the loops upgrades, relays on either engine (the
// goroutine engine moves it into the runtime's poller), passes refusals on, and is not
// dialed where Allow refuses its address.
func TestLoopDial(t *testing.T) {
	if testEngine == nil {
		t.Skip("the loops dial only with the loop engine (the Makefile runs the suite on it)")
	}
	be := startBackend(t, websocket.Upgrader{}, echo, nil, false)
	for _, name := range []string{"loop engine", "goroutine engine"} {
		t.Run(name, func(t *testing.T) {
			opts := []gatewayOption{func(g *gateway) { g.dialEngine = testEngine }}
			if name == "goroutine engine" {
				opts = append(opts, func(g *gateway) { g.engine = nil })
			}
			g := startGateway(t, be.url(), opts...)
			c, _ := dialGorilla(t, websocket.DefaultDialer, g.url("/echo"), nil)
			defer c.Close()
			big := strings.Repeat("x", 200_000)
			for _, msg := range []string{"one", big, "three"} {
				if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(waitFor))
				if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
					t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
				}
			}
		})
	}

	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Why", "closed")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "go away")
	}))
	defer refusing.Close()
	u, _ := url.Parse("ws" + strings.TrimPrefix(refusing.URL, "http"))
	_, refused, err := wsproxy.Dial(context.Background(), wsproxy.DialRequest{URL: u, Engine: testEngine, Timeout: waitFor})
	if err != nil || refused == nil || refused.Status != http.StatusForbidden || string(refused.Body) != "go away" || refused.Header.Get("X-Why") != "closed" {
		t.Fatalf("refusal: %+v, %v", refused, err)
	}

	denied := errors.New("denied by policy")
	var asked netip.AddrPort
	_, _, err = wsproxy.Dial(context.Background(), wsproxy.DialRequest{URL: u, Engine: testEngine, Timeout: waitFor,
		Dial:  func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("Dial used") },
		Allow: func(host string, ap netip.AddrPort) error { asked = ap; return denied }})
	if !errors.Is(err, denied) || asked.String() != u.Host {
		t.Fatalf("Allow refusing %s: %v (asked about %s)", u.Host, err, asked)
	}

	// A name with several addresses (localhost: 127.0.0.1 and ::1, the backend on the first
	// only): each is tried until one connects.
	bu, _ := url.Parse(be.url())
	bu.Host = net.JoinHostPort("localhost", bu.Port())
	bu.Path = "/echo"
	up, _, err := wsproxy.Dial(context.Background(), wsproxy.DialRequest{URL: bu, Engine: testEngine, Timeout: waitFor})
	if err != nil {
		t.Fatalf("dial %s: %v", bu, err)
	}
	up.Close()

	// A port nothing listens on: the connect fails at once, with the kernel's reason.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, _, err = wsproxy.Dial(context.Background(), wsproxy.DialRequest{URL: &url.URL{Scheme: "ws", Host: closed, Path: "/"}, Engine: testEngine, Timeout: waitFor})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial of a closed port: %v", err)
	}
}

// TestFrontHandlerPanic: a handler's panic on an upgrade the front serves ends that
// connection, as net/http's server does, and the front goes on serving.
func TestFrontHandlerPanic(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic(http.ErrAbortHandler) // the quiet panic, as net/http's
		}
		w.WriteHeader(http.StatusTeapot)
	})
	_, addr := startFront(t, h)
	for _, c := range []struct {
		path string
		want int // 0: the connection ends without an answer
	}{{"/boom", 0}, {"/fine", http.StatusTeapot}} {
		req := "GET " + c.path + " HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
		resp, err := http.ReadResponse(sendRaw(t, addr, req), nil)
		switch {
		case c.want == 0 && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET):
			t.Errorf("%s: %v, %v; want the connection closed", c.path, resp, err)
		case c.want != 0 && (err != nil || resp.StatusCode != c.want):
			t.Errorf("%s: %v, %v; want %d", c.path, resp, err, c.want)
		}
	}
}
