package policy

import (
	"strconv"
	"strings"
)

// WebSocketLimits is <websocket-limits>, a Gatehouse extension that APIM does not have: the
// per-connection controls of a WebSocket session, which APIM's handshake-only policies cannot
// express (docs/policies.md has the reference; docs/design.md §3 shows where it runs).
//
//	<websocket-limits max-message-size="1048576" idle-timeout="300" ping-interval="30"
//	                  max-lifetime="86400" close-on-token-expiry="true">
//	    <message-rate direction="both" per="connection" messages="50" period="1" burst="100" />
//	</websocket-limits>
//
// Every attribute is optional and empty means not set. MaxMessageSize is in bytes;
// IdleTimeout, PingInterval and MaxLifetime are whole seconds from 0 to 2147483647, where 0
// turns the limit off; PingInterval is 0 or at least 5. CloseOnTokenExpiry is "true" or
// "false" in any case, as are ValidateUTF8 and AllowCompression. Values are literals or {{named value}} references, never policy
// expressions, because the limits are fixed when the policy is compiled, not per request.
//
// The element may appear only directly in the inbound section, at most once per section.
// How the gateway composes it across scopes is the pipeline's business (docs/policies.md).
type WebSocketLimits struct {
	Meta
	MaxMessageSize     string
	IdleTimeout        string
	PingInterval       string
	MaxLifetime        string
	CloseOnTokenExpiry string
	// ValidateUTF8 ("true" or "false") makes the gateway check that text messages are UTF-8
	// and close with 1007 when one is not; AllowCompression ("true" or "false") lets
	// permessage-deflate be negotiated with the backend, with which size caps count
	// compressed bytes (docs/policies.md).
	ValidateUTF8     string
	AllowCompression string
	Rates            []MessageRate
}

// MessageRate is a <message-rate> of websocket-limits: at most Messages data messages per
// Period seconds (1 to 3600) on average, with bursts of up to Burst messages (at least
// Messages; empty means Messages). Direction is "inbound" (client to backend), "outbound" or
// "both" (empty: both), counting the messages of both directions against one budget. Per is
// "connection" (empty: connection) or "subscription", one budget shared by every connection
// of the subscription. Messages and Period are required. Enumerations accept any case.
type MessageRate struct {
	Pos       Pos
	Direction string
	Per       string
	Messages  string
	Period    string
	Burst     string
}

// Values of MessageRate.Direction and MessageRate.Per.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
	DirectionBoth     = "both"
	PerConnection     = "connection"
	PerSubscription   = "subscription"
)

// maxSeconds bounds the time attributes of websocket-limits, so that every value fits a
// time.Duration with room to spare (about 68 years).
const maxSeconds = 1<<31 - 1

// minPingInterval is the shortest keepalive interval websocket-limits accepts: pinging
// faster only burns bandwidth and misjudges slow peers as gone.
const minPingInterval = 5

// gatehouseExtensions are the policy elements that Gatehouse adds to APIM's set.
var gatehouseExtensions = []string{"websocket-limits", "limit-connections"}

// IsGatehouseExtension reports whether name is a policy element that Gatehouse defines and
// APIM does not, such as "websocket-limits". A document using one does not validate in APIM.
func IsGatehouseExtension(name string) bool {
	for _, n := range gatehouseExtensions {
		if n == name {
			return true
		}
	}
	return false
}

// ElementName returns "websocket-limits".
func (*WebSocketLimits) ElementName() string { return "websocket-limits" }

// Encode returns the <websocket-limits> element.
func (p *WebSocketLimits) Encode() *Element {
	e := newElement("websocket-limits", p.Meta).
		attr("max-message-size", p.MaxMessageSize).
		attr("idle-timeout", p.IdleTimeout).
		attr("ping-interval", p.PingInterval).
		attr("max-lifetime", p.MaxLifetime).
		attr("close-on-token-expiry", p.CloseOnTokenExpiry).
		attr("validate-utf8", p.ValidateUTF8).
		attr("allow-compression", p.AllowCompression).
		attr("id", p.ID)
	for _, r := range p.Rates {
		e.child((&Element{Name: "message-rate", Pos: r.Pos}).
			attr("direction", r.Direction).
			attr("per", r.Per).
			attrAlways("messages", r.Messages).
			attrAlways("period", r.Period).
			attr("burst", r.Burst))
	}
	return e
}

func decodeWebSocketLimits(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &WebSocketLimits{
		Meta:               a.meta(),
		MaxMessageSize:     a.integer("max-message-size", false, 0, maxInt, false),
		IdleTimeout:        a.integer("idle-timeout", false, 0, maxSeconds, false),
		PingInterval:       a.pingInterval("ping-interval"),
		MaxLifetime:        a.integer("max-lifetime", false, 0, maxSeconds, false),
		CloseOnTokenExpiry: a.literalEnum("close-on-token-expiry", false, "true", "false"),
		ValidateUTF8:       a.literalEnum("validate-utf8", false, "true", "false"),
		AllowCompression:   a.literalEnum("allow-compression", false, "true", "false"),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	for _, c := range e.Elements() {
		if c.Name != "message-rate" {
			return nil, unexpected(e, c)
		}
		r, err := decodeMessageRate(c)
		if err != nil {
			return nil, err
		}
		p.Rates = append(p.Rates, r)
	}
	return p, nil
}

func decodeMessageRate(e *Element) (MessageRate, error) {
	a := readAttrs(e)
	r := MessageRate{
		Pos:       e.Pos,
		Direction: a.literalEnum("direction", false, DirectionInbound, DirectionOutbound, DirectionBoth),
		Per:       a.literalEnum("per", false, PerConnection, PerSubscription),
		Messages:  a.integer("messages", true, 1, maxInt, false),
		Period:    a.integer("period", true, 1, 3600, false),
		Burst:     a.integer("burst", false, 1, maxInt, false),
	}
	if err := a.done(); err != nil {
		return r, err
	}
	if len(e.Nodes) > 0 {
		return r, e.Errorf("The element must be empty.")
	}
	if r.Burst != "" && isPlainInt(r.Messages) && isPlainInt(r.Burst) {
		m, _ := strconv.Atoi(r.Messages)
		b, _ := strconv.Atoi(r.Burst)
		if b < m {
			return r, e.Errorf("The attribute 'burst' must not be less than 'messages'.")
		}
	}
	return r, nil
}

// isPlainInt reports whether v, already checked by attrs.integer, is a literal integer rather
// than a {{named value}} reference that only the gateway can resolve.
func isPlainInt(v string) bool {
	_, err := strconv.Atoi(v)
	return err == nil
}

// pingInterval reads an optional keepalive interval in seconds: 0 (no pings) or at least
// minPingInterval. Expressions are not allowed.
func (a *attrs) pingInterval(name string) string {
	v := a.integer(name, false, 0, maxSeconds, false)
	if n, err := strconv.Atoi(v); err == nil && n > 0 && n < minPingInterval {
		a.fail("The attribute '%s' must be 0 or an integer not less than %d.", name, minPingInterval)
	}
	return v
}

// literalEnum reads an attribute that must be one of values (any case), trimmed, like enum
// but without policy expressions; {{named value}} references are accepted unchecked.
func (a *attrs) literalEnum(name string, required bool, values ...string) string {
	v := trimSpace(a.str(name, required))
	if v == "" || !a.literal(name, v, false) {
		return v
	}
	for _, want := range values {
		if strings.EqualFold(v, want) {
			return v
		}
	}
	a.fail("The attribute '%s' must be one of: %s.", name, strings.Join(values, ", "))
	return v
}

// checkPlacement refuses a websocket-limits element outside the inbound section and a second
// one in the same section; seen records whether the section already had one. The limits apply
// to the whole session, so they cannot depend on a condition (choose refuses them through
// decodeNested) and only the handshake's section can set them.
func checkPlacement(section string, e *Element, seen *bool) error {
	if e.Name != "websocket-limits" {
		return nil
	}
	if section != SectionInbound {
		return e.Errorf("The websocket-limits element is only allowed in the inbound section.")
	}
	if *seen {
		return e.Errorf("The websocket-limits element can appear only once in a section.")
	}
	*seen = true
	return nil
}
