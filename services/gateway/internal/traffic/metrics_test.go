package traffic_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/gateway/internal/usage"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/promreg"
	"gatehouse.dev/pkg/syncbuf"
	"gatehouse.dev/pkg/testwait"
)

// Secrets the client or the configuration hands the gateway; no log record may hold them.
const (
	goodKey      = "key-secret-1"
	wrongKey     = "wrong-secret-key"
	queryToken   = "tok-secret"
	bearerToken  = "auth-secret"
	backendQuery = "backend-secret"
)

const svcARM = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc"

type obj = map[string]any

func ent(t testing.TB, kind, parent, name string, props obj) configwire.Entity {
	t.Helper()
	raw, err := json.Marshal(props)
	if err != nil {
		t.Fatal(err)
	}
	return configwire.Entity{Kind: kind, Parent: parent, Name: name, Properties: raw, Revision: 1}
}

// snapshot is gateway gw1 serving the WebSocket APIs chat (no limits), limited (one inbound
// message a minute), quiet (idle timeout 1 s) and short (lifetime 1 s), all proxied to
// backend, with subscription alice (key goodKey, all APIs) unless withoutAlice.
func snapshot(t *testing.T, backend string, withoutAlice bool) configwire.Snapshot {
	t.Helper()
	ents := []configwire.Entity{ent(t, configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}})}
	limits := map[string]string{
		"chat":    "",
		"limited": `<message-rate direction="inbound" messages="1" period="60" burst="1" />`,
		"quiet":   `<websocket-limits idle-timeout="1" />`,
		"short":   `<websocket-limits max-lifetime="1" />`,
	}
	for name, policy := range limits {
		if strings.HasPrefix(policy, "<message-rate") {
			policy = "<websocket-limits>" + policy + "</websocket-limits>"
		}
		ents = append(ents,
			ent(t, configwire.KindAPI, "", name, obj{"displayName": name, "path": name, "type": "websocket",
				"serviceUrl": backend + "/echo?code=" + backendQuery, "protocols": []string{"ws"}}),
			ent(t, configwire.KindOperation, "apis/"+name, "onHandshake", obj{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
			configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: name, Revision: 1})
		if policy != "" {
			ents = append(ents, ent(t, configwire.KindPolicy, "apis/"+name, "policy",
				obj{"value": "<policies><inbound><base />" + policy + "</inbound></policies>", "format": "xml"}))
		}
	}
	if !withoutAlice {
		sub := ent(t, configwire.KindSubscription, "", "alice", obj{"scope": svcARM + "/apis", "state": "active",
			"displayName": "alice", "ownerId": svcARM + "/users/u-alice", "createdDate": "2024-01-02T03:04:05Z"})
		sub.KeyHashes = []string{configwire.KeyHash(goodKey)}
		ents = append(ents, sub)
	}
	return configwire.Snapshot{ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 7, Entities: ents}
}

func build(t testing.TB, snap configwire.Snapshot) *compiled.Config {
	t.Helper()
	cfg, err := compiled.NewBuilder(pipeline.Env{}).Load(snap)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return cfg
}

// echoBackend echoes data messages, answers "bye" by closing with 1000 "bye", and accepts
// the subprotocol chat.v1.
func echoBackend(t *testing.T) *httptest.Server {
	up := websocket.Upgrader{Subprotocols: []string{"chat.v1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(msg) == "bye" {
				_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
				continue
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// logBuffer collects the handler's JSON log lines; it is safe for concurrent use.
type logBuffer struct{ syncbuf.Buffer }

// records returns the log records whose msg is one of the connection records.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		switch rec["msg"] {
		case "handshake rejected", "websocket opened", "websocket closed":
			out = append(out, rec)
		}
	}
	return out
}

// waitClosed waits until n "websocket closed" records are logged.
func (b *logBuffer) waitClosed(t *testing.T, n int) {
	t.Helper()
	testwait.For(t, 10*time.Second, func() string {
		if log := b.String(); strings.Count(log, `"msg":"websocket closed"`) < n {
			return fmt.Sprintf("no %d websocket closed records; log:\n%s", n, log)
		}
		return ""
	})
}

type env struct {
	handler *traffic.Handler
	cfg     *atomic.Pointer[compiled.Config]
	reg     *prometheus.Registry
	usage   *usage.Collector // holds its batches: it has no JetStream
	log     *logBuffer
	url     string // ws://host of the gateway
	backend string // ws://host of the backend
}

func newEnv(t *testing.T) *env {
	t.Helper()
	backend := "ws" + strings.TrimPrefix(echoBackend(t).URL, "http")
	reg := prometheus.NewRegistry()
	m, err := metrics.NewGateway(reg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	var cfg atomic.Pointer[compiled.Config]
	cfg.Store(build(t, snapshot(t, backend, false)))
	u := usage.New(usage.Options{NodeID: "node-1", ServiceID: func() string { return "svc" }, Gateway: func() string { return "gw" },
		JetStream: func() jetstream.JetStream { return nil }})
	h := traffic.New(&cfg, traffic.Options{Node: "node-1", Metrics: m, Usage: u, Engine: loopEngine(t),
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{handler: h, cfg: &cfg, reg: reg, usage: u, log: logs, url: "ws" + strings.TrimPrefix(srv.URL, "http"), backend: backend}
}

// scrape returns the gatehouse_gateway_ series of /metrics, "name{labels}" → value, without
// histogram buckets and sums, which depend on timing.
func (e *env) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promreg.Handler(e.reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(line, "gatehouse_gateway_") || strings.Contains(line, "_bucket{") ||
			strings.Contains(line, "_sum{") || strings.Contains(line, "_sum ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func (e *env) dial(t *testing.T, path string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"chat.v1"}}
	c, resp, err := d.Dial(e.url+path, hdr)
	if c != nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// waitRegistered waits until the gateway has registered the session the client opened: the
// client may see the 101 before the handler registers the session for drain and revocation.
func (e *env) waitRegistered(t *testing.T) {
	t.Helper()
	testwait.Until(t, 5*time.Second, "the session registered", func() bool { return e.handler.Connections().Len() > 0 })
}

// readClose reads from c until the close frame and returns its code and text.
func readClose(t *testing.T, c *websocket.Conn) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code, ce.Text
			}
			t.Fatalf("read: %v", err)
		}
	}
}

// TestScriptedSession runs a client through two refused handshakes and one session of three
// messages each way, then checks every gateway series scraped and every connection record.
func TestScriptedSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	_, resp, err := e.dial(t, "/chat", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without key: %v %v, want 401", resp, err)
	}
	missingID := resp.Header.Get(traffic.HeaderCorrelationID)
	_, resp, err = e.dial(t, "/chat?subscription-key="+wrongKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v %v, want 401", resp, err)
	}
	wrongID := resp.Header.Get(traffic.HeaderCorrelationID)

	c, resp, err := e.dial(t, "/chat?subscription-key="+goodKey+"&access_token="+queryToken,
		http.Header{"Authorization": {"Bearer " + bearerToken}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	openID := resp.Header.Get(traffic.HeaderCorrelationID)
	for i := 1; i <= 3; i++ {
		msg := "hello " + strconv.Itoa(i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(); err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q %v", i, got, err)
		}
	}
	ids := []string{missingID, wrongID, openID}
	for i, id := range ids {
		if len(id) != 36 || strings.Count(strings.Join(ids, " "), id) != 1 {
			t.Fatalf("correlation id %d = %q of %q, want distinct UUIDs", i, id, ids)
		}
	}

	// While the session is open, its traffic already counts: payload bytes, 7 a message each
	// way, without the frame headers (6 bytes masked from the client, 2 from the backend). The
	// relay counts a frame just after writing it, so the last echo may reach the client a
	// moment before it counts.
	wantOpen := map[string]float64{
		`gatehouse_gateway_connections_active{api="chat"}`:             1,
		`gatehouse_gateway_messages_total{api="chat",direction="in"}`:  3,
		`gatehouse_gateway_messages_total{api="chat",direction="out"}`: 3,
		`gatehouse_gateway_bytes_total{api="chat",direction="in"}`:     3 * 7,
		`gatehouse_gateway_bytes_total{api="chat",direction="out"}`:    3 * 7,
	}
	testwait.For(t, 5*time.Second, func() string {
		open := e.scrape(t)
		var wrong []string
		for series, want := range wantOpen {
			if open[series] != want {
				wrong = append(wrong, fmt.Sprintf("%s = %v, want %v", series, open[series], want))
			}
		}
		if len(wrong) > 0 {
			return "open session:\n" + strings.Join(wrong, "\n")
		}
		return ""
	})

	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "done"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if code, _ := readClose(t, c); code != 1000 {
		t.Fatalf("close code %d, want the backend's 1000", code)
	}
	e.log.waitClosed(t, 1)

	want := map[string]float64{
		`gatehouse_gateway_connections_active{api="chat"}`:                                           0,
		`gatehouse_gateway_messages_total{api="chat",direction="in"}`:                                3,
		`gatehouse_gateway_messages_total{api="chat",direction="out"}`:                               3,
		`gatehouse_gateway_bytes_total{api="chat",direction="in"}`:                                   3 * 7, // close frames are not payload
		`gatehouse_gateway_bytes_total{api="chat",direction="out"}`:                                  3 * 7,
		`gatehouse_gateway_handshakes_total{api="chat",code="101",reason=""}`:                        1,
		`gatehouse_gateway_handshakes_total{api="chat",code="401",reason="SubscriptionKeyNotFound"}`: 1,
		`gatehouse_gateway_handshakes_total{api="chat",code="401",reason="SubscriptionKeyInvalid"}`:  1,
		`gatehouse_gateway_handshake_duration_seconds_count{api="chat",result="accepted"}`:           1,
		`gatehouse_gateway_handshake_duration_seconds_count{api="chat",result="rejected"}`:           2,
		`gatehouse_gateway_policy_duration_seconds_count{api="chat"}`:                                1,
		`gatehouse_gateway_backend_dial_duration_seconds_count{api="chat",result="upgraded"}`:        1,
		`gatehouse_gateway_closes_total{api="chat",reason="normal"}`:                                 1,
		`gatehouse_gateway_session_duration_seconds_count{api="chat"}`:                               1,
		`gatehouse_gateway_revocations_total`:                                                        0,
		`gatehouse_gateway_config_revision`:                                                          0,
		`gatehouse_gateway_config_apply_duration_seconds_count`:                                      0,
		`gatehouse_gateway_config_failed_apis`:                                                       0,
		`gatehouse_gateway_config_policy_failures`:                                                   0,
	}
	if diff := cmp.Diff(want, e.scrape(t)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}

	common := map[string]any{"level": "INFO", "node": "node-1", "api": "chat", "client_ip": "127.0.0.1",
		"operation": "", "product": "", "subscription": "", "user": "", "backend": "", "subprotocol": ""}
	rec := func(msg, id string, fields map[string]any) map[string]any {
		r := map[string]any{"msg": msg, "correlation_id": id}
		for k, v := range common {
			r[k] = v
		}
		for k, v := range fields {
			r[k] = v
		}
		return r
	}
	session := map[string]any{"operation": "onHandshake", "subscription": "alice", "user": "u-alice",
		"backend": e.backend, "subprotocol": "chat.v1"}
	closed := map[string]any{"messages_in": 3.0, "messages_out": 3.0, "bytes_in": 3 * 7.0, "bytes_out": 3 * 7.0,
		"close_code": 1000.0, "closed_by": "client", "reason": "normal", "detail": ""}
	for k, v := range session {
		closed[k] = v
	}
	wantLogs := []map[string]any{
		rec("handshake rejected", missingID, map[string]any{"status": 401.0, "reason": "SubscriptionKeyNotFound"}),
		rec("handshake rejected", wrongID, map[string]any{"status": 401.0, "reason": "SubscriptionKeyInvalid"}),
		rec("websocket opened", openID, session),
		rec("websocket closed", openID, closed),
	}
	ignoreTimes := cmpopts.IgnoreMapEntries(func(k string, v any) bool {
		return k == "time" || k == "duration_ms" || k == "handshake_ms"
	})
	if diff := cmp.Diff(wantLogs, e.log.records(t), ignoreTimes); diff != "" {
		t.Errorf("connection records (-want +got):\n%s", diff)
	}
	for _, r := range e.log.records(t) {
		if _, ok := r["duration_ms"].(float64); !ok && r["msg"] != "websocket opened" {
			t.Errorf("%s: no duration_ms", r["msg"])
		}
	}
	for _, secret := range []string{goodKey, wrongKey, queryToken, bearerToken, backendQuery, "subscription-key"} {
		if strings.Contains(e.log.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, e.log.String())
		}
	}

	// Usage, the source of the reports, counts the same payload bytes as the metrics and the
	// log record.
	e.usage.Flush(true)
	var got usage.Traffic
	for _, b := range e.usage.Pending() {
		for _, r := range b.Records {
			if r.API == "chat" && r.Subscription == "alice" {
				got.MessagesIn += r.MessagesIn
				got.MessagesOut += r.MessagesOut
				got.BytesIn += r.BytesIn
				got.BytesOut += r.BytesOut
			}
		}
	}
	if wantUsage := (usage.Traffic{MessagesIn: 3, MessagesOut: 3, BytesIn: 3 * 7, BytesOut: 3 * 7}); got != wantUsage {
		t.Errorf("usage of alice on chat = %+v, want %+v", got, wantUsage)
	}
}

// TestCloseReasons ends a session each way the gateway tells apart and checks the close
// metric and record.
func TestCloseReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, api string
		// act ends the session of client c.
		act               func(t *testing.T, e *env, c *websocket.Conn)
		wantCode          int
		wantBy, wantWhy   string
		wantReason        string
		wantDetailContain string
	}{
		{name: "backend", api: "chat", act: func(t *testing.T, e *env, c *websocket.Conn) {
			_ = c.WriteMessage(websocket.TextMessage, []byte("bye"))
		}, wantCode: 1000, wantBy: "backend", wantReason: "backend"},
		{name: "limit", api: "limited", act: func(t *testing.T, e *env, c *websocket.Conn) {
			_ = c.WriteMessage(websocket.TextMessage, []byte("one"))
			_ = c.WriteMessage(websocket.TextMessage, []byte("two"))
		}, wantCode: 1008, wantBy: "gateway", wantReason: "limit", wantDetailContain: "message rate exceeded"},
		{name: "idle", api: "quiet", act: func(*testing.T, *env, *websocket.Conn) {},
			wantCode: 1001, wantBy: "gateway", wantReason: "idle", wantDetailContain: "idle timeout"},
		{name: "expired", api: "short", act: func(*testing.T, *env, *websocket.Conn) {},
			wantCode: 1001, wantBy: "gateway", wantReason: "expired", wantDetailContain: "lifetime"},
		{name: "revoked", api: "chat", act: func(t *testing.T, e *env, c *websocket.Conn) {
			cfg := build(t, snapshot(t, e.backend, true))
			e.cfg.Store(cfg)
			if n := e.handler.Revoke(cfg); n != 1 {
				t.Errorf("Revoke = %d, want 1", n)
			}
		}, wantCode: 1008, wantBy: "gateway", wantReason: "revoked", wantDetailContain: "revoked"},
		{name: "drain", api: "chat", act: func(t *testing.T, e *env, c *websocket.Conn) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			go e.handler.Connections().Drain(ctx, 1001, "gateway shutting down")
		}, wantCode: 1001, wantBy: "gateway", wantReason: "drain", wantDetailContain: "shutting down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			c, _, err := e.dial(t, "/"+tc.api+"?subscription-key="+goodKey, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			e.waitRegistered(t)
			tc.act(t, e, c)
			if code, _ := readClose(t, c); code != tc.wantCode {
				t.Errorf("close code %d, want %d", code, tc.wantCode)
			}
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
			e.log.waitClosed(t, 1)

			series := `gatehouse_gateway_closes_total{api="` + tc.api + `",reason="` + tc.wantReason + `"}`
			if got := e.scrape(t)[series]; got != 1 {
				t.Errorf("%s = %v, want 1", series, got)
			}
			var rec map[string]any
			for _, r := range e.log.records(t) {
				if r["msg"] == "websocket closed" {
					rec = r
				}
			}
			got := map[string]any{"reason": rec["reason"], "closed_by": rec["closed_by"], "close_code": rec["close_code"]}
			want := map[string]any{"reason": tc.wantReason, "closed_by": tc.wantBy, "close_code": float64(tc.wantCode)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("closed record (-want +got):\n%s", diff)
			}
			if d, _ := rec["detail"].(string); !strings.Contains(d, tc.wantDetailContain) || (tc.wantDetailContain == "") != (d == "") {
				t.Errorf("detail %q, want it to contain %q", d, tc.wantDetailContain)
			}
		})
	}
}

// TestCorrelationHeader checks that every answer of the traffic listener carries a
// correlation id, whether or not an API matched.
func TestCorrelationHeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/nowhere", "/chat"} {
		resp, err := http.Get("http" + strings.TrimPrefix(e.url, "ws") + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if id := resp.Header.Get(traffic.HeaderCorrelationID); len(id) != 36 {
			t.Errorf("GET %s (%d): %s = %q, want a UUID", path, resp.StatusCode, traffic.HeaderCorrelationID, id)
		}
	}
}
