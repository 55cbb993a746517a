package wsproxy

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// ring is a minimal io_uring (Linux 5.6+) for the event loop: a loop submits the reads of
// every socket epoll reported ready with one system call, and the writes they produce with
// another, instead of one read(2) and one write(2) each. On this project's machines a system
// call costs more than the work of relaying a small frame on loopback (page-table isolation
// in a VM), so batching is what takes the relay below nginx's CPU per frame. Every operation
// carries MSG_DONTWAIT: it completes during the submitting call or fails with EAGAIN, never
// later, so buffers are free again when submit returns.
//
// No library: the handful of Go io_uring bindings are unmaintained or need cgo, and the
// part used here (setup, two rings, recv and send) is small.
type ring struct {
	fd      int
	sqHead  *uint32
	sqTail  *uint32
	sqMask  uint32
	sqArray []uint32
	sqes    []sqe
	cqHead  *uint32
	cqTail  *uint32
	cqMask  uint32
	cqes    []cqe
	pending uint32 // SQEs queued since the last submit
	mem     [][]byte
}

type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	_           [2]uint64
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  [10]uint32 // head tail ring_mask ring_entries flags dropped array resv1 user_addr(u64)
	cqOff                                                                  [10]uint32 // head tail ring_mask ring_entries overflow cqes flags resv1 user_addr(u64)
}

const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426

	opSend = 26
	opRecv = 27

	enterGetEvents = 1

	setupSingleIssuer = 1 << 12

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	featSingleMmap = 1 << 0
)

// ringEntries is the most operations one submit carries.
const ringEntries = 128

var errNoRing = errors.New("wsproxy: io_uring unavailable")

func newRing() (*ring, error) {
	var p uringParams
	p.flags = setupSingleIssuer
	fd, _, errno := syscall.Syscall(sysIOUringSetup, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	if errno == syscall.EINVAL {
		p = uringParams{} // a kernel before 6.0: no SINGLE_ISSUER
		fd, _, errno = syscall.Syscall(sysIOUringSetup, ringEntries, uintptr(unsafe.Pointer(&p)), 0)
	}
	if errno != 0 {
		return nil, os.NewSyscallError("io_uring_setup", errno)
	}
	r := &ring{fd: int(fd)}
	if p.features&featSingleMmap == 0 {
		r.close()
		return nil, errNoRing
	}
	sqSize := p.sqOff[6] + p.sqEntries*4
	cqSize := p.cqOff[5] + p.cqEntries*uint32(unsafe.Sizeof(cqe{}))
	size := max(sqSize, cqSize)
	rings, err := syscall.Mmap(r.fd, offSQRing, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, os.NewSyscallError("mmap", err)
	}
	r.mem = append(r.mem, rings)
	sqeMem, err := syscall.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		r.close()
		return nil, os.NewSyscallError("mmap", err)
	}
	r.mem = append(r.mem, sqeMem)
	base := unsafe.Pointer(&rings[0])
	r.sqHead = (*uint32)(unsafe.Add(base, p.sqOff[0]))
	r.sqTail = (*uint32)(unsafe.Add(base, p.sqOff[1]))
	r.sqMask = *(*uint32)(unsafe.Add(base, p.sqOff[2]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Add(base, p.sqOff[6])), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&sqeMem[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Add(base, p.cqOff[0]))
	r.cqTail = (*uint32)(unsafe.Add(base, p.cqOff[1]))
	r.cqMask = *(*uint32)(unsafe.Add(base, p.cqOff[2]))
	r.cqes = unsafe.Slice((*cqe)(unsafe.Add(base, p.cqOff[5])), p.cqEntries)
	return r, nil
}

func (r *ring) close() {
	for _, m := range r.mem {
		syscall.Munmap(m)
	}
	syscall.Close(r.fd)
}

// room reports how many more operations fit before a submit.
func (r *ring) room() int {
	return len(r.sqes) - int(r.pending)
}

// queue adds a recv or send of b on fd, tagged with data. The caller must keep b alive and
// untouched until submit returns, and must not queue more than room allows.
func (r *ring) queue(op uint8, fd int, b []byte, data uint64) {
	tail := atomic.LoadUint32(r.sqTail) + r.pending
	i := tail & r.sqMask
	e := &r.sqes[i]
	*e = sqe{opcode: op, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&b[0]))), len: uint32(len(b)),
		msgFlags: syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL, userData: data}
	r.sqArray[i] = i
	r.pending++
}

// submit hands the queued operations to the kernel and calls done with each completion
// (its tag and result: bytes, or a negated errno). Operations that could not complete at
// once failed with EAGAIN, so all have completed when it returns.
func (r *ring) submit(done func(data uint64, res int32)) error {
	n := r.pending
	if n == 0 {
		return nil
	}
	atomic.StoreUint32(r.sqTail, atomic.LoadUint32(r.sqTail)+n)
	r.pending = 0
	want := n
	for want > 0 {
		got, _, errno := syscall.RawSyscall6(sysIOUringEnter, uintptr(r.fd), uintptr(n), uintptr(want), enterGetEvents, 0, 0)
		switch errno {
		case 0:
			n -= uint32(got) // a submit may stop short: the rest go with the next call
		case syscall.EINTR:
		default:
			return os.NewSyscallError("io_uring_enter", errno)
		}
		head := atomic.LoadUint32(r.cqHead)
		tail := atomic.LoadUint32(r.cqTail)
		for ; head != tail; head++ {
			c := &r.cqes[head&r.cqMask]
			done(c.userData, c.res)
			want--
		}
		atomic.StoreUint32(r.cqHead, head)
	}
	return nil
}
