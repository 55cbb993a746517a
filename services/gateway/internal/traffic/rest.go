package traffic

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/trace"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/pkg/apierror"
)

// restProxy forwards REST API calls to their backends.
type restProxy struct {
	proxy *httputil.ReverseProxy
}

type targetKey struct{}

func newRESTProxy(opt Options) *restProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = opt.BackendTLS
	tr.ResponseHeaderTimeout = 5 * time.Minute
	tr.MaxIdleConnsPerHost = 256
	if opt.Dial != nil {
		tr.DialContext = opt.Dial
	}
	p := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := pr.In.Context().Value(targetKey{}).(*restTarget)
			pr.Out.URL = t.url
			pr.Out.Host = t.url.Host
			pr.Out.Header = t.header
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			opt.Log.WarnContext(r.Context(), "backend request failed", "err", err)
			status := http.StatusBadGateway
			if errors.Is(err, http.ErrHandlerTimeout) {
				status = http.StatusGatewayTimeout
			}
			WriteError(w, status, apierror.MsgBackendUnavailable)
		},
	}
	return &restProxy{proxy: p}
}

type restTarget struct {
	url    *url.URL
	header http.Header
}

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
	if pr.Backend == nil {
		WriteError(w, http.StatusInternalServerError, "The API has no backend service URL")
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
	t := &restTarget{url: backendURL(pr.Backend, rest, pr.Query), header: pr.Header}
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
