package usage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/usage"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newCollector(clk *clock) *usage.Collector {
	return usage.New(usage.Options{NodeID: "node-1", ServiceID: func() string { return "svc-1" }, Gateway: func() string { return "gw-1" }, Now: clk.Now})
}

// records returns the records of every pending batch, in order.
func records(c *usage.Collector) []configwire.UsageRecord {
	var out []configwire.UsageRecord
	for _, b := range c.Pending() {
		out = append(out, b.Records...)
	}
	return out
}

func TestHandshakesByResult(t *testing.T) {
	t.Parallel()
	clk := &clock{now: at(10 * time.Second)}
	c := newCollector(clk)
	for _, status := range []int{401, 403, 429, 404, 400, 0, 500, 502, 504} {
		c.Handshake("echo", "", status, "")
	}
	c.Handshake("echo", "", 401, "SubscriptionKeyNotFound")
	c.Handshake("echo", "alice", 401, "SubscriptionKeyInvalid")
	s := c.Open("echo", "alice", nil)
	s.End()
	clk.Set(at(70 * time.Second))
	if n := c.Flush(false); n != 2 {
		t.Fatalf("Flush took %d records, want 2", n)
	}
	want := []configwire.UsageRecord{
		{Minute: t0, API: "echo", HandshakesBlocked: 4, HandshakesOther: 3, HandshakesFailed: 3, Refusals: map[string]int64{
			"401": 1, "401 SubscriptionKeyNotFound": 1, "403": 1, "429": 1, "404": 1, "400": 1, "0": 1, "500": 1, "502": 1, "504": 1}},
		{Minute: t0, API: "echo", Subscription: "alice", HandshakesSuccess: 1, HandshakesBlocked: 1, ConnectionsClosed: 1,
			Refusals: map[string]int64{"401 SubscriptionKeyInvalid": 1}},
	}
	if diff := cmp.Diff(want, records(c)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	b := c.Pending()[0]
	if b.NodeID != "node-1" || b.ServiceID != "svc-1" || b.Gateway != "gw-1" || b.BatchID != bus.UsageBatchID("node-1", t0, 1) {
		t.Errorf("batch header = %q %q %q %q", b.NodeID, b.ServiceID, b.Gateway, b.BatchID)
	}
	if err := b.Validate(); err != nil {
		t.Errorf("the batch does not validate: %v", err)
	}
}

func TestFlushTakesOnlyFinishedMinutes(t *testing.T) {
	t.Parallel()
	clk := &clock{now: at(30 * time.Second)}
	c := newCollector(clk)
	c.Handshake("echo", "", 401, "")
	clk.Set(at(90 * time.Second))
	c.Handshake("echo", "", 401, "")
	if n := c.Flush(false); n != 1 {
		t.Fatalf("first Flush took %d records, want 1 (minute 0 only)", n)
	}
	if n := c.Flush(false); n != 0 {
		t.Fatalf("second Flush in the same minute took %d records, want 0", n)
	}
	if n := c.Flush(true); n != 1 {
		t.Fatalf("final Flush took %d records, want 1 (the current minute)", n)
	}
	got := records(c)
	if len(got) != 2 || !got[0].Minute.Equal(t0) || !got[1].Minute.Equal(at(time.Minute)) {
		t.Fatalf("records = %+v", got)
	}
	ids := map[string]bool{}
	for _, b := range c.Pending() {
		ids[b.BatchID] = true
	}
	if len(ids) != 2 {
		t.Errorf("batch ids %v are not distinct", ids)
	}
	// Usage reported for a minute already flushed counts in the next open one, so a key is
	// never reported twice.
	c.Handshake("echo", "", 401, "") // the clock still says minute 1, flushed by the final Flush
	clk.Set(at(200 * time.Second))
	c.Flush(false)
	got = records(c)
	if last := got[len(got)-1]; !last.Minute.Equal(at(2*time.Minute)) || last.HandshakesBlocked != 1 {
		t.Errorf("late record = %+v, want it in minute 2", last)
	}
}

// traffic is a session's traffic as a test drives it.
type traffic struct {
	mu sync.Mutex
	t  usage.Traffic
}

func (tr *traffic) add(in, out, bytesIn, bytesOut int64) {
	tr.mu.Lock()
	tr.t.MessagesIn += in
	tr.t.MessagesOut += out
	tr.t.BytesIn += bytesIn
	tr.t.BytesOut += bytesOut
	tr.mu.Unlock()
}

func (tr *traffic) get() usage.Traffic {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.t
}

func TestSessionSpreadsOverMinutes(t *testing.T) {
	t.Parallel()
	clk := &clock{now: at(45 * time.Second)}
	c := newCollector(clk)
	tr := &traffic{}
	s := c.Open("chat", "bob", tr.get)
	tr.add(2, 3, 20, 300)
	// Flushed while open: 15 s of minute 0 and the traffic so far.
	clk.Set(at(61 * time.Second))
	c.Flush(false)
	tr.add(1, 0, 10, 0)
	// Ends in minute 2 after 1 m 50.5 s: 60 s of minute 1, 35.5 s of minute 2.
	clk.Set(at(155*time.Second + 500*time.Millisecond))
	s.End()
	s.End() // a second End counts nothing
	clk.Set(at(180 * time.Second))
	c.Flush(false)
	want := []configwire.UsageRecord{
		{Minute: t0, API: "chat", Subscription: "bob", HandshakesSuccess: 1, MessagesIn: 2, MessagesOut: 3, BytesIn: 20, BytesOut: 300,
			ConnectionMillis: 15000},
		{Minute: at(time.Minute), API: "chat", Subscription: "bob", ConnectionMillis: 60000},
		{Minute: at(2 * time.Minute), API: "chat", Subscription: "bob", MessagesIn: 1, BytesIn: 10, ConnectionMillis: 35500,
			ConnectionsClosed: 1},
	}
	if diff := cmp.Diff(want, records(c)); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestRefusalOutcomesAreBounded(t *testing.T) {
	t.Parallel()
	clk := &clock{now: at(time.Second)}
	c := newCollector(clk)
	for i := range 2 * configwire.MaxUsageOutcomes {
		c.Handshake("echo", "", 403, fmt.Sprintf("Reason%d", i))
	}
	clk.Set(at(61 * time.Second))
	c.Flush(false)
	r := records(c)[0]
	if len(r.Refusals) != configwire.MaxUsageOutcomes || r.Refusals["other"] != configwire.MaxUsageOutcomes+1 {
		t.Errorf("%d outcomes, %d under other; want %d and %d", len(r.Refusals), r.Refusals["other"],
			configwire.MaxUsageOutcomes, configwire.MaxUsageOutcomes+1)
	}
	b := c.Pending()[0]
	if err := b.Validate(); err != nil {
		t.Errorf("the batch does not validate: %v", err)
	}
}

func TestNilCollectorCountsNothing(t *testing.T) {
	t.Parallel()
	var c *usage.Collector
	c.Handshake("echo", "", 401, "")
	s := c.Open("echo", "", nil)
	s.End()
	if c.Flush(true) != 0 || c.Pending() != nil {
		t.Error("a nil Collector counted something")
	}
}

func TestConcurrentCounting(t *testing.T) {
	t.Parallel()
	clk := &clock{now: at(5 * time.Second)}
	c := newCollector(clk)
	apis := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				api := apis[(g+i)%len(apis)]
				c.Handshake(api, "s", 429, "")
				c.Open(api, "s", func() usage.Traffic { return usage.Traffic{MessagesIn: 1} }).End()
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			c.Flush(false)
		}
	})
	wg.Wait()
	clk.Set(at(time.Minute))
	c.Flush(false)
	var total configwire.UsageRecord
	for _, r := range records(c) {
		total.HandshakesBlocked += r.HandshakesBlocked
		total.HandshakesSuccess += r.HandshakesSuccess
		total.MessagesIn += r.MessagesIn
	}
	if total.HandshakesBlocked != 4000 || total.HandshakesSuccess != 4000 || total.MessagesIn != 4000 {
		t.Errorf("totals = %+v, want 4000 of each", total)
	}
}

func BenchmarkHandshake(b *testing.B) {
	c := usage.New(usage.Options{NodeID: "n", ServiceID: func() string { return "s" }})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Handshake("echo", "alice", 401, "")
		}
	})
}

// TestRunPublishesUntilAcknowledged starts without a stream, so publications fail until the
// stream exists, then checks that every batch arrives once with its batch id as Nats-Msg-Id.
func TestRunPublishesUntilAcknowledged(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var conn atomic.Pointer[jetstream.JetStream]
	var attempts atomic.Int32 // publications attempted: each asks for the connection first
	nodeKey := configwire.DeriveNodeKey("k1", []byte("root"), "svc.1", "gw", []byte("gateway key"))
	var keyed atomic.Bool // management handed the node its node key
	c := usage.New(usage.Options{NodeID: "node-1", ServiceID: func() string { return "svc.1" }, Gateway: func() string { return "gw" },
		Key: func() (configwire.NodeKey, bool) { return nodeKey, keyed.Load() }, RetryMin: 20 * time.Millisecond,
		RetryMax: 50 * time.Millisecond, JetStream: func() jetstream.JetStream {
			attempts.Add(1)
			if p := conn.Load(); p != nil {
				return *p
			}
			return nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	c.Handshake("echo", "", 401, "")
	c.Flush(true)
	// No connection yet: the batch waits through a retry.
	testwait.Until(t, 10*time.Second, "a retry without a connection", func() bool { return attempts.Load() >= 2 })
	// No node key yet: the batch waits through a retry, unpublished.
	conn.Store(&js)
	before := attempts.Load()
	testwait.Until(t, 10*time.Second, "a retry without a node key", func() bool { return attempts.Load() >= before+2 })
	if n := len(c.Pending()); n != 1 {
		t.Fatalf("%d batches pending before the node key, want 1", n)
	}
	// No stream yet: a publication fails, and the next attempt shows it has.
	keyed.Store(true)
	before = attempts.Load()
	testwait.Until(t, 10*time.Second, "a retry after a failed publication", func() bool { return attempts.Load() >= before+2 })
	if n := len(c.Pending()); n != 1 {
		t.Fatalf("%d batches pending before the stream exists, want 1", n)
	}
	stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: bus.UsageStream,
		Subjects: []string{bus.UsageSubjects}, Duplicates: bus.UsageDuplicateWindow})
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, func() string {
		if n := len(c.Pending()); n != 0 {
			return fmt.Sprintf("%d batches still pending", n)
		}
		return ""
	})
	msg, err := stream.GetLastMsgForSubject(context.Background(), bus.UsageSubject("svc.1"))
	if err != nil {
		t.Fatal(err)
	}
	var b configwire.UsageBatch
	if err := json.Unmarshal(msg.Data, &b); err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(jetstream.MsgIDHeader) != b.BatchID || b.ServiceID != "svc.1" || b.Gateway != "gw" || len(b.Records) != 1 || b.Records[0].HandshakesBlocked != 1 {
		t.Errorf("published %s with id %q", msg.Data, msg.Header.Get(jetstream.MsgIDHeader))
	}
	if err := nodeKey.Verify(msg.Subject, msg.Data, msg.Header.Get(bus.HeaderNodeAuth)); err != nil {
		t.Errorf("the batch's node authentication: %v", err)
	}
}
