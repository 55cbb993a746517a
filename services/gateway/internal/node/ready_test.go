package node

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"gatehouse.dev/gateway/internal/heartbeat"
	"gatehouse.dev/pkg/syncbuf"
)

// gateFixture runs a fleetGate whose configuration and NATS state the test sets.
type gateFixture struct {
	gate               *fleetGate
	configured, shared atomic.Bool
	changes, prepared  atomic.Int32
	log                syncbuf.Buffer
}

func startGate(t *testing.T, timeout time.Duration) *gateFixture {
	t.Helper()
	f := &gateFixture{}
	f.gate = &fleetGate{wake: make(chan struct{}, 1), timeout: timeout, log: slog.New(slog.NewJSONHandler(&f.log, nil)),
		configured: f.configured.Load, shared: f.shared.Load, prepare: func(context.Context) { f.prepared.Add(1) },
		changed: func() { f.changes.Add(1) }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); f.gate.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// advance lets d of the bubble's fake time pass and returns once the gate has done all it
// does in that time. The gate uses only timers, channels and atomics, so its tests run in a
// synctest bubble: exact, and independent of how loaded the machine is.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// TestGateWaitsForTheFleet checks that a node is ready only once it has a configuration and
// counts with the fleet, however long the timeout.
func TestGateWaitsForTheFleet(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := startGate(t, time.Hour)
		f.shared.Store(true) // NATS before the configuration: not ready yet
		if advance(time.Second); f.gate.Ready() {
			t.Fatal("ready without a configuration")
		}
		f.shared.Store(false)
		f.configured.Store(true)
		if advance(59 * time.Minute); f.gate.Ready() {
			t.Fatal("ready with a configuration but counting on its own, before the hour's timeout")
		}
		f.shared.Store(true)
		if advance(2 * readyPoll); !f.gate.Ready() {
			t.Fatal("not ready with a configuration and the fleet's counters")
		}
		if log := f.log.String(); !strings.Contains(log, "ready: counting rate limits, quotas and connections with the fleet") {
			t.Errorf("log %q does not say the node counts with the fleet", log)
		}
		if f.changes.Load() == 0 {
			t.Error("the heartbeat was not told that the node turned ready")
		}
		if f.prepared.Load() == 0 {
			t.Error("the counters were never asked to bind while the node counted on its own")
		}
	})
}

// TestGateTimeout checks that a node without NATS turns ready after the timeout, counting on
// its own, says so in its log and heartbeats, and reports NATS coming and going from then on
// while staying ready.
func TestGateTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const timeout = 500 * time.Millisecond
		f := startGate(t, timeout)
		f.configured.Store(true)
		// The timeout runs from the first poll that sees the configuration, within readyPoll.
		if advance(timeout - readyPoll); f.gate.Ready() {
			t.Fatalf("ready after %v, before the %v timeout", timeout-readyPoll, timeout)
		}
		if advance(4 * readyPoll); !f.gate.Ready() {
			t.Fatalf("not ready %v after the configuration, with a %v timeout", timeout+3*readyPoll, timeout)
		}
		if log := f.log.String(); !strings.Contains(log, "ready without NATS") || !strings.Contains(log, `"timeout":"500ms"`) {
			t.Errorf("log %q does not say the node is ready without NATS", log)
		}
		st := heartbeat.State{Healthy: true, LastError: "management answered 502"}
		f.gate.report(&st)
		if st.Healthy || st.LastError != "management answered 502; "+countingAlone {
			t.Errorf("heartbeat while counting alone: healthy %v, lastError %q", st.Healthy, st.LastError)
		}

		changes := f.changes.Load()
		f.shared.Store(true)
		if advance(2 * watchPoll); f.changes.Load() == changes {
			t.Fatal("the heartbeat was not told that NATS is back")
		}
		if log := f.log.String(); !strings.Contains(log, "with the fleet again") {
			t.Errorf("log %q does not say the node counts with the fleet again", log)
		}
		st = heartbeat.State{Healthy: true}
		f.gate.report(&st)
		if !st.Healthy || st.LastError != "" {
			t.Errorf("heartbeat with the fleet: healthy %v, lastError %q", st.Healthy, st.LastError)
		}

		changes = f.changes.Load()
		f.shared.Store(false)
		if advance(2 * watchPoll); f.changes.Load() == changes {
			t.Fatal("the heartbeat was not told that NATS is gone")
		}
		if !f.gate.Ready() {
			t.Error("not ready after losing NATS: the data path does not need it")
		}
		if log := f.log.String(); !strings.Contains(log, "NATS not usable: counting rate limits, quotas and connections on this node only") {
			t.Errorf("log %q does not say the node lost the fleet", log)
		}
	})
}
