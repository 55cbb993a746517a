// Package fleet is management's view of the gateway nodes: it receives their heartbeats over
// NATS (bus.HeartbeatSubjects), keeps only those a node authenticated with its gateway's node
// key, tells which nodes of a gateway resource are live and which
// configuration revision each serves, and waits until they all serve a revision.
package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// Defaults of Options.
const (
	// DefaultLiveFor is three heartbeat intervals of a gateway node with default settings.
	DefaultLiveFor     = 30 * time.Second
	DefaultForgetAfter = 15 * time.Minute
	DefaultMaxNodes    = 10000
)

// Options configure a Registry; the zero value is usable.
type Options struct {
	// LiveFor is how long after its last heartbeat a node counts as live; zero means
	// DefaultLiveFor. A node that reports a longer interval is live for three of its intervals.
	LiveFor time.Duration
	// ForgetAfter is how long a node stays listed once stale before it is dropped; zero means
	// DefaultForgetAfter.
	ForgetAfter time.Duration
	// MaxNodes bounds the nodes kept in memory; heartbeats of further nodes are dropped. Zero
	// means DefaultMaxNodes.
	MaxNodes int
	Log      *slog.Logger
	// Keys derives the node keys heartbeats and live-connection replies are authenticated
	// with (signing.Keyring). Without it no message verifies, so no node is ever listed.
	Keys NodeKeys
	// Rejected, if set, is told of every heartbeat or reply dropped because its node
	// authentication is missing or wrong: kind "heartbeat" or "reply", reason "unsigned" or
	// "forged" (metrics.Management.NodeMessageRejected). Called on NATS's goroutines.
	Rejected func(kind, reason string)
}

// NodeKeys derives a gateway's node key from a key id; false when the id is unknown.
type NodeKeys interface {
	NodeKeyFor(id, serviceID, gateway string) (configwire.NodeKey, bool)
}

// Node is what management knows of one gateway node: its last heartbeat, when that arrived, and
// whether the node is live (heard from within its liveness window).
type Node struct {
	configwire.Heartbeat
	LastSeen time.Time
	Live     bool
}

// Registry holds the nodes heard from, keyed by node id. It is safe for concurrent use. A nil
// *Registry knows no nodes: Nodes returns none and Wait returns at once.
type Registry struct {
	opt Options

	mu        sync.Mutex
	nodes     map[string]*Node
	changed   chan struct{} // closed and replaced on every accepted heartbeat
	lastPrune time.Time
	full      bool // MaxNodes reached; logged once
}

// New returns an empty Registry. Subscribe feeds it.
func New(opt Options) *Registry {
	if opt.LiveFor <= 0 {
		opt.LiveFor = DefaultLiveFor
	}
	if opt.ForgetAfter <= 0 {
		opt.ForgetAfter = DefaultForgetAfter
	}
	if opt.MaxNodes <= 0 {
		opt.MaxNodes = DefaultMaxNodes
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Registry{opt: opt, nodes: map[string]*Node{}, changed: make(chan struct{})}
}

// Subscribe feeds the Registry with the heartbeats published on nc's server, on core NATS: every
// management replica that subscribes receives every heartbeat. Heartbeats arrive until the
// returned subscription is unsubscribed or nc closes. When Subscribe returns while nc is
// connected, the server knows the subscription; a disconnected nc (still trying its first
// connect, or reconnecting) sends it once connected.
func (r *Registry) Subscribe(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(bus.HeartbeatSubjects, r.receive)
	if err != nil {
		return nil, err
	}
	// A disconnected nc sends the subscription when it (re)connects: not an error, and no
	// reason to wait for a server that is not there.
	if nc.IsConnected() {
		_ = nc.FlushTimeout(5 * time.Second)
	}
	return sub, nil
}

func (r *Registry) receive(m *nats.Msg) {
	var hb configwire.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		r.opt.Log.Debug("undecodable heartbeat dropped", "subject", m.Subject, "err", err)
		return
	}
	if err := hb.Validate(); err != nil {
		r.opt.Log.Debug("invalid heartbeat dropped", "subject", m.Subject, "err", err)
		return
	}
	if m.Subject != bus.HeartbeatSubject(hb.ServiceID, hb.Gateway) {
		r.opt.Log.Debug("heartbeat on a subject not its own dropped", "subject", m.Subject, "node_id", hb.NodeID)
		return
	}
	if err := r.authenticate(m, hb.ServiceID, hb.Gateway); err != nil {
		r.reject("heartbeat", err)
		r.opt.Log.Warn("unauthenticated heartbeat dropped", "subject", m.Subject, "node_id", hb.NodeID, "err", err)
		return
	}
	r.observe(hb, time.Now())
}

// authenticate checks the node authentication of m, a message from a node of gateway in the
// service serviceID: only management and that gateway's nodes know the key (issue 12), so a
// node of another gateway, or anyone else on the bus, cannot speak for it.
func (r *Registry) authenticate(m *nats.Msg, serviceID, gateway string) error {
	return Authenticate(r.opt.Keys, m, serviceID, gateway)
}

// Authenticate checks the node authentication of m, a message from a node of gateway in the
// service serviceID, with the node keys keys derives (nil: nothing verifies). It returns nil,
// or an error wrapping configwire.ErrUnsigned or configwire.ErrForged.
func Authenticate(keys NodeKeys, m *nats.Msg, serviceID, gateway string) error {
	auth := m.Header.Get(bus.HeaderNodeAuth)
	if auth == "" {
		return configwire.ErrUnsigned
	}
	if keys == nil {
		return configwire.ErrForged
	}
	key, ok := keys.NodeKeyFor(configwire.NodeAuthKeyID(auth), serviceID, gateway)
	if !ok {
		return configwire.ErrForged
	}
	return key.Verify(m.Subject, m.Data, auth)
}

// RejectReason is the metric reason of an Authenticate error: "unsigned" or "forged".
func RejectReason(err error) string {
	if errors.Is(err, configwire.ErrUnsigned) {
		return "unsigned"
	}
	return "forged"
}

// reject counts a message dropped by authenticate.
func (r *Registry) reject(kind string, err error) {
	if r.opt.Rejected != nil {
		r.opt.Rejected(kind, RejectReason(err))
	}
}

// observe records hb, received at now.
func (r *Registry) observe(hb configwire.Heartbeat, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune(now)
	cur, known := r.nodes[hb.NodeID]
	switch {
	case known && hb.Sent.Before(cur.Sent):
		return // overtaken by a newer heartbeat
	case hb.Stopping:
		if !known {
			return
		}
		delete(r.nodes, hb.NodeID)
	case !known && len(r.nodes) >= r.opt.MaxNodes:
		if !r.full {
			r.full = true
			r.opt.Log.Warn("too many gateway nodes; heartbeats of further nodes are dropped", "max_nodes", r.opt.MaxNodes)
		}
		return
	default:
		r.nodes[hb.NodeID] = &Node{Heartbeat: hb, LastSeen: now}
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// prune drops the nodes stale for ForgetAfter, at most once every ForgetAfter/10. r.mu is held.
func (r *Registry) prune(now time.Time) {
	if now.Sub(r.lastPrune) < r.opt.ForgetAfter/10 {
		return
	}
	r.lastPrune = now
	for id, n := range r.nodes {
		if now.Sub(r.liveUntil(n)) > r.opt.ForgetAfter {
			delete(r.nodes, id)
		}
	}
	if len(r.nodes) < r.opt.MaxNodes {
		r.full = false
	}
}

// liveUntil is when n goes stale unless it reports again.
func (r *Registry) liveUntil(n *Node) time.Time {
	return n.LastSeen.Add(max(r.opt.LiveFor, 3*n.Interval))
}

// matches reports whether n serves gateway (case-insensitively, as ARM names compare) of
// serviceID; gateway "" matches every gateway of the service.
func matches(n *Node, serviceID, gateway string) bool {
	return n.ServiceID == serviceID && (gateway == "" || strings.EqualFold(n.Gateway, gateway))
}

// Nodes returns the nodes of gateway in the service with internal id serviceID (every gateway
// of the service when gateway is ""), live and stale, sorted by gateway, host name and node id.
func (r *Registry) Nodes(serviceID, gateway string) []Node {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	r.prune(now)
	var out []Node
	for _, n := range r.nodes {
		if matches(n, serviceID, gateway) {
			c := *n
			c.Live = now.Before(r.liveUntil(n))
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Node) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.Gateway), strings.ToLower(b.Gateway)),
			strings.Compare(a.Hostname, b.Hostname), strings.Compare(a.NodeID, b.NodeID))
	})
	return out
}

// Wait blocks until every live node of gateway in the service serviceID (of every gateway of
// the service when gateway is "") reports a revision of at least revision, and returns nil. A
// node that goes stale while Wait waits no longer holds it up; with no live node Wait returns
// at once. When ctx ends first, Wait returns the live nodes still behind and ctx's error.
func (r *Registry) Wait(ctx context.Context, serviceID, gateway string, revision int64) ([]Node, error) {
	if r == nil {
		return nil, nil
	}
	for {
		r.mu.Lock()
		now := time.Now()
		var (
			behind []Node
			next   time.Time // when the first node behind goes stale
		)
		for _, n := range r.nodes {
			until := r.liveUntil(n)
			if !matches(n, serviceID, gateway) || n.Revision >= revision || !now.Before(until) {
				continue
			}
			c := *n
			c.Live = true
			behind = append(behind, c)
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if len(behind) == 0 {
			return nil, nil
		}
		timer := time.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			slices.SortFunc(behind, func(a, b Node) int { return strings.Compare(a.NodeID, b.NodeID) })
			return behind, ctx.Err()
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}
