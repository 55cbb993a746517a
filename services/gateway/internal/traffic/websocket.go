package traffic

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/usage"
	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// Handshake reasons the gateway gives itself, beside APIM's and the policies' (the reason
// label of gatehouse_gateway_handshakes_total, docs/observability.md).
const (
	reasonInvalidUpgrade   = "InvalidUpgrade"
	reasonNoBackend        = "NoBackend"
	reasonBackendRefused   = "BackendRefused"
	reasonBackendFailure   = "BackendConnectionFailure"
	reasonBackendHandshake = "BackendHandshakeInvalid"
	reasonClientFailure    = "ClientConnectionFailure"
)

// serveWebSocket runs docs/design.md §3's handshake path: upgrade check, key, policies, backend dial,
// and only then the client's 101. It writes one log record for a rejected handshake, or one
// when the session opens and one when it closes; none holds a key, token, query string or
// header value.
func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request, cfg *compiled.Config, api *compiled.API, id string) {
	hs := &handshake{h: h, ctx: r.Context(), clientIP: h.clientIP(r), api: api.Name, id: id, start: time.Now()}
	ctx, span := h.opt.Tracer.Handshake(r.Context(), r.Header, api.Name, id)
	hs.span = span
	if !validUpgrade(r) {
		hs.reject(w, http.StatusBadRequest, reasonInvalidUpgrade, apierror.MsgInvalidUpgrade, nil)
		return
	}
	acc, status, msg := resolveKey(cfg, api, r)
	if status != 0 {
		hs.reject(w, status, keyReason(msg), msg, nil)
		return
	}
	if acc.sub != nil {
		hs.subscription = acc.sub.Name
	}
	if acc.product != nil {
		hs.product = acc.product.Name
	}
	op := api.Handshake()
	if op == nil {
		hs.reject(w, http.StatusNotFound, "OperationNotFound", apierror.MsgNotFound, nil)
		return
	}
	hs.operation = op.Name
	hs.diag = newDiagnosed(cfg.Diagnostics(api.APIName), api.KeyHeader)
	hs.diag.pick(r.Header, frontendRequest, func(d *compiled.Diagnostic) []string { return d.FrontendRequest })
	tracing.SetOperation(span, op.Name)
	pr := h.prepare(r, cfg, api, op, acc, id)
	if pr.User != nil {
		hs.user = pr.User.ID
	}
	policyStart := time.Now()
	policyCtx, policySpan := h.opt.Tracer.Start(ctx, tracing.SpanPolicy, trace.SpanKindInternal)
	resp := op.Pipeline(acc.product).Run(policyCtx, pr)
	policySpan.End()
	h.opt.Metrics.Policy(api.Name, time.Since(policyStart))
	if resp != nil {
		writePipelineResponse(w, resp)
		hs.rejected(resp.Status, policyReason(resp), nil)
		return
	}
	targets, nt := h.targets(cfg, pr)
	if nt != nil {
		writeNoTarget(w, nt)
		hs.rejected(nt.status, nt.reason, nil)
		return
	}
	release, ok := h.acquireConnections(r.Context(), pr.Connections)
	if !ok {
		hs.reject(w, http.StatusTooManyRequests, reasonConnLimit, msgConnectionLimit, nil)
		return
	}
	// From here the connection places are released when the handshake fails or, once it
	// succeeded, when the session ends.
	opened := false
	defer func() {
		if !opened {
			release()
		}
	}()
	proto := "ws"
	if r.TLS != nil {
		proto = "wss"
	}
	h.setForwarded(pr.Header, r, proto)
	// Only permessage-deflate is ever offered, and only where the API allows it: the relay
	// checks RSV bits against it, and with compression on, size caps count compressed bytes
	// and compressed text cannot be checked for UTF-8 (docs/performance.md).
	wsproxy.FilterExtensionOffer(pr.Header, pr.Session.AllowCompression && !pr.Session.ValidateUTF8)
	be, refused, err := h.dialTargets(ctx, hs, r, pr, targets)
	switch {
	case errors.Is(err, errExtensionAnswer):
		hs.reject(w, http.StatusBadGateway, reasonBackendHandshake, apierror.MsgBackendUnavailable, err)
		return
	case err != nil:
		status := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusGatewayTimeout
		}
		hs.reject(w, status, reasonBackendFailure, apierror.MsgBackendUnavailable, err)
		return
	case refused != nil:
		copyHeaders(w.Header(), refused.Header)
		w.WriteHeader(refused.Status)
		_, _ = w.Write(refused.Body)
		hs.rejected(refused.Status, reasonBackendRefused, nil)
		return
	}
	copyHeaders(w.Header(), pr.ResponseHeader)
	hs.diag.pick(pr.Header, backendRequest, func(d *compiled.Diagnostic) []string { return d.BackendRequest })
	hs.diag.pick(be.Response.Header, backendResponse, func(d *compiled.Diagnostic) []string { return d.BackendResponse })
	hs.diag.pick(w.Header(), frontendResponse, func(d *compiled.Diagnostic) []string { return d.FrontendResponse })
	openedAt := time.Now()
	limits, hooks, end, endCode, endReason := h.sessionControls(pr, hs.subscription, openedAt)
	conn, br, err := wsproxy.Upgrade(w, r, be)
	if err != nil {
		if errors.Is(err, wsproxy.ErrBadHandshake) { // nothing was written to the client yet
			hs.reject(w, http.StatusBadGateway, reasonBackendHandshake, apierror.MsgBackendUnavailable, err)
		} else {
			hs.rejected(0, reasonClientFailure, err)
		}
		return
	}
	hs.subprotocol = be.Response.Header.Get("Sec-WebSocket-Protocol")

	// cause is why the gateway closed the session when it did so for a reason of its own
	// that the close code does not tell (a message rate, the lifetime or token expiry).
	var cause atomic.Pointer[metrics.CloseReason]
	if start := hooks.MessageStart; start != nil {
		limit := metrics.ReasonLimit
		hooks.MessageStart = func(dir wsproxy.Direction) (uint16, string) {
			code, reason := start(dir)
			if code != 0 {
				cause.CompareAndSwap(nil, &limit)
			}
			return code, reason
		}
	}
	sess := h.opt.Engine.NewSession(conn, br, be, limits, hooks)
	var expiry *time.Timer
	if !end.IsZero() {
		expired := metrics.ReasonExpired
		expiry = time.AfterFunc(time.Until(end), func() {
			cause.CompareAndSwap(nil, &expired)
			sess.Close(endCode, endReason)
		})
	}
	info := ConnInfo{API: api.Name, RequestID: pr.RequestID, Subscription: hs.subscription, Product: hs.product,
		ClientIP: hs.clientIP}
	if acc.sub != nil {
		info.KeyHash, info.HasKey = sha256.Sum256([]byte(acc.key)), true
	}
	for _, l := range pr.Connections {
		info.Counters = append(info.Counters, l.Counter)
	}
	slot := h.conns.add(sess, info, &cause)
	// A configuration installed between the key check and the registration above was not
	// applied to this session by Revoke: check it against the newest one now.
	if reason := revocation(h.cfg.Load(), info); reason != "" {
		sess.Close(CloseRevoked, reason)
	}
	counted := h.opt.Metrics.Open(api.Name, func() metrics.Traffic { return trafficOf(sess.Stats()) })
	used := h.opt.Usage.Open(api.Name, hs.subscription, func() usage.Traffic { return usage.Traffic(trafficOf(sess.Stats())) })
	h.opt.Metrics.Handshake(api.Name, http.StatusSwitchingProtocols, "", time.Since(hs.start))
	tracing.End(span, http.StatusSwitchingProtocols, "")
	if h.opt.Log.Enabled(hs.ctx, slog.LevelInfo) { // spares building the record at LOG_LEVEL=warn
		h.opt.Log.LogAttrs(hs.ctx, slog.LevelInfo, "websocket opened",
			hs.attrs(slog.Float64("handshake_ms", ms(time.Since(hs.start))))...)
	}

	// The session outlives the handler on purpose: the handler returns now, which lets
	// net/http drop its goroutine and buffers, and the session ends when either side closes
	// or the gateway closes it through the registry. Nothing below holds the request.
	opened = true
	if h.opt.Context != nil {
		hs.ctx = h.opt.Context
	}
	hs.ctx = context.WithoutCancel(hs.ctx)
	sess.Start(hs.ctx, func(stats wsproxy.Stats) {
		if expiry != nil {
			expiry.Stop()
		}
		h.conns.remove(slot)
		release()
		reason := closeReason(stats, cause.Load())
		counted.End(reason)
		used.End()
		detail := ""
		if stats.ClosedBy == wsproxy.ByGateway || stats.CloseCode == frame.CloseAbnormal {
			detail = stats.Reason // the gateway's own words; a peer's close reason is not logged
		}
		rec := hs.closeRecord(openedAt, stats, reason, detail)
		ip := rec.ClientIP
		if !hs.diag.clientIP() {
			rec.ClientIP = ""
		}
		h.opt.ConnectionLog.Add(rec)
		hs.diag.export(h.opt.LogExport, rec, ip)
		if !h.opt.Log.Enabled(hs.ctx, slog.LevelInfo) {
			return
		}
		h.opt.Log.LogAttrs(hs.ctx, slog.LevelInfo, "websocket closed", hs.attrs(
			slog.Float64("duration_ms", ms(time.Since(openedAt))),
			slog.Int64("messages_in", stats.MessagesIn), slog.Int64("messages_out", stats.MessagesOut),
			slog.Int64("bytes_in", stats.BytesIn), slog.Int64("bytes_out", stats.BytesOut),
			slog.Int("close_code", int(stats.CloseCode)), slog.String("closed_by", stats.ClosedBy),
			slog.String("reason", string(reason)), slog.String("detail", detail))...)
	})
}

// growStack grows the calling goroutine's stack at once to what a handshake needs: its 8 KiB
// frame makes the runtime double a fresh stack to 16 KiB, from a pool. net/http starts each
// connection's goroutine with a small stack, which the handshake (policies, the backend's
// net.Dial, reading its response) outgrew twice, each time copying a stack that was deep by
// then (7% of a handshake's CPU); growing it before, while the stack is shallow, costs half.
//
//go:noinline
func growStack() byte {
	var pad [8 << 10]byte
	return pad[growStackIndex] // read, so that the compiler keeps pad
}

var growStackIndex int

// handshake is what the log records of one WebSocket handshake say about it. Fields are
// filled in as the handshake learns them; unknown ones are logged empty.
type handshake struct {
	h        *Handler
	ctx      context.Context // the request's, for the log records
	clientIP netip.Addr
	api      string
	id       string
	start    time.Time
	span     trace.Span // ended with the handshake, before the session runs
	// diag applies the API's diagnostics to the session's records; nil when it has none.
	diag *diagnosed

	operation, product, subscription, user, backend, subprotocol string
}

// attrs are the fields every record of the handshake carries, then extra.
func (hs *handshake) attrs(extra ...slog.Attr) []slog.Attr {
	ip := ""
	if hs.clientIP.IsValid() {
		ip = hs.clientIP.String()
	}
	a := make([]slog.Attr, 0, 10+len(extra))
	a = append(a, slog.String("correlation_id", hs.id), slog.String("node", hs.h.opt.Node),
		slog.String("api", hs.api), slog.String("operation", hs.operation), slog.String("product", hs.product),
		slog.String("subscription", hs.subscription), slog.String("user", hs.user), slog.String("client_ip", ip),
		slog.String("backend", hs.backend), slog.String("subprotocol", hs.subprotocol))
	return append(a, extra...)
}

// closeRecord is the connection log record of the session the handshake opened at
// openedAt, which ended with stats for reason; detail is the gateway's own words.
func (hs *handshake) closeRecord(openedAt time.Time, stats wsproxy.Stats, reason metrics.CloseReason, detail string) configwire.ConnectionLogRecord {
	ip := ""
	if hs.clientIP.IsValid() {
		ip = hs.clientIP.String()
	}
	return configwire.ConnectionLogRecord{CorrelationID: hs.id, API: hs.api, Operation: hs.operation, Product: hs.product,
		Subscription: hs.subscription, User: hs.user, ClientIP: ip, Opened: openedAt.UTC(), Closed: time.Now().UTC(),
		MessagesIn: stats.MessagesIn, MessagesOut: stats.MessagesOut, BytesIn: stats.BytesIn, BytesOut: stats.BytesOut,
		CloseCode: int(stats.CloseCode), ClosedBy: stats.ClosedBy, Reason: string(reason), Detail: detail}
}

// reject answers the client with APIM's error body and records the rejection.
func (hs *handshake) reject(w http.ResponseWriter, status int, reason, msg string, err error) {
	WriteError(w, status, msg)
	hs.rejected(status, reason, err)
}

// rejected records a handshake answered with status (0: no answer reached the client) for
// reason: a metric and a "handshake rejected" record, at warning level for the gateway's
// and backends' failures.
func (hs *handshake) rejected(status int, reason string, err error) {
	took := time.Since(hs.start)
	hs.h.opt.Metrics.Handshake(hs.api, status, reason, took)
	hs.h.opt.Usage.Handshake(hs.api, hs.subscription, status, reason)
	tracing.End(hs.span, status, reason)
	level := slog.LevelInfo
	if status >= 500 || status == 0 {
		level = slog.LevelWarn
	}
	extra := []slog.Attr{slog.Int("status", status), slog.String("reason", reason), slog.Float64("duration_ms", ms(took))}
	if err != nil {
		extra = append(extra, slog.String("err", err.Error()))
	}
	hs.h.opt.Log.LogAttrs(hs.ctx, level, "handshake rejected", hs.attrs(extra...)...)
}

// keyReason is APIM's context.LastError.Reason for resolveKey's refusal message.
func keyReason(msg string) string {
	if msg == apierror.MsgMissingKey {
		return "SubscriptionKeyNotFound"
	}
	return "SubscriptionKeyInvalid"
}

// policyReason names a policy's refusal: its context.LastError.Reason, else the policy that
// answered (return-response, say). Both come from fixed sets, never from the request.
func policyReason(resp *pipeline.Response) string {
	switch {
	case resp.Reason != "":
		return resp.Reason
	case resp.Source != "":
		return resp.Source
	}
	return "Policy"
}

// closeReason classifies how a session ended. cause, if set, is why the gateway closed it
// when the close code does not say; it counts only if the gateway closed first.
func closeReason(st wsproxy.Stats, cause *metrics.CloseReason) metrics.CloseReason {
	switch st.ClosedBy {
	case wsproxy.ByBackend:
		return metrics.ReasonBackend
	case wsproxy.ByClient:
		if st.CloseCode == frame.CloseAbnormal { // gone without a close frame, or a ping unanswered
			return metrics.ReasonError
		}
		return metrics.ReasonNormal
	}
	if cause != nil {
		return *cause
	}
	switch {
	case st.CloseCode == frame.CloseMessageTooBig:
		return metrics.ReasonLimit
	case st.CloseCode == CloseRevoked:
		return metrics.ReasonRevoked
	case st.CloseCode == frame.CloseGoingAway && st.Reason == "idle timeout": // wsproxy's words
		return metrics.ReasonIdle
	case st.CloseCode == frame.CloseGoingAway:
		return metrics.ReasonDrain // Registry.Drain, the only other gateway close with 1001
	}
	return metrics.ReasonError
}

func trafficOf(st wsproxy.Stats) metrics.Traffic {
	return metrics.Traffic{MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut, BytesIn: st.BytesIn, BytesOut: st.BytesOut}
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// errExtensionAnswer is a backend that accepted an extension it was not offered.
var errExtensionAnswer = errors.New("the backend's extension answer does not match the offer")

// dialTargets dials the targets in turn until one upgrades. A dial, TLS or handshake failure,
// or a refusal with a 5xx status, moves on to the next target (connect-time failover,
// docs/backends.md), skipping a target whose breaker opened meanwhile; the last outcome is
// returned. Each outcome counts in the target's circuit
// breaker.
func (h *Handler) dialTargets(ctx context.Context, hs *handshake, r *http.Request, pr *pipeline.Request, targets []target) (be *wsproxy.Backend, refused *wsproxy.Refused, err error) {
	for i, t := range targets {
		if i > 0 && !t.allowed() { // its breaker opened while the ones before were tried
			continue
		}
		hdr, q := t.request(pr)
		u := backendURL(t.url, "", q)
		hs.backend = u.Scheme + "://" + u.Host // never the query: it may carry a token
		dialStart := time.Now()
		dialCtx, dialSpan := h.opt.Tracer.Start(ctx, tracing.SpanBackendDial, trace.SpanKindClient)
		h.opt.Tracer.Inject(dialCtx, hdr)
		be, refused, err = wsproxy.Dial(dialCtx, wsproxy.DialRequest{URL: u, Header: hdr,
			Key: r.Header.Get("Sec-WebSocket-Key"), TLS: h.tls.For(t).conf, Timeout: h.opt.ConnectTimeout, Dial: h.opt.Dial,
			Engine: h.opt.Engine, Allow: h.opt.DialAllow})
		if err == nil && refused == nil {
			if xerr := wsproxy.CheckExtensionAnswer(hdr, be.Response.Header); xerr != nil {
				be.Close()
				be, err = nil, fmt.Errorf("%w: %w", errExtensionAnswer, xerr)
			}
		}
		took := time.Since(dialStart)
		switch {
		case err != nil:
			tracing.End(dialSpan, 0, reasonBackendFailure)
			h.opt.Metrics.BackendDial(hs.api, metrics.DialFailed, took)
			t.record(0, "")
		case refused != nil:
			tracing.End(dialSpan, refused.Status, reasonBackendRefused)
			h.opt.Metrics.BackendDial(hs.api, metrics.DialRefused, took)
			t.record(refused.Status, refused.Header.Get("Retry-After"))
		default:
			tracing.End(dialSpan, be.Response.StatusCode, "")
			h.opt.Metrics.BackendDial(hs.api, metrics.DialUpgraded, took)
			t.record(be.Response.StatusCode, "")
			return be, nil, nil
		}
		if refused != nil && refused.Status < 500 || i == len(targets)-1 {
			return be, refused, err
		}
		h.opt.Log.LogAttrs(hs.ctx, slog.LevelWarn, "backend failed at connect; trying the next member of the pool",
			slog.String("backend", hs.backend), slog.String("request_id", hs.id))
	}
	return be, refused, err
}
