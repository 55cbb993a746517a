package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// Directions, as indexes of session.sides: the client's connection reads what goes to the
// backend, and the other way round.
const (
	fromClient  = 0
	fromBackend = 1
)

// maxHead is the longest request or response head the relay buffers before giving up.
const maxHead = 8 << 10

// phase is where a session stands. Every field of a session is read and written on its event
// loop only: both connections are registered on the loop that accepted the client.
type phase uint8

const (
	reading     phase = iota // the client's upgrade request is arriving
	dialing                  // the backend connection is being opened
	waiting                  // the request went to the backend; its response head is arriving
	relaying                 // the backend answered 101: frames flow both ways
	passthrough              // the backend answered something else: its bytes go to the client until one side closes
	closed
)

// side is one connection of a session and the state of the frames read from it.
type side struct {
	s         *session
	dir       int
	conn      gnet.Conn // nil until the connection is open
	remaining int64     // payload bytes of the current frame not yet passed on
	messages  int64     // final data frames read: whole messages
	bytes     int64     // bytes passed on to the peer
	stalled   bool      // its peer's outbound buffer is over the bound: waiting for it to drain
}

func (sd *side) peer() *side { return &sd.s.sides[1-sd.dir] }

// scan walks the frames in b, which continue those scanned before, and returns how many bytes
// of b may be passed on: every byte except a trailing incomplete header. It checks each header
// (RFC 6455 §5.2) and its mask (§5.1) and counts final data frames; it allocates nothing.
func (sd *side) scan(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if sd.remaining > 0 {
			k := min(int64(len(b)-n), sd.remaining)
			n += int(k)
			sd.remaining -= k
			continue
		}
		h, hl, err := frame.Parse(b[n:])
		if err == frame.ErrShort {
			break
		}
		if err != nil {
			return n, err
		}
		if err := h.CheckMask(sd.dir == fromClient); err != nil {
			return n, err
		}
		if h.Fin && !h.Opcode.Control() {
			sd.messages++
		}
		n += hl
		sd.remaining = h.Length
	}
	return n, nil
}

// session is one proxied WebSocket connection: the client's and the backend's.
type session struct {
	phase   phase
	sides   [2]side
	request []byte // the client's upgrade request, kept until the backend connection opens
}

// Totals are the counters of sessions that have ended.
type Totals struct {
	Sessions int64
	Messages [2]int64 // by direction: fromClient, fromBackend
	Bytes    [2]int64
	Refused  int64 // sessions ended before a 101: dial failures, non-101 answers, bad heads
	Dropped  int64 // sessions closed because a stalled side held more than Config.Hold
	Stalls   int64 // times a side stopped being relayed because its peer's buffer was over Config.Queue
}

// Config is the relay's static configuration.
type Config struct {
	Backend *net.TCPAddr
	// Queue is the most a connection's outbound buffer may hold before the relay stops passing
	// it bytes from its peer (gnet.Conn.OutboundBuffered).
	Queue int
	// Hold is the most a stalled side may hold unread; gnet keeps reading a socket whatever
	// the handler does (it cannot pause a read), so past Hold the session is closed.
	Hold int
	// Loops is the number of event loops; zero means one per core.
	Loops int
}

// relay is the gnet event handler: a minimal WebSocket reverse proxy to one backend.
type relay struct {
	gnet.BuiltinEventEngine
	cfg    Config
	ctx    context.Context // carries nothing but the backend side to gnet's Register
	log    *slog.Logger
	booted chan gnet.Engine

	mu      sync.Mutex
	stalled map[gnet.Conn]struct{} // woken by OnTick: gnet reports no "outbound drained" event

	totals struct {
		sessions, refused, dropped, stalls atomic.Int64
		messages, bytes                    [2]atomic.Int64
	}
	hooks hooks
}

// hooks let tests wait for events. Each may be nil; ready is called on run's goroutine, the
// others on an event loop.
type hooks struct {
	ready   func(r *relay, addr string) // the loops are up, listening on addr
	stalled func()                      // a side has stalled
	ended   func()                      // a session has ended and its counts are in Totals
}

func newRelay(ctx context.Context, cfg Config, log *slog.Logger, h hooks) *relay {
	return &relay{cfg: cfg, ctx: ctx, log: log, hooks: h, booted: make(chan gnet.Engine, 1), stalled: map[gnet.Conn]struct{}{}}
}

// Totals returns the counters of the sessions that have ended so far.
func (r *relay) Totals() Totals {
	t := Totals{
		Sessions: r.totals.sessions.Load(),
		Refused:  r.totals.refused.Load(),
		Dropped:  r.totals.dropped.Load(),
		Stalls:   r.totals.stalls.Load(),
	}
	for d := range 2 {
		t.Messages[d] = r.totals.messages[d].Load()
		t.Bytes[d] = r.totals.bytes[d].Load()
	}
	return t
}

func (r *relay) OnBoot(eng gnet.Engine) gnet.Action {
	r.booted <- eng
	return gnet.None
}

// OnOpen starts a session for an accepted client, or, for the backend connection that
// OnTraffic asked gnet to open, sends it the client's request.
func (r *relay) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if sd, ok := c.Context().(*side); ok { // the backend: Register passed its side as context
		s := sd.s
		if s.phase != dialing { // the client left meanwhile
			return nil, gnet.Close
		}
		sd.conn = c
		s.phase = waiting
		req := s.request
		s.request = nil
		return req, gnet.None
	}
	s := &session{}
	s.sides[fromClient] = side{s: s, dir: fromClient, conn: c}
	s.sides[fromBackend] = side{s: s, dir: fromBackend}
	c.SetContext(&s.sides[fromClient])
	return nil, gnet.None
}

func (r *relay) OnTraffic(c gnet.Conn) gnet.Action {
	sd := c.Context().(*side)
	s := sd.s
	switch s.phase {
	case reading:
		return r.readRequest(sd)
	case dialing, waiting:
		if sd.dir == fromBackend {
			return r.readResponse(sd)
		}
		if c.InboundBuffered() > r.cfg.Hold { // frames before the 101: held, within reason
			return gnet.Close
		}
		return gnet.None
	case relaying:
		a := r.pump(sd)
		if p := sd.peer(); a == gnet.None && p.stalled {
			a = r.pump(p) // this side may have drained: try the other direction again
			if a == gnet.Close {
				_ = p.conn.Close()
			}
			return gnet.None
		}
		return a
	case passthrough:
		buf, _ := c.Peek(0)
		if sd.dir == fromBackend {
			_, _ = sd.peer().conn.Write(buf)
		}
		_, _ = c.Discard(len(buf))
	}
	return gnet.None
}

// readRequest waits for the whole upgrade request, keeps it and asks gnet to connect to the
// backend on this loop. The request is not checked: this is a prototype of the data plane.
func (r *relay) readRequest(sd *side) gnet.Action {
	c := sd.conn
	buf, _ := c.Peek(0)
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(buf) > maxHead {
			r.refuse(sd.s, c, 431, "the request head is too large")
			return gnet.Close
		}
		return gnet.None
	}
	end += 4
	s := sd.s
	s.request = append([]byte(nil), buf[:end]...)
	_, _ = c.Discard(end)
	s.phase = dialing
	loop := c.EventLoop()
	res, err := loop.Register(gnet.NewContext(r.ctx, &s.sides[fromBackend]), r.cfg.Backend)
	if err != nil {
		r.refuse(s, c, 502, "the backend is unreachable")
		return gnet.Close
	}
	go r.awaitDial(res, loop, s)
	return gnet.None
}

// awaitDial answers 502 when gnet could not connect to the backend. gnet dials on a goroutine
// of its worker pool and reports only on this channel, so a goroutine waits for each dial.
func (r *relay) awaitDial(res <-chan gnet.RegisteredResult, loop gnet.EventLoop, s *session) {
	rr := <-res
	if rr.Err == nil {
		return
	}
	r.log.Warn("connecting to the backend", "err", rr.Err)
	_ = loop.Execute(r.ctx, gnet.RunnableFunc(func(context.Context) error {
		if s.phase == dialing {
			c := s.sides[fromClient].conn
			r.refuse(s, c, 502, "the backend is unreachable")
			_ = loop.Close(c)
		}
		return nil
	}))
}

// readResponse waits for the backend's response head and passes it to the client. A 101 starts
// the relay; anything else is passed on verbatim until one side closes.
func (r *relay) readResponse(sd *side) gnet.Action {
	c := sd.conn
	buf, _ := c.Peek(0)
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		if len(buf) > maxHead {
			r.refuse(sd.s, sd.peer().conn, 502, "the backend's response head is too large")
			return gnet.Close
		}
		return gnet.None
	}
	end += 4
	s := sd.s
	client := sd.peer()
	if !bytes.HasPrefix(buf, []byte("HTTP/1.1 101 ")) {
		s.phase = passthrough
		r.totals.refused.Add(1)
		_, _ = client.conn.Write(buf)
		_, _ = c.Discard(len(buf))
		return gnet.None
	}
	_, _ = client.conn.Write(buf[:end])
	_, _ = c.Discard(end)
	s.phase = relaying
	if a := r.pump(client); a == gnet.Close { // frames the client sent before the 101
		_ = client.conn.Close()
		return gnet.None
	}
	return r.pump(sd)
}

// pump passes the frames src has buffered to its peer, unless the peer's outbound buffer is
// over the bound: then src is stalled until the peer drains (retried on the next event of
// either side, or on the next tick).
func (r *relay) pump(src *side) gnet.Action {
	c, dst := src.conn, src.peer()
	if dst.conn.OutboundBuffered() > r.cfg.Queue {
		if c.InboundBuffered() > r.cfg.Hold {
			r.totals.dropped.Add(1)
			return gnet.Close
		}
		r.stall(src, true)
		return gnet.None
	}
	r.stall(src, false)
	buf, _ := c.Peek(0)
	n, err := src.scan(buf)
	if n > 0 {
		_, _ = dst.conn.Write(buf[:n])
		_, _ = c.Discard(n)
		src.bytes += int64(n)
	}
	if err != nil {
		r.log.Debug("protocol error", "direction", src.dir, "err", err)
		return gnet.Close
	}
	return gnet.None
}

func (r *relay) stall(sd *side, on bool) {
	if sd.stalled == on {
		return
	}
	sd.stalled = on
	r.mu.Lock()
	if on {
		r.totals.stalls.Add(1)
		r.stalled[sd.conn] = struct{}{}
	} else {
		delete(r.stalled, sd.conn)
	}
	r.mu.Unlock()
	if on && r.hooks.stalled != nil {
		r.hooks.stalled()
	}
}

// OnTick wakes the stalled sides so they look at their peer's buffer again: often while any
// is stalled, rarely otherwise.
func (r *relay) OnTick() (time.Duration, gnet.Action) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.stalled {
		_ = c.Wake(nil)
	}
	if len(r.stalled) > 0 {
		return time.Millisecond, gnet.None
	}
	return 20 * time.Millisecond, gnet.None
}

// OnClose ends the session: the other connection is closed too, after its outbound buffer
// has been written as far as the socket takes it without blocking.
func (r *relay) OnClose(c gnet.Conn, _ error) gnet.Action {
	sd, ok := c.Context().(*side)
	if !ok {
		return gnet.None
	}
	r.stall(sd, false)
	s := sd.s
	if s.phase == closed {
		return gnet.None
	}
	if s.phase < relaying {
		r.totals.refused.Add(1)
	}
	s.phase = closed
	p := sd.peer()
	r.stall(p, false)
	if p.conn != nil {
		_ = p.conn.Close()
	}
	r.totals.sessions.Add(1)
	for d := range 2 {
		r.totals.messages[d].Add(s.sides[d].messages)
		r.totals.bytes[d].Add(s.sides[d].bytes)
	}
	if r.hooks.ended != nil {
		r.hooks.ended()
	}
	return gnet.None
}

// refuse writes an error response to the client, as the gateway writes its errors.
func (r *relay) refuse(s *session, c gnet.Conn, status int, message string) {
	if s.phase == closed {
		return
	}
	body := fmt.Sprintf(`{"statusCode":%d,"message":%q}`, status, message)
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		status, statusText(status), len(body))
	_, _ = c.Write([]byte(head + body))
}

func statusText(status int) string {
	switch status {
	case 431:
		return "Request Header Fields Too Large"
	case 502:
		return "Bad Gateway"
	}
	return ""
}

// gnetLogger passes gnet's log lines to slog.
type gnetLogger struct{ log *slog.Logger }

func (l gnetLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
func (l gnetLogger) Fatalf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
