package traffic

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"gatehouse.dev/gateway/internal/compiled"
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
	op := api.MatchOperation(r.Method, rest)
	if op == nil {
		WriteError(w, http.StatusNotFound, apierror.MsgNotFound)
		return
	}
	acc, status, msg := resolveKey(cfg, api, r)
	if status != 0 {
		WriteError(w, status, msg)
		return
	}
	pr := h.prepare(r, cfg, api, op, acc, id)
	policyStart := time.Now()
	resp := op.Pipeline(acc.product).Run(r.Context(), pr)
	h.opt.Metrics.Policy(api.Name, time.Since(policyStart))
	if resp != nil {
		writePipelineResponse(w, resp)
		return
	}
	if pr.Backend == nil {
		WriteError(w, http.StatusInternalServerError, "The API has no backend service URL")
		return
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	setForwarded(pr.Header, r, proto)
	copyHeaders(w.Header(), pr.ResponseHeader)
	t := &restTarget{url: backendURL(pr.Backend, rest, pr.Query), header: pr.Header}
	h.rest.proxy.ServeHTTP(w, r.WithContext(contextWith(r, t)))
}

func contextWith(r *http.Request, t *restTarget) context.Context {
	return context.WithValue(r.Context(), targetKey{}, t)
}
