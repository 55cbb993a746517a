package traffic

import (
	"log/slog"
	"strings"

	"gatehouse.dev/gateway/internal/compiled"
)

// CloseRevoked is the WebSocket close code for sessions whose access was revoked (RFC 6455
// §7.4.1: policy violation).
const CloseRevoked = 1008

// Revoke closes the open sessions that cfg no longer allows — their subscription was deleted,
// suspended or cancelled, its key regenerated, or their API removed from this gateway or from
// the product they came through — with close code 1008 and a reason naming the cause. Other
// sessions are untouched. It returns how many it closed. Call it after installing cfg.
func (h *Handler) Revoke(cfg *compiled.Config) int { return h.conns.Revoke(cfg, h.opt.Log) }

// Revoke is Handler.Revoke on the sessions of g, logging each revocation to log.
func (g *Registry) Revoke(cfg *compiled.Config, log *slog.Logger) int {
	if cfg == nil {
		return 0
	}
	n := 0
	g.mu.Lock()
	type hit struct {
		c      conn
		reason string
	}
	var hits []hit
	for _, c := range g.conns {
		if reason := revocation(cfg, c.info); reason != "" {
			hits = append(hits, hit{c, reason})
		}
	}
	g.mu.Unlock()
	for _, x := range hits {
		x.c.sess.Close(CloseRevoked, x.reason)
		log.Info("websocket revoked", "api", x.c.info.API, "subscription", x.c.info.Subscription,
			"correlation_id", x.c.info.RequestID, "reason", x.reason)
		n++
	}
	return n
}

// revocation says why cfg no longer allows the session described by info, or "".
func revocation(cfg *compiled.Config, info ConnInfo) string {
	// By name, not path: versions share a path, and a session opened on revision n
	// ("chat;rev=n") keeps it when n becomes current.
	api := cfg.APIByName(info.API)
	if api == nil || api.Type != "websocket" {
		return "API removed from this gateway"
	}
	if !info.HasKey {
		switch {
		case info.Product != "" && (api.OpenProduct == nil || !strings.EqualFold(api.OpenProduct.Name, info.Product)):
			return "API removed from product " + info.Product
		case info.Product == "" && api.SubscriptionRequired:
			return "API now requires a subscription"
		}
		return ""
	}
	sub := cfg.Subscription(info.KeyHash)
	switch {
	case sub == nil:
		return "subscription key revoked"
	case !sub.Active():
		return "subscription " + sub.State()
	}
	ok, product := sub.Covers(api)
	if !ok {
		if info.Product != "" {
			return "API removed from product " + info.Product
		}
		return "subscription no longer covers this API"
	}
	if product != nil && !strings.EqualFold(product.Name, info.Product) {
		return "subscription now reaches this API through another product"
	}
	return ""
}
