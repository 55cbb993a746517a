package node

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"gatehouse.dev/gateway/internal/heartbeat"
)

// DefaultNATSReadyTimeout is the default of GATEWAY_NATS_READY_TIMEOUT.
const DefaultNATSReadyTimeout = 5 * time.Second

// countingAlone is what a node's heartbeat reports while it counts limits on its own.
const countingAlone = "rate limits, quotas and connection limits are counted on this node only: NATS is not usable"

// Polls of fleetGate.run: fast until the node is ready, then only to report changes.
const (
	readyPoll = 10 * time.Millisecond
	watchPoll = 250 * time.Millisecond
)

// fleetGate decides when a node is ready for traffic: once it has a configuration and counts
// rate limits, quotas and connections with the fleet through NATS (clustercount), so that it
// never admits what the fleet would refuse. If NATS is not usable within timeout of the first
// configuration (NATS down, or unknown because the node started from its cache while
// management is down), the node turns ready anyway and counts on its own (fail open, fail
// static); it says so in a log line and in its heartbeats until NATS is back.
//
// Readiness is latched: a node that loses NATS later keeps serving, since its data path does
// not need NATS.
type fleetGate struct {
	configured func() bool // a configuration is installed
	shared     func() bool // the counters are the fleet's now
	// prepare binds the counters to NATS if it is connected; it is called while not shared,
	// with run's ctx.
	prepare func(context.Context)
	timeout time.Duration
	changed func() // told when readiness or sharing changes, so heartbeats report it at once
	log     *slog.Logger

	ready atomic.Bool
	// wake, buffered for one, makes run look now rather than at its next poll (poke).
	wake chan struct{}
}

// poke makes run look at once, as when the node has just connected to NATS. It never blocks.
func (g *fleetGate) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Ready reports whether the node may take traffic (draining aside).
func (g *fleetGate) Ready() bool { return g.ready.Load() }

// report marks st unhealthy, saying why, while the node counts on its own.
func (g *fleetGate) report(st *heartbeat.State) {
	if g.shared() {
		return
	}
	st.Healthy = false
	if st.LastError == "" {
		st.LastError = countingAlone
	} else {
		st.LastError += "; " + countingAlone
	}
}

// sharing reports whether the node counts with the fleet, and when it does not, asks the
// counters to bind to NATS: they otherwise do so only when a limit is counted, and a node
// that reconnected should report that it counts with the fleet before traffic tells it.
func (g *fleetGate) sharing(ctx context.Context) bool {
	if g.shared() {
		return true
	}
	g.prepare(ctx)
	return false
}

// run turns the gate ready, then follows whether the node counts with the fleet, until ctx
// ends.
func (g *fleetGate) run(ctx context.Context) {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var since time.Time // when the node first had a configuration
	for !g.ready.Load() {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-g.wake:
		}
		if !g.configured() {
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		switch {
		case g.sharing(ctx):
			g.log.InfoContext(ctx, "ready: counting rate limits, quotas and connections with the fleet",
				"waited_ms", time.Since(since).Milliseconds())
		case time.Since(since) >= g.timeout:
			g.log.WarnContext(ctx, "ready without NATS: counting rate limits, quotas and connections on this node only until it is back",
				"timeout", g.timeout.String())
		default:
			continue
		}
		g.ready.Store(true)
		g.changed()
	}
	shared := g.shared()
	tick.Reset(watchPoll)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-g.wake:
		}
		now := g.sharing(ctx)
		if now == shared {
			continue
		}
		shared = now
		if now {
			g.log.InfoContext(ctx, "counting rate limits, quotas and connections with the fleet again")
		} else {
			g.log.WarnContext(ctx, "NATS not usable: counting rate limits, quotas and connections on this node only")
		}
		g.changed()
	}
}
