// Package tracing gives the gateway OpenTelemetry spans for its handshakes, exported over OTLP
// when an endpoint is configured, and carries W3C trace context (traceparent, tracestate) from
// the client to the backend.
package tracing

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Span names of the gateway (docs/observability.md). A handshake span has a policy span and,
// when the policies let the request through, a backend dial span as children. REST requests
// have the same three spans.
const (
	SpanHandshake   = "gatehouse.handshake"
	SpanPolicy      = "gatehouse.policy"
	SpanBackendDial = "gatehouse.backend.dial"
)

// Attribute keys of the handshake span. None carries a key, a token, a header value or a
// query string.
const (
	AttrAPI           = attribute.Key("gatehouse.api.name")
	AttrOperation     = attribute.Key("gatehouse.operation.name")
	AttrCorrelationID = attribute.Key("gatehouse.correlation_id")
	AttrReason        = attribute.Key("gatehouse.reason")
	AttrStatus        = attribute.Key("http.response.status_code")
)

// InstrumentationName names the gateway's tracer.
const InstrumentationName = "gatehouse.dev/gateway"

// Tracer starts the gateway's spans and propagates their context with W3C Trace Context. A nil
// *Tracer is valid and traces nothing: it starts no-op spans and leaves headers as they are.
// It is safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// NewTracer returns a Tracer that starts its spans with tp.
func NewTracer(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(InstrumentationName), prop: propagation.TraceContext{}}
}

// Handshake starts the span of a handshake or REST request: a server span continuing the
// trace of the traceparent in hdr, if any, else starting a new trace.
func (t *Tracer) Handshake(ctx context.Context, hdr http.Header, api, correlationID string) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noop.Span{}
	}
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(hdr))
	return t.tracer.Start(ctx, SpanHandshake, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(AttrAPI.String(api), AttrCorrelationID.String(correlationID)))
}

// Start starts a child span of the span in ctx (SpanPolicy, or SpanBackendDial with kind
// trace.SpanKindClient).
func (t *Tracer) Start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noop.Span{}
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// Inject sets traceparent and tracestate of hdr to the span context of ctx, replacing what
// the client sent, so the backend continues the gateway's trace. A nil Tracer leaves hdr alone.
func (t *Tracer) Inject(ctx context.Context, hdr http.Header) {
	if t == nil {
		return
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(hdr))
}

// SetOperation records the operation a handshake or request matched.
func SetOperation(span trace.Span, operation string) {
	if span.IsRecording() {
		span.SetAttributes(AttrOperation.String(operation))
	}
}

// End records the status the client got (0: none reached it) and, for a refusal, its reason,
// and ends span. A status of 0 or 5xx marks the span as an error.
func End(span trace.Span, status int, reason string) {
	if span.IsRecording() {
		span.SetAttributes(AttrStatus.Int(status))
		if reason != "" {
			span.SetAttributes(AttrReason.String(reason))
		}
		if status == 0 || status >= 500 {
			span.SetStatus(codes.Error, reason)
		}
	}
	span.End()
}

// Options configure the OTLP export. The endpoints are those of the standard OpenTelemetry
// variables; the exporter reads the other OTEL_EXPORTER_OTLP_* variables (headers, timeout,
// compression, certificates) itself.
type Options struct {
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT, the collector's base URL such as
	// http://collector:4318; spans go to its /v1/traces.
	Endpoint string
	// TracesEndpoint is OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, the full URL spans go to; it wins
	// over Endpoint.
	TracesEndpoint string
	// ServiceName is service.name when OTEL_SERVICE_NAME does not set it.
	ServiceName string
	// InstanceID is service.instance.id, the node's id.
	InstanceID string
}

// Setup returns the gateway's Tracer and the function that flushes and stops its export. With
// neither endpoint set, tracing is off: the Tracer is nil and shutdown does nothing. Spans are
// exported over OTLP/HTTP (protobuf) in batches; all are sampled unless OTEL_TRACES_SAMPLER
// says otherwise.
func Setup(ctx context.Context, opt Options) (*Tracer, func(context.Context) error, error) {
	url := opt.TracesEndpoint
	if url == "" && opt.Endpoint != "" {
		url = strings.TrimRight(opt.Endpoint, "/") + "/v1/traces"
	}
	if url == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url))
	if err != nil {
		return nil, nil, err
	}
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName(opt.ServiceName),
		semconv.ServiceInstanceID(opt.InstanceID)), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return NewTracer(tp), tp.Shutdown, nil
}
