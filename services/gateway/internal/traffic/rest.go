package traffic

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/upstream"
	"gatehouse.dev/pkg/apierror"
)

// restProxy forwards REST API calls to their backends: the calls upstream.Eligible accepts
// through fast, the others through the transport of their TLS variant (net/http's).
type restProxy struct {
	proxy *httputil.ReverseProxy
	fast  *upstream.Transport
}

type targetKey struct{}

// newRESTTransport returns the transport of REST calls through the TLS configuration c.
func newRESTTransport(opt Options) func(c *tls.Config) http.RoundTripper {
	return func(c *tls.Config) http.RoundTripper {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = c
		tr.ResponseHeaderTimeout = restResponseHeaderTimeout
		tr.MaxIdleConnsPerHost = 256
		tr.MaxIdleConns = 0
		if opt.Dial != nil {
			tr.DialContext = opt.Dial
		}
		return tr
	}
}

func newRESTProxy(opt Options) *restProxy {
	fast := &upstream.Transport{Dial: opt.Dial, ResponseHeaderTimeout: restResponseHeaderTimeout}
	p := &httputil.ReverseProxy{
		BufferPool: copyBuffers{},
		// Plain-HTTP calls go through fast unless a proxy from the environment applies; each
		// backend entity's tls flags and client certificates pick a transport of their own.
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if upstream.Eligible(r) && noProxy(r) {
				return fast.RoundTrip(r)
			}
			return r.Context().Value(targetKey{}).(*restTarget).tls.rt.RoundTrip(r)
		}),
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*restTarget)
			pr.Out.URL = t.url
			pr.Out.Host = t.url.Host
			pr.Out.Header = t.header
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Request.Context().Value(targetKey{}).(*restTarget).target.record(resp.StatusCode, resp.Header.Get("Retry-After"))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			r.Context().Value(targetKey{}).(*restTarget).target.record(0, "")
			opt.Log.WarnContext(r.Context(), "backend request failed", "err", err)
			status := http.StatusBadGateway
			if errors.Is(err, http.ErrHandlerTimeout) {
				status = http.StatusGatewayTimeout
			}
			WriteError(w, status, apierror.MsgBackendUnavailable)
		},
	}
	return &restProxy{proxy: p, fast: fast}
}

// restResponseHeaderTimeout bounds the wait for a REST backend's response header.
const restResponseHeaderTimeout = 5 * time.Minute

// noProxy reports whether the HTTP_PROXY and NO_PROXY variables send r to its backend
// directly, as the transports of newRESTTransport would.
func noProxy(r *http.Request) bool {
	u, err := http.ProxyFromEnvironment(r)
	return u == nil && err == nil
}

// restTarget is where a REST call goes: its URL and header, the backend it counts for and
// the TLS configuration its tls flags and client certificates choose.
type restTarget struct {
	url    *url.URL
	header http.Header
	target target
	tls    *tlsVariant
}

// copyBuffers lends the reverse proxy its body copy buffers.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }

// roundTripFunc is a function as an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// serveREST runs the key and policy pipeline for an operation of an HTTP API and proxies it
// to serviceUrl plus the rest of the path.
func (h *Handler) serveREST(w http.ResponseWriter, r *http.Request, cfg *compiled.Config, api *compiled.API, rest, id string) {
	ctx, span := h.opt.Tracer.Handshake(r.Context(), r.Header, api.Name, id)
	// sw keeps the status for the spans and the usage report; only when one of them is on,
	// to cost nothing otherwise.
	var sw *statusWriter
	subscription := ""
	if span.IsRecording() || h.opt.Usage != nil {
		sw = &statusWriter{ResponseWriter: w}
		w = sw
		defer func() {
			tracing.End(span, sw.status, "")
			h.opt.Usage.Handshake(api.Name, subscription, sw.status, "")
		}()
	}
	op := api.MatchOperation(r.Method, rest)
	if op == nil {
		WriteError(w, http.StatusNotFound, apierror.MsgNotFound)
		return
	}
	tracing.SetOperation(span, op.Name)
	acc, status, msg := resolveKey(cfg, api, r)
	if status != 0 {
		WriteError(w, status, msg)
		return
	}
	if acc.sub != nil {
		subscription = acc.sub.Name
	}
	pr := h.prepare(r, cfg, api, op, acc, id)
	policyStart := time.Now()
	policyCtx, policySpan := h.opt.Tracer.Start(ctx, tracing.SpanPolicy, trace.SpanKindInternal)
	resp := op.Pipeline(acc.product).Run(policyCtx, pr)
	policySpan.End()
	h.opt.Metrics.Policy(api.Name, time.Since(policyStart))
	if resp != nil {
		writePipelineResponse(w, resp)
		return
	}
	// A REST call goes to the first target: its request body cannot be sent twice.
	targets, nt := h.targets(cfg, pr)
	if nt != nil {
		writeNoTarget(w, nt)
		return
	}
	if span.IsRecording() {
		dialCtx, dialSpan := h.opt.Tracer.Start(ctx, tracing.SpanBackendDial, trace.SpanKindClient)
		h.opt.Tracer.Inject(dialCtx, pr.Header)
		defer func() { tracing.End(dialSpan, sw.status, "") }()
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	h.setForwarded(pr.Header, r, proto)
	copyHeaders(w.Header(), pr.ResponseHeader)
	hdr, q := targets[0].request(pr)
	t := &restTarget{url: backendURL(targets[0].url, rest, q), header: hdr, target: targets[0], tls: h.tls.For(targets[0])}
	h.rest.proxy.ServeHTTP(w, r.WithContext(contextWith(r, t)))
}

func contextWith(r *http.Request, t *restTarget) context.Context {
	return context.WithValue(r.Context(), targetKey{}, t)
}

// statusWriter remembers the status written through it for the request's span (0: none was
// written). Unwrap lets
// http.ResponseController (the reverse proxy's flushes and upgrades) reach the writer beneath.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
