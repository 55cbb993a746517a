// Package wsproxy relays an upgraded WebSocket connection between a client and a backend:
// it dials the backend, completes the client's upgrade with the backend's answer, and then
// copies frames verbatim both ways, parsing only frame headers to count messages and
// enforce limits (docs/design.md §3, step 9).
package wsproxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// Direction is the way a frame travels through a session.
type Direction uint8

// Directions, usable as indexes.
const (
	FromClient  Direction = iota // client → backend
	FromBackend                  // backend → client
)

// String returns "in" for FromClient and "out" for FromBackend, as in Stats.
func (d Direction) String() string {
	if d == FromClient {
		return "in"
	}
	return "out"
}

// Values of Stats.ClosedBy.
const (
	ByClient  = "client"
	ByBackend = "backend"
	ByGateway = "gateway"
)

// DefaultCloseTimeout is Limits.CloseTimeout when zero.
const DefaultCloseTimeout = 5 * time.Second

// Limits bound a session. The zero value relays without limits and waits
// DefaultCloseTimeout for closing handshakes.
type Limits struct {
	// MaxMessageBytes caps one message's payload in either direction, summed over its
	// frames and checked at each frame header before the frame is relayed. It counts bytes
	// as they travel, so with permessage-deflate it caps compressed size. A message over the
	// cap is not relayed and both sides get close 1009. Zero means no cap.
	MaxMessageBytes int64
	// IdleTimeout ends a session in which no frame of the endpoints (data, ping, pong or
	// close) has travelled either way for this long: both sides get close 1001
	// "idle timeout". Endpoint pings count as activity (nginx-ingress#715); the gateway's
	// own keepalive pings do not. Zero means never.
	IdleTimeout time.Duration
	// PingInterval makes the gateway ping both sides this often, to keep intermediaries
	// from dropping quiet connections and to find dead peers. Pings wait for the frame being
	// written to finish; the pongs that answer are not relayed. A side that leaves a ping
	// unanswered (nothing at all arriving from it) for a whole interval is treated as gone
	// and the other side gets close 1001; a side is not judged while the relay is itself
	// busy writing elsewhere and so not reading it. A consumer slower than a whole interval
	// of buffered traffic can be misjudged; choose the interval accordingly. Zero means no
	// pings.
	PingInterval time.Duration
	// CloseTimeout is how long a closing session waits for the closing handshake to finish
	// on both sides before it closes both TCP connections. Zero means DefaultCloseTimeout.
	CloseTimeout time.Duration
	// ValidateUTF8 checks that text messages, both ways, are valid UTF-8 (RFC 6455 §8.1)
	// before relaying each piece: a message that is not ends the session with 1007 toward
	// its sender and 1001 toward the other side. A frame found invalid after part of it was
	// relayed (one larger than the relay's 32 KiB buffer) cannot be completed, so the
	// connection it was going to is closed without a close frame. Compressed messages
	// (permessage-deflate) are not checked: the gateway does not negotiate compression for
	// sessions that validate.
	ValidateUTF8 bool
}

// Hooks let the gateway act on traffic. They run on the relaying goroutine of their
// direction, so they must be quick and must not block; they may call Session.Close. A nil
// hook is skipped.
type Hooks struct {
	// MessageStart is called when the first frame of a data message arrives from dir,
	// before any of it is relayed. A nonzero code refuses the message: it is dropped and the
	// session closes with code and reason sent to both sides (a message rate limit, say).
	MessageStart func(dir Direction) (code uint16, reason string)
}

// Stats describe a session. In is client → backend, Out is backend → client.
type Stats struct {
	// MessagesIn and MessagesOut count data messages relayed whole (a message ends with a
	// final text, binary or continuation frame).
	MessagesIn, MessagesOut int64
	// BytesIn and BytesOut count the payload bytes of data frames (text, binary and
	// continuation) relayed, as they travel: without frame headers or control frames, and
	// compressed when permessage-deflate is on. Every byte count Gatehouse reports (metrics,
	// log records, live connections, usage reports) is this one (docs/design.md §3).
	BytesIn, BytesOut int64
	// CloseCode is the code of the first close: that of the first close frame seen
	// (1005 when it carried none), the code the gateway sent, or 1006 when a connection
	// ended without a close frame. Zero while the session is open.
	CloseCode uint16
	// ClosedBy says who closed first: ByClient, ByBackend or ByGateway.
	ClosedBy string
	// Reason is the close reason, or what went wrong.
	Reason string
}

// keepalivePayload marks the gateway's own pings, so their pongs can be recognised.
const keepalivePayload = "gatehouse keepalive"

// Indexes of Session.sides; they equal the Direction of the frames each side sends.
const (
	clientSide  = int(FromClient)
	backendSide = int(FromBackend)
)

// side is one connection of a session. Its reader belongs to the goroutine relaying frames
// from it (or to the parker while the side is parked); writes to it, relayed or injected,
// hold wmu for a whole frame so that injected control frames never land inside a relayed
// one.
type side struct {
	name       string
	conn       net.Conn
	r          *reader
	fromClient bool   // frames from this side are masked; frames to it are not
	ping       []byte // the keepalive ping frame for this side, when pings are on

	// State of the message being read from this side, kept here so that a relay that parks
	// and resumes picks up where it was.
	message

	wmu       sync.Mutex
	closeSent atomic.Bool // a close frame was written to conn (set under wmu)
	broken    atomic.Bool // a write failed or a frame to conn was cut short: write no more

	closeRecv atomic.Bool // a close frame was read from conn
	eof       atomic.Bool // reading from conn has ended
	failed    atomic.Bool // nothing more is expected from conn (protocol error, ping timeout)

	// For keepalive: the relay is waiting for conn's next frame; it last read from conn, or
	// started waiting, at heard; a keepalive ping is on its way to conn; the oldest ping
	// not answered by the time it was written was written at pingAt. Times are
	// Session.clock values.
	waiting atomic.Bool
	heard   atomic.Int64
	pinging atomic.Bool
	pingAt  atomic.Int64

	// parked is set while the parker waits for conn on the relay's behalf, with its token;
	// both under Session.mu.
	parked bool
	token  uint64
}

// writable reports whether a frame may be written to x now; x.wmu must be held.
func (x *side) writable(s *goSession) bool {
	return !x.closeSent.Load() && !x.broken.Load() && !s.stopping.Load()
}

// injection is a close frame the gateway has yet to send to one side.
type injection struct {
	pending bool
	code    uint16
	reason  string
}

// goSession is a session of the goroutine engine: it needs nothing but net.Conn, so it also
// serves TLS connections and systems without epoll.
//
// It has no goroutine of its own: one relays each direction while frames flow. Where
// parking is available (Linux, plain TCP) a direction waits in a process-wide epoll set
// instead, from the start and again after a second without frames, so an idle session holds
// no goroutine, no stack and no buffer. Timers and state changes run short-lived goroutines.
type goSession struct {
	sides  [2]side
	limits Limits
	hooks  Hooks
	start  time.Time
	// rsv is the RSV1 bit when permessage-deflate was negotiated (RFC 7692 §6: it marks a
	// compressed message, on a message's first frame only), else zero: no other extension is
	// understood, so a frame with any other bit set breaks the protocol (RFC 6455 §5.2).
	rsv uint8

	messages [2]atomic.Int64 // by Direction
	bytes    [2]atomic.Int64
	activity atomic.Int64 // clock of the last endpoint frame, for IdleTimeout
	stopping atomic.Bool  // the gateway is closing the session: relay nothing more
	sending  atomic.Int32 // injected close frames being written

	// Wakeups: a state change sets dirty and makes sure one goroutine runs react.
	started atomic.Bool
	dirty   atomic.Bool
	driving atomic.Bool

	mu       sync.Mutex
	closed   Stats // only CloseCode, ClosedBy, Reason; the first close wins
	inject   [2]injection
	finished bool // the session is torn down: connections closed, nothing new starts
	// Timers, set by Start and under mu after: idle timeout, keepalive, closing grace; and
	// the stop function of ctx's AfterFunc.
	idleTimer, pingTimer, graceTimer *time.Timer
	graceOver                        bool
	stopCtx                          func() bool
	done                             func(Stats)

	// workers counts the goroutines (and parked relays) that use the session: relays,
	// writes of close frames and pings. The one that brings it to zero after teardown calls
	// done. Increments happen under mu while not finished.
	workers  atomic.Int32
	doneOnce sync.Once
}

// newGoSession is NewSession on the goroutine engine.
func newGoSession(client net.Conn, clientReader *bufio.Reader, be *Backend, limits Limits, hooks Hooks) *goSession {
	if limits.CloseTimeout <= 0 {
		limits.CloseTimeout = DefaultCloseTimeout
	}
	s := &goSession{limits: limits, hooks: hooks, start: time.Now()}
	if be.Response != nil && NegotiatedDeflate(be.Response.Header) {
		s.rsv = frame.Rsv1
	}

	c := &s.sides[clientSide]
	c.name, c.conn, c.fromClient = ByClient, client, true
	c.r = newReader(client, clientReader)

	b := &s.sides[backendSide]
	b.name, b.conn = ByBackend, be.Conn
	b.r = newReader(be.Conn, be.Reader)
	if limits.PingInterval > 0 {
		c.ping, _ = frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPing}, []byte(keepalivePayload))
		var key [4]byte
		rand.Read(key[:])
		b.ping, _ = frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpPing, Masked: true, Mask: key}, []byte(keepalivePayload))
	}
	return s
}

// clock returns the time since the session started, in nanoseconds, from the monotonic clock.
func (s *goSession) clock() int64 { return int64(time.Since(s.start)) }

// wakeup makes react run soon on a goroutine of its own, so that callers may hold locks.
// Wakeups while react runs make it run again; before Start they wait for it.
func (s *goSession) wakeup() {
	s.dirty.Store(true)
	if s.started.Load() && s.driving.CompareAndSwap(false, true) {
		go s.drive()
	}
}

// poke is wakeup for a caller that holds none of the session's locks: it runs react on the
// calling goroutine (unless another goroutine is running it, which then runs it again),
// sparing a goroutine per state change.
func (s *goSession) poke() {
	s.dirty.Store(true)
	if s.started.Load() && s.driving.CompareAndSwap(false, true) {
		s.drive()
	}
}

// drive runs react until no wakeup is pending.
func (s *goSession) drive() {
	for {
		s.dirty.Store(false)
		s.react()
		s.driving.Store(false)
		if !s.dirty.Load() || !s.driving.CompareAndSwap(false, true) {
			return
		}
	}
}

// Close is Session.Close.
func (s *goSession) Close(code uint16, reason string) {
	if !frame.SendableCloseCode(code) {
		code = frame.CloseGoingAway
	}
	s.stop(ByGateway, code, reason, [2]uint16{code, code}, [2]string{reason, reason})
}

// stop records the close (unless one is recorded already) and, the first time, makes the
// session relay nothing more and queues a close frame for each side.
func (s *goSession) stop(by string, code uint16, reason string, codes [2]uint16, reasons [2]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(by, code, reason)
	s.stopLocked(codes, reasons)
}

func (s *goSession) stopLocked(codes [2]uint16, reasons [2]string) {
	if s.finished || s.stopping.Load() {
		return
	}
	s.stopping.Store(true)
	for i := range s.inject {
		s.inject[i] = injection{pending: true, code: codes[i], reason: reasons[i]}
	}
	s.wakeup()
}

func (s *goSession) recordLocked(by string, code uint16, reason string) {
	if s.closed.ClosedBy == "" {
		s.closed = Stats{ClosedBy: by, CloseCode: code, Reason: reason}
	}
}

// Stats returns the session's counters so far and how it closed, if it has.
func (s *goSession) Stats() Stats {
	s.mu.Lock()
	st := s.closed
	s.mu.Unlock()
	st.MessagesIn = s.messages[FromClient].Load()
	st.MessagesOut = s.messages[FromBackend].Load()
	st.BytesIn = s.bytes[FromClient].Load()
	st.BytesOut = s.bytes[FromBackend].Load()
	return st
}

// Start is Session.Start: every goroutine that relayed or wrote for the session has ended
// before done is called.
func (s *goSession) Start(ctx context.Context, done func(Stats)) {
	s.mu.Lock()
	s.done = done
	if s.limits.IdleTimeout > 0 {
		s.idleTimer = time.AfterFunc(s.limits.IdleTimeout, s.idleTick)
	}
	if s.limits.PingInterval > 0 {
		s.pingTimer = time.AfterFunc(s.limits.PingInterval, s.pingTick)
	}
	if ctx.Done() != nil {
		s.stopCtx = context.AfterFunc(ctx, func() { s.Close(frame.CloseGoingAway, "going away") })
	}
	// A side with nothing buffered starts parked: a session that stays quiet never has a
	// goroutine (nor a stack) of its own.
	s.workers.Add(2)
	var run [2]bool
	for i := range s.sides {
		x, y := &s.sides[i], &s.sides[1-i]
		run[i] = x.r.buffered() > 0 || !x.r.parkable || !s.parkLocked(x, y, Direction(i))
	}
	s.mu.Unlock()
	for i := range s.sides {
		if run[i] {
			go s.relay(&s.sides[i], &s.sides[1-i], Direction(i))
		}
	}
	s.started.Store(true)
	s.poke()
}

// idleTick ends a session quiet for Limits.IdleTimeout, or waits for the rest of it.
func (s *goSession) idleTick() {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	quiet := time.Duration(s.clock() - s.activity.Load())
	if quiet < s.limits.IdleTimeout {
		s.idleTimer.Reset(s.limits.IdleTimeout - quiet)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.Close(frame.CloseGoingAway, "idle timeout")
}

// pingTick runs keepalive every Limits.PingInterval until the session closes.
func (s *goSession) pingTick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished || s.graceTimer != nil {
		return
	}
	s.keepaliveLocked()
	s.pingTimer.Reset(s.limits.PingInterval)
}

// react answers state changes (step) and tears the session down once it is over.
func (s *goSession) react() {
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		return
	}
	closing, settled := s.stepLocked()
	if !settled && closing && s.graceTimer == nil {
		s.graceTimer = time.AfterFunc(s.limits.CloseTimeout, func() {
			s.mu.Lock()
			s.graceOver = true
			s.mu.Unlock()
			s.poke()
		})
		if s.pingTimer != nil {
			s.pingTimer.Stop()
		}
	}
	if !settled && !s.graceOver {
		s.mu.Unlock()
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
	// A parked side has no goroutine to see its connection close: take it back from the
	// parker. If the parker has just woken it, its relay is on its way and ends by itself.
	for i := range s.sides {
		if x := &s.sides[i]; x.parked && unpark(x.token) {
			x.parked = false
			x.eof.Store(true)
			x.r.release()
			s.workers.Add(-1)
		}
	}
	s.mu.Unlock()
	for i := range s.sides {
		s.sides[i].conn.Close()
	}
	s.workerDone(0)
}

// workerDone records that a worker ended (n = 1; 0 only checks) and calls done once the
// session is torn down and no worker is left.
func (s *goSession) workerDone(n int32) {
	if s.workers.Add(-n) != 0 {
		return
	}
	s.mu.Lock()
	finished := s.finished
	s.mu.Unlock()
	if finished {
		s.doneOnce.Do(func() {
			if s.done != nil {
				s.done(s.Stats())
			}
		})
	}
}

// spawnLocked starts fn as a worker unless the session is torn down; s.mu must be held.
func (s *goSession) spawnLocked(fn func()) {
	if s.finished {
		return
	}
	s.workers.Add(1)
	go func() {
		defer s.workerDone(1)
		fn()
	}()
}

// stepLocked reacts to state changes: it answers a side that vanished, starts queued close
// frames, and reports whether the session is closing and whether it is over. s.mu must be
// held.
func (s *goSession) stepLocked() (closing, settled bool) {
	// A side went away without a closing handshake (RFC 6455 §7.1.5: abnormal, 1006). A
	// connection that ended is the cause; one broken by a write is checked second, as a
	// frame cut short by the other side's end also breaks it.
	for _, brokenToo := range [2]bool{false, true} {
		for i := range s.sides {
			x := &s.sides[i]
			if gone := x.eof.Load() || brokenToo && x.broken.Load(); gone && !x.closeRecv.Load() {
				s.recordLocked(x.name, frame.CloseAbnormal, "connection closed without a close frame")
				s.stopLocked([2]uint16{frame.CloseGoingAway, frame.CloseGoingAway}, [2]string{"going away", "going away"})
			}
		}
	}
	for i := range s.inject {
		if inj := s.inject[i]; inj.pending {
			s.inject[i].pending = false
			s.sending.Add(1)
			x := &s.sides[i]
			s.spawnLocked(func() { s.sendClose(x, inj.code, inj.reason) })
		}
	}
	closing = s.stopping.Load()
	settled = s.sending.Load() == 0
	for i := range s.sides {
		x := &s.sides[i]
		closing = closing || x.closeRecv.Load() || x.eof.Load() || x.broken.Load()
		done := x.eof.Load() || x.broken.Load() || x.closeSent.Load() && (x.closeRecv.Load() || x.failed.Load())
		settled = settled && done
	}
	return closing, settled
}

// sendClose writes the gateway's close frame to x unless x already had one or can take no
// more frames.
func (s *goSession) sendClose(x *side, code uint16, reason string) {
	defer s.poke()
	defer s.sending.Add(-1)
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if x.closeSent.Load() || x.broken.Load() || x.eof.Load() {
		return
	}
	var mask *[4]byte
	if !x.fromClient {
		mask = new([4]byte)
		rand.Read(mask[:])
	}
	if _, err := x.conn.Write(frame.AppendClose(nil, code, reason, mask)); err != nil {
		x.broken.Store(true)
		return
	}
	x.closeSent.Store(true)
}

// keepaliveLocked pings both sides, or ends the session when one has left a ping
// unanswered: it was written at least an interval ago, nothing has arrived from the side
// since, and the relay is waiting for the side (not blocked writing elsewhere, which would
// leave an answer unread). s.mu must be held.
func (s *goSession) keepaliveLocked() {
	if s.stopping.Load() {
		return
	}
	now := s.clock()
	for i := range s.sides {
		x := &s.sides[i]
		if x.eof.Load() || x.failed.Load() || !x.waiting.Load() {
			continue
		}
		if at := x.pingAt.Load(); at > x.heard.Load() && now-at >= int64(s.limits.PingInterval) {
			x.failed.Store(true)
			s.recordLocked(x.name, frame.CloseAbnormal, "ping timeout")
			s.stopLocked([2]uint16{frame.CloseGoingAway, frame.CloseGoingAway}, [2]string{"going away", "going away"})
			return
		}
	}
	for i := range s.sides {
		if x := &s.sides[i]; !x.pinging.Swap(true) {
			s.spawnLocked(func() { s.ping(x) })
		}
	}
}

// ping writes a keepalive ping to x once the frame being written to it, if any, is done.
func (s *goSession) ping(x *side) {
	defer x.pinging.Store(false)
	x.wmu.Lock()
	defer x.wmu.Unlock()
	if !x.writable(s) {
		return
	}
	at := s.clock() // before the write, so that an answer always comes later
	if _, err := x.conn.Write(x.ping); err != nil {
		x.broken.Store(true)
		s.wakeup()
		return
	}
	if x.pingAt.Load() <= x.heard.Load() {
		x.pingAt.Store(at) // keep the oldest unanswered ping
	}
}

// relay copies frames from src to dst until reading src ends, or until src is quiet and
// its wait is handed to the parker, which calls relay again when src has something to read.
func (s *goSession) relay(src, dst *side, dir Direction) {
	for {
		// How reading ended matters only as a close frame seen or not, which step judges.
		err := s.pump(src, dst, dir)
		if err != errPark {
			break
		}
		if s.park(src, dst, dir) {
			return
		}
		src.r.parkable = false // parking failed: wait here from now on
	}
	src.r.release()
	src.eof.Store(true)
	s.poke()
	s.workerDone(1)
}

// park hands src's wait to the parker; it reports false when the session is torn down or
// the parker cannot take it.
func (s *goSession) park(src, dst *side, dir Direction) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parkLocked(src, dst, dir)
}

// parkLocked is park with s.mu held.
func (s *goSession) parkLocked(src, dst *side, dir Direction) bool {
	if s.finished {
		return false
	}
	src.waiting.Store(true)
	token, ok := parkConn(src.r.raw, &src.r.registered, func() {
		s.mu.Lock()
		src.parked = false
		s.mu.Unlock()
		s.relay(src, dst, dir)
	})
	if ok {
		src.parked, src.token = true, token
	}
	return ok
}

// pump relays frames from src to dst and returns the error that ended reading src, or
// errPark when src has been quiet long enough to park.
func (s *goSession) pump(src, dst *side, dir Direction) error {
	r := src.r
	for {
		src.heard.Store(s.clock())
		src.waiting.Store(true)
		p, err := r.awaitFrame()
		if err != nil {
			if err != errPark {
				src.waiting.Store(false)
			}
			return err
		}
		src.waiting.Store(false)
		hl := frame.HeaderLen(p[0], p[1])
		if p, err = r.peek(hl); err != nil {
			return err
		}
		h, _, err := parseHeader(p, src.fromClient, src.inMessage, s.rsv)
		if err != nil {
			return s.violation(src, frame.CloseProtocolError, err)
		}
		now := s.clock()
		src.heard.Store(now)
		total := int64(hl) + h.Length
		forward := true
		if h.Opcode.Control() {
			// At most 139 bytes: read the whole frame.
			if p, err = r.peek(int(total)); err != nil {
				return err
			}
			switch h.Opcode {
			case frame.OpPong:
				if s.limits.PingInterval > 0 && isKeepalive(h, p[hl:]) {
					r.discard(int(total))
					continue
				}
			case frame.OpClose:
				if err := s.closeFrom(src, h, p[hl:]); err != nil {
					return s.violation(src, frame.CloseProtocolError, err)
				}
			}
		} else {
			if code, reason := src.startFrame(h, &s.limits, &s.hooks, dir); code != 0 {
				s.Close(code, reason)
			}
			forward = !src.dropping
		}
		s.activity.Store(now)
		var check *frame.UTF8
		if src.text && !h.Opcode.Control() && !src.dropping {
			check = &src.utf8
		}
		var sent bool
		if total <= bufSize {
			sent, err = s.copySmall(src, dst, h, hl, int(total), forward, check)
		} else {
			sent, err = s.copyLarge(src, dst, h, hl, total, forward, check)
		}
		switch err {
		case errInvalidUTF8:
			return s.violation(src, frame.CloseInvalidPayload, err)
		case errInvalidUTF8Cut:
			// dst holds part of the frame: no close frame can follow it, only the end of
			// the connection, once the session's close is recorded as the gateway's. dst is
			// marked broken first: fail wakes the goroutine that sends the close frames,
			// which would otherwise write dst's into the middle of the frame.
			dst.broken.Store(true)
			s.fail(src, frame.CloseInvalidPayload, err)
			s.poke()
			return src.r.drain()
		}
		if err != nil {
			return err
		}
		if sent && !h.Opcode.Control() {
			s.bytes[dir].Add(h.Length)
			if h.Fin {
				s.messages[dir].Add(1)
			}
		}
	}
}

// Protocol errors the relay finds beside frame.Parse's.
var (
	errFragment    = errors.New("frame: continuation frame outside a message, or a new message inside a fragmented one")
	errRsv         = errors.New("frame: reserved bit set that no negotiated extension defines")
	errInvalidUTF8 = errors.New("frame: text message not valid UTF-8")
	// errInvalidUTF8Cut is errInvalidUTF8 found after part of the frame was relayed.
	errInvalidUTF8Cut = errors.New("frame: text message not valid UTF-8 (frame cut short)")
)

// violation ends the session after src broke the protocol (RFC 6455 §7.1.7, "fail the
// WebSocket connection"): src gets code (1002, or 1007 for a text message that is not
// UTF-8), the other side 1001. The frame at fault is not relayed. Frames from src are no
// longer read, so its remaining bytes are dropped until the connection closes.
func (s *goSession) violation(src *side, code uint16, err error) error {
	s.fail(src, code, err)
	return src.r.drain()
}

// fail is violation without draining src.
func (s *goSession) fail(src *side, code uint16, err error) {
	src.failed.Store(true)
	codes, reasons, reason := failure(src.fromClient, src.name, code, err)
	s.stop(ByGateway, code, reason, codes, reasons)
}

// message is the state of the message being read from a side, in either engine.
type message struct {
	inMessage bool       // a fragmented message is open
	dropping  bool       // the open message is not being relayed
	size      int64      // payload bytes of the open message so far
	text      bool       // the open message is text checked with utf8 (Limits.ValidateUTF8)
	utf8      frame.UTF8 // the check of the open text message
}

// startFrame takes the header of a data frame read from direction dir into the message's
// state and returns the close the session must make, if any: the one the MessageStart hook
// asks for, or 1009 for a message over Limits.MaxMessageBytes. The message is then dropped.
func (m *message) startFrame(h frame.Header, limits *Limits, hooks *Hooks, dir Direction) (code uint16, reason string) {
	if h.Opcode != frame.OpContinuation {
		m.inMessage, m.dropping, m.size = true, false, 0
		m.text = limits.ValidateUTF8 && h.Opcode == frame.OpText && h.Rsv == 0
		m.utf8.Reset()
		if hooks.MessageStart != nil {
			if code, reason = hooks.MessageStart(dir); code != 0 {
				m.dropping = true
			}
		}
	}
	if limit := limits.MaxMessageBytes; limit > 0 && !m.dropping {
		if h.Length > limit-m.size {
			m.dropping = true
			code, reason = frame.CloseMessageTooBig, "message too big"
		}
		m.size += h.Length
	}
	m.inMessage = !h.Fin
	return code, reason
}

// failure returns the close frames of a session whose side (the client's when fromClient)
// broke the protocol: code (1002, or 1007 for text that is not UTF-8) to it, 1001 to the
// other, and the reason recorded.
func failure(fromClient bool, name string, code uint16, err error) (codes [2]uint16, reasons [2]string, reason string) {
	codes = [2]uint16{frame.CloseGoingAway, frame.CloseGoingAway}
	reasons = [2]string{"going away", "going away"}
	i := clientSide
	if !fromClient {
		i = backendSide
	}
	what := "protocol error"
	if code == frame.CloseInvalidPayload {
		what = "invalid UTF-8"
	}
	codes[i], reasons[i] = code, what
	return codes, reasons, what + " from " + name + ": " + err.Error()
}

// parseClose returns the code and reason of a close frame with header h, or why it may not
// be relayed (frame.CheckClose).
func parseClose(h frame.Header, payload []byte) (uint16, string, error) {
	var buf [frame.MaxControlPayload]byte
	n := copy(buf[:], payload)
	if h.Masked {
		frame.MaskBytes(h.Mask, 0, buf[:n])
	}
	if err := frame.CheckClose(buf[:n]); err != nil {
		return 0, "", err
	}
	code, reason, _ := frame.ParseClose(buf[:n])
	return code, string(reason), nil
}

// parseHeader parses a frame header read from a side (the client when fromClient) in the
// state inMessage (a fragmented message is open), with rsv the RSV bits an extension
// allows, and returns it with its length, or the protocol error it makes.
func parseHeader(b []byte, fromClient, inMessage bool, rsv uint8) (frame.Header, int, error) {
	h, hl, err := frame.Parse(b)
	if err == nil {
		err = h.CheckMask(fromClient)
	}
	if err == nil && !h.Opcode.Control() && (h.Opcode == frame.OpContinuation) != inMessage {
		err = errFragment
	}
	if err == nil && h.Rsv != 0 && (h.Rsv != rsv || h.Opcode != frame.OpText && h.Opcode != frame.OpBinary) {
		err = errRsv
	}
	return h, hl, err
}

// closeFrom records a close frame from src, or returns why it may not be relayed
// (frame.CheckClose).
func (s *goSession) closeFrom(src *side, h frame.Header, payload []byte) error {
	code, reason, err := parseClose(h, payload)
	if err != nil {
		return err
	}
	src.closeRecv.Store(true)
	s.mu.Lock()
	if s.closed.ClosedBy == "" {
		s.recordLocked(src.name, code, reason)
	}
	s.mu.Unlock()
	s.poke()
	return nil
}

// checkText runs check over a piece of a text frame's payload that starts pos bytes into
// the payload, unmasking it in place for the check and masking it back, so the bytes
// relayed are those that came. last says the piece ends the message.
func checkText(check *frame.UTF8, h frame.Header, pos int, p []byte, last bool) bool {
	if h.Masked {
		frame.MaskBytes(h.Mask, pos, p)
		defer frame.MaskBytes(h.Mask, pos, p)
	}
	return check.Write(p) && (!last || check.Done())
}

// isKeepalive reports whether a pong with header h and payload answers a keepalive ping.
func isKeepalive(h frame.Header, payload []byte) bool {
	if len(payload) != len(keepalivePayload) {
		return false
	}
	var buf [len(keepalivePayload)]byte
	copy(buf[:], payload)
	if h.Masked {
		frame.MaskBytes(h.Mask, 0, buf[:])
	}
	return string(buf[:]) == keepalivePayload
}

// copySmall relays a frame, with header h of hl bytes, that fits src's buffer: it waits for
// the whole frame and writes it in one call straight from the buffer. check, if not nil,
// must accept the payload first (errInvalidUTF8: nothing is written). It reports whether
// the frame was written.
func (s *goSession) copySmall(src, dst *side, h frame.Header, hl, total int, forward bool, check *frame.UTF8) (bool, error) {
	p, err := src.r.peek(total)
	if err != nil {
		return false, err
	}
	if check != nil && !checkText(check, h, 0, p[hl:], h.Fin) {
		return false, errInvalidUTF8
	}
	isClose := h.Opcode == frame.OpClose
	changed := false // dst broke or got its close frame
	if forward {
		dst.wmu.Lock()
		if forward = dst.writable(s); forward {
			if _, err := dst.conn.Write(p); err != nil {
				forward = false
				dst.broken.Store(true)
				changed = true
			} else if isClose {
				dst.closeSent.Store(true)
				changed = true
			}
		}
		dst.wmu.Unlock()
	}
	src.r.discard(total)
	if changed {
		s.poke()
	}
	return forward, nil
}

// copyLarge streams a frame, with header h of hl bytes, bigger than src's buffer through
// it, writing what has arrived each time, and holds dst's write lock for the whole frame.
// check, if not nil, must accept each piece of payload before it is written; when it does
// not, it fails with errInvalidUTF8, or errInvalidUTF8Cut when dst already holds part of the
// frame and must be broken off. It reports whether the
// frame was written.
func (s *goSession) copyLarge(src, dst *side, h frame.Header, hl int, total int64, forward bool, check *frame.UTF8) (bool, error) {
	broke := false
	if forward {
		dst.wmu.Lock()
		defer func() {
			dst.wmu.Unlock()
			if broke {
				s.poke()
			}
		}()
		forward = dst.writable(s)
	}
	r := src.r
	wrote := false
	for left := total; left > 0; {
		if r.buffered() == 0 {
			if err := r.fill(false); err != nil {
				if forward && wrote {
					dst.broken.Store(true) // dst holds part of a frame
					broke = true
				}
				return false, err
			}
			now := s.clock()
			src.heard.Store(now)
			s.activity.Store(now)
		}
		chunk := (*r.buf)[r.r : r.r+int(min(int64(r.buffered()), left))]
		if check != nil {
			// The header's bytes come first; the payload starts hl bytes into the frame.
			off := total - left // frame bytes before chunk
			payload, pos := chunk, off-int64(hl)
			if pos < 0 {
				payload, pos = chunk[min(int64(len(chunk)), -pos):], 0
			}
			if !checkText(check, h, int(pos), payload, h.Fin && left == int64(len(chunk))) {
				if forward && wrote {
					return false, errInvalidUTF8Cut
				}
				return false, errInvalidUTF8
			}
		}
		if forward {
			if _, err := dst.conn.Write(chunk); err != nil {
				forward = false
				dst.broken.Store(true)
				broke = true
			}
			wrote = true
		}
		r.discard(len(chunk))
		left -= int64(len(chunk))
	}
	return forward, nil
}
