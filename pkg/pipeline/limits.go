package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gatehouse.dev/pkg/pipeline/expr"
	"gatehouse.dev/pkg/pipeline/ratecount"
	"gatehouse.dev/pkg/policy"
)

// Counter keys. Each kind has its own prefix so that keys never collide:
//
//	rl|<policy identity>|<subscription id>[|api:<id>[|op:<id>]]   rate-limit (sliding)
//	q|<policy identity>|<subscription id>[|api:<id>[|op:<id>]]    quota (fixed)
//	rlk|<renewal period s>|<counter-key value>                     rate-limit-by-key (sliding)
//	qk|<renewal period s>|<first period start>|<counter-key value> quota-by-key (fixed)
//
// The by-key counters are shared by every policy, in every scope, that computes the same
// counter key with the same period, as APIM documents ("a single counter is used for all
// scopes"); a request increments such a counter once, and later policies with the same key
// only check it against their own limit.

// limitScope is the limit of a rate-limit or quota for one API or operation (<api>,
// <operation>), matched by id or name.
type limitScope struct {
	name, id string
	key      string // "api:<id or name>" / "op:<id or name>"
	calls    int64
	hasCalls bool
	period   time.Duration
	ops      []limitScope
}

// matches reports whether the request's API or operation is this one. An id matches the id
// as given in Request (ARM style "/apis/echo" or bare "echo") or its last segment.
func (l *limitScope) matches(id, name string) bool {
	if l.id != "" && (l.id == id || strings.HasSuffix(id, "/"+l.id)) {
		return true
	}
	return l.name != "" && l.name == name
}

// limitHeaders are the optional header and variable names of rate-limit and
// rate-limit-by-key.
type limitHeaders struct {
	retryHeader     string
	retryVar        string
	remainingHeader string
	remainingVar    string
	totalHeader     string
}

func newLimitHeaders(retry, retryVar, remaining, remainingVar, total string) limitHeaders {
	h := limitHeaders{
		retryHeader: "Retry-After", retryVar: strings.TrimSpace(retryVar),
		remainingVar: strings.TrimSpace(remainingVar),
	}
	if r := strings.TrimSpace(retry); r != "" {
		h.retryHeader = http.CanonicalHeaderKey(r)
	}
	if r := strings.TrimSpace(remaining); r != "" {
		h.remainingHeader = http.CanonicalHeaderKey(r)
	}
	if t := strings.TrimSpace(total); t != "" {
		h.totalHeader = http.CanonicalHeaderKey(t)
	}
	return h
}

// exceeded is the 429 of rate-limit and rate-limit-by-key.
func (h *limitHeaders) exceeded(c *runCtx, source string, total int64, retry time.Duration) *Response {
	secs := ceilSeconds(retry)
	if h.retryVar != "" {
		c.setVar(h.retryVar, int(secs))
	}
	hdr := http.Header{h.retryHeader: {strconv.FormatInt(secs, 10)}}
	if h.remainingHeader != "" {
		hdr[h.remainingHeader] = []string{"0"}
	}
	if h.totalHeader != "" {
		hdr[h.totalHeader] = []string{strconv.FormatInt(total, 10)}
	}
	return &Response{
		Status:  http.StatusTooManyRequests,
		Header:  hdr,
		Message: "Rate limit is exceeded. Try again in " + strconv.FormatInt(secs, 10) + " seconds.",
		Source:  source,
		Reason:  "RateLimitExceeded",
	}
}

// passed records the remaining calls for the client's response and the variables.
func (h *limitHeaders) passed(c *runCtx, total, remaining int64) {
	if h.remainingHeader != "" {
		c.responseHeader()[h.remainingHeader] = []string{strconv.FormatInt(remaining, 10)}
	}
	if h.totalHeader != "" {
		c.responseHeader()[h.totalHeader] = []string{strconv.FormatInt(total, 10)}
	}
	if h.remainingVar != "" {
		c.setVar(h.remainingVar, int(remaining))
	}
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

func (b *builder) counters() (ratecount.Counters, error) {
	if b.env.Counters == nil {
		return nil, errors.New("limit policies need counters, and Env.Counters is nil")
	}
	return b.env.Counters, nil
}

// literalInt parses an attribute that does not accept expressions.
func literalInt(attr, s string) (int64, error) {
	s = strings.TrimSpace(s)
	if policy.IsExpression(s) {
		return 0, fmt.Errorf("%s: policy expressions are not allowed", attr)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: '%s' is not a non-negative integer", attr, s)
	}
	return n, nil
}

// slidingPeriod parses a rate-limit renewal period: 1 to 300 seconds.
func slidingPeriod(s string) (time.Duration, error) {
	n, err := literalInt("renewal-period", s)
	if err != nil {
		return 0, err
	}
	if n < 1 || n > 300 {
		return 0, fmt.Errorf("renewal-period: %d is not between 1 and 300 seconds", n)
	}
	return time.Duration(n) * time.Second, nil
}

// rateLimitStep is <rate-limit>: calls per subscription in a sliding window, and optionally
// per API and operation. It does nothing for requests without a subscription, as APIM
// applies it "only when an API is accessed using a subscription key".
type rateLimitStep struct {
	in       *info
	counters ratecount.Counters
	calls    int64
	period   time.Duration
	apis     []limitScope
	limitHeaders
}

func (b *builder) rateLimit(in *info, p *policy.RateLimit) (step, error) {
	cs, err := b.counters()
	if err != nil {
		return nil, err
	}
	s := &rateLimitStep{in: in, counters: cs,
		limitHeaders: newLimitHeaders(p.RetryAfterHeaderName, p.RetryAfterVariableName, p.RemainingCallsHeaderName, p.RemainingCallsVariableName, p.TotalCallsHeaderName)}
	if s.calls, err = literalInt("calls", p.Calls); err != nil {
		return nil, err
	}
	if s.period, err = slidingPeriod(p.RenewalPeriod); err != nil {
		return nil, err
	}
	for _, a := range p.APIs {
		api, err := rateScope("api", a.Name, a.ID, a.Calls, a.RenewalPeriod)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		for _, o := range a.Operations {
			op, err := rateScope("op", o.Name, o.ID, o.Calls, o.RenewalPeriod)
			if err != nil {
				return nil, fmt.Errorf("operation: %w", err)
			}
			api.ops = append(api.ops, op)
		}
		s.apis = append(s.apis, api)
	}
	return s, nil
}

func rateScope(kind, name, id, calls, period string) (limitScope, error) {
	l := limitScope{name: strings.TrimSpace(name), id: strings.TrimSpace(id), hasCalls: true}
	l.key = kind + ":" + l.id
	if l.id == "" {
		l.key = kind + ":name:" + l.name
	}
	var err error
	if l.calls, err = literalInt("calls", calls); err != nil {
		return l, err
	}
	if l.period, err = slidingPeriod(period); err != nil {
		return l, err
	}
	return l, nil
}

func (s *rateLimitStep) run(c *runCtx) *Response {
	sub := c.req.Subscription
	if sub == nil {
		return nil
	}
	key := "rl|" + s.in.id + "|" + sub.ID
	calls, remaining := s.calls, int64(0)
	check := func(key string, limit int64, period time.Duration) *Response {
		ok, rem, retry := s.counters.Sliding(c.ctx, key, limit, period, 1)
		if !ok {
			return s.exceeded(c, "rate-limit", limit, retry)
		}
		calls, remaining = limit, rem
		return nil
	}
	if r := check(key, s.calls, s.period); r != nil {
		return r
	}
	for i := range s.apis {
		api := &s.apis[i]
		if !api.matches(c.req.API.ID, c.req.API.Name) {
			continue
		}
		akey := key + "|" + api.key
		if r := check(akey, api.calls, api.period); r != nil {
			return r
		}
		for j := range api.ops {
			op := &api.ops[j]
			if op.matches(c.req.Operation.ID, c.req.Operation.Name) {
				if r := check(akey+"|"+op.key, op.calls, op.period); r != nil {
					return r
				}
				break
			}
		}
		break
	}
	s.passed(c, calls, remaining)
	return nil
}

// byKey is the part rate-limit-by-key and quota-by-key share: the counter key, the increment
// condition and count.
type byKey struct {
	key       expr.Text
	cond      *expr.Expr
	condLit   bool
	hasCond   bool
	increment expr.Number
}

func compileByKey(key, cond, incr string) (byKey, error) {
	var k byKey
	var err error
	if k.key, err = expr.CompileText(key); err != nil {
		return k, fmt.Errorf("counter-key: %w", err)
	}
	if strings.TrimSpace(cond) != "" {
		e, lit, err := expr.CompileCondition("increment-condition", cond, expr.Options{AllowResponse: true})
		if err != nil {
			return k, err
		}
		// A condition on context.Response cannot be known at the handshake, before the
		// backend answers: every call is counted.
		if e == nil || !e.UsesResponse() {
			k.cond, k.condLit, k.hasCond = e, lit, true
		}
	}
	if k.increment, err = expr.CompileNumber("increment-count", incr, 1); err != nil {
		return k, err
	}
	return k, nil
}

// count evaluates the counter key and how much this request adds: the increment, 0 when the
// increment condition is false, and 0 (with alreadyCounted) when an earlier policy of this
// request already incremented the same counter.
func (k *byKey) count(c *runCtx, prefix string) (key string, n int64, alreadyCounted bool, err error) {
	v, err := k.key.Eval(c)
	if err != nil {
		return "", 0, false, err
	}
	key = prefix + v
	if slices.Contains(c.counted, key) {
		return key, 0, true, nil
	}
	if n, err = k.increment.Eval(c); err != nil {
		return "", 0, false, err
	}
	if n < 0 {
		return "", 0, false, errors.New("The increment count must not be negative.")
	}
	if k.hasCond {
		ok := k.condLit
		if k.cond != nil {
			if ok, err = k.cond.EvalBool(c, "The increment condition"); err != nil {
				return "", 0, false, err
			}
		}
		if !ok {
			n = 0
		}
	}
	return key, n, false, nil
}

// rateLimitByKeyStep is <rate-limit-by-key>.
type rateLimitByKeyStep struct {
	in       *info
	counters ratecount.Counters
	calls    expr.Number
	period   expr.Number
	byKey
	limitHeaders
}

func (b *builder) rateLimitByKey(in *info, p *policy.RateLimitByKey) (step, error) {
	cs, err := b.counters()
	if err != nil {
		return nil, err
	}
	s := &rateLimitByKeyStep{in: in, counters: cs,
		limitHeaders: newLimitHeaders(p.RetryAfterHeaderName, p.RetryAfterVariableName, p.RemainingCallsHeaderName, p.RemainingCallsVariableName, p.TotalCallsHeaderName)}
	if s.calls, err = expr.CompileNumber("calls", p.Calls, 0); err != nil {
		return nil, err
	}
	if s.period, err = expr.CompileNumber("renewal-period", p.RenewalPeriod, 0); err != nil {
		return nil, err
	}
	if lit, ok := s.period.Literal(); ok && (lit < 1 || lit > 300) {
		return nil, fmt.Errorf("renewal-period: %d is not between 1 and 300 seconds", lit)
	}
	if s.byKey, err = compileByKey(p.CounterKey, p.IncrementCondition, p.IncrementCount); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *rateLimitByKeyStep) run(c *runCtx) *Response {
	calls, err := s.calls.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	period, err := s.period.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if period < 1 || period > 300 || calls < 0 {
		return c.failure(s.in, errors.New("calls must not be negative and renewal-period must be between 1 and 300 seconds."))
	}
	key, n, dup, err := s.count(c, "rlk|"+strconv.FormatInt(period, 10)+"|")
	if err != nil {
		return c.failure(s.in, err)
	}
	limit := calls
	if dup {
		// This request is already in the count: check that it fits, without counting it again.
		limit++
	}
	ok, rem, retry := s.counters.Sliding(c.ctx, key, limit, time.Duration(period)*time.Second, n)
	if dup {
		rem = max(rem-1, 0)
	}
	if !ok {
		return s.exceeded(c, "rate-limit-by-key", calls, retry)
	}
	if n > 0 {
		c.counted = append(c.counted, key)
	}
	s.passed(c, calls, rem)
	return nil
}

// quotaStep is <quota>: calls per subscription in fixed periods counted from the
// subscription's start date, and optionally per API and operation. Bandwidth quotas are not
// enforced: a handshake has no body to measure, and frames are not counted against them.
type quotaStep struct {
	in       *info
	counters ratecount.Counters
	calls    int64
	hasCalls bool
	period   time.Duration
	apis     []limitScope
}

func (b *builder) quota(in *info, p *policy.Quota) (step, error) {
	cs, err := b.counters()
	if err != nil {
		return nil, err
	}
	s := &quotaStep{in: in, counters: cs}
	if s.period, err = quotaPeriod(p.RenewalPeriod); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Calls) != "" {
		if s.calls, err = literalInt("calls", p.Calls); err != nil {
			return nil, err
		}
		s.hasCalls = true
	}
	for _, a := range p.APIs {
		api, err := quotaScope("api", a.Name, a.ID, a.Calls, a.RenewalPeriod)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		for _, o := range a.Operations {
			op, err := quotaScope("op", o.Name, o.ID, o.Calls, o.RenewalPeriod)
			if err != nil {
				return nil, fmt.Errorf("operation: %w", err)
			}
			api.ops = append(api.ops, op)
		}
		s.apis = append(s.apis, api)
	}
	if !s.hasCalls && len(s.apis) == 0 {
		b.env.Log.Warn("bandwidth quota is not enforced on handshakes", slog.String("policy", in.id))
		return nil, nil
	}
	return s, nil
}

func quotaScope(kind, name, id, calls, period string) (limitScope, error) {
	l := limitScope{name: strings.TrimSpace(name), id: strings.TrimSpace(id)}
	l.key = kind + ":" + l.id
	if l.id == "" {
		l.key = kind + ":name:" + l.name
	}
	var err error
	if strings.TrimSpace(calls) != "" {
		if l.calls, err = literalInt("calls", calls); err != nil {
			return l, err
		}
		l.hasCalls = true
	}
	if l.period, err = quotaPeriod(period); err != nil {
		return l, err
	}
	return l, nil
}

func (s *quotaStep) run(c *runCtx) *Response {
	sub := c.req.Subscription
	if sub == nil {
		return nil
	}
	key := "q|" + s.in.id + "|" + sub.ID
	if s.hasCalls {
		if r := quotaCheck(c, s.counters, key, s.calls, s.period, sub.StartDate, 1); r != nil {
			return r
		}
	}
	for i := range s.apis {
		api := &s.apis[i]
		if !api.matches(c.req.API.ID, c.req.API.Name) {
			continue
		}
		akey := key + "|" + api.key
		if api.hasCalls {
			if r := quotaCheck(c, s.counters, akey, api.calls, api.period, sub.StartDate, 1); r != nil {
				return r
			}
		}
		for j := range api.ops {
			op := &api.ops[j]
			if op.matches(c.req.Operation.ID, c.req.Operation.Name) {
				if op.hasCalls {
					if r := quotaCheck(c, s.counters, akey+"|"+op.key, op.calls, op.period, sub.StartDate, 1); r != nil {
						return r
					}
				}
				break
			}
		}
		break
	}
	return nil
}

// quotaCheck counts n against a fixed-window quota and returns APIM's 403 when it is out.
func quotaCheck(c *runCtx, cs ratecount.Counters, key string, limit int64, period time.Duration, start time.Time, n int64) *Response {
	ok, _, retry := cs.Fixed(c.ctx, key, limit, period, start, n)
	if ok {
		return nil
	}
	r := &Response{Status: http.StatusForbidden, Source: "quota", Reason: "QuotaExceeded"}
	if period == 0 {
		r.Message = "Out of call volume quota."
		return r
	}
	r.Message = "Out of call volume quota. Quota will be replenished in " + timeSpan(retry) + "."
	r.Header = http.Header{"Retry-After": {strconv.FormatInt(ceilSeconds(retry), 10)}}
	return r
}

// timeSpan formats d as .NET's TimeSpan does, [d.]hh:mm:ss, rounding up to whole seconds.
func timeSpan(d time.Duration) string {
	s := ceilSeconds(d)
	days, s := s/86400, s%86400
	hms := fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
	if days > 0 {
		return strconv.FormatInt(days, 10) + "." + hms
	}
	return hms
}

// quotaByKeyStep is <quota-by-key>. Like quota, only calls are counted.
type quotaByKeyStep struct {
	in       *info
	counters ratecount.Counters
	calls    int64
	period   time.Duration
	start    time.Time
	prefix   string
	byKey
}

func (b *builder) quotaByKey(in *info, p *policy.QuotaByKey) (step, error) {
	cs, err := b.counters()
	if err != nil {
		return nil, err
	}
	s := &quotaByKeyStep{in: in, counters: cs, start: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)}
	if s.period, err = quotaPeriod(p.RenewalPeriod); err != nil {
		return nil, err
	}
	if v := strings.TrimSpace(p.FirstPeriodStart); v != "" {
		if s.start, err = time.Parse(time.RFC3339, v); err != nil {
			return nil, fmt.Errorf("first-period-start: '%s' is not a date and time such as 2024-01-01T00:00:00Z", v)
		}
	}
	if strings.TrimSpace(p.Calls) == "" {
		b.env.Log.Warn("bandwidth quota is not enforced on handshakes", slog.String("policy", in.id))
		return nil, nil
	}
	if s.calls, err = literalInt("calls", p.Calls); err != nil {
		return nil, err
	}
	if s.byKey, err = compileByKey(p.CounterKey, p.IncrementCondition, p.IncrementCount); err != nil {
		return nil, err
	}
	s.prefix = "qk|" + strconv.FormatInt(int64(s.period/time.Second), 10) + "|" + s.start.UTC().Format(time.RFC3339) + "|"
	return s, nil
}

func (s *quotaByKeyStep) run(c *runCtx) *Response {
	key, n, dup, err := s.count(c, s.prefix)
	if err != nil {
		return c.failure(s.in, err)
	}
	limit := s.calls
	if dup {
		limit++
	}
	if r := quotaCheck(c, s.counters, key, limit, s.period, s.start, n); r != nil {
		return r
	}
	if n > 0 {
		c.counted = append(c.counted, key)
	}
	return nil
}

// isoDuration matches the ISO 8601 durations APIM accepts for quota periods.
var isoDuration = regexp.MustCompile(`^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// quotaPeriod parses a quota renewal period: seconds ("0" means one period that never ends)
// or an ISO 8601 duration. Years and months have no fixed length; they count as 365 and 30
// days.
func quotaPeriod(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(100*365*24*3600) {
			return 0, fmt.Errorf("renewal-period: %d seconds is out of range", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	m := isoDuration.FindStringSubmatch(s)
	if m == nil || s == "P" || strings.HasSuffix(s, "T") {
		return 0, fmt.Errorf("renewal-period: '%s' is not a number of seconds or an ISO 8601 duration", s)
	}
	units := []time.Duration{365 * 24 * time.Hour, 30 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > 100*365*24 {
			return 0, fmt.Errorf("renewal-period: '%s' is out of range", s)
		}
		d += time.Duration(n) * u
	}
	if m[7] != "" {
		f, err := strconv.ParseFloat(m[7], 64)
		if err != nil || f > 100*365*24*3600 {
			return 0, fmt.Errorf("renewal-period: '%s' is out of range", s)
		}
		d += time.Duration(f * float64(time.Second))
	}
	if d > 100*365*24*time.Hour {
		return 0, fmt.Errorf("renewal-period: '%s' is out of range", s)
	}
	return d, nil
}
