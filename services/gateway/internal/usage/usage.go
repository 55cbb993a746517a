// Package usage rolls a gateway node's WebSocket traffic up per minute, API and subscription
// and publishes each finished minute to management over NATS JetStream (bus.UsageStream), as
// configwire.UsageBatch values authenticated with the node key, retrying until JetStream
// acknowledges them.
package usage

import (
	"cmp"
	"context"
	"encoding/json"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// Defaults of the Options.
const (
	DefaultMaxPending      = 1000
	DefaultRetryMin        = 500 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultPublishTimeout  = 5 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// numShards spreads the counters over locks so that sessions of different APIs and
// subscriptions rarely contend.
const numShards = 32

// Traffic is what a session has relayed so far: messages and payload bytes from the client
// (In) and from the backend (Out).
type Traffic struct {
	MessagesIn, MessagesOut, BytesIn, BytesOut int64
}

func (t Traffic) minus(u Traffic) Traffic {
	return Traffic{t.MessagesIn - u.MessagesIn, t.MessagesOut - u.MessagesOut, t.BytesIn - u.BytesIn, t.BytesOut - u.BytesOut}
}

// Options configure a Collector.
type Options struct {
	// NodeID names the node in its batches (the heartbeat's node id); required.
	NodeID string
	// ServiceID returns the internal id of the node's service and Gateway the name of its
	// gateway resource, "" while it has no configuration; usage counted then is dropped at the
	// next flush.
	ServiceID, Gateway func() string
	// Key returns the node key management handed this node with its snapshot
	// (configsync.Syncer.NodeKey), which authenticates each batch; false until there is one,
	// and batches wait meanwhile: management drops a batch its gateway's node key did not
	// authenticate.
	Key func() (configwire.NodeKey, bool)
	// JetStream returns the connection to publish on, nil while there is none; batches wait.
	JetStream func() jetstream.JetStream
	// MaxPending bounds the batches held while JetStream does not acknowledge them; beyond
	// it the oldest are dropped (and logged). Zero means DefaultMaxPending.
	MaxPending int
	// RetryMin and RetryMax bound the back-off between failed publications.
	RetryMin, RetryMax time.Duration
	// ShutdownTimeout bounds the last publication when Run's context ends.
	ShutdownTimeout time.Duration
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	Log *slog.Logger
}

// Collector counts usage in memory and publishes it. A nil *Collector counts nothing, so
// callers need not check. Its methods are safe for concurrent use; Run runs once.
type Collector struct {
	opt    Options
	seed   maphash.Seed
	shards [numShards]shard
	seq    atomic.Uint64
	wake   chan struct{}

	mu      sync.Mutex
	pending []configwire.UsageBatch
	dropped int
}

// shard holds the counters and open sessions whose (API, subscription) hash to it.
type shard struct {
	mu sync.Mutex
	// floor is the first minute (Unix minutes) not yet flushed; usage reported for an
	// earlier minute after its flush counts in floor instead, so no key is reported twice.
	floor    int64
	counts   map[key]*configwire.UsageRecord
	sessions map[*Session]struct{}
}

type key struct {
	minute            int64 // Unix minutes
	api, subscription string
}

// New returns a Collector.
func New(opt Options) *Collector {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.ServiceID == nil {
		opt.ServiceID = func() string { return "" }
	}
	if opt.Gateway == nil {
		opt.Gateway = func() string { return "" }
	}
	if opt.Key == nil {
		opt.Key = func() (configwire.NodeKey, bool) { return configwire.NodeKey{}, false }
	}
	if opt.JetStream == nil {
		opt.JetStream = func() jetstream.JetStream { return nil }
	}
	if opt.MaxPending <= 0 {
		opt.MaxPending = DefaultMaxPending
	}
	if opt.RetryMin <= 0 {
		opt.RetryMin = DefaultRetryMin
	}
	if opt.RetryMax < opt.RetryMin {
		opt.RetryMax = max(DefaultRetryMax, opt.RetryMin)
	}
	if opt.ShutdownTimeout <= 0 {
		opt.ShutdownTimeout = DefaultShutdownTimeout
	}
	c := &Collector{opt: opt, seed: maphash.MakeSeed(), wake: make(chan struct{}, 1)}
	for i := range c.shards {
		c.shards[i].counts = map[key]*configwire.UsageRecord{}
		c.shards[i].sessions = map[*Session]struct{}{}
	}
	return c
}

func (c *Collector) shardOf(api, subscription string) *shard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(api)
	h.WriteByte(0)
	h.WriteString(subscription)
	return &c.shards[h.Sum64()%numShards]
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// add applies f to the record of (minute of at, api, subscription).
func (c *Collector) add(sh *shard, at time.Time, api, subscription string, f func(r *configwire.UsageRecord)) {
	m := unixMinute(at)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m = max(m, sh.floor)
	k := key{m, api, subscription}
	r := sh.counts[k]
	if r == nil {
		r = &configwire.UsageRecord{Minute: time.Unix(m*60, 0).UTC(), API: api, Subscription: subscription}
		sh.counts[k] = r
	}
	f(r)
}

// Handshake counts a WebSocket handshake of api by subscription ("" for none) answered with
// status (0: no answer reached the client) for reason (the handshake reasons of
// docs/observability.md, "" for none). A 101 is counted by Open instead. Refusals (any
// status but 101 and, for REST calls, 2xx/3xx) are counted by outcome as well.
func (c *Collector) Handshake(api, subscription string, status int, reason string) {
	if c == nil {
		return
	}
	c.add(c.shardOf(api, subscription), c.opt.Now(), api, subscription, func(r *configwire.UsageRecord) {
		success := status == 101 || status >= 200 && status < 400 // an upgrade, or a REST call answered 2xx/3xx
		if !success {
			countRefusal(r, status, reason)
		}
		switch {
		case success:
			r.HandshakesSuccess++
		case status == 401 || status == 403 || status == 429:
			r.HandshakesBlocked++
		case status >= 500:
			r.HandshakesFailed++
		default:
			r.HandshakesOther++
		}
	})
}

// otherOutcomes is the Refusals key a record's refusals beyond configwire.MaxUsageOutcomes
// distinct outcomes count under, so that a batch stays valid.
const otherOutcomes = "other"

// countRefusal counts a refused handshake in r.Refusals by status and reason.
func countRefusal(r *configwire.UsageRecord, status int, reason string) {
	if r.Refusals == nil {
		r.Refusals = map[string]int64{}
	}
	k := configwire.OutcomeKey(status, reason)
	if _, known := r.Refusals[k]; !known && len(r.Refusals) >= configwire.MaxUsageOutcomes-1 {
		k = otherOutcomes
	}
	r.Refusals[k]++
}

// Session is one open WebSocket session being counted. Its methods are safe for concurrent
// use; a nil *Session counts nothing.
type Session struct {
	c                 *Collector
	sh                *shard
	api, subscription string
	traffic           func() Traffic

	mu        sync.Mutex
	accounted time.Time // connection time before it is counted
	seen      Traffic   // traffic counted so far
	ended     bool
}

// Open counts a successful (101) handshake of api by subscription and starts counting the
// session's connection time and traffic, which traffic reports; it must be safe to call
// from any goroutine. The caller calls End when the session is over.
func (c *Collector) Open(api, subscription string, traffic func() Traffic) *Session {
	if c == nil {
		return nil
	}
	now := c.opt.Now()
	s := &Session{c: c, sh: c.shardOf(api, subscription), api: api, subscription: subscription, traffic: traffic, accounted: now}
	c.add(s.sh, now, api, subscription, func(r *configwire.UsageRecord) { r.HandshakesSuccess++ })
	s.sh.mu.Lock()
	s.sh.sessions[s] = struct{}{}
	s.sh.mu.Unlock()
	return s
}

// End counts the rest of the session's connection time and traffic and stops counting it.
// Later calls do nothing.
func (s *Session) End() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if !s.ended {
		now := s.c.opt.Now()
		s.settle(now, now)
		s.c.add(s.sh, now, s.api, s.subscription, func(r *configwire.UsageRecord) { r.ConnectionsClosed++ })
		s.ended = true
	}
	s.mu.Unlock()
	s.sh.mu.Lock()
	delete(s.sh.sessions, s)
	s.sh.mu.Unlock()
}

// settle counts connection time up to until, spread over the minutes it falls in, and the
// traffic not yet counted in the minute of trafficAt. s.mu is held.
func (s *Session) settle(until, trafficAt time.Time) {
	for from := s.accounted; from.Before(until); {
		next := minTime(from.Truncate(time.Minute).Add(time.Minute), until)
		if ms := next.Sub(from).Milliseconds(); ms > 0 {
			s.c.add(s.sh, from, s.api, s.subscription, func(r *configwire.UsageRecord) { r.ConnectionMillis += ms })
		}
		from = next
	}
	s.accounted = maxTime(s.accounted, until)
	if s.traffic == nil {
		return
	}
	now := s.traffic()
	d := now.minus(s.seen)
	s.seen = now
	if d != (Traffic{}) {
		s.c.add(s.sh, trafficAt, s.api, s.subscription, func(r *configwire.UsageRecord) {
			r.MessagesIn += d.MessagesIn
			r.MessagesOut += d.MessagesOut
			r.BytesIn += d.BytesIn
			r.BytesOut += d.BytesOut
		})
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Flush moves every finished minute into batches waiting for publication: usage before the
// minute now falls in, or, when final, everything up to now. Open sessions are counted up to
// that point first, their traffic so far in the last minute flushed. Flush returns the
// number of records it took. Run calls it; tests call it directly.
func (c *Collector) Flush(final bool) int {
	if c == nil {
		return 0
	}
	now := c.opt.Now()
	cutoff := now.Truncate(time.Minute)
	if final {
		cutoff = cutoff.Add(time.Minute)
	}
	until := minTime(now, cutoff)
	trafficAt := until.Add(-time.Nanosecond)
	var open []*Session
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for s := range sh.sessions {
			open = append(open, s)
		}
		sh.mu.Unlock()
	}
	for _, s := range open {
		s.mu.Lock()
		if !s.ended {
			s.settle(until, trafficAt)
		}
		s.mu.Unlock()
	}
	floor := unixMinute(cutoff)
	var records []configwire.UsageRecord
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.floor = max(sh.floor, floor)
		for k, r := range sh.counts {
			if k.minute < floor {
				records = append(records, *r)
				delete(sh.counts, k)
			}
		}
		sh.mu.Unlock()
	}
	if len(records) == 0 {
		return 0
	}
	service, gateway := c.opt.ServiceID(), c.opt.Gateway()
	if service == "" || gateway == "" {
		c.opt.Log.Warn("usage dropped: the node has no configuration", "records", len(records))
		return 0
	}
	slices.SortFunc(records, func(a, b configwire.UsageRecord) int {
		return cmp.Or(a.Minute.Compare(b.Minute), cmp.Compare(a.API, b.API), cmp.Compare(a.Subscription, b.Subscription))
	})
	c.mu.Lock()
	for chunk := range slices.Chunk(records, configwire.MaxUsageRecords) {
		id := bus.UsageBatchID(c.opt.NodeID, chunk[0].Minute, c.seq.Add(1))
		c.pending = append(c.pending, configwire.UsageBatch{NodeID: c.opt.NodeID, BatchID: id, ServiceID: service, Gateway: gateway, Records: chunk})
	}
	if over := len(c.pending) - c.opt.MaxPending; over > 0 {
		c.pending = slices.Delete(c.pending, 0, over)
		c.dropped += over
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(records)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Pending returns the batches waiting for publication, oldest first.
func (c *Collector) Pending() []configwire.UsageBatch {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pending)
}

// Run flushes each minute as it ends and publishes the batches, retrying with back-off until
// JetStream acknowledges each. When ctx ends it flushes everything and publishes for at most
// Options.ShutdownTimeout; it returns nil. Cancel ctx only after the traffic has drained, so
// that the last sessions are counted.
func (c *Collector) Run(ctx context.Context) error {
	retry := c.opt.RetryMin
	var retryAt <-chan time.Time
	tick := time.NewTimer(c.untilNextMinute())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.Flush(true)
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opt.ShutdownTimeout)
			err := c.publish(sctx)
			cancel()
			if n := len(c.Pending()); n > 0 {
				c.opt.Log.Warn("usage batches not published before shutdown", "batches", n, "err", err)
			}
			return nil
		case <-tick.C:
			c.Flush(false)
			tick.Reset(c.untilNextMinute())
			continue
		case <-c.wake:
		case <-retryAt:
		}
		if err := c.publish(ctx); err != nil {
			if retry == c.opt.RetryMin {
				c.opt.Log.Warn("usage publication failed; retrying", "err", err)
			}
			retryAt = time.After(retry)
			retry = min(2*retry, c.opt.RetryMax)
			continue
		}
		retry, retryAt = c.opt.RetryMin, nil
	}
}

// untilNextMinute is the wait until just after the current minute ends.
func (c *Collector) untilNextMinute() time.Duration {
	now := time.Now()
	return now.Truncate(time.Minute).Add(time.Minute).Sub(now) + 50*time.Millisecond
}

// errNoConnection is publish's error while the node has no NATS connection yet.
type errNoConnection struct{}

func (errNoConnection) Error() string { return "no NATS connection yet" }

// errNoNodeKey is publish's error while management has not handed the node its node key.
type errNoNodeKey struct{}

func (errNoNodeKey) Error() string { return "no node key from management yet" }

// publish publishes the pending batches in order, stopping at the first failure.
func (c *Collector) publish(ctx context.Context) error {
	c.mu.Lock()
	if c.dropped > 0 {
		c.opt.Log.Warn("usage batches dropped: too many waiting for publication", "batches", c.dropped)
		c.dropped = 0
	}
	c.mu.Unlock()
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.mu.Unlock()
			return nil
		}
		b := c.pending[0]
		c.mu.Unlock()
		js := c.opt.JetStream()
		if js == nil {
			return errNoConnection{}
		}
		key, ok := c.opt.Key()
		if !ok {
			return errNoNodeKey{}
		}
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		msg := nats.NewMsg(bus.UsageSubject(b.ServiceID))
		msg.Data = data
		msg.Header.Set(bus.HeaderNodeAuth, key.Sign(msg.Subject, data))
		pctx, cancel := context.WithTimeout(ctx, DefaultPublishTimeout)
		_, err = js.PublishMsg(pctx, msg, jetstream.WithMsgID(b.BatchID))
		cancel()
		if err != nil {
			return err
		}
		c.mu.Lock()
		if len(c.pending) > 0 && c.pending[0].BatchID == b.BatchID {
			c.pending = c.pending[1:]
		}
		c.mu.Unlock()
		c.opt.Log.Debug("usage batch published", "batch", b.BatchID, "records", len(b.Records))
	}
}
