package tracing_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"gatehouse.dev/gateway/internal/tracing"
)

// receiver is an OTLP/HTTP trace receiver keeping the span names and the resource's
// service.name of each export.
type receiver struct {
	mu      sync.Mutex
	paths   []string
	spans   []string
	service []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.paths = append(rc.paths, r.URL.Path)
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				rc.service = append(rc.service, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				rc.spans = append(rc.spans, s.GetName())
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

// TestSetupExportsOverOTLP sets up tracing against an OTLP/HTTP receiver, as
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT would, and checks that
// a handshake's spans arrive on shutdown at the path the variables mean.
func TestSetupExportsOverOTLP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opt      func(url string) tracing.Options
		wantPath string
	}{
		{name: "base endpoint", opt: func(url string) tracing.Options { return tracing.Options{Endpoint: url + "/"} },
			wantPath: "/v1/traces"},
		{name: "traces endpoint", opt: func(url string) tracing.Options {
			return tracing.Options{Endpoint: "http://127.0.0.1:1", TracesEndpoint: url + "/custom/traces"}
		}, wantPath: "/custom/traces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := &receiver{}
			srv := httptest.NewServer(rc)
			t.Cleanup(srv.Close)
			opt := tc.opt(srv.URL)
			opt.ServiceName, opt.InstanceID = "gatehouse-gateway", "node-1"
			tr, shutdown, err := tracing.Setup(t.Context(), opt)
			if err != nil {
				t.Fatal(err)
			}
			if tr == nil {
				t.Fatal("Setup returned no tracer with an endpoint set")
			}
			ctx, span := tr.Handshake(t.Context(), http.Header{}, "chat", "id-1")
			_, child := tr.Start(ctx, tracing.SpanBackendDial, trace.SpanKindClient)
			tracing.End(child, 101, "")
			tracing.End(span, 101, "")
			if err := shutdown(t.Context()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			rc.mu.Lock()
			defer rc.mu.Unlock()
			got := struct{ Paths, Spans, Service []string }{slices.Compact(rc.paths), slices.Sorted(slices.Values(rc.spans)), slices.Compact(rc.service)}
			want := struct{ Paths, Spans, Service []string }{[]string{tc.wantPath},
				[]string{tracing.SpanBackendDial, tracing.SpanHandshake}, []string{"gatehouse-gateway"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("export (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSetupOff checks that without an endpoint tracing is off: no tracer, and a nil Tracer
// starts spans that record nothing and leaves headers as the client sent them.
func TestSetupOff(t *testing.T) {
	t.Parallel()
	tr, shutdown, err := tracing.Setup(t.Context(), tracing.Options{})
	if err != nil || tr != nil {
		t.Fatalf("Setup() = %v, %v; want no tracer", tr, err)
	}
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hdr := http.Header{"Traceparent": {parent}}
	ctx, span := tr.Handshake(t.Context(), hdr, "chat", "id")
	if span.IsRecording() {
		t.Error("a nil Tracer's span records")
	}
	tr.Inject(ctx, hdr)
	tracing.End(span, 101, "")
	if got := hdr.Get("Traceparent"); got != parent {
		t.Errorf("traceparent %q, want the client's %q untouched", got, parent)
	}
}
