package wsproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
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
// woken per frame. Each loop keeps a thread of its own.
//
// Connections must be plain TCP, or TLS over TLSListener (clients) or dialed by Dial with an
// Engine (wss backends) (looptls_linux.go); Engine.NewSession puts other sessions on the
// goroutine engine.
type Engine struct {
	loops []*loop
	next  atomic.Uint32
}

// loopBufSize is the read buffer of a loop: the most one read takes from a socket.
const loopBufSize = 64 << 10

// maxReads is how many full reads of one socket a loop makes before it reads the other
// sockets ready: a fast sender does not starve the loop's other sessions.
const maxReads = 4

// maxQueued is how many bytes may wait for a slow socket before the loop stops reading the
// side that sends them.
const maxQueued = 64 << 10

// NewEngine starts the event loops. They run for the life of the
// process and cost nothing while no session is on them.
func NewEngine(opt EngineOptions) (*Engine, error) {
	n := opt.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	e := &Engine{}
	if _, set := os.LookupEnv("GOMAXPROCS"); opt.SpareProcs && !set {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + n)
	}
	for range n {
		l, err := newLoop()
		l.noRing = opt.NoRing
		if err != nil {
			return nil, fmt.Errorf("wsproxy: event loop: %w", err)
		}
		e.loops = append(e.loops, l)
		started := make(chan struct{})
		go l.run(started)
		<-started
	}
	return e, nil
}

// loop is one event loop. Everything of its sessions is touched only by its goroutine,
// except what other goroutines hand it through post.
type loop struct {
	epfd, evfd int
	sleeping   atomic.Bool  // the loop is (about to be) waiting: post must wake it
	queued     atomic.Int32 // tasks posted and not yet taken

	mu    sync.Mutex
	tasks []func()
	spare []func()

	buf   []byte
	plain []byte   // plaintext of TLS sides
	sides []*lside // by descriptor

	// Sides to read, in order; ring batches their reads (nil: io_uring unavailable).
	ready, reading []*lside
	ring           *ring
	ringOn         atomic.Bool // ring is not nil, for other goroutines
	noRing         bool        // EngineOptions.NoRing
	batching       bool        // sends go to the ring (the arena is busy until submit)
	arena          []byte      // read buffers of a batch
	results        []int32     // of the batch's reads
	sends          []sendOp    // of the batch, by tag
	later          []*lside    // sides with bytes queued behind a batch's send
	onRecv, onSend func(data uint64, res int32)
	gen            uint32   // registrations so far, to tell a descriptor's events from a reused one's
	fronts         []*Front // the listeners this loop accepts from (front_linux.go)
	wmu            sync.Mutex
	watches        map[int]*watch // descriptors being dialed, by descriptor (dial_linux.go)
	backoff        time.Duration  // the last pause of accepting, after a failure
	fds            []fdEntry      // other descriptors, by descriptor: REST connections (rest_linux.go)
	idle           map[string][]*restBackend
	sweeping       bool   // a sweep of idle backend connections is due
	scratch        []byte // response heads being made
	dateSec        int64
	dateText       string
	events         [128]syscall.EpollEvent
	n              int // events of the last wait
	wake           [8]byte
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
	l := &loop{epfd: epfd, evfd: int(evfd), watches: map[int]*watch{}, buf: make([]byte, loopBufSize), plain: make([]byte, loopBufSize)}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.evfd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(l.evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	binary.NativeEndian.PutUint64(l.wake[:], 1) // eventfd counts in the host's byte order
	l.results = make([]int32, ringEntries)
	l.onRecv = func(data uint64, res int32) { l.results[data] = res }
	l.onSend = l.sent
	return l, nil
}

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

// call runs fn on the loop and waits for it.
func (l *loop) call(fn func()) {
	done := make(chan struct{})
	l.post(func() { fn(); close(done) })
	<-done
}

// run is the loop's goroutine. It keeps its thread: a loop with nothing to do blocks in
// epoll_wait, and the kernel wakes that thread directly when a socket is ready, as it wakes
// an nginx worker, with no hop through the runtime's poller and scheduler.
func (l *loop) run(started chan<- struct{}) {
	runtime.LockOSThread()
	// The ring is made on the loop's own thread: with IORING_SETUP_SINGLE_ISSUER only the
	// thread that made it may submit.
	if !l.noRing {
		l.ring, _ = newRing() // nil where the kernel refuses it: plain reads and writes
		l.ringOn.Store(l.ring != nil)
	}
	close(started)
	for {
		l.n = l.poll(0)
		if l.n == 0 && l.queued.Load() == 0 {
			l.sleeping.Store(true)
			if l.queued.Load() == 0 {
				l.n = l.poll(-1)
			}
			l.sleeping.Store(false)
		}
		l.handle(l.events[:l.n])
		l.runTasks()
		l.readReady()
	}
}

// poll takes the ready events, waiting up to timeout milliseconds (-1: until one comes). A
// wait is a blocking system call the runtime knows of; a poll is not.
func (l *loop) poll(timeout int) int {
	for {
		var n uintptr
		var errno syscall.Errno
		if timeout == 0 {
			n, _, errno = syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		} else {
			n, _, errno = syscall.Syscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), uintptr(timeout), 0, 0)
		}
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			panic("wsproxy: epoll_wait: " + errno.Error()) // only for a bad epfd or buffer
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
		if uint32(ev.Pad) == listenTag {
			for _, f := range l.fronts {
				if f.fd == fd {
					f.accept(l)
				}
			}
			continue
		}
		var x *lside
		if fd < len(l.sides) {
			x = l.sides[fd]
		}
		if x == nil || x.gen != uint32(ev.Pad) {
			if uint32(ev.Pad)&watchBit != 0 { // a descriptor being dialed
				l.woken(fd, uint32(ev.Pad))
			} else {
				l.dispatch(fd, uint32(ev.Pad), ev.Events)
			}
			continue // else a descriptor closed since, perhaps reused
		}
		x.s.ready(x, ev.Events)
	}
	l.readReady()
}

// schedule makes the loop read x soon.
func (l *loop) schedule(x *lside) {
	if !x.listed {
		x.listed = true
		l.ready = append(l.ready, x)
	}
}

// readReady reads the sides scheduled: through the ring when there are several, so that
// their reads take one system call and the writes they produce another.
func (l *loop) readReady() {
	for len(l.ready) > 0 {
		batch := l.ready
		l.ready, l.reading = l.reading[:0], batch
		k := 0
		for _, x := range batch {
			x.listed = false
			if !x.readable || x.paused || x.eof || x.fd < 0 {
				continue
			}
			if x.tls != nil { // decrypted as it is read: not batched
				x.s.read(x)
				x.s.step()
				continue
			}
			batch[k] = x
			k++
		}
		batch = batch[:k]
		if l.ring == nil || len(batch) < 2 {
			for _, x := range batch {
				x.s.read(x)
				x.s.step()
			}
			continue
		}
		for len(batch) > 0 && l.ring != nil {
			m := min(len(batch), batchMax)
			l.readBatch(batch[:m])
			batch = batch[m:]
		}
		for _, x := range batch { // the ring failed
			x.s.read(x)
			x.s.step()
		}
	}
}

// ringBatches counts the batches read through a ring.
var ringBatches atomic.Int64

// batchMax is the most reads one batch submits (and so the most writes: one per read).
// Smaller batches hand work to the processes on the other side sooner: on the benchmark's
// two shared cores 16 relayed more messages than 64 and than 8 (docs/performance.md).
const batchMax = 16

// arenaSize is the memory a loop reads a batch into: each read of a batch of n gets an
// n-th of it (at most loopBufSize), so a loop holds 256 KiB however many sessions it has; a
// side that fills its share is read again in the next batch.
const arenaSize = 256 << 10

// readBatch reads every side of batch with one submit, relays what came, and writes it
// with another.
func (l *loop) readBatch(batch []*lside) {
	if l.arena == nil {
		l.arena = make([]byte, arenaSize)
	}
	slot := min(arenaSize/len(batch), loopBufSize)
	for i, x := range batch {
		l.ring.queue(opRecv, x.fd, l.arena[i*slot:(i+1)*slot], uint64(i))
	}
	if err := l.ring.submit(l.onRecv); err != nil {
		l.dropRing()
		for _, x := range batch {
			x.s.read(x)
			x.s.step()
		}
		return
	}
	ringBatches.Add(1)
	l.batching = true
	for i, x := range batch {
		res := l.results[i]
		switch {
		case res == -int32(syscall.EAGAIN):
			x.readable = false
		case res <= 0:
			x.s.ended(x)
		default:
			x.heard = x.s.clock()
			if int(res) < slot && !x.hup {
				x.readable = false
			} else {
				l.schedule(x) // more may wait
			}
			x.s.consume(x, x.peer, l.arena[i*slot:i*slot+int(res)])
		}
	}
	l.batching = false
	if err := l.ring.submit(l.onSend); err != nil {
		// Not expected once reads went through: the sends are lost, so are their sessions.
		for _, op := range l.sends {
			op.x.inflight = false
			op.x.s.breakSide(op.x)
		}
		l.dropRing()
	}
	for i := range l.sends {
		l.sends[i] = sendOp{}
	}
	l.sends = l.sends[:0]
	for _, y := range l.later {
		y.later = false
		if !y.blocked && y.queued() > 0 {
			y.s.flush(y)
		}
	}
	l.later = l.later[:0]
	for _, x := range batch {
		x.s.step()
	}
}

// dropRing stops using the ring after it failed.
func (l *loop) dropRing() {
	l.ring.close()
	l.ring = nil
	l.ringOn.Store(false)
}

// sendOp is a write of a batch.
type sendOp struct {
	x *lside
	b []byte
}

// sent takes the result of a batch's write.
func (l *loop) sent(tag uint64, res int32) {
	op := l.sends[tag]
	x := op.x
	x.inflight = false
	if x.broken || x.fd < 0 {
		return // it takes nothing more
	}
	n := int(res)
	if res < 0 {
		if res != -int32(syscall.EAGAIN) {
			x.s.breakSide(x)
			return
		}
		n = 0
	}
	if n < len(op.b) {
		// The rest goes before whatever was queued behind it.
		rest := op.b[n:]
		queued := x.out[x.off:]
		out := make([]byte, 0, max(len(rest)+len(queued), 4<<10))
		x.out = append(append(out, rest...), queued...)
		x.off = 0
		x.blocked = true
		if x.queued() > maxQueued {
			x.peer.paused = true
		}
		return
	}
	if x.queued() > 0 {
		l.flushLater(x)
	}
}

// flushLater has x's queue written after the batch's sends.
func (l *loop) flushLater(x *lside) {
	if !x.later {
		x.later = true
		l.later = append(l.later, x)
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
	x.gen = l.nextGen()
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
