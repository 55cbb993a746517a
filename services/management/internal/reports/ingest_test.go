package reports_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/gatewaykeys/gatewaykeystest"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

type env struct {
	pool  *pgxpool.Pool
	js    jetstream.JetStream
	store *reports.Store
	// rejected records the batches the Ingester dropped as unauthenticated.
	rejected *gatewaykeystest.Rejections
}

// newEnv starts a database of its own, an in-process NATS server with the usage stream, and
// an Ingester consuming it.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, drop, err := dbtest.Setup(ctx, "reports", migrate.Migrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL(), ns.UserInfo())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := reports.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	if err := reports.EnsureStream(ctx, js, 1); err != nil {
		t.Fatalf("EnsureStream is not idempotent: %v", err)
	}
	rej := &gatewaykeystest.Rejections{}
	in := reports.NewIngester(pool, js, reports.IngesterOptions{Auth: gatewaykeystest.Auth{}, Rejected: rej.Add})
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &env{pool: pool, js: js, store: reports.NewStore(pool), rejected: rej}
}

// service inserts a service row and returns its id.
func (e *env) service(t *testing.T, name string) string {
	t.Helper()
	id := uuid.NewString()
	_, err := e.pool.Exec(context.Background(), `INSERT INTO services (id, subscription_id, resource_group, name, location, sku, properties, etag)
		VALUES ($1, 'sub', 'rg', $2, 'westeurope', '{}', '{}', 'e')`, id, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// publish publishes b as a node of its gateway would, authenticated with that gateway's node
// key, with its batch id as Nats-Msg-Id unless msgID overrides it (a re-send after the
// de-duplication window).
func (e *env) publish(t *testing.T, b configwire.UsageBatch, msgID string) {
	t.Helper()
	e.publishAs(t, b, msgID, func(subject string, data []byte) string {
		return gatewaykeystest.NodeKey(b.ServiceID, b.Gateway).Sign(subject, data)
	})
}

// publishAs publishes b with the node authentication auth makes ("" for none).
func (e *env) publishAs(t *testing.T, b configwire.UsageBatch, msgID string, auth func(subject string, data []byte) string) {
	t.Helper()
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(bus.UsageSubject(b.ServiceID))
	msg.Data = data
	if a := auth(msg.Subject, data); a != "" {
		msg.Header.Set(bus.HeaderNodeAuth, a)
	}
	if _, err := e.js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatal(err)
	}
}

// waitStored waits until the service has n usage rows and the stream has none left.
func (e *env) waitStored(t *testing.T, service string, n int) {
	t.Helper()
	testwait.For(t, 10*time.Second, func() string {
		var got int
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM usage WHERE service_id = $1`, service).Scan(&got); err != nil {
			t.Fatal(err)
		}
		s, err := e.js.Stream(context.Background(), bus.UsageStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != n || info.State.Msgs != 0 {
			return fmt.Sprintf("%d usage rows and %d messages in the stream, want %d rows and none", got, info.State.Msgs, n)
		}
		return ""
	})
}

var day = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

func minute(m int) time.Time { return day.Add(time.Duration(m) * time.Minute) }

func TestIngestIsIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.service(t, "idem")
	b := configwire.UsageBatch{NodeID: "n1", BatchID: bus.UsageBatchID("n1", minute(0), 1), ServiceID: svc, Gateway: "gw", Records: []configwire.UsageRecord{
		{Minute: minute(0), API: "echo", Subscription: "alice", HandshakesSuccess: 2, MessagesIn: 10, BytesIn: 100, ConnectionMillis: 30000},
		{Minute: minute(0), API: "echo", HandshakesBlocked: 1},
	}}
	e.publish(t, b, b.BatchID)
	e.publish(t, b, b.BatchID)       // dropped by JetStream's de-duplication
	e.publish(t, b, b.BatchID+"-re") // a re-send JetStream no longer remembers
	e.waitStored(t, svc, 2)
	// A second node's usage of the same minute adds to the first's.
	b2 := configwire.UsageBatch{NodeID: "n2", BatchID: bus.UsageBatchID("n2", minute(0), 1), ServiceID: svc, Gateway: "gw", Records: []configwire.UsageRecord{
		{Minute: minute(0), API: "echo", Subscription: "alice", HandshakesSuccess: 1, MessagesOut: 5},
	}}
	e.publish(t, b2, b2.BatchID)
	e.waitStored(t, svc, 3)

	rows, total, err := e.store.Report(context.Background(), svc, reports.Query{By: reports.ByAPI, Filter: reports.Filter{From: day}})
	if err != nil {
		t.Fatal(err)
	}
	want := []reports.Row{{API: "echo", HandshakesSuccess: 3, HandshakesBlocked: 1, MessagesIn: 10, MessagesOut: 5, BytesIn: 100, ConnectionMillis: 30000}}
	if diff := cmp.Diff(want, rows, cmpRow); diff != "" || total != 1 {
		t.Errorf("byApi total %d (-want +got):\n%s", total, diff)
	}
}

var cmpRow = cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })

func TestIngestDropsWhatCannotBeStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.service(t, "drops")
	for _, b := range []configwire.UsageBatch{
		{NodeID: "n1", BatchID: "bad-minute", ServiceID: svc, Gateway: "gw", Records: []configwire.UsageRecord{{Minute: minute(0).Add(time.Second), API: "a"}}},
		{NodeID: "n1", BatchID: "no-service", ServiceID: uuid.NewString(), Gateway: "gw", Records: []configwire.UsageRecord{{Minute: minute(0), API: "a"}}},
		{NodeID: "n1", BatchID: "not-a-uuid", ServiceID: "svc", Gateway: "gw", Records: []configwire.UsageRecord{{Minute: minute(0), API: "a"}}},
	} {
		e.publish(t, b, b.BatchID)
	}
	good := configwire.UsageBatch{NodeID: "n1", BatchID: "good", ServiceID: svc, Gateway: "gw", Records: []configwire.UsageRecord{{Minute: minute(0), API: "a", HandshakesOther: 1}}}
	e.publish(t, good, good.BatchID)
	e.waitStored(t, svc, 1)
}

func TestReports(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc, other := e.service(t, "reports"), e.service(t, "other")
	ctx := context.Background()
	in := reports.NewIngester(e.pool, e.js, reports.IngesterOptions{})
	for _, b := range []configwire.UsageBatch{
		{NodeID: "n1", BatchID: "1", ServiceID: svc, Gateway: "gw", Records: []configwire.UsageRecord{
			{Minute: minute(0), API: "chat", Subscription: "alice", HandshakesSuccess: 1, BytesIn: 10},
			{Minute: minute(14), API: "chat", Subscription: "bob", HandshakesSuccess: 2, HandshakesFailed: 1},
			{Minute: minute(15), API: "echo", Subscription: "alice", HandshakesBlocked: 4, BytesOut: 5},
			{Minute: minute(60 * 24), API: "echo", Subscription: "", HandshakesOther: 7}, // the next day
		}},
		{NodeID: "n2", BatchID: "1", ServiceID: svc, Gateway: "gw", Records: []configwire.UsageRecord{
			{Minute: minute(1), API: "chat", Subscription: "alice", HandshakesSuccess: 1, MessagesIn: 3, ConnectionMillis: 1500},
		}},
		{NodeID: "n1", BatchID: "x", ServiceID: other, Gateway: "gw", Records: []configwire.UsageRecord{{Minute: minute(0), API: "chat", HandshakesSuccess: 100}}},
	} {
		if _, err := in.Store(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	today := reports.Filter{From: day, To: day.Add(24 * time.Hour), ToExclusive: true}
	for _, tc := range []struct {
		name  string
		q     reports.Query
		want  []reports.Row
		total int
	}{
		{"by API", reports.Query{By: reports.ByAPI, Filter: today}, []reports.Row{
			{API: "chat", HandshakesSuccess: 4, HandshakesFailed: 1, BytesIn: 10, MessagesIn: 3, ConnectionMillis: 1500},
			{API: "echo", HandshakesBlocked: 4, BytesOut: 5},
		}, 2},
		{"by API, the next day too", reports.Query{By: reports.ByAPI, Filter: reports.Filter{From: day}, OrderBy: "callcounttotal", Desc: true, Top: 1},
			[]reports.Row{{API: "echo", HandshakesBlocked: 4, HandshakesOther: 7, BytesOut: 5}}, 2},
		{"by API, second page", reports.Query{By: reports.ByAPI, Filter: today, Top: 1, Skip: 1},
			[]reports.Row{{API: "echo", HandshakesBlocked: 4, BytesOut: 5}}, 2},
		{"by subscription", reports.Query{By: reports.BySubscription, Filter: today}, []reports.Row{
			{Subscription: "alice", HandshakesSuccess: 2, HandshakesBlocked: 4, BytesIn: 10, BytesOut: 5, MessagesIn: 3, ConnectionMillis: 1500},
			{Subscription: "bob", HandshakesSuccess: 2, HandshakesFailed: 1},
		}, 2},
		{"by subscription of one API", reports.Query{By: reports.BySubscription, Filter: reports.Filter{From: day, API: "echo", APISet: true}},
			[]reports.Row{{HandshakesOther: 7}, {Subscription: "alice", HandshakesBlocked: 4, BytesOut: 5}}, 2},
		{"by time, PT15M", reports.Query{By: reports.ByTime, Filter: today, Interval: 15 * time.Minute}, []reports.Row{
			{Timestamp: minute(0), HandshakesSuccess: 4, HandshakesFailed: 1, BytesIn: 10, MessagesIn: 3, ConnectionMillis: 1500},
			{Timestamp: minute(15), HandshakesBlocked: 4, BytesOut: 5},
		}, 2},
		{"by time, P1D, one subscription", reports.Query{By: reports.ByTime, Interval: 24 * time.Hour,
			Filter: reports.Filter{From: day, Subscription: "alice", SubscriptionSet: true}}, []reports.Row{
			{Timestamp: day, HandshakesSuccess: 2, HandshakesBlocked: 4, BytesIn: 10, BytesOut: 5, MessagesIn: 3, ConnectionMillis: 1500},
		}, 1},
		{"exclusive lower bound", reports.Query{By: reports.ByTime, Interval: time.Minute, Filter: reports.Filter{From: minute(14), FromExclusive: true, To: minute(15)}},
			[]reports.Row{{Timestamp: minute(15), HandshakesBlocked: 4, BytesOut: 5}}, 1},
		{"nothing in range", reports.Query{By: reports.ByAPI, Filter: reports.Filter{From: day.Add(-time.Hour), To: day.Add(-time.Minute)}}, []reports.Row{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rows, total, err := e.store.Report(ctx, svc, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, rows, cmpRow); diff != "" || total != tc.total {
				t.Errorf("total %d, want %d (-want +got):\n%s", total, tc.total, diff)
			}
		})
	}
}
