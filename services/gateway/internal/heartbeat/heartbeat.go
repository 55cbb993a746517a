// Package heartbeat reports a gateway node to management: the configuration revision it
// serves, its open connections and its health, published on core NATS
// (bus.HeartbeatSubject) every Interval and at once after each configuration install.
package heartbeat

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// DefaultInterval is how often a node reports when nothing changes.
const DefaultInterval = 10 * time.Second

// minGap spaces heartbeats caused by Notify: the first of a burst goes out at once, the rest
// collapse into one sent minGap later with the state as it is then.
const minGap = 25 * time.Millisecond

// State is what the node reports; the Publisher reads it through Options.State just before
// each heartbeat. A State without ServiceID or Gateway (no configuration loaded yet) is not
// reported: the node belongs to no gateway resource management could show it under.
type State struct {
	ServiceID   string
	Gateway     string
	Revision    int64
	Connections int
	Healthy     bool
	// LastError must hold no secret; it is cut to configwire.MaxHeartbeatErrorBytes.
	LastError string
	// URL is where clients reach the node (GATEWAY_PUBLIC_URL); empty for none.
	URL string
	// PolicyFailures are what the served revision could not compile (the first
	// configwire.MaxHeartbeatFailures are sent), FailedAPIs how many APIs fail closed.
	PolicyFailures []configwire.PolicyFailure
	FailedAPIs     int
}

// Options configure a Publisher.
type Options struct {
	// State reads the node's state; required. It is called from Run's goroutine only.
	State func() State
	// URLs are NATS servers to connect to when New is given no connection. Empty means Run
	// waits for UseConn or SetURLs.
	URLs []string
	// Interval between heartbeats when nothing changes; zero means DefaultInterval.
	Interval time.Duration
	// NodeID identifies this process; empty means a random UUID.
	NodeID string
	// Version and Hostname describe the node; empty means the build's module version or VCS
	// revision, and os.Hostname.
	Version  string
	Hostname string
	Log      *slog.Logger
	// Key returns the node key management handed this node with its snapshot
	// (configsync.Syncer.NodeKey), which authenticates each heartbeat; required. Until it
	// reports one, no heartbeat is sent: management would drop it.
	Key func() (configwire.NodeKey, bool)
}

// Publisher sends a node's heartbeats. Its methods are safe for concurrent use; Run runs once.
type Publisher struct {
	opt     Options
	started time.Time
	notify  chan struct{}

	// lastSent is when the last heartbeat was sent; touched by Run's goroutine only.
	lastSent time.Time

	mu    sync.Mutex
	nc    *nats.Conn // borrowed: never closed here
	urls  []string   // to connect to when nc is nil
	ready chan struct{}
	set   bool // ready is closed: nc or urls is known
}

// New returns a Publisher. It publishes on the first of: nc when not nil, a connection of its
// own to Options.URLs, or whatever UseConn or SetURLs give it first.
func New(nc *nats.Conn, opt Options) *Publisher {
	if opt.Interval <= 0 {
		opt.Interval = DefaultInterval
	}
	if opt.NodeID == "" {
		opt.NodeID = uuid.NewString()
	}
	if opt.Version == "" {
		opt.Version = buildVersion()
	}
	if opt.Hostname == "" {
		opt.Hostname, _ = os.Hostname()
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{opt: opt, started: time.Now(), notify: make(chan struct{}, 1), ready: make(chan struct{})}
	if nc != nil {
		p.UseConn(nc)
	}
	p.SetURLs(opt.URLs)
	return p
}

// NodeID is the id this node reports under.
func (p *Publisher) NodeID() string { return p.opt.NodeID }

// UseConn makes the Publisher publish on nc, a connection someone else owns and closes (the
// change stream's, from configsync.Options.Connected). A later call replaces the connection:
// configsync hands over a new one when it reconnects after an outage, and the old one is
// closed. It has no effect once the Publisher connects by itself from URLs.
func (p *Publisher) UseConn(nc *nats.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if nc == nil || (p.set && p.nc == nil) {
		return
	}
	p.nc = nc
	if !p.set {
		p.set = true
		close(p.ready)
	}
}

// conn is the connection to publish on: the latest borrowed one, else own.
func (p *Publisher) conn(own *nats.Conn) *nats.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nc != nil {
		return p.nc
	}
	return own
}

// SetURLs tells the Publisher where NATS is; it connects there itself. Each element may hold
// several comma-separated URLs. It has no effect once the Publisher has a connection or URLs,
// or when urls holds none: the NATS client follows the cluster by itself once connected.
func (p *Publisher) SetURLs(urls []string) {
	var clean []string
	for _, u := range urls {
		for _, part := range strings.Split(u, ",") {
			if part = strings.TrimSpace(part); part != "" {
				clean = append(clean, part)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set || len(clean) == 0 {
		return
	}
	p.urls, p.set = clean, true
	close(p.ready)
}

// Notify asks for a heartbeat now, as after a configuration install, so that management
// learns the new revision within milliseconds. It never blocks; bursts are coalesced.
func (p *Publisher) Notify() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Run publishes heartbeats until ctx ends, then sends a last one marked Stopping so that
// management forgets the node at once. Until it has a connection or URLs it waits. It
// returns an error only when it cannot create its own NATS connection (malformed URLs); an
// unreachable server is retried for ever, and failed publications are logged and replaced by
// the next heartbeat.
func (p *Publisher) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-p.ready:
	}
	p.mu.Lock()
	nc, urls := p.nc, strings.Join(p.urls, ",")
	p.mu.Unlock()
	if nc == nil {
		var err error
		nc, err = nats.Connect(urls, nats.Name("gatehouse-gateway-heartbeat"), nats.MaxReconnects(-1),
			nats.RetryOnFailedConnect(true), nats.ReconnectWait(time.Second), nats.ReconnectBufSize(64<<10))
		if err != nil {
			return fmt.Errorf("heartbeat: NATS %s: %w", urls, err)
		}
		defer nc.Close()
	}
	return p.loop(ctx, nc)
}

// loop is Run's publishing loop on a connected nc.
func (p *Publisher) loop(ctx context.Context, nc *nats.Conn) error {
	ticker := time.NewTicker(p.opt.Interval)
	defer ticker.Stop()
	var (
		trailing <-chan time.Time // a coalesced heartbeat is due
		last     time.Time
		failing  bool
	)
	send := func(stopping bool) {
		last = time.Now()
		err := p.publish(p.conn(nc), stopping)
		switch {
		case err != nil && !failing:
			p.opt.Log.WarnContext(ctx, "publishing a heartbeat failed", "err", err)
		case err == nil && failing:
			p.opt.Log.InfoContext(ctx, "heartbeats published again")
		}
		failing = err != nil
	}
	send(false)
	for {
		select {
		case <-ctx.Done():
			send(true)
			_ = p.conn(nc).FlushTimeout(time.Second)
			return nil
		case <-ticker.C:
			send(false)
		case <-p.notify:
			if trailing != nil {
				continue
			}
			if wait := minGap - time.Since(last); wait > 0 {
				trailing = time.After(wait)
				continue
			}
			send(false)
		case <-trailing:
			trailing = nil
			send(false)
		}
	}
}

// publish sends one heartbeat of the current state; a node without configuration sends none.
func (p *Publisher) publish(nc *nats.Conn, stopping bool) error {
	st := p.opt.State()
	if st.ServiceID == "" || st.Gateway == "" {
		return nil
	}
	hb := configwire.Heartbeat{
		NodeID:      p.opt.NodeID,
		ServiceID:   st.ServiceID,
		Gateway:     st.Gateway,
		Revision:    st.Revision,
		Connections: st.Connections,
		Healthy:     st.Healthy,
		LastError:   truncate(st.LastError, configwire.MaxHeartbeatErrorBytes),
		Started:     p.started,
		Sent:        p.nextSent(),
		Interval:    p.opt.Interval,
		Version:     truncate(p.opt.Version, 256),
		Hostname:    truncate(p.opt.Hostname, 256),
		Stopping:    stopping,
		URL:         st.URL,
		FailedAPIs:  st.FailedAPIs,
	}
	for _, f := range st.PolicyFailures[:min(len(st.PolicyFailures), configwire.MaxHeartbeatFailures)] {
		f.Error = truncate(f.Error, configwire.MaxHeartbeatErrorBytes)
		for _, s := range []*string{&f.API, &f.Operation, &f.Product, &f.Scope, &f.Policy} {
			*s = truncate(*s, 256)
		}
		hb.PolicyFailures = append(hb.PolicyFailures, f)
	}
	raw, err := json.Marshal(hb)
	if err != nil {
		return err
	}
	key, ok := p.opt.Key()
	if !ok {
		p.opt.Log.Debug("no node key from management yet; heartbeat not sent")
		return nil
	}
	msg := &nats.Msg{Subject: bus.HeartbeatSubject(hb.ServiceID, hb.Gateway), Data: raw, Header: nats.Header{}}
	msg.Header.Set(bus.HeaderNodeAuth, key.Sign(msg.Subject, raw))
	return nc.PublishMsg(msg)
}

// nextSent is the Sent time of the next heartbeat: the wall clock, but always after the
// last one's, even when the clock is stepped back, since management drops a heartbeat not sent
// after the last it accepted from the node as a replay.
func (p *Publisher) nextSent() time.Time {
	now := time.Now().Round(0) // the wall clock alone, as the heartbeat carries it
	if !now.After(p.lastSent) {
		now = p.lastSent.Add(time.Nanosecond)
	}
	p.lastSent = now
	return now
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// buildVersion is the main module's version, or its VCS revision for a development build.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
