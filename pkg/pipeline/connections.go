package pipeline

import (
	"errors"
	"strings"

	"gatehouse.dev/pkg/pipeline/expr"
	"gatehouse.dev/pkg/policy"
)

// limitConnectionsStep computes the counter of a <limit-connections> for this session and
// adds it to Request.Connections; the gateway enforces it at the backend dial, where the
// session becomes real. Counters are keyed by subscription id or by the key's value, shared
// by every policy that counts the same thing, as rate-limit-by-key's are.
type limitConnectionsStep struct {
	in    *info
	max   expr.Number
	byKey bool
	key   expr.Text
	evict bool
}

func (b *builder) limitConnections(in *info, p *policy.LimitConnections) (step, error) {
	s := &limitConnectionsStep{in: in, byKey: strings.EqualFold(p.Per, policy.ConnectionsPerKey),
		evict: strings.EqualFold(p.Action, policy.ActionEvictOldest)}
	var err error
	if s.max, err = expr.CompileNumber("max", p.Max, 0); err != nil {
		return nil, err
	}
	if lit, ok := s.max.Literal(); ok && lit < 1 {
		return nil, errors.New("max must be at least 1")
	}
	if s.byKey {
		if s.key, err = expr.CompileText(p.CounterKey); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *limitConnectionsStep) run(c *runCtx) *Response {
	var counter string
	switch {
	case s.byKey:
		v, err := s.key.Eval(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		counter = "conn|key|" + v
	case c.req.Subscription != nil:
		counter = "conn|sub|" + c.req.Subscription.ID
	default:
		return nil // no subscription: nothing to count per subscription
	}
	limit, err := s.max.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	c.req.Connections = append(c.req.Connections, ConnectionLimit{Counter: counter, Max: limit, EvictOldest: s.evict})
	return nil
}
