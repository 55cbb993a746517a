package policy

import "strings"

// LimitConnections is <limit-connections>, a Gatehouse extension: at most Max WebSocket
// sessions open at once across the whole gateway fleet, counted per subscription (Per
// "subscription", the default) or per the value of CounterKey (Per "key"; CounterKey is
// required then and may be a policy expression, such as @(context.Request.IpAddress)).
// Action says what a session over the limit does: "reject-newest" (the default) refuses the
// new handshake with 429, "evict-oldest" closes the oldest open session of the counter
// (close 1008) and lets the new one in.
//
//	<limit-connections max="5" per="subscription" action="evict-oldest" />
//	<limit-connections max="100" per="key" counter-key="@(context.Request.IpAddress)" />
//
// Max is an integer of at least 1 or a {{named value}}. A handshake without a subscription is
// not counted by a per="subscription" limit.
type LimitConnections struct {
	Meta
	Max        string
	Per        string
	CounterKey string
	Action     string
}

// Values of LimitConnections.Per and LimitConnections.Action.
const (
	ConnectionsPerSubscription = "subscription"
	ConnectionsPerKey          = "key"
	ActionRejectNewest         = "reject-newest"
	ActionEvictOldest          = "evict-oldest"
)

// ElementName returns "limit-connections".
func (*LimitConnections) ElementName() string { return "limit-connections" }

// Encode returns the <limit-connections> element.
func (p *LimitConnections) Encode() *Element {
	return newElement("limit-connections", p.Meta).
		attrAlways("max", p.Max).
		attr("per", p.Per).
		attr("counter-key", p.CounterKey).
		attr("action", p.Action).
		attr("id", p.ID)
}

func decodeLimitConnections(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &LimitConnections{
		Meta:       a.meta(),
		Max:        a.integer("max", true, 1, maxInt, false),
		Per:        a.literalEnum("per", false, ConnectionsPerSubscription, ConnectionsPerKey),
		CounterKey: a.str("counter-key", false),
		Action:     a.literalEnum("action", false, ActionRejectNewest, ActionEvictOldest),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	if len(e.Elements()) > 0 {
		return nil, unexpected(e, e.Elements()[0])
	}
	byKey := strings.EqualFold(p.Per, ConnectionsPerKey)
	switch {
	case byKey && strings.TrimSpace(p.CounterKey) == "":
		return nil, e.Errorf("The attribute 'counter-key' is required when per is 'key'.")
	case !byKey && p.CounterKey != "":
		return nil, e.Errorf("The attribute 'counter-key' is only allowed when per is 'key'.")
	}
	return p, nil
}
