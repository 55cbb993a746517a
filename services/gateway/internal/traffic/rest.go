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
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/upstream"
	"gatehouse.dev/pkg/apierror"
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
	removeHopByHop(resp.Header)
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

// responseHopHeaders are the hop-by-hop fields httputil.ReverseProxy drops from a response.
var responseHopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop drops the fields h's Connection names and the hop-by-hop ones.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, f := range responseHopHeaders {
		h.Del(f)
	}
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
	h.rest.serve(w, r, targets[0], h.tls.For(targets[0]), backendURL(targets[0].url, rest, q), hdr)
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
