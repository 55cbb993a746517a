package wsproxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// loopSession is a session of the event-loop engine. All of its state but the counters and
// the recorded close belongs to its loop's goroutine: other goroutines reach it only through
// loop.post (Close, timers, ctx). Its behaviour is goSession's, frame for frame (the tests of
// this package run on both engines).
type loopSession struct {
	loop   *loop
	sides  [2]lside
	limits Limits
	hooks  Hooks
	start  time.Time
	rsv    uint8 // as goSession.rsv

	messages [2]atomic.Int64 // by Direction
	bytes    [2]atomic.Int64

	mu     sync.Mutex
	closed Stats // only CloseCode, ClosedBy, Reason; the first close wins

	// The loop's.
	ctx                              context.Context
	done                             func(Stats)
	started, finished                bool
	stopping, graceOver              bool
	activity                         int64 // clock of the last endpoint frame
	inject                           [2]injection
	idleTimer, pingTimer, graceTimer *time.Timer
	stopCtx                          func() bool
}

// lside is one connection of a loop session.
type lside struct {
	s          *loopSession
	peer       *lside
	fd         int
	gen        uint32
	name       string
	fromClient bool          // frames from this side are masked; frames to it are not
	dir        Direction     // of the frames read from this side
	early      []byte        // bytes read during the handshake, relayed before any other
	tls        *tls.Conn     // the side speaks TLS, decrypted and encrypted on the loop; or nil
	tr         *tlsTransport // under tls
	ping       []byte        // the keepalive ping frame for this side, when pings are on
	watched    *watch        // the loop registered the descriptor when it dialed it: begin adopts it

	readable bool // epoll said readable and the socket may not be drained yet
	listed   bool // in the loop's list of sides to read
	inflight bool // a write of the loop's batch is on its way to this side
	later    bool // in the loop's list of queues to write after the batch
	blocked  bool // the socket refused bytes: the queue waits for EPOLLOUT
	paused   bool // not read while the peer's queue is full, or its own (answered)
	answered bool // a TLS side paused while its own queue is full of crypto/tls's answers
	eof      bool // reading has ended
	draining bool // what is read is dropped (after a protocol error)
	hup      bool // epoll reported the peer's end or an error: read on to it, a short read is no edge

	closeRecv, closeSent, broken, failed bool

	// The frame being read: pend holds its first bytes while they arrive over several reads
	// (a header, or a whole control frame, whose payload is at most 125 bytes); left and pos
	// are the payload bytes still to come and already come.
	pend      [frame.MaxHeaderLen + frame.MaxControlPayload]byte
	pn        int
	inFrame   bool
	h         frame.Header
	left, pos int64
	fwd       bool // the frame is relayed
	check     bool // its payload is checked as UTF-8
	written   bool // part of it has been written to the peer: it can no longer be withheld
	held      int  // its header, in pend, waits for the first checked payload bytes
	holding   bool // it is checked and small: it is in hold until it has come whole
	hold      []byte

	message // the message being read

	// Writing to this side: out[off:] waits for the socket; midFrame says a relayed frame
	// to this side is unfinished, so nothing may be injected yet.
	out      []byte
	off      int
	midFrame bool
	pinging  bool // a keepalive ping waits to be written

	heard, pingAt int64 // as side's, in clock values
}

// writable reports whether a frame may start toward x now.
func (x *lside) writable() bool {
	return !x.closeSent && !x.broken && !x.eof && !x.s.stopping
}

// queued returns the bytes waiting for x's socket.
func (x *lside) queued() int { return len(x.out) - x.off }

// newLoopSession takes both connections' descriptors, or returns nil (leaving them alone)
// when either has none.
func (e *Engine) newLoopSession(client net.Conn, clientReader *bufio.Reader, be *Backend, limits Limits, hooks Hooks) *loopSession {
	ctls, ctr := loopTLS(client)
	fc, front := client.(*bareConn)
	if _, ok := client.(syscall.Conn); !ok && ctls == nil && !front {
		return nil
	}
	// A backend a loop dialed is already registered there (bare): the session adopts it. A
	// wss backend's TLS moves onto the loop as a TLS client's does.
	bc, bare := be.Conn.(*bareConn)
	btls, btr := loopTLS(be.Conn)
	bfd, err := -1, error(nil)
	switch {
	case bare:
	case btls != nil:
		// Its TCP connection stays whole until the client's is taken too: the goroutine
		// engine gets both back if that fails.
		if bfd, err = takeFD(btr.TCPConn); err != nil {
			return nil
		}
	default:
		if _, ok := be.Conn.(syscall.Conn); !ok {
			return nil
		}
		if bfd, err = takeFD(be.Conn); err != nil {
			return nil
		}
	}
	var cfd int
	switch {
	case front: // never in the runtime's poller: nothing to undo
		if cfd = fc.take(); cfd < 0 {
			err = net.ErrClosed
		}
	case ctls != nil:
		cfd, err = takeTLS(ctr)
	default:
		cfd, err = takeFD(client)
	}
	if err != nil {
		if !bare {
			syscall.Close(bfd)
		}
		return nil
	}
	if limits.CloseTimeout <= 0 {
		limits.CloseTimeout = DefaultCloseTimeout
	}
	s := &loopSession{limits: limits, hooks: hooks, start: time.Now()}
	var watched *watch
	if bare {
		watched = bc.w
		if bfd = bc.take(); bfd < 0 {
			syscall.Close(cfd)
			return nil
		}
	}
	if watched != nil {
		s.loop = watched.l
	} else {
		s.loop = e.loops[e.next.Add(1)%uint32(len(e.loops))]
	}
	if be.Response != nil && NegotiatedDeflate(be.Response.Header) {
		s.rsv = frame.Rsv1
	}
	c, b := &s.sides[clientSide], &s.sides[backendSide]
	*c = lside{s: s, peer: b, fd: cfd, name: ByClient, fromClient: true, dir: FromClient, early: buffered(clientReader), tls: ctls, tr: ctr}
	*b = lside{s: s, peer: c, fd: bfd, name: ByBackend, dir: FromBackend, early: buffered(be.Reader), watched: watched, tls: btls, tr: btr}
	if limits.PingInterval > 0 {
		c.ping, _ = frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPing}, []byte(keepalivePayload))
		var key [4]byte
		rand.Read(key[:])
		b.ping, _ = frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPing, Masked: true, Mask: key}, []byte(keepalivePayload))
	}
	// The descriptors are ours now; the connections' own go, and with them their place in
	// the runtime's poller.
	if ctls == nil && !front {
		client.Close()
	}
	switch {
	case btls != nil:
		btr.looped = true
		btr.TCPConn.Close()
	case !bare:
		be.Conn.Close()
	}
	return s
}

// buffered copies what br holds.
func buffered(br *bufio.Reader) []byte {
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	p, _ := br.Peek(br.Buffered())
	return append([]byte(nil), p...)
}

func (s *loopSession) clock() int64 { return int64(time.Since(s.start)) }

// Start is Session.Start.
func (s *loopSession) Start(ctx context.Context, done func(Stats)) {
	s.ctx, s.done = ctx, done
	s.loop.post(s.begin)
}

// Close is Session.Close.
func (s *loopSession) Close(code uint16, reason string) {
	if !frame.SendableCloseCode(code) {
		code = frame.CloseGoingAway
	}
	s.loop.post(func() { s.closeNow(code, reason) })
}

func (s *loopSession) closeNow(code uint16, reason string) {
	s.stop(ByGateway, code, reason, [2]uint16{code, code}, [2]string{reason, reason})
	s.step()
}

// Stats is Session.Stats.
func (s *loopSession) Stats() Stats {
	s.mu.Lock()
	st := s.closed
	s.mu.Unlock()
	st.MessagesIn = s.messages[FromClient].Load()
	st.MessagesOut = s.messages[FromBackend].Load()
	st.BytesIn = s.bytes[FromClient].Load()
	st.BytesOut = s.bytes[FromBackend].Load()
	return st
}

// begin starts the session on its loop.
func (s *loopSession) begin() {
	if s.limits.IdleTimeout > 0 {
		s.idleTimer = time.AfterFunc(s.limits.IdleTimeout, func() { s.loop.post(s.idleTick) })
	}
	if s.limits.PingInterval > 0 {
		s.pingTimer = time.AfterFunc(s.limits.PingInterval, func() { s.loop.post(s.pingTick) })
	}
	if s.ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(s.ctx, func() { s.Close(frame.CloseGoingAway, "going away") })
	}
	s.started = true
	for i := range s.sides {
		x := &s.sides[i]
		if x.watched != nil {
			s.loop.adopt(x, x.watched)
			x.watched = nil
			continue
		}
		if err := s.loop.add(x); err != nil {
			// Not expected (the set has room for any descriptor): treat it as a lost connection.
			x.eof = true
			s.loop.remove(x)
		}
	}
	for i := range s.sides {
		if x := &s.sides[i]; x.early != nil && !x.eof {
			x.heard = s.clock()
			early := x.early
			x.early = nil
			s.consume(x, x.peer, early)
		}
		if x := &s.sides[i]; x.tls != nil && !x.eof {
			s.decrypt(x) // records crypto/tls read ahead during the handshake
		}
	}
	s.step()
}

// ready handles epoll's events for x.
func (s *loopSession) ready(x *lside, events uint32) {
	if events&syscall.EPOLLOUT != 0 {
		s.flush(x)
	}
	if events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		// The end came with (or after) the last bytes: no edge will follow the read that
		// drains them, so reading goes on until it returns the end.
		x.hup = true
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		x.readable = true
		s.loop.schedule(x)
	}
	s.step()
}

// read relays what x has to read, until its socket is drained, reading it ends, or the
// peer's queue is full.
func (s *loopSession) read(x *lside) {
	if x.fd < 0 {
		return
	}
	buf := s.loop.buf
	for reads := 0; x.readable && !x.paused && !x.eof; reads++ {
		if reads == maxReads {
			s.loop.schedule(x) // the others' turn first
			break
		}
		n, errno := loopRead(x.fd, buf)
		if errno == syscall.EAGAIN {
			x.readable = false
			break
		}
		if errno != 0 || n == 0 {
			s.ended(x)
			break
		}
		x.heard = s.clock()
		if n < len(buf) && !x.hup {
			x.readable = false // drained: epoll tells when more comes
		}
		if x.tls != nil {
			s.relayTLS(x, buf[:n])
		} else {
			s.consume(x, x.peer, buf[:n])
		}
	}
}

// ended records that reading x has ended.
func (s *loopSession) ended(x *lside) {
	x.eof = true
	x.readable = false
	x.holding, x.hold = false, nil // nothing of a held frame went out
	if x.inFrame && x.fwd {
		if x.written {
			s.breakSide(x.peer) // it holds part of a frame
		} else {
			x.peer.midFrame, x.held = false, 0 // the header held back is dropped: nothing of the frame went out
		}
	}
}

// consume relays the bytes p just read from x to y, frame by frame: header checks, limits,
// counting, as goSession.pump. Bytes to relay are written in as few calls as possible: runs
// of whole frames go out together.
func (s *loopSession) consume(x, y *lside, p []byte) {
	if x.draining {
		return // x broke the protocol: what it sends is dropped
	}
	run := 0 // p[run:i] are to be relayed
	fs := -1 // where the current frame starts in p, if it does
	now := int64(-1)
	i := 0
	for i < len(p) && !x.draining {
		if x.inFrame {
			// Payload of a data frame: activity, as each read of a large frame is to goSession.
			if now < 0 {
				now = s.clock()
			}
			s.activity = now
			k := int(min(int64(len(p)-i), x.left))
			if x.holding {
				// A checked frame that fits holdMax is relayed whole once it has come.
				x.hold = append(x.hold, p[i:i+k]...)
				s.send(y, p[run:i])
				i += k
				run = i
				x.left -= int64(k)
				if x.left == 0 {
					if !s.releaseHeld(x, y) {
						return
					}
					fs = -1
				}
				continue
			}
			if x.check && !checkText(&x.utf8, x.h, int(x.pos), p[i:i+k], x.h.Fin && int64(k) == x.left) {
				if x.written {
					// y holds part of the frame: it can only be cut off.
					s.fail(x, frame.CloseInvalidPayload, errInvalidUTF8Cut)
					s.breakSide(y)
					x.draining = true
					return
				}
				s.send(y, p[run:max(fs, run)]) // the frames before this one
				s.fail(x, frame.CloseInvalidPayload, errInvalidUTF8)
				x.draining, x.inFrame, x.held = true, false, 0
				y.midFrame = false
				return
			}
			if x.held > 0 && x.fwd {
				s.send(y, p[run:i])
				s.sendCopy(y, x.pend[:x.held])
				x.held, x.written, run = 0, true, i
			}
			if !x.fwd {
				s.send(y, p[run:i])
				run = i + k
			}
			i += k
			x.left -= int64(k)
			x.pos += int64(k)
			if x.left == 0 {
				s.frameDone(x, y)
				fs = -1
			}
			continue
		}
		// The start of a frame: its header and, for a control frame, its payload too.
		start := i
		var head []byte // the frame's first bytes: header (and control payload)
		inP := false
		if x.pn == 0 && len(p)-i >= 2 {
			if need := frameHead(p[i], p[i+1]); len(p)-i >= need {
				head, inP = p[i:i+need], true
				i += need
			}
		}
		if head == nil {
			for i < len(p) {
				need := 2
				if x.pn >= 2 {
					need = frameHead(x.pend[0], x.pend[1])
				}
				if x.pn >= need {
					break
				}
				x.pend[x.pn] = p[i]
				x.pn++
				i++
			}
			if x.pn < 2 || x.pn < frameHead(x.pend[0], x.pend[1]) {
				// The frame's start is incomplete: keep it for the next read.
				if run < start {
					s.send(y, p[run:start])
				}
				run = len(p)
				break
			}
			head = x.pend[:x.pn]
			x.pn = 0
		}
		if now < 0 {
			now = s.clock()
		}
		h, hl, err := parseHeader(head, x.fromClient, x.inMessage, s.rsv)
		if err != nil {
			if run < start {
				s.send(y, p[run:start])
			}
			s.fail(x, frame.CloseProtocolError, err)
			x.draining = true
			return
		}
		fwd := true
		if h.Opcode.Control() {
			payload := head[hl:]
			switch h.Opcode {
			case frame.OpPong:
				if s.limits.PingInterval > 0 && isKeepalive(h, payload) {
					fwd = false
				}
			case frame.OpClose:
				if err := s.closeFrom(x, h, payload); err != nil {
					if run < start {
						s.send(y, p[run:start])
					}
					s.fail(x, frame.CloseProtocolError, err)
					x.draining = true
					return
				}
			}
			if fwd || h.Opcode != frame.OpPong {
				s.activity = now
			}
			fwd = fwd && y.writable()
			if fwd && h.Opcode == frame.OpClose {
				y.closeSent = true
			}
			switch {
			case !fwd:
				s.send(y, p[run:start])
				run = i
			case !inP:
				s.send(y, p[run:start])
				s.sendCopy(y, head)
				run = i
			}
			continue
		}
		// A data frame.
		s.activity = now
		if code, reason := x.startFrame(h, &s.limits, &s.hooks, x.dir); code != 0 {
			if !frame.SendableCloseCode(code) {
				code = frame.CloseGoingAway
			}
			s.stop(ByGateway, code, reason, [2]uint16{code, code}, [2]string{reason, reason})
		}
		x.h, x.left, x.pos, x.inFrame, x.written, x.held = h, h.Length, 0, true, false, 0
		x.fwd = !x.dropping && y.writable()
		x.check = x.text && !x.dropping
		if x.check && h.Length == 0 && !checkText(&x.utf8, h, 0, nil, h.Fin) {
			s.send(y, p[run:start])
			s.fail(x, frame.CloseInvalidPayload, errInvalidUTF8)
			x.draining, x.inFrame = true, false
			return
		}
		switch {
		case !x.fwd:
			s.send(y, p[run:start])
			run = i
		case x.check && x.left > 0 && int64(hl)+x.left <= holdMax && (!inP || int64(len(p)-i) < x.left):
			// A checked text frame that does not come whole in this read: held until it
			// has, so that text found invalid is never partly relayed.
			s.send(y, p[run:start])
			run, fs = i, -1
			x.holding = true
			x.hold = append(x.hold[:0], head[:hl]...)
			continue
		case !inP:
			// The header came over several reads. A payload still to be checked may yet
			// be refused while nothing of the frame is written: hold the header until
			// the first payload bytes pass.
			s.send(y, p[run:start])
			run, fs = i, -1
			if x.check && x.left > 0 {
				x.held = copy(x.pend[:], head)
			} else {
				s.sendCopy(y, head)
				x.written = true
			}
		default:
			fs = start
		}
		if x.fwd {
			y.midFrame = true
		}
		if x.left == 0 {
			s.frameDone(x, y)
			fs = -1
		}
	}
	if run < len(p) {
		s.send(y, p[run:])
	}
	if x.inFrame && x.fwd && x.held == 0 && !x.holding {
		x.written = true
	}
}

// holdMax is the largest checked text frame, header included, that is held until whole
// rather than streamed, as goSession relays frames that fit its buffer.
const holdMax = 32 << 10

// releaseHeld checks the held frame x has now read whole and relays it, or fails x when it
// is not UTF-8; it reports whether x may go on.
func (s *loopSession) releaseHeld(x, y *lside) bool {
	x.holding = false
	hl := len(x.hold) - int(x.h.Length)
	if !checkText(&x.utf8, x.h, 0, x.hold[hl:], x.h.Fin) {
		s.fail(x, frame.CloseInvalidPayload, errInvalidUTF8)
		x.draining, x.inFrame = true, false
		x.hold = x.hold[:0]
		return false
	}
	if x.fwd = y.writable(); x.fwd {
		s.sendCopy(y, x.hold)
	}
	x.hold = x.hold[:0]
	s.frameDone(x, y)
	return true
}

// frameHead returns how many bytes of a frame starting with b0, b1 must be seen before it is
// handled: its header, and for a control frame its payload (at most 125 bytes; a longer
// length is refused by frame.Parse).
func frameHead(b0, b1 byte) int {
	n := frame.HeaderLen(b0, b1)
	if frame.Opcode(b0&0xF).Control() && b1&0x7F <= frame.MaxControlPayload {
		n += int(b1 & 0x7F)
	}
	return n
}

// frameDone ends the data frame read from x.
func (s *loopSession) frameDone(x, y *lside) {
	x.inFrame = false
	if x.fwd {
		y.midFrame = false
		if !y.broken {
			s.bytes[x.dir].Add(x.h.Length)
			if x.h.Fin {
				s.messages[x.dir].Add(1)
			}
		}
	}
}

// send writes b to x after whatever is queued for it, and queues what the socket does not
// take. A side that broke takes nothing. During a batch b goes to the ring, or, behind
// another write of the batch to x, to x's queue.
func (s *loopSession) send(x *lside, b []byte) {
	if len(b) == 0 || x.broken || x.fd < 0 {
		return
	}
	if x.tls != nil {
		s.sendPlain(x, s.encrypt(x, b), false)
		x.tr.sent()
		return
	}
	s.sendPlain(x, b, true)
}

// sendPlain is send of bytes that go on the wire as they are. stable says b stays untouched
// until a batch is submitted (it is in the loop's arena), so a batch may write it in place.
func (s *loopSession) sendPlain(x *lside, b []byte, stable bool) {
	if len(b) == 0 || x.broken || x.fd < 0 {
		return
	}
	l := s.loop
	if l.batching && stable && !x.inflight && x.queued() == 0 && l.ring.room() > 0 {
		x.inflight = true
		l.sends = append(l.sends, sendOp{x: x, b: b})
		l.ring.queue(opSend, x.fd, b, uint64(len(l.sends)-1))
		return
	}
	if l.batching || x.queued() > 0 {
		s.enqueue(x, b)
		return
	}
	n, errno := loopWrite(x.fd, b)
	switch {
	case errno == syscall.EAGAIN:
		n = 0
	case errno != 0:
		s.breakSide(x)
		return
	}
	if n < len(b) {
		x.blocked = true
		s.enqueue(x, b[n:])
	}
}

// sendCopy is send for bytes that may change before a batch is submitted (x.pend): during
// a batch they are queued.
func (s *loopSession) sendCopy(x *lside, b []byte) {
	if x.tls != nil {
		s.send(x, b)
		return
	}
	s.sendPlain(x, b, false)
}

// enqueue adds b to x's queue; a queue over maxQueued stops the reading of x's peer.
func (s *loopSession) enqueue(x *lside, b []byte) {
	if x.out == nil {
		x.out = make([]byte, 0, max(len(b), 4<<10))
	}
	x.out = append(x.out, b...)
	if x.queued() > maxQueued {
		x.peer.paused = true
	}
	if s.loop.batching && !x.blocked {
		s.loop.flushLater(x)
	}
}

// flush writes what waits for x, now that its socket may have room, and resumes reading
// the peer once the queue is short again.
func (s *loopSession) flush(x *lside) {
	if x.inflight {
		return // the batch's send completes first
	}
	for x.queued() > 0 && !x.broken && x.fd >= 0 {
		n, errno := loopWrite(x.fd, x.out[x.off:])
		if errno == syscall.EAGAIN {
			x.blocked = true
			break
		}
		if errno != 0 {
			s.breakSide(x)
			return
		}
		x.off += n
	}
	if x.queued() == 0 {
		x.out, x.off, x.blocked = nil, 0, false
	}
	s.resume(x.peer)
	s.resume(x)
}

// resume reads x again, if it is paused, once the queue its reading fills is short: the
// peer's, or its own while crypto/tls's answers to it wait there (answered).
func (s *loopSession) resume(x *lside) {
	if x.paused && x.peer.queued() <= maxQueued/2 && (!x.answered || x.queued() <= maxQueued/2) {
		x.paused, x.answered = false, false
		s.loop.schedule(x)
	}
}

// breakSide records that x takes no more bytes: a write failed, or a frame to it was cut.
func (s *loopSession) breakSide(x *lside) {
	x.broken, x.midFrame = true, false
	x.out, x.off = nil, 0
	s.resume(x.peer)
	s.resume(x)
}

// closeFrom records a close frame from x, or returns why it may not be relayed.
func (s *loopSession) closeFrom(x *lside, h frame.Header, payload []byte) error {
	code, reason, err := parseClose(h, payload)
	if err != nil {
		return err
	}
	x.closeRecv = true
	s.record(x.name, code, reason)
	return nil
}

func (s *loopSession) record(by string, code uint16, reason string) {
	s.mu.Lock()
	if s.closed.ClosedBy == "" {
		s.closed = Stats{ClosedBy: by, CloseCode: code, Reason: reason}
	}
	s.mu.Unlock()
}

// stop records the close and, the first time, stops relaying and queues a close frame for
// each side.
func (s *loopSession) stop(by string, code uint16, reason string, codes [2]uint16, reasons [2]string) {
	s.record(by, code, reason)
	if s.finished || s.stopping {
		return
	}
	s.stopping = true
	for i := range s.inject {
		s.inject[i] = injection{pending: true, code: codes[i], reason: reasons[i]}
	}
}

// fail is goSession.fail: x broke the protocol.
func (s *loopSession) fail(x *lside, code uint16, err error) {
	x.failed = true
	codes, reasons, reason := failure(x.fromClient, x.name, code, err)
	s.stop(ByGateway, code, reason, codes, reasons)
}

// step is goSession.stepLocked and react: it answers a side that vanished, writes queued
// close frames and pings, and tears the session down once it is over.
func (s *loopSession) step() {
	if !s.started || s.finished {
		return
	}
	for _, brokenToo := range [2]bool{false, true} {
		for i := range s.sides {
			x := &s.sides[i]
			if gone := x.eof || brokenToo && x.broken; gone && !x.closeRecv {
				s.record(x.name, frame.CloseAbnormal, "connection closed without a close frame")
				s.stop(ByGateway, 0, "", [2]uint16{frame.CloseGoingAway, frame.CloseGoingAway}, [2]string{"going away", "going away"})
			}
		}
	}
	settled := true
	for i := range s.sides {
		x := &s.sides[i]
		if inj := &s.inject[i]; inj.pending && !x.midFrame {
			inj.pending = false
			if !x.closeSent && !x.broken && !x.eof {
				var mask *[4]byte
				if !x.fromClient {
					mask = new([4]byte)
					rand.Read(mask[:])
				}
				s.send(x, frame.AppendClose(nil, inj.code, inj.reason, mask))
				x.closeSent = !x.broken
			}
		}
		// A ping waits, as goSession's waits for a blocked write, until the socket has taken
		// everything before it; it counts as sent once the socket has taken it too. A side
		// whose queue is full cannot answer a ping stuck behind it.
		if x.pinging && !x.midFrame && x.queued() == 0 {
			x.pinging = false
			if x.writable() {
				at := s.clock()
				s.send(x, x.ping)
				if !x.broken && x.queued() == 0 && x.pingAt <= x.heard {
					x.pingAt = at
				}
			}
		}
		settled = settled && !s.inject[i].pending
	}
	closing := s.stopping
	for i := range s.sides {
		x := &s.sides[i]
		closing = closing || x.closeRecv || x.eof || x.broken
		done := x.eof || x.broken || x.closeSent && (x.closeRecv || x.failed) && x.queued() == 0
		settled = settled && done
	}
	if !settled && closing && s.graceTimer == nil {
		s.graceTimer = time.AfterFunc(s.limits.CloseTimeout, func() {
			s.loop.post(func() {
				s.graceOver = true
				s.step()
			})
		})
		if s.pingTimer != nil {
			s.pingTimer.Stop()
		}
	}
	if !settled && !s.graceOver {
		return
	}
	s.finished = true
	for _, t := range []*time.Timer{s.idleTimer, s.pingTimer, s.graceTimer} {
		if t != nil {
			t.Stop()
		}
	}
	if s.stopCtx != nil {
		s.stopCtx()
	}
	for i := range s.sides {
		x := &s.sides[i]
		s.closeTLS(x)
		x.out = nil
		s.loop.remove(x)
	}
	if s.done != nil {
		s.done(s.Stats())
	}
}

// idleTick is goSession.idleTick.
func (s *loopSession) idleTick() {
	if s.finished {
		return
	}
	quiet := time.Duration(s.clock() - s.activity)
	if quiet < s.limits.IdleTimeout {
		s.idleTimer.Reset(s.limits.IdleTimeout - quiet)
		return
	}
	s.closeNow(frame.CloseGoingAway, "idle timeout")
}

// pingTick is goSession.pingTick and keepaliveLocked.
func (s *loopSession) pingTick() {
	if s.finished || s.graceTimer != nil {
		return
	}
	s.pingTimer.Reset(s.limits.PingInterval)
	if s.stopping {
		return
	}
	now := s.clock()
	for i := range s.sides {
		x := &s.sides[i]
		if x.eof || x.failed || x.paused {
			continue
		}
		if x.pingAt > x.heard && now-x.pingAt >= int64(s.limits.PingInterval) {
			x.failed = true
			s.record(x.name, frame.CloseAbnormal, "ping timeout")
			s.stop(ByGateway, 0, "", [2]uint16{frame.CloseGoingAway, frame.CloseGoingAway}, [2]string{"going away", "going away"})
			s.step()
			return
		}
	}
	for i := range s.sides {
		s.sides[i].pinging = true
	}
	s.step()
}
