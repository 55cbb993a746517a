package wsproxy

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// A watch is a loop's registration of a descriptor that is not (yet) a session's side: a
// backend connection being dialed and upgraded. Its events only wake the goroutine waiting
// on it; the session that takes the descriptor adopts the registration as it is.
type watch struct {
	l   *loop
	gen uint32
	ch  chan struct{} // holds one wake-up at most
}

// watchBit marks the generations of watches; sessions' stay below it, and listenTag is
// neither.
const watchBit = 1 << 31

var watchGens atomic.Uint32

// watchFD registers fd (edge-triggered, every event a session needs) for the goroutine
// that dials it. Any goroutine may call it.
func (l *loop) watchFD(fd int) (*watch, error) {
	gen := watchGens.Add(1) | watchBit
	if gen == listenTag {
		gen = watchGens.Add(1) | watchBit
	}
	w := &watch{l: l, gen: gen, ch: make(chan struct{}, 1)}
	l.wmu.Lock()
	l.watches[fd] = w
	l.wmu.Unlock()
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | syscall.EPOLLET&0xFFFFFFFF,
		Fd:     int32(fd),
		Pad:    int32(gen),
	}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		w.end(fd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return w, nil
}

// woken passes an event of a watched descriptor on (the loop's goroutine).
func (l *loop) woken(fd int, gen uint32) {
	l.wmu.Lock()
	w := l.watches[fd]
	l.wmu.Unlock()
	if w != nil && w.gen == gen {
		w.signal()
	}
}

func (w *watch) signal() {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

// wait waits for an event, a signal (a new deadline), or timeoutMs (-1: no bound).
func (w *watch) wait(timeoutMs int) {
	if timeoutMs < 0 {
		<-w.ch
		return
	}
	t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
	select {
	case <-w.ch:
		t.Stop()
	case <-t.C:
	}
}

// end forgets the watch of fd, which is about to be closed or to leave the loop.
func (w *watch) end(fd int) {
	_ = syscall.EpollCtl(w.l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	w.l.wmu.Lock()
	if w.l.watches[fd] == w {
		delete(w.l.watches, fd)
	}
	w.l.wmu.Unlock()
}

// adopt makes x, whose descriptor w watches, a side of a session on the loop (the loop's
// goroutine): the registration stays, and x is read at once, for what came while the
// handshake consumed the edges.
func (l *loop) adopt(x *lside, w *watch) {
	l.wmu.Lock()
	if l.watches[x.fd] == w {
		delete(l.watches, x.fd)
	}
	l.wmu.Unlock()
	x.gen = w.gen
	for x.fd >= len(l.sides) {
		l.sides = append(l.sides, make([]*lside, max(64, len(l.sides)))...)
	}
	l.sides[x.fd] = x
	x.readable = true
	l.schedule(x)
}

// backend keepalive, as the node's egress dialer sets it on the connections it dials
// (net.Dialer.KeepAlive 30 s: idle and interval).
const dialKeepAlive = 30

// backendSocket makes a non-blocking socket to connect to ap with, with the options the
// node's egress dialer sets: no Nagle delay, and keepalive probes.
func backendSocket(ap netip.AddrPort) (int, syscall.Sockaddr, error) {
	var sa syscall.Sockaddr
	family := syscall.AF_INET6
	if ap.Addr().Is4() {
		family = syscall.AF_INET
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	for _, o := range [...][3]int{
		{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, dialKeepAlive},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, dialKeepAlive},
	} {
		if err := syscall.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			syscall.Close(fd)
			return -1, nil, os.NewSyscallError("setsockopt", err)
		}
	}
	return fd, sa, nil
}

// dial opens a TCP connection to host:port from a loop: host's addresses in turn (one
// looked up by the resolver), each decided by allow first (and a name, before its lookup,
// by allow with an invalid address), connected without the runtime's
// poller. The connection's waits are the loop's events.
func (e *Engine) dial(ctx context.Context, host string, port uint16, allow func(host string, addr netip.AddrPort) error) (*bareConn, error) {
	var addrs []netip.Addr
	name := host
	if a, err := netip.ParseAddr(host); err == nil {
		addrs, name = []netip.Addr{a}, ""
	} else {
		// The name's rules first, before a lookup, as egress.Dialer.DialContext: a denied
		// name is never resolved.
		if allow != nil {
			if err := allow(name, netip.AddrPortFrom(netip.Addr{}, port)); err != nil {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
			}
		}
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	var last error
	for i, a := range addrs {
		ap := netip.AddrPortFrom(a.Unmap(), port)
		if allow != nil {
			if err := allow(name, ap); err != nil {
				last = err
				continue
			}
		}
		c, err := e.connect(ctx, ap, i == len(addrs)-1)
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &net.OpError{Op: "dial", Net: "tcp", Err: last}
}

// dialAddr is dial for "host:port".
func (e *Engine) dialAddr(ctx context.Context, addr string, allow func(host string, addr netip.AddrPort) error) (net.Conn, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return nil, &net.AddrError{Err: "invalid port", Addr: addr}
	}
	c, err := e.dial(ctx, host, uint16(port), allow)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// connect connects a new socket to ap. With last (no other address to try if this one fails)
// it returns while the connection is still being made: the first write waits for it, and
// fails with the connection's error (a nearby backend has often answered by the time connect
// returns, so this spares a wait and a wake-up per handshake).
func (e *Engine) connect(ctx context.Context, ap netip.AddrPort, last bool) (*bareConn, error) {
	fd, sa, err := backendSocket(ap)
	if err != nil {
		return nil, err
	}
	l := e.loops[e.next.Add(1)%uint32(len(e.loops))]
	w, err := l.watchFD(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	c := &bareConn{fd: fd, w: w, remote: net.TCPAddrFromAddrPort(ap)}
	err = syscall.Connect(fd, sa)
	for err == syscall.EINTR {
		err = syscall.Connect(fd, sa)
	}
	if (err == syscall.EINPROGRESS || err == syscall.EALREADY) && last {
		return c, nil // a write to a socket still connecting returns EAGAIN, then waits
	}
	if err == syscall.EINPROGRESS || err == syscall.EALREADY {
		// The watch was made before the connect: its end wakes the wait.
		select {
		case <-w.ch:
		case <-ctx.Done():
			c.Close()
			return nil, ctx.Err()
		}
		var v int
		if v, err = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err == nil && v != 0 {
			err = syscall.Errno(v)
		}
	}
	if err != nil {
		c.Close()
		return nil, os.NewSyscallError("connect", err)
	}
	return c, nil
}
