// Package upstream sends REST calls to plain-HTTP backends over kept-alive HTTP/1.1
// connections that the calling goroutine writes and reads itself. net/http's Transport hands
// every call to two goroutines of its connection, a writer and a reader; for a small call
// those hand-offs cost more than the call (docs/performance.md, "REST requests").
package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Defaults of the Transport's settings, as net/http's DefaultTransport has them (the idle
// bound per host is the gateway's).
const (
	DefaultMaxIdlePerHost = 256
	DefaultIdleTimeout    = 90 * time.Second
	// MaxBody is the largest request body Eligible accepts: small enough to sit in the
	// socket's send buffer whole, so that a backend answering before it read the body never
	// leaves the writer blocked (net/http's Transport writes and reads at once instead).
	MaxBody = 64 << 10
	// max1xx bounds the informational responses before the final one, as net/http does.
	max1xx = 5
)

// Transport is an http.RoundTripper for the requests Eligible accepts: HTTP/1.1 to http://
// URLs, the connection written and read by the goroutine calling RoundTrip, then kept for the
// next call to the same address. It keeps net/http's contract: a request whose context ends
// is aborted, the body is closed, informational responses reach httptrace's Got1xxResponse,
// the connection returns to the pool only once the response body was read to its end, and
// header fields net/http would refuse to send are refused. Its zero value is usable; it is
// safe for concurrent use.
type Transport struct {
	// Dial opens connections; nil means a net.Dialer as net/http's DefaultTransport has.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle connections kept for one address; 0 means
	// DefaultMaxIdlePerHost.
	MaxIdlePerHost int
	// IdleTimeout closes connections idle for longer; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a response's header once the request is
	// written; 0 means no bound.
	ResponseHeaderTimeout time.Duration

	mu sync.Mutex
	// idle holds each address's idle connections, the most recently used last: the next
	// call takes the warmest, and the coldest age out at the front.
	idle     map[string][]*conn
	sweeping bool
}

var defaultDialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

// Eligible reports whether RoundTrip can send r: an http:// URL, a method other than
// CONNECT, no Expect (100-continue needs a wait between header and body), and no body or
// one of a known length up to MaxBody.
func Eligible(r *http.Request) bool {
	if r.URL.Scheme != "http" || r.Method == http.MethodConnect || len(r.TransferEncoding) > 0 || r.Trailer != nil {
		return false
	}
	if _, ok := r.Header["Expect"]; ok {
		return false
	}
	return r.ContentLength >= 0 && r.ContentLength <= MaxBody && (r.ContentLength > 0 || r.Body == nil || r.Body == http.NoBody)
}

// errNothingRead marks a call whose reused connection failed before a byte of the answer:
// the backend had closed it while it was idle.
var errNothingRead = errors.New("upstream: connection closed before the response")

// RoundTrip sends r, which Eligible must accept, and returns the backend's response (see
// Send); informational responses go to the httptrace.ClientTrace of r's context, if any.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	var info func(int, http.Header)
	if trace := httptrace.ContextClientTrace(r.Context()); trace != nil && trace.Got1xxResponse != nil {
		info = func(code int, h http.Header) { _ = trace.Got1xxResponse(code, textproto.MIMEHeader(h)) }
	}
	return t.Send(r.Context(), r, info)
}

// Send sends r, which Eligible must accept, and returns the backend's response; ctx, not
// r's, aborts the call. info, if not nil, receives the informational (1xx) responses before
// the final one. A bodiless call net/http would retry (GET, HEAD, OPTIONS, TRACE, or one with
// an Idempotency-Key) is sent again on a new connection when the backend had closed the
// reused one; any other call reuses only a connection found still open.
func (t *Transport) Send(ctx context.Context, r *http.Request, info func(code int, h http.Header)) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		defer r.Body.Close() // the body is closed, errors included (http.RoundTripper)
	}
	if !Eligible(r) {
		return nil, errors.New("upstream: request not eligible")
	}
	host, err := Check(r)
	if err != nil {
		return nil, err
	}
	addr := CanonicalAddr(r.URL)
	retry := r.ContentLength == 0 && Replayable(r)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := t.conn(ctx, addr, attempt == 0)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(ctx, r, host, info)
		if err == nil {
			return resp, nil
		}
		c.close()
		if attempt > 0 || !retry || !c.reused || !errors.Is(err, errNothingRead) {
			return nil, err
		}
	}
}

// Replayable reports whether net/http would send r again after its connection failed.
func Replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// conn returns an idle connection to addr (if pooled) or a new one. An idle connection is
// checked to be open and silent first: bytes a backend sent after its answer would be read
// as the answer to this call, which may be another client's.
func (t *Transport) conn(ctx context.Context, addr string, pooled bool) (*conn, error) {
	for pooled {
		c := t.take(addr)
		if c == nil {
			break
		}
		if !c.open() {
			c.close()
			continue
		}
		return c, nil
	}
	dial := t.Dial
	if dial == nil {
		dial = defaultDialer.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{t: t, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

// take removes the most recently used idle connection to addr from the pool; nil when none
// is younger than the idle timeout.
func (t *Transport) take(addr string) *conn {
	limit := time.Now().Add(-t.idleTimeout())
	t.mu.Lock()
	conns := t.idle[addr]
	if len(conns) == 0 {
		t.mu.Unlock()
		return nil
	}
	c := conns[len(conns)-1]
	conns[len(conns)-1] = nil
	t.idle[addr] = conns[:len(conns)-1]
	t.mu.Unlock()
	if !c.idleSince.After(limit) {
		c.close() // the sweep had not come yet; the older ones go with the next
		return nil
	}
	c.reused = true
	return c
}

// put returns c to the pool, or closes it when the pool of its address is full.
func (t *Transport) put(c *conn) {
	c.idleSince = time.Now()
	t.mu.Lock()
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	conns := t.idle[c.addr]
	max := t.MaxIdlePerHost
	if max <= 0 {
		max = DefaultMaxIdlePerHost
	}
	if len(conns) >= max {
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle[c.addr] = append(conns, c)
	if !t.sweeping {
		t.sweeping = true
		time.AfterFunc(t.idleTimeout(), t.sweep)
	}
	t.mu.Unlock()
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return DefaultIdleTimeout
}

// sweep closes the connections idle for longer than the timeout and comes back while any
// are left.
func (t *Transport) sweep() {
	timeout := t.idleTimeout()
	limit := time.Now().Add(-timeout)
	var stale []*conn
	t.mu.Lock()
	for addr, conns := range t.idle {
		n := 0
		for n < len(conns) && !conns[n].idleSince.After(limit) {
			n++
		}
		stale = append(stale, conns[:n]...)
		if n == len(conns) {
			delete(t.idle, addr)
			continue
		}
		t.idle[addr] = append(conns[:0], conns[n:]...)
		clear(conns[len(conns)-n:])
	}
	t.sweeping = len(t.idle) > 0
	if t.sweeping {
		time.AfterFunc(timeout/2, t.sweep)
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// CloseIdleConnections closes the idle connections; calls in flight keep theirs.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.close()
		}
	}
}

// conn is one connection to a backend, used by one call at a time.
type conn struct {
	t         *Transport
	addr      string
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	reused    bool
}

func (c *conn) close() { _ = c.nc.Close() }

// aLongTimeAgo is a deadline in the past: setting it wakes a blocked read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes r on c and reads the answer's header. The response body returns c to the
// pool once read to its end; any error leaves c to the caller to close.
func (c *conn) roundTrip(ctx context.Context, r *http.Request, host string, info func(int, http.Header)) (*http.Response, error) {
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	}
	resp, err := c.exchange(r, host, info)
	if err != nil {
		stop()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	reuse := !resp.Close && !r.Close
	if resp.Body == http.NoBody {
		c.release(reuse, stop)
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, c: c, reuse: reuse, stop: stop}
	return resp, nil
}

// exchange writes r and reads the final response's header.
func (c *conn) exchange(r *http.Request, host string, info func(int, http.Header)) (*http.Response, error) {
	if err := c.writeRequest(r, host); err != nil {
		if c.reused {
			return nil, fmt.Errorf("%w: %w", errNothingRead, err)
		}
		return nil, err
	}
	if d := c.t.ResponseHeaderTimeout; d > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(d))
	}
	if _, err := c.br.Peek(1); err != nil {
		if c.reused {
			return nil, fmt.Errorf("%w: %w", errNothingRead, err)
		}
		return nil, err
	}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(c.br, r)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			if code == http.StatusSwitchingProtocols {
				return nil, errors.New("upstream: the backend switched protocols unasked")
			}
			if c.t.ResponseHeaderTimeout > 0 {
				_ = c.nc.SetReadDeadline(time.Time{})
			}
			return resp, nil
		}
		if n >= max1xx {
			return nil, errors.New("upstream: too many 1xx informational responses")
		}
		if info != nil {
			info(code, resp.Header)
		}
	}
}

// release ends a call: c goes back to the pool when reuse holds and the context's abort did
// not fire, else it is closed.
func (c *conn) release(reuse bool, stop func() bool) {
	if stop() && reuse && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.close()
}

// writeRequest writes r's request line, header and body as net/http's Transport would.
func (c *conn) writeRequest(r *http.Request, host string) error {
	w := c.bw
	head := AppendHead(w.AvailableBuffer(), r, host)
	if _, err := w.Write(head); err != nil {
		return err
	}
	if r.ContentLength > 0 {
		if n, err := io.CopyN(w, r.Body, r.ContentLength); err != nil {
			if err == io.EOF {
				return fmt.Errorf("upstream: ContentLength=%d with Body length %d", r.ContentLength, n)
			}
			return err
		}
	}
	return w.Flush()
}

// Check returns the Host field r is sent with, or why net/http's Transport would refuse to
// send r (see Eligible for what else it must be).
func Check(r *http.Request) (host string, err error) {
	if host, err = requestHost(r); err != nil {
		return "", err
	}
	return host, validRequest(r)
}

// AppendHead appends r's request line and header, as net/http's Transport writes them, to
// dst: host (Check's) as the Host field, no default User-Agent when r's header has an empty
// one, and the length of r's body.
func AppendHead(dst []byte, r *http.Request, host string) []byte {
	dst = append(dst, r.Method...)
	dst = append(dst, ' ')
	dst = append(dst, r.URL.RequestURI()...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	if _, ok := r.Header["User-Agent"]; !ok {
		dst = append(dst, "User-Agent: Go-http-client/1.1\r\n"...)
	}
	for k, vs := range r.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			if v = textproto.TrimString(v); v == "" && k == "User-Agent" {
				continue
			}
			dst = append(dst, k...)
			dst = append(dst, ": "...)
			dst = append(dst, v...)
			dst = append(dst, "\r\n"...)
		}
	}
	switch {
	case r.ContentLength > 0:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, r.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		dst = append(dst, "Content-Length: 0\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// requestHost is the Host field r is sent with: r.Host, else the URL's host.
func requestHost(r *http.Request) (string, error) {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	h, err := httpguts.PunycodeHostPort(host)
	if err != nil {
		return "", err
	}
	if !httpguts.ValidHostHeader(h) {
		return "", errors.New("upstream: invalid Host header")
	}
	return h, nil
}

// validRequest refuses what net/http's Transport refuses to send: a method that is not a
// token, header fields with invalid names or values, and a request target with a space or a
// line break.
func validRequest(r *http.Request) error {
	if r.Method == "" || !httpguts.ValidHeaderFieldName(r.Method) {
		return fmt.Errorf("upstream: invalid method %q", r.Method)
	}
	for k, vs := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("upstream: invalid header field name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("upstream: invalid header field value for %q", k)
			}
		}
	}
	if strings.ContainsAny(r.URL.RequestURI(), " \r\n") {
		return errors.New("upstream: invalid request target")
	}
	return nil
}

// CanonicalAddr is the URL's host with the port http implies when it has none.
func CanonicalAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// body is a response body that gives its connection back once read to its end, and closes
// it when closed before.
type body struct {
	rc    io.ReadCloser
	c     *conn
	reuse bool
	stop  func() bool
	done  bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.done = true
		b.c.release(b.reuse && err == io.EOF, b.stop)
	}
	return n, err
}

// Close closes the connection unless the body was read to its end; the rest of the body is
// not drained: it may be long.
func (b *body) Close() error {
	if !b.done {
		b.done = true
		b.stop()
		b.c.close()
	}
	return nil
}

// responseHopHeaders are the hop-by-hop fields httputil.ReverseProxy drops from a response.
var responseHopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// RemoveHopByHop drops from a response's header the fields its Connection field names and
// the hop-by-hop ones, as httputil.ReverseProxy does.
func RemoveHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, f := range responseHopHeaders {
		h.Del(f)
	}
}
