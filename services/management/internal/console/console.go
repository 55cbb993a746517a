// Package console relays the developer portal's test console (issue 6): a WebSocket on which
// the browser names an API, a gateway node and query parameters, and management connects to the
// node in its stead, reports the handshake (status, headers and body, which a browser cannot
// read itself), then relays messages both ways. Who may connect where is decided by the
// caller's Resolve (the API package's authorization); this package never echoes or logs keys
// and tokens.
package console

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/pkg/apierror"
)

// Bounds of the relay.
const (
	// dialTimeout bounds the connection to the gateway node and its handshake.
	dialTimeout = 10 * time.Second
	// openTimeout is how long the browser has to send its opening message.
	openTimeout = 30 * time.Second
	// maxBody is the most of a refused handshake's body the browser is shown.
	maxBody = 64 << 10
	// maxMessage bounds a message either way (base64 included).
	maxMessage = 1 << 20
	writeWait  = 10 * time.Second
)

// secretQueryParams are the query parameters whose values the console never echoes: keys and
// tokens, compared case-insensitively. The API's own subscription-key parameter joins them.
var secretQueryParams = []string{"subscription-key", "access_token", "sig", "token", "key", "code"}

// upgrader accepts browsers of the portal's own origin only (gorilla's default check).
var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

// Open is the browser's opening message.
type Open struct {
	Authorization string            `json:"authorization"`
	Service       string            `json:"service"`
	API           string            `json:"api"`
	Node          string            `json:"node"`
	Query         map[string]string `json:"query"`
	Path          string            `json:"path"`
}

// Endpoint is what Resolve allowed an opening message to reach: a live node of the caller's
// service that advertises a URL, and an API the caller may test.
type Endpoint struct {
	Subject string // the caller, for the log
	Service string // the service's ARM id
	API     string // the API's name
	APIPath string // the API's path below the node's URL
	// KeyParam is the API's subscription-key query parameter, if it has one: its value is
	// never echoed, as those of secretQueryParams.
	KeyParam string
	Node     string // the node's id
	NodeURL  string // the node's URL (its GATEWAY_PUBLIC_URL, checked when its heartbeat arrived)
}

// Config is what a Handler needs from the API around it.
type Config struct {
	// Resolve authenticates the opening message's authorization and decides which endpoint it
	// may reach; its error is shown to the browser through Explain.
	Resolve func(ctx context.Context, open Open) (Endpoint, error)
	// Explain turns an error into what the browser sees, reporting whether it knew the error
	// (the API's one error mapper). An unknown error is logged as a failure.
	Explain func(err error) (*apierror.Error, bool)
	// Log receives one line per session; nil discards.
	Log *slog.Logger
}

// Handler serves the test console's WebSocket. It is safe for concurrent use.
type Handler struct {
	cfg Config
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg}
}

// Messages to the browser.
type (
	handshake struct {
		Type    string            `json:"type"` // "handshake"
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
		URL     string            `json:"url"`
		MS      int64             `json:"ms"`
	}
	message struct {
		Type   string `json:"type"` // "message"
		Data   string `json:"data"`
		Binary bool   `json:"binary"`
		Time   string `json:"time"`
	}
	closing struct {
		Type   string `json:"type"` // "close"
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	failure struct {
		Type    string        `json:"type"` // "error"
		Message string        `json:"message"`
		Code    apierror.Code `json:"code"`
	}
)

// frame is a browser message after the handshake.
type frame struct {
	Type   string `json:"type"`
	Data   string `json:"data"`
	Binary bool   `json:"binary"`
}

// target is where a session connects, and who asked.
type target struct {
	Endpoint
	url string
	// redacted is url with the values of secret query parameters replaced by ***.
	redacted string
}

// ServeHTTP upgrades the browser's request and runs one console session. The caller checks
// that r is a WebSocket upgrade (websocket.IsWebSocketUpgrade) to answer other requests in its
// own error format; a failed upgrade is answered here, by the upgrader. ServeHTTP returns when
// the session ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	browser, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered (a bad handshake or another origin)
	}
	defer browser.Close()
	browser.SetReadLimit(maxMessage)
	ctx := r.Context()

	tg, err := h.resolve(ctx, browser)
	if err != nil {
		h.fail(ctx, browser, err)
		return
	}
	start := time.Now()
	upstream, hs, err := dial(ctx, tg.url)
	if err != nil {
		h.fail(ctx, browser, apierror.New(apierror.ServiceUnavailable, "Could not connect to the gateway node: %v", err),
			"subject", tg.Subject, "service", tg.Service, "api", tg.API, "node_id", tg.Node, "url", tg.redacted)
		return
	}
	hs.URL, hs.MS = tg.redacted, time.Since(start).Milliseconds()
	rl := &relay{browser: browser, upstream: upstream}
	if err := rl.send(hs); err != nil || upstream == nil {
		h.cfg.Log.InfoContext(ctx, "test console", "subject", tg.Subject, "service", tg.Service, "api", tg.API,
			"node_id", tg.Node, "url", tg.redacted, "status", hs.Status)
		rl.closeBrowser(websocket.CloseNormalClosure, "")
		if upstream != nil {
			_ = upstream.Close()
		}
		return
	}
	rl.run()
	h.cfg.Log.InfoContext(ctx, "test console", "subject", tg.Subject, "service", tg.Service, "api", tg.API,
		"node_id", tg.Node, "url", tg.redacted, "status", hs.Status, "duration_ms", time.Since(start).Milliseconds(),
		"messages_sent", rl.sent, "messages_received", rl.received)
}

// resolve reads the opening message, has Resolve decide where it may connect, and builds the
// node's URL.
func (h *Handler) resolve(ctx context.Context, browser *websocket.Conn) (target, error) {
	_ = browser.SetReadDeadline(time.Now().Add(openTimeout))
	mt, raw, err := browser.ReadMessage()
	if err != nil {
		return target{}, &apierror.Error{Code: apierror.InvalidRequestContent, Message: "No opening message arrived."}
	}
	_ = browser.SetReadDeadline(time.Time{})
	var open Open
	if mt != websocket.TextMessage || json.Unmarshal(raw, &open) != nil {
		return target{}, &apierror.Error{Code: apierror.InvalidRequestContent,
			Message: "The opening message must be a JSON object: {authorization, service, api, node, query, path}."}
	}
	ep, err := h.cfg.Resolve(ctx, open)
	if err != nil {
		return target{}, err
	}
	u, err := url.Parse(ep.NodeURL)
	if err != nil {
		return target{}, err
	}
	rest, err := subPath(open.Path)
	if err != nil {
		return target{}, err
	}
	// Concatenated, never cleaned: the path stays below the node's URL and the API's path.
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + strings.Trim(ep.APIPath, "/") + rest
	u.RawPath = ""
	secret := secretQueryParams
	if ep.KeyParam != "" {
		secret = append(slices.Clip(secret), ep.KeyParam)
	}
	q := make(url.Values, len(open.Query))
	for k, v := range open.Query {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	redacted := *u
	redacted.RawQuery = redactQuery(q, secret)
	return target{Endpoint: ep, url: u.String(), redacted: redacted.String()}, nil
}

// subPath checks the opening message's path, which goes below the API's path, and returns it
// decoded with a leading "/" ("" for none). It refuses what could leave the API (issue 12):
// "." and ".." segments, in plain or percent-encoded form, backslashes, empty segments ("//",
// which some servers fold), absolute URLs, and control characters; a query or fragment
// belongs in query, not here.
func subPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	bad := func(why string) error {
		return apierror.Validation("path", "path %s: it must stay below the API's path", why)
	}
	decoded, err := url.PathUnescape(p)
	switch {
	case err != nil:
		return "", bad("is not a valid percent-encoded path")
	case len(p) > 2048:
		return "", bad("is longer than 2048 characters")
	case strings.ContainsAny(decoded, "\\?#"):
		return "", bad("holds a backslash, a query or a fragment")
	case strings.Contains(p, "://") || strings.Contains(decoded, "://"):
		return "", bad("is an absolute URL")
	}
	for _, r := range decoded {
		if r < 0x20 || r == 0x7f {
			return "", bad("holds a control character")
		}
	}
	trimmed := strings.TrimPrefix(decoded, "/")
	if trimmed == "" {
		return "", nil
	}
	// A trailing "/" is kept; any other empty segment is refused.
	for seg := range strings.SplitSeq(strings.TrimSuffix(trimmed, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", bad("has an empty, \".\" or \"..\" segment")
		}
	}
	return "/" + trimmed, nil
}

// redactQuery encodes q as url.Values.Encode does, with the values of the secret parameters
// replaced by ***.
func redactQuery(q url.Values, secret []string) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		hide := slices.ContainsFunc(secret, func(s string) bool { return strings.EqualFold(s, k) })
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k) + "=")
			if hide {
				b.WriteString("***")
			} else {
				b.WriteString(url.QueryEscape(v))
			}
		}
	}
	return b.String()
}

// fail tells the browser why the session cannot go on, and closes it: 1011 for a
// failure of management or the node, 1008 for a refused request. It logs err with attrs.
func (h *Handler) fail(ctx context.Context, browser *websocket.Conn, err error, attrs ...any) {
	ae, known := h.cfg.Explain(err)
	if known {
		h.cfg.Log.InfoContext(ctx, "test console refused", append(attrs, "code", ae.Code, "err", err)...)
	} else {
		h.cfg.Log.ErrorContext(ctx, "test console failed", append(attrs, "err", err)...)
	}
	msg := ae.Message
	if len(ae.Details) > 0 {
		msg = ae.Details[0].Message
	}
	code := websocket.ClosePolicyViolation
	if ae.Status() >= 500 {
		code = websocket.CloseInternalServerErr
	}
	_ = browser.SetWriteDeadline(time.Now().Add(writeWait))
	if browser.WriteJSON(failure{Type: "error", Message: msg, Code: ae.Code}) == nil {
		_ = browser.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
	}
}
