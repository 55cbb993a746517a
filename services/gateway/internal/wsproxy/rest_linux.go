package wsproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gatehouse.dev/gateway/internal/upstream"
)

// REST on the loops (docs/design.md §3, "REST requests on the loops"). A connection whose
// first request is a plain HTTP/1.1 request without a body stays on the loop that accepted
// it: the loop parses each request (with net/http's parser), asks FrontOptions.REST to
// decide it there and then (the traffic handler's checks and policies, when none of them
// waits), sends it to the backend over a kept-alive connection of its own, and relays the
// answer, as nginx does: no goroutine per connection or per request, no hand-off between
// threads. Whatever the loop does not serve itself (a request with a body, an upgrade that
// did not come first, a request whose policies may wait, one the parser or the loop's
// rules refuse) goes, with the connection and the bytes read so far, to net/http, which
// serves it and the rest of the connection as before.

// loopFD is a descriptor a loop watches that is not a session's side: a connection whose
// requests the loop serves, or a backend connection of those requests.
type loopFD interface {
	ready(events uint32)
}

// fdEntry is a loopFD with the generation of its registration.
type fdEntry struct {
	gen uint32
	h   loopFD
}

// nextGen returns a new registration generation (sessions' sides share the counter).
func (l *loop) nextGen() uint32 {
	l.gen++
	if l.gen >= watchBit {
		l.gen = 1
	}
	return l.gen
}

// register adds fd to the loop's epoll set for h (edge-triggered, reads and writes).
func (l *loop) register(fd int, h loopFD) error {
	gen := l.nextGen()
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | syscall.EPOLLET&0xFFFFFFFF,
		Fd:     int32(fd),
		Pad:    int32(gen),
	}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	for fd >= len(l.fds) {
		l.fds = append(l.fds, make([]fdEntry, max(64, len(l.fds)))...)
	}
	l.fds[fd] = fdEntry{gen: gen, h: h}
	return nil
}

// forget drops fd's entry; closing fd takes it out of the epoll set.
func (l *loop) forget(fd int) {
	if fd < len(l.fds) {
		l.fds[fd] = fdEntry{}
	}
}

// noteReadable records what events say of a socket to be read: that it is readable, and
// hup when its peer ended or it failed (it is then read to the end).
func noteReadable(events uint32, readable, hup *bool) {
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		*readable = true
		if events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			*hup = true
		}
	}
}

// dispatch passes an event to the loopFD registered with gen, if fd still is (else the
// descriptor was closed since, perhaps reused).
func (l *loop) dispatch(fd int, gen uint32, events uint32) {
	if fd < len(l.fds) && l.fds[fd].h != nil && l.fds[fd].gen == gen {
		l.fds[fd].h.ready(events)
	}
}

const (
	defaultIdleTimeout       = 2 * time.Minute
	defaultReadHeaderTimeout = 10 * time.Second
	// maxResponseHead bounds a backend response's status line and header.
	maxResponseHead = 1 << 20
	// restIdlePerAddr bounds the idle backend connections a loop keeps for one address, and
	// restBackendIdle how long one stays idle.
	restIdlePerAddr = 256
	restBackendIdle = 90 * time.Second
	// max1xx bounds the informational responses before the final one, as net/http does.
	max1xx = 5
	// restDialTimeout bounds making a backend connection and writing the request on it, as
	// net/http's DefaultTransport bounds the dial.
	restDialTimeout = 30 * time.Second
	// maxIdleBuffer bounds the input buffer a connection keeps while idle, client's or
	// backend's, as net/http's server keeps a 4 KiB reader per connection.
	maxIdleBuffer = 4 << 10
)

// restConn is a client connection whose requests a loop serves.
type restConn struct {
	f      *Front
	l      *loop
	fd     int
	remote *net.TCPAddr
	addr   string // remote, as RemoteAddr

	in  []byte // read from the client and not yet served
	out []byte // waiting for the client's socket: out[off:]
	off int

	readable   bool // epoll said readable and the socket may not be drained
	hup        bool // the client shut its end, or the socket failed
	blocked    bool // the socket refused bytes: out waits for EPOLLOUT
	closeAfter bool // close once out is written: Connection: close, or the front closing
	corked     bool // send queues without writing (uncork writes)

	call *restCall // the request being proxied

	// One timer per connection: idle between requests, the header of a request, the
	// backend's response header. dl is the deadline it enforces (zero: none).
	timer    *time.Timer
	timerSet bool
	fireAt   time.Time // when the timer fires, if set
	dl       time.Time
	dlKind   int
}

const (
	dlIdle = iota
	dlHeader
	dlBackend
)

// serveREST takes a connection whose first bytes, got, begin with r, a request the loops
// may serve, whose head is got[:end] (the loop's goroutine).
func (f *Front) serveREST(l *loop, fd int, remote *net.TCPAddr, got []byte, r *http.Request, end int) {
	c := &restConn{f: f, l: l, fd: fd, remote: remote, addr: remote.String(), in: got}
	if err := l.register(fd, c); err != nil {
		go f.handover(&bareConn{fd: fd, remote: remote}, got)
		return
	}
	c.serve(r, end)
	c.next()
}

// firstREST parses the request that begins got when it may be one the loops serve: its
// head came whole, it asks for no upgrade, and readRESTRequest takes it.
func firstREST(got []byte, maxHeader int) (*http.Request, int, bool) {
	end := bytes.Index(got, crlfcrlf)
	if end < 0 || end+len(crlfcrlf) > maxHeader || hasUpgradeField(got[:end]) {
		return nil, 0, false
	}
	end += len(crlfcrlf)
	r, err := readRESTRequest(got[:end])
	return r, end, err == nil
}

// hasUpgradeField reports whether a request head has an Upgrade field, at the cost of a
// look at the start of each line: upgrade requests go to the front's goroutines.
func hasUpgradeField(head []byte) bool {
	for i := bytes.IndexByte(head, '\n'); i >= 0 && i+8 <= len(head); {
		if head[i+8-1] == ':' || i+8 < len(head) && head[i+8] == ':' {
			if name := head[i+1 : i+8]; len(name) == 7 && strings.EqualFold(string(name), "upgrade") {
				return true
			}
		}
		j := bytes.IndexByte(head[i+1:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return false
}

func (c *restConn) ready(events uint32) {
	if events&syscall.EPOLLOUT != 0 && c.blocked {
		c.blocked = false
		c.flush()
	}
	if c.fd < 0 {
		return
	}
	noteReadable(events, &c.readable, &c.hup)
	if c.call != nil {
		if c.hup { // as net/http's server: a client that goes away cancels its request
			c.close()
		}
		return
	}
	c.next()
}

// next serves the requests that came, one at a time, and waits for more.
func (c *restConn) next() {
	for c.fd >= 0 && c.call == nil && c.off == len(c.out) {
		if c.closeAfter {
			c.close()
			return
		}
		end := bytes.Index(c.in, crlfcrlf)
		if end < 0 || end+len(crlfcrlf) > c.f.opt.MaxHeaderBytes {
			// A head that ended with a bare LF (which ReadRequest takes as a line end, and
			// "\n\r\n" as the head's end) has no CRLFCRLF to wait for.
			if len(c.in) > c.f.opt.MaxHeaderBytes || headEnd(c.in) >= 0 {
				c.handover() // net/http answers or frames it
				return
			}
			if !c.readable {
				c.wait()
				return
			}
			c.fill()
			continue
		}
		end += len(crlfcrlf)
		r, err := readRESTRequest(c.in[:end])
		if err != nil {
			c.handover()
			return
		}
		c.serve(r, end)
	}
}

var crlfcrlf = []byte("\r\n\r\n")

// fill reads what the client sent.
func (c *restConn) fill() {
	n, errno := loopRead(c.fd, c.l.buf)
	switch {
	case errno == syscall.EAGAIN:
		c.readable = false
		return
	case errno != 0 || n == 0: // gone, between requests or in the middle of one
		c.close()
		return
	}
	if n < len(c.l.buf) && !c.hup {
		c.readable = false
	}
	c.in = append(c.in, c.l.buf[:n]...)
}

// wait arms the timer while the connection waits for a request: its idle timeout, or the
// timeout of a header that began to come.
func (c *restConn) wait() {
	if len(c.in) == 0 {
		if cap(c.in) > maxIdleBuffer {
			c.in = nil // large heads one behind the other grew it: many idle clients would keep it
		}
		c.arm(c.f.opt.IdleTimeout, dlIdle)
	} else if c.dl.IsZero() || c.dlKind != dlHeader {
		c.arm(c.f.opt.ReadHeaderTimeout, dlHeader)
	}
}

// arm sets the deadline; the timer is reset only when it would fire later than it.
func (c *restConn) arm(d time.Duration, kind int) {
	c.dl, c.dlKind = time.Now().Add(d), kind
	if c.timerSet && !c.dl.Before(c.fireAt) {
		return // it fires first, and looks again
	}
	c.timerSet, c.fireAt = true, c.dl
	if c.timer == nil {
		c.timer = time.AfterFunc(d, func() { c.l.post(c.expired) })
	} else {
		c.timer.Reset(d)
	}
}

// expired runs on the loop when the timer fired.
func (c *restConn) expired() {
	c.timerSet = false
	if c.fd < 0 || c.dl.IsZero() {
		return
	}
	if left := time.Until(c.dl); left > 0 {
		c.timerSet, c.fireAt = true, c.dl
		c.timer.Reset(left)
		return
	}
	c.dl = time.Time{}
	switch {
	case c.dlKind == dlBackend && c.call != nil:
		c.call.fail(errResponseTimeout)
	case c.dlKind != dlBackend && c.call == nil:
		c.close()
	}
}

var errResponseTimeout = errors.New("wsproxy: timeout awaiting the backend")

// serve serves r, the request whose head is c.in[:end].
func (c *restConn) serve(r *http.Request, end int) {
	c.dl = time.Time{}
	r.RemoteAddr = c.addr
	r = r.WithContext(c.f.opt.Context)
	w := &frontWriter{}
	lc, ok, panicked := c.decide(w, r)
	if panicked {
		c.close()
		return
	}
	if !ok {
		c.handover()
		return
	}
	c.f.nREST.Add(1)
	c.in = c.in[:copy(c.in, c.in[end:])]
	if lc == nil {
		var keep bool
		c.out, keep = w.appendResponse(c.out, r.Close, r.Method == http.MethodHead)
		c.closeAfter = c.closeAfter || !keep
		c.flush()
		return
	}
	c.f.inflight.Add(1)
	c.call = &restCall{c: c, lc: lc, w: w, req: lc.Request, keep: !r.Close, headReq: r.Method == http.MethodHead}
	c.call.start()
}

// decide runs FrontOptions.REST on r. As net/http's server, a handler's panic ends its
// connection (the caller closes it), not the process.
func (c *restConn) decide(w *frontWriter, r *http.Request) (lc *LoopCall, ok, panicked bool) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(c.remote, v)
			panicked = true
		}
	}()
	lc, ok = c.f.opt.REST.ServeLoop(w, r)
	return lc, ok, false
}

// response runs LoopCall.Response; false when it panicked.
func (k *restCall) response(resp *http.Response) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(k.c.remote, v)
			ok = false
		}
	}()
	k.lc.Result.Response(resp.StatusCode, resp.Header)
	return true
}

// failed runs LoopCall.Failed; false when it panicked.
func (k *restCall) failed(w http.ResponseWriter, err error) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			logPanic(k.c.remote, v)
			ok = false
		}
	}()
	k.lc.Result.Failed(w, err)
	return true
}

// send queues b (which the caller may reuse) for the client and writes what it can.
func (c *restConn) send(b []byte) {
	if c.fd < 0 {
		return
	}
	if c.off == len(c.out) && !c.blocked && !c.corked {
		c.out, c.off = c.out[:0], 0
		for len(b) > 0 {
			n, errno := loopWrite(c.fd, b)
			if errno == syscall.EAGAIN {
				c.blocked = true
				break
			}
			if errno != 0 {
				c.close()
				return
			}
			b = b[n:]
		}
		if len(b) == 0 {
			return
		}
	}
	c.out = append(c.out, b...)
}

// uncork writes what send queued while corked: an answer's head and the body that came with
// it go out in one write, as nginx's writev sends them, not two (each wakes the client).
func (c *restConn) uncork() {
	c.corked = false
	if c.off < len(c.out) && !c.blocked {
		c.flush()
	}
}

// flush writes what waits for the client; once it is all written, the backend is read
// again if the client's queue had paused it, and the next request is served.
func (c *restConn) flush() {
	if c.fd < 0 {
		return
	}
	for c.off < len(c.out) {
		n, errno := loopWrite(c.fd, c.out[c.off:])
		if errno == syscall.EAGAIN {
			c.blocked = true
			return
		}
		if errno != 0 {
			c.close()
			return
		}
		c.off += n
	}
	if cap(c.out) > 64<<10 {
		c.out = nil // a large answer's buffer is not kept
	}
	c.out, c.off = c.out[:0], 0
	if k := c.call; k != nil {
		if k.be != nil && k.be.paused {
			k.be.paused = false
			k.readBackend()
		}
		return
	}
	c.next()
}

// queued is how many bytes wait for the client.
func (c *restConn) queued() int { return len(c.out) - c.off }

// handover gives the connection, with what it read and not served, to net/http.
func (c *restConn) handover() {
	fd, in := c.fd, append([]byte(nil), c.in...)
	c.detach()
	_ = syscall.EpollCtl(c.l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	go c.f.handover(&bareConn{fd: fd, remote: c.remote}, in)
}

// close closes the connection, and cancels the call in flight.
func (c *restConn) close() {
	fd := c.fd
	if fd < 0 {
		return
	}
	k := c.call
	c.detach()
	syscall.Close(fd)
	if k != nil {
		k.cancel()
	}
}

// detach forgets the descriptor.
func (c *restConn) detach() {
	c.l.forget(c.fd)
	c.fd = -1
	c.dl = time.Time{}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.in, c.out = nil, nil
}

// drain makes the connection close after the request in flight, or now when none is
// (Front.Close).
func (c *restConn) drain() {
	c.closeAfter = true
	if c.call == nil && c.off == len(c.out) {
		c.close()
	}
}

// readRESTRequest parses a request's line and headers (net/http's parser), and accepts only
// what the loops serve: an HTTP/1.1 request in origin form with one valid Host, no body,
// no Expect and no Upgrade. The rest is net/http's to serve.
func readRESTRequest(head []byte) (*http.Request, error) {
	r, err := parseRequest(head)
	switch {
	case err != nil:
		return nil, err
	case r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.Header["Expect"] != nil || r.Header["Upgrade"] != nil:
		return nil, errNotFront
	}
	return r, nil
}

// restCall is a request a loop proxies to a backend.
type restCall struct {
	c       *restConn
	lc      *LoopCall
	w       *frontWriter // the fields to add to the answer; the answer when the call fails
	req     *http.Request
	keep    bool // the client keeps the connection
	headReq bool // the client asked HEAD: an answer of the loop's own has no body

	host    string // the Host field the request is sent with
	addr    string // the backend's host:port
	be      *restBackend
	retry   bool // a reused connection the backend had closed may be replaced once
	retried bool

	got   bool // a byte of the response came
	n1xx  int
	final bool // the final response's head went to the client
	resp  *http.Response
	mode  int   // how the body ends
	left  int64 // bytes of a body of known length still to come
	chunk chunkScanner
	extra bool // the backend sent more than the response: its connection is not reused
}

// How a response's body ends.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyClose // at the end of the connection
)

func (k *restCall) start() {
	host, err := upstream.Check(k.req)
	if err == nil && k.req.URL.Scheme != "http" {
		err = errors.New("wsproxy: a loop call to a backend that is not http://")
	}
	if err != nil {
		k.fail(err)
		return
	}
	k.host = host
	k.addr = upstream.CanonicalAddr(k.req.URL)
	k.retry = upstream.Replayable(k.req)
	k.connect(true)
}

// connect sends the request over an idle connection to the backend (pooled) or a new one.
func (k *restCall) connect(pooled bool) {
	l := k.c.l
	var be *restBackend
	if pooled {
		be = l.takeIdle(k.addr)
	}
	if be == nil {
		k.c.arm(restDialTimeout, dlBackend) // until the request is written
		var err error
		be, err = k.dial()
		if err != nil || be == nil { // nil: being dialed on a goroutine
			if err != nil {
				k.fail(err)
			}
			return
		}
	}
	k.use(be)
}

// use sends the request over be.
func (k *restCall) use(be *restBackend) {
	k.be, be.call = be, k
	be.out = upstream.AppendHead(be.out[:0], k.req, k.host)
	be.off = 0
	be.flush()
}

// dial connects to the backend from the loop when its host is an address; a name is
// resolved and dialed on a goroutine (Engine.dial), and the connection joins the loop
// when it is made (nil, nil).
func (k *restCall) dial() (*restBackend, error) {
	f, l := k.c.f, k.c.l
	host, port, err := net.SplitHostPort(k.addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, &net.AddrError{Err: "invalid port", Addr: k.addr}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), restDialTimeout)
			bc, err := f.e.dial(ctx, host, uint16(p), f.opt.DialAllow)
			cancel()
			l.post(func() { k.dialed(bc, err) })
		}()
		return nil, nil
	}
	ap := netip.AddrPortFrom(a.Unmap(), uint16(p))
	if f.opt.DialAllow != nil {
		if err := f.opt.DialAllow("", ap); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
		}
	}
	fd, err := connectTCP(ap)
	if err != nil {
		return nil, err
	}
	return l.newBackend(fd, k.addr)
}

// dialed takes the connection a goroutine dialed for k (the loop's goroutine).
func (k *restCall) dialed(bc *bareConn, err error) {
	if err != nil {
		if k.c.call == k {
			k.fail(err)
		}
		return
	}
	fd := bc.take()
	if bc.w != nil {
		bc.w.end(fd) // it leaves the loop that dialed it for this one
	}
	if k.c.call != k { // the client went away meanwhile
		syscall.Close(fd)
		return
	}
	be, err := k.c.l.newBackend(fd, k.addr)
	if err != nil {
		k.fail(err)
		return
	}
	k.use(be)
}

// fromBackend takes bytes of the response: its head until it came whole, then its body.
// p is the loop's buffer.
func (k *restCall) fromBackend(p []byte) {
	k.got = true
	if k.final {
		k.relay(p)
		return
	}
	be := k.be
	be.in = append(be.in, p...)
	for !k.final {
		end := headEnd(be.in)
		if end < 0 {
			if len(be.in) > maxResponseHead {
				k.fail(errors.New("wsproxy: backend response header too large"))
			}
			return
		}
		resp, err := parseResponse(be.in[:end], k.req)
		if err != nil {
			k.fail(err)
			return
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			k.fail(errors.New("wsproxy: the backend switched protocols unasked"))
			return
		}
		if code >= 100 && code <= 199 {
			if k.n1xx++; k.n1xx > max1xx {
				k.fail(errors.New("wsproxy: too many 1xx informational responses"))
				return
			}
			k.informational(resp)
			if k.c.call != k { // the client's connection failed as it was written to
				return
			}
			be.in = be.in[:copy(be.in, be.in[end:])]
			continue
		}
		body := be.in[end:] // read past the head; be.in is not appended to before it is relayed
		be.in = be.in[:0]
		c := k.c
		c.corked = true
		k.respond(resp)
		switch {
		case c.call != k:
		case k.mode == bodyNone || k.mode == bodyLength && k.left == 0:
			k.extra = len(body) > 0
			k.finish()
		default:
			k.relay(body)
		}
		c.uncork()
		return
	}
}

// informational relays a 1xx response as the reverse proxy does: with the fields to add,
// which the final response then goes without.
func (k *restCall) informational(resp *http.Response) {
	h := k.w.Header()
	for name, vs := range resp.Header {
		h[name] = append(h[name], vs...)
	}
	out := appendStatusLine(k.c.l.scratch[:0], resp.StatusCode)
	out = appendFields(out, h)
	out = append(out, "\r\n"...)
	clear(h)
	k.c.send(out)
	k.c.l.scratch = out[:0]
}

// respond relays the final response's head.
func (k *restCall) respond(resp *http.Response) {
	k.final, k.resp = true, resp
	if k.c.dlKind == dlBackend {
		k.c.dl = time.Time{}
	}
	upstream.RemoveHopByHop(resp.Header)
	if !k.response(resp) {
		k.broken(nil)
		return
	}
	h := k.w.Header()
	for name, vs := range resp.Header {
		h[name] = append(h[name], vs...)
	}
	// The framing fields are written after the others, not through the header map.
	code := resp.StatusCode
	var framing string
	switch {
	case k.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified:
		k.mode = bodyNone
	case len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked":
		k.mode = bodyChunked
		delete(h, "Content-Length")
		framing = "Transfer-Encoding: chunked\r\n"
		if len(resp.Trailer) > 0 {
			names := make([]string, 0, len(resp.Trailer))
			for name := range resp.Trailer {
				names = append(names, name)
			}
			h["Trailer"] = []string{strings.Join(names, ", ")}
		}
	case resp.ContentLength >= 0:
		k.mode, k.left = bodyLength, resp.ContentLength
		delete(h, "Content-Length")
	default:
		k.mode = bodyClose
	}
	closing := !k.keep || k.mode == bodyClose || k.c.closeAfter
	if closing {
		k.keep = false
		delete(h, "Connection")
	}
	_, dated := h["Date"]
	out := appendStatusLine(k.c.l.scratch[:0], code)
	out = appendFields(out, h)
	out = append(out, framing...)
	if k.mode == bodyLength {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, resp.ContentLength, 10)
		out = append(out, "\r\n"...)
	}
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	if !dated {
		out = append(out, "Date: "...)
		out = append(out, k.c.l.date()...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	k.c.send(out)
	k.c.l.scratch = out[:0]
}

// relay passes body bytes p to the client, up to the body's end.
func (k *restCall) relay(p []byte) {
	if len(p) == 0 {
		return
	}
	switch k.mode {
	case bodyLength:
		n := min(int64(len(p)), k.left)
		k.left -= n
		k.extra = int64(len(p)) > n
		k.c.send(p[:n])
		if k.left == 0 {
			k.finish()
			return
		}
	case bodyChunked:
		n, done, err := k.chunk.scan(p)
		if err != nil {
			k.broken(err)
			return
		}
		k.c.send(p[:n])
		if done {
			k.extra = n < len(p)
			k.finish()
			return
		}
	case bodyClose:
		k.c.send(p)
	}
	if k.be != nil && k.c.queued() > maxQueued {
		k.be.paused = true // the client reads slowly: the backend waits
	}
}

// readBackend reads the backend's answer while the client takes it.
func (k *restCall) readBackend() {
	be := k.be
	l := k.c.l
	for k.be == be && be.readable && !be.paused {
		n, errno := loopRead(be.fd, l.buf)
		switch {
		case errno == syscall.EAGAIN:
			be.readable = false
			return
		case errno != 0 || n == 0:
			k.backendEnded(errno)
			return
		}
		if n < len(l.buf) && !be.hup {
			be.readable = false
		}
		k.fromBackend(l.buf[:n])
	}
}

// backendEnded handles the end of the backend's connection (errno 0: its FIN).
func (k *restCall) backendEnded(errno syscall.Errno) {
	var err error = io.ErrUnexpectedEOF
	if errno != 0 {
		err = os.NewSyscallError("read", errno)
	}
	switch {
	case !k.got && k.be.reused && k.retry && !k.retried:
		// The backend closed the idle connection as the request went: send it again on a
		// new one, as net/http does for a request it may repeat.
		k.retried = true
		k.be.close()
		k.be = nil
		k.connect(false)
	case !k.final:
		k.fail(err)
	case k.mode == bodyClose && errno == 0:
		k.finish()
	default: // the body was cut short: only a cut connection tells the client
		k.broken(err)
	}
}

// finish ends a call whose answer was relayed whole.
func (k *restCall) finish() {
	c, be := k.c, k.be
	k.be = nil
	if be != nil {
		be.call = nil
		// An answer that came before the request was written whole leaves the rest of
		// it unsent: the next request would follow a cut head.
		if k.extra || k.resp.Close || k.mode == bodyClose || be.hup || be.off < len(be.out) {
			be.close()
		} else {
			c.l.putIdle(be)
		}
	}
	k.end()
	if !k.keep {
		c.closeAfter = true
	}
	if c.off == len(c.out) {
		c.next()
	}
}

// end detaches the call from its client connection.
func (k *restCall) end() {
	c := k.c
	if c.call != k {
		return
	}
	c.call = nil
	if c.dlKind == dlBackend {
		c.dl = time.Time{}
	}
	c.f.inflight.Done()
}

// fail answers the client for a call that got no response (LoopCall.Failed writes it).
func (k *restCall) fail(err error) {
	if k.final {
		k.broken(err)
		return
	}
	if k.be != nil {
		k.be.close()
		k.be = nil
	}
	if k.c.call != k {
		return
	}
	answered := k.failed(k.w, err)
	k.end()
	c := k.c
	if !answered {
		c.close()
	}
	if c.fd < 0 {
		return
	}
	var keep bool
	c.out, keep = k.w.appendResponse(c.out, !k.keep, k.headReq)
	c.closeAfter = c.closeAfter || !keep
	c.flush()
}

// broken ends a call whose answer was cut short: the client's connection closes.
func (k *restCall) broken(error) {
	if k.be != nil {
		k.be.close()
		k.be = nil
	}
	k.end()
	k.c.close()
}

// cancel ends the call of a client that went away, as net/http's server cancels the
// request's context: LoopCall.Failed hears of it when no response came yet.
func (k *restCall) cancel() {
	if k.be != nil {
		k.be.close()
		k.be = nil
	}
	if !k.final {
		k.failed(&frontWriter{}, context.Canceled)
	}
	k.end()
}
