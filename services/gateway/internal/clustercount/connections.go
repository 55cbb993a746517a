package clustercount

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/bus"
)

// Defaults of ConnectionsOptions.
const (
	DefaultConnectionsBucket = bus.ConnectionsBucket
	DefaultRefresh           = 2 * time.Second
	DefaultAcquireTimeout    = 250 * time.Millisecond
)

// snapsKept bounds the fleet snapshots kept per counter for publications not yet decided.
const snapsKept = 64

// ConnectionsOptions configure Connections.
type ConnectionsOptions struct {
	// NodeID identifies this node in the fleet (the heartbeat's node id); required.
	NodeID string
	// JetStream returns the node's JetStream context, or nil while NATS is not known yet. Run
	// polls it; nil means local counting only.
	JetStream func() jetstream.JetStream
	// ServiceID returns the internal id of the node's service, "" while it has none (before
	// its first snapshot). The node's keys and eviction requests are its service's
	// (bus.CounterKey, bus.EvictSubject), and it follows no other service's, so services never
	// share a count and the bus lets a node reach its own service's only (issue 12). Run polls
	// it with JetStream; while it is "" (or nil) the node counts locally.
	ServiceID func() string
	// OnEvict closes this node's oldest connection of counter (the one whose Acquire came
	// first) and reports whether it closed one. It must call that connection's release,
	// before it returns or soon after. Nil means this node never evicts.
	OnEvict func(counter string) (closed bool)
	// Bucket names the KV bucket (memory storage) of the per-node counts (default
	// DefaultConnectionsBucket).
	Bucket string
	// Refresh is how often a node republishes its counts (default 2 s); TTL is how long a
	// count lives without being republished (default 3 × Refresh + 1 s), so a dead node's
	// connections stop counting within TTL.
	Refresh, TTL time.Duration
	// Timeout bounds Acquire's wait for the fleet (default 250 ms); past it Acquire decides on
	// what this node knows.
	Timeout time.Duration
	// Replicas of the bucket on a clustered NATS (default 1).
	Replicas int
	Log      *slog.Logger
}

// Connections counts concurrent connections per counter (a policy and subscription or key)
// across the fleet, so that a connection limit holds for the fleet rather than per node.
//
// Each node publishes its own count of each counter to the KV bucket under the key
// "<service token>.<counter token>.<node token>", with the start time of its oldest
// connection, whenever the count changes and every Refresh; the bucket's TTL drops the keys of
// nodes that stopped publishing. Each node watches its service's keys in the bucket, so it
// knows the counts of every node of its service.
//
// Consistency: an Acquire first counts itself as pending and publishes the node's count
// including it, then decides once the node's watch has reached that publication: it is
// admitted when the other nodes' counts as of that point in the bucket's history, plus this
// node's admitted connections, leave room. The bucket's history orders the publications of
// all nodes, so of two racing Acquires on different nodes the later one sees the earlier one
// (pending or admitted) and the fleet never admits more than the limit. The price is that a
// pending Acquire that is then rejected still counts until its node republishes, so racing
// nodes may reject a connection that would have fit.
//
// The limit can be exceeded while NATS is unavailable or slower than Timeout (each node then
// counts what it knows: its own connections and the last counts it saw of the others); for up
// to TTL after a node is cut off from NATS while keeping its connections; and if a node's
// watch falls more than 64 publications of one other node's count behind (the bucket keeps 64
// revisions per key, and a watch skips those that are gone).
//
// Run keeps the node's part of the fleet state; without it (or without NATS) Connections
// counts this node's connections only. Connections is safe for concurrent use.
type Connections struct {
	opt  ConnectionsOptions
	node string
	kick chan struct{}
	wake chan struct{} // Prepare: look for the JetStream context now
	sync chan chan struct{}

	mu       sync.Mutex
	counters map[string]*connCounter          // by token
	fleet    map[string]map[string]fleetEntry // token → other node → its count
	snaps    map[string][]fleetSnap           // token → others' total at each own publication
	applied  uint64                           // the last bucket revision the watch applied
	advanced chan struct{}                    // closed when applied grows
	live     bool                             // the watch is current
	nextID   uint64
}

// connCounter is this node's state of one counter.
type connCounter struct {
	token   string
	conns   map[uint64]time.Time // admitted connections' start times, by id
	pending int                  // Acquires counted but not decided
	waiters []*acquire           // pending Acquires not yet published
	dirty   bool                 // may have changed since last published
	force   bool                 // to publish even if unchanged (refresh)
	shown   countValue           // the value last published
}

type acquire struct {
	limit int
	start time.Time
	done  bool
	ok    bool
	id    uint64
	ch    chan struct{}
}

// fleetEntry is another node's published count of a counter.
type fleetEntry struct {
	n      int
	oldest int64 // Unix nanoseconds; 0 = no connection
	seen   time.Time
}

type fleetSnap struct {
	rev    uint64
	others int
}

// countValue is the KV value a node publishes for a counter.
type countValue struct {
	N      int   `json:"n"`
	Oldest int64 `json:"oldest,omitempty"` // Unix nanoseconds
}

// evictRequest is the body of an eviction request; Node is the node that should evict.
type evictRequest struct {
	Node    string `json:"node"`
	Counter string `json:"counter"`
}

type evictReply struct {
	Closed bool `json:"closed"`
}

// NewConnections returns Connections with opt.
func NewConnections(opt ConnectionsOptions) (*Connections, error) {
	node := nodeToken(opt.NodeID)
	if node == "" {
		return nil, errors.New("clustercount: ConnectionsOptions.NodeID is required")
	}
	if opt.Bucket == "" {
		opt.Bucket = DefaultConnectionsBucket
	}
	if opt.Refresh <= 0 {
		opt.Refresh = DefaultRefresh
	}
	if opt.TTL <= opt.Refresh {
		opt.TTL = 3*opt.Refresh + time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultAcquireTimeout
	}
	if opt.Replicas <= 0 {
		opt.Replicas = 1
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Connections{opt: opt, node: node, kick: make(chan struct{}, 1), wake: make(chan struct{}, 1), sync: make(chan chan struct{}),
		counters: make(map[string]*connCounter), fleet: make(map[string]map[string]fleetEntry),
		snaps: make(map[string][]fleetSnap), advanced: make(chan struct{})}, nil
}

// Acquire counts one more connection of counter if the fleet holds fewer than limit. When ok,
// release must be called once the connection ends (later calls do nothing); when not, release
// does nothing. A canceled ctx rejects.
func (c *Connections) Acquire(ctx context.Context, counter string, limit int) (ok bool, release func()) {
	noop := func() {}
	if limit <= 0 {
		return false, noop
	}
	a := &acquire{limit: limit, start: time.Now(), ch: make(chan struct{}, 1)}
	c.mu.Lock()
	cc := c.counterLocked(counter)
	if !c.live {
		c.decideLocallyLocked(cc, a)
		c.mu.Unlock()
		c.poke()
		return c.result(cc, a)
	}
	cc.pending++
	cc.waiters = append(cc.waiters, a)
	cc.dirty = true
	c.mu.Unlock()
	c.poke()

	timer := time.NewTimer(c.opt.Timeout)
	defer timer.Stop()
	select {
	case <-a.ch:
	case <-timer.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !a.done {
		cc.pending--
		if ctx.Err() != nil {
			a.done = true
			cc.dirty = true
		} else {
			c.decideLocallyLocked(cc, a)
		}
	}
	c.mu.Unlock()
	return c.result(cc, a)
}

// result turns a decided acquire into Acquire's results.
func (c *Connections) result(cc *connCounter, a *acquire) (bool, func()) {
	if !a.ok {
		return false, func() {}
	}
	var once sync.Once
	return true, func() {
		once.Do(func() {
			c.mu.Lock()
			delete(cc.conns, a.id)
			cc.dirty = true
			c.mu.Unlock()
			c.poke()
		})
	}
}

func (c *Connections) counterLocked(name string) *connCounter {
	tok := token(name)
	cc := c.counters[tok]
	if cc == nil {
		cc = &connCounter{token: tok, conns: make(map[uint64]time.Time)}
		c.counters[tok] = cc
	}
	return cc
}

// decideLocallyLocked decides a on what the node knows without asking NATS: its own
// connections and the other nodes' last counts.
func (c *Connections) decideLocallyLocked(cc *connCounter, a *acquire) {
	others := c.othersLocked(cc.token, time.Now())
	c.admitLocked(cc, a, others+len(cc.conns)+cc.pending+1 <= a.limit)
}

// admitLocked records the decision of a, whose pending count the caller has removed.
func (c *Connections) admitLocked(cc *connCounter, a *acquire, ok bool) {
	a.done, a.ok = true, ok
	if ok {
		c.nextID++
		a.id = c.nextID
		cc.conns[a.id] = a.start
	}
	cc.dirty = true
	select {
	case a.ch <- struct{}{}:
	default:
	}
}

// othersLocked is the total of the other nodes' counts of tok that are younger than TTL.
func (c *Connections) othersLocked(tok string, now time.Time) int {
	total := 0
	for _, e := range c.fleet[tok] {
		if now.Sub(e.seen) < c.opt.TTL {
			total += e.n
		}
	}
	return total
}

// Count returns the fleet's count of counter as this node knows it: its own connections and
// pending Acquires plus the other nodes' last published counts.
func (c *Connections) Count(counter string) int {
	tok := token(counter)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.othersLocked(tok, time.Now())
	if cc := c.counters[tok]; cc != nil {
		n += len(cc.conns) + cc.pending
	}
	return n
}

// Shared reports whether the node currently counts with the fleet (Run is following the
// bucket); when false, Acquire decides on what the node last knew.
func (c *Connections) Shared() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// Prepare makes Run look for the JetStream context now rather than at its next poll (every
// Refresh/4), such as when the node has just connected to NATS, so that the node counts with
// the fleet as soon as it can. It never blocks.
func (c *Connections) Prepare() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Connections) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run shares this node's counts and follows the fleet's until ctx ends, reconnecting to
// whatever JetStream opt.JetStream returns, once the node's service is known. It returns nil
// when ctx ends.
func (c *Connections) Run(ctx context.Context) error {
	var logged time.Time
	for {
		if js, svc := c.currentJS(), c.serviceID(); js != nil && svc != "" {
			if err := c.session(ctx, js, svc); err != nil && ctx.Err() == nil && time.Since(logged) >= fallbackLogInterval {
				logged = time.Now()
				c.opt.Log.WarnContext(ctx, "fleet connection counts unavailable, counting on this node only",
					slog.String("error", err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		case <-time.After(c.opt.Refresh / 4):
		}
	}
}

// serviceID is the node's service id, "" while unknown.
func (c *Connections) serviceID() string {
	if c.opt.ServiceID == nil {
		return ""
	}
	return c.opt.ServiceID()
}

// currentJS is the JetStream context to use now, nil while there is none or it is not connected.
func (c *Connections) currentJS() jetstream.JetStream {
	if c.opt.JetStream == nil {
		return nil
	}
	js := c.opt.JetStream()
	if js == nil || js.Conn().Status() != nats.CONNECTED {
		return nil
	}
	return js
}

// session runs while js works and the node's service is svc: it binds the bucket, watches the
// service's keys, answers the service's eviction requests and publishes this node's counts.
func (c *Connections) session(ctx context.Context, js jetstream.JetStream, svc string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	setupCtx, setupDone := context.WithTimeout(ctx, setupTimeout)
	defer setupDone()
	kv, err := bindKeyValue(setupCtx, js, jetstream.KeyValueConfig{
		Bucket:      c.opt.Bucket,
		Description: "Gatehouse concurrent connections per counter and node",
		// Watches skip revisions that are gone, and a revision the watch of another node
		// skipped would be missing from that node's view of the history at its own publication.
		History:  jetstream.KeyValueMaxHistory,
		TTL:      c.opt.TTL,
		Storage:  jetstream.MemoryStorage,
		Replicas: c.opt.Replicas,
	})
	if err != nil {
		return fmt.Errorf("KV bucket %s: %w", c.opt.Bucket, err)
	}
	sub, err := js.Conn().Subscribe(bus.EvictSubjects(svc), func(m *nats.Msg) { c.answerEvict(ctx, svc, m) })
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	w, err := kv.Watch(ctx, bus.CounterKeys(svc)) // ctx, not setupCtx: it bounds the watch's life
	if err != nil {
		return fmt.Errorf("watching %s: %w", c.opt.Bucket, err)
	}
	watched := make(chan error, 1)
	go func() { watched <- c.watch(ctx, w) }()
	defer func() {
		cancel()
		<-watched
		c.goLocal()
	}()

	pre := "$KV." + c.opt.Bucket + "." + bus.ServiceToken(svc) + "."
	tick := time.NewTicker(c.opt.Refresh)
	defer tick.Stop()
	for {
		var synced chan struct{}
		select {
		case <-ctx.Done():
			return nil
		case err := <-watched:
			watched <- err // for the deferred wait
			return err
		case <-tick.C:
			if c.currentJS() != js || c.serviceID() != svc {
				return nil
			}
			c.refresh()
		case <-c.kick:
		case synced = <-c.sync:
		}
		err := c.publish(ctx, js, pre)
		if synced != nil {
			close(synced)
		}
		if err != nil {
			return err
		}
	}
}

// watch applies the bucket's entries to the fleet state until the watch or ctx ends.
func (c *Connections) watch(ctx context.Context, w jetstream.KeyWatcher) error {
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			c.apply(e)
		}
	}
}

// apply records one entry of the bucket (a key of the node's service); nil marks the end of
// the initial values.
func (c *Connections) apply(e jetstream.KeyValueEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e == nil {
		c.live = true
		return
	}
	parts := strings.Split(e.Key(), ".")
	if len(parts) != 3 {
		return
	}
	tok, node := parts[1], parts[2]
	now := time.Now()
	if node == c.node {
		snaps := append(c.snaps[tok], fleetSnap{rev: e.Revision(), others: c.othersLocked(tok, now)})
		if len(snaps) > snapsKept {
			snaps = snaps[len(snaps)-snapsKept:]
		}
		c.snaps[tok] = snaps
	} else {
		var v countValue
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &v) != nil || v.N <= 0 {
			delete(c.fleet[tok], node)
			if len(c.fleet[tok]) == 0 {
				delete(c.fleet, tok)
			}
		} else {
			m := c.fleet[tok]
			if m == nil {
				m = make(map[string]fleetEntry)
				c.fleet[tok] = m
			}
			m[node] = fleetEntry{n: v.N, oldest: v.Oldest, seen: now}
		}
	}
	c.applied = e.Revision()
	close(c.advanced)
	c.advanced = make(chan struct{})
}

// goLocal ends a session: Acquires waiting for it are decided locally.
func (c *Connections) goLocal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = false
	for _, cc := range c.counters {
		for _, a := range cc.waiters {
			if !a.done {
				cc.pending--
				c.decideLocallyLocked(cc, a)
			}
		}
		cc.waiters = nil
		cc.dirty = true
	}
	clear(c.snaps)
}

// refresh marks every count for republishing, so that live ones outlast the bucket's TTL
// (and publish forgets the empty ones), and forgets the other nodes' counts that outlived it.
func (c *Connections) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for _, cc := range c.counters {
		cc.dirty, cc.force = true, true
	}
	for tok, m := range c.fleet {
		for node, e := range m {
			if now.Sub(e.seen) >= c.opt.TTL {
				delete(m, node)
			}
		}
		if len(m) == 0 {
			delete(c.fleet, tok)
		}
	}
}

// published is one count on its way to the bucket.
type published struct {
	cc      *connCounter
	waiters []*acquire
	v       countValue
	ack     jetstream.PubAckFuture
	rev     uint64
}

// publish sends the changed counts under pre (the bucket's subject prefix of the node's
// service), waits until the watch has seen them and decides the Acquires they carried.
func (c *Connections) publish(ctx context.Context, js jetstream.JetStream, pre string) error {
	var batch []*published
	c.mu.Lock()
	for tok, cc := range c.counters {
		if !cc.dirty {
			continue
		}
		// Oldest covers the Acquires this publication carries too: a node that another
		// node's Acquire is rejected for must be one EvictOldest can find, before the
		// publication that says it admitted them.
		v := countValue{N: len(cc.conns) + cc.pending}
		oldest := func(start time.Time) {
			if v.Oldest == 0 || start.UnixNano() < v.Oldest {
				v.Oldest = start.UnixNano()
			}
		}
		for _, start := range cc.conns {
			oldest(start)
		}
		for _, a := range cc.waiters {
			oldest(a.start)
		}
		force := cc.force
		cc.dirty, cc.force = false, false
		if v.N == 0 && cc.shown.N == 0 && len(cc.waiters) == 0 {
			delete(c.counters, tok) // nothing to tell and nothing to remember
			delete(c.snaps, tok)
			continue
		}
		// Waiting Acquires need a publication of their own to be ordered by.
		if v == cc.shown && len(cc.waiters) == 0 && !force {
			continue
		}
		data, _ := json.Marshal(v)
		p := &published{cc: cc, waiters: cc.waiters, v: v}
		cc.waiters = nil
		var err error
		// Async publishes on one connection keep their order, and only this goroutine
		// publishes this node's keys.
		if p.ack, err = js.PublishAsync(pre+tok+"."+c.node, data); err != nil {
			c.mu.Unlock()
			c.decideUnpublished(append(batch, p))
			return err
		}
		batch = append(batch, p)
	}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}

	ctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
	defer cancel()
	var err error
	var last uint64
	for _, p := range batch {
		select {
		case ack := <-p.ack.Ok():
			p.rev = ack.Sequence
			last = max(last, p.rev)
		case err = <-p.ack.Err():
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = c.waitApplied(ctx, last)
	}
	if err != nil {
		c.decideUnpublished(batch)
		return err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.poke() // publish the decisions: admitted connections' start times, rejections
	for _, p := range batch {
		p.cc.shown = p.v
		others, found := c.takeSnapLocked(p.cc.token, p.rev)
		if !found {
			// Not expected; the present is a later point of the history, so it errs on the
			// strict side.
			others = c.othersLocked(p.cc.token, time.Now())
		}
		for _, a := range p.waiters {
			if a.done {
				continue
			}
			p.cc.pending--
			c.admitLocked(p.cc, a, others+len(p.cc.conns)+1 <= a.limit)
		}
	}
	return nil
}

// decideUnpublished decides locally the Acquires of a batch that could not be published, and
// marks the counts to publish again.
func (c *Connections) decideUnpublished(batch []*published) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range batch {
		p.cc.dirty = true
		for _, a := range p.waiters {
			if !a.done {
				p.cc.pending--
				c.decideLocallyLocked(p.cc, a)
			}
		}
	}
}

// takeSnapLocked returns the others' total recorded when the watch applied this node's
// publication rev of tok, dropping it and older ones.
func (c *Connections) takeSnapLocked(tok string, rev uint64) (int, bool) {
	snaps := c.snaps[tok]
	for i, s := range snaps {
		if s.rev == rev {
			c.snaps[tok] = snaps[i+1:]
			return s.others, true
		}
	}
	return 0, false
}

// waitApplied waits until the watch has applied revision rev.
func (c *Connections) waitApplied(ctx context.Context, rev uint64) error {
	for {
		c.mu.Lock()
		done, advanced := c.applied >= rev, c.advanced
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// EvictOldest asks the node holding the fleet's oldest connection of counter to close it, and
// reports whether one was closed. When it returns true the freed place is already published,
// so an Acquire that follows can take it. ctx bounds the wait for the other node.
func (c *Connections) EvictOldest(ctx context.Context, counter string) bool {
	tok := token(counter)
	c.mu.Lock()
	target, oldest := "", int64(0)
	if cc := c.counters[tok]; cc != nil {
		for _, start := range cc.conns {
			if oldest == 0 || start.UnixNano() < oldest {
				target, oldest = c.node, start.UnixNano()
			}
		}
	}
	now := time.Now()
	for node, e := range c.fleet[tok] {
		if e.n > 0 && e.oldest != 0 && now.Sub(e.seen) < c.opt.TTL && (oldest == 0 || e.oldest < oldest) {
			target, oldest = node, e.oldest
		}
	}
	c.mu.Unlock()
	switch target {
	case "":
		return false
	case c.node:
		return c.evictLocal(ctx, counter)
	}
	js, svc := c.currentJS(), c.serviceID()
	if js == nil || svc == "" {
		return false
	}
	body, _ := json.Marshal(evictRequest{Node: target, Counter: counter})
	reply, err := js.Conn().RequestWithContext(ctx, bus.EvictSubject(svc, tok), body)
	if err != nil {
		c.opt.Log.WarnContext(ctx, "eviction request failed", slog.String("node", target), slog.String("error", err.Error()))
		return false
	}
	var r evictReply
	return json.Unmarshal(reply.Data, &r) == nil && r.Closed
}

// answerEvict handles an eviction request of service svc addressed to this node; others stay
// silent.
func (c *Connections) answerEvict(ctx context.Context, svc string, m *nats.Msg) {
	var req evictRequest
	if json.Unmarshal(m.Data, &req) != nil || req.Node != c.node || m.Subject != bus.EvictSubject(svc, token(req.Counter)) {
		return
	}
	// The callback and the wait for the release may take a while; do not hold up the
	// connection's other subscriptions.
	go func() {
		body, _ := json.Marshal(evictReply{Closed: c.evictLocal(ctx, req.Counter)})
		_ = m.Respond(body)
	}()
}

// evictLocal has OnEvict close this node's oldest connection of counter, waits for its
// release and publishes the lower count.
func (c *Connections) evictLocal(ctx context.Context, counter string) bool {
	if c.opt.OnEvict == nil {
		return false
	}
	count := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		if cc := c.counters[token(counter)]; cc != nil {
			return len(cc.conns)
		}
		return 0
	}
	before := count()
	if before == 0 || !c.opt.OnEvict(counter) {
		return false
	}
	c.mu.Lock()
	live := c.live
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for count() >= before {
		select {
		case <-ctx.Done():
			return true // closed, but its release is late: the count follows when it comes
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !live {
		return true
	}
	synced := make(chan struct{})
	select {
	case c.sync <- synced:
		select {
		case <-synced:
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	return true
}
