package wsproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// bufSize is the size of the buffers a session reads frames through: a frame that fits,
// header included, is relayed with one write; a larger one is streamed through the buffer.
const bufSize = 32 << 10

// bufPool holds the read buffers. A *[]byte is pooled so that Put does not allocate.
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// parkAfter is how long a side must be quiet before its relay goroutine hands the wait to
// the parker and ends (where parking is available): an idle session then holds neither a
// goroutine nor a buffer.
const parkAfter = time.Second

// errPark is reader.fill's answer when the side has been quiet for parkAfter with nothing
// buffered and the caller allowed parking.
var errPark = errors.New("wsproxy: quiet, park")

// reader reads one side's frames. Unlike a bufio.Reader it holds its buffer only while bytes
// are buffered: when a read finds nothing to read and nothing is buffered, the buffer goes
// back to bufPool before the goroutine waits. Connections that expose their descriptor
// (syscall.Conn: plain TCP) are read through it, which is what makes that possible; others
// (TLS) are read through net.Conn.Read, holding a buffer while they wait. A reader belongs to
// the one goroutine relaying from its side at a time.
type reader struct {
	conn net.Conn
	raw  syscall.RawConn // nil: read through conn.Read
	buf  *[]byte         // nil while nothing is buffered
	r, w int             // buffered bytes are (*buf)[r:w]
	err  error           // sticky: the error that ended reading
	// deadline is the read deadline set for parking, in Unix nanoseconds (0: none). It is
	// moved forward at most every parkAfter/2, so it costs nothing per frame.
	deadline   int64
	parkable   bool // the connection can be parked
	registered bool // the parker knows the descriptor (parkConn)

	// readFn is readRaw bound once, so that raw reads do not allocate; n and rerr are its
	// results.
	readFn func(fd uintptr) bool
	n      int
	rerr   error
}

// newReader reads conn, starting with early, the bytes a bufio.Reader used for the
// handshake already holds (nil: none). early is copied and may be dropped.
func newReader(conn net.Conn, early *bufio.Reader) *reader {
	rd := &reader{conn: conn}
	if sc, ok := conn.(syscall.Conn); ok && rawReads {
		if raw, err := sc.SyscallConn(); err == nil {
			rd.raw = raw
			rd.parkable = parking
			rd.readFn = rd.readRaw
		}
	}
	if early != nil {
		if n := early.Buffered(); n > 0 {
			p, _ := early.Peek(n)
			if n > bufSize {
				b := make([]byte, n) // not pooled: a bufio.Reader bigger than ours
				rd.buf = &b
			} else {
				rd.buf = bufPool.Get().(*[]byte)
			}
			rd.w = copy(*rd.buf, p)
		}
	}
	return rd
}

// buffered returns the number of bytes buffered.
func (rd *reader) buffered() int { return rd.w - rd.r }

// release returns the buffer to the pool when nothing is buffered.
func (rd *reader) release() {
	if rd.buf != nil && rd.r == rd.w {
		if cap(*rd.buf) == bufSize {
			bufPool.Put(rd.buf)
		}
		rd.buf, rd.r, rd.w = nil, 0, 0
	}
}

// peek returns the next n bytes (n ≤ bufSize) without consuming them, reading until they
// are buffered. The slice is valid until the next call.
func (rd *reader) peek(n int) ([]byte, error) {
	for rd.buffered() < n {
		if err := rd.fill(false); err != nil {
			return nil, err
		}
	}
	return (*rd.buf)[rd.r : rd.r+n], nil
}

// awaitFrame waits until at least two bytes, a frame header's first two, are buffered. It
// returns errPark instead when nothing arrives for a while and parking is possible.
func (rd *reader) awaitFrame() ([]byte, error) {
	for rd.buffered() < 2 {
		if err := rd.fill(rd.buffered() == 0); err != nil {
			return nil, err
		}
	}
	return (*rd.buf)[rd.r : rd.r+2], nil
}

// discard consumes n buffered bytes.
func (rd *reader) discard(n int) { rd.r += n }

// fill reads at least one more byte into the buffer, or fails with the error that ends
// reading, or with errPark when mayPark and the side stayed quiet for parkAfter.
func (rd *reader) fill(mayPark bool) error {
	if rd.err != nil {
		return rd.err
	}
	if rd.buf != nil && rd.r > 0 {
		rd.w = copy(*rd.buf, (*rd.buf)[rd.r:rd.w])
		rd.r = 0
	}
	if rd.raw == nil {
		if rd.buf == nil {
			rd.buf = bufPool.Get().(*[]byte)
		}
		n, err := rd.conn.Read((*rd.buf)[rd.w:])
		rd.w += n
		if n == 0 && err == nil {
			return nil // a reader returning nothing: try again
		}
		if err != nil && n == 0 {
			rd.err = err
			return err
		}
		return nil
	}
	for {
		if rd.parkable {
			rd.armDeadline()
		}
		err := rd.raw.Read(rd.readFn)
		n, rerr := rd.n, rd.rerr
		switch {
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			if mayPark && rd.buffered() == 0 {
				return errPark
			}
			rd.deadline = 0 // quiet in the middle of a frame: keep waiting
			continue
		case err != nil:
			rd.err = err
		case rerr != nil:
			rd.err = os.NewSyscallError("read", rerr)
		case n == 0:
			rd.err = io.EOF
		default:
			rd.w += n
			return nil
		}
		rd.release()
		return rd.err
	}
}

// readRaw is the function raw reads run: one read(2) into the buffer, taken from the pool if
// need be. When there is nothing to read it gives the buffer back, if nothing is buffered,
// and asks to wait.
func (rd *reader) readRaw(fd uintptr) bool {
	if rd.buf == nil {
		rd.buf = bufPool.Get().(*[]byte)
	}
	for {
		rd.n, rd.rerr = sysRead(fd, (*rd.buf)[rd.w:])
		if rd.rerr != syscall.EINTR {
			break
		}
	}
	if rd.rerr == syscall.EAGAIN {
		rd.release()
		return false
	}
	return true
}

// armDeadline keeps the read deadline between parkAfter/2 and parkAfter away.
func (rd *reader) armDeadline() {
	now := time.Now().UnixNano()
	if rd.deadline-now >= int64(parkAfter/2) {
		return
	}
	rd.deadline = now + int64(parkAfter)
	if err := rd.conn.SetReadDeadline(time.Unix(0, rd.deadline)); err != nil {
		rd.parkable = false
	}
}

// drain reads and drops everything until reading fails, and returns that error.
func (rd *reader) drain() error {
	for {
		rd.r = rd.w
		if err := rd.fill(false); err != nil {
			return err
		}
	}
}
