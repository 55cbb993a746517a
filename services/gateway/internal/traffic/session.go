package traffic

import (
	"sync"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/pipeline"
)

// Close codes of the gateway's session controls (docs/policies.md).
const (
	CloseRateExceeded  = 1008 // a message rate of <websocket-limits> was exceeded
	CloseTokenExpired  = 1008 // the JWT that opened the session expired (close-on-token-expiry)
	CloseLifetimeEnded = 1001 // max-lifetime reached: the client should reconnect
)

// limiter is one message rate of a session: a lock-free bucket when only one relay goroutine
// uses it, a shared one otherwise.
type limiter struct {
	dir    pipeline.Direction
	single *pipeline.RateLimiter
	shared *pipeline.SharedRateLimiter
}

func (l *limiter) allow(now time.Time) bool {
	if l.single != nil {
		return l.single.Allow(now)
	}
	return l.shared.Allow(now)
}

// sessionControls turns the policies' session limits into the relay's limits and message
// hook, and says when the session must end (zero: never) and why.
func (h *Handler) sessionControls(pr *pipeline.Request, subscription string, opened time.Time) (wsproxy.Limits, wsproxy.Hooks, time.Time, uint16, string) {
	s := pr.Session.Resolve(pipeline.SessionLimits{MaxMessageBytes: h.opt.MaxMessageBytes, IdleTimeout: h.opt.IdleTimeout,
		PingInterval: h.opt.PingInterval})
	limits := wsproxy.Limits{MaxMessageBytes: s.MaxMessageBytes, IdleTimeout: s.IdleTimeout, PingInterval: s.PingInterval,
		ValidateUTF8: s.ValidateUTF8}
	var end time.Time
	var code uint16
	var reason string
	if s.MaxLifetime > 0 {
		end, code, reason = opened.Add(s.MaxLifetime), CloseLifetimeEnded, "maximum connection lifetime reached"
	}
	if s.CloseOnTokenExpiry && !pr.TokenExpiry.IsZero() && (end.IsZero() || pr.TokenExpiry.Before(end)) {
		end, code, reason = pr.TokenExpiry, CloseTokenExpired, "token expired"
	}
	if len(s.Rates) == 0 {
		return limits, wsproxy.Hooks{}, end, code, reason
	}
	limiters := make([]limiter, len(s.Rates))
	for i, r := range s.Rates {
		limiters[i].dir = r.Direction
		switch {
		case r.PerSubscription && subscription != "":
			limiters[i].shared = h.rates.get(subscription, r)
		case r.Direction == pipeline.DirectionBoth:
			limiters[i].shared = pipeline.NewSharedRateLimiter(r)
		default:
			limiters[i].single = pipeline.NewRateLimiter(r)
		}
	}
	hooks := wsproxy.Hooks{MessageStart: func(dir wsproxy.Direction) (uint16, string) {
		now := time.Now()
		fromClient := dir == wsproxy.FromClient
		for i := range limiters {
			if limiters[i].dir.Counts(fromClient) && !limiters[i].allow(now) {
				return CloseRateExceeded, "message rate exceeded"
			}
		}
		return 0, ""
	}}
	return limits, hooks, end, code, reason
}

// rateStore holds the per-subscription message-rate buckets of this node, outside any
// configuration so a configuration swap does not reset them.
type rateStore struct {
	mu sync.Mutex
	m  map[rateKey]*rateEntry
}

type rateKey struct {
	subscription string
	rate         pipeline.MessageRate
}

type rateEntry struct {
	l    *pipeline.SharedRateLimiter
	used time.Time
}

// maxRateEntries bounds the store; beyond it, buckets idle for rateIdle are dropped.
const (
	maxRateEntries = 100_000
	rateIdle       = 10 * time.Minute
)

func (s *rateStore) get(subscription string, r pipeline.MessageRate) *pipeline.SharedRateLimiter {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[rateKey]*rateEntry{}
	}
	k := rateKey{subscription, r}
	e := s.m[k]
	if e == nil {
		if len(s.m) >= maxRateEntries {
			for key, old := range s.m {
				if now.Sub(old.used) > rateIdle {
					delete(s.m, key)
				}
			}
		}
		e = &rateEntry{l: pipeline.NewSharedRateLimiter(r)}
		s.m[k] = e
	}
	e.used = now
	return e.l
}
