package traffic

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy"
)

// ConnInfo describes an open WebSocket session for revocation and reporting.
type ConnInfo struct {
	API          string
	Subscription string
	Product      string
	RequestID    string
	// KeyHash is the SHA-256 of the subscription key the session presented (zero without one);
	// revocation re-resolves it against each new configuration.
	KeyHash [32]byte
	HasKey  bool
	// Counters are the <limit-connections> counters the session holds a place under.
	Counters []string
	// ClientIP is the address the client connected from, when known.
	ClientIP netip.Addr
}

type conn struct {
	sess  *wsproxy.Session
	info  ConnInfo
	cause causePtr
	since time.Time
}

// Open is a snapshot of one registered session: what it is, since when it is open, and its
// counters so far. Stats.ClosedBy is set once the session is closing.
type Open struct {
	ConnInfo
	Since time.Time
	Stats wsproxy.Stats
}

// Registry tracks every open WebSocket session so drain and revocation can find them. It is
// safe for concurrent use.
type Registry struct {
	mu    sync.Mutex
	next  uint64
	conns map[uint64]conn
	// drain is set once Drain starts: a session registered later (its handshake was already
	// under way) is closed at once with drain's code and reason.
	drain *drainNotice
}

type drainNotice struct {
	code   uint16
	reason string
	// empty is closed once no session is left, which ends Drain's wait.
	empty  chan struct{}
	closed bool // empty is closed
}

// emptiedLocked closes d.empty when the registry holds no session; g.mu is held.
func (g *Registry) emptiedLocked() {
	if d := g.drain; d != nil && !d.closed && len(g.conns) == 0 {
		close(d.empty)
		d.closed = true
	}
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{conns: map[uint64]conn{}} }

func (g *Registry) add(s *wsproxy.Session, info ConnInfo, cause causePtr) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next++
	g.conns[g.next] = conn{sess: s, info: info, cause: cause, since: time.Now()}
	if d := g.drain; d != nil {
		s.Close(d.code, d.reason)
	}
	return g.next
}

func (g *Registry) remove(id uint64) {
	g.mu.Lock()
	delete(g.conns, id)
	g.emptiedLocked()
	g.mu.Unlock()
}

// Len is the number of open sessions.
func (g *Registry) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// List returns the open sessions whose info matches (every one when match is nil), in no
// particular order.
func (g *Registry) List(match func(ConnInfo) bool) []Open {
	g.mu.Lock()
	var hit []conn
	for _, c := range g.conns {
		if match == nil || match(c.info) {
			hit = append(hit, c)
		}
	}
	g.mu.Unlock()
	out := make([]Open, len(hit))
	for i, c := range hit {
		out[i] = Open{ConnInfo: c.info, Since: c.since, Stats: c.sess.Stats()}
	}
	return out
}

// CloseWhere closes, with code and reason, every session whose info matches and that is not
// closing already; it returns how many it closed.
func (g *Registry) CloseWhere(match func(ConnInfo) bool, code uint16, reason string) int {
	g.mu.Lock()
	var hit []*wsproxy.Session
	for _, c := range g.conns {
		if match(c.info) {
			hit = append(hit, c.sess)
		}
	}
	g.mu.Unlock()
	n := 0
	for _, s := range hit {
		if s.Stats().ClosedBy == "" {
			s.Close(code, reason)
			n++
		}
	}
	return n
}

// Drain closes every session with code and reason, spreading the closes over most of the
// time left before ctx's deadline so clients do not all reconnect at once, then waits for the
// sessions to end or ctx to expire. It returns as soon as the last session has ended, without
// waiting out the pause that would follow a close: a node with one open session stops when
// that session has closed.
func (g *Registry) Drain(ctx context.Context, code uint16, reason string) {
	g.mu.Lock()
	d := &drainNotice{code: code, reason: reason, empty: make(chan struct{})}
	g.drain = d
	g.emptiedLocked()
	sessions := make([]*wsproxy.Session, 0, len(g.conns))
	for _, c := range g.conns {
		sessions = append(sessions, c.sess)
	}
	g.mu.Unlock()
	var step time.Duration
	if dl, ok := ctx.Deadline(); ok && len(sessions) > 0 {
		step = time.Until(dl) * 7 / 10 / time.Duration(len(sessions))
	}
	for i, s := range sessions {
		if i > 0 && step > 0 {
			// The pause comes between closes, never after the last one.
			pause := time.NewTimer(step)
			select {
			case <-ctx.Done():
			case <-d.empty:
			case <-pause.C:
			}
			pause.Stop()
		}
		s.Close(code, reason)
	}
	select {
	case <-ctx.Done():
	case <-d.empty:
	}
}
