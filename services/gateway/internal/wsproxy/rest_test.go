//go:build linux

package wsproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/tcptest"
)

// restGateway is a Front whose loops serve REST requests: each is sent to the backend at
// base plus its path, with X-Gateway added to the answer; "/local" is answered by the
// handler itself, and a request with X-Decline goes to net/http, which answers "net/http".
type restGateway struct {
	f      *testFront
	addr   string
	status chan int   // what LoopCall.Response heard
	failed chan error // what LoopCall.Failed heard
	// responseTimeout is the calls' ResponseHeaderTimeout (5 s unless set).
	responseTimeout atomic.Int64
	// failBody makes Failed write a body after its 502.
	failBody atomic.Bool
	// onServe, when set, runs on the loop first thing for each request.
	onServe atomic.Pointer[func(r *http.Request)]
}

func startREST(t *testing.T, base string, opt wsproxy.FrontOptions) *restGateway {
	t.Helper()
	if testEngine == nil {
		t.Skip("REST on the loops needs the loop engine (the Makefile runs the suite on it)")
	}
	return startRESTOn(t, testEngine, base, opt)
}

// startRESTOn is startREST on the loops of e.
func startRESTOn(t *testing.T, e *wsproxy.Engine, base string, opt wsproxy.FrontOptions) *restGateway {
	t.Helper()
	g := &restGateway{status: make(chan int, 64), failed: make(chan error, 64)}
	g.responseTimeout.Store(int64(5 * time.Second))
	netHTTP := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "net/http")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opt.Handler = netHTTP
	opt.REST = restFunc(func(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool) {
		if f := g.onServe.Load(); f != nil {
			(*f)(r)
		}
		switch {
		case r.Header.Get("X-Decline") != "":
			return nil, false
		case r.URL.Path == "/panic":
			panic("a handler's panic")
		case r.URL.Path == "/local":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, "short and stout")
			return nil, true
		}
		u, _ := url.Parse(base + r.URL.RequestURI())
		hdr := r.Header.Clone()
		hdr.Del("Connection")
		w.Header().Set("X-Gateway", "1")
		return &wsproxy.LoopCall{Request: &http.Request{Method: r.Method, URL: u, Header: hdr, Host: u.Host},
			ResponseHeaderTimeout: time.Duration(g.responseTimeout.Load()),
			Result: wsproxy.LoopFuncs{OnResponse: func(status int, _ http.Header) { g.status <- status },
				OnFailed: func(w http.ResponseWriter, err error) {
					g.failed <- err
					w.WriteHeader(http.StatusBadGateway)
					if g.failBody.Load() {
						io.WriteString(w, "bad gateway")
					}
				}}}, true
	})
	f, err := e.Front(ln, opt)
	if err != nil {
		t.Fatal(err)
	}
	g.f = &testFront{Front: f, handed: make(chan struct{}, 64)}
	srv := &http.Server{Handler: netHTTP}
	go srv.Serve(g.f)
	t.Cleanup(func() { srv.Close() })
	g.addr = ln.Addr().String()
	return g
}

type restFunc func(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool)

func (f restFunc) ServeLoop(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool) {
	return f(w, r)
}

// countingBackend answers with the request's path, and counts the connections it accepted.
func countingBackend(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "path "+r.URL.Path) }
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// readResponse reads one answer to a request of method from br, body included.
func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// TestRESTKeepAliveAndPipelining: requests sent one behind the other on a connection are
// answered in order by the loops, over one kept-alive backend connection, and the answer
// has the fields the handler added and not the backend's hop-by-hop ones.
func TestRESTKeepAliveAndPipelining(t *testing.T) {
	be, conns := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "no")
		io.WriteString(w, "path "+r.URL.Path)
	})
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	var reqs strings.Builder
	for i := range 3 {
		fmt.Fprintf(&reqs, "GET /item/%d HTTP/1.1\r\nHost: gw\r\n\r\n", i)
	}
	br := sendRaw(t, g.addr, reqs.String())
	for i := range 3 {
		resp, body := readResponse(t, br, "GET")
		if want := fmt.Sprintf("path /item/%d", i); resp.StatusCode != 200 || body != want {
			t.Fatalf("answer %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		if resp.Header.Get("X-Gateway") != "1" || resp.Header.Get("X-Private") != "" || resp.Header.Get("Date") == "" {
			t.Errorf("answer %d header: %v", i, resp.Header)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for i := range 20 {
		resp, err := client.Get(fmt.Sprintf("http://%s/next/%d", g.addr, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("path /next/%d", i); string(b) != want {
			t.Fatalf("%q, want %q", b, want)
		}
	}
	if n := g.f.RESTServed(); n != 23 {
		t.Errorf("the loops served %d requests, want 23", n)
	}
	if n := conns.Load(); n > 2 { // the test engine has two loops
		t.Errorf("the backend saw %d connections for 23 requests in sequence, want one per loop at most", n)
	}
	for range 23 {
		if s := <-g.status; s != 200 {
			t.Fatalf("Response heard %d", s)
		}
	}
}

// TestRESTAnswersAndHandsOver: the handler's own answers are written by the loop, with
// Connection: close honoured; what the handler declines, requests with a body, and
// HTTP/1.0 go to net/http with the connection.
func TestRESTAnswersAndHandsOver(t *testing.T) {
	be, _ := countingBackend(t, nil)
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	resp, body := readResponse(t, sendRaw(t, g.addr, "GET /local HTTP/1.1\r\nHost: gw\r\n\r\n"), "GET")
	if resp.StatusCode != http.StatusTeapot || body != "short and stout" || resp.ContentLength != int64(len(body)) {
		t.Errorf("local answer: %d %q (length %d)", resp.StatusCode, body, resp.ContentLength)
	}
	br := sendRaw(t, g.addr, "GET /local HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
	resp, _ = readResponse(t, br, "GET")
	if !resp.Close {
		t.Error("Connection: close not answered with a close")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the connection stays open: %v", err)
	}
	for _, req := range []string{
		"GET /x HTTP/1.1\r\nHost: gw\r\nX-Decline: 1\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc",
		"GET /x HTTP/1.0\r\nHost: gw\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		resp, body := readResponse(t, sendRaw(t, g.addr, req), "GET")
		if resp.StatusCode != 200 || body != "net/http" {
			t.Errorf("%q: %d %q, want net/http's answer", req, resp.StatusCode, body)
		}
	}
	// After a request the loop served, the next one the handler declines goes to net/http
	// on the same connection.
	br = sendRaw(t, g.addr, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\nGET /b HTTP/1.1\r\nHost: gw\r\nX-Decline: 1\r\n\r\n")
	if _, body := readResponse(t, br, "GET"); body != "path /a" {
		t.Errorf("first answer %q", body)
	}
	if _, body := readResponse(t, br, "GET"); body != "net/http" {
		t.Errorf("second answer %q, want net/http's", body)
	}
}

// scriptedBackend answers each connection's requests with the next of answers, written as
// they are, and closes the connection after an answer that ends with "<close>".
func scriptedBackend(t *testing.T, answers ...string) (string, *atomic.Int64) {
	t.Helper()
	var requests atomic.Int64
	next := make(chan string, len(answers))
	for _, a := range answers {
		next <- a
	}
	addr := tcptest.Serve(t, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			requests.Add(1)
			var a string
			select {
			case a = <-next:
			default:
				return
			}
			a, closing := strings.CutSuffix(a, "<close>")
			io.WriteString(c, a)
			if closing {
				return
			}
		}
	})
	return "http://" + addr, &requests
}

// TestRESTResponseFraming: the loop relays each way a response may end, informational
// answers before it, and answers 502 (LoopCall.Failed) to what is not a response.
func TestRESTResponseFraming(t *testing.T) {
	cases := []struct {
		name, method, answer string
		wantStatus           int
		wantBody             string
		wantTrailer          string
		wantClose            bool
		failed               bool
	}{
		{name: "length", method: "GET", answer: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", wantStatus: 200, wantBody: "hello"},
		{name: "chunked with a trailer", method: "GET",
			answer:     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
			wantStatus: 200, wantBody: "hello world", wantTrailer: "11"},
		{name: "to the end of the connection", method: "GET", answer: "HTTP/1.1 200 OK\r\n\r\nuntil the end<close>", wantStatus: 200, wantBody: "until the end", wantClose: true},
		{name: "HEAD", method: "HEAD", answer: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", wantStatus: 200},
		{name: "no content", method: "DELETE", answer: "HTTP/1.1 204 No Content\r\n\r\n", wantStatus: 204},
		{name: "early hints", method: "GET", answer: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", wantStatus: 200, wantBody: "ok"},
		{name: "switching protocols unasked", method: "GET", answer: "HTTP/1.1 101 Switching Protocols\r\n\r\n", wantStatus: 502, failed: true},
		{name: "not HTTP", method: "GET", answer: "SSH-2.0-OpenSSH\r\n\r\n", wantStatus: 502, failed: true},
		{name: "status below 100", method: "GET", answer: "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok", wantStatus: 502, failed: true},
		{name: "two lengths", method: "GET", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", wantStatus: 502, failed: true},
		{name: "closed before an answer", method: "GET", answer: "<close>", wantStatus: 502, failed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base, _ := scriptedBackend(t, tc.answer)
			g := startREST(t, base, wsproxy.FrontOptions{})
			br := sendRaw(t, g.addr, tc.method+" /x HTTP/1.1\r\nHost: gw\r\n\r\n")
			resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "early hints" {
				if resp.StatusCode != 103 || resp.Header.Get("Link") != "</a.css>" || resp.Header.Get("X-Gateway") != "1" {
					t.Fatalf("first answer %d %v, want 103 with Link and the handler's field", resp.StatusCode, resp.Header)
				}
				if resp, err = http.ReadResponse(br, &http.Request{Method: tc.method}); err != nil {
					t.Fatal(err)
				}
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("body: %v", err)
			}
			if resp.StatusCode != tc.wantStatus || string(b) != tc.wantBody || resp.Trailer.Get("X-Sum") != tc.wantTrailer || resp.Close != tc.wantClose {
				t.Errorf("got %d %q trailer %v close %v; want %d %q %q %v", resp.StatusCode, b, resp.Trailer, resp.Close,
					tc.wantStatus, tc.wantBody, tc.wantTrailer, tc.wantClose)
			}
			if tc.failed {
				if err := <-g.failed; err == nil {
					t.Error("Failed heard no error")
				}
			} else if s := <-g.status; s != resp.StatusCode {
				t.Errorf("Response heard %d", s)
			}
		})
	}
}

// TestRESTBodyCutShort: a body that ends before its length cuts the client's connection
// after what came.
func TestRESTBodyCutShort(t *testing.T) {
	base, _ := scriptedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b<close>")
	g := startREST(t, base, wsproxy.FrontOptions{})
	resp, err := http.ReadResponse(sendRaw(t, g.addr, "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if string(b) != "only ten b" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("body %q, %v; want the ten bytes and an unexpected end", b, err)
	}
}

// TestRESTStaleBackendConnection: a GET sent on a kept-alive connection the backend closed
// as it came is sent again on a new one.
func TestRESTStaleBackendConnection(t *testing.T) {
	// The first connection answers once and then closes on the next request without a word.
	base, requests := scriptedBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none", "<close>", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
	g := startREST(t, base, wsproxy.FrontOptions{})
	c, br := dialRaw(t, g.addr)
	for _, want := range []string{"one", "two"} { // one client connection: one loop, one pool
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("answer %d %q, want %q", resp.StatusCode, body, want)
		}
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("the backend saw %d requests, want 3 (the second sent twice)", n)
	}
}

// TestRESTBackPressure: a large answer to a client that stops reading for a while, then
// reads in small pieces, arrives whole: the loop stops reading the backend while the
// client's queue is full and goes on when it empties.
func TestRESTBackPressure(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	be, _ := countingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write(payload) })
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: gw\r\n\r\n")
	c.SetDeadline(time.Now().Add(4 * waitFor))
	br := bufio.NewReaderSize(c, 1024)
	if _, err := br.Peek(1); err != nil { // the answer began: the socket buffers fill from here
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	buf := make([]byte, 1024)
	n, err := io.CopyBuffer(h, struct{ io.Reader }{resp.Body}, buf)
	if want := sha256.Sum256(payload); err != nil || n != int64(len(payload)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes (%v), want %d intact", n, err, len(payload))
	}
}

// TestRESTClientGone: a client that goes away while its call waits cancels it: Failed hears
// context.Canceled and the backend's request ends.
func TestRESTClientGone(t *testing.T) {
	ended := make(chan struct{})
	be, _ := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(ended)
	})
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	c, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: gw\r\n\r\n")
	c.Close() // before or after the call starts: either cancels it
	select {
	case err := <-g.failed:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Failed heard %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Failed not called")
	}
	select {
	case <-ended:
	case <-time.After(waitFor):
		t.Fatal("the backend's request did not end")
	}
}

// TestRESTTimeouts: a connection idle past IdleTimeout and a header slower than
// ReadHeaderTimeout are closed; a backend slower than ResponseHeaderTimeout gets a 502.
func TestRESTTimeouts(t *testing.T) {
	be, _ := countingBackend(t, nil)
	g := startREST(t, be.URL, wsproxy.FrontOptions{IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond})
	br := sendRaw(t, g.addr, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n")
	readResponse(t, br, "GET")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle connection: %v, want it closed", err)
	}
	br = sendRaw(t, g.addr, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\nGET /b HTTP/1.1\r\nHo")
	readResponse(t, br, "GET")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("a header that stopped: %v, want the connection closed", err)
	}
}

// TestRESTResponseHeaderTimeout: a backend slower than LoopCall.ResponseHeaderTimeout gets
// the client a 502.
func TestRESTResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	be, _ := countingBackend(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	g.responseTimeout.Store(int64(100 * time.Millisecond))
	resp, _ := readResponse(t, sendRaw(t, g.addr, "GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n"), "GET")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if err := <-g.failed; err == nil {
		t.Error("Failed heard no error")
	}
}

// TestRESTDialAllow: an address DialAllow refuses is not dialed; the client gets 502.
func TestRESTDialAllow(t *testing.T) {
	be, conns := countingBackend(t, nil)
	refused := errors.New("egress refused")
	g := startREST(t, be.URL, wsproxy.FrontOptions{DialAllow: func(host string, addr netip.AddrPort) error { return refused }})
	resp, _ := readResponse(t, sendRaw(t, g.addr, "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"), "GET")
	if resp.StatusCode != http.StatusBadGateway || !errors.Is(<-g.failed, refused) || conns.Load() != 0 {
		t.Errorf("status %d, backend connections %d; want 502 and none", resp.StatusCode, conns.Load())
	}
}

// TestRESTBackendByName: a backend named by its host name is dialed (on a goroutine: the
// lookup may wait) and its connection then serves on the loop.
func TestRESTBackendByName(t *testing.T) {
	be, _ := countingBackend(t, nil)
	_, port, _ := net.SplitHostPort(be.Listener.Addr().String())
	g := startREST(t, "http://localhost:"+port, wsproxy.FrontOptions{})
	br := sendRaw(t, g.addr, "GET /n HTTP/1.1\r\nHost: gw\r\n\r\nGET /m HTTP/1.1\r\nHost: gw\r\n\r\n")
	for _, want := range []string{"path /n", "path /m"} {
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != want {
			t.Errorf("%d %q, want %q", resp.StatusCode, body, want)
		}
	}
}

// TestRESTDrain: closing the front closes the idle connections the loops serve at once, and
// a connection with a call in flight once its answer is out; Wait waits for that answer.
func TestRESTDrain(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	be, _ := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-release
		}
		io.WriteString(w, "ok")
	})
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	idle := sendRaw(t, g.addr, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n")
	readResponse(t, idle, "GET")
	busy := sendRaw(t, g.addr, "GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n")
	<-started
	g.f.Close()
	if _, err := idle.ReadByte(); err != io.EOF {
		t.Errorf("an idle connection after Close: %v, want it closed", err)
	}
	waited := make(chan struct{})
	go func() { g.f.Wait(context.Background()); close(waited) }()
	close(release)
	resp, body := readResponse(t, busy, "GET")
	if resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Errorf("the call in flight: %d %q close %v; want its answer, then the connection closed", resp.StatusCode, body, resp.Close)
	}
	<-waited
}

// TestRESTHandlerPanic: a handler that panics on a loop ends its connection, as net/http's
// server does, not the process: the loop serves the next connection.
func TestRESTHandlerPanic(t *testing.T) {
	be, _ := countingBackend(t, nil)
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	br := sendRaw(t, g.addr, "GET /panic HTTP/1.1\r\nHost: gw\r\n\r\n")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after a panic: %v, want the connection closed", err)
	}
	for range 4 { // both loops
		if resp, body := readResponse(t, sendRaw(t, g.addr, "GET /ok HTTP/1.1\r\nHost: gw\r\n\r\n"), "GET"); body != "path /ok" {
			t.Fatalf("after a panic: %d %q", resp.StatusCode, body)
		}
	}
}

// BenchmarkRESTLoop is one REST call through the loops: a raw client on a kept-alive
// connection, a handler that only names the backend, and a raw backend answering 35 bytes
// of JSON. Neither end allocates per call, so allocs/op are the loop's and the handler's
// request and response parsing.
func BenchmarkRESTLoop(b *testing.B) {
	if testEngine == nil {
		b.Skip("needs the loop engine")
	}
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n" + `{"id":42,"name":"widget","ok":true}`)
	addr := tcptest.Serve(b, func(c net.Conn, _ int) {
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	})
	u, _ := url.Parse("http://" + addr + "/v1/x")
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	f, err := testEngine.Front(front, wsproxy.FrontOptions{Handler: http.NotFoundHandler(),
		REST: restFunc(func(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool) {
			return &wsproxy.LoopCall{Request: &http.Request{Method: "GET", URL: u, Header: http.Header{}, Host: u.Host},
				Result: wsproxy.LoopFuncs{OnResponse: func(int, http.Header) {}, OnFailed: func(http.ResponseWriter, error) {}}}, true
		})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /items/widgets/7 HTTP/1.1\r\nHost: gw\r\nUser-Agent: wrk\r\nOcp-Apim-Subscription-Key: 0123456789abcdef\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		got := 0
		for got < 150 { // the answer's head and body, a few fields more than the backend's
			n, err := c.Read(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += n
			if bytes.HasSuffix(buf[:got], []byte(`"ok":true}`)) {
				break
			}
		}
	}
}

// TestRESTHeadAnswerHasNoBody: the loop's own answer to a HEAD request (the handler's, or
// LoopCall.Failed's) tells the body's length and does not send it, as net/http's server: a
// body would be read by the client as the start of the next answer.
func TestRESTHeadAnswerHasNoBody(t *testing.T) {
	be, _ := countingBackend(t, nil)
	g := startREST(t, be.URL, wsproxy.FrontOptions{DialAllow: func(host string, addr netip.AddrPort) error {
		return errors.New("egress refused")
	}})
	g.failBody.Store(true)
	br := sendRaw(t, g.addr, "HEAD /local HTTP/1.1\r\nHost: gw\r\n\r\nHEAD /x HTTP/1.1\r\nHost: gw\r\n\r\nGET /local HTTP/1.1\r\nHost: gw\r\n\r\n")
	resp, body := readResponse(t, br, "HEAD")
	if resp.StatusCode != http.StatusTeapot || body != "" || resp.ContentLength != int64(len("short and stout")) {
		t.Errorf("HEAD answered locally: %d %q (length %d), want 418 with the length and no body", resp.StatusCode, body, resp.ContentLength)
	}
	resp, body = readResponse(t, br, "HEAD")
	if resp.StatusCode != http.StatusBadGateway || body != "" {
		t.Errorf("HEAD that failed: %d %q, want 502 and no body", resp.StatusCode, body)
	}
	resp, body = readResponse(t, br, "GET")
	if resp.StatusCode != http.StatusTeapot || body != "short and stout" {
		t.Errorf("the GET after: %d %q, want 418 %q", resp.StatusCode, body, "short and stout")
	}
}

// TestRESTInvalidFieldsGoToNetHTTP: a request whose header net/http's server refuses (a
// field name with a space before its colon, which a lenient backend may read as the name
// without it) is not served by the loops but answered 400 by net/http, first on its
// connection or after a request the loop served.
func TestRESTInvalidFieldsGoToNetHTTP(t *testing.T) {
	be, conns := countingBackend(t, nil)
	g := startREST(t, be.URL, wsproxy.FrontOptions{})
	const bad = "GET /x HTTP/1.1\r\nHost: gw\r\nX-User : admin\r\n\r\n"
	if resp, body := readResponse(t, sendRaw(t, g.addr, bad), "GET"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("first request: %d %q, want net/http's 400", resp.StatusCode, body)
	}
	br := sendRaw(t, g.addr, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n"+bad)
	if _, body := readResponse(t, br, "GET"); body != "path /a" {
		t.Errorf("first answer %q", body)
	}
	if resp, body := readResponse(t, br, "GET"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("after a request the loop served: %d %q, want net/http's 400", resp.StatusCode, body)
	}
	if n := g.f.RESTServed(); n != 1 {
		t.Errorf("the loops served %d requests, want 1", n)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the backend saw %d connections, want 1", n)
	}
	// The front's upgrade requests are parsed alike.
	const upgrade = "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-User : admin\r\n\r\n"
	if resp, body := readResponse(t, sendRaw(t, g.addr, upgrade), "GET"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("upgrade request: %d %q, want net/http's 400", resp.StatusCode, body)
	}
	if _, served := g.f.Counts(); served != 0 {
		t.Errorf("the front served %d upgrade requests, want none", served)
	}
}

// TestRESTUnsolicitedBytesOnIdleBackend: bytes a backend sent on a kept-alive connection
// after its answer, before the next request went on it, are never taken for the answer to
// that request: the connection is not reused.
func TestRESTUnsolicitedBytesOnIdleBackend(t *testing.T) {
	inject, injected := make(chan struct{}), make(chan struct{})
	addr := tcptest.Serve(t, func(c net.Conn, n int) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		if n > 0 {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
		<-inject
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		close(injected)
		io.Copy(io.Discard, c)
	})
	g := startREST(t, "http://"+addr, wsproxy.FrontOptions{})
	// On the loop, as the second request is decided: the bytes are on the idle connection,
	// and the loop has not yet heard of them.
	hook := func(r *http.Request) {
		if r.URL.Path == "/second" {
			close(inject)
			<-injected
		}
	}
	g.onServe.Store(&hook)
	c, br := dialRaw(t, g.addr)
	for _, path := range []string{"/first", "/second"} { // one client connection: one loop, one pool
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, body := readResponse(t, br, "GET")
		if want := map[string]string{"/first": "one", "/second": "two"}[path]; resp.StatusCode != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, body, want)
		}
	}
}

// TestRESTClientGoneDuringInformational: a client whose connection fails as an
// informational answer is written to it cancels its call: LoopCall.Failed hears of it, and
// LoopCall.Response is not called after it for the final response that came with the 1xx
// (the handler's accounting would count the call twice).
func TestRESTClientGoneDuringInformational(t *testing.T) {
	if testEngine == nil {
		t.Skip("REST on the loops needs the loop engine (the Makefile runs the suite on it)")
	}
	e, err := wsproxy.NewEngine(wsproxy.EngineOptions{Loops: 1}) // both clients on one loop
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	asked, answer, answered := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		close(asked)
		<-answer
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		close(answered)
		io.Copy(io.Discard, c)
	}()
	g := startRESTOn(t, e, "http://"+ln.Addr().String(), wsproxy.FrontOptions{})
	a, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.(*net.TCPConn).SetLinger(0) // closing resets the connection: the loop's writes to it fail
	io.WriteString(a, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n")
	<-asked
	// The loop, busy with another client's request, hears of the backend's answer and of
	// the client's reset together, in that order.
	hook := func(r *http.Request) {
		if r.Header.Get("X-Busy") != "" {
			close(answer)
			<-answered
			a.Close()
		}
	}
	g.onServe.Store(&hook)
	b, br := dialRaw(t, g.addr)
	for _, busy := range []string{"1", ""} {
		io.WriteString(b, "GET /local HTTP/1.1\r\nHost: gw\r\nX-Busy: "+busy+"\r\n\r\n")
		if resp, _ := readResponse(t, br, "GET"); resp.StatusCode != http.StatusTeapot {
			t.Fatalf("the other client's answer: %d", resp.StatusCode)
		}
		if busy == "" {
			break
		}
		select {
		case err := <-g.failed:
			if err == nil {
				t.Error("Failed heard no error")
			}
		case <-time.After(waitFor):
			t.Fatal("Failed not called")
		}
		// The next answer to this client comes after the loop finished with the call.
	}
	select {
	case s := <-g.status:
		t.Errorf("Response heard %d after Failed", s)
	default:
	}
}

// TestRESTLaterRequestHeads: after a request the loop served, a request whose head is
// longer than MaxHeaderBytes, or ends with a bare LF before the last CRLF, goes to net/http
// at once, as a first request does: the loop neither serves the one (FrontOptions) nor
// waits for a CRLFCRLF that will not come for the other.
func TestRESTLaterRequestHeads(t *testing.T) {
	be, _ := countingBackend(t, nil)
	g := startREST(t, be.URL, wsproxy.FrontOptions{MaxHeaderBytes: 4096})
	for _, next := range []string{
		"GET /b HTTP/1.1\r\nHost: gw\r\nX-Long: " + strings.Repeat("x", 8<<10) + "\r\n\r\n",
		"GET /b HTTP/1.1\r\nHost: gw\n\r\n",
	} {
		br := sendRaw(t, g.addr, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n"+next)
		if _, body := readResponse(t, br, "GET"); body != "path /a" {
			t.Errorf("first answer %q", body)
		}
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "net/http" {
			t.Errorf("%.40q: %d %q, want net/http's answer", next, resp.StatusCode, body)
		}
	}
}

// TestRESTNoDescriptorLeak: however a connection or a call ends (answered, the client gone
// while the call waits, the backend gone before its answer or in its body, a body to the
// end of the connection, a backend by name, a response header timeout, a request handed to
// net/http, idle and header timeouts), no descriptor stays open once the clients and the
// backend are gone.
func TestRESTNoDescriptorLeak(t *testing.T) {
	be, _ := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		hijack := func(s string) {
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			io.WriteString(c, s)
			c.Close()
		}
		switch r.URL.Path {
		case "/wait":
			select {
			case <-r.Context().Done():
			case <-time.After(waitFor):
			}
		case "/none":
			hijack("")
		case "/cut":
			hijack("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		case "/close":
			hijack("HTTP/1.1 200 OK\r\n\r\nto the end")
		default:
			io.WriteString(w, "path "+r.URL.Path)
		}
	})
	_, port, _ := net.SplitHostPort(be.Listener.Addr().String())
	g := startREST(t, be.URL, wsproxy.FrontOptions{IdleTimeout: 50 * time.Millisecond, ReadHeaderTimeout: 50 * time.Millisecond})
	byName := startREST(t, "http://localhost:"+port, wsproxy.FrontOptions{})
	before := openFDs(t)
	var clients []net.Conn
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(waitFor))
		clients = append(clients, c)
		return c
	}
	ask := func(addr, path string, extra string) *bufio.Reader {
		c := dial(addr)
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n"+extra+"\r\n")
		return bufio.NewReader(c)
	}
	for _, path := range []string{"/a", "/none", "/cut", "/close"} {
		resp, err := http.ReadResponse(ask(g.addr, path, ""), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
		}
	}
	readResponse(t, ask(byName.addr, "/n", ""), "GET")
	readResponse(t, ask(g.addr, "/d", "X-Decline: 1\r\n"), "GET")
	// The client goes while its call waits.
	c := dial(g.addr)
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: gw\r\n\r\n")
	c.Close()
	<-g.failed
	// The response header timeout.
	g.responseTimeout.Store(int64(50 * time.Millisecond))
	readResponse(t, ask(g.addr, "/wait", ""), "GET")
	<-g.failed
	// A header that stops coming, and a connection idle after its request.
	c = dial(g.addr)
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: gw\r\n\r\nGET /b HTTP/1.1\r\nHo")
	br := bufio.NewReader(c)
	readResponse(t, br, "GET")
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("a header that stopped: %v, want the connection closed", err)
	}
	for _, c := range clients {
		c.Close()
	}
	be.CloseClientConnections() // the loops' idle connections to it end too
	deadline := time.Now().Add(2 * waitFor)
	for openFDs(t) > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after, %d before", after, before)
	}
}

// TestRESTEarlyAnswerEndsBackendConnection: a backend that answers before it read the whole
// request head does not get its connection reused: the rest of that head was never sent,
// and the next request's head would follow a cut one (the backend would read it as the
// cut request's fields).
func TestRESTEarlyAnswerEndsBackendConnection(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		// A small receive window: the gateway cannot write a large head at once (nor can it
		// the 4 MiB its send buffer may take).
		rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	relayed := make(chan struct{}) // the client has the early answer
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			first := conns.Add(1) == 1
			go func() {
				defer c.Close()
				if first {
					// Answers at once, and reads only once the answer was relayed: had it
					// read on at once, the gateway could have written the whole head
					// before it handled the answer, and then kept the connection rightly.
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
					select {
					case <-relayed:
					case <-t.Context().Done():
					}
					io.Copy(io.Discard, c)
					return
				}
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
				}
			}()
		}
	}()
	g := startREST(t, "http://"+ln.Addr().String(), wsproxy.FrontOptions{MaxHeaderBytes: 32 << 20})
	big := "GET /big HTTP/1.1\r\nHost: gw\r\nX-Long: " + strings.Repeat("x", 12<<20) + "\r\n\r\n" // more than the kernel buffers
	br := sendRaw(t, g.addr, "GET /local HTTP/1.1\r\nHost: gw\r\n\r\n"+big+"GET /next HTTP/1.1\r\nHost: gw\r\n\r\n")
	readResponse(t, br, "GET")
	if _, body := readResponse(t, br, "GET"); body != "early" {
		t.Errorf("the large request's answer %q", body)
	}
	close(relayed)
	if _, body := readResponse(t, br, "GET"); body != "next" {
		t.Errorf("the next request's answer %q, want %q", body, "next")
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("the backend saw %d connections, want 2", n)
	}
}

// TestRESTIdleBuffers: a connection idle between requests keeps no large input buffer (a
// client could make many such connections grow it to MaxHeaderBytes and more, by sending
// large heads one behind the other), nor does an idle backend connection after a large
// response head.
func TestRESTIdleBuffers(t *testing.T) {
	be, _ := countingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Long", strings.Repeat("y", 200<<10))
		io.WriteString(w, "ok")
	})
	g := startREST(t, be.URL, wsproxy.FrontOptions{MaxHeaderBytes: 64 << 10})
	long := "GET /a HTTP/1.1\r\nHost: gw\r\nX-Long: " + strings.Repeat("x", 30<<10) + "\r\n\r\n"
	br := sendRaw(t, g.addr, long+long+long)
	for range 3 {
		readResponse(t, br, "GET")
	}
	// The loop went back to waiting as it wrote the last answer; RESTBuffers looks after.
	if clients, backends := g.f.RESTBuffers(); clients > 16<<10 || backends > 64<<10 {
		t.Errorf("idle connections keep %d bytes of input buffers, idle backend connections %d", clients, backends)
	}
}
