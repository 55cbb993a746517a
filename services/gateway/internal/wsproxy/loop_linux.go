package wsproxy

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Engine runs sessions on event loops: a few goroutines (one per core by default), each
// owning an epoll set and every socket of the sessions it was given. A loop reads a socket
// when epoll says it became readable (edge-triggered: a read that returns less than the
// buffer means the socket is drained, so no read is made only to learn EAGAIN), parses frame
// headers as it relays the bytes, and writes them at once to the other socket; what a
// socket does not take waits in that side's queue, and while a queue is over
// maxQueued the loop stops reading the side that fills it (back-pressure). One read buffer
// serves every session of a loop, so a session holds no buffer unless its peer is slow.
// Reads, writes and the epoll wait of a busy loop are raw system calls: no goroutine is
// woken per frame. A loop with nothing to do waits through the runtime's poller, holding
// no thread.
//
// Only plain TCP connections can run on it; Engine.NewSession puts others (TLS) on the
// goroutine engine.
type Engine struct {
	loops []*loop
	next  atomic.Uint32
}

// loopBufSize is the read buffer of a loop: the most one read takes from a socket.
const loopBufSize = 64 << 10

// maxQueued is how many bytes may wait for a slow socket before the loop stops reading the
// side that sends them.
const maxQueued = 64 << 10

// NewEngine starts n event loops (n ≤ 0: one per GOMAXPROCS). They run for the life of the
// process and cost nothing while no session is on them.
func NewEngine(n int) (*Engine, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	e := &Engine{}
	for range n {
		l, err := newLoop()
		if err != nil {
			return nil, fmt.Errorf("wsproxy: event loop: %w", err)
		}
		e.loops = append(e.loops, l)
		go l.run()
	}
	return e, nil
}

// Loops reports how many event loops the engine runs.
func (e *Engine) Loops() int { return len(e.loops) }

// loop is one event loop. Everything of its sessions is touched only by its goroutine,
// except what other goroutines hand it through post.
type loop struct {
	epfd, evfd int
	raw        syscall.RawConn // epfd, waited for through the runtime's poller
	sleeping   atomic.Bool     // the loop is (about to be) waiting: post must wake it
	queued     atomic.Int32    // tasks posted and not yet taken

	mu    sync.Mutex
	tasks []func()
	spare []func()

	buf    []byte
	sides  []*lside // by descriptor
	gen    uint32   // registrations so far, to tell a descriptor's events from a reused one's
	events [128]syscall.EpollEvent
	n      int // events of the last wait
	waitFn func(fd uintptr) bool
	wake   [8]byte
}

func newLoop() (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("eventfd2", errno)
	}
	l := &loop{epfd: epfd, evfd: int(evfd), buf: make([]byte, loopBufSize)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.evfd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(l.evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	file := os.NewFile(uintptr(epfd), "wsproxy-loop")
	if l.raw, err = file.SyscallConn(); err != nil {
		return nil, err
	}
	l.waitFn = func(uintptr) bool {
		l.n = l.poll()
		return l.n > 0
	}
	binaryOne(&l.wake)
	return l, nil
}

// binaryOne stores 1 in the host's byte order, as eventfd expects.
func binaryOne(b *[8]byte) { *(*uint64)(unsafe.Pointer(b)) = 1 }

// post runs fn on the loop soon. Any goroutine may call it.
func (l *loop) post(fn func()) {
	l.mu.Lock()
	l.tasks = append(l.tasks, fn)
	l.mu.Unlock()
	l.queued.Add(1)
	if l.sleeping.Load() {
		syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.evfd), uintptr(unsafe.Pointer(&l.wake[0])), 8)
	}
}

// run is the loop's goroutine.
func (l *loop) run() {
	for {
		l.sleeping.Store(true)
		if l.queued.Load() == 0 {
			// Poll at once, and wait through the runtime's poller if nothing is ready.
			if err := l.raw.Read(l.waitFn); err != nil {
				panic("wsproxy: event loop: " + err.Error()) // epfd is never closed
			}
		} else {
			l.n = l.poll()
		}
		l.sleeping.Store(false)
		l.handle(l.events[:l.n])
		l.runTasks()
	}
}

// poll takes the ready events without waiting.
func (l *loop) poll() int {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
			uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			panic("wsproxy: epoll_wait: " + errno.Error())
		}
		return int(n)
	}
}

func (l *loop) handle(events []syscall.EpollEvent) {
	for i := range events {
		ev := &events[i]
		fd := int(ev.Fd)
		if fd == l.evfd {
			var b [8]byte
			syscall.RawSyscall(syscall.SYS_READ, uintptr(l.evfd), uintptr(unsafe.Pointer(&b[0])), 8)
			continue
		}
		if fd >= len(l.sides) {
			continue
		}
		x := l.sides[fd]
		if x == nil || x.gen != uint32(ev.Pad) {
			continue // a descriptor closed since, perhaps reused
		}
		x.s.ready(x, ev.Events)
	}
}

func (l *loop) runTasks() {
	if l.queued.Load() == 0 {
		return
	}
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = l.spare[:0]
	l.queued.Store(0)
	l.mu.Unlock()
	for i, fn := range tasks {
		fn()
		tasks[i] = nil
	}
	l.spare = tasks
}

// add registers x's descriptor.
func (l *loop) add(x *lside) error {
	l.gen++
	x.gen = l.gen
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | syscall.EPOLLET&0xFFFFFFFF,
		Fd:     int32(x.fd),
		Pad:    int32(x.gen),
	}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, x.fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	for x.fd >= len(l.sides) {
		l.sides = append(l.sides, make([]*lside, max(64, len(l.sides)))...)
	}
	l.sides[x.fd] = x
	return nil
}

// remove forgets x's descriptor and closes it (which takes it out of the epoll set).
func (l *loop) remove(x *lside) {
	if x.fd < 0 {
		return
	}
	if x.fd < len(l.sides) && l.sides[x.fd] == x {
		l.sides[x.fd] = nil
	}
	syscall.Close(x.fd)
	x.fd = -1
}

// takeFD moves a connection's socket out of the runtime's poller: it duplicates the
// descriptor (the copy shares the socket, non-blocking) and closes the connection, which
// takes the original out of the runtime's epoll set. It fails for connections without a
// descriptor (TLS, pipes).
func takeFD(c any) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errNoFD
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) {
		fd, derr = dupCloexec(int(s))
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	return fd, nil
}

var errNoFD = errors.New("wsproxy: connection has no descriptor")

func dupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, os.NewSyscallError("fcntl", errno)
	}
	return int(r), nil
}

// sysRead and sysWrite are read(2) and write(2) on non-blocking sockets: they never block, so
// they skip the runtime's system call bookkeeping.
func loopRead(fd int, p []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}

func loopWrite(fd int, p []byte) (int, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(n), errno
		}
	}
}
