// Package configsync keeps a gateway node's configuration current: it fetches a snapshot of
// its gateway resource from management, follows the service's change stream on NATS
// JetStream, applies revisions in order, and falls back to a fresh snapshot on any gap or
// change it cannot apply (level-based convergence). The last good snapshot is kept on disk
// so a node can start while management and NATS are down ("fail static").
package configsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// ConfigPath is management's snapshot endpoint (management's api.GatewayConfigPath).
const ConfigPath = "/gatehouse/gateway/v1/config"

// ErrUnauthorized means management refused the gateway token: it is wrong, expired, or was
// signed with a key that has since been regenerated.
var ErrUnauthorized = errors.New("management refused the gateway token (wrong, expired, or its key was regenerated); generate a new token with generateToken")

// Options configure a Syncer.
type Options struct {
	ManagementURL string
	Token         string
	// NATSURL overrides the NATS servers management advertises.
	NATSURL string
	// CacheDir holds the last good snapshot; empty disables the cache.
	CacheDir string
	HTTP     *http.Client
	Log      *slog.Logger
	// Install publishes a new Config to the hot path.
	Install func(*compiled.Config)
	// Applied is told the apply latency of each change, for metrics; optional.
	Applied func(rev int64, took time.Duration)
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
}

// New returns a Syncer compiling with builder.
func New(opt Options, builder *compiled.Builder) *Syncer {
	if opt.HTTP == nil {
		opt.HTTP = &http.Client{Timeout: 60 * time.Second}
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
	snap, err := s.fetch(ctx)
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
		if snap, err = s.fetchUntil(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	if err := s.install(ctx, snap); err != nil {
		s.opt.Log.ErrorContext(ctx, "snapshot does not compile; keeping the previous configuration", "revision", snap.Revision, "err", err)
	}
	return s.follow(ctx, snap)
}

// fetchUntil retries fetch until it succeeds, management refuses the token, or ctx ends.
func (s *Syncer) fetchUntil(ctx context.Context) (configwire.Snapshot, error) {
	for {
		snap, err := s.fetch(ctx)
		if err == nil || errors.Is(err, ErrUnauthorized) {
			return snap, err
		}
		s.setErr(err)
		s.opt.Log.WarnContext(ctx, "fetching the configuration snapshot failed", "err", err)
		select {
		case <-ctx.Done():
			return snap, ctx.Err()
		case <-time.After(s.opt.Retry):
		}
	}
}

func (s *Syncer) fetch(ctx context.Context) (configwire.Snapshot, error) {
	var snap configwire.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.opt.ManagementURL, "/")+ConfigPath, nil)
	if err != nil {
		return snap, err
	}
	req.Header.Set("Authorization", "GatewayKey "+s.opt.Token)
	resp, err := s.opt.HTTP.Do(req)
	if err != nil {
		return snap, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return snap, ErrUnauthorized
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return snap, fmt.Errorf("management answered %d: %s", resp.StatusCode, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		return snap, fmt.Errorf("decoding the snapshot: %w", err)
	}
	return snap, nil
}

// install compiles and publishes a snapshot and writes it to the cache.
func (s *Syncer) install(ctx context.Context, snap configwire.Snapshot) error {
	start := time.Now()
	cfg, err := s.builder.Load(snap)
	if err != nil {
		s.setErr(err)
		return err
	}
	s.opt.Install(cfg)
	s.setErr(nil)
	s.opt.Log.InfoContext(ctx, "configuration installed from snapshot", "revision", snap.Revision, "apis", cfg.APIs(),
		"keys", cfg.Keys(), "took_ms", time.Since(start).Milliseconds())
	s.writeCache(ctx, snap)
	return nil
}

func (s *Syncer) cacheFile() string { return filepath.Join(s.opt.CacheDir, "config.json") }

// writeCache stores snap atomically. The file holds secret named values: it is 0600.
func (s *Syncer) writeCache(ctx context.Context, snap configwire.Snapshot) {
	if s.opt.CacheDir == "" {
		return
	}
	err := func() error {
		if err := os.MkdirAll(s.opt.CacheDir, 0o700); err != nil {
			return err
		}
		f, err := os.CreateTemp(s.opt.CacheDir, "config-*.json")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if err := json.NewEncoder(f).Encode(snap); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return os.Rename(f.Name(), s.cacheFile())
	}()
	if err != nil {
		s.opt.Log.WarnContext(ctx, "writing the configuration cache failed", "dir", s.opt.CacheDir, "err", err)
	}
}

func (s *Syncer) loadCache(ctx context.Context) bool {
	if s.opt.CacheDir == "" {
		return false
	}
	raw, err := os.ReadFile(s.cacheFile())
	if err != nil {
		return false
	}
	var snap configwire.Snapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		s.opt.Log.WarnContext(ctx, "cached configuration unreadable", "err", err)
		return false
	}
	cfg, err := s.builder.Load(snap)
	if err != nil {
		s.opt.Log.WarnContext(ctx, "cached configuration does not compile", "err", err)
		return false
	}
	s.opt.Install(cfg)
	s.opt.Log.InfoContext(ctx, "configuration installed from cache", "revision", snap.Revision)
	return true
}

// removeCache deletes the cached snapshot, so that a restarted node does not serve a
// configuration that no longer exists.
func (s *Syncer) removeCache(ctx context.Context) {
	if s.opt.CacheDir == "" {
		return
	}
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
	nc, err := nats.Connect(urls, nats.Name("gatehouse-gateway"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second))
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
	// The cache is written at most once per CacheWriteDelay after incremental changes: an
	// Export costs as much as the whole configuration.
	cacheTimer := time.NewTimer(time.Hour)
	cacheTimer.Stop()
	cachePending := false
	for {
		select {
		case <-ctx.Done():
			// A node stopping gracefully leaves the cache at its last applied revision, so a
			// restart during an outage does not resurrect a revoked key (a kill -9 may lose up
			// to CacheWriteDelay of changes from the cache; the next snapshot repairs it).
			if cachePending && s.builder.Current() != nil {
				s.writeCache(context.WithoutCancel(ctx), s.builder.Export())
			}
			return nil
		case m := <-msgs:
			if s.handle(ctx, m) && !cachePending {
				cacheTimer.Reset(s.opt.CacheWriteDelay)
				cachePending = true
			}
		case <-cacheTimer.C:
			cachePending = false
			if s.builder.Current() != nil {
				s.writeCache(ctx, s.builder.Export())
			}
		}
	}
}

// handle applies one message and reports whether it changed the Builder incrementally, so
// that the cache needs writing (a snapshot install writes it itself).
func (s *Syncer) handle(ctx context.Context, m jetstream.Msg) bool {
	start := time.Now()
	var ch configwire.Change
	if err := json.Unmarshal(m.Data(), &ch); err != nil {
		s.opt.Log.WarnContext(ctx, "undecodable change; resyncing", "err", err)
		s.resyncLogged(ctx)
		return false
	}
	for _, it := range ch.Items {
		if it.Op == configwire.OpDeleteService {
			s.opt.Log.WarnContext(ctx, "the service was deleted; serving no APIs", "revision", ch.Revision)
			s.opt.Install(s.builder.Empty(ch.Revision))
			s.removeCache(ctx)
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
	s.opt.Install(cfg)
	s.setErr(nil)
	took := time.Since(start)
	if s.opt.Applied != nil {
		s.opt.Applied(ch.Revision, took)
	}
	s.opt.Log.DebugContext(ctx, "change applied", "revision", ch.Revision, "items", len(ch.Items), "took_us", took.Microseconds())
	return true
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
		snap, err := s.fetch(ctx)
		if err == nil {
			if snap.Revision <= s.builder.Revision() && s.builder.Current() != nil {
				s.setErr(nil)
				return nil // nothing newer than what is installed
			}
			return s.install(ctx, snap)
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
