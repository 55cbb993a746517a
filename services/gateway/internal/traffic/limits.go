package traffic

import (
	"context"
	"sync/atomic"

	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/pkg/pipeline"
)

// ConnectionLimiter counts sessions per counter across the fleet (clustercount.Connections).
type ConnectionLimiter interface {
	// Acquire takes a place under counter if fewer than limit are taken fleet-wide; release
	// gives it back.
	Acquire(ctx context.Context, counter string, limit int) (ok bool, release func())
	// EvictOldest asks the node holding counter's oldest session to close it, and reports
	// whether one was closed (its place is free when it returns true).
	EvictOldest(ctx context.Context, counter string) bool
}

// Close code and reason of a session evicted by a newer one (<limit-connections action="evict-oldest">).
const (
	CloseEvicted       = 1008
	reasonEvicted      = "connection limit: evicted by a newer session"
	reasonConnLimit    = "ConnectionLimitExceeded"
	msgConnectionLimit = "Too many concurrent connections. Close a connection and try again."
)

// acquireConnections takes a place under every <limit-connections> of the session, evicting
// the oldest session where the policy says so. It returns a func releasing every place
// taken, and false (having released them) when a limit is full.
func (h *Handler) acquireConnections(ctx context.Context, limits []pipeline.ConnectionLimit) (func(), bool) {
	if len(limits) == 0 || h.opt.Connections == nil {
		return func() {}, true
	}
	releases := make([]func(), 0, len(limits))
	releaseAll := func() {
		for _, r := range releases {
			r()
		}
	}
	for _, l := range limits {
		ok, release := h.opt.Connections.Acquire(ctx, l.Counter, int(l.Max))
		if !ok && l.EvictOldest && h.opt.Connections.EvictOldest(ctx, l.Counter) {
			ok, release = h.opt.Connections.Acquire(ctx, l.Counter, int(l.Max))
		}
		if !ok {
			releaseAll()
			return nil, false
		}
		releases = append(releases, release)
	}
	return releaseAll, true
}

// EvictOldest closes this node's oldest open session counted under counter with 1008 and
// reports whether there was one. It is the ConnectionLimiter's callback on the node that
// holds the fleet's oldest session of counter.
func (g *Registry) EvictOldest(counter string) bool {
	g.mu.Lock()
	var oldest uint64
	var victim conn
	for id, c := range g.conns {
		if (oldest == 0 || id < oldest) && hasCounter(c.info.Counters, counter) {
			oldest, victim = id, c
		}
	}
	g.mu.Unlock()
	if oldest == 0 {
		return false
	}
	if victim.cause != nil {
		limit := metrics.ReasonLimit
		victim.cause.CompareAndSwap(nil, &limit)
	}
	victim.sess.Close(CloseEvicted, reasonEvicted)
	return true
}

func hasCounter(list []string, c string) bool {
	for _, x := range list {
		if x == c {
			return true
		}
	}
	return false
}

// causePtr is where a session records why the gateway closed it.
type causePtr = *atomic.Pointer[metrics.CloseReason]
