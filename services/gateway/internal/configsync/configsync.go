// Package configsync keeps a gateway node's configuration current: it fetches a snapshot of
// its gateway resource from management, follows the service's change stream on NATS
// JetStream, applies revisions in order, and falls back to a fresh snapshot on any gap or
// change it cannot apply (level-based convergence). The last good snapshot is kept on disk
// so a node can start while management and NATS are down ("fail static").
package configsync

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// fetchTimeout bounds the wait for a snapshot's response headers and, after them, for each
// read of its body.
const fetchTimeout = 60 * time.Second

// ErrUnauthorized means management refused the gateway token: it is wrong, expired, or was
// signed with a key that has since been regenerated.
var ErrUnauthorized = errors.New("management refused the gateway token (wrong, expired, or its key was regenerated); generate a new token with generateToken")

// Options configure a Syncer.
type Options struct {
	ManagementURL string
	Token         string
	// NATSURL overrides the NATS servers management advertises.
	NATSURL string
	// NATSCAFile is the PEM file of the CAs that sign the NATS servers' certificates; empty
	// uses the system's (for tls:// URLs).
	NATSCAFile string
	// CacheDir holds the last good snapshot; empty disables the cache.
	CacheDir string
	HTTP     *http.Client
	Log      *slog.Logger
	// Install publishes a new Config to the hot path.
	Install func(*compiled.Config)
	// Applied is told the apply latency of each change, for metrics; optional.
	Applied func(rev int64, took time.Duration)
	// Dropped is told of every change message dropped because it was unsigned, forged or
	// replayed (reason "unsigned", "forged" or "replayed"), for metrics; optional.
	Dropped func(reason string)
	// Connected is given the NATS connection once the change stream's servers are known, so
	// the node's other fleet features (heartbeats, shared counters) can use it; optional. The
	// connection closes when Run returns.
	Connected func(nc *nats.Conn)
	// Retry is the wait between failed attempts to reach management (default 2 s).
	Retry time.Duration
	// CacheWriteDelay batches cache writes after incremental changes (default 5 s).
	CacheWriteDelay time.Duration
}

// Syncer runs the sync loop. Its Builder is touched only by the loop goroutine.
type Syncer struct {
	opt     Options
	builder *compiled.Builder

	mu      sync.Mutex
	lastErr error

	// cacheMu orders cache writes: cacheRev is the revision of the cache file this process
	// last wrote or removed, and an older one never replaces it.
	cacheMu  sync.Mutex
	cacheRev int64

	// verifier checks management's signatures with the keys of the last snapshot fetched;
	// nodeKey is the node key that fetch handed out. Both are nil until a fetch succeeds.
	verifier atomic.Pointer[configwire.Verifier]
	nodeKey  atomic.Pointer[configwire.NodeKey]
	// serviceID is the service whose changes follow consumes; touched by the loop only, as
	// are dropResync (a dropped change asks for a snapshot) and lastDropResync.
	serviceID      string
	dropResync     bool
	lastDropResync time.Time
}

// Verifier returns the Verifier of management's signing keys as the last snapshot listed
// them, nil before the first. Safe for concurrent use.
func (s *Syncer) Verifier() *configwire.Verifier { return s.verifier.Load() }

// NodeKey returns the node key management handed out with the last snapshot, which
// authenticates this node's heartbeats and replies; false before the first. Safe for
// concurrent use.
func (s *Syncer) NodeKey() (configwire.NodeKey, bool) {
	k := s.nodeKey.Load()
	if k == nil {
		return configwire.NodeKey{}, false
	}
	return *k, true
}

// New returns a Syncer compiling with builder.
func New(opt Options, builder *compiled.Builder) *Syncer {
	if opt.HTTP == nil {
		// No limit on the whole request: reading a large snapshot takes as long as it takes
		// while bytes keep coming (fetch stops when they do not).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = fetchTimeout
		opt.HTTP = &http.Client{Transport: t}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Retry <= 0 {
		opt.Retry = 2 * time.Second
	}
	if opt.CacheWriteDelay <= 0 {
		opt.CacheWriteDelay = 5 * time.Second
	}
	return &Syncer{opt: opt, builder: builder}
}

// LastError is the last failure to compile or fetch, for health reporting; nil when healthy.
func (s *Syncer) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

func (s *Syncer) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// Run syncs until ctx ends, then returns nil. It returns ErrUnauthorized if management refuses
// the token when it first answers (at once, or after an outage during which the node started
// from its cache); later refusals are logged and the node keeps serving what it has.
func (s *Syncer) Run(ctx context.Context) error {
	s.dropLegacyCache(ctx)
	f, err := s.fetch(ctx)
	switch {
	case errors.Is(err, ErrUnauthorized):
		return err
	case err != nil:
		s.setErr(err)
		if s.loadCache(ctx) {
			s.opt.Log.WarnContext(ctx, "management unreachable; serving the cached configuration", "err", err)
		} else {
			s.opt.Log.WarnContext(ctx, "management unreachable and no cached configuration; serving 503 until it answers", "err", err)
		}
		if f, err = s.fetchUntil(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	if err := s.install(ctx, f); err != nil {
		s.opt.Log.ErrorContext(ctx, "snapshot does not compile; keeping the previous configuration", "revision", f.snap.Revision, "err", err)
	}
	return s.follow(ctx, f.snap)
}

// fetchUntil retries fetch until it succeeds, management refuses the token, or ctx ends.
func (s *Syncer) fetchUntil(ctx context.Context) (*fetched, error) {
	for {
		f, err := s.fetch(ctx)
		if err == nil || errors.Is(err, ErrUnauthorized) {
			return f, err
		}
		s.setErr(err)
		s.opt.Log.WarnContext(ctx, "fetching the configuration snapshot failed", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(s.opt.Retry):
		}
	}
}

// fetched is a snapshot read from management but not installed: its header (Entities is nil),
// its entities added to a Loading, and the temporary file holding the document as received,
// which becomes the cache when the snapshot is installed ("" without a cache).
type fetched struct {
	snap    configwire.Snapshot
	load    *compiled.Loading
	tmp     string
	fetchMS int64
}

// discard drops a snapshot that will not be installed.
func (f *fetched) discard() {
	if f.tmp != "" {
		_ = os.Remove(f.tmp)
	}
}

// fetch reads a snapshot from management. Its entities go to a Loading as they are decoded,
// and its bytes to a temporary cache file, so that the node never holds the whole snapshot:
// at a million subscriptions it is 120 MB as a stream, 500 MB as JSON. The Builder is not
// changed.
func (s *Syncer) fetch(ctx context.Context) (*fetched, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.opt.ManagementURL, "/")+configwire.SnapshotPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "GatewayKey "+s.opt.Token)
	// A management of an earlier version ignores the stream type and sends JSON, which
	// readSnapshot reads too.
	req.Header.Set("Accept", configwire.SnapshotStreamType+", application/json;q=0.5")
	resp, err := s.opt.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, ErrUnauthorized
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("management answered %d: %s", resp.StatusCode, body)
	}
	var nodeKey *configwire.NodeKey
	if v := resp.Header.Get(configwire.NodeKeyHeader); v != "" {
		k, err := configwire.ParseNodeKey(v)
		if err != nil {
			return nil, err
		}
		nodeKey = &k
	}
	stalled := time.AfterFunc(fetchTimeout, cancel)
	defer stalled.Stop()
	var body io.Reader = readerFunc(func(p []byte) (int, error) {
		stalled.Reset(fetchTimeout)
		return resp.Body.Read(p)
	})
	f := &fetched{load: s.builder.StartLoad()}
	cw := s.newCacheWriter(ctx)
	if cw != nil {
		body = io.TeeReader(body, cw)
	}
	f.snap, err = readSnapshot(body, loader(f.load))
	if err == nil && cw != nil {
		// The rest of the body (a JSON document's final newline) belongs in the copy too.
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<20))
	}
	if cw != nil {
		f.tmp = cw.close(err == nil)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding the snapshot: %w", err)
	}
	verifier, err := s.checkSnapshot(f.snap)
	if err != nil {
		f.discard()
		return nil, err
	}
	s.verifier.Store(verifier)
	if nodeKey != nil {
		s.nodeKey.Store(nodeKey)
	}
	f.fetchMS = time.Since(start).Milliseconds()
	return f, nil
}

// checkSnapshot returns the Verifier of the signing keys snap lists, after checking snap's
// seal with them when it has one. The keys come over the authenticated management API, so
// they are trusted as they are; the seal proves the stream whole and management's. A snapshot
// without keys (a management of an earlier version) gives a Verifier that verifies nothing:
// every change is then dropped and a snapshot fetched in its stead.
func (s *Syncer) checkSnapshot(snap configwire.Snapshot) (*configwire.Verifier, error) {
	v, err := configwire.NewVerifier(snap.SigningKeys)
	if err != nil {
		return nil, fmt.Errorf("the snapshot's signing keys: %w", err)
	}
	if snap.Seal != nil {
		if err := v.VerifySnapshot(snap); err != nil {
			return nil, fmt.Errorf("the snapshot's seal: %w", err)
		}
	}
	return v, nil
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// loader hands the items of a snapshot to l.
func loader(l *compiled.Loading) configwire.SnapshotHandler {
	return configwire.SnapshotHandler{Entity: l.Add, Subscription: l.AddSubscription}
}

// itemBatch is how many items the decoder hands over at a time.
const itemBatch = 256

// batch is items of a snapshot, entities and subscriptions apart: neither depends on the
// other until the snapshot is compiled. Batches are used again once loaded, so that reading a
// million subscriptions makes little garbage.
type batch struct {
	ents []configwire.Entity
	subs []configwire.Subscription
	// hashes holds the key hashes of subs, which the reader reuses.
	hashes [][sha256.Size]byte
}

func (b *batch) len() int { return len(b.ents) + len(b.subs) }

func (b *batch) addSubscription(s configwire.Subscription) {
	start := len(b.hashes)
	b.hashes = append(b.hashes, s.KeyHashes...)
	s.KeyHashes = b.hashes[start:len(b.hashes):len(b.hashes)]
	b.subs = append(b.subs, s)
}

// load hands the items of b to h, then empties b.
func (b *batch) load(h configwire.SnapshotHandler) error {
	for _, e := range b.ents {
		if err := h.Entity(e); err != nil {
			return err
		}
	}
	for _, s := range b.subs {
		if err := h.Subscription(s); err != nil {
			return err
		}
	}
	clear(b.ents) // no references to what was loaded
	clear(b.subs)
	b.ents, b.subs, b.hashes = b.ents[:0], b.subs[:0], b.hashes[:0]
	return nil
}

// readSnapshot reads a snapshot from r (configwire.ReadSnapshot), handing its items to h in
// order. Decoding runs on a goroutine of its own, a batch ahead of h.
func readSnapshot(r io.Reader, h configwire.SnapshotHandler) (configwire.Snapshot, error) {
	full := make(chan *batch, 4)
	empty := make(chan *batch, cap(full)+2)
	for range cap(empty) {
		empty <- &batch{}
	}
	stop := make(chan struct{})
	var snap configwire.Snapshot
	var decErr error
	go func() {
		defer close(full)
		b := <-empty
		flush := func() error {
			select {
			case full <- b:
			case <-stop:
				return errStopped
			}
			select {
			case b = <-empty:
			case <-stop:
				return errStopped
			}
			return nil
		}
		snap, decErr = configwire.ReadSnapshot(r, configwire.SnapshotHandler{
			Entity: func(e configwire.Entity) error {
				if b.ents = append(b.ents, e); b.len() == itemBatch {
					return flush()
				}
				return nil
			},
			Subscription: func(s configwire.Subscription) error {
				if b.addSubscription(s); b.len() == itemBatch {
					return flush()
				}
				return nil
			},
		})
		if decErr == nil && b.len() > 0 {
			decErr = flush()
		}
	}()
	for b := range full {
		if err := b.load(h); err != nil {
			close(stop)
			for range full { // until the decoder has stopped
			}
			return snap, err
		}
		empty <- b
	}
	return snap, decErr // set before full was closed
}

// errStopped ends a decoder whose batches are no longer wanted.
var errStopped = errors.New("configsync: decoding stopped")

// install compiles and publishes a fetched snapshot and makes its copy the cache.
func (s *Syncer) install(ctx context.Context, f *fetched) error {
	start := time.Now()
	cfg, err := f.load.Finish(f.snap)
	if err != nil {
		f.discard()
		s.setErr(err)
		return err
	}
	s.setErr(nil) // before the Config is visible, so that no one sees it with the old error
	s.opt.Install(cfg)
	s.opt.Log.InfoContext(ctx, "configuration installed from snapshot", "revision", f.snap.Revision, "apis", cfg.APIs(),
		"keys", cfg.Keys(), "fetch_ms", f.fetchMS, "took_ms", time.Since(start).Milliseconds())
	if f.tmp != "" {
		s.commitCache(ctx, f.tmp, f.snap.Revision)
	}
	releaseLoadGarbage()
	return nil
}

// releaseLoadGarbage collects the garbage of a load and returns its memory to the OS: decoding
// and indexing a million subscriptions leave about 100 MB of it, which the runtime would
// otherwise keep until it needed it again.
func releaseLoadGarbage() { debug.FreeOSMemory() }

// cacheName is the cache file in the cache folder: a snapshot stream, or a JSON snapshot when
// management sent one.
const cacheName = "config.snapshot"

// legacyCacheName is the JSON cache file of earlier versions, which a node removes unread.
const legacyCacheName = "config.json"

func (s *Syncer) cacheFile() string { return filepath.Join(s.opt.CacheDir, cacheName) }

// dropLegacyCache removes the cache file of an earlier version: it would otherwise stay behind,
// holding secret named values, and could serve a configuration long gone.
func (s *Syncer) dropLegacyCache(ctx context.Context) {
	if s.opt.CacheDir == "" {
		return
	}
	err := os.Remove(filepath.Join(s.opt.CacheDir, legacyCacheName))
	switch {
	case err == nil:
		s.opt.Log.InfoContext(ctx, "removed the configuration cache of an earlier version, unread", "file", legacyCacheName)
	case !errors.Is(err, os.ErrNotExist):
		s.opt.Log.WarnContext(ctx, "removing the configuration cache of an earlier version failed", "err", err)
	}
}

// cacheWriter is a temporary cache file being written. Its Write never fails: the first error
// is kept and reported by close, so that a full disk does not stop a node from loading its
// configuration.
type cacheWriter struct {
	f   *os.File
	bw  *bufio.Writer
	err error
}

// newCacheWriter creates a temporary file in the cache folder (0600: it holds secret named
// values), or returns nil without a cache or when the file cannot be created.
func (s *Syncer) newCacheWriter(ctx context.Context) *cacheWriter {
	if s.opt.CacheDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.opt.CacheDir, 0o700); err != nil {
		s.opt.Log.WarnContext(ctx, "writing the configuration cache failed", "dir", s.opt.CacheDir, "err", err)
		return nil
	}
	f, err := os.CreateTemp(s.opt.CacheDir, "config-*.snapshot")
	if err != nil {
		s.opt.Log.WarnContext(ctx, "writing the configuration cache failed", "dir", s.opt.CacheDir, "err", err)
		return nil
	}
	return &cacheWriter{f: f, bw: bufio.NewWriterSize(f, 64<<10)}
}

func (c *cacheWriter) Write(p []byte) (int, error) {
	if c.err == nil {
		_, c.err = c.bw.Write(p)
	}
	return len(p), nil
}

// close closes the file and returns its name, or removes it and returns "" when it is not to
// be kept or could not be written.
func (c *cacheWriter) close(keep bool) string {
	if c.err == nil {
		c.err = c.bw.Flush()
	}
	if err := c.f.Close(); c.err == nil {
		c.err = err
	}
	if keep && c.err == nil {
		return c.f.Name()
	}
	_ = os.Remove(c.f.Name())
	return ""
}

// commitCache makes the temporary file tmp, holding revision rev, the cache, unless the cache
// already holds a later revision written by this process.
func (s *Syncer) commitCache(ctx context.Context, tmp string, rev int64) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if rev < s.cacheRev {
		_ = os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, s.cacheFile()); err != nil {
		_ = os.Remove(tmp)
		s.opt.Log.WarnContext(ctx, "writing the configuration cache failed", "dir", s.opt.CacheDir, "err", err)
		return
	}
	s.cacheRev = rev
}

// writeCache writes a capture of the Builder's state to the cache. It may run on any
// goroutine: a capture is immutable.
func (s *Syncer) writeCache(ctx context.Context, c *compiled.Capture) {
	cw := s.newCacheWriter(ctx)
	if cw == nil {
		return
	}
	err := c.Write(cw)
	if tmp := cw.close(err == nil); tmp != "" {
		s.commitCache(ctx, tmp, c.Revision())
		return
	}
	if err == nil {
		err = cw.err
	}
	s.opt.Log.WarnContext(ctx, "writing the configuration cache failed", "dir", s.opt.CacheDir, "err", err)
}

func (s *Syncer) loadCache(ctx context.Context) bool {
	if s.opt.CacheDir == "" {
		return false
	}
	file, err := os.Open(s.cacheFile())
	if err != nil {
		return false
	}
	defer file.Close()
	load := s.builder.StartLoad()
	snap, err := readSnapshot(file, loader(load))
	if err != nil {
		s.opt.Log.WarnContext(ctx, "cached configuration unreadable", "err", err)
		return false
	}
	cfg, err := load.Finish(snap)
	if err != nil {
		s.opt.Log.WarnContext(ctx, "cached configuration does not compile", "err", err)
		return false
	}
	s.opt.Install(cfg)
	s.opt.Log.InfoContext(ctx, "configuration installed from cache", "revision", snap.Revision)
	releaseLoadGarbage()
	return true
}

// removeCache deletes the cached snapshot, so that a restarted node does not serve a
// configuration that no longer exists; no cache write of an earlier revision than rev brings
// it back.
func (s *Syncer) removeCache(ctx context.Context, rev int64) {
	if s.opt.CacheDir == "" {
		return
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.cacheRev = max(s.cacheRev, rev)
	if err := os.Remove(s.cacheFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.opt.Log.WarnContext(ctx, "removing the configuration cache failed", "dir", s.opt.CacheDir, "err", err)
	}
}

// follow consumes the change stream of the service of snap, applying revisions in order and
// resyncing on gaps. It starts with the last change already in the stream: that one and
// those after it reveal any change committed since snap (a gap resyncs), so no second
// snapshot is needed.
func (s *Syncer) follow(ctx context.Context, snap configwire.Snapshot) error {
	info := snap.NATS
	urls := s.opt.NATSURL
	if urls == "" {
		urls = strings.Join(info.URLs, ",")
	}
	nc, err := nats.Connect(urls, s.natsOptions(ctx, info)...)
	if err != nil {
		return fmt.Errorf("NATS %s: %w", urls, err)
	}
	defer nc.Close()
	if s.opt.Connected != nil {
		s.opt.Connected(nc)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	subject := info.Subject
	if subject == "" {
		subject = bus.ConfigSubject(snap.ServiceID)
	}
	s.serviceID = snap.ServiceID
	msgs := make(chan jetstream.Msg, 1024)
	var cons jetstream.Consumer
	for {
		cons, err = js.OrderedConsumer(ctx, bus.ConfigStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		s.opt.Log.WarnContext(ctx, "subscribing to the change stream failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.opt.Retry):
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	// The cache is written at most once per CacheWriteDelay after incremental changes, and
	// on a goroutine of its own: writing costs as much as the whole configuration (seconds at
	// a million subscriptions), and changes keep applying meanwhile. This loop only takes a
	// capture of the Builder's state, one write at a time.
	cacheTimer := time.NewTimer(time.Hour)
	cacheTimer.Stop()
	cachePending := false
	// A dropped change asks for a snapshot, at most once per Retry: a flood of forged
	// messages costs management one snapshot per interval, and the real revision is never
	// lost (the snapshot holds it).
	resyncTimer := time.NewTimer(time.Hour)
	resyncTimer.Stop()
	resyncPending := false
	var writing sync.WaitGroup
	writer := make(chan struct{}, 1) // holds a token while a write runs
	for {
		select {
		case <-ctx.Done():
			// A node stopping gracefully leaves the cache at its last applied revision, so a
			// restart during an outage does not resurrect a revoked key (a kill -9 may lose up
			// to CacheWriteDelay of changes from the cache; the next snapshot repairs it).
			writing.Wait()
			if cachePending && s.builder.Current() != nil {
				s.writeCache(context.WithoutCancel(ctx), s.builder.Capture())
			}
			return nil
		case m := <-msgs:
			if s.handle(ctx, m) && !cachePending {
				cacheTimer.Reset(s.opt.CacheWriteDelay)
				cachePending = true
			}
			if s.dropResync && !resyncPending {
				s.dropResync = false
				if wait := time.Until(s.lastDropResync.Add(s.opt.Retry)); wait > 0 {
					resyncTimer.Reset(wait)
					resyncPending = true
					continue
				}
				s.lastDropResync = time.Now()
				s.resyncLogged(ctx)
			}
		case <-resyncTimer.C:
			resyncPending, s.dropResync = false, false
			s.lastDropResync = time.Now()
			s.resyncLogged(ctx)
		case <-cacheTimer.C:
			if s.builder.Current() == nil {
				cachePending = false
				continue
			}
			select {
			case writer <- struct{}{}:
				cachePending = false
				c := s.builder.Capture()
				writing.Go(func() {
					defer func() { <-writer }()
					s.writeCache(context.WithoutCancel(ctx), c)
				})
			default:
				cacheTimer.Reset(s.opt.CacheWriteDelay) // the previous write still runs
			}
		}
	}
}

// natsOptions are the options of the node's NATS connection. The node authenticates with its
// gateway token (management authorizes it through the server's auth callout, issue 12) and
// takes its replies under the inbox prefix management named, the only one it may read.
func (s *Syncer) natsOptions(ctx context.Context, info configwire.NATSInfo) []nats.Option {
	opts := []nats.Option{nats.Name("gatehouse-gateway"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second), nats.Token(strings.TrimSpace(strings.TrimPrefix(s.opt.Token, "GatewayKey "))),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.opt.Log.WarnContext(ctx, "NATS error", "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil && ctx.Err() == nil {
				s.opt.Log.ErrorContext(ctx, "NATS connection closed; the bus refused this node (its gateway key regenerated or the gateway deleted?)", "err", err)
			}
		}),
	}
	if info.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(info.InboxPrefix))
	}
	if s.opt.NATSCAFile != "" {
		opts = append(opts, nats.RootCAs(s.opt.NATSCAFile))
	}
	return opts
}

// handle applies one message and reports whether it changed the Builder incrementally, so
// that the cache needs writing (a snapshot install writes it itself).
func (s *Syncer) handle(ctx context.Context, m jetstream.Msg) bool {
	start := time.Now()
	ch, ok := s.verify(ctx, m)
	if !ok {
		return false
	}
	for _, it := range ch.Items {
		if it.Op == configwire.OpDeleteService {
			s.opt.Log.WarnContext(ctx, "the service was deleted; serving no APIs", "revision", ch.Revision)
			s.opt.Install(s.builder.Empty(ch.Revision))
			s.removeCache(ctx, ch.Revision)
			return false
		}
	}
	prev := s.builder.Current()
	cfg, err := s.builder.Apply(ch)
	switch {
	case errors.Is(err, compiled.ErrResync):
		s.opt.Log.InfoContext(ctx, "change not applied incrementally; resyncing", "revision", ch.Revision, "reason", err)
		s.resyncLogged(ctx)
		return false
	case err != nil:
		// The Builder kept the previous revision; the snapshot tells whether management's
		// state compiles (the change may have been superseded).
		s.setErr(err)
		s.opt.Log.ErrorContext(ctx, "change does not compile; keeping the previous configuration and resyncing",
			"revision", ch.Revision, "err", err)
		s.resyncLogged(ctx)
		return false
	case cfg == prev:
		return false // a re-delivery of an applied revision
	}
	s.setErr(nil) // before the Config is visible, so that no one sees it with the old error
	s.opt.Install(cfg)
	took := time.Since(start)
	if s.opt.Applied != nil {
		s.opt.Applied(ch.Revision, took)
	}
	s.opt.Log.DebugContext(ctx, "change applied", "revision", ch.Revision, "items", len(ch.Items), "took_us", took.Microseconds())
	return true
}

// verify checks that m is a change management signed for this node's service, and decodes
// it. A message that is not (unsigned, forged, or a replay of a revision the node already
// serves) is dropped, counted and logged; one that claims a revision the node has not yet
// applied makes the node fetch a snapshot (follow), so a forged message never costs the real
// revision, whether or not it reaches the node. An undecodable signed change resyncs at once.
func (s *Syncer) verify(ctx context.Context, m jetstream.Msg) (configwire.Change, bool) {
	var ch configwire.Change
	h := m.Headers()
	svc, rawRev, sig := h.Get(bus.HeaderService), h.Get(bus.HeaderRevision), h.Get(bus.HeaderSignature)
	rev, revErr := bus.ParseRevision(rawRev)
	err := s.verifier.Load().VerifyChange(svc, rev, m.Data(), sig)
	switch {
	case err != nil:
	case revErr != nil || svc != s.serviceID:
		err = fmt.Errorf("%w: signed for another service or revision", configwire.ErrForged)
	default:
		if jerr := json.Unmarshal(m.Data(), &ch); jerr != nil {
			s.opt.Log.WarnContext(ctx, "undecodable change; resyncing", "err", jerr)
			s.resyncLogged(ctx)
			return ch, false
		}
		if ch.ServiceID != svc || ch.Revision != rev {
			err = fmt.Errorf("%w: the change's service or revision differs from its signed headers", configwire.ErrForged)
		}
	}
	if err != nil {
		reason := "forged"
		if errors.Is(err, configwire.ErrUnsigned) {
			reason = "unsigned"
		}
		s.dropped(reason)
		ahead := revErr == nil && rev > s.builder.Revision()
		s.opt.Log.WarnContext(ctx, "configuration change dropped", "reason", reason, "revision", rawRev,
			"service_id", svc, "resync", ahead, "err", err)
		s.dropResync = s.dropResync || ahead
		return ch, false
	}
	if meta, merr := m.Metadata(); merr == nil && meta.Sequence.Consumer > 1 && ch.Revision <= s.builder.Revision() &&
		s.builder.Current() != nil {
		// The first message of a subscription is the stream's last, which the node may
		// already serve; any later one at or below the served revision is a copy.
		s.dropped("replayed")
		s.opt.Log.WarnContext(ctx, "configuration change dropped", "reason", "replayed", "revision", ch.Revision,
			"serving", s.builder.Revision())
		return ch, false
	}
	return ch, true
}

func (s *Syncer) dropped(reason string) {
	if s.opt.Dropped != nil {
		s.opt.Dropped(reason)
	}
}

func (s *Syncer) resyncLogged(ctx context.Context) {
	if err := s.resync(ctx); err != nil && ctx.Err() == nil {
		s.setErr(err)
		s.opt.Log.ErrorContext(ctx, "resync failed; serving the previous configuration", "err", err)
	}
}

// resync fetches and installs a snapshot (retrying until management answers, unless it
// refuses the token, which ends the attempt).
func (s *Syncer) resync(ctx context.Context) error {
	for {
		f, err := s.fetch(ctx)
		if err == nil {
			if f.snap.Revision <= s.builder.Revision() && s.builder.Current() != nil {
				f.discard()
				s.setErr(nil)
				return nil // nothing newer than what is installed
			}
			return s.install(ctx, f)
		}
		if errors.Is(err, ErrUnauthorized) {
			return err
		}
		s.setErr(err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.opt.Retry):
		}
	}
}
