package traffic

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/gateway/internal/wsproxy"
)

// exchange is what a client and a backend saw of one REST call.
type exchange struct {
	Interim       []int
	ReadErr       bool
	Status        int
	Header        http.Header
	Body          string
	Trailer       http.Header
	BodyErr       bool
	BackendSaw    string
	BackendHeader http.Header
}

// TestForwardMatchesReverseProxy sends the same calls through the fast path (restProxy.serve
// with a plain-HTTP backend) and through httputil.ReverseProxy with net/http's transport,
// and compares what the client and the backend see.
func TestForwardMatchesReverseProxy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		method  string
		body    string
		header  http.Header
		backend http.HandlerFunc
		// cut: the backend cuts the body short. net/http's server holds a small answer's
		// head until the handler returns, so the client of the reverse proxy sees no answer;
		// the loop sends the head at once, as nginx does, and the client sees a body
		// shorter than its Content-Length and the connection closed.
		cut bool
	}{
		{name: "JSON", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		}},
		{name: "POST echo", method: "POST", body: `{"a":1}`, backend: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(201)
			_, _ = io.Copy(w, r.Body)
		}},
		{name: "HEAD", method: "HEAD", backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "99")
		}},
		{name: "no content", method: "DELETE", backend: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }},
		{name: "hop-by-hop fields dropped", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "X-Private")
			w.Header().Set("X-Private", "secret")
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-Public", "yes")
		}},
		{name: "declared trailer", method: "GET", header: http.Header{"Te": {"trailers"}}, backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "abc")
			w.Header().Set("X-Sum", "3")
		}},
		{name: "undeclared trailer", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "abc")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "1")
		}},
		{name: "event stream", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			for _, ev := range []string{"data: 1\n\n", "data: 2\n\n"} {
				_, _ = io.WriteString(w, ev)
				w.(http.Flusher).Flush()
			}
		}},
		{name: "early hints", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			_, _ = io.WriteString(w, "done")
		}},
		{name: "body cut short", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			c, brw, _ := http.NewResponseController(w).Hijack()
			_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
			_ = brw.Flush()
			_ = c.Close()
		}, cut: true},
		{name: "retry after", method: "GET", backend: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(503)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var seen []string
			var seenHeader []http.Header
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := r.Header.Clone()
				h.Del("Accept-Encoding") // net/http's transport asks for gzip and undoes it itself
				mu.Lock()
				seen = append(seen, r.Method+" "+r.Host+" "+r.RequestURI)
				seenHeader = append(seenHeader, h)
				mu.Unlock()
				tc.backend(w, r)
			}))
			defer backend.Close()
			fast := runREST(t, backend.URL, tc.method, tc.body, tc.header, viaServe)
			proxied := runREST(t, backend.URL, tc.method, tc.body, tc.header, viaProxy)
			looped := runREST(t, backend.URL, tc.method, tc.body, tc.header, viaLoop)
			mu.Lock()
			fast.BackendSaw, fast.BackendHeader = seen[0], seenHeader[0]
			proxied.BackendSaw, proxied.BackendHeader = seen[1], seenHeader[1]
			looped.BackendSaw, looped.BackendHeader = seen[2], seenHeader[2]
			mu.Unlock()
			if diff := cmp.Diff(proxied, fast); diff != "" {
				t.Errorf("fast path differs from the reverse proxy (-proxy +fast):\n%s", diff)
			}
			if tc.cut {
				if !proxied.ReadErr || looped.Status != 200 || looped.Body != "only ten b" || !looped.BodyErr {
					t.Errorf("a body cut short: the reverse proxy's client saw %+v, the loop's %+v", proxied, looped)
				}
				return
			}
			if diff := cmp.Diff(proxied, looped); diff != "" {
				t.Errorf("the event loop differs from the reverse proxy (-proxy +loop):\n%s", diff)
			}
		})
	}
}

// TestForwardBackendDown answers 502 with the gateway's body on both paths.
func TestForwardBackendDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fast := runREST(t, "http://"+addr, "GET", "", nil, viaServe)
	proxied := runREST(t, "http://"+addr, "GET", "", nil, viaProxy)
	looped := runREST(t, "http://"+addr, "GET", "", nil, viaLoop)
	if diff := cmp.Diff(proxied, fast); diff != "" || fast.Status != http.StatusBadGateway {
		t.Errorf("status %d; fast path differs (-proxy +fast):\n%s", fast.Status, diff)
	}
	if diff := cmp.Diff(proxied, looped); diff != "" {
		t.Errorf("the event loop differs (-proxy +loop):\n%s", diff)
	}
}

// Ways runREST sends a call.
const (
	viaServe = iota // restProxy.serve: the fast transport where it takes the call
	viaProxy        // the reverse proxy
	viaLoop         // an event loop of a wsproxy.Front (calls with a body: net/http and serve)
)

// runREST sends one call through a front server whose handler forwards it to base+"/v1/x"
// the way via says.
func runREST(t *testing.T, base, method, body string, header http.Header, via int) exchange {
	t.Helper()
	opt := Options{Log: slog.New(slog.DiscardHandler)}
	p := newRESTProxy(opt)
	tlsv := newBackendTLS(nil, newRESTTransport(opt)).variants[0][0]
	u, _ := url.Parse(base + "/v1/x?q=1")
	outHeader := func(w http.ResponseWriter, r *http.Request) http.Header {
		hdr := r.Header.Clone()
		for _, k := range hopHeaders {
			hdr.Del(k)
		}
		w.Header().Set(HeaderCorrelationID, "id")
		return hdr
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := outHeader(w, r)
		if via == viaProxy {
			p.serveProxied(w, r, target{url: u}, tlsv, u, hdr)
			return
		}
		p.serve(w, r, target{url: u}, tlsv, u, hdr)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var served net.Listener = ln
	if via == viaLoop {
		e, err := wsproxy.DefaultEngine(wsproxy.EngineOptions{})
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skip("no event loops on this system")
		} else if err != nil {
			t.Fatal(err)
		}
		f, err := e.Front(ln, wsproxy.FrontOptions{Handler: handler, REST: loopFunc(func(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool) {
			out := &http.Request{Method: r.Method, URL: u, Header: outHeader(w, r), Host: u.Host}
			if _, ok := out.Header["User-Agent"]; !ok {
				out.Header.Set("User-Agent", "")
			}
			return &wsproxy.LoopCall{Request: out, Result: wsproxy.LoopFuncs{OnResponse: func(int, http.Header) {},
				OnFailed: func(w http.ResponseWriter, err error) { p.fail(w, r.Context(), target{url: u}, err) }}}, true
		})})
		if err != nil {
			t.Fatal(err)
		}
		served = f
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(served)
	defer srv.Close()
	// A raw client: the status, fields and body exactly as they came, trailers and all.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := http.NewRequest(method, "http://"+ln.Addr().String()+"/", strings.NewReader(body))
	if body == "" {
		req.Body = nil
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var resp *http.Response
	var interim []int
	for {
		if resp, err = http.ReadResponse(br, req); err != nil {
			return exchange{Interim: interim, ReadErr: true}
		}
		if resp.StatusCode >= 200 {
			break
		}
		interim = append(interim, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Header.Del("Date")
	return exchange{Interim: interim, Status: resp.StatusCode, Header: resp.Header, Body: string(b), Trailer: resp.Trailer, BodyErr: err != nil}
}

// loopFunc is a function as a wsproxy.RESTHandler.
type loopFunc func(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool)

func (f loopFunc) ServeLoop(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool) {
	return f(w, r)
}

// TestHopHeadersCanonical: prepare deletes hopHeaders from a header map by key, without
// canonicalizing them, so each must be canonical already.
func TestHopHeadersCanonical(t *testing.T) {
	for _, k := range hopHeaders {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("hopHeaders holds %q, whose canonical form is %q", k, c)
		}
	}
}
