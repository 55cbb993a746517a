// Package connlog sends management the record of every WebSocket session that ended on the
// node (configwire.ConnectionLogBatch on bus.ConnectionLogSubject): batched about once a
// second, on core NATS, authenticated with the node's key like its heartbeats, so that an
// operator finds why a client was disconnected in the portal within seconds.
package connlog

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// Defaults of the Options.
const (
	DefaultInterval   = time.Second
	DefaultMaxPending = 10000
)

// Options configure a Recorder.
type Options struct {
	// NodeID names the node in its batches (the heartbeat's node id); required.
	NodeID string
	// Target returns the node's service (internal id) and gateway resource, "" while it has
	// no configuration; records wait until it has.
	Target func() (serviceID, gateway string)
	// Key returns the node key management handed this node with its snapshot, which
	// authenticates each batch; records wait until there is one.
	Key func() (configwire.NodeKey, bool)
	// Interval is how often waiting records are sent; zero means DefaultInterval.
	Interval time.Duration
	// MaxPending bounds the records waiting for a connection, a configuration or a key;
	// beyond it the oldest are dropped (and logged). Zero means DefaultMaxPending.
	MaxPending int
	Log        *slog.Logger
}

// Recorder collects the records of ended sessions and publishes them. A nil *Recorder
// records nothing, so callers need not check. Its methods are safe for concurrent use; Run
// runs once.
type Recorder struct {
	opt Options

	mu      sync.Mutex
	nc      *nats.Conn // borrowed: never closed here
	pending []configwire.ConnectionLogRecord
	dropped int
}

// New returns a Recorder that publishes once it has a connection (UseConn).
func New(opt Options) *Recorder {
	if opt.Interval <= 0 {
		opt.Interval = DefaultInterval
	}
	if opt.MaxPending <= 0 {
		opt.MaxPending = DefaultMaxPending
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Target == nil {
		opt.Target = func() (string, string) { return "", "" }
	}
	if opt.Key == nil {
		opt.Key = func() (configwire.NodeKey, bool) { return configwire.NodeKey{}, false }
	}
	return &Recorder{opt: opt}
}

// UseConn makes the Recorder publish on nc, a connection someone else owns (configsync's);
// a later call replaces it after a reconnection.
func (r *Recorder) UseConn(nc *nats.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if nc != nil {
		r.nc = nc
	}
}

// Add queues the record of one ended session. Strings are cut to the batch's bounds.
func (r *Recorder) Add(rec configwire.ConnectionLogRecord) {
	if r == nil {
		return
	}
	rec.Clamp()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, rec)
	if over := len(r.pending) - r.opt.MaxPending; over > 0 {
		r.pending = slices.Delete(r.pending, 0, over)
		r.dropped += over
	}
}

// Run sends the waiting records every Interval until ctx ends, then once more and flushes
// the connection. Cancel ctx only after the sessions drained, so that their records go too.
// It returns nil.
func (r *Recorder) Run(ctx context.Context) error {
	tick := time.NewTicker(r.opt.Interval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			if err := r.Flush(); err != nil {
				r.opt.Log.Warn("connection log not sent before shutdown", "err", err)
			}
			return nil
		case <-tick.C:
		}
		err := r.Flush()
		switch {
		case err != nil && !failing:
			r.opt.Log.Warn("sending the connection log failed; records wait", "err", err)
		case err == nil && failing:
			r.opt.Log.Info("connection log sent again")
		}
		failing = err != nil
	}
}

// errNotReady is Flush's error while the node lacks a connection, a configuration or a key.
var errNotReady = errors.New("connection log: no NATS connection, configuration or node key yet")

// Flush publishes the waiting records in batches of at most configwire.MaxConnectionLogRecords
// and flushes the connection. Records stay queued when the node cannot send them yet; a
// batch the connection refused is dropped and reported.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	nc, recs, dropped := r.nc, r.pending, r.dropped
	service, gateway := r.opt.Target()
	key, keyed := r.opt.Key()
	ready := nc != nil && service != "" && gateway != "" && keyed
	if ready {
		r.pending, r.dropped = nil, 0
	}
	r.mu.Unlock()
	if !ready {
		if len(recs) == 0 {
			return nil
		}
		return errNotReady
	}
	if dropped > 0 {
		r.opt.Log.Warn("connection log records dropped: too many waited to be sent", "records", dropped)
	}
	if len(recs) == 0 {
		return nil
	}
	subject := bus.ConnectionLogSubject(service, gateway)
	var errs []error
	for chunk := range slices.Chunk(recs, configwire.MaxConnectionLogRecords) {
		data, err := json.Marshal(configwire.ConnectionLogBatch{NodeID: r.opt.NodeID, ServiceID: service, Gateway: gateway, Records: chunk})
		if err == nil {
			msg := nats.NewMsg(subject)
			msg.Data = data
			msg.Header.Set(bus.HeaderNodeAuth, key.Sign(subject, data))
			err = nc.PublishMsg(msg)
		}
		errs = append(errs, err)
	}
	errs = append(errs, nc.FlushTimeout(time.Second))
	return errors.Join(errs...)
}
