package traffic_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/testwait"
)

// clientTrace is the trace the client's traceparent names; the gateway must continue it.
const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
	clientParent  = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

// headerBackend answers WebSocket upgrades (closing at once) and plain requests with 200, and
// keeps the traceparent of each request it gets.
type headerBackend struct {
	mu     sync.Mutex
	parent []string
}

func (b *headerBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.parent = append(b.parent, r.Header.Get("Traceparent"))
	b.mu.Unlock()
	if !websocket.IsWebSocketUpgrade(r) {
		_, _ = w.Write([]byte("ok"))
		return
	}
	up := websocket.Upgrader{}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
	c.Close()
}

func (b *headerBackend) traceparents() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.parent...)
}

// tracedGateway serves the WebSocket APIs of snapshot plus the REST API rest (GET /items)
// proxied to backend, with spans recorded in the returned exporter.
func tracedGateway(t *testing.T, backend string) (string, *tracetest.InMemoryExporter) {
	t.Helper()
	snap := snapshot(t, "ws"+strings.TrimPrefix(backend, "http"), false)
	snap.Entities = append(snap.Entities,
		ent(t, configwire.KindAPI, "", "rest", obj{"displayName": "rest", "path": "rest", "type": "http",
			"serviceUrl": backend + "/api?code=" + backendQuery, "protocols": []string{"http"}}),
		ent(t, configwire.KindOperation, "apis/rest", "list", obj{"displayName": "list", "method": "GET", "urlTemplate": "/items"}),
		configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "rest", Revision: 1})
	var cfg atomic.Pointer[compiled.Config]
	cfg.Store(build(t, snap))
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	srv := httptest.NewServer(traffic.New(&cfg, traffic.Options{Tracer: tracing.NewTracer(tp)}))
	t.Cleanup(srv.Close)
	return srv.URL, exp
}

// spanView is what the test checks of a span: its name, its parent's name ("" for the root,
// "client" for the client's span), kind and attributes.
type spanView struct {
	Name, Parent string
	Kind         trace.SpanKind
	Attrs        map[string]string
}

// spanViews returns the exporter's spans of trace traceID, each with its parent's name.
func spanViews(t *testing.T, exp *tracetest.InMemoryExporter, traceID trace.TraceID) map[string]spanView {
	t.Helper()
	spans := exp.GetSpans()
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		names[s.SpanContext.SpanID()] = s.Name
	}
	got := map[string]spanView{}
	for _, s := range spans {
		if s.SpanContext.TraceID() != traceID {
			continue
		}
		parent := names[s.Parent.SpanID()]
		if s.Parent.SpanID().String() == clientSpanID {
			parent = "client"
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes {
			if a.Key == tracing.AttrCorrelationID {
				attrs[string(a.Key)] = "set" // a fresh UUID, checked apart
				continue
			}
			attrs[string(a.Key)] = a.Value.Emit()
		}
		got[s.Name] = spanView{Name: s.Name, Parent: parent, Kind: s.SpanKind, Attrs: attrs}
	}
	return got
}

// TestTracing opens a WebSocket session and makes a REST call, each with and without the
// client's traceparent, and checks the spans, their parents and attributes, and that the
// backend got a traceparent of the same trace whose parent is the backend dial span.
func TestTracing(t *testing.T) {
	t.Parallel()
	noAttrs := map[string]string{}
	tests := []struct {
		name        string
		path        string
		ws          bool
		traceparent string
		wantRoot    string // the handshake span's parent
		wantStatus  string
		wantOp      string
	}{
		{name: "websocket continues the client's trace", path: "/chat", ws: true, traceparent: clientParent,
			wantRoot: "client", wantStatus: "101", wantOp: "onHandshake"},
		{name: "websocket starts a trace", path: "/chat", ws: true, wantStatus: "101", wantOp: "onHandshake"},
		{name: "rest continues the client's trace", path: "/rest/items", traceparent: clientParent,
			wantRoot: "client", wantStatus: "200", wantOp: "list"},
		{name: "rest starts a trace", path: "/rest/items", wantStatus: "200", wantOp: "list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			be := &headerBackend{}
			backend := httptest.NewServer(be)
			t.Cleanup(backend.Close)
			gw, exp := tracedGateway(t, backend.URL)
			hdr := http.Header{"Ocp-Apim-Subscription-Key": {goodKey}}
			if tc.traceparent != "" {
				hdr.Set("Traceparent", tc.traceparent)
			}
			var correlationID string
			if tc.ws {
				c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(gw, "http")+tc.path+"?access_token="+queryToken, hdr)
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				c.Close()
				correlationID = resp.Header.Get(traffic.HeaderCorrelationID)
			} else {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, gw+tc.path+"?access_token="+queryToken, nil)
				req.Header = hdr
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				correlationID = resp.Header.Get(traffic.HeaderCorrelationID)
			}

			parents := be.traceparents()
			if len(parents) != 1 {
				t.Fatalf("backend got traceparents %q, want one", parents)
			}
			fields := strings.Split(parents[0], "-")
			if len(fields) != 4 {
				t.Fatalf("backend traceparent %q is not W3C's version-trace-span-flags", parents[0])
			}
			traceID, _ := trace.TraceIDFromHex(fields[1])
			if tc.traceparent != "" && fields[1] != clientTraceID {
				t.Errorf("backend trace id %s, want the client's %s", fields[1], clientTraceID)
			}
			if tc.traceparent == "" && fields[1] == clientTraceID {
				t.Errorf("backend trace id is the client's, but the client sent none")
			}

			// The handshake span ends just after the 101 reaches the client.
			var got map[string]spanView
			testwait.For(t, 5*time.Second, func() string {
				if got = spanViews(t, exp, traceID); len(got) != 3 {
					return fmt.Sprintf("%d spans, want 3: %v", len(got), got)
				}
				return ""
			})
			want := map[string]spanView{
				tracing.SpanHandshake: {Name: tracing.SpanHandshake, Parent: tc.wantRoot, Kind: trace.SpanKindServer, Attrs: map[string]string{
					"gatehouse.api.name": strings.Split(tc.path, "/")[1], "gatehouse.operation.name": tc.wantOp,
					"gatehouse.correlation_id": "set", "http.response.status_code": tc.wantStatus}},
				tracing.SpanPolicy: {Name: tracing.SpanPolicy, Parent: tracing.SpanHandshake, Kind: trace.SpanKindInternal, Attrs: noAttrs},
				tracing.SpanBackendDial: {Name: tracing.SpanBackendDial, Parent: tracing.SpanHandshake, Kind: trace.SpanKindClient,
					Attrs: map[string]string{"http.response.status_code": tc.wantStatus}},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
			for _, s := range exp.GetSpans() {
				switch s.Name {
				case tracing.SpanBackendDial:
					if s.SpanContext.SpanID().String() != fields[2] {
						t.Errorf("backend traceparent parent %s, want the dial span %s", fields[2], s.SpanContext.SpanID())
					}
				case tracing.SpanHandshake:
					if v := attrValue(s.Attributes, tracing.AttrCorrelationID); v != correlationID {
						t.Errorf("correlation id attribute %q, want the answer's %q", v, correlationID)
					}
				}
				for _, a := range s.Attributes {
					for _, secret := range []string{goodKey, queryToken, backendQuery} {
						if strings.Contains(a.Value.Emit(), secret) {
							t.Errorf("span %s attribute %s holds %q", s.Name, a.Key, secret)
						}
					}
				}
			}
		})
	}
}

// TestTracingRejected checks that a refused handshake ends its span with the status and
// reason, and that the backend is not dialled.
func TestTracingRejected(t *testing.T) {
	t.Parallel()
	be := &headerBackend{}
	backend := httptest.NewServer(be)
	t.Cleanup(backend.Close)
	gw, exp := tracedGateway(t, backend.URL)
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(gw, "http")+"/chat?subscription-key="+wrongKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v %v, want 401", resp, err)
	}
	var names []string
	for _, s := range exp.GetSpans() {
		names = append(names, s.Name)
		if s.Name != tracing.SpanHandshake {
			continue
		}
		got := map[attribute.Key]string{tracing.AttrStatus: attrValue(s.Attributes, tracing.AttrStatus),
			tracing.AttrReason: attrValue(s.Attributes, tracing.AttrReason)}
		want := map[attribute.Key]string{tracing.AttrStatus: "401", tracing.AttrReason: "SubscriptionKeyInvalid"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("handshake span attributes (-want +got):\n%s", diff)
		}
	}
	if diff := cmp.Diff([]string{tracing.SpanHandshake}, names); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	if p := be.traceparents(); len(p) != 0 {
		t.Errorf("backend got requests %q, want none", p)
	}
}

func attrValue(attrs []attribute.KeyValue, key attribute.Key) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value.Emit()
		}
	}
	return ""
}
