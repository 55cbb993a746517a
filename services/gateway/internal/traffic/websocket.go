package traffic

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"time"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/apierror"
)

// serveWebSocket runs DESIGN §3's handshake path: upgrade check, key, policies, backend dial,
// and only then the client's 101.
func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request, cfg *compiled.Config, api *compiled.API) {
	if !validUpgrade(r) {
		WriteError(w, http.StatusBadRequest, apierror.MsgInvalidUpgrade)
		return
	}
	acc, status, msg := resolveKey(cfg, api, r)
	if status != 0 {
		WriteError(w, status, msg)
		return
	}
	op := api.Handshake()
	if op == nil {
		WriteError(w, http.StatusNotFound, apierror.MsgNotFound)
		return
	}
	pr := h.prepare(r, cfg, api, op, acc)
	if resp := op.Pipeline(acc.product).Run(r.Context(), pr); resp != nil {
		writePipelineResponse(w, resp)
		return
	}
	if pr.Backend == nil {
		WriteError(w, http.StatusInternalServerError, "The API has no backend service URL")
		return
	}
	proto := "ws"
	if r.TLS != nil {
		proto = "wss"
	}
	setForwarded(pr.Header, r, proto)
	target := backendURL(pr.Backend, "", pr.Query)
	be, refused, err := wsproxy.Dial(r.Context(), wsproxy.DialRequest{URL: target, Header: pr.Header,
		Key: r.Header.Get("Sec-WebSocket-Key"), TLS: h.opt.BackendTLS, Timeout: h.opt.ConnectTimeout})
	switch {
	case err != nil:
		h.opt.Log.WarnContext(r.Context(), "backend dial failed", "api", api.Name, "backend_host", target.Host, "err", err)
		status := http.StatusBadGateway
		if errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusGatewayTimeout
		}
		WriteError(w, status, apierror.MsgBackendUnavailable)
		return
	case refused != nil:
		copyHeaders(w.Header(), refused.Header)
		w.WriteHeader(refused.Status)
		_, _ = w.Write(refused.Body)
		return
	}
	copyHeaders(w.Header(), pr.ResponseHeader)
	subName := ""
	if acc.sub != nil {
		subName = acc.sub.Name
	}
	opened := time.Now()
	limits, hooks, end, endCode, endReason := h.sessionControls(pr, subName, opened)
	conn, br, err := wsproxy.Upgrade(w, r, be)
	if err != nil {
		h.opt.Log.WarnContext(r.Context(), "client upgrade failed", "api", api.Name, "err", err)
		return
	}
	sess := wsproxy.NewSession(conn, br, be, limits, hooks)
	if !end.IsZero() {
		t := time.AfterFunc(time.Until(end), func() { sess.Close(endCode, endReason) })
		defer t.Stop()
	}
	info := ConnInfo{API: api.Name, APIPath: api.Path, RequestID: pr.RequestID}
	if acc.sub != nil {
		info.Subscription, info.KeyHash, info.HasKey = acc.sub.Name, sha256.Sum256([]byte(acc.key)), true
	}
	if acc.product != nil {
		info.Product = acc.product.Name
	}
	id := h.conns.add(sess, info)
	defer h.conns.remove(id)
	// The session outlives the handler's request context on purpose: it ends when either side
	// closes or the gateway closes it through the registry.
	stats := sess.Run(context.WithoutCancel(r.Context()))
	h.opt.Log.InfoContext(r.Context(), "websocket closed", "api", api.Name, "subscription", info.Subscription,
		"request_id", pr.RequestID, "messages_in", stats.MessagesIn, "messages_out", stats.MessagesOut,
		"close_code", stats.CloseCode, "closed_by", stats.ClosedBy)
}
