package pipeline

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"gatehouse.dev/pkg/pipeline/expr"
	"gatehouse.dev/pkg/policy"
)

// checkHeaderStep is <check-header>: the request must carry the header and, when values are
// listed, one of them. The client sees failed-check-error-message, or APIM's predefined
// message when that is empty.
type checkHeaderStep struct {
	in         *info
	name       expr.Text
	canon      string
	status     expr.Number
	message    expr.Text
	ignoreCase expr.Flag
	values     []expr.Text
}

func (b *builder) checkHeader(in *info, p *policy.CheckHeader) (step, error) {
	s := &checkHeaderStep{in: in}
	var err error
	if s.name, err = expr.CompileText(strings.TrimSpace(p.Name)); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if lit, ok := s.name.Literal(); ok {
		s.canon = http.CanonicalHeaderKey(lit)
	}
	if s.status, err = expr.CompileNumber("failed-check-httpcode", p.FailedCheckHTTPCode, http.StatusUnauthorized); err != nil {
		return nil, err
	}
	if s.message, err = expr.CompileText(p.FailedCheckErrorMessage); err != nil {
		return nil, fmt.Errorf("failed-check-error-message: %w", err)
	}
	if s.ignoreCase, err = expr.CompileFlag("ignore-case", p.IgnoreCase, false); err != nil {
		return nil, err
	}
	if s.values, err = expr.CompileTexts(p.Values); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	return s, nil
}

func (s *checkHeaderStep) run(c *runCtx) *Response {
	name := s.canon
	if name == "" {
		n, err := s.name.Eval(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		name = http.CanonicalHeaderKey(n)
	}
	got := c.req.Header[name]
	if len(got) == 0 {
		return s.reject(c, "HeaderNotFound", "Header "+name+" was not found in the request. Access denied.")
	}
	if len(s.values) == 0 {
		return nil
	}
	fold, err := s.ignoreCase.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	for _, want := range s.values {
		w, err := want.Eval(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		for _, g := range got {
			if g == w || fold && strings.EqualFold(g, w) {
				return nil
			}
		}
	}
	return s.reject(c, "HeaderValueNotAllowed", "Header "+name+" value of "+strings.Join(got, ",")+" is not allowed. Access denied.")
}

func (s *checkHeaderStep) reject(c *runCtx, reason, predefined string) *Response {
	status, err := s.status.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	msg, err := s.message.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if msg == "" {
		msg = predefined
	}
	if status < 100 || status > 599 {
		status = http.StatusUnauthorized
	}
	return &Response{Status: int(status), Message: msg, Source: "check-header", Reason: reason}
}

// ipFilterStep is <ip-filter>. allow admits only the listed callers, forbid refuses them;
// both answer 403 with APIM's predefined messages.
type ipFilterStep struct {
	in      *info
	action  expr.Text // "allow" or "forbid"
	allow   bool      // the literal action
	entries []ipRange
}

// ipRange is an inclusive range of addresses of one family; an <address> is a range of one.
// Expression bounds are parsed per request.
type ipRange struct {
	from, to     netip.Addr
	dynFrom, dyn expr.Text
	dynamic      bool
}

func (b *builder) ipFilter(in *info, p *policy.IPFilter) (step, error) {
	s := &ipFilterStep{in: in}
	var err error
	if s.action, err = expr.CompileText(strings.TrimSpace(p.Action)); err != nil {
		return nil, fmt.Errorf("action: %w", err)
	}
	if lit, ok := s.action.Literal(); ok {
		switch strings.ToLower(lit) {
		case "allow":
			s.allow = true
		case "forbid":
		default:
			return nil, fmt.Errorf("action: '%s' is not allow or forbid", lit)
		}
	}
	add := func(from, to string) error {
		ft, err := expr.CompileText(strings.TrimSpace(from))
		if err != nil {
			return err
		}
		tt, err := expr.CompileText(strings.TrimSpace(to))
		if err != nil {
			return err
		}
		fromLit, fromOK := ft.Literal()
		toLit, toOK := tt.Literal()
		if !fromOK || !toOK {
			s.entries = append(s.entries, ipRange{dynFrom: ft, dyn: tt, dynamic: true})
			return nil
		}
		r, err := makeRange(fromLit, toLit)
		if err != nil {
			return err
		}
		s.entries = append(s.entries, r)
		return nil
	}
	for _, a := range p.Addresses {
		if err := add(a, a); err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
	}
	for _, r := range p.Ranges {
		if err := add(r.From, r.To); err != nil {
			return nil, fmt.Errorf("address-range: %w", err)
		}
	}
	return s, nil
}

// makeRange parses an inclusive address range.
func makeRange(from, to string) (ipRange, error) {
	f, err := netip.ParseAddr(from)
	if err != nil || f.Zone() != "" {
		return ipRange{}, fmt.Errorf("'%s' is not a valid IP address", from)
	}
	t, err := netip.ParseAddr(to)
	if err != nil || t.Zone() != "" {
		return ipRange{}, fmt.Errorf("'%s' is not a valid IP address", to)
	}
	f, t = f.Unmap(), t.Unmap()
	if f.Is4() != t.Is4() || t.Less(f) {
		return ipRange{}, fmt.Errorf("the range from '%s' to '%s' is empty or mixes IPv4 and IPv6", from, to)
	}
	return ipRange{from: f, to: t}, nil
}

func (r *ipRange) contains(ip netip.Addr) bool {
	return ip.Is4() == r.from.Is4() && r.from.Compare(ip) <= 0 && ip.Compare(r.to) <= 0
}

func (s *ipFilterStep) run(c *runCtx) *Response {
	allow := s.allow
	if _, lit := s.action.Literal(); !lit {
		a, err := s.action.Eval(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		switch strings.ToLower(strings.TrimSpace(a)) {
		case "allow":
			allow = true
		case "forbid":
			allow = false
		default:
			return c.failure(s.in, errors.New("The ip-filter action must be allow or forbid."))
		}
	}
	ip := c.req.ClientIP.Unmap()
	if !ip.IsValid() || ip.Zone() != "" {
		return &Response{Status: http.StatusForbidden, Message: "Failed to establish IP address for the caller. Access denied.",
			Source: "ip-filter", Reason: "FailedToParseCallerIP"}
	}
	listed := false
	for i := range s.entries {
		e := &s.entries[i]
		if e.dynamic {
			from, err := e.dynFrom.Eval(c)
			if err != nil {
				return c.failure(s.in, err)
			}
			to, err := e.dyn.Eval(c)
			if err != nil {
				return c.failure(s.in, err)
			}
			r, err := makeRange(strings.TrimSpace(from), strings.TrimSpace(to))
			if err != nil {
				return c.failure(s.in, err)
			}
			if r.contains(ip) {
				listed = true
				break
			}
			continue
		}
		if e.contains(ip) {
			listed = true
			break
		}
	}
	switch {
	case allow && !listed:
		return &Response{Status: http.StatusForbidden, Message: "Caller IP address " + c.clientIP() + " is not allowed. Access denied.",
			Source: "ip-filter", Reason: "CallerIpNotAllowed"}
	case !allow && listed:
		return &Response{Status: http.StatusForbidden, Message: "Caller IP address is blocked. Access denied.",
			Source: "ip-filter", Reason: "CallerIpBlocked"}
	}
	return nil
}
