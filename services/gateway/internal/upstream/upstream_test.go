package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/pkg/tcptest"
)

// backend is an httptest server counting the connections it accepted and closed.
type backend struct {
	*httptest.Server
	opened atomic.Int64
	closed chan struct{} // one value per closed connection
}

func newBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{closed: make(chan struct{}, 64)}
	b.Server = httptest.NewUnstartedServer(h)
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			b.closed <- struct{}{}
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

// call sends one request through tr and returns the status, the body and the trailer.
func call(t *testing.T, tr *Transport, method, url, body string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp.StatusCode, string(b), resp.Trailer
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		method      string
		body        string
		handler     http.HandlerFunc
		wantStatus  int
		wantBody    string
		wantTrailer http.Header
		// wantConns is the connections two calls open: 1 when the first is kept.
		wantConns int64
	}{
		{name: "GET kept alive", method: "GET", wantStatus: 200, wantBody: `{"ok":true}`, wantConns: 1,
			handler: func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"ok":true}`) }},
		{name: "POST body and its length", method: "POST", body: "hello", wantStatus: 201, wantBody: "5 hello", wantConns: 1,
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.WriteHeader(201)
				fmt.Fprintf(w, "%d %s", r.ContentLength, b)
			}},
		{name: "empty POST says Content-Length: 0", method: "POST", wantStatus: 200, wantBody: `["0"]`, wantConns: 1,
			handler: func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%q", r.Header["Content-Length"]) }},
		{name: "HEAD has no body", method: "HEAD", wantStatus: 200, wantConns: 1,
			handler: func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "42") }},
		{name: "204", method: "DELETE", wantStatus: 204, wantConns: 1,
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }},
		{name: "chunked with a trailer", method: "GET", wantStatus: 200, wantBody: "onetwo", wantTrailer: http.Header{"X-Sum": {"6"}}, wantConns: 1,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Sum")
				_, _ = io.WriteString(w, "one")
				w.(http.Flusher).Flush()
				_, _ = io.WriteString(w, "two")
				w.Header().Set("X-Sum", "6")
			}},
		{name: "Connection: close is not kept", method: "GET", wantStatus: 200, wantBody: "bye", wantConns: 2,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				_, _ = io.WriteString(w, "bye")
			}},
		{name: "a body to the close is not kept", method: "GET", wantStatus: 200, wantBody: "till the end", wantConns: 2,
			handler: func(w http.ResponseWriter, r *http.Request) {
				c, brw, _ := http.NewResponseController(w).Hijack()
				_, _ = brw.WriteString("HTTP/1.1 200 OK\r\n\r\ntill the end")
				_ = brw.Flush()
				_ = c.Close()
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, tc.handler)
			tr := &Transport{}
			defer tr.CloseIdleConnections()
			for i := range 2 {
				status, body, trailer := call(t, tr, tc.method, b.URL+"/x", tc.body, nil)
				if status != tc.wantStatus || body != tc.wantBody {
					t.Fatalf("call %d: %d %q, want %d %q", i, status, body, tc.wantStatus, tc.wantBody)
				}
				if diff := cmp.Diff(tc.wantTrailer, trailer, cmp.Comparer(func(a, b http.Header) bool {
					return len(a) == 0 && len(b) == 0 || cmp.Equal(map[string][]string(a), map[string][]string(b))
				})); diff != "" {
					t.Fatalf("call %d: trailer (-want +got):\n%s", i, diff)
				}
			}
			if got := b.opened.Load(); got != tc.wantConns {
				t.Errorf("connections opened: %d, want %d", got, tc.wantConns)
			}
		})
	}
}

// TestRequestHeader checks the request line and header the backend receives: the Host of
// the request, the header fields trimmed, none that the transport writes itself twice.
func TestRequestHeader(t *testing.T) {
	t.Parallel()
	var got *http.Request
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { got = r })
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", b.URL+"/a%20b/c?q=1&r=%2F", nil)
	req.Host = "api.example"
	req.Header.Set("X-One", "  spaced\t")
	req.Header["X-Two"] = []string{"a", "b"}
	req.Header.Set("User-Agent", "")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := map[string]any{"uri": "/a%20b/c?q=1&r=%2F", "host": "api.example",
		"header": http.Header{"X-One": {"spaced"}, "X-Two": {"a", "b"}}}
	gotView := map[string]any{"uri": got.RequestURI, "host": got.Host, "header": got.Header}
	if diff := cmp.Diff(want, gotView); diff != "" {
		t.Errorf("backend saw (-want +got):\n%s", diff)
	}
}

func TestInvalidRequestIsNotSent(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	for _, tc := range []struct{ name, key, value string }{
		{"line break in a value", "X-Evil", "a\r\nInjected: yes"},
		{"bad name", "X Bad", "v"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", b.URL, nil)
			req.Header[tc.key] = []string{tc.value}
			if _, err := tr.RoundTrip(req); err == nil {
				t.Fatal("sent")
			}
		})
	}
	if n := b.opened.Load(); n != 0 {
		t.Errorf("%d connections opened", n)
	}
}

// TestStaleConnection closes the pooled connection from the backend's side: a GET is sent
// again on a new connection, a POST finds the closed one before sending.
func TestStaleConnection(t *testing.T) {
	t.Parallel()
	var posts atomic.Int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			posts.Add(1)
		}
		_, _ = io.WriteString(w, "ok")
	})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	for i, method := range []string{"GET", "GET", "POST"} {
		if i > 0 {
			b.CloseClientConnections()
			<-b.closed
		}
		if status, body, _ := call(t, tr, method, b.URL, "", nil); status != 200 || body != "ok" {
			t.Fatalf("%s after the close: %d %q", method, status, body)
		}
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the backend saw %d POSTs", n)
	}
}

// TestUnsolicitedBytesOnIdleConnection: what a backend sends on a connection after its answer
// is never taken for the answer to the next call, another client's perhaps: the connection
// is not reused.
func TestUnsolicitedBytesOnIdleConnection(t *testing.T) {
	t.Parallel()
	answered := make(chan net.Conn, 4)
	addr := tcptest.Serve(t, func(c net.Conn, _ int) {
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none")
		answered <- c
		<-t.Context().Done() // the test writes on c after the answer
	})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	u := "http://" + addr + "/"
	if _, body, _ := call(t, tr, "GET", u, "", nil); body != "one" {
		t.Fatalf("first answer %q", body)
	}
	c := <-answered // the connection is idle in the pool now
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
	if _, body, _ := call(t, tr, "GET", u, "", nil); body != "one" {
		t.Fatalf("second answer %q, want a new connection's", body)
	}
}

func TestContextEndAbortsTheCall(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
	})
	defer close(release)
	tr := &Transport{}
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", b.URL, nil)
	go func() { <-arrived; cancel() }()
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestResponseHeaderTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	defer close(release)
	tr := &Transport{ResponseHeaderTimeout: 20 * time.Millisecond}
	req, _ := http.NewRequest("GET", b.URL, nil)
	var ne net.Error
	if _, err := tr.RoundTrip(req); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v, want a timeout", err)
	}
}

func TestInformationalResponses(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprint(code, " ", h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", b.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if diff := cmp.Diff([]string{"103 </style.css>; rel=preload"}, got); diff != "" || string(body) != "final" {
		t.Errorf("1xx (-want +got):\n%s\nbody %q", diff, body)
	}
}

// TestBodyClosedEarly closes a body before its end: its connection is closed, not kept.
func TestBodyClosedEarly(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(make([]byte, 1<<20)) })
	tr := &Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", b.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	<-b.closed
	if status, _, _ := call(t, tr, "GET", b.URL, "", nil); status != 200 || b.opened.Load() != 2 {
		t.Fatalf("status %d, %d connections opened", status, b.opened.Load())
	}
}

func TestIdleConnectionsAgeOut(t *testing.T) {
	t.Parallel()
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := &Transport{IdleTimeout: 10 * time.Millisecond}
	call(t, tr, "GET", b.URL, "", nil)
	<-b.closed // the sweep closed it
	tr.mu.Lock()
	left := len(tr.idle)
	tr.mu.Unlock()
	if left != 0 {
		t.Errorf("%d addresses still pooled", left)
	}
}

func TestMaxIdlePerHost(t *testing.T) {
	t.Parallel()
	var inside sync.WaitGroup
	inside.Add(2)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { inside.Done(); inside.Wait() })
	tr := &Transport{MaxIdlePerHost: 1}
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { call(t, tr, "GET", b.URL, "", nil) })
	}
	wg.Wait()
	<-b.closed // the second one back finds the pool full
	tr.mu.Lock()
	n := len(tr.idle[CanonicalAddr(mustURL(t, b.URL))])
	tr.mu.Unlock()
	if n != 1 {
		t.Errorf("%d idle, want 1", n)
	}
}

func TestEligible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		url    string
		body   string
		header http.Header
		chunk  bool
		want   bool
	}{
		{name: "GET", method: "GET", url: "http://b/", want: true},
		{name: "small POST", method: "POST", url: "http://b/", body: "x", want: true},
		{name: "https", method: "GET", url: "https://b/"},
		{name: "Expect", method: "POST", url: "http://b/", body: "x", header: http.Header{"Expect": {"100-continue"}}},
		{name: "CONNECT", method: "CONNECT", url: "http://b/"},
		{name: "large body", method: "POST", url: "http://b/", body: strings.Repeat("x", MaxBody+1)},
		{name: "unknown length", method: "POST", url: "http://b/", body: "x", chunk: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rd io.Reader
			if tc.body != "" {
				rd = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, tc.url, rd)
			for k, vs := range tc.header {
				req.Header[k] = vs
			}
			if tc.chunk {
				req.ContentLength = -1
			}
			if got := Eligible(req); got != tc.want {
				t.Errorf("Eligible = %v, want %v", got, tc.want)
			}
		})
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
