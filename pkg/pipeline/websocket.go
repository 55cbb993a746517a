package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gatehouse.dev/pkg/policy"
)

// SessionLimits are the per-connection controls of a WebSocket session, composed from the
// <websocket-limits> policies that the operation's inbound section reaches (docs/policies.md).
// Run copies them into Request.Session; the gateway applies them to the relay after the
// handshake. A REST request ignores them.
//
// In the numeric fields, zero means no policy set the value, so the gateway uses its own
// default, and NoLimit (negative) means a policy set it to 0: no limit at all, not even the
// gateway's default. Resolve turns both into the relay's terms.
type SessionLimits struct {
	// MaxMessageBytes caps one data message, either direction; a larger one closes the
	// session with 1009.
	MaxMessageBytes int64
	// IdleTimeout closes a session in which no frame has travelled for this long.
	IdleTimeout time.Duration
	// PingInterval is how often the gateway pings both sides.
	PingInterval time.Duration
	// MaxLifetime closes a session this long after it opened.
	MaxLifetime time.Duration
	// CloseOnTokenExpiry closes the session when Request.TokenExpiry passes. False when no
	// policy set close-on-token-expiry="true" or the narrowest one set "false".
	CloseOnTokenExpiry bool
	// ValidateUTF8 checks that text messages are UTF-8 (1007 when not); false when no
	// policy set validate-utf8="true" or the narrowest one set "false".
	ValidateUTF8 bool
	// AllowCompression lets permessage-deflate be negotiated end to end; false when no
	// policy set allow-compression="true" or the narrowest one set "false". The gateway
	// never negotiates it together with ValidateUTF8, since compressed text cannot be
	// checked without inflating it.
	AllowCompression bool
	// Rates are the message rates, every one of which a message must pass, broadest scope
	// first and in document order within a scope. The slice is shared by every Run of a
	// Pipeline: do not modify it.
	Rates []MessageRate
}

// NoLimit in a SessionLimits field means that a policy turned the limit off (the XML's 0).
const NoLimit = -1

// Resolve returns l with every numeric field that no policy set (zero) taken from defaults,
// and every field a policy turned off (negative, NoLimit) set to zero, which is "no limit" in
// wsproxy.Limits. CloseOnTokenExpiry and Rates are l's.
func (l SessionLimits) Resolve(defaults SessionLimits) SessionLimits {
	l.MaxMessageBytes = resolve(l.MaxMessageBytes, defaults.MaxMessageBytes)
	l.IdleTimeout = resolve(l.IdleTimeout, defaults.IdleTimeout)
	l.PingInterval = resolve(l.PingInterval, defaults.PingInterval)
	l.MaxLifetime = resolve(l.MaxLifetime, defaults.MaxLifetime)
	return l
}

func resolve[T int64 | time.Duration](v, def T) T {
	if v == 0 {
		v = def
	}
	return max(v, 0)
}

// Direction says which messages a MessageRate counts.
type Direction uint8

// Directions of a MessageRate. The zero Direction is DirectionBoth, the policy's default.
const (
	// DirectionBoth counts the messages of both directions against one budget.
	DirectionBoth Direction = iota
	// DirectionInbound counts messages from the client to the backend.
	DirectionInbound
	// DirectionOutbound counts messages from the backend to the client.
	DirectionOutbound
)

// String returns the policy's name for d: "both", "inbound" or "outbound".
func (d Direction) String() string {
	switch d {
	case DirectionInbound:
		return policy.DirectionInbound
	case DirectionOutbound:
		return policy.DirectionOutbound
	}
	return policy.DirectionBoth
}

// Counts reports whether a message that travels from the client (fromClient) or from the
// backend counts against a rate in direction d.
func (d Direction) Counts(fromClient bool) bool {
	switch d {
	case DirectionInbound:
		return fromClient
	case DirectionOutbound:
		return !fromClient
	}
	return true
}

// MessageRate is one <message-rate>: at most Messages data messages per Period on average,
// with bursts of up to Burst messages. Only data messages count, once each, at their first
// frame; a message over the rate is not relayed and closes the session with 1008
// (docs/policies.md). MessageRate is comparable, so the gateway can key shared limiters by it.
type MessageRate struct {
	Direction Direction
	// PerSubscription shares one budget among all connections of the subscription; false
	// gives each connection its own. A connection without a subscription has only its own.
	PerSubscription bool
	// Messages is at least 1, Period between 1 s and 1 h, Burst at least Messages.
	Messages int64
	Period   time.Duration
	Burst    int64
	// Policy identifies the element across configuration changes, like the counter keys of
	// rate-limit: its scope and position, or its scope and the id of its websocket-limits,
	// e.g. "api:echo/inbound[2]/message-rate[1]" or "api:echo/id:session/message-rate[1]".
	// For a per-subscription rate the gateway keeps one SharedRateLimiter per subscription
	// and MessageRate (Policy and the numbers), so that an unchanged rate keeps its state
	// through a swap and a changed one starts afresh.
	Policy string
}

// websocketLimits records a websocket-limits of the inbound section at b.level. It compiles
// to no step: composeSession merges the scopes' limits once Compile has walked them all.
func (b *builder) websocketLimits(in *info, p *policy.WebSocketLimits) (step, error) {
	if b.depth > 0 {
		return nil, errors.New("the policy is only allowed directly in the inbound section")
	}
	if b.sessions[b.level] != nil {
		return nil, errors.New("the policy can appear only once in a section")
	}
	var (
		s   sessionScope
		err error
	)
	s.limits.MaxMessageBytes = limitAttr(p.MaxMessageSize, 1, &err)
	s.limits.IdleTimeout = time.Duration(limitAttr(p.IdleTimeout, int64(time.Second), &err))
	s.limits.PingInterval = time.Duration(limitAttr(p.PingInterval, int64(time.Second), &err))
	s.limits.MaxLifetime = time.Duration(limitAttr(p.MaxLifetime, int64(time.Second), &err))
	if v := p.CloseOnTokenExpiry; v != "" {
		s.closeOnExpirySet = true
		s.limits.CloseOnTokenExpiry = strings.EqualFold(strings.TrimSpace(v), "true")
	}
	if v := p.ValidateUTF8; v != "" {
		s.validateSet = true
		s.limits.ValidateUTF8 = strings.EqualFold(strings.TrimSpace(v), "true")
	}
	if v := p.AllowCompression; v != "" {
		s.compressionSet = true
		s.limits.AllowCompression = strings.EqualFold(strings.TrimSpace(v), "true")
	}
	for i, r := range p.Rates {
		mr := MessageRate{
			Direction:       DirectionBoth,
			PerSubscription: strings.EqualFold(r.Per, policy.PerSubscription),
			Messages:        intAttr(r.Messages, &err),
			Period:          time.Duration(intAttr(r.Period, &err)) * time.Second,
			Burst:           intAttr(r.Burst, &err),
			Policy:          fmt.Sprintf("%s/message-rate[%d]", in.id, i+1),
		}
		switch {
		case strings.EqualFold(r.Direction, policy.DirectionInbound):
			mr.Direction = DirectionInbound
		case strings.EqualFold(r.Direction, policy.DirectionOutbound):
			mr.Direction = DirectionOutbound
		}
		if mr.Burst == 0 {
			mr.Burst = mr.Messages
		}
		s.limits.Rates = append(s.limits.Rates, mr)
	}
	if err != nil {
		return nil, err
	}
	b.sessions[b.level] = &s
	return nil, nil
}

// sessionScope is the websocket-limits of one scope. In limits, zero means the attribute is
// not set and NoLimit that it is set to 0, so non-zero means set.
type sessionScope struct {
	limits           SessionLimits
	closeOnExpirySet bool
	validateSet      bool
	compressionSet   bool
}

// limitAttr converts a limit attribute to unit: empty (not set) gives 0, "0" (no limit)
// gives NoLimit. The policy package has checked the range (at most 2^31-1 seconds, so no
// overflow); the first parse failure is kept in *err.
func limitAttr(v string, unit int64, err *error) int64 {
	if v == "" {
		return 0
	}
	n := intAttr(v, err)
	if n == 0 {
		return NoLimit
	}
	return n * unit
}

// intAttr parses an integer attribute that the policy package has validated and Compile has
// rid of named values; empty gives 0. The first failure is kept in *err.
func intAttr(v string, err *error) int64 {
	if v == "" {
		return 0
	}
	n, perr := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if perr != nil && *err == nil {
		*err = fmt.Errorf("%q is not an integer", v)
	}
	return n
}

// composeSession merges the websocket-limits of the scopes the composed section reached:
// for each attribute the narrowest scope that sets it wins, whatever the position of
// <base/>; message rates accumulate, broadest scope first.
func (b *builder) composeSession() SessionLimits {
	var out SessionLimits
	for _, s := range b.sessions {
		if s == nil {
			continue
		}
		l := s.limits
		if l.MaxMessageBytes != 0 {
			out.MaxMessageBytes = l.MaxMessageBytes
		}
		if l.IdleTimeout != 0 {
			out.IdleTimeout = l.IdleTimeout
		}
		if l.PingInterval != 0 {
			out.PingInterval = l.PingInterval
		}
		if l.MaxLifetime != 0 {
			out.MaxLifetime = l.MaxLifetime
		}
		if s.closeOnExpirySet {
			out.CloseOnTokenExpiry = l.CloseOnTokenExpiry
		}
		if s.validateSet {
			out.ValidateUTF8 = l.ValidateUTF8
		}
		if s.compressionSet {
			out.AllowCompression = l.AllowCompression
		}
		out.Rates = append(out.Rates, l.Rates...)
	}
	return out
}

// gcra is the state-free part of a token bucket in the form of the generic cell rate
// algorithm (ITU-T I.371): a message conforms when the theoretical arrival time tat is at
// most tolerance ahead of now, and each conforming message moves tat on by interval. One
// int64 of state makes the bucket cheap to share with compare-and-swap.
type gcra struct {
	// epoch is where the limiter's clock starts, read with the monotonic clock so that wall
	// clock steps do not open or close the bucket.
	epoch time.Time
	// interval is Period/Messages and tolerance (Burst-1)·interval, in nanoseconds.
	interval, tolerance int64
}

// maxTolerance caps the tolerance so that tat arithmetic cannot overflow (about 146 years).
const maxTolerance = 1 << 62

func newGCRA(r MessageRate) gcra {
	g := gcra{epoch: time.Now()}
	if r.Messages < 1 {
		// No messages at all: a tolerance below zero refuses every one.
		g.tolerance = -1
		return g
	}
	g.interval = max(int64(r.Period)/r.Messages, 0)
	burst := max(r.Burst, r.Messages)
	if g.interval > 0 && burst-1 > maxTolerance/g.interval {
		g.tolerance = maxTolerance
	} else {
		g.tolerance = (burst - 1) * g.interval
	}
	return g
}

// next returns the tat after a message at now given the current tat, and whether the
// message conforms.
func (g *gcra) next(tat int64, now time.Time) (int64, bool) {
	n := int64(now.Sub(g.epoch)) // saturates rather than overflows
	t := max(tat, n)
	// t ≥ n, so the unsigned difference is exact even when t-n overflows int64.
	if g.tolerance < 0 || uint64(t-n) > uint64(g.tolerance) {
		return tat, false
	}
	if t > math.MaxInt64-g.interval {
		return math.MaxInt64, true
	}
	return t + g.interval, true
}

// RateLimiter is a token bucket for one MessageRate: Burst messages at once from a full
// bucket, refilled at Messages per Period. It does not allocate and takes no lock, and it is
// not safe for concurrent use: give each relaying goroutine its own, i.e. use it for a
// per-connection rate in one direction (DirectionInbound or DirectionOutbound). A
// per-connection DirectionBoth rate is used by both of a session's relaying goroutines and a
// per-subscription rate by every connection of the subscription: use SharedRateLimiter.
type RateLimiter struct {
	g   gcra
	tat int64
}

// NewRateLimiter returns a full bucket for r, as Run produces it (Messages ≥ 1, Period > 0;
// a Burst below Messages counts as Messages).
func NewRateLimiter(r MessageRate) *RateLimiter {
	return &RateLimiter{g: newGCRA(r), tat: math.MinInt64}
}

// Allow reports whether a message at now fits the rate, and counts it when it does. Times
// should come from time.Now (monotonic); a refused message is not counted.
func (l *RateLimiter) Allow(now time.Time) bool {
	tat, ok := l.g.next(l.tat, now)
	l.tat = tat
	return ok
}

// SharedRateLimiter is RateLimiter for concurrent use: a per-subscription rate shared by
// every connection of the subscription, or a per-connection DirectionBoth rate shared by the
// session's two relaying goroutines. It does not allocate and takes no lock (one
// compare-and-swap per message).
type SharedRateLimiter struct {
	g   gcra
	tat atomic.Int64
}

// NewSharedRateLimiter returns a full bucket for r, as NewRateLimiter.
func NewSharedRateLimiter(r MessageRate) *SharedRateLimiter {
	l := &SharedRateLimiter{g: newGCRA(r)}
	l.tat.Store(math.MinInt64)
	return l
}

// Allow reports whether a message at now fits the rate, and counts it when it does. It is
// safe to call from many goroutines at once; with times out of order across goroutines a
// message is judged against the latest state, never counted twice.
func (l *SharedRateLimiter) Allow(now time.Time) bool {
	for {
		old := l.tat.Load()
		tat, ok := l.g.next(old, now)
		if !ok {
			return false
		}
		if l.tat.CompareAndSwap(old, tat) {
			return true
		}
	}
}
