// Package fleet is management's view of the gateway nodes: it receives their heartbeats over
// NATS (bus.HeartbeatSubjects), keeps only those a node authenticated with its gateway's node
// key and that are fresh (not replayed), tells which nodes of a gateway resource are live and
// which configuration revision each serves, and waits until they all serve a revision.
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
	// DefaultMaxSkew is far beyond the clock differences of hosts that keep time, and short
	// enough that a captured heartbeat is of little use for long.
	DefaultMaxSkew = time.Minute
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
	// MaxSkew is how far from the Registry's clock, either way, a heartbeat's Sent time may be
	// for it to be accepted; a heartbeat must also be sent after the last one accepted from its
	// node, so that a captured heartbeat published again is dropped (issue 12). Zero means
	// DefaultMaxSkew.
	MaxSkew time.Duration
	Log     *slog.Logger
	// Keys checks the node authentication of heartbeats and live-connection replies against
	// the current keys of the gateway they claim (gatewaykeys.Cache). Without it no message
	// verifies, so no node is ever listed.
	Keys NodeAuth
	// Rejected, if set, is told of every heartbeat or reply dropped because its node
	// authentication is missing or wrong (reason "unsigned" or "forged"), and of every
	// authenticated heartbeat dropped as "replayed" (not sent after the last one of its node) or
	// "stale" (sent more than MaxSkew from now): kind "heartbeat" or "reply"
	// (metrics.Management.NodeMessageRejected). Called on NATS's goroutines.
	Rejected func(kind, reason string)
}

// NodeAuth checks the node authentication of a message.
type NodeAuth interface {
	// Verify checks auth, a bus.HeaderNodeAuth value, over a message on subject with data from
	// a node of gateway in the service serviceID; the error wraps configwire.ErrUnsigned or
	// configwire.ErrForged.
	Verify(subject string, data []byte, auth, serviceID, gateway string) error
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

	mu    sync.Mutex
	nodes map[string]*Node
	// gone holds, by node id, when the last heartbeat accepted from a node no longer listed
	// (stopped or forgotten) was sent, while a replay of it would not be stale: a replayed
	// heartbeat must not list the node again.
	gone      map[string]time.Time
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
	if opt.MaxSkew <= 0 {
		opt.MaxSkew = DefaultMaxSkew
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Registry{opt: opt, nodes: map[string]*Node{}, gone: map[string]time.Time{}, changed: make(chan struct{})}
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
	now := time.Now()
	switch reason := r.observe(hb, now); reason {
	case "":
	case reasonStale:
		r.count("heartbeat", reason)
		r.opt.Log.Warn("heartbeat dropped: sent too far from this management's clock (a replay, a node whose clock is wrong, or one held back by a bus outage)",
			"node_id", hb.NodeID, "gateway", hb.Gateway, "sent", hb.Sent, "skew", hb.Sent.Sub(now), "max_skew", r.opt.MaxSkew)
	default:
		r.count("heartbeat", reason)
		r.opt.Log.Warn("replayed heartbeat dropped: not sent after the node's last", "node_id", hb.NodeID, "gateway", hb.Gateway, "sent", hb.Sent)
	}
}

// Reasons observe drops an authenticated heartbeat for.
const (
	reasonStale    = "stale"
	reasonReplayed = "replayed"
)

// authenticate checks the node authentication of m, a message from a node of gateway in the
// service serviceID: only management and that gateway's nodes know the key (issue 12), so a
// node of another gateway, or anyone else on the bus, cannot speak for it.
func (r *Registry) authenticate(m *nats.Msg, serviceID, gateway string) error {
	return Authenticate(r.opt.Keys, m, serviceID, gateway)
}

// Authenticate checks the node authentication of m, a message from a node of gateway in the
// service serviceID, with keys (nil: nothing verifies). It returns nil,
// or an error wrapping configwire.ErrUnsigned or configwire.ErrForged.
func Authenticate(keys NodeAuth, m *nats.Msg, serviceID, gateway string) error {
	auth := m.Header.Get(bus.HeaderNodeAuth)
	if auth == "" {
		return configwire.ErrUnsigned
	}
	if keys == nil {
		return configwire.ErrForged
	}
	return keys.Verify(m.Subject, m.Data, auth, serviceID, gateway)
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
	r.count(kind, RejectReason(err))
}

// count tells Options.Rejected of a dropped message.
func (r *Registry) count(kind, reason string) {
	if r.opt.Rejected != nil {
		r.opt.Rejected(kind, reason)
	}
}

// observe records hb, an authenticated heartbeat received at now, or returns why it drops it:
// reasonStale when it was sent more than MaxSkew from now, reasonReplayed when it was not sent
// after the last heartbeat accepted from its node. A heartbeat dropped because MaxNodes are
// known is no attack and returns "".
func (r *Registry) observe(hb configwire.Heartbeat, now time.Time) string {
	if skew := now.Sub(hb.Sent); skew > r.opt.MaxSkew || skew < -r.opt.MaxSkew {
		return reasonStale
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prune(now)
	cur, known := r.nodes[hb.NodeID]
	last, seen := r.gone[hb.NodeID]
	if known {
		last, seen = cur.Sent, true
	}
	switch {
	case seen && !hb.Sent.After(last):
		return reasonReplayed
	case hb.Stopping:
		r.gone[hb.NodeID] = hb.Sent
		if !known {
			return ""
		}
		delete(r.nodes, hb.NodeID)
	case !known && len(r.nodes) >= r.opt.MaxNodes:
		if !r.full {
			r.full = true
			r.opt.Log.Warn("too many gateway nodes; heartbeats of further nodes are dropped", "max_nodes", r.opt.MaxNodes)
		}
		return ""
	default:
		delete(r.gone, hb.NodeID)
		r.nodes[hb.NodeID] = &Node{Heartbeat: hb, LastSeen: now}
	}
	close(r.changed)
	r.changed = make(chan struct{})
	return ""
}

// prune drops the nodes stale for ForgetAfter, remembering when their last heartbeat was sent
// in gone, and forgets what gone holds once a replay would be stale anyway; at most once every
// min(ForgetAfter, MaxSkew)/10. r.mu is held.
func (r *Registry) prune(now time.Time) {
	if now.Sub(r.lastPrune) < min(r.opt.ForgetAfter, r.opt.MaxSkew)/10 {
		return
	}
	r.lastPrune = now
	for id, n := range r.nodes {
		if now.Sub(r.liveUntil(n)) > r.opt.ForgetAfter {
			delete(r.nodes, id)
			r.gone[id] = n.Sent
		}
	}
	for id, sent := range r.gone {
		if now.Sub(sent) > r.opt.MaxSkew {
			delete(r.gone, id)
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
