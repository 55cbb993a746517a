package policy

import (
	"regexp"
	"strconv"
	"time"
)

// RateLimit is <rate-limit>: at most Calls calls per subscription in a sliding window of
// RenewalPeriod seconds (1 to 300), optionally narrowed per API and operation. Calls and
// RenewalPeriod do not accept policy expressions.
type RateLimit struct {
	Meta
	Calls                      string
	RenewalPeriod              string
	RetryAfterHeaderName       string
	RetryAfterVariableName     string
	RemainingCallsHeaderName   string
	RemainingCallsVariableName string
	TotalCallsHeaderName       string
	APIs                       []LimitAPI
}

// LimitAPI is an <api> of rate-limit or quota: a limit for one API, named by Name or ID.
// Bandwidth (kilobytes) is only used by quota.
type LimitAPI struct {
	Pos           Pos
	Name, ID      string
	Calls         string
	Bandwidth     string
	RenewalPeriod string
	Operations    []LimitOperation
}

// LimitOperation is an <operation> of an <api> in rate-limit or quota.
type LimitOperation struct {
	Pos           Pos
	Name, ID      string
	Calls         string
	Bandwidth     string
	RenewalPeriod string
}

// ElementName returns "rate-limit".
func (*RateLimit) ElementName() string { return "rate-limit" }

// Encode returns the <rate-limit> element.
func (p *RateLimit) Encode() *Element {
	e := newElement("rate-limit", p.Meta).
		attrAlways("calls", p.Calls).
		attrAlways("renewal-period", p.RenewalPeriod).
		attr("retry-after-header-name", p.RetryAfterHeaderName).
		attr("retry-after-variable-name", p.RetryAfterVariableName).
		attr("remaining-calls-header-name", p.RemainingCallsHeaderName).
		attr("remaining-calls-variable-name", p.RemainingCallsVariableName).
		attr("total-calls-header-name", p.TotalCallsHeaderName).
		attr("id", p.ID)
	encodeLimitAPIs(e, p.APIs)
	return e
}

func encodeLimitAPIs(e *Element, apis []LimitAPI) {
	for _, api := range apis {
		ae := (&Element{Name: "api", Pos: api.Pos}).
			attr("name", api.Name).attr("id", api.ID).
			attr("calls", api.Calls).attr("bandwidth", api.Bandwidth).
			attrAlways("renewal-period", api.RenewalPeriod)
		for _, op := range api.Operations {
			ae.child((&Element{Name: "operation", Pos: op.Pos}).
				attr("name", op.Name).attr("id", op.ID).
				attr("calls", op.Calls).attr("bandwidth", op.Bandwidth).
				attrAlways("renewal-period", op.RenewalPeriod))
		}
		e.child(ae)
	}
}

func decodeRateLimit(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &RateLimit{
		Meta:                       a.meta(),
		Calls:                      a.integer("calls", true, 0, maxInt, false),
		RenewalPeriod:              a.integer("renewal-period", true, 1, 300, false),
		RetryAfterHeaderName:       a.str("retry-after-header-name", false),
		RetryAfterVariableName:     a.str("retry-after-variable-name", false),
		RemainingCallsHeaderName:   a.str("remaining-calls-header-name", false),
		RemainingCallsVariableName: a.str("remaining-calls-variable-name", false),
		TotalCallsHeaderName:       a.str("total-calls-header-name", false),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	var err error
	p.APIs, err = decodeLimitAPIs(e, false)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// decodeLimitAPIs decodes the <api> children of a rate-limit (quota false) or quota element.
func decodeLimitAPIs(e *Element, quota bool) ([]LimitAPI, error) {
	if err := e.noText(); err != nil {
		return nil, err
	}
	var apis []LimitAPI
	for _, ae := range e.Elements() {
		if ae.Name != "api" {
			return nil, unexpected(e, ae)
		}
		name, id, calls, bw, period, err := decodeLimitScope(ae, quota)
		if err != nil {
			return nil, err
		}
		api := LimitAPI{Pos: ae.Pos, Name: name, ID: id, Calls: calls, Bandwidth: bw, RenewalPeriod: period}
		if err := ae.noText(); err != nil {
			return nil, err
		}
		for _, oe := range ae.Elements() {
			if oe.Name != "operation" {
				return nil, unexpected(ae, oe)
			}
			name, id, calls, bw, period, err := decodeLimitScope(oe, quota)
			if err != nil {
				return nil, err
			}
			if len(oe.Nodes) > 0 {
				return nil, oe.Errorf("The element must be empty.")
			}
			api.Operations = append(api.Operations, LimitOperation{Pos: oe.Pos, Name: name, ID: id, Calls: calls, Bandwidth: bw, RenewalPeriod: period})
		}
		apis = append(apis, api)
	}
	return apis, nil
}

// decodeLimitScope reads the attributes of an <api> or <operation> in rate-limit or quota.
func decodeLimitScope(e *Element, quota bool) (name, id, calls, bandwidth, period string, err error) {
	a := readAttrs(e)
	name = a.str("name", false)
	id = a.str("id", false)
	if quota {
		calls = a.integer("calls", false, 0, maxInt, false)
		bandwidth = a.integer("bandwidth", false, 0, maxInt, false)
		period = a.quotaPeriod("renewal-period", 0)
	} else {
		calls = a.integer("calls", true, 0, maxInt, false)
		period = a.integer("renewal-period", true, 1, 300, false)
	}
	if err = a.done(); err != nil {
		return
	}
	if name == "" && id == "" {
		err = e.Errorf("One of the attributes 'name' and 'id' is required.")
	} else if quota && calls == "" && bandwidth == "" {
		err = e.Errorf("At least one of the attributes 'calls' and 'bandwidth' is required.")
	}
	return
}

// RateLimitByKey is <rate-limit-by-key>: at most Calls calls per value of CounterKey in a
// sliding window of RenewalPeriod seconds (1 to 300). Calls, RenewalPeriod, CounterKey,
// IncrementCondition and IncrementCount accept expressions.
type RateLimitByKey struct {
	Meta
	Calls                      string
	RenewalPeriod              string
	CounterKey                 string
	IncrementCondition         string
	IncrementCount             string
	RetryAfterHeaderName       string
	RetryAfterVariableName     string
	RemainingCallsHeaderName   string
	RemainingCallsVariableName string
	TotalCallsHeaderName       string
}

// ElementName returns "rate-limit-by-key".
func (*RateLimitByKey) ElementName() string { return "rate-limit-by-key" }

// Encode returns the <rate-limit-by-key> element.
func (p *RateLimitByKey) Encode() *Element {
	return newElement("rate-limit-by-key", p.Meta).
		attrAlways("calls", p.Calls).
		attrAlways("renewal-period", p.RenewalPeriod).
		attrAlways("counter-key", p.CounterKey).
		attr("increment-condition", p.IncrementCondition).
		attr("increment-count", p.IncrementCount).
		attr("retry-after-header-name", p.RetryAfterHeaderName).
		attr("retry-after-variable-name", p.RetryAfterVariableName).
		attr("remaining-calls-header-name", p.RemainingCallsHeaderName).
		attr("remaining-calls-variable-name", p.RemainingCallsVariableName).
		attr("total-calls-header-name", p.TotalCallsHeaderName).
		attr("id", p.ID)
}

func decodeRateLimitByKey(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &RateLimitByKey{
		Meta:                       a.meta(),
		Calls:                      a.integer("calls", true, 0, maxInt, true),
		RenewalPeriod:              a.integer("renewal-period", true, 1, 300, true),
		CounterKey:                 a.str("counter-key", true),
		IncrementCondition:         a.str("increment-condition", false),
		IncrementCount:             a.integer("increment-count", false, 0, maxInt, true),
		RetryAfterHeaderName:       a.str("retry-after-header-name", false),
		RetryAfterVariableName:     a.str("retry-after-variable-name", false),
		RemainingCallsHeaderName:   a.str("remaining-calls-header-name", false),
		RemainingCallsVariableName: a.str("remaining-calls-variable-name", false),
		TotalCallsHeaderName:       a.str("total-calls-header-name", false),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if len(e.Nodes) > 0 {
		return nil, e.Errorf("The element must be empty.")
	}
	return p, nil
}

// Quota is <quota>: at most Calls calls and/or Bandwidth kilobytes per subscription in a
// fixed window of RenewalPeriod (seconds, or an ISO 8601 duration; "0" means forever),
// optionally narrowed per API and operation. No attribute accepts expressions.
type Quota struct {
	Meta
	Calls         string
	Bandwidth     string
	RenewalPeriod string
	APIs          []LimitAPI
}

// ElementName returns "quota".
func (*Quota) ElementName() string { return "quota" }

// Encode returns the <quota> element.
func (p *Quota) Encode() *Element {
	e := newElement("quota", p.Meta).
		attr("calls", p.Calls).
		attr("bandwidth", p.Bandwidth).
		attrAlways("renewal-period", p.RenewalPeriod).
		attr("id", p.ID)
	encodeLimitAPIs(e, p.APIs)
	return e
}

func decodeQuota(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &Quota{
		Meta:          a.meta(),
		Calls:         a.integer("calls", false, 0, maxInt, false),
		Bandwidth:     a.integer("bandwidth", false, 0, maxInt, false),
		RenewalPeriod: a.quotaPeriod("renewal-period", 0),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if p.Calls == "" && p.Bandwidth == "" {
		return nil, e.Errorf("At least one of the attributes 'calls' and 'bandwidth' is required.")
	}
	var err error
	if p.APIs, err = decodeLimitAPIs(e, true); err != nil {
		return nil, err
	}
	return p, nil
}

// QuotaByKey is <quota-by-key>: like Quota, per value of CounterKey. RenewalPeriod is 0
// (forever) or at least 300 seconds; FirstPeriodStart, when set, is an RFC 3339 time that the
// windows count from. CounterKey, IncrementCondition and IncrementCount accept expressions.
type QuotaByKey struct {
	Meta
	Calls              string
	Bandwidth          string
	RenewalPeriod      string
	CounterKey         string
	IncrementCondition string
	IncrementCount     string
	FirstPeriodStart   string
}

// ElementName returns "quota-by-key".
func (*QuotaByKey) ElementName() string { return "quota-by-key" }

// Encode returns the <quota-by-key> element.
func (p *QuotaByKey) Encode() *Element {
	return newElement("quota-by-key", p.Meta).
		attr("calls", p.Calls).
		attr("bandwidth", p.Bandwidth).
		attrAlways("renewal-period", p.RenewalPeriod).
		attrAlways("counter-key", p.CounterKey).
		attr("increment-condition", p.IncrementCondition).
		attr("increment-count", p.IncrementCount).
		attr("first-period-start", p.FirstPeriodStart).
		attr("id", p.ID)
}

func decodeQuotaByKey(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &QuotaByKey{
		Meta:               a.meta(),
		Calls:              a.integer("calls", false, 0, maxInt, false),
		Bandwidth:          a.integer("bandwidth", false, 0, maxInt, false),
		RenewalPeriod:      a.quotaPeriod("renewal-period", 300),
		CounterKey:         a.str("counter-key", true),
		IncrementCondition: a.str("increment-condition", false),
		IncrementCount:     a.integer("increment-count", false, 0, maxInt, true),
		FirstPeriodStart:   trimSpace(a.str("first-period-start", false)),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if p.Calls == "" && p.Bandwidth == "" {
		return nil, e.Errorf("At least one of the attributes 'calls' and 'bandwidth' is required.")
	}
	if v := p.FirstPeriodStart; v != "" {
		if IsExpression(v) {
			return nil, e.Errorf("Policy expressions are not allowed in the attribute 'first-period-start'.")
		}
		if _, err := time.Parse(time.RFC3339, v); err != nil && !isDynamic(v) {
			return nil, e.Errorf("The attribute 'first-period-start' must be a date and time such as 2024-01-01T00:00:00Z.")
		}
	}
	if len(e.Nodes) > 0 {
		return nil, e.Errorf("The element must be empty.")
	}
	return p, nil
}

// isoDuration matches an ISO 8601 duration such as P1M or PT12H, which APIM accepts for quota
// renewal periods.
var isoDuration = regexp.MustCompile(`^P(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$`)

// quotaPeriod reads a required quota renewal period: "0" (forever), a number of seconds not
// less than minSeconds, or an ISO 8601 duration. Expressions are not allowed.
func (a *attrs) quotaPeriod(name string, minSeconds int) string {
	v := trimSpace(a.str(name, true))
	if v == "" || !a.literal(name, v, false) {
		return v
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n != 0 && n < minSeconds || n < 0 {
			a.fail("The attribute '%s' must be 0 or a number of seconds not less than %d.", name, minSeconds)
		}
		return v
	}
	if !isoDuration.MatchString(v) || v == "P" || v[len(v)-1] == 'T' {
		a.fail("The attribute '%s' must be a number of seconds or an ISO 8601 duration.", name)
	}
	return v
}
