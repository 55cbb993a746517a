package wsproxy

import (
	"bufio"
	"context"
	"net"
	"sync"
)

// Session relays frames between a client and a backend connection. Create it with
// NewSession (or Engine.NewSession), call Start or Run once, and call Close from any
// goroutine to end it early. Every method is safe for concurrent use.
//
// A session runs on one of two engines. The event-loop engine (Engine, Linux; TCP, and TLS
// layered by TLSListener or Dial with an Engine) keeps both connections of a session on one
// event loop, which reads, parses frame headers and writes for every session it owns. The
// goroutine engine relays each direction on a goroutine while frames flow and parks quiet
// directions in an epoll set; it serves every other connection and every system.
type Session struct {
	impl interface {
		Start(ctx context.Context, done func(Stats))
		Close(code uint16, reason string)
		Stats() Stats
	}
}

// NewSession prepares a session of the goroutine engine between the hijacked client
// connection (with the reader Upgrade returned, or nil) and the upgraded backend. The session
// owns both connections from now on: it closes them when it ends. Bytes already buffered by
// clientReader or be.Reader are relayed first; the readers themselves are not used again.
func NewSession(client net.Conn, clientReader *bufio.Reader, be *Backend, limits Limits, hooks Hooks) *Session {
	// Connections outside the runtime's poller (a Front's client, a backend a loop dialed)
	// move into it.
	client, be.Conn = detached(client), detached(be.Conn)
	return &Session{impl: newGoSession(client, clientReader, be, limits, hooks)}
}

// Start starts relaying and returns at once; done is called once, on some goroutine, with the
// session's Stats when it is over. The session ends after both sides have exchanged close
// frames, after one connection ends (the other side then gets close 1001 "going away"; 1005
// and 1006 are never sent), or after a gateway close (Close, a limit, a hook, the idle
// timeout, or ctx ending, which acts as Close(1001, "going away")) has been answered by both
// sides; a closing session waits at most Limits.CloseTimeout. Both connections are closed
// before done is called. done must not block; it may call any method of the session.
func (s *Session) Start(ctx context.Context, done func(Stats)) { s.impl.Start(ctx, done) }

// Close ends the session from the gateway's side: frames stop being relayed, both sides
// get a close frame with code and reason (masked toward the backend), and the connections
// are closed once both have answered or after Limits.CloseTimeout. Codes that may not be
// sent (RFC 6455 §7.4) become 1001; a reason is cut to 123 bytes. Close does not block and
// does nothing once the gateway is already closing the session.
func (s *Session) Close(code uint16, reason string) { s.impl.Close(code, reason) }

// Stats returns the session's counters so far and how it closed, if it has.
func (s *Session) Stats() Stats { return s.impl.Stats() }

// Run relays frames until the session is over and returns its Stats: it is Start followed
// by waiting for the session to end.
func (s *Session) Run(ctx context.Context) Stats {
	ended := make(chan Stats, 1)
	s.Start(ctx, func(st Stats) { ended <- st })
	return <-ended
}

// NewSession is the package's NewSession on the engine's event loops when each connection is
// plain TCP or TLS the loops can take over (a client's over TLSListener, a wss backend's
// that Dial dialed with an Engine); otherwise (other connections, a nil engine) the session
// runs on the goroutine engine.
func (e *Engine) NewSession(client net.Conn, clientReader *bufio.Reader, be *Backend, limits Limits, hooks Hooks) *Session {
	if e != nil {
		if s := e.newLoopSession(client, clientReader, be, limits, hooks); s != nil {
			return &Session{impl: s}
		}
	}
	return NewSession(client, clientReader, be, limits, hooks)
}

// detacher is a connection outside the runtime's poller that can move into it.
type detacher interface{ detach() (net.Conn, error) }

// detached is c moved into the runtime's poller when it is outside it, else c.
func detached(c net.Conn) net.Conn {
	if d, ok := c.(detacher); ok {
		if nc, err := d.detach(); err == nil {
			return nc
		}
	}
	return c
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	// Loops is the number of event loops; 0 means one per GOMAXPROCS.
	Loops int
	// NoRing makes the loops read and write with one system call per socket instead of
	// batching through io_uring (which they also give up by themselves where the kernel
	// refuses it).
	NoRing bool
	// SpareProcs raises GOMAXPROCS by the number of loops when the engine starts (unless the
	// GOMAXPROCS variable is set). Each loop holds a thread, and its P while it waits in
	// epoll_wait: with a P per loop and none to spare, the runtime's monitor keeps taking
	// Ps back from waiting loops and handing them on, and waking every 20 µs to do so, which
	// cost more than the loops' own work on REST requests (docs/performance.md, "Spare Ps").
	SpareProcs bool
}

var defaultEngine struct {
	once sync.Once
	e    *Engine
	err  error
}

// DefaultEngine returns the process's event-loop engine, started on first use with that
// call's options (the nodes of one process share it). It fails where the engine is
// unsupported (errors.ErrUnsupported off Linux).
func DefaultEngine(opt EngineOptions) (*Engine, error) {
	defaultEngine.once.Do(func() { defaultEngine.e, defaultEngine.err = NewEngine(opt) })
	return defaultEngine.e, defaultEngine.err
}
