// Package traffic serves API traffic on the gateway's listener: it matches the API, validates
// a WebSocket upgrade, resolves the subscription key, runs the policy pipeline, and only then
// hands the request to the backend — the WebSocket relay after the backend has upgraded, or
// the reverse proxy for REST APIs. Every error the client sees is APIM's {statusCode,message}.
package traffic

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"gatehouse.dev/gateway/internal/breaker"
	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/connlog"
	"gatehouse.dev/gateway/internal/logexport"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/usage"
	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/pipeline"
)

// HealthPath is APIM's gateway health probe, answered on the traffic listener.
const HealthPath = "/status-0123456789abcdef"

// HeaderCorrelationID carries the id the gateway gives each request on every answer it
// makes, errors and the 101 included; the connection log records and context.RequestId
// carry the same id. The gateway always makes its own: a client's value is not trusted.
const HeaderCorrelationID = "X-Correlation-ID"

// correlationKey is HeaderCorrelationID as a key of http.Header, canonical.
var correlationKey = http.CanonicalHeaderKey(HeaderCorrelationID)

// Options are the static settings of the traffic handler.
type Options struct {
	// Region is context.Deployment.Region; context.Deployment.GatewayId is the configuration's
	// gateway resource (compiled.Config.Gateway).
	Region string
	// Registry tracks the handler's WebSocket sessions; nil means a registry of its own. The
	// node passes the one its connection-limit eviction and revocation use.
	Registry *Registry
	// BackendTLS verifies wss/https backends (RootCAs for a CA bundle); nil uses system roots.
	BackendTLS *tls.Config
	// ConnectTimeout bounds the backend dial and handshake.
	ConnectTimeout time.Duration
	// Dial opens TCP connections to backends, WebSocket and REST; nil means a net.Dialer.
	// The node passes its egress dialer: a refused dial answers the client as an unreachable
	// backend does, and the log says why.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialAllow decides each address the event loops dial for a ws backend (Engine set):
	// the checks Dial makes. With Dial set and DialAllow nil, Dial dials every backend.
	DialAllow func(host string, addr netip.AddrPort) error
	// MaxMessageBytes and IdleTimeout are the per-connection defaults (0 = unlimited).
	MaxMessageBytes int64
	IdleTimeout     time.Duration
	// PingInterval is the default keepalive ping interval (0 = none).
	PingInterval time.Duration
	// Engine relays WebSocket sessions whose connections are plain TCP on its event loops;
	// nil relays every session on the goroutine engine (wsproxy.Engine).
	Engine *wsproxy.Engine
	// Node names this process in the connection log records (the heartbeat's node id).
	Node string
	Log  *slog.Logger
	// Metrics records traffic metrics; nil records none.
	Metrics *metrics.Gateway
	// Connections enforces <limit-connections> across the fleet; nil ignores those policies.
	Connections ConnectionLimiter
	// Usage counts WebSocket usage for reports; nil counts none.
	Usage *usage.Collector
	// ConnectionLog sends the record of every ended WebSocket session to management; nil
	// sends none.
	ConnectionLog *connlog.Recorder
	// LogExport sends the records the API's diagnostics keep to their otlp loggers; nil sends
	// none.
	LogExport *logexport.Exporter
	// Tracer traces handshakes and REST requests and forwards their trace context to the
	// backend; nil traces nothing and forwards the client's traceparent as it came.
	Tracer *tracing.Tracer
	// MaxHeaderBytes caps the request line and headers of a request; a larger one is answered
	// 431 with APIM's body (net/http answers a far larger one itself with a plain-text 431,
	// see node). Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// TrustedProxies are the peers whose Forwarded and X-Forwarded-For headers are believed
	// for the client's address (ip-filter, rate-limit-by-key on context.Request.IpAddress,
	// the logs). A request from any other peer has the socket peer's address, and its
	// forwarding headers are replaced before they reach the backend. Empty trusts no one.
	TrustedProxies []netip.Prefix
	// Context is what a WebSocket session and its close record use once the handshake's
	// request has returned; its cancellation is ignored. nil means the request's own
	// context, which then stays in memory for the whole session.
	Context context.Context
}

// Handler is the traffic listener's http.Handler. It is safe for concurrent use.
type Handler struct {
	cfg   *atomic.Pointer[compiled.Config]
	opt   Options
	conns *Registry
	rest  *restProxy
	rates rateStore
	// breakers are the backends' circuit breakers; tls the backend TLS variants.
	breakers *breaker.Set
	tls      *backendTLS
}

// New returns a Handler reading the configuration from cfg.
func New(cfg *atomic.Pointer[compiled.Config], opt Options) *Handler {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.ConnectTimeout <= 0 {
		opt.ConnectTimeout = 10 * time.Second
	}
	if opt.Registry == nil {
		opt.Registry = NewRegistry()
	}
	if opt.MaxHeaderBytes <= 0 {
		opt.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	h := &Handler{cfg: cfg, opt: opt, conns: opt.Registry, tls: newBackendTLS(opt.BackendTLS, newRESTTransport(opt)),
		breakers: &breaker.Set{OnChange: opt.Metrics.Circuit}}
	h.rest = newRESTProxy(opt)
	return h
}

// Connections is the registry of open WebSocket sessions (for drain and revocation).
func (h *Handler) Connections() *Registry { return h.conns }

// WriteError writes APIM's gateway error body.
func WriteError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apierror.GatewayBody{StatusCode: status, Message: msg})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg, api, rest, id := h.route(w, r)
	switch {
	case api == nil: // answered
	case api.Type == "websocket":
		growStack()
		h.serveWebSocket(w, r, cfg, api, id)
	default:
		h.serveREST(w, r, cfg, api, rest, id)
	}
}

// route finds the API of r, after the checks every request passes, and gives r its
// correlation id. It returns a nil API when it answered r itself: the health probe, an
// oversized header, no configuration, a misdirected request, an API this node could not
// decode, or no API at all. rest is the path after an HTTP API's route.
func (h *Handler) route(w http.ResponseWriter, r *http.Request) (cfg *compiled.Config, api *compiled.API, rest, id string) {
	if r.URL.Path == HealthPath {
		w.WriteHeader(http.StatusOK)
		return nil, nil, "", ""
	}
	id = uuid.NewString()
	w.Header()[correlationKey] = []string{id}
	if headerSize(r) > h.opt.MaxHeaderBytes {
		w.Header().Set("Connection", "close")
		WriteError(w, http.StatusRequestHeaderFieldsTooLarge, apierror.MsgHeaderTooLarge)
		return nil, nil, "", ""
	}
	if cfg = h.cfg.Load(); cfg == nil {
		WriteError(w, http.StatusServiceUnavailable, apierror.MsgNoConfiguration)
		return nil, nil, "", ""
	}
	if misdirected(cfg, r) {
		WriteError(w, http.StatusMisdirectedRequest, msgMisdirected)
		return nil, nil, "", ""
	}
	secure := r.TLS != nil
	if api := cfg.LookupWebSocket(r); api != nil && api.Broken() {
		h.refuseBroken(w, r, api)
		return nil, nil, "", ""
	} else if api != nil && allows(api, secure) {
		return cfg, api, "", id
	}
	if api, rest := cfg.LookupHTTP(r); api != nil && api.Broken() {
		h.refuseBroken(w, r, api)
		return nil, nil, "", ""
	} else if api != nil && allows(api, secure) {
		return cfg, api, rest, id
	}
	WriteError(w, http.StatusNotFound, apierror.MsgNotFound)
	return nil, nil, "", ""
}

// msgMisdirected answers a request refused by misdirected.
const msgMisdirected = "Misdirected request: this hostname requires a client certificate; connect with its name as the TLS server name and present one"

// misdirected reports whether r came over a TLS connection without a client certificate
// while its Host names a hostname configuration that requires one: the handshake chose the
// hostname by the client's SNI, so a client sending the SNI of another hostname and this
// Host (domain fronting) would otherwise skip the requirement.
func misdirected(cfg *compiled.Config, r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) > 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	h := cfg.Hostname(host)
	return h != nil && h.NegotiateClientCertificate
}

// refuseBroken answers a request for an API whose configuration this node could not decode:
// 500, failing closed (Config.Failures names the API).
func (h *Handler) refuseBroken(w http.ResponseWriter, r *http.Request, api *compiled.API) {
	h.opt.Log.LogAttrs(r.Context(), slog.LevelError, "API configuration not understood by this node; request refused",
		slog.String("api", api.Name))
	WriteError(w, http.StatusInternalServerError, "Internal server error")
}

// allows reports whether the API's protocols include the request's scheme.
func allows(api *compiled.API, secure bool) bool {
	scheme := "http"
	switch {
	case api.Type == "websocket" && secure:
		scheme = "wss"
	case api.Type == "websocket":
		scheme = "ws"
	case secure:
		scheme = "https"
	}
	return slices.Contains(api.Protocols, scheme)
}

// DefaultMaxHeaderBytes is Options.MaxHeaderBytes when zero: 32 KiB, as nginx's
// large_client_header_buffers and well above what browsers send.
const DefaultMaxHeaderBytes = 32 << 10

// headerSize is the size of r's request line and header fields as they came on the wire,
// give or take whitespace: each field counts its name, value and ": " and CRLF.
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	if r.Host != "" && r.Header.Get("Host") == "" {
		n += len("Host: \r\n") + len(r.Host) // net/http moves Host out of Header
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// validUpgrade checks RFC 6455 §4.2.1's requirements on the client's opening handshake: a
// GET of HTTP/1.1 or later with a Host (§4.1), no body (a GET upgrade has none; one with a
// Content-Length or Transfer-Encoding is a request smuggling attempt), and the upgrade
// headers.
func validUpgrade(r *http.Request) bool {
	if !r.ProtoAtLeast(1, 1) || r.Host == "" || r.ContentLength != 0 || len(r.TransferEncoding) > 0 ||
		r.Header.Get("Content-Length") != "" || r.Header.Get("Transfer-Encoding") != "" {
		return false
	}
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "websocket") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	return err == nil && len(key) == 16
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// access is the outcome of subscription resolution.
type access struct {
	sub     *compiled.Subscription
	product *compiled.Product
	key     string
}

// resolveKey applies APIM's subscription rules (reference/apim.md §1.7): the header is used
// when present, else the query parameter; without a key an open product or an API that does
// not require a subscription lets the call through. It returns a status and message on refusal.
func resolveKey(cfg *compiled.Config, api *compiled.API, r *http.Request) (access, int, string) {
	key := r.Header.Get(api.KeyHeader)
	if _, present := r.Header[http.CanonicalHeaderKey(api.KeyHeader)]; !present {
		key = r.URL.Query().Get(api.KeyQuery)
	}
	if key == "" {
		switch {
		case api.OpenProduct != nil:
			return access{product: api.OpenProduct}, 0, ""
		case !api.SubscriptionRequired:
			return access{}, 0, ""
		}
		return access{}, http.StatusUnauthorized, apierror.MsgMissingKey
	}
	sub := cfg.Subscription(sha256.Sum256([]byte(key)))
	if sub == nil || !sub.Active() {
		return access{}, http.StatusUnauthorized, apierror.MsgInvalidKey
	}
	ok, product := sub.Covers(api)
	if !ok {
		return access{}, http.StatusUnauthorized, apierror.MsgInvalidKey
	}
	return access{sub: sub, product: product, key: key}, 0, ""
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1), plus what the proxies set themselves.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Accept"}

// prepare builds the pipeline request with id as its RequestID: the client's headers and
// query minus hop-by-hop headers and the subscription key.
func (h *Handler) prepare(r *http.Request, cfg *compiled.Config, api *compiled.API, op *compiled.Operation, acc access, id string) *pipeline.Request {
	hdr := r.Header.Clone()
	for _, c := range hdr.Values("Connection") {
		for t := range strings.SplitSeq(c, ",") {
			if t = strings.TrimSpace(t); t != "" && !strings.EqualFold(t, "upgrade") {
				hdr.Del(t)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(hdr, k) // canonical already: Del would canonicalize each
	}
	hdr.Del(api.KeyHeader)
	q := r.URL.Query()
	q.Del(api.KeyQuery)
	pr := &pipeline.Request{HTTP: r, ClientIP: h.clientIP(r), Header: hdr, Query: q,
		API:        pipeline.APIInfo{ID: "/apis/" + api.Name, Name: api.DisplayName, Path: api.Path},
		Deployment: pipeline.DeploymentInfo{GatewayID: cfg.Gateway, Region: h.opt.Region, ServiceName: cfg.Service},
		RequestID:  id, Now: time.Now()}
	if api.ServiceURL != nil {
		u := *api.ServiceURL
		pr.Backend = &u
		pr.API.ServiceURL = api.ServiceURLText
	}
	if op != nil {
		pr.Operation = pipeline.OperationInfo{ID: op.Name, Name: op.DisplayName, Method: op.Method, URLTemplate: op.URLTemplate}
	}
	if acc.product != nil {
		pr.Product = &pipeline.ProductInfo{ID: acc.product.Name, Name: acc.product.DisplayName}
	}
	if acc.sub != nil {
		pr.Subscription = &pipeline.SubscriptionInfo{ID: acc.sub.Name, Name: acc.sub.Name, Key: acc.key, StartDate: acc.sub.StartDate()}
		if acc.sub.OwnerID != "" {
			pr.User = &pipeline.UserInfo{ID: acc.sub.OwnerID[strings.LastIndexByte(acc.sub.OwnerID, '/')+1:]}
		}
	}
	return pr
}

// setForwarded sets X-Forwarded-For/Proto/Host for the backend. The peer is appended to the
// X-Forwarded-For chain of a trusted proxy; from any other peer, whatever Forwarded and
// X-Forwarded-For claim is dropped and the peer starts the chain.
func (h *Handler) setForwarded(hdr http.Header, r *http.Request, proto string) {
	peer := peerIP(r)
	prior := strings.Join(hdr.Values("X-Forwarded-For"), ", ")
	if !h.trusted(peer) {
		prior = ""
		hdr.Del("Forwarded")
	}
	// The keys are canonical: set without Set's canonicalization. The three values share
	// one array, each capped so that an append to one does not write over the next.
	v := make([]string, 3)
	switch {
	case prior != "" && peer.IsValid():
		v[0] = prior + ", " + peer.String()
		hdr["X-Forwarded-For"] = v[0:1:1]
	case peer.IsValid():
		v[0] = peer.String()
		hdr["X-Forwarded-For"] = v[0:1:1]
	default:
		delete(hdr, "X-Forwarded-For")
	}
	v[1], v[2] = proto, r.Host
	hdr["X-Forwarded-Proto"] = v[1:2:2]
	hdr["X-Forwarded-Host"] = v[2:3:3]
}

// peerIP is the address of the socket peer.
func peerIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// trusted reports whether a is one of Options.TrustedProxies.
func (h *Handler) trusted(a netip.Addr) bool {
	for _, p := range h.opt.TrustedProxies {
		if a.IsValid() && p.Contains(a) {
			return true
		}
	}
	return false
}

// clientIP is the client's address: the socket peer, unless the peer is a trusted proxy;
// then the chain of Forwarded "for=" (RFC 7239), or else of X-Forwarded-For, is walked
// from the nearest hop back and the first address that is not a trusted proxy is the
// client (the farthest one when all are trusted). A chain with something that is not an
// address where an answer is needed stops the walk at the last trusted hop before it: an
// untrusted hop could have written anything earlier in the chain.
func (h *Handler) clientIP(r *http.Request) netip.Addr {
	peer := peerIP(r)
	if !h.trusted(peer) {
		return peer
	}
	chain := forwardedFor(r.Header.Values("Forwarded"))
	if chain == nil {
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for _, f := range strings.Split(v, ",") {
				chain = append(chain, strings.TrimSpace(f))
			}
		}
	}
	client := peer
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseHop(chain[i])
		if !ok {
			break
		}
		client = a
		if !h.trusted(a) {
			break
		}
	}
	return client
}

// forwardedFor returns the "for=" values of Forwarded header fields, in order.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					out = append(out, strings.Trim(strings.TrimSpace(val), `"`))
				}
			}
		}
	}
	return out
}

// parseHop reads one hop of a forwarding chain: an address, with or without a port, an
// IPv6 one in brackets as Forwarded writes it.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// writePipelineResponse writes a policy's answer.
func writePipelineResponse(w http.ResponseWriter, resp *pipeline.Response) {
	copyHeaders(w.Header(), resp.Header)
	if resp.Body == nil {
		WriteError(w, resp.Status, resp.Message)
		return
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// copyHeaders adds src to dst.
func copyHeaders(dst, src http.Header) {
	for k, vs := range src {
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// backendURL is base plus rest and the final query. A query in base (a serviceUrl such as
// "https://fn.example/api?code=..." or "wss://host/realtime?api-version=...") is kept, its
// values before the request's for the same name, as httputil.ReverseProxy joins them.
func backendURL(base *url.URL, rest string, q url.Values) *url.URL {
	u := *base
	if rest != "" {
		u.Path = strings.TrimRight(u.Path, "/") + "/" + rest
		u.RawPath = ""
	}
	if base.RawQuery != "" {
		merged := base.Query()
		for k, vs := range q {
			merged[k] = append(merged[k], vs...)
		}
		q = merged
	}
	u.RawQuery = q.Encode()
	return &u
}
