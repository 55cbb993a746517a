package pipeline

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"gatehouse.dev/pkg/backend"
	"gatehouse.dev/pkg/pipeline/expr"
	"gatehouse.dev/pkg/policy"
)

// separateHeaders are sent as one header line per value; set-header joins the values of any
// other header with commas, as APIM documents.
var separateHeaders = map[string]bool{
	"User-Agent": true, "Www-Authenticate": true, "Proxy-Authenticate": true, "Cookie": true,
	"Set-Cookie": true, "Warning": true, "Date": true, "Expires": true, "If-Modified-Since": true,
	"If-Unmodified-Since": true, "Last-Modified": true, "Retry-After": true,
}

// namedSet is the compiled core of set-header and set-query-parameter: a name, an exists
// action and values, each possibly an expression.
type namedSet struct {
	name   expr.Text
	canon  string // canonical header name when name is a literal (headers only)
	action string // lower case; "" is override
	values []expr.Text
	header bool
}

func compileNamedSet(name, action string, values []string, header bool) (namedSet, error) {
	s := namedSet{action: strings.ToLower(strings.TrimSpace(action)), header: header}
	var err error
	if s.name, err = expr.CompileText(name); err != nil {
		return s, fmt.Errorf("name: %w", err)
	}
	if lit, ok := s.name.Literal(); ok {
		if header {
			s.canon = http.CanonicalHeaderKey(strings.TrimSpace(lit))
		} else {
			s.name = expr.LiteralText(strings.TrimSpace(lit))
		}
	}
	if s.values, err = expr.CompileTexts(values); err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	return s, nil
}

// resolve evaluates the name and values.
func (s *namedSet) resolve(c *runCtx) (string, []string, error) {
	name := s.canon
	if name == "" {
		n, err := s.name.Eval(c)
		if err != nil {
			return "", nil, err
		}
		name = n
		if s.header {
			if !validHeaderName(n) {
				return "", nil, errors.New("The header name '" + n + "' is invalid or restricted from modification.")
			}
			name = http.CanonicalHeaderKey(n)
		}
	}
	if s.action == policy.ExistsDelete {
		return name, nil, nil
	}
	vals := make([]string, 0, len(s.values))
	for _, v := range s.values {
		x, err := v.Eval(c)
		if err != nil {
			return "", nil, err
		}
		vals = append(vals, x)
	}
	if len(vals) == 0 {
		vals = append(vals, "")
	}
	if s.header && len(vals) > 1 && !separateHeaders[name] {
		vals = []string{strings.Join(vals, ",")}
	}
	return name, vals, nil
}

// apply changes m (an http.Header or url.Values) by the exists action.
func (s *namedSet) apply(m map[string][]string, name string, vals []string) {
	_, exists := m[name]
	switch s.action {
	case policy.ExistsDelete:
		delete(m, name)
	case policy.ExistsSkip:
		if !exists {
			m[name] = vals
		}
	case policy.ExistsAppend:
		m[name] = append(m[name], vals...)
	default:
		m[name] = vals
	}
}

// validHeaderName refuses names that are not tokens and the headers APIM does not let
// set-header modify, for names computed at run time.
func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	switch strings.ToLower(strings.ReplaceAll(n, "-", "")) {
	case "connection", "contentlength", "keepalive", "transferencoding":
		return false
	}
	return true
}

// setHeaderStep is <set-header>: it changes the headers sent to the backend.
type setHeaderStep struct {
	in *info
	namedSet
}

func (b *builder) setHeader(in *info, p *policy.SetHeader) (step, error) {
	ns, err := compileNamedSet(p.Name, p.ExistsAction, p.Values, true)
	if err != nil {
		return nil, err
	}
	return &setHeaderStep{in: in, namedSet: ns}, nil
}

func (s *setHeaderStep) run(c *runCtx) *Response {
	name, vals, err := s.resolve(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if c.req.Header == nil {
		c.req.Header = make(http.Header)
	}
	s.apply(c.req.Header, name, vals)
	return nil
}

// setQueryStep is <set-query-parameter>: it changes the query sent to the backend. Several
// values become repeated parameters.
type setQueryStep struct {
	in *info
	namedSet
}

func (b *builder) setQueryParameter(in *info, p *policy.SetQueryParameter) (step, error) {
	ns, err := compileNamedSet(p.Name, p.ExistsAction, p.Values, false)
	if err != nil {
		return nil, err
	}
	return &setQueryStep{in: in, namedSet: ns}, nil
}

func (s *setQueryStep) run(c *runCtx) *Response {
	name, vals, err := s.resolve(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if c.req.Query == nil {
		c.req.Query = make(url.Values)
	}
	s.apply(c.req.Query, name, vals)
	return nil
}

// backendStep is <set-backend-service>: it replaces the backend base URL, or names the backend
// entity the gateway sends the request to (Request.BackendID).
type backendStep struct {
	in       *info
	url      *url.URL  // a literal base-url or a literal backend-id's URL (nil for a pool)
	id       string    // a literal backend-id, lower-cased
	dynURL   expr.Text // base-url expression
	dynID    expr.Text // backend-id expression
	isID     bool
	backends map[string]string
}

func (b *builder) setBackendService(in *info, p *policy.SetBackendService) (step, error) {
	s := &backendStep{in: in, backends: b.env.Backends}
	if p.BackendID != "" {
		id, err := expr.CompileText(strings.TrimSpace(p.BackendID))
		if err != nil {
			return nil, fmt.Errorf("backend-id: %w", err)
		}
		if b.env.Backends == nil {
			return nil, errors.New("backend-id is not supported: no backend entities are configured; use base-url")
		}
		s.isID = true
		lit, ok := id.Literal()
		if !ok {
			s.dynID = id
			return s, nil
		}
		s.id = strings.ToLower(lit)
		if s.url, err = s.lookup(s.id); err != nil {
			return nil, fmt.Errorf("backend-id: %w", err)
		}
		return s, nil
	}
	t, err := expr.CompileText(strings.TrimSpace(p.BaseURL))
	if err != nil {
		return nil, fmt.Errorf("base-url: %w", err)
	}
	lit, ok := t.Literal()
	if !ok {
		s.dynURL = t
		return s, nil
	}
	if s.url, err = parseBackendURL(lit); err != nil {
		return nil, fmt.Errorf("base-url: %w", err)
	}
	return s, nil
}

// lookup returns the URL of the backend entity id (lower-cased), nil for a pool, whose member is
// chosen by the gateway.
func (s *backendStep) lookup(id string) (*url.URL, error) {
	raw, ok := s.backends[id]
	if !ok {
		return nil, fmt.Errorf("the backend '%s' is not defined", id)
	}
	if raw == "" {
		return nil, nil
	}
	u, err := parseBackendURL(raw)
	if err != nil {
		return nil, fmt.Errorf("backend '%s': %w", id, err)
	}
	return u, nil
}

// parseBackendURL parses an absolute http, https, ws or wss URL.
func parseBackendURL(raw string) (*url.URL, error) { return backend.ParseURL(raw) }

func (s *backendStep) run(c *runCtx) *Response {
	u, id := s.url, s.id
	switch {
	case s.isID && id == "":
		raw, err := s.dynID.Eval(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		id = strings.ToLower(strings.TrimSpace(raw))
		if u, err = s.lookup(id); err != nil {
			return c.failure(s.in, err)
		}
	case u == nil && !s.isID:
		raw, err := s.dynURL.Eval(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		if u, err = parseBackendURL(raw); err != nil {
			return c.failure(s.in, err)
		}
	}
	c.req.BackendID = id
	c.req.Backend = nil
	if u != nil {
		cp := *u // the caller owns req.Backend and may change it
		c.req.Backend = &cp
	}
	return nil
}

// returnStep is <return-response>: it ends the pipeline with a response built from
// set-status, set-header and set-body. The reason phrase of set-status is not sent: HTTP/2 has
// none and Go's server writes the standard one.
type returnStep struct {
	in      *info
	status  expr.Number
	headers []namedSet
	body    expr.Text
}

func (b *builder) returnResponse(in *info, p *policy.ReturnResponse) (step, error) {
	if p.ResponseVariableName != "" {
		return nil, errors.New("response-variable-name is not supported: no policy on the handshake creates response variables")
	}
	s := &returnStep{in: in, status: expr.LiteralNumber(http.StatusOK)}
	var err error
	if p.SetStatus != nil {
		if s.status, err = expr.CompileNumber("set-status code", p.SetStatus.Code, http.StatusOK); err != nil {
			return nil, err
		}
	}
	for _, h := range p.SetHeaders {
		ns, err := compileNamedSet(h.Name, h.ExistsAction, h.Values, true)
		if err != nil {
			return nil, fmt.Errorf("set-header: %w", err)
		}
		s.headers = append(s.headers, ns)
	}
	if sb := p.SetBody; sb != nil {
		if strings.EqualFold(sb.Template, "liquid") {
			return nil, errors.New("set-body: Liquid templates are not supported")
		}
		if s.body, err = expr.CompileText(sb.Body); err != nil {
			return nil, fmt.Errorf("set-body: %w", err)
		}
	}
	return s, nil
}

func (s *returnStep) run(c *runCtx) *Response {
	status, err := s.status.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	if status < 100 || status > 599 {
		return c.failure(s.in, errors.New("The status code must be between 100 and 599."))
	}
	r := &Response{Status: int(status), Header: make(http.Header), Source: s.in.name}
	for i := range s.headers {
		h := &s.headers[i]
		name, vals, err := h.resolve(c)
		if err != nil {
			return c.failure(s.in, err)
		}
		h.apply(r.Header, name, vals)
	}
	body, err := s.body.Eval(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	r.Body = []byte(body)
	return r
}

// chooseStep is <choose>: the first branch whose condition holds runs, else otherwise.
type chooseStep struct {
	in        *info
	whens     []whenBranch
	otherwise []step
}

type whenBranch struct {
	cond  *expr.Expr
	lit   bool // the condition when cond is nil
	steps []step
}

func (b *builder) choose(in *info, p *policy.Choose) (step, error) {
	s, path := &chooseStep{in: in}, in.path
	for i, w := range p.Whens {
		e, lit, err := expr.CompileCondition("condition", w.Condition, expr.Options{})
		if err != nil {
			return nil, fmt.Errorf("when[%d]: %w", i+1, err)
		}
		br := whenBranch{cond: e, lit: lit}
		if br.steps, err = b.nested(w.Policies, fmt.Sprintf("%s/when[%d]", path, i+1)); err != nil {
			return nil, err
		}
		s.whens = append(s.whens, br)
	}
	var err error
	if s.otherwise, err = b.nested(p.Otherwise, path+"/otherwise"); err != nil {
		return nil, err
	}
	return s, nil
}

// nested compiles the policies of a choose branch.
func (b *builder) nested(ps []policy.Policy, path string) ([]step, error) {
	b.depth++
	defer func() { b.depth-- }()
	var steps []step
	for i, p := range ps {
		s, err := b.policy(p, fmt.Sprintf("%s[%d]", path, i+1), false)
		if err != nil {
			return nil, err
		}
		if s != nil {
			steps = append(steps, s)
		}
	}
	return steps, nil
}

func (s *chooseStep) run(c *runCtx) *Response {
	for i := range s.whens {
		w := &s.whens[i]
		ok := w.lit
		if w.cond != nil {
			var err error
			if ok, err = w.cond.EvalBool(c, "The condition"); err != nil {
				return c.failure(s.in, err)
			}
		}
		if ok {
			return runSteps(c, w.steps)
		}
	}
	return runSteps(c, s.otherwise)
}

// setVariableStep is <set-variable>: a literal value is stored as a string, an expression's
// value with its type (string, int, bool, Jwt, ...).
type setVariableStep struct {
	in    *info
	name  string
	value expr.Text
}

func (b *builder) setVariable(in *info, p *policy.SetVariable) (step, error) {
	v, err := expr.CompileText(p.Value)
	if err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	return &setVariableStep{in: in, name: p.Name, value: v}, nil
}

func (s *setVariableStep) run(c *runCtx) *Response {
	v, err := s.value.EvalAny(c)
	if err != nil {
		return c.failure(s.in, err)
	}
	c.setVar(s.name, v)
	return nil
}
