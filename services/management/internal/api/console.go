package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// Bounds of the test console relay.
const (
	// consoleDialTimeout bounds the connection to the gateway node and its handshake.
	consoleDialTimeout = 10 * time.Second
	// consoleOpenTimeout is how long the browser has to send its opening message.
	consoleOpenTimeout = 30 * time.Second
	// maxConsoleBody is the most of a refused handshake's body the browser is shown.
	maxConsoleBody = 64 << 10
	// maxConsoleMessage bounds a message either way (base64 included).
	maxConsoleMessage = 1 << 20
	consoleWriteWait  = 10 * time.Second
)

// secretQueryParams are the query parameters whose values the console never echoes: keys and
// tokens, compared case-insensitively. The API's own subscription-key parameter joins them.
var secretQueryParams = []string{"subscription-key", "access_token", "sig", "token", "key", "code"}

// consoleUpgrader accepts browsers of the portal's own origin only (gorilla's default check).
var consoleUpgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

// consoleOpen is the browser's opening message.
type consoleOpen struct {
	Authorization string            `json:"authorization"`
	Service       string            `json:"service"`
	API           string            `json:"api"`
	Node          string            `json:"node"`
	Query         map[string]string `json:"query"`
	Path          string            `json:"path"`
}

// Messages to the browser.
type (
	consoleHandshake struct {
		Type    string            `json:"type"` // "handshake"
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
		URL     string            `json:"url"`
		MS      int64             `json:"ms"`
	}
	consoleMessage struct {
		Type   string `json:"type"` // "message"
		Data   string `json:"data"`
		Binary bool   `json:"binary"`
		Time   string `json:"time"`
	}
	consoleClose struct {
		Type   string `json:"type"` // "close"
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	consoleError struct {
		Type    string        `json:"type"` // "error"
		Message string        `json:"message"`
		Code    apierror.Code `json:"code"`
	}
)

// consoleFrame is a browser message after the handshake.
type consoleFrame struct {
	Type   string `json:"type"`
	Data   string `json:"data"`
	Binary bool   `json:"binary"`
}

// consoleTarget is where a console session connects, and who asked.
type consoleTarget struct {
	caller  caller
	service string // ARM id
	api     string
	node    string
	url     string
	// redacted is url with the values of secret query parameters replaced by ***.
	redacted string
}

// console serves the test console (issue 6): a WebSocket on which the browser names an API, a
// gateway node and query parameters, and management connects to the node in its stead,
// reports the handshake (status, headers and body, which a browser cannot read itself), then
// relays messages both ways. It connects only to live nodes of the caller's service that
// advertise a URL, and never echoes or logs keys and tokens.
func (s *Server) console(c echo.Context) error {
	if !websocket.IsWebSocketUpgrade(c.Request()) {
		return &apierror.Error{Code: apierror.InvalidRequestContent,
			Message: "The test console speaks WebSocket: open it with a WebSocket upgrade request."}
	}
	browser, err := consoleUpgrader.Upgrade(c.Response(), c.Request(), nil)
	if err != nil {
		return nil // Upgrade has answered (a bad handshake or another origin)
	}
	c.Response().Status = http.StatusSwitchingProtocols
	defer browser.Close()
	browser.SetReadLimit(maxConsoleMessage)
	ctx := c.Request().Context()

	target, err := s.consoleTarget(ctx, browser)
	if err != nil {
		s.consoleFail(ctx, browser, err)
		return nil
	}
	start := time.Now()
	upstream, hs, err := dialConsole(ctx, target.url)
	if err != nil {
		s.consoleFail(ctx, browser, apierror.New(apierror.ServiceUnavailable, "Could not connect to the gateway node: %v", err),
			"subject", target.caller.Subject, "service", target.service, "api", target.api, "node_id", target.node, "url", target.redacted)
		return nil
	}
	hs.URL, hs.MS = target.redacted, time.Since(start).Milliseconds()
	r := &consoleRelay{browser: browser, upstream: upstream}
	if err := r.send(hs); err != nil || upstream == nil {
		s.log.InfoContext(ctx, "test console", "subject", target.caller.Subject, "service", target.service, "api", target.api,
			"node_id", target.node, "url", target.redacted, "status", hs.Status)
		r.closeBrowser(websocket.CloseNormalClosure, "")
		if upstream != nil {
			_ = upstream.Close()
		}
		return nil
	}
	r.run()
	s.log.InfoContext(ctx, "test console", "subject", target.caller.Subject, "service", target.service, "api", target.api,
		"node_id", target.node, "url", target.redacted, "status", hs.Status, "duration_ms", time.Since(start).Milliseconds(),
		"messages_sent", r.sent, "messages_received", r.received)
	return nil
}

// consoleTarget reads the opening message and decides where it may connect.
func (s *Server) consoleTarget(ctx context.Context, browser *websocket.Conn) (consoleTarget, error) {
	_ = browser.SetReadDeadline(time.Now().Add(consoleOpenTimeout))
	mt, raw, err := browser.ReadMessage()
	if err != nil {
		return consoleTarget{}, &apierror.Error{Code: apierror.InvalidRequestContent, Message: "No opening message arrived."}
	}
	_ = browser.SetReadDeadline(time.Time{})
	var open consoleOpen
	if mt != websocket.TextMessage || json.Unmarshal(raw, &open) != nil {
		return consoleTarget{}, &apierror.Error{Code: apierror.InvalidRequestContent,
			Message: "The opening message must be a JSON object: {authorization, service, api, node, query, path}."}
	}
	cl, err := s.identify(ctx, open.Authorization)
	if err != nil {
		return consoleTarget{}, err
	}
	ref, ok := catalog.ParseServiceID(open.Service)
	if !ok {
		return consoleTarget{}, apierror.Validation("service",
			"service must be a service's ARM id: /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.ApiManagement/service/{name}")
	}
	svc, err := s.serviceFor(ctx, cl, ref)
	if err != nil {
		return consoleTarget{}, err
	}
	api, err := s.consoleAPI(ctx, cl, svc.Ref, open.API)
	if err != nil {
		return consoleTarget{}, err
	}
	nodes := s.consoleNodesOf(svc.ID)
	i := slices.IndexFunc(nodes, func(n consoleNode) bool { return n.NodeID == open.Node })
	if i < 0 || open.Node == "" {
		return consoleTarget{}, apierror.New(apierror.ResourceNotFound,
			"The gateway node is not a live node of this service that reports a URL; pick one from consolenodes.")
	}
	node := nodes[i]
	var p catalog.APIProperties
	_ = json.Unmarshal(api.Properties, &p)
	u, err := url.Parse(node.URL) // checked by configwire.ValidNodeURL when the heartbeat arrived
	if err != nil {
		return consoleTarget{}, err
	}
	if open.Path != "" {
		u = u.JoinPath(p.Path, open.Path)
	} else {
		u = u.JoinPath(p.Path)
	}
	secret := secretQueryParams
	if p.SubscriptionKeyParameterNames != nil && p.SubscriptionKeyParameterNames.Query != "" {
		secret = append(slices.Clip(secret), p.SubscriptionKeyParameterNames.Query)
	}
	q := make(url.Values, len(open.Query))
	for k, v := range open.Query {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	redacted := *u
	redacted.RawQuery = redactQuery(q, secret)
	return consoleTarget{caller: cl, service: catalog.ServiceID(svc.Ref), api: api.Name, node: node.NodeID,
		url: u.String(), redacted: redacted.String()}, nil
}

// consoleAPI returns the API name of the service if cl may test it: any API for an
// administrator or a tenant, one of its own APIs (APIsOfUser) for a consumer.
func (s *Server) consoleAPI(ctx context.Context, cl caller, ref catalog.ServiceRef, name string) (catalog.Resource, error) {
	if cl.consumer == nil {
		return s.cat.Get(ctx, ref, catalog.KindAPI, "", name)
	}
	apis, err := s.cat.APIsOfUser(ctx, ref, cl.User)
	if err != nil {
		return catalog.Resource{}, err
	}
	for _, a := range apis {
		if strings.EqualFold(a.Name, name) {
			return a, nil
		}
	}
	return catalog.Resource{}, apierror.NotFound(catalog.KindAPI.What)
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

// consoleFail tells the browser why the session cannot go on, and closes it: 1011 for a
// failure of management or the node, 1008 for a refused request. It logs err with attrs.
func (s *Server) consoleFail(ctx context.Context, browser *websocket.Conn, err error, attrs ...any) {
	ae, known := toAPIError(err)
	if known {
		s.log.InfoContext(ctx, "test console refused", append(attrs, "code", ae.Code, "err", err)...)
	} else {
		s.log.ErrorContext(ctx, "test console failed", append(attrs, "err", err)...)
	}
	msg := ae.Message
	if len(ae.Details) > 0 {
		msg = ae.Details[0].Message
	}
	code := websocket.ClosePolicyViolation
	if ae.Status() >= 500 {
		code = websocket.CloseInternalServerErr
	}
	_ = browser.SetWriteDeadline(time.Now().Add(consoleWriteWait))
	if browser.WriteJSON(consoleError{Type: "error", Message: msg, Code: ae.Code}) == nil {
		_ = browser.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
	}
}

// dialConsole connects to a gateway node. A refused handshake is no error: it returns a nil
// connection and the response, its body read in full up to maxConsoleBody.
func dialConsole(ctx context.Context, rawURL string) (*websocket.Conn, consoleHandshake, error) {
	rec := &recordingDial{}
	d := websocket.Dialer{HandshakeTimeout: consoleDialTimeout, NetDialContext: rec.dial, NetDialTLSContext: rec.dialTLS}
	conn, resp, err := d.DialContext(ctx, rawURL, nil)
	if rec.conn != nil {
		rec.conn.recording = false
	}
	if err == nil {
		rec.conn.rec = bytes.Buffer{}
		return conn, consoleHandshake{Type: "handshake", Status: resp.StatusCode, Headers: flatHeaders(resp.Header)}, nil
	}
	if rec.conn != nil {
		defer rec.conn.Conn.Close()
	}
	switch {
	case !errors.Is(err, websocket.ErrBadHandshake) || resp == nil:
		return nil, consoleHandshake{}, consoleDialError(err)
	case resp.StatusCode == http.StatusSwitchingProtocols:
		return nil, consoleHandshake{}, errors.New("the node answered 101 without a valid WebSocket handshake")
	}
	if rec.conn != nil {
		if full, ok := rec.conn.response(); ok {
			resp = full
		}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxConsoleBody))
	return nil, consoleHandshake{Type: "handshake", Status: resp.StatusCode, Headers: flatHeaders(resp.Header), Body: string(body)}, nil
}

// consoleDialError describes a failed connection without detail a caller need not see.
func consoleDialError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer within %v", consoleDialTimeout)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	return err
}

func flatHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		out[k] = strings.Join(vs, ", ")
	}
	return out
}

// recordingDial dials for a websocket.Dialer and keeps the connection it made, so that a
// refused handshake's response can be read in full: gorilla's client keeps 1 KiB of its body.
// The TLS dial is its own so that the recording holds plaintext.
type recordingDial struct {
	conn *recordingConn
}

func (r *recordingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	r.conn = &recordingConn{Conn: c, recording: true}
	return r.conn, nil
}

func (r *recordingDial) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(c, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	r.conn = &recordingConn{Conn: tc, recording: true}
	return r.conn, nil
}

// recordingConn records what the handshake reads and ignores Close while recording: the client
// closes the connection of a refused handshake before its body is read. The dialer's caller
// stops the recording once the dial returns, before the connection is shared.
type recordingConn struct {
	net.Conn
	recording bool
	rec       bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.recording && c.rec.Len() < 2*maxConsoleBody {
		c.rec.Write(p[:n])
	}
	return n, err
}

func (c *recordingConn) Close() error {
	if c.recording {
		return nil
	}
	return c.Conn.Close()
}

// response parses the recorded response of a refused handshake, its body read on from the
// connection.
func (c *recordingConn) response() (*http.Response, bool) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(&c.rec, c.Conn)), nil)
	return resp, err == nil
}

// consoleRelay relays messages between the browser and the gateway node after the handshake.
// The browser has two writers (the relay of node messages, and answers to browser frames), so
// its writes are serialized; the node's connection has one writer, the browser reader.
type consoleRelay struct {
	browser, upstream *websocket.Conn
	mu                sync.Mutex // serializes writes to browser
	sent, received    int        // messages to and from the node
}

func (r *consoleRelay) send(v any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.browser.SetWriteDeadline(time.Now().Add(consoleWriteWait))
	return r.browser.WriteJSON(v)
}

func (r *consoleRelay) closeBrowser(code int, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.browser.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	_ = r.browser.Close()
}

// run relays until either side ends, then closes both.
func (r *consoleRelay) run() {
	r.upstream.SetReadLimit(maxConsoleMessage)
	done := make(chan struct{})
	go func() { defer close(done); r.fromNode() }()
	r.fromBrowser()
	_ = r.upstream.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(time.Second))
	_ = r.upstream.Close()
	<-done
}

// fromNode relays the node's messages to the browser, then reports how the node closed and
// closes the browser's socket, which ends fromBrowser.
func (r *consoleRelay) fromNode() {
	for {
		mt, data, err := r.upstream.ReadMessage()
		if err != nil {
			ev := consoleClose{Type: "close", Code: websocket.CloseAbnormalClosure, Reason: "the connection to the gateway node was lost"}
			var ce *websocket.CloseError
			switch {
			case errors.As(err, &ce):
				ev.Code, ev.Reason = ce.Code, ce.Text
			case errors.Is(err, websocket.ErrReadLimit):
				ev.Code, ev.Reason = websocket.CloseMessageTooBig, fmt.Sprintf("a message was larger than %d bytes", maxConsoleMessage)
			}
			_ = r.send(ev)
			r.closeBrowser(websocket.CloseNormalClosure, "")
			return
		}
		r.mu.Lock()
		r.received++
		r.mu.Unlock()
		ev := consoleMessage{Type: "message", Data: string(data), Binary: mt == websocket.BinaryMessage, Time: time.Now().UTC().Format(time.RFC3339Nano)}
		if ev.Binary {
			ev.Data = base64.StdEncoding.EncodeToString(data)
		}
		if r.send(ev) != nil {
			return
		}
	}
}

// fromBrowser handles the browser's frames until its socket ends.
func (r *consoleRelay) fromBrowser() {
	for {
		mt, raw, err := r.browser.ReadMessage()
		if err != nil {
			return
		}
		var f consoleFrame
		if mt != websocket.TextMessage || json.Unmarshal(raw, &f) != nil {
			_ = r.send(consoleError{Type: "error", Code: apierror.InvalidRequestContent, Message: `A frame must be JSON: {"type":"send","data":...} or {"type":"close"}.`})
			continue
		}
		switch f.Type {
		case "send":
			data, kind := []byte(f.Data), websocket.TextMessage
			if f.Binary {
				if data, err = base64.StdEncoding.DecodeString(f.Data); err != nil {
					_ = r.send(consoleError{Type: "error", Code: apierror.InvalidRequestContent, Message: "The data of a binary frame must be base64."})
					continue
				}
				kind = websocket.BinaryMessage
			}
			_ = r.upstream.SetWriteDeadline(time.Now().Add(consoleWriteWait))
			if r.upstream.WriteMessage(kind, data) != nil {
				continue // fromNode sees the connection end and reports it
			}
			r.mu.Lock()
			r.sent++
			r.mu.Unlock()
		case "close":
			_ = r.upstream.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			// The node answers with its close frame, which fromNode reports; do not wait for ever.
			_ = r.upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
		default:
			_ = r.send(consoleError{Type: "error", Code: apierror.InvalidRequestContent, Message: `A frame's type must be "send" or "close".`})
		}
	}
}
