package wsproxy

import (
	"os"
	"sync"
	"syscall"
)

// parking reports whether quiet connections can be parked on this system.
const parking = true

// parker waits for quiet connections to become readable, so that they need no goroutine of
// their own meanwhile. It is one epoll set for the whole process, like the runtime's own
// poller: an epoll set is a kernel resource and one serves every session. The set itself is
// waited for through the runtime's poller (an epoll descriptor is readable while it has
// events), so a wakeup costs what a goroutine's wakeup on a socket costs, not a thread's.
//
// Descriptors are registered one-shot: once one fires it stays in the set, disabled, until
// it is parked again (EPOLL_CTL_MOD) or closed, which removes it. So neither a wakeup nor a
// cancellation costs a system call.
type parker struct {
	once sync.Once
	epfd int
	file *os.File // keeps epfd open and in the runtime's poller; nil: parking unavailable

	mu      sync.Mutex
	err     error // the loop has stopped: park no more
	next    uint32
	waiting map[uint32]func()
}

var thePark parker

// parkConn waits for raw's descriptor to become readable (data, end of stream, or an error)
// and then runs resume on a new goroutine. registered says whether the descriptor was parked
// before (it is then still in the set); parkConn sets it. It returns a token for unpark, and
// false if the descriptor cannot be watched.
func parkConn(raw syscall.RawConn, registered *bool, resume func()) (uint64, bool) {
	p := &thePark
	p.once.Do(p.start)
	if p.file == nil {
		return 0, false
	}
	fd := -1
	if err := raw.Control(func(s uintptr) { fd = int(s) }); err != nil || fd < 0 {
		return 0, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return 0, false
	}
	token := p.next
	for _, used := p.waiting[token]; used; _, used = p.waiting[token] {
		token++
	}
	p.next = token + 1
	p.waiting[token] = resume
	// Level-triggered and one-shot: bytes that arrived before this call wake it at once.
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(token)}
	var err error = syscall.ENOENT
	if *registered {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, fd, &ev)
	}
	if err == syscall.ENOENT {
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		delete(p.waiting, token)
		return 0, false
	}
	*registered = true
	return uint64(token), true
}

// unpark forgets a parked descriptor, whose connection is about to be closed (which takes it
// out of the set). It reports false when the descriptor has already woken: its resume runs
// or has run.
func unpark(token uint64) bool {
	p := &thePark
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.waiting[uint32(token)]
	delete(p.waiting, uint32(token))
	return ok
}

func (p *parker) start() {
	var err error
	if p.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return
	}
	if err := syscall.SetNonblock(p.epfd, true); err != nil {
		syscall.Close(p.epfd)
		return
	}
	file := os.NewFile(uintptr(p.epfd), "wsproxy-parker")
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return
	}
	p.waiting = map[uint32]func(){}
	p.file = file
	go p.loop(raw)
}

// loop hands woken descriptors back to their sessions for the life of the process.
func (p *parker) loop(raw syscall.RawConn) {
	events := make([]syscall.EpollEvent, 256)
	var n int
	wait := func(fd uintptr) bool {
		for {
			var err error
			n, err = syscall.EpollWait(int(fd), events, 0)
			if err != syscall.EINTR {
				return n > 0
			}
		}
	}
	for {
		if err := raw.Read(wait); err != nil {
			// Not expected: the file is never closed. Hand every parked descriptor back, so
			// that its relay waits for it itself, and park no more.
			p.mu.Lock()
			p.err = err
			for token, resume := range p.waiting {
				delete(p.waiting, token)
				go resume()
			}
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			token := uint32(ev.Fd)
			if resume, ok := p.waiting[token]; ok {
				delete(p.waiting, token)
				go resume()
			}
		}
		p.mu.Unlock()
	}
}
