package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// reportPage is a report response as a client decodes it.
type reportPage struct {
	Value []map[string]any `json:"value"`
	Count int              `json:"count"`
	Next  string           `json:"nextLink"`
}

func TestReports(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true})
	svc := env.CreateService(t, "rep-sub", "rg", "reports")
	ctx := context.Background()
	var id string
	if err := env.Pool.QueryRow(ctx, `SELECT id::text FROM services WHERE name = 'reports'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	// The nodes of gateway gw report the usage, authenticated with its node key.
	env.Must(t, []int{201}, "PUT", svc+"/gateways/gw", props(map[string]any{"locationData": map[string]any{"name": "Here"}}))
	key := env.NodeKey(t, id, "gw")
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return day.Add(time.Duration(m) * time.Minute) }
	batches := []configwire.UsageBatch{
		{NodeID: "n1", BatchID: "n1:a", ServiceID: id, Gateway: "gw", Records: []configwire.UsageRecord{
			{Minute: at(0), API: "chat", Subscription: "alice", HandshakesSuccess: 2, HandshakesBlocked: 1, MessagesIn: 10, MessagesOut: 20,
				BytesIn: 100, BytesOut: 200, ConnectionMillis: 90500},
			{Minute: at(20), API: "echo", HandshakesFailed: 1, HandshakesOther: 1},
		}},
		{NodeID: "n2", BatchID: "n2:a", ServiceID: id, Gateway: "gw", Records: []configwire.UsageRecord{
			{Minute: at(5), API: "chat", Subscription: "bob", HandshakesSuccess: 1, BytesIn: 1},
			{Minute: at(60 * 24), API: "chat", Subscription: "bob", HandshakesSuccess: 50}, // the next day
		}},
	}
	// Each batch is sent twice, the second time under another message id, as a gateway that
	// lost the acknowledgement after JetStream's de-duplication window would: it counts once.
	for _, b := range append(batches, batches...) {
		msg := nats.NewMsg(bus.UsageSubject(id))
		msg.Data, _ = json.Marshal(b)
		msg.Header.Set(bus.HeaderNodeAuth, key.Sign(msg.Subject, msg.Data))
		if _, err := env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(b.BatchID+time.Now().String())); err != nil {
			t.Fatal(err)
		}
	}
	waitEmpty(t, env)

	window := "$filter=" + url.QueryEscape("timestamp ge datetime'2026-11-24T00:00:00' and timestamp lt datetime'2026-11-25T00:00:00'")
	get := func(path string) reportPage {
		t.Helper()
		var p reportPage
		if err := json.Unmarshal(env.Must(t, []int{200}, "GET", svc+path, nil).Body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	chat := map[string]any{"name": "chat", "apiId": "/apis/chat", "callCountSuccess": 3.0, "callCountBlocked": 1.0, "callCountFailed": 0.0,
		"callCountOther": 0.0, "callCountTotal": 4.0, "bandwidth": 301.0, "handshakesSuccess": 3.0, "handshakesRejected": 1.0,
		"messagesIn": 10.0, "messagesOut": 20.0, "bytesIn": 101.0, "bytesOut": 200.0, "connectionSeconds": 90.5,
		"connectionsOpened": 3.0, "connectionsClosed": 0.0, "refusals": map[string]any{}}
	echo := map[string]any{"name": "echo", "apiId": "/apis/echo", "callCountSuccess": 0.0, "callCountBlocked": 0.0, "callCountFailed": 1.0,
		"callCountOther": 1.0, "callCountTotal": 2.0, "bandwidth": 0.0, "handshakesSuccess": 0.0, "handshakesRejected": 2.0,
		"messagesIn": 0.0, "messagesOut": 0.0, "bytesIn": 0.0, "bytesOut": 0.0, "connectionSeconds": 0.0,
		"connectionsOpened": 0.0, "connectionsClosed": 0.0, "refusals": map[string]any{}}
	if diff := cmp.Diff(reportPage{Value: []map[string]any{chat, echo}, Count: 2}, get("/reports/byApi?"+window)); diff != "" {
		t.Errorf("byApi (-want +got):\n%s", diff)
	}

	// Paging and ordering.
	p := get("/reports/byApi?" + window + "&$top=1&$orderby=" + url.QueryEscape("callCountFailed desc"))
	if len(p.Value) != 1 || p.Value[0]["name"] != "echo" || p.Count != 2 || p.Next == "" {
		t.Errorf("byApi $top=1 ordered by callCountFailed desc = %+v", p)
	}

	p = get("/reports/bySubscription?" + window)
	var subs []any
	for _, v := range p.Value {
		subs = append(subs, []any{v["name"], v["subscriptionId"], v["callCountSuccess"]})
	}
	want := []any{[]any{nil, nil, 0.0}, []any{"alice", "/subscriptions/alice", 2.0}, []any{"bob", "/subscriptions/bob", 1.0}}
	if diff := cmp.Diff(want, subs); diff != "" {
		t.Errorf("bySubscription (name, subscriptionId, callCountSuccess) (-want +got):\n%s", diff)
	}

	p = get("/reports/byTime?" + window + "&interval=PT15M")
	var buckets []any
	for _, v := range p.Value {
		buckets = append(buckets, []any{v["timestamp"], v["interval"], v["callCountTotal"]})
	}
	want = []any{[]any{"2026-11-24T00:00:00Z", "PT15M", 4.0}, []any{"2026-11-24T00:15:00Z", "PT15M", 2.0}}
	if diff := cmp.Diff(want, buckets); diff != "" {
		t.Errorf("byTime PT15M (timestamp, interval, callCountTotal) (-want +got):\n%s", diff)
	}
	p = get("/reports/byTime?$filter=" + url.QueryEscape("timestamp ge datetime'2026-11-24T00:00:00' and subscriptionId eq '/subscriptions/bob'") + "&interval=P1D")
	if len(p.Value) != 2 || p.Value[0]["callCountSuccess"] != 1.0 || p.Value[1]["callCountSuccess"] != 50.0 {
		t.Errorf("byTime P1D of bob = %+v, want 1 and 50 handshakes on two days", p.Value)
	}

	for _, tc := range []struct{ name, path string }{
		{"no filter", "/reports/byApi"},
		{"filter without a lower bound", "/reports/byApi?$filter=" + url.QueryEscape("timestamp le datetime'2026-11-24T00:00:00'")},
		{"unparsable filter", "/reports/bySubscription?$filter=" + url.QueryEscape("timestamp ge yesterday")},
		{"no interval", "/reports/byTime?" + window},
		{"interval not whole minutes", "/reports/byTime?" + window + "&interval=PT90S"},
		{"unknown order field", "/reports/byApi?" + window + "&$orderby=country"},
		{"bad $top", "/reports/byApi?" + window + "&$top=0"},
	} {
		r := env.Must(t, []int{400}, "GET", svc+tc.path, nil)
		if r.ErrorCode() != "ValidationError" {
			t.Errorf("%s: error code %q, want ValidationError", tc.name, r.ErrorCode())
		}
	}
	env.Must(t, []int{404}, "GET", mgmttest.ServicePath("rep-sub", "rg", "missing")+"/reports/byApi?"+window, nil)
}

// waitEmpty waits until management has stored every usage batch published so far.
func waitEmpty(t *testing.T, env *mgmttest.Env) {
	t.Helper()
	s, err := env.JS.Stream(context.Background(), bus.UsageStream)
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, func() string {
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 {
			return fmt.Sprintf("%d usage batches not stored", info.State.Msgs)
		}
		return ""
	})
}
