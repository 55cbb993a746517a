package traffic

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpproxy"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/upstream"
	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/pipeline"
)

// restProxy forwards REST API calls to their backends: the calls upstream.Eligible accepts
// straight through fast (forward), the others through the reverse proxy and the transport of
// their TLS variant (net/http's).
type restProxy struct {
	proxy *httputil.ReverseProxy
	fast  *upstream.Transport
	log   *slog.Logger
}

type targetKey struct{}

// newRESTTransport returns the transport of REST calls through the TLS configuration c.
func newRESTTransport(opt Options) func(c *tls.Config) http.RoundTripper {
	return func(c *tls.Config) http.RoundTripper {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = c
		tr.ResponseHeaderTimeout = restResponseHeaderTimeout
		tr.MaxIdleConnsPerHost = 256
		tr.MaxIdleConns = 0 // DefaultTransport's 100 across hosts closes and redials under load
		if opt.Dial != nil {
			tr.DialContext = opt.Dial
		}
		return tr
	}
}

func newRESTProxy(opt Options) *restProxy {
	rp := &restProxy{fast: &upstream.Transport{Dial: opt.Dial, ResponseHeaderTimeout: restResponseHeaderTimeout}, log: opt.Log}
	rp.proxy = &httputil.ReverseProxy{
		BufferPool: copyBuffers{},
		// Each backend entity's tls flags and client certificates pick a transport of their own.
		Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
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
			rp.fail(w, r.Context(), r.Context().Value(targetKey{}).(*restTarget).target, err)
		},
	}
	return rp
}

// restResponseHeaderTimeout bounds the wait for a REST backend's response header.
const restResponseHeaderTimeout = 5 * time.Minute

// fail answers a call whose backend gave no response: 502 (504 for a timeout of the
// handler), counted against t's breaker.
func (p *restProxy) fail(w http.ResponseWriter, ctx context.Context, t target, err error) {
	t.record(0, "")
	p.log.WarnContext(ctx, "backend request failed", "err", err)
	status := http.StatusBadGateway
	if errors.Is(err, http.ErrHandlerTimeout) {
		status = http.StatusGatewayTimeout
	}
	WriteError(w, status, apierror.MsgBackendUnavailable)
}

// serve sends in to t at u with hdr and copies the answer to w: straight through the fast
// transport when it takes the call and no proxy from the environment applies, else through
// the reverse proxy.
func (p *restProxy) serve(w http.ResponseWriter, in *http.Request, t target, tlsv *tlsVariant, u *url.URL, hdr http.Header) {
	out := &http.Request{Method: in.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: hdr,
		Host: u.Host, ContentLength: in.ContentLength}
	if in.ContentLength != 0 {
		out.Body = io.NopCloser(in.Body) // the server closes the client's body, not the transport
	}
	if !upstream.Eligible(out) || !noProxy(out) {
		p.serveProxied(w, in, t, tlsv, u, hdr)
		return
	}
	p.forward(w, in, out, t)
}

// serveProxied sends in to t at u with hdr through the reverse proxy and tlsv's transport.
func (p *restProxy) serveProxied(w http.ResponseWriter, in *http.Request, t target, tlsv *tlsVariant, u *url.URL, hdr http.Header) {
	rt := &restTarget{url: u, header: hdr, target: t, tls: tlsv}
	p.proxy.ServeHTTP(w, in.WithContext(context.WithValue(in.Context(), targetKey{}, rt)))
}

// noProxy reports whether the HTTP_PROXY and NO_PROXY variables send r to its backend
// directly, as the transports of newRESTTransport would.
func noProxy(r *http.Request) bool {
	u, err := http.ProxyFromEnvironment(r)
	return u == nil && err == nil
}

// forward sends out through the fast transport and copies the answer to w as the reverse
// proxy does with the same settings (TestForwardMatchesReverseProxy): no default User-Agent
// (and no Te: the Rewrite replaces the header), informational responses relayed, hop-by-hop
// fields dropped, trailers announced and passed on, a stream (no length, or
// text/event-stream) flushed as it comes, and a body cut short aborting the client's
// connection.
func (p *restProxy) forward(w http.ResponseWriter, in *http.Request, out *http.Request, t target) {
	ctx := in.Context()
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "")
	}
	resp, err := p.fast.Send(ctx, out, func(code int, h http.Header) {
		wh := w.Header()
		copyHeaders(wh, h)
		w.WriteHeader(code)
		clear(wh) // as the reverse proxy: WriteHeader leaves a 1xx's fields in the map
	})
	if err != nil {
		p.fail(w, ctx, t, err)
		return
	}
	upstream.RemoveHopByHop(resp.Header)
	t.record(resp.StatusCode, resp.Header.Get("Retry-After"))
	copyHeaders(w.Header(), resp.Header)
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		w.Header().Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	if err := p.copyBody(ctx, w, resp); err != nil {
		resp.Body.Close()
		if ctx.Value(http.ServerContextKey) != nil {
			// The status is out: only a cut connection tells the client the body is not
			// whole. net/http's server recovers this value quietly (httputil.ReverseProxy).
			panic(http.ErrAbortHandler)
		}
		return
	}
	resp.Body.Close()
	if len(resp.Trailer) > 0 {
		_ = http.NewResponseController(w).Flush() // chunked, so that the trailer can follow
	}
	if len(resp.Trailer) == announced {
		copyHeaders(w.Header(), resp.Trailer)
		return
	}
	for k, vs := range resp.Trailer {
		for _, v := range vs {
			w.Header().Add(http.TrailerPrefix+k, v)
		}
	}
}

// copyBody copies resp's body to w, flushing after each write when it is a stream; it
// returns the first write error or read error other than the end.
func (p *restProxy) copyBody(ctx context.Context, w http.ResponseWriter, resp *http.Response) error {
	var rc *http.ResponseController
	if resp.ContentLength == -1 || eventStream(resp.Header.Get("Content-Type")) {
		rc = http.NewResponseController(w)
		_ = rc.Flush()
	}
	bp := copyBufferPool.Get().(*[]byte)
	defer copyBufferPool.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if rerr != nil && rerr != io.EOF && rerr != context.Canceled {
			p.log.WarnContext(ctx, "backend response body read failed", "err", rerr)
		}
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if rc != nil {
				_ = rc.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// eventStream reports whether the media type ct is text/event-stream, without parsing the
// common others.
func eventStream(ct string) bool {
	ct = strings.TrimLeft(ct, " \t")
	if len(ct) < len("text/event-stream") || !strings.EqualFold(ct[:len("text/event-stream")], "text/event-stream") {
		return false
	}
	base, _, _ := mime.ParseMediaType(ct)
	return base == "text/event-stream"
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

// copyBufferPool holds *[]byte of 32 KiB, the reverse proxy's own size.
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
	m := h.matchREST(cfg, api, r, rest)
	if span.IsRecording() || h.opt.Usage != nil {
		sw = &statusWriter{ResponseWriter: w}
		w = sw
		defer func() {
			tracing.End(span, sw.status, "")
			h.opt.Usage.Handshake(api.Name, m.subscription(), sw.status, "")
		}()
	}
	call := h.decideREST(ctx, span, w, r, cfg, api, m, id)
	if call == nil {
		return
	}
	if call.dialSpan != nil {
		defer func() { tracing.End(call.dialSpan, sw.status, "") }()
	}
	h.rest.serve(w, r, call.target, h.tls.For(call.target), call.url, call.header)
}

// restMatch is what a REST request matched before its policies: the rest of its path after
// the API's route, the operation (nil for none) and the subscription, or the status and
// message refusing the key.
type restMatch struct {
	rest   string
	op     *compiled.Operation
	acc    access
	status int
	msg    string
}

func (h *Handler) matchREST(cfg *compiled.Config, api *compiled.API, r *http.Request, rest string) restMatch {
	m := restMatch{rest: rest, op: api.MatchOperation(r.Method, rest)}
	if m.op != nil {
		m.acc, m.status, m.msg = resolveKey(cfg, api, r)
	}
	return m
}

// subscription names the subscription of the request, for the usage report ("" for none).
func (m *restMatch) subscription() string {
	if m.acc.sub == nil {
		return ""
	}
	return m.acc.sub.Name
}

// restCall is a REST request its checks and policies let through: the backend it goes to,
// its URL and header, and the span of the call when the request is traced.
type restCall struct {
	target   target
	url      *url.URL
	header   http.Header
	dialSpan trace.Span
}

// decideREST runs the checks and the policies of a REST request that matched m. It returns
// where the request goes, or nil when it wrote the answer to w: a refusal, or a policy's.
func (h *Handler) decideREST(ctx context.Context, span trace.Span, w http.ResponseWriter, r *http.Request, cfg *compiled.Config, api *compiled.API, m restMatch, id string) *restCall {
	if m.op == nil {
		WriteError(w, http.StatusNotFound, apierror.MsgNotFound)
		return nil
	}
	tracing.SetOperation(span, m.op.Name)
	if m.status != 0 {
		WriteError(w, m.status, m.msg)
		return nil
	}
	pr := h.prepare(r, cfg, api, m.op, m.acc, id)
	policyStart := time.Now()
	policyCtx, policySpan := h.opt.Tracer.Start(ctx, tracing.SpanPolicy, trace.SpanKindInternal)
	resp := m.op.Pipeline(m.acc.product).Run(policyCtx, pr)
	policySpan.End()
	h.opt.Metrics.Policy(api.Name, time.Since(policyStart))
	if resp != nil {
		writePipelineResponse(w, resp)
		return nil
	}
	// A REST call goes to the first target: its request body cannot be sent twice.
	targets, nt := h.targets(cfg, pr)
	if nt != nil {
		writeNoTarget(w, nt)
		return nil
	}
	call := &restCall{target: targets[0]}
	if span.IsRecording() {
		var dialCtx context.Context
		dialCtx, call.dialSpan = h.opt.Tracer.Start(ctx, tracing.SpanBackendDial, trace.SpanKindClient)
		h.opt.Tracer.Inject(dialCtx, pr.Header)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	h.setForwarded(pr.Header, r, proto)
	copyHeaders(w.Header(), pr.ResponseHeader)
	hdr, q := call.target.request(pr)
	call.url, call.header = backendURL(call.target.url, m.rest, q), hdr
	return call
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

// ServeLoop serves r on an event loop of the node's front (wsproxy.RESTHandler): a REST
// request whose policies do not wait (pipeline.Pipeline.Waits) and keep the API's backend,
// when every backend of the API is a plain http:// URL that no proxy from the environment
// applies to; and every answer that comes before the policies (no API, no operation, a
// refused key). It declines, before anything is counted, a request for a WebSocket API and
// any other REST request: net/http serves those through ServeHTTP. The checks, policies,
// breaker, spans, usage report and answers are serveREST's.
func (h *Handler) ServeLoop(w http.ResponseWriter, r *http.Request) (*wsproxy.LoopCall, bool) {
	cfg, api, rest, id := h.route(w, r)
	switch {
	case api == nil:
		return nil, true
	case api.Type == "websocket":
		return nil, false
	}
	m := h.matchREST(cfg, api, r, rest)
	if m.op != nil && m.status == 0 && !h.loopable(cfg, api, m.op.Pipeline(m.acc.product)) {
		return nil, false
	}
	lc := &loopCall{h: h, api: api.Name, subscription: m.subscription()}
	lc.ctx, lc.span = h.opt.Tracer.Handshake(r.Context(), r.Header, api.Name, id)
	lc.sw.ResponseWriter = w
	call := h.decideREST(lc.ctx, lc.span, &lc.sw, r, cfg, api, m, id)
	if call == nil {
		lc.ended(lc.sw.status)
		return nil, true
	}
	lc.call = call
	lc.out = http.Request{Method: r.Method, URL: call.url, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: call.header, Host: call.url.Host}
	if _, ok := call.header["User-Agent"]; !ok {
		call.header.Set("User-Agent", "") // as forward: no default User-Agent
	}
	lc.LoopCall = wsproxy.LoopCall{Request: &lc.out, Result: lc, ResponseHeaderTimeout: restResponseHeaderTimeout}
	return &lc.LoopCall, true
}

// loopCall is a REST request ServeLoop decided, and the LoopCall the loop makes of it: one
// allocation for everything the loop needs of the request and tells of its end.
type loopCall struct {
	wsproxy.LoopCall
	out          http.Request
	h            *Handler
	ctx          context.Context
	span         trace.Span
	api          string
	subscription string
	sw           statusWriter
	call         *restCall
}

// Response counts the backend's answer in its breaker and reports the request.
func (lc *loopCall) Response(status int, hdr http.Header) {
	lc.call.target.record(status, hdr.Get("Retry-After"))
	lc.finished(status)
}

// Failed answers a call that got no response as serveREST does, and reports it.
func (lc *loopCall) Failed(w http.ResponseWriter, err error) {
	fw := &statusWriter{ResponseWriter: w}
	lc.h.rest.fail(fw, lc.ctx, lc.call.target, err)
	lc.finished(fw.status)
}

func (lc *loopCall) finished(status int) {
	if lc.call.dialSpan != nil {
		tracing.End(lc.call.dialSpan, status, "")
	}
	lc.ended(status)
}

// ended reports the request with the status the client got: its span and usage.
func (lc *loopCall) ended(status int) {
	tracing.End(lc.span, status, "")
	lc.h.opt.Usage.Handshake(lc.api, lc.subscription, status, "")
}

// loopable reports whether a REST request of api whose policies are p can be served on an
// event loop: p does not wait and keeps the API's backend, and every backend the request
// may go to is a plain http:// URL that no proxy from the environment applies to.
func (h *Handler) loopable(cfg *compiled.Config, api *compiled.API, p *pipeline.Pipeline) bool {
	if p.Waits() || p.SetsBackend() || api.ServiceURL == nil {
		return false
	}
	be := cfg.BackendAt(api.ServiceURL)
	switch {
	case be == nil:
		return loopURL(api.ServiceURL)
	case be.Members == nil:
		return loopURL(be.URL)
	}
	for _, m := range be.Members {
		if !loopURL(m.Backend.URL) {
			return false
		}
	}
	return true
}

// loopURL reports whether u is an http:// URL that no proxy from the environment applies to.
func loopURL(u *url.URL) bool {
	if u == nil || u.Scheme != "http" {
		return false
	}
	p, err := envProxy()(u)
	return p == nil && err == nil
}

// envProxy is the proxy function of HTTP_PROXY and NO_PROXY, read once as
// http.ProxyFromEnvironment reads them.
var envProxy = sync.OnceValue(func() func(*url.URL) (*url.URL, error) {
	return httpproxy.FromEnvironment().ProxyFunc()
})
