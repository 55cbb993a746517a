package wsproxy

import (
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// The backend connections of REST calls on the loops (rest_linux.go).

// connectTCP starts a non-blocking connection to ap, with the options the node's egress
// dialer sets: writes wait for it to be made.
func connectTCP(ap netip.AddrPort) (int, error) {
	fd, sa, err := backendSocket(ap)
	if err != nil {
		return -1, err
	}
	err = syscall.Connect(fd, sa)
	for err == syscall.EINTR {
		err = syscall.Connect(fd, sa)
	}
	if err != nil && err != syscall.EINPROGRESS && err != syscall.EALREADY {
		syscall.Close(fd)
		return -1, os.NewSyscallError("connect", err)
	}
	return fd, nil
}

// restBackend is a kept-alive connection to a backend, of one loop.
type restBackend struct {
	l      *loop
	fd     int
	addr   string
	call   *restCall // nil while idle
	in     []byte    // a response head being read
	out    []byte    // the request, out[off:] not yet written
	off    int
	reused bool
	idle   time.Time

	readable, blocked, paused, hup bool
}

// newBackend registers a connection (being) made to addr.
func (l *loop) newBackend(fd int, addr string) (*restBackend, error) {
	be := &restBackend{l: l, fd: fd, addr: addr}
	if err := l.register(fd, be); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return be, nil
}

func (be *restBackend) ready(events uint32) {
	if events&syscall.EPOLLOUT != 0 && be.blocked {
		be.blocked = false
		be.flush()
	}
	if be.fd < 0 {
		return
	}
	noteReadable(events, &be.readable, &be.hup)
	if be.call == nil {
		if be.readable { // an idle connection the backend closed, or spoke on unasked
			be.l.dropIdle(be)
		}
		return
	}
	if be.readable && !be.paused {
		be.call.readBackend()
	}
}

// flush writes the request.
func (be *restBackend) flush() {
	for be.off < len(be.out) {
		n, errno := loopWrite(be.fd, be.out[be.off:])
		if errno == syscall.EAGAIN {
			be.blocked = true
			return
		}
		if errno != 0 {
			if k := be.call; k != nil {
				k.backendEnded(errno)
			}
			return
		}
		be.off += n
	}
	be.out, be.off = be.out[:0], 0
	if k := be.call; k != nil && !k.got {
		if d := k.lc.ResponseHeaderTimeout; d > 0 {
			k.c.arm(d, dlBackend)
		} else {
			k.c.dl = time.Time{}
		}
	}
}

func (be *restBackend) close() {
	if be.fd < 0 {
		return
	}
	be.l.forget(be.fd)
	syscall.Close(be.fd)
	be.fd = -1
	be.call = nil
}

// takeIdle returns the most recently used idle connection to addr, or nil. Each is checked,
// even for a request that may be sent twice: bytes the backend sent after its last answer
// (a body it should not have sent, or a whole response) may wait on it unheard of (the
// loop's last read filled its buffer, or their event is still to be handled), and would be
// taken for the answer to the next request, another client's.
func (l *loop) takeIdle(addr string) *restBackend {
	conns := l.idle[addr]
	limit := time.Now().Add(-restBackendIdle)
	for len(conns) > 0 {
		be := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		conns = conns[:len(conns)-1]
		l.idle[addr] = conns
		if be.idle.Before(limit) || !peekOpen(be.fd) {
			be.close()
			continue
		}
		be.reused = true
		return be
	}
	return nil
}

// peekOpen reports whether the backend has neither closed fd nor sent on it: a peek that
// would block.
func peekOpen(fd int) bool {
	var b [1]byte
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}

// putIdle keeps be for the next call to its address, or closes it when the loop keeps
// enough of them.
func (l *loop) putIdle(be *restBackend) {
	if l.idle == nil {
		l.idle = map[string][]*restBackend{}
	}
	conns := l.idle[be.addr]
	if len(conns) >= restIdlePerAddr {
		be.close()
		return
	}
	be.idle = time.Now()
	be.paused, be.readable = false, false
	if cap(be.in) > maxIdleBuffer {
		be.in = nil // a large response head grew it
	}
	l.idle[be.addr] = append(conns, be)
	if !l.sweeping {
		l.sweeping = true
		time.AfterFunc(restBackendIdle, func() { l.post(l.sweepIdle) })
	}
}

// dropIdle closes an idle connection.
func (l *loop) dropIdle(be *restBackend) {
	conns := l.idle[be.addr]
	for i, c := range conns {
		if c == be {
			l.idle[be.addr] = append(conns[:i], conns[i+1:]...)
			conns[len(conns)-1] = nil
			break
		}
	}
	be.close()
}

// sweepIdle closes the connections idle for too long, and comes back while any are left.
func (l *loop) sweepIdle() {
	limit := time.Now().Add(-restBackendIdle)
	for addr, conns := range l.idle {
		n := 0
		for n < len(conns) && conns[n].idle.Before(limit) {
			conns[n].close()
			n++
		}
		if n == len(conns) {
			delete(l.idle, addr)
			continue
		}
		l.idle[addr] = append(conns[:0], conns[n:]...)
		clear(conns[len(conns)-n:])
	}
	l.sweeping = len(l.idle) > 0
	if l.sweeping {
		time.AfterFunc(restBackendIdle/2, func() { l.post(l.sweepIdle) })
	}
}
