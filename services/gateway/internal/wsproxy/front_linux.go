package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/sys/unix"
)

// Front serves a plain-TCP listener from the engine's loops (docs/design.md §3, "the
// handshake path"). The loops accept its connections themselves and read each one's first
// bytes at once (the listener defers accept until the client has sent some). A complete
// WebSocket upgrade request is parsed, and served on a goroutine the front keeps for the
// next one once this one is done (workers.go): the handler
// runs the checks, dials the backend and upgrades, and the session then takes the
// descriptor straight to a loop. The connection never enters the runtime's poller and
// net/http never sees it: no goroutine waits on it before its request came, none reads it
// beside the handler, and taking it over costs no duplicate and no second registration.
// Every other connection (any other request, an upgrade request that did not come whole in
// the first read or that asks for more than a plain GET, one that sent nothing yet) is
// handed, with the bytes read so far, to whoever calls Accept: net/http's Server, which
// serves it exactly as it serves a connection it accepted itself. After a refused upgrade
// the connection is handed over too, for its next request.
//
// The socket options the runtime sets on every connection it accepts (no Nagle delay,
// keepalive probes) are set once, on the listener, which the kernel copies them from.
type Front struct {
	e   *Engine
	ln  net.Listener
	fd  int // a duplicate of ln's descriptor, in every loop's epoll set
	opt FrontOptions

	mu     sync.Mutex
	handed []net.Conn // for Accept
	more   chan struct{}

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error
	inflight  sync.WaitGroup // handshakes being served
	workers   workers        // the goroutines that serve them
	nAccepted atomic.Int64
	nServed   atomic.Int64 // upgrade requests served by the front
	nREST     atomic.Int64 // plain requests served on the loops
}

// listenTag marks a listener's events in the epoll set: sessions' registrations carry their
// generation, which never takes this value.
const listenTag = ^uint32(0) // Pad: -1

// frontWorkers is how many idle goroutines a Front keeps for the upgrade requests it serves.
const frontWorkers = 32

// frontKeepAlive are the keepalive settings net.ListenConfig gives each connection it
// accepts by default (idle 15 s, probes every 15 s, 9 of them).
const (
	frontKeepIdle     = 15
	frontKeepInterval = 15
	frontKeepCount    = 9
	// frontDeferAccept is how long (seconds) the kernel holds a connection that has sent
	// nothing before accept returns it anyway.
	frontDeferAccept = 1
)

// Front starts serving ln, a *net.TCPListener, from the loops; serve the returned Front
// (a net.Listener of the connections it hands over) with net/http. Closing the Front
// stops the accepting and closes ln. It fails for other listeners.
func (e *Engine) Front(ln net.Listener, opt FrontOptions) (*Front, error) {
	if opt.Handler == nil {
		return nil, errors.New("wsproxy: front: no handler")
	}
	if opt.Context == nil {
		opt.Context = context.Background()
	}
	if opt.MaxHeaderBytes <= 0 {
		opt.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = defaultIdleTimeout
	}
	if opt.ReadHeaderTimeout <= 0 {
		opt.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if _, ok := ln.(*net.TCPListener); !ok {
		return nil, errors.New("wsproxy: front: not a TCP listener")
	}
	fd, err := takeFD(ln)
	if err != nil {
		return nil, err
	}
	for _, o := range [...][3]int{
		{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, frontKeepIdle},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, frontKeepInterval},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, frontKeepCount},
		{syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, frontDeferAccept},
	} {
		if err := syscall.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			syscall.Close(fd)
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	f := &Front{e: e, ln: ln, fd: fd, opt: opt, more: make(chan struct{}, 1), closing: make(chan struct{}),
		workers: workers{max: frontWorkers}}
	for i, l := range e.loops {
		l.call(func() { l.fronts = append(l.fronts, f) })
		// EPOLLEXCLUSIVE: a connection wakes one loop, not all of them.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(fd), Pad: -1}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			f.unregister(e.loops[:i+1])
			syscall.Close(fd)
			return nil, os.NewSyscallError("epoll_ctl", err)
		}
	}
	return f, nil
}

// unregister takes the listener out of loops' epoll sets and lists.
func (f *Front) unregister(loops []*loop) {
	for _, l := range loops {
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, f.fd, nil)
		l.call(func() {
			for i, g := range l.fronts {
				if g == f {
					l.fronts = append(l.fronts[:i], l.fronts[i+1:]...)
					break
				}
			}
		})
	}
}

// Accept returns the next connection handed over to net/http.
func (f *Front) Accept() (net.Conn, error) {
	for {
		f.mu.Lock()
		if len(f.handed) > 0 {
			c := f.handed[0]
			f.handed[0] = nil
			f.handed = f.handed[1:]
			f.mu.Unlock()
			return c, nil
		}
		f.mu.Unlock()
		select {
		case <-f.more:
		case <-f.closing:
			return nil, net.ErrClosed
		}
	}
}

// Close stops accepting, closes the listener and the connections not yet taken by Accept.
// Handshakes being served go on (Wait waits for them).
func (f *Front) Close() error {
	f.closeOnce.Do(func() {
		close(f.closing)
		// Refuse new connections at once, as closing a listener does, before the loops let
		// go of it: shutdown(2) stops a listening socket without freeing its descriptor,
		// which a loop may be about to accept from.
		_ = syscall.Shutdown(f.fd, syscall.SHUT_RD)
		f.unregister(f.e.loops)
		// The connections the loops serve close once idle. Close waits until each loop has
		// marked them: an answer written after Close returned says Connection: close.
		for _, l := range f.e.loops {
			l.call(func() {
				for _, e := range l.fds {
					if c, ok := e.h.(*restConn); ok && c.f == f {
						c.drain()
					}
				}
			})
		}
		syscall.Close(f.fd)
		f.workers.stop()
		f.closeErr = f.ln.Close()
		f.mu.Lock()
		for _, c := range f.handed {
			c.Close()
		}
		f.handed = nil
		f.mu.Unlock()
	})
	return f.closeErr
}

// Addr is the listener's address.
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

// Wait waits until the handshakes being served have been, or ctx ends.
func (f *Front) Wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { f.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Counts returns how many connections the front accepted and how many of them it served
// an upgrade request itself (the rest went to net/http).
func (f *Front) Counts() (accepted, served int64) { return f.nAccepted.Load(), f.nServed.Load() }

// RESTServed returns how many plain requests the loops served themselves.
func (f *Front) RESTServed() int64 { return f.nREST.Load() }

// acceptBackoff bounds the pause after an accept failed for want of descriptors or memory,
// as net/http's Server pauses (5 ms, doubling up to 1 s).
const acceptBackoffMax = time.Second

// accept takes the connections waiting on the listener (on loop l), up to a few: the
// registration is level-triggered, so the rest wake a loop again.
func (f *Front) accept(l *loop) {
	select {
	case <-f.closing:
		return
	default:
	}
	for range 16 {
		var sa syscall.RawSockaddrAny
		salen := uint32(syscall.SizeofSockaddrAny)
		r, _, errno := syscall.RawSyscall6(syscall.SYS_ACCEPT4, uintptr(f.fd), uintptr(unsafe.Pointer(&sa)),
			uintptr(unsafe.Pointer(&salen)), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		switch errno {
		case 0:
		case syscall.EAGAIN:
			return
		case syscall.EINTR, syscall.ECONNABORTED, syscall.EPROTO:
			continue
		default: // EMFILE, ENFILE, ENOBUFS, ENOMEM: pause, or the level-triggered event spins
			f.pause(l)
			return
		}
		fd := int(r)
		l.backoff = 0
		remote := sockaddrTCP(&sa)
		n, errno := loopRead(fd, l.buf)
		f.nAccepted.Add(1) // after the read: a test that saw the count knows what was read
		switch {
		case errno == syscall.EAGAIN: // nothing came yet
			go f.handover(&bareConn{fd: fd, remote: remote}, nil)
		case errno != 0 || n == 0: // gone already
			syscall.Close(fd)
		default:
			got := append([]byte(nil), l.buf[:n]...)
			if f.opt.REST != nil {
				if r, end, ok := firstREST(got, f.opt.MaxHeaderBytes); ok {
					f.serveREST(l, fd, remote, got, r, end)
					continue
				}
			}
			f.inflight.Add(1)
			c := &bareConn{fd: fd, remote: remote}
			f.workers.run(func() { f.serve(c, got) })
		}
	}
}

// pause takes the listener out of l's epoll set for a while.
func (f *Front) pause(l *loop) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, f.fd, nil)
	l.backoff = min(max(2*l.backoff, 5*time.Millisecond), acceptBackoffMax)
	time.AfterFunc(l.backoff, func() {
		l.post(func() {
			select {
			case <-f.closing:
				return
			default:
			}
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(f.fd), Pad: -1}
			_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, f.fd, &ev)
		})
	})
}

func sockaddrTCP(sa *syscall.RawSockaddrAny) *net.TCPAddr {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := int(p.Port>>8 | p.Port<<8)
		return &net.TCPAddr{IP: net.IPv4(p.Addr[0], p.Addr[1], p.Addr[2], p.Addr[3]), Port: port}
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := int(p.Port>>8 | p.Port<<8)
		ip := make(net.IP, net.IPv6len)
		copy(ip, p.Addr[:])
		zone := ""
		if p.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(p.Scope_id)); err == nil {
				zone = ifi.Name
			}
		}
		return &net.TCPAddr{IP: ip, Port: port, Zone: zone}
	}
	return &net.TCPAddr{}
}

// serve serves the connection whose first bytes are got: an upgrade request on the spot,
// anything else by net/http.
func (f *Front) serve(c *bareConn, got []byte) {
	defer f.inflight.Done()
	defer func() {
		// As net/http's server: a handler's panic ends its connection, not the process.
		if v := recover(); v != nil {
			c.Close()
			logPanic(c.remote, v)
		}
	}()
	end := bytes.Index(got, []byte("\r\n\r\n"))
	if end < 0 || end+4 > f.opt.MaxHeaderBytes || !bytes.HasPrefix(got, []byte("GET ")) {
		f.handover(c, got)
		return
	}
	r, err := readUpgradeRequest(got[:end+4])
	if err != nil {
		f.handover(c, got)
		return
	}
	f.nServed.Add(1)
	r.RemoteAddr = c.remote.String()
	r = r.WithContext(f.opt.Context)
	w := &frontWriter{c: c, rest: got[end+4:]}
	f.opt.Handler.ServeHTTP(w, r)
	if w.hijacked {
		return
	}
	keep := w.finish(r)
	if !keep || c.fd < 0 {
		c.Close()
		return
	}
	f.handover(c, w.rest)
}

// logPanic logs a handler's panic (recovered) with its stack, as net/http's server does;
// http.ErrAbortHandler is quiet.
func logPanic(remote net.Addr, v any) {
	if v == http.ErrAbortHandler {
		return
	}
	buf := make([]byte, 64<<10)
	buf = buf[:runtime.Stack(buf, false)]
	log.Printf("wsproxy: front: panic serving %v: %v\n%s", remote, v, buf)
}

// readUpgradeRequest parses a request's line and headers, and accepts only what the front
// serves itself: an HTTP/1.1 GET in origin form, with one valid Host, no body, no Expect,
// that asks to upgrade to websocket. The rest is net/http's to answer.
func readUpgradeRequest(head []byte) (*http.Request, error) {
	r, err := parseRequest(head)
	switch {
	case err != nil:
		return nil, err
	case r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.Header["Content-Length"] != nil || r.Header["Expect"] != nil:
		return nil, errNotFront
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return nil, errNotFront
	}
	return r, nil
}

// parseRequest parses a request's line and headers with net/http's parser, and accepts
// only an HTTP/1.1 request in origin form with one valid Host that ends where head does.
func parseRequest(head []byte) (*http.Request, error) {
	hr := readHead(head)
	r, err := http.ReadRequest(hr.br)
	left := hr.done()
	switch {
	case err != nil:
		return nil, err
	case left != 0:
		// The request ended before the first CRLFCRLF (a line ended by a bare LF, which
		// ReadRequest takes as a line end): what follows it is the client's next bytes,
		// which the front would drop. net/http frames it as it parsed it.
		return nil, errNotFront
	case r.ProtoMajor != 1 || r.ProtoMinor != 1, len(r.RequestURI) == 0 || r.RequestURI[0] != '/':
		return nil, errNotFront
	case r.Host == "" || !httpguts.ValidHostHeader(r.Host): // ReadRequest refuses two Host lines
		return nil, errNotFront
	case !validFields(r.Header):
		return nil, errNotFront
	}
	return r, nil
}

// validFields reports whether h's names and values are valid, as net/http's server checks
// them after ReadRequest, which lets through a name such as "X-User " (a space before the
// colon): a lenient backend may read it as X-User, which the gateway's checks never saw.
func validFields(h http.Header) bool {
	for name, vs := range h {
		if !httpguts.ValidHeaderFieldName(name) {
			return false
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

var errNotFront = errors.New("wsproxy: front: not an upgrade request the front serves")

// headReader reads a request's or a response's head, which is all in memory, with
// net/http's parser.
type headReader struct {
	br *bufio.Reader
	rd bytes.Reader
}

var headReaders = sync.Pool{New: func() any {
	h := &headReader{}
	h.br = bufio.NewReaderSize(&h.rd, 4096)
	return h
}}

// readHead returns a headReader of head; done gives it back.
func readHead(head []byte) *headReader {
	h := headReaders.Get().(*headReader)
	h.rd.Reset(head)
	h.br.Reset(&h.rd)
	return h
}

// done returns how many bytes of the head the parser left unread, and the reader to the pool.
func (h *headReader) done() (left int) {
	left = h.br.Buffered() + h.rd.Len()
	h.br.Reset(nil)
	h.rd.Reset(nil)
	headReaders.Put(h)
	return left
}

// handover gives c, with the bytes already read from it, to Accept.
func (f *Front) handover(c *bareConn, read []byte) {
	nc, err := c.netConn()
	if err != nil {
		return
	}
	var conn net.Conn = nc
	if tc, ok := nc.(*net.TCPConn); ok {
		conn = &handedConn{TCPConn: tc, in: prefixReader{prefix: read, r: tc}}
	}
	// Closing is decided under the lock Close empties the list under: a connection added
	// after Close emptied it would be held by nobody for good.
	f.mu.Lock()
	select {
	case <-f.closing:
		f.mu.Unlock()
		nc.Close()
		return
	default:
	}
	f.handed = append(f.handed, conn)
	f.mu.Unlock()
	select {
	case f.more <- struct{}{}:
	default:
	}
}

// handedConn is a connection handed to net/http: its first reads return what the front
// read already.
type handedConn struct {
	*net.TCPConn
	in prefixReader // the bytes the front read, then the connection
}

func (c *handedConn) Read(p []byte) (int, error) { return c.in.Read(p) }

// SyscallConn refuses while bytes read by the front wait: whoever takes the descriptor
// would lose them.
func (c *handedConn) SyscallConn() (syscall.RawConn, error) {
	if len(c.in.prefix) > 0 {
		return nil, errNoFD
	}
	return c.TCPConn.SyscallConn()
}

// WriteTo writes the bytes the front read first. (*net.TCPConn).WriteTo, promoted, would
// read the socket alone: io.Copy from the connection, which prefers it to Read, would skip
// them.
func (c *handedConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(c.in.prefix) > 0 {
		m, err := w.Write(c.in.prefix)
		n += int64(m)
		c.in.prefix = c.in.prefix[m:]
		if err != nil {
			return n, err
		}
	}
	m, err := c.TCPConn.WriteTo(w)
	return n + m, err
}

// File refuses while bytes read by the front wait, as SyscallConn does.
func (c *handedConn) File() (*os.File, error) {
	if len(c.in.prefix) > 0 {
		return nil, errNoFD
	}
	return c.TCPConn.File()
}

// frontWriter is the http.ResponseWriter of a request the front serves: the response is
// written whole when the handler returns, unless the handler hijacked the connection.
type frontWriter struct {
	c        *bareConn
	rest     []byte // bytes the client sent after the request
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *frontWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code)) // as net/http
	}
	if w.status == 0 && !w.hijacked && code >= 200 {
		w.status = code
	}
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(p)
}

// Hijack hands the connection to the caller, with a reader holding what the client sent
// after the request.
func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	var br *bufio.Reader
	if len(w.rest) > 0 {
		br = bufio.NewReaderSize(&prefixReader{prefix: w.rest, r: w.c}, len(w.rest))
		_, _ = br.Peek(len(w.rest))
	} else {
		br = bufio.NewReaderSize(w.c, 16)
	}
	return w.c, bufio.NewReadWriter(br, bufio.NewWriterSize(w.c, 16)), nil
}

// prefixReader reads prefix, then r.
type prefixReader struct {
	prefix []byte
	r      io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.r.Read(b)
}

// frontWriteTimeout bounds writing a response the front serves.
const frontWriteTimeout = 10 * time.Second

// finish writes the response and reports whether the connection may serve another request.
func (w *frontWriter) finish(r *http.Request) (keepAlive bool) {
	out, keepAlive := w.appendResponse(nil, r.Close, r.Method == http.MethodHead)
	w.c.SetWriteDeadline(time.Now().Add(frontWriteTimeout))
	if _, err := w.c.Write(out); err != nil {
		return false
	}
	w.c.SetWriteDeadline(time.Time{})
	return keepAlive
}

// appendResponse appends the response as net/http's server would write it (Date,
// Content-Length, a sniffed Content-Type) to dst, and reports whether the connection may
// serve another request (not when the request asked to close it, closing). The answer to
// a HEAD request (head) tells the body's length without the body: the client reads none,
// and would take it for the start of the next answer.
func (w *frontWriter) appendResponse(dst []byte, closing, head bool) (out []byte, keepAlive bool) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	h := w.Header()
	keepAlive = !closing && !headerHasToken(h, "Connection", "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	bodyAllowed := w.status != http.StatusNoContent && w.status != http.StatusNotModified
	// The front frames the body by its length: a Transfer-Encoding the handler set
	// (net/http would chunk the body then) would tell the client to read what follows as
	// chunks.
	h.Del("Transfer-Encoding")
	if bodyAllowed {
		if h.Get("Content-Type") == "" && w.body.Len() > 0 {
			h.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
		}
		h.Set("Content-Length", strconv.Itoa(w.body.Len()))
	}
	if !keepAlive {
		h.Set("Connection", "close")
	}
	buf := bytes.NewBuffer(appendStatusLine(dst, w.status))
	_ = h.Write(buf)
	buf.WriteString("\r\n")
	if bodyAllowed && !head {
		buf.Write(w.body.Bytes())
	}
	return buf.Bytes(), keepAlive
}
