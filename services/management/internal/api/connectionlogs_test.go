package api_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/management/internal/connlog"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// connLogFixture is a service with an API, a product, two consumers with a subscription each
// and a gateway, whose nodes' connection log batches a test publishes on the Env's NATS.
type connLogFixture struct {
	env       *mgmttest.Env
	svc       string
	serviceID string
}

func newConnLogFixture(t *testing.T) *connLogFixture {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true})
	f := &connLogFixture{env: env, svc: env.CreateService(t, "log-sub", "rg", "logs")}
	put := func(rel string, p map[string]any) {
		t.Helper()
		var body any
		if p != nil {
			body = props(p)
		}
		env.Must(t, []int{200, 201}, "PUT", f.svc+rel, body)
	}
	put("/apis/chat", map[string]any{"displayName": "Chat", "type": "websocket", "serviceUrl": "wss://chat.example.com", "path": "chat"})
	put("/products/starter", map[string]any{"displayName": "Starter", "state": "published"})
	put("/products/starter/apis/chat", nil)
	put("/users/u1", map[string]any{"email": "u1@example.com", "firstName": "Una", "lastName": "One"})
	put("/users/u2", map[string]any{"email": "u2@example.com", "firstName": "Dos", "lastName": "Two"})
	put("/subscriptions/s1", map[string]any{"scope": "/apis/chat", "displayName": "Una's", "ownerId": "/users/u1", "state": "active"})
	put("/subscriptions/s2", map[string]any{"scope": "/products/starter", "displayName": "Dos's", "ownerId": "/users/u2", "state": "active"})
	put("/gateways/edge", map[string]any{"locationData": map[string]any{"name": "Amsterdam"}})
	f.serviceID = serviceIDOf(t, env, "log-sub", "rg", "logs")
	return f
}

// publish sends b as a node of gateway does, with the node authentication auth returns for
// the subject and payload ("" for none).
func (f *connLogFixture) publish(t *testing.T, b configwire.ConnectionLogBatch, auth func(subject string, data []byte) string) {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: bus.ConnectionLogSubject(b.ServiceID, b.Gateway), Data: raw, Header: nats.Header{}}
	if a := auth(m.Subject, raw); a != "" {
		m.Header.Set(bus.HeaderNodeAuth, a)
	}
	if err := f.env.NC.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}

// signed authenticates a batch with the key of gateway's nodes.
func (f *connLogFixture) signed(t *testing.T, gateway string) func(string, []byte) string {
	return f.env.NodeKey(t, f.serviceID, gateway).Sign
}

// logPage is a connection log response as a client decodes it.
type logPage struct {
	Value []map[string]any `json:"value"`
	Count int              `json:"count"`
	Next  string           `json:"nextLink"`
}

func (f *connLogFixture) list(t *testing.T, path string, headers ...string) logPage {
	t.Helper()
	var p logPage
	if err := json.Unmarshal(f.env.Must(t, []int{200}, "GET", path, nil, headers...).Body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// ids are the correlation ids of a page's entries, in order.
func (p logPage) ids() []string {
	out := []string{}
	for _, v := range p.Value {
		out = append(out, fmt.Sprint(v["correlationId"]))
	}
	return out
}

// rejected is the count of connection log batches management dropped for reason.
func rejected(t *testing.T, env *mgmttest.Env, reason string) float64 {
	t.Helper()
	fams, err := env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != "gatehouse_management_node_messages_rejected_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == connlog.RejectKind && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestConnectionLogs(t *testing.T) {
	t.Parallel()
	f := newConnLogFixture(t)
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	rec := func(id, api, sub string, closedAfter time.Duration, code int, reason, detail string) configwire.ConnectionLogRecord {
		return configwire.ConnectionLogRecord{CorrelationID: id, API: api, Subscription: sub, User: "u", ClientIP: "203.0.113.7",
			Opened: t0, Closed: t0.Add(closedAfter), MessagesIn: 3, MessagesOut: 2, BytesIn: 21, BytesOut: 14, CloseCode: code,
			ClosedBy: "gateway", Reason: reason, Detail: detail}
	}
	n1 := configwire.ConnectionLogBatch{NodeID: "n1", ServiceID: f.serviceID, Gateway: "edge", Records: []configwire.ConnectionLogRecord{
		rec("c1", "chat", "s1", time.Minute, 1008, "revoked", "subscription key revoked"),
		rec("c2", "chat", "s2", 2*time.Minute, 1000, "normal", ""),
	}}
	n2 := configwire.ConnectionLogBatch{NodeID: "n2", ServiceID: f.serviceID, Gateway: "edge", Records: []configwire.ConnectionLogRecord{
		rec("c3", "chat", "s1", 3*time.Minute, 1001, "drain", "=HYPERLINK(\"http://evil\")"),
	}}
	// Unsigned, forged (another gateway's key, a key of another service) and misrouted
	// batches are dropped; only the first two are counted, a misrouted one is not a node's.
	forged := configwire.ConnectionLogBatch{NodeID: "n9", ServiceID: f.serviceID, Gateway: "edge", Records: []configwire.ConnectionLogRecord{
		rec("forged", "chat", "s1", time.Minute, 1000, "normal", "")}}
	f.publish(t, forged, func(string, []byte) string { return "" })
	f.publish(t, forged, f.env.Keys.NodeKey(f.serviceID, "core", []byte("a key of another gateway")).Sign)
	f.publish(t, forged, f.env.Keys.NodeKey("00000000-0000-0000-0000-000000000000", "edge", []byte("some gateway key")).Sign)
	f.publish(t, n1, f.signed(t, "edge"))
	f.publish(t, n2, f.signed(t, "edge"))
	f.publish(t, n1, f.signed(t, "edge")) // delivered twice: stored once

	base := f.svc + "/connectionLogs"
	testwait.For(t, 10*time.Second, func() string {
		if p := f.list(t, base); p.Count != 3 || rejected(t, f.env, "unsigned") != 1 || rejected(t, f.env, "forged") != 2 {
			return fmt.Sprintf("%d entries, %v unsigned and %v forged batches counted; want 3, 1, 2", p.Count,
				rejected(t, f.env, "unsigned"), rejected(t, f.env, "forged"))
		}
		return ""
	})

	all := f.list(t, base)
	if diff := cmp.Diff([]string{"c3", "c2", "c1"}, all.ids()); diff != "" {
		t.Errorf("entries newest first (-want +got):\n%s", diff)
	}
	c1 := all.Value[2]
	want := map[string]any{"correlationId": "c1", "api": "chat", "subscription": "s1", "user": "u", "gateway": "edge", "nodeId": "n1",
		"clientIp": "203.0.113.7", "opened": t0.Format(time.RFC3339), "closed": t0.Add(time.Minute).Format(time.RFC3339),
		"durationSeconds": 60.0, "messagesIn": 3.0, "messagesOut": 2.0, "bytesIn": 21.0, "bytesOut": 14.0, "closeCode": 1008.0,
		"closedBy": "gateway", "reason": "revoked", "detail": "subscription key revoked"}
	if diff := cmp.Diff(want, c1); diff != "" {
		t.Errorf("entry c1 (-want +got):\n%s", diff)
	}

	filter := func(expr string) string { return base + "?$filter=" + url.QueryEscape(expr) }
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"close code", filter("closeCode eq 1008"), []string{"c1"}},
		{"subscription", filter("subscriptionId eq '/subscriptions/s1'"), []string{"c3", "c1"}},
		{"node", filter("nodeId eq 'n2'"), []string{"c3"}},
		{"api", filter("apiId eq 'chat' and closeCode eq 1000"), []string{"c2"}},
		{"other api", filter("apiId eq '/apis/echo'"), []string{}},
		{"time range", filter("timestamp gt datetime'" + t0.Add(time.Minute).Format(time.RFC3339) + "' and timestamp le datetime'" +
			t0.Add(2*time.Minute).Format(time.RFC3339) + "'"), []string{"c2"}},
	} {
		if diff := cmp.Diff(tc.want, f.list(t, tc.path).ids()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}

	// Paging.
	p := f.list(t, base+"?$top=2")
	if diff := cmp.Diff([]string{"c3", "c2"}, p.ids()); diff != "" || p.Count != 3 || p.Next == "" {
		t.Errorf("$top=2: %v, count %d, nextLink %q", p.ids(), p.Count, p.Next)
	}
	if diff := cmp.Diff([]string{"c1"}, f.list(t, base+"?$top=2&$skip=2").ids()); diff != "" {
		t.Errorf("$skip=2 (-want +got):\n%s", diff)
	}

	// CSV, asked for either way; a cell that a spreadsheet would run as a formula is quoted.
	for _, r := range []mgmttest.Response{
		f.env.Must(t, []int{200}, "GET", base+"?$format=csv", nil),
		f.env.Must(t, []int{200}, "GET", base, nil, "Accept", "text/csv"),
	} {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Errorf("Content-Type %q, want text/csv", ct)
		}
		rows, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 4 || rows[0][0] != "closed" || rows[1][3] != "c3" || rows[3][16] != "1008" || rows[3][18] != "revoked" {
			t.Errorf("CSV:\n%s", r.Body)
		}
		if got := rows[1][19]; got != `'=HYPERLINK("http://evil")` {
			t.Errorf("detail cell %q, want it quoted against formula injection", got)
		}
	}

	// Consumers read the entries of their own subscriptions only.
	u1 := bearer(userToken(t, f.env, f.svc, "u1"))
	if diff := cmp.Diff([]string{"c3", "c1"}, f.list(t, portalPrefix+"/connectionLogs", u1...).ids()); diff != "" {
		t.Errorf("u1's log (-want +got):\n%s", diff)
	}
	if got := f.list(t, portalPrefix+"/connectionLogs?$filter="+url.QueryEscape("subscriptionId eq 's2'"), u1...).ids(); len(got) != 0 {
		t.Errorf("u1 reads s2's entries: %v", got)
	}
	u2 := bearer(userToken(t, f.env, f.svc, "u2"))
	if diff := cmp.Diff([]string{"c2"}, f.list(t, portalPrefix+"/connectionLogs", u2...).ids()); diff != "" {
		t.Errorf("u2's log (-want +got):\n%s", diff)
	}
	f.env.Must(t, []int{403}, "GET", portalPrefix+"/connectionLogs", nil) // the admin is no consumer

	for _, tc := range []struct{ name, path string }{
		{"bad close code", filter("closeCode eq 'x'")},
		{"unknown field", filter("country eq 'NL'")},
		{"bad format", base + "?$format=xml"},
		{"bad $top", base + "?$top=0"},
	} {
		if r := f.env.Must(t, []int{400}, "GET", tc.path, nil); r.ErrorCode() != "ValidationError" {
			t.Errorf("%s: error code %q, want ValidationError", tc.name, r.ErrorCode())
		}
	}
}

func TestConnectionLogRetention(t *testing.T) {
	t.Parallel()
	f := newConnLogFixture(t)
	ctx := context.Background()
	now := time.Now().UTC()
	var recs []configwire.ConnectionLogRecord
	for i, age := range []time.Duration{3 * time.Hour, 90 * time.Minute, 30 * time.Minute, 20 * time.Minute, 10 * time.Minute} {
		closed := now.Add(-age)
		recs = append(recs, configwire.ConnectionLogRecord{CorrelationID: fmt.Sprintf("c%d", i), API: "chat", Opened: closed.Add(-time.Second),
			Closed: closed, CloseCode: 1000, ClosedBy: "client", Reason: "normal"})
	}
	// Retention by age: the two records older than an hour go.
	l := connlog.New(f.env.Pool, connlog.Options{MaxAge: time.Hour, MaxRows: -1})
	if _, err := l.Store(ctx, &configwire.ConnectionLogBatch{NodeID: "n1", ServiceID: f.serviceID, Gateway: "edge", Records: recs}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Prune(ctx, now); err != nil || n != 2 {
		t.Fatalf("Prune by age deleted %d, %v; want 2", n, err)
	}
	// Retention by rows: the newest two of the service stay.
	l = connlog.New(f.env.Pool, connlog.Options{MaxAge: -1, MaxRows: 2})
	if n, err := l.Prune(ctx, now); err != nil || n != 1 {
		t.Fatalf("Prune by rows deleted %d, %v; want 1", n, err)
	}
	got, total, err := l.List(ctx, f.serviceID, connlog.Query{Filter: reports.Filter{}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.CorrelationID)
	}
	if diff := cmp.Diff([]string{"c4", "c3"}, ids); diff != "" || total != 2 {
		t.Errorf("left after pruning (-want +got):\n%s (total %d)", diff, total)
	}
	if slices.Contains(ids, "c0") {
		t.Error("the oldest record survived")
	}
}

// TestReportsForAnalytics checks what the portal's charts read: usage by product and by
// node, connections opened and closed, refusals by outcome per minute, and a consumer's
// reports counting its own subscriptions only.
func TestReportsForAnalytics(t *testing.T) {
	t.Parallel()
	f := newConnLogFixture(t)
	ctx := context.Background()
	m := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	in := reports.NewIngester(f.env.Pool, f.env.JS, reports.IngesterOptions{})
	for _, b := range []configwire.UsageBatch{
		{NodeID: "n1", BatchID: "n1:1", ServiceID: f.serviceID, Records: []configwire.UsageRecord{
			{Minute: m, API: "chat", Subscription: "s1", HandshakesSuccess: 2, ConnectionsClosed: 1, HandshakesBlocked: 1,
				Refusals: map[string]int64{"429 RateLimitExceeded": 1}},
			{Minute: m, API: "chat", HandshakesBlocked: 3, Refusals: map[string]int64{"401 SubscriptionKeyNotFound": 3}},
		}},
		{NodeID: "n2", BatchID: "n2:1", ServiceID: f.serviceID, Records: []configwire.UsageRecord{
			{Minute: m.Add(time.Minute), API: "chat", Subscription: "s2", HandshakesSuccess: 1, ConnectionsClosed: 1, MessagesIn: 5,
				HandshakesFailed: 1, Refusals: map[string]int64{"502 BackendConnectionFailure": 1}},
			{Minute: m.Add(time.Minute), API: "chat", Subscription: "s1", HandshakesBlocked: 1, Refusals: map[string]int64{"429 RateLimitExceeded": 1}},
		}},
	} {
		if _, err := in.Store(ctx, &b); err != nil {
			t.Fatal(err)
		}
	}
	window := "?$filter=" + url.QueryEscape("timestamp ge datetime'2026-11-24T10:00:00'")
	get := func(path string, headers ...string) []map[string]any {
		t.Helper()
		var p reportPage
		if err := json.Unmarshal(f.env.Must(t, []int{200}, "GET", path, nil, headers...).Body, &p); err != nil {
			t.Fatal(err)
		}
		return p.Value
	}
	pick := func(recs []map[string]any, fields ...string) []any {
		out := []any{}
		for _, r := range recs {
			var row []any
			for _, k := range fields {
				row = append(row, r[k])
			}
			out = append(out, row)
		}
		return out
	}
	if diff := cmp.Diff([]any{
		[]any{nil, nil, 2.0, 5.0, 0.0}, // s1 is scoped to an API, and calls without a subscription
		[]any{"starter", "/products/starter", 1.0, 0.0, 1.0},
	}, pick(get(f.svc+"/reports/byProduct"+window), "name", "productId", "connectionsOpened", "callCountBlocked", "callCountFailed")); diff != "" {
		t.Errorf("byProduct (name, productId, opened, blocked, failed) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{
		[]any{"n1", 2.0, 1.0},
		[]any{"n2", 1.0, 1.0},
	}, pick(get(f.svc+"/reports/byNode"+window), "nodeId", "connectionsOpened", "connectionsClosed")); diff != "" {
		t.Errorf("byNode (nodeId, opened, closed) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{
		[]any{"2026-11-24T10:00:00Z", map[string]any{"429 RateLimitExceeded": 1.0, "401 SubscriptionKeyNotFound": 3.0}},
		[]any{"2026-11-24T10:01:00Z", map[string]any{"429 RateLimitExceeded": 1.0, "502 BackendConnectionFailure": 1.0}},
	}, pick(get(f.svc+"/reports/byTime"+window+"&interval=PT1M"), "timestamp", "refusals")); diff != "" {
		t.Errorf("byTime PT1M refusals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{[]any{"n2", 5.0}}, pick(get(f.svc+"/reports/byNode?$filter="+
		url.QueryEscape("timestamp ge datetime'2026-11-24T10:00:00' and nodeId eq 'n2'")), "nodeId", "messagesIn")); diff != "" {
		t.Errorf("byNode of n2 (-want +got):\n%s", diff)
	}

	// A consumer's reports count its own subscriptions only.
	u1 := bearer(userToken(t, f.env, f.svc, "u1"))
	if diff := cmp.Diff([]any{[]any{"s1", 2.0, 2.0}}, pick(get(portalPrefix+"/reports/bySubscription"+window, u1...),
		"name", "connectionsOpened", "callCountBlocked")); diff != "" {
		t.Errorf("u1's bySubscription (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{[]any{"chat", 2.0, 0.0}}, pick(get(portalPrefix+"/reports/byApi"+window, u1...),
		"name", "connectionsOpened", "messagesIn")); diff != "" {
		t.Errorf("u1's byApi (-want +got):\n%s", diff)
	}
	u2 := bearer(userToken(t, f.env, f.svc, "u2"))
	if diff := cmp.Diff([]any{[]any{"2026-11-24T10:00:00Z", 1.0, 5.0}}, pick(get(portalPrefix+"/reports/byTime"+window+"&interval=PT1H", u2...),
		"timestamp", "connectionsOpened", "messagesIn")); diff != "" {
		t.Errorf("u2's byTime (-want +got):\n%s", diff)
	}
	if r := f.env.Must(t, []int{400}, "GET", f.svc+"/reports/byApi?$filter="+
		url.QueryEscape("timestamp ge datetime'2026-11-24T10:00:00' and closeCode eq 1000"), nil); r.ErrorCode() != "ValidationError" {
		t.Errorf("closeCode in a report: %s", r.Body)
	}
}
