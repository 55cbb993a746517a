package clustercount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/pipeline/ratecount"
)

// Defaults of CountersOptions.
const (
	DefaultRateBucket   = bus.RatesBucket
	DefaultQuotaBucket  = bus.QuotasBucket
	DefaultTimeout      = 50 * time.Millisecond
	DefaultBackoff      = time.Second
	setupTimeout        = 5 * time.Second
	fallbackLogInterval = time.Minute
)

// CountersOptions configure Counters.
type CountersOptions struct {
	// JetStream returns the node's JetStream context, or nil while NATS is not known yet (the
	// gateway learns its URLs from the first snapshot). It is called on every operation, so it
	// must be cheap, such as an atomic load. Nil means local counting only.
	JetStream func() jetstream.JetStream
	// ServiceID returns the internal id of the node's service, "" while it has none (before
	// its first snapshot). Every key starts with its token (bus.CounterKey), so services never
	// share a count and the bus lets a node reach its own service's keys only (issue 12).
	// Calls are counted by Local while it is ""; nil means local counting only.
	ServiceID func() string
	// Local counts while NATS is unavailable; nil means ratecount.NewMemory().
	Local ratecount.Counters
	// Timeout bounds how long one call waits for NATS (default 50 ms); a call that would wait
	// longer is counted by Local instead, so handshakes never block on NATS.
	Timeout time.Duration
	// Backoff is how long the counters stay local after NATS failed or timed out (default 1 s).
	Backoff time.Duration
	// RateBucket names the KV bucket (memory storage) of Sliding; QuotaBucket the bucket (file
	// storage, so counts survive restarts of the gateways and of NATS) of Fixed. Defaults
	// DefaultRateBucket and DefaultQuotaBucket.
	RateBucket, QuotaBucket string
	// Replicas of both buckets on a clustered NATS (default 1).
	Replicas int
	Log      *slog.Logger
}

// Counters is a ratecount.Counters shared by every gateway node connected to the same NATS.
//
// Each counter key is one key of a JetStream KV bucket, named by the node's service and a
// hash of the counter key (bus.CounterKey), and holding the ratecount.State that
// ratecount.Memory keeps for it: the window or period index and its count (sliding windows:
// also the previous window's count, for the same two-bucket approximation). A call reads the key, decides with the same State methods,
// and writes the new state with a compare-and-set on the key's revision, retrying when another
// node wrote first; so the fleet never admits more than the limit. Calls for one key that
// arrive while a round trip for that key is in flight are decided together in the next one,
// so a hot key costs two round trips per batch, not per call. Each write carries a message
// TTL that ends when the state can no longer affect a decision (two windows; the end of the
// period), so old windows vanish; quota periods that never end never expire.
//
// NATS's atomic counters (streams with AllowMsgCounter, nats-server 2.12; nats.go v1.55 has
// the stream setting but no KV or client API for them) are not used: a counter stream cannot
// have message TTLs, so every window size would need its own stream to
// expire old windows, and an increment can only be checked against the limit after the fact
// (increment, then undo), which makes racing nodes reject calls that would fit.
//
// While NATS or the node's service is unknown, NATS is disconnected, or slower than Timeout,
// calls are counted by Local, per node ("fail open"): a fleet of k nodes then admits up to
// k × limit. The switch is logged at most once a minute. Counters is safe for concurrent use.
type Counters struct {
	opt   CountersOptions
	local ratecount.Counters

	slots [slotShards]slotShard

	mu        sync.Mutex
	ready     *buckets            // buckets bound to ready.js
	settingUp jetstream.JetStream // the JetStream being set up, if any
	setupDone chan struct{}       // closed when the setup of settingUp ends
	downUntil time.Time
	lastLog   time.Time
	fallbacks atomic.Int64
}

var _ ratecount.Counters = (*Counters)(nil)

const slotShards = 32

// buckets are the two KV buckets of one JetStream context, bound while its connection had
// reconnected reconnects times. A reconnection may reach a NATS server that lost the
// memory-stored bucket (a restarted one), so the buckets are bound again after it.
type buckets struct {
	js             jetstream.JetStream
	reconnects     uint64
	rates, quotas  jetstream.KeyValue
	ratePre, qtPre string // subject prefix of each bucket's keys
}

// current reports whether b are the buckets of js as it is connected now.
func (b *buckets) current(js jetstream.JetStream) bool {
	return b != nil && b.js == js && b.reconnects == js.Conn().Stats().Reconnects
}

type slotShard struct {
	mu sync.Mutex
	m  map[string]*slot
}

// slot queues the calls for one key while a round trip for that key is in flight.
type slot struct {
	queue []*op
}

// op is one call waiting for a decision.
type op struct {
	fixed  bool
	limit  int64
	size   time.Duration // window or period
	start  time.Time     // fixed only
	n      int64
	state  atomic.Int32 // opWaiting, opTaken, opAbandoned
	result chan opResult
}

const (
	opWaiting int32 = iota
	opTaken
	opAbandoned
)

type opResult struct {
	ratecount.Result
	err error
}

// NewCounters returns Counters with opt.
func NewCounters(opt CountersOptions) *Counters {
	if opt.Local == nil {
		opt.Local = ratecount.NewMemory()
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Backoff <= 0 {
		opt.Backoff = DefaultBackoff
	}
	if opt.RateBucket == "" {
		opt.RateBucket = DefaultRateBucket
	}
	if opt.QuotaBucket == "" {
		opt.QuotaBucket = DefaultQuotaBucket
	}
	if opt.Replicas <= 0 {
		opt.Replicas = 1
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	c := &Counters{opt: opt, local: opt.Local}
	for i := range c.slots {
		c.slots[i].m = make(map[string]*slot)
	}
	return c
}

// Prepare starts binding the KV buckets of the current JetStream context, if it is connected
// and not bound yet, so that the first calls need not wait for it. Calls do this themselves;
// Prepare only moves it earlier, such as to when the node connects to NATS.
func (c *Counters) Prepare(ctx context.Context) {
	if c.opt.JetStream == nil {
		return
	}
	if js := c.opt.JetStream(); js != nil && js.Conn().Status() == nats.CONNECTED {
		_, _ = c.buckets(ctx)
	}
}

// Shared reports whether calls are decided through NATS now: the node's service is known, NATS
// is connected and the KV buckets of the current JetStream context are bound. A call may still be counted locally
// when NATS is slower than Timeout, and for Backoff after that.
func (c *Counters) Shared() bool {
	if c.opt.JetStream == nil || c.serviceID() == "" {
		return false
	}
	js := c.opt.JetStream()
	if js == nil || js.Conn().Status() != nats.CONNECTED {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready.current(js)
}

// Fallbacks returns how many calls were counted locally because NATS was unavailable or slow
// (calls made before NATS was known included), for metrics.
func (c *Counters) Fallbacks() int64 { return c.fallbacks.Load() }

// Sliding implements ratecount.Counters.
func (c *Counters) Sliding(ctx context.Context, key string, limit int64, window time.Duration, n int64) (bool, int64, time.Duration) {
	if window <= 0 {
		window = time.Second
	}
	if r, ok := c.remote(ctx, key, &op{limit: limit, size: window, n: n}); ok {
		return r.Allowed, r.Remaining, r.RetryAfter
	}
	c.fallbacks.Add(1)
	return c.local.Sliding(ctx, key, limit, window, n)
}

// Fixed implements ratecount.Counters.
func (c *Counters) Fixed(ctx context.Context, key string, limit int64, period time.Duration, start time.Time, n int64) (bool, int64, time.Duration) {
	if r, ok := c.remote(ctx, key, &op{fixed: true, limit: limit, size: period, start: start, n: n}); ok {
		return r.Allowed, r.Remaining, r.RetryAfter
	}
	c.fallbacks.Add(1)
	return c.local.Fixed(ctx, key, limit, period, start, n)
}

// serviceID is the node's service id, "" while unknown.
func (c *Counters) serviceID() string {
	if c.opt.ServiceID == nil {
		return ""
	}
	return c.opt.ServiceID()
}

// remote decides o through NATS; ok is false when the call must be counted locally.
func (c *Counters) remote(ctx context.Context, key string, o *op) (opResult, bool) {
	svc := c.serviceID()
	if svc == "" {
		return opResult{}, false
	}
	timer := time.NewTimer(c.opt.Timeout)
	defer timer.Stop()
	b, setup := c.buckets(ctx)
	if setup != nil {
		// The buckets of a JetStream context not seen before are being bound: the call waits
		// for them within its Timeout, so that a node's first calls are counted by the fleet.
		select {
		case <-setup:
			b, _ = c.buckets(ctx)
		case <-timer.C:
			c.mu.Lock()
			c.noteLocked(fmt.Errorf("binding the KV buckets took longer than %v", c.opt.Timeout))
			c.mu.Unlock()
			return opResult{}, false
		case <-ctx.Done():
			return opResult{}, false
		}
	}
	if b == nil {
		return opResult{}, false
	}
	kv, pre, bucket := b.rates, b.ratePre, c.opt.RateBucket
	if o.fixed {
		kv, pre, bucket = b.quotas, b.qtPre, c.opt.QuotaBucket
	}
	kvKey := bus.CounterKey(svc, token(key))
	o.result = make(chan opResult, 1)

	sk := bucket + "/" + kvKey
	sh := &c.slots[shardOf(kvKey)]
	sh.mu.Lock()
	s := sh.m[sk]
	if s == nil {
		s = &slot{}
		sh.m[sk] = s
		// The flusher stops by itself once the slot's queue is empty; each of its round trips
		// is bounded by Timeout. It keeps the first caller's context values, not its deadline.
		go c.flushSlot(context.WithoutCancel(ctx), sh, sk, s, b.js, kv, pre, kvKey)
	}
	s.queue = append(s.queue, o)
	sh.mu.Unlock()

	select {
	case r := <-o.result:
		if r.err != nil {
			c.failed(r.err, !errors.Is(r.err, context.DeadlineExceeded))
			return opResult{}, false
		}
		return r, true
	case <-timer.C:
		// A call already taken into a round trip may still be counted remotely; counting it
		// locally as well errs on the strict side.
		o.state.CompareAndSwap(opWaiting, opAbandoned)
		c.failed(fmt.Errorf("no answer within %v", c.opt.Timeout), false)
		return opResult{}, false
	case <-ctx.Done():
		o.state.CompareAndSwap(opWaiting, opAbandoned)
		return opResult{}, false
	}
}

// shardOf is the slot shard of a KV key.
func shardOf(kvKey string) int {
	h := uint32(2166136261)
	for i := 0; i < len(kvKey); i++ {
		h ^= uint32(kvKey[i])
		h *= 16777619
	}
	return int(h % slotShards)
}

// buckets returns the KV buckets to use now, or nil to count locally. A JetStream context not
// seen before, or seen to fail, is set up in the background; while it is, buckets returns nil
// and a channel closed when the setup ends. ctx lends its values, not its deadline, to the
// setup.
func (c *Counters) buckets(ctx context.Context) (*buckets, <-chan struct{}) {
	if c.opt.JetStream == nil {
		return nil, nil
	}
	js := c.opt.JetStream()
	if js == nil {
		return nil, nil
	}
	connected := js.Conn().Status() == nats.CONNECTED
	c.mu.Lock()
	defer c.mu.Unlock()
	if !connected {
		c.noteLocked(errors.New("NATS is not connected"))
		return nil, nil
	}
	if time.Now().Before(c.downUntil) {
		return nil, nil
	}
	if c.ready.current(js) {
		return c.ready, nil
	}
	if c.settingUp != js {
		c.settingUp = js
		c.setupDone = make(chan struct{})
		go c.setup(context.WithoutCancel(ctx), js, c.setupDone)
	}
	return nil, c.setupDone
}

// setup creates or binds the buckets on js and makes them ready, unless js was replaced
// meanwhile; it closes done when it ends.
func (c *Counters) setup(ctx context.Context, js jetstream.JetStream, done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	reconnects := js.Conn().Stats().Reconnects
	b, err := c.createBuckets(ctx, js)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.settingUp != js {
		return
	}
	c.settingUp = nil
	if err != nil {
		c.downUntil = time.Now().Add(c.opt.Backoff)
		c.noteLocked(fmt.Errorf("KV buckets: %w", err))
		return
	}
	b.reconnects = reconnects
	c.ready = b
}

func (c *Counters) createBuckets(ctx context.Context, js jetstream.JetStream) (*buckets, error) {
	rates, err := bindKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      c.opt.RateBucket,
		Description: "Gatehouse rate-limit counters (sliding windows)",
		History:     1,
		Storage:     jetstream.MemoryStorage,
		Replicas:    c.opt.Replicas,
		// Enables per-message TTLs; the markers themselves are of no use here.
		LimitMarkerTTL: time.Second,
	})
	if err != nil {
		return nil, err
	}
	quotas, err := bindKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:         c.opt.QuotaBucket,
		Description:    "Gatehouse quota counters (fixed periods)",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       c.opt.Replicas,
		LimitMarkerTTL: time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &buckets{js: js, rates: rates, quotas: quotas,
		ratePre: "$KV." + c.opt.RateBucket + ".", qtPre: "$KV." + c.opt.QuotaBucket + "."}, nil
}

// failed makes the counters count locally for Backoff after err; with rebind, they then set
// the buckets up again (a NATS server restarted without its memory-stored bucket, for one).
func (c *Counters) failed(err error, rebind bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.downUntil = time.Now().Add(c.opt.Backoff)
	if rebind {
		c.ready = nil
	}
	c.noteLocked(err)
}

// noteLocked logs that calls are counted locally, at most once per fallbackLogInterval.
func (c *Counters) noteLocked(err error) {
	now := time.Now()
	if now.Sub(c.lastLog) < fallbackLogInterval {
		return
	}
	c.lastLog = now
	c.opt.Log.Warn("cluster counters unavailable, counting on this node only", slog.String("error", err.Error()))
}

// flushSlot decides the queued calls of one KV key, a batch per round trip, until none is left.
func (c *Counters) flushSlot(ctx context.Context, sh *slotShard, sk string, s *slot, js jetstream.JetStream, kv jetstream.KeyValue, pre, kvKey string) {
	for {
		sh.mu.Lock()
		batch := s.queue
		s.queue = nil
		if len(batch) == 0 {
			delete(sh.m, sk)
			sh.mu.Unlock()
			return
		}
		sh.mu.Unlock()
		live := batch[:0]
		for _, o := range batch {
			if o.state.CompareAndSwap(opWaiting, opTaken) {
				live = append(live, o)
			}
		}
		if len(live) == 0 {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, c.opt.Timeout)
		results, err := c.decide(fctx, js, kv, pre, kvKey, live)
		cancel()
		for i, o := range live {
			if err != nil {
				o.result <- opResult{err: err}
			} else {
				o.result <- results[i]
			}
		}
	}
}

// decide reads the state of kvKey, decides ops in order and writes the state back if any op
// counted, retrying from the read when another node wrote first.
func (c *Counters) decide(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, pre, kvKey string, ops []*op) ([]opResult, error) {
	results := make([]opResult, len(ops))
	for {
		var st ratecount.State
		var rev uint64
		e, err := kv.Get(ctx, kvKey)
		switch {
		case err == nil:
			rev = e.Revision()
			st = decodeState(e.Value())
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return nil, err
		}
		now := time.Now()
		counted := false
		for i, o := range ops {
			var (
				r   ratecount.Result
				did bool
			)
			if o.fixed {
				r, did = st.Fixed(o.limit, o.size, o.start, o.n, now)
			} else {
				r, did = st.Sliding(o.limit, o.size, o.n, now.UnixNano())
			}
			results[i] = opResult{Result: r}
			counted = counted || did
		}
		if !counted {
			return results, nil
		}
		ttl := stateTTL(&st, now)
		if rev == 0 {
			var opts []jetstream.KVCreateOpt
			if ttl > 0 {
				opts = append(opts, jetstream.KeyTTL(ttl))
			}
			_, err = kv.Create(ctx, kvKey, encodeState(&st), opts...)
		} else {
			// KeyValue.Update cannot set a TTL; this is the same publish with one.
			opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
			if ttl > 0 {
				opts = append(opts, jetstream.WithMsgTTL(ttl))
			}
			_, err = js.PublishMsg(ctx, &nats.Msg{Subject: pre + kvKey, Data: encodeState(&st)}, opts...)
		}
		if err == nil {
			return results, nil
		}
		if !isConflict(err) {
			return nil, err
		}
	}
}

// encodeState is the value a key holds: the five fields of st (ratecount.State, as a node's
// ratecount.Memory keeps it) as decimal numbers.
func encodeState(st *ratecount.State) []byte {
	return fmt.Appendf(nil, "%d %d %d %d %d", st.Size, st.Idx, st.Prev, st.Curr, st.Expires)
}

// decodeState parses a state; anything unreadable is the empty state (counting restarts).
func decodeState(b []byte) ratecount.State {
	f := strings.Fields(string(b))
	if len(f) != 5 {
		return ratecount.State{}
	}
	var v [5]int64
	for i := range f {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return ratecount.State{}
		}
		v[i] = n
	}
	return ratecount.State{Size: v[0], Idx: v[1], Prev: v[2], Curr: v[3], Expires: v[4]}
}

// stateTTL is how long a write of st must be kept: until st.Expires, rounded up to whole
// seconds (the TTL resolution of JetStream) plus one; 0 means forever.
func stateTTL(st *ratecount.State, now time.Time) time.Duration {
	if st.Expires == 0 {
		return 0
	}
	d := time.Duration(st.Expires - now.UnixNano())
	return max(d.Truncate(time.Second)+2*time.Second, 2*time.Second)
}

// bindKeyValue binds the bucket of cfg, creating it when it does not exist. A bucket that
// exists is used as it is, never updated: every node sets its buckets up at each (re)connect,
// and an update reconfigures the bucket's stream while other nodes use it (which nats-server
// does not do safely with consumers being created at the same time).
func bindKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, cfg.Bucket) // another node created it first
	}
	return kv, err
}
