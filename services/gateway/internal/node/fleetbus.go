package node

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fleetBus is the node's NATS connection, which the node learns late: management's snapshot
// names the servers, and configsync connects to them (a new connection after an outage).
// Until then JetStream returns nil and the parts that use NATS count, publish or answer on
// their own, or wait. Its methods are safe for concurrent use.
type fleetBus struct {
	log *slog.Logger
	js  atomic.Pointer[jetstream.JetStream]

	mu        sync.Mutex
	onConnect []func(*nats.Conn)
}

// JetStream is the JetStream context of the latest connection, or nil before the first.
func (b *fleetBus) JetStream() jetstream.JetStream {
	if p := b.js.Load(); p != nil {
		return *p
	}
	return nil
}

// OnConnect registers fn to be told each new connection, after JetStream returns it. The node
// registers every fn before Run starts the sync that connects.
func (b *fleetBus) OnConnect(fn func(*nats.Conn)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onConnect = append(b.onConnect, fn)
}

// connect takes over nc, configsync's connection (configsync.Options.Connected): it is
// borrowed, and closes when the sync stops.
func (b *fleetBus) connect(nc *nats.Conn) {
	if js, err := jetstream.New(nc); err != nil {
		b.log.Warn("JetStream unavailable: counting and publishing usage on this node only", "err", err)
	} else {
		b.js.Store(&js)
	}
	b.mu.Lock()
	fns := b.onConnect
	b.mu.Unlock()
	for _, fn := range fns {
		fn(nc)
	}
}
