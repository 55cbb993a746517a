package wsproxy

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bareConn is a connection outside the runtime's poller, used only during a handshake: a
// client connection the front accepted, or a backend connection a loop dialed. Its reads
// and writes are non-blocking system calls; when the socket is not ready they wait for the
// loop watching it (a dialed backend's), or in poll(2) (the front's client, which writes
// one response and rarely waits). A session takes its descriptor (take); a goroutine-engine
// session or net/http gets a net.Conn for it (netConn).
type bareConn struct {
	mu     sync.Mutex
	fd     int
	remote *net.TCPAddr
	local  net.Addr
	rdl    time.Time
	wdl    time.Time
	w      *watch // the loop's registration, or nil
}

// take hands the descriptor over: the connection no longer closes it. A loop's watch stays:
// the session adopts it (loopSession.begin), or netConn and Close end it.
func (c *bareConn) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	fd := c.fd
	c.fd = -1
	return fd
}

// netConn moves the descriptor into a net.Conn of the runtime's poller.
func (c *bareConn) netConn() (net.Conn, error) {
	fd := c.take()
	if fd < 0 {
		return nil, net.ErrClosed
	}
	if c.w != nil {
		c.w.end(fd) // the runtime's poller watches it from now on
	}
	file := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(file)
	file.Close()
	return nc, err
}

// detach is netConn for NewSession (the goroutine engine).
func (c *bareConn) detach() (net.Conn, error) { return c.netConn() }

func (c *bareConn) Read(p []byte) (int, error) {
	return c.io(p, syscall.SYS_READ, unix.POLLIN, &c.rdl)
}

func (c *bareConn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := c.io(p[done:], syscall.SYS_WRITE, unix.POLLOUT, &c.wdl)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// io reads or writes once, waiting until the socket is ready or the deadline: for the loop
// watching it (setting a deadline wakes that wait too), else in poll(2).
func (c *bareConn) io(p []byte, call uintptr, event int16, deadline *time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		c.mu.Lock()
		fd, dl := c.fd, *deadline
		c.mu.Unlock()
		if fd < 0 {
			return 0, net.ErrClosed
		}
		n, _, errno := syscall.RawSyscall(call, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			if call == syscall.SYS_READ && n == 0 {
				return 0, io.EOF
			}
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
		default:
			name := "write"
			if call == syscall.SYS_READ {
				name = "read"
			}
			return 0, os.NewSyscallError(name, errno)
		}
		timeout := -1
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			timeout = int(left/time.Millisecond) + 1
		}
		if c.w != nil {
			c.w.wait(timeout)
			continue
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: event}}
		if _, err := unix.Poll(fds, timeout); err != nil && err != unix.EINTR {
			return 0, os.NewSyscallError("poll", err)
		}
	}
}

func (c *bareConn) Close() error {
	if fd := c.take(); fd >= 0 {
		if c.w != nil {
			c.w.end(fd)
		}
		return syscall.Close(fd)
	}
	return nil
}

func (c *bareConn) RemoteAddr() net.Addr { return c.remote }

func (c *bareConn) LocalAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.local == nil && c.fd >= 0 {
		if sa, err := syscall.Getsockname(c.fd); err == nil {
			switch a := sa.(type) {
			case *syscall.SockaddrInet4:
				c.local = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
			case *syscall.SockaddrInet6:
				c.local = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
			}
		}
	}
	if c.local == nil {
		return &net.TCPAddr{}
	}
	return c.local
}

func (c *bareConn) SetDeadline(t time.Time) error      { return c.setDeadlines(t, true, true) }
func (c *bareConn) SetReadDeadline(t time.Time) error  { return c.setDeadlines(t, true, false) }
func (c *bareConn) SetWriteDeadline(t time.Time) error { return c.setDeadlines(t, false, true) }

// setDeadlines sets the read deadline, the write deadline or both to t, and wakes a wait for
// the loop to look at it.
func (c *bareConn) setDeadlines(t time.Time, read, write bool) error {
	c.mu.Lock()
	if read {
		c.rdl = t
	}
	if write {
		c.wdl = t
	}
	c.mu.Unlock()
	if c.w != nil {
		c.w.signal()
	}
	return nil
}
