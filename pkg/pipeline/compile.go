package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"gatehouse.dev/pkg/pipeline/ratecount"
	"gatehouse.dev/pkg/policy"
)

// Scopes are the policy documents that apply to one operation, broadest first. A nil document
// is an absent scope. IDs name the scopes in counter keys, logs and errors.
type Scopes struct {
	Global, Product, API, Operation *policy.Document
	IDs                             ScopeIDs
}

// ScopeIDs name the product, API and operation whose documents Scopes holds, e.g. "starter",
// "echo" and "echo/onHandshake". They make rate-limit and quota counters of different
// products distinct, so they must be stable across configuration changes.
type ScopeIDs struct {
	Product, API, Operation string
}

// Env is what compiled policies need besides their XML.
type Env struct {
	// NamedValues resolves {{name}} references. Keys are lower-case names and display names;
	// a reference is looked up as written, then in lower case. A missing one fails Compile.
	NamedValues map[string]string
	// Counters holds rate-limit and quota state; required when a limit policy is present.
	Counters ratecount.Counters
	// Keys fetches and caches openid-config signing keys; required when validate-jwt uses
	// openid-config.
	Keys *KeySource
	// FetchCheck, when set, decides at compile time each URL a policy fetches by itself
	// (validate-jwt's openid-config, named values substituted): management sets it to the
	// operator's egress policy (egress.Policy.CheckURL), so that a policy that would fetch from
	// a denied address is refused when written. Nil accepts every URL: nodes decide when they
	// fetch, on the address each name resolves to (their egress dialer).
	FetchCheck func(*url.URL) error
	// Backends maps lower-cased backend entity names to their URLs ("" for a pool) for
	// set-backend-service backend-id. Nil means backend entities are not configured and
	// backend-id fails Compile; a literal backend-id missing from it fails Compile too.
	Backends map[string]string
	// Fragments resolves <include-fragment fragment-id="x"/>: the service's policy fragments
	// by lower-cased id. A missing one fails Compile, as does one whose Err is set.
	Fragments map[string]Fragment
	// Secrets are the values of secret named values. A compile error never quotes one: each
	// is replaced with "***" (values shorter than four bytes excepted).
	Secrets []string
	// Log receives expression failures and key-fetch problems. Nil discards them.
	Log *slog.Logger
	// Now is the clock used when Request.Now is zero. Nil means time.Now.
	Now func() time.Time
}

// Pipeline is the compiled inbound policy of one operation. It is immutable and safe for
// concurrent use.
type Pipeline struct {
	// failure is set on a pipeline made by Failed, which refuses every request.
	failure error
	steps   []step
	skipped []string
	session SessionLimits
	log     *slog.Logger
	now     func() time.Time
	// waits and setsBackend describe the steps (Waits, SetsBackend).
	waits, setsBackend bool
}

// Skipped returns the element names of the unsupported policies that Compile skipped, in
// document order, one per occurrence. The caller must not modify the slice.
func (p *Pipeline) Skipped() []string { return p.skipped }

// Run applies the policies to req in document order. It first sets req.Session to the
// composed websocket-limits. It returns nil when the request may proceed (req.Header,
// req.Query, req.Backend, req.ResponseHeader and req.TokenExpiry may have changed), or the response for the client: the first rejection, a return-response, or a 500
// when a policy expression fails at run time. Run may block fetching signing keys; ctx bounds
// that.
func (p *Pipeline) Run(ctx context.Context, req *Request) *Response {
	if p == nil {
		return nil
	}
	if p.failure != nil {
		return p.refuse(ctx, req)
	}
	req.Session = p.session
	c := &runCtx{ctx: ctx, req: req, now: req.Now, log: p.log}
	if c.now.IsZero() {
		c.now = p.now()
	}
	return runSteps(c, p.steps)
}

func runSteps(c *runCtx, steps []step) *Response {
	for _, s := range steps {
		if r := s.run(c); r != nil {
			return r
		}
	}
	return nil
}

// step is one compiled policy.
type step interface {
	run(c *runCtx) *Response
}

// runCtx is the per-request state of Run.
type runCtx struct {
	ctx    context.Context
	req    *Request
	now    time.Time
	log    *slog.Logger
	ip     string
	ipDone bool
	// counted holds the by-key counter keys already incremented by this request, which
	// later policies with the same key check without counting again.
	counted []string
}

// clientIP returns the caller's address as text, computed once per request.
func (c *runCtx) clientIP() string {
	if !c.ipDone {
		if c.req.ClientIP.IsValid() {
			c.ip = c.req.ClientIP.Unmap().String()
		}
		c.ipDone = true
	}
	return c.ip
}

// setVar stores a variable, allocating the map on first use.
func (c *runCtx) setVar(name string, v any) {
	if c.req.Variables == nil {
		c.req.Variables = make(map[string]any)
	}
	c.req.Variables[name] = v
}

// responseHeader returns req.ResponseHeader, allocating it on first use.
func (c *runCtx) responseHeader() http.Header {
	if c.req.ResponseHeader == nil {
		c.req.ResponseHeader = make(http.Header)
	}
	return c.req.ResponseHeader
}

// info identifies a compiled policy: its element name and a stable identity (scope and
// position, or scope and id attribute) used in counter keys and logs.
type info struct {
	name string
	id   string
	// path is the policy's position, e.g. "api:echo/inbound[2]/when[1][1]", under which
	// a choose compiles its branches.
	path string
}

// failure is the response when a policy expression fails at run time: APIM answers 500
// without an on-error section. The cause goes to the log, not to the client.
func (c *runCtx) failure(in *info, err error) *Response {
	c.log.LogAttrs(c.ctx, slog.LevelWarn, "policy expression failed",
		slog.String("policy", in.name), slog.String("policy_id", in.id), slog.String("error", err.Error()))
	return &Response{
		Status:  http.StatusInternalServerError,
		Message: "Internal server error",
		Source:  in.name,
		Reason:  "ExpressionValueEvaluationFailure",
	}
}

// CompileError reports a policy that cannot be compiled.
type CompileError struct {
	// Scope is "global", "product:<id>", "api:<id>" or "operation:<id>".
	Scope string
	// Policy is the element name, e.g. "rate-limit".
	Policy string
	// Pos is where the element starts in its scope's document.
	Pos policy.Pos
	Err error
}

func (e *CompileError) Error() string {
	return fmt.Sprintf("%s inbound: %s on line %d, column %d: %v", e.Scope, e.Policy, e.Pos.Line, e.Pos.Column, e.Err)
}

func (e *CompileError) Unwrap() error { return e.Err }

// Compile composes the inbound sections of s through <base/> and compiles every policy. The
// narrowest scope present comes first; <base/> inlines the parent scope's inbound section at
// its position; a section without <base/> stops inheritance. A scope whose document is nil or
// has no inbound section inherits its parent's unchanged, as if it held <base/> alone.
// Unsupported policies are skipped (see Skipped). Policies run in document order and the
// first rejection wins. Bandwidth limits of quota and quota-by-key are not enforced (a
// handshake has no body to measure); their call limits are. websocket-limits compiles to no
// step but to the pipeline's SessionLimits: for each attribute the narrowest scope that the
// composition reaches and that sets it wins, wherever <base/> stands, and message rates
// accumulate (docs/policies.md). Errors are *CompileError.
func Compile(s Scopes, env Env) (*Pipeline, error) {
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	b := &builder{
		env:    env,
		reg:    policy.NewRegistry(),
		docs:   [4]*policy.Document{s.Global, s.Product, s.API, s.Operation},
		scopes: [4]string{"global", scopeName("product", s.IDs.Product), scopeName("api", s.IDs.API), scopeName("operation", s.IDs.Operation)},
	}
	steps, err := b.section(len(b.docs) - 1)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{steps: steps, skipped: b.skipped, session: b.composeSession(), log: env.Log, now: env.Now}
	p.waits, p.setsBackend = describe(steps)
	return p, nil
}

// Waits reports whether Run may wait for something other than the processor: a rate-limit,
// quota or connection counter (the fleet shares them over the network), or signing keys
// fetched from an openid-config URL. A pipeline that does not wait can run on an event loop
// (the gateway's REST requests on its loops).
func (p *Pipeline) Waits() bool { return p != nil && p.waits }

// SetsBackend reports whether a set-backend-service policy may change the request's backend.
func (p *Pipeline) SetsBackend() bool { return p != nil && p.setsBackend }

// describe walks steps, choose branches and included fragments, for Waits and SetsBackend.
func describe(steps []step) (waits, setsBackend bool) {
	for _, s := range steps {
		var w, b bool
		switch s := s.(type) {
		case *rateLimitStep, *rateLimitByKeyStep, *quotaStep, *quotaByKeyStep, *limitConnectionsStep:
			w = true
		case *validateJWTStep:
			w = len(s.openid) > 0
		case *backendStep:
			b = true
		case *chooseStep:
			for _, br := range s.whens {
				bw, bb := describe(br.steps)
				w, b = w || bw, b || bb
			}
			ow, ob := describe(s.otherwise)
			w, b = w || ow, b || ob
		case sequenceStep:
			w, b = describe(s)
		}
		waits, setsBackend = waits || w, setsBackend || b
	}
	return waits, setsBackend
}

func scopeName(kind, id string) string {
	if id == "" {
		return kind
	}
	return kind + ":" + id
}

// builder holds the state of one Compile.
type builder struct {
	env     Env
	reg     *policy.Registry
	docs    [4]*policy.Document
	scopes  [4]string
	skipped []string
	// sessions holds the websocket-limits of each scope (0 global … 3 operation) that the
	// composition reached; nil for the others.
	sessions [4]*sessionScope
	// where is the policy being compiled, for errors: its scope's name and level, and how
	// many choose elements enclose it.
	scope string
	level int
	depth int
	// expanded counts the bytes named values added to each level's document.
	expanded [4]int
	// secret names the secret named value substituted into the policy being compiled.
	secret string
}

// section returns the steps of the inbound section at level (0 global … 3 operation) with
// <base/> expanded.
func (b *builder) section(level int) ([]step, error) {
	for level >= 0 && (b.docs[level] == nil || b.docs[level].Inbound == nil) {
		level--
	}
	if level < 0 {
		return nil, nil
	}
	var steps []step
	for i, p := range b.docs[level].Inbound.Policies {
		if _, ok := p.(*policy.Base); ok {
			parent, err := b.section(level - 1)
			if err != nil {
				return nil, err
			}
			steps = append(steps, parent...)
			continue
		}
		b.scope, b.level = b.scopes[level], level
		s, err := b.policy(p, b.scopes[level]+"/"+fmt.Sprintf("inbound[%d]", i+1), true)
		if err != nil {
			return nil, err
		}
		if s != nil {
			steps = append(steps, s)
		}
	}
	return steps, nil
}

// policy compiles one policy at path. substitute is false for policies nested in choose,
// whose named values were substituted with their parent.
func (b *builder) policy(p policy.Policy, path string, substitute bool) (step, error) {
	if u, ok := p.(*policy.Unsupported); ok {
		b.skipped = append(b.skipped, u.Name)
		return nil, nil
	}
	name, pos := p.ElementName(), p.Position()
	if substitute {
		// Policies nested in choose were substituted with it: they keep its b.secret.
		defer func() { b.secret = "" }()
	}
	fail := func(err error) error {
		if b.secret != "" {
			// The message could quote any part of the value, trimmed, split or escaped.
			err = fmt.Errorf("does not compile with the secret named value '%s' substituted (the details are withheld, so as not to reveal it)", b.secret)
		}
		return &CompileError{Scope: b.scope, Policy: name, Pos: pos, Err: redact(err, b.env.Secrets)}
	}
	if substitute {
		sp, err := b.namedValues(p)
		if err != nil {
			return nil, fail(err)
		}
		p = sp
	}
	in := &info{name: p.ElementName(), id: path, path: path}
	if id := policyID(p); id != "" {
		in.id = b.scope + "/id:" + id
	}
	compile, ok := compilers[name]
	if !ok {
		return nil, fail(errors.New("the policy is not supported by the gateway"))
	}
	s, err := compile(b, in, p)
	if err != nil {
		var ce *CompileError
		if errors.As(err, &ce) {
			return nil, err // a nested policy's error names that policy
		}
		return nil, fail(err)
	}
	return s, nil
}

// policyID returns the id attribute of a policy, if any.
func policyID(p policy.Policy) string {
	id, _ := p.Encode().Attr("id")
	return id
}

// MaxNamedValueExpansion bounds the bytes that {{named value}} references may add to one
// policy document (APIM's document limit): a document referring to a long value thousands of
// times would otherwise cost memory and time on management and on every node, per composed
// pipeline, at each change of the value.
const MaxNamedValueExpansion = policy.MaxSize

// substitution is what namedValues learnt while replacing references.
type substitution struct {
	// missing is the first name that is not defined.
	missing string
	// secret is the name of a secret named value that was substituted, if any.
	secret string
}

// namedValues returns p with its {{named value}} references replaced, decoded again so that
// substituted values are validated like literals. Unsupported policies nested in choose are
// left alone: they are skipped, so their references need not resolve. It sets b.secret to the
// secret named value substituted into p, if any, so that errors about p show none of it.
func (b *builder) namedValues(p policy.Policy) (policy.Policy, error) {
	e := p.Encode()
	var sub substitution
	e2, changed := b.substitute(e, &sub)
	if sub.missing != "" {
		return nil, fmt.Errorf("the named value '%s' is not defined", sub.missing)
	}
	if b.expanded[b.level] > MaxNamedValueExpansion {
		return nil, fmt.Errorf("named values expand the document by more than %d bytes", MaxNamedValueExpansion)
	}
	b.secret = sub.secret
	if !changed {
		return p, nil
	}
	p2, err := b.reg.Decode(e2)
	if se := (*policy.SyntaxError)(nil); errors.As(err, &se) {
		return nil, fmt.Errorf("after named value substitution: %s", se.Msg)
	}
	return p2, err
}

// substitute returns a copy of e with named values replaced, and whether anything changed.
// What it adds counts toward b.expanded of the current level; past MaxNamedValueExpansion it
// stops substituting.
func (b *builder) substitute(e *policy.Element, sub *substitution) (*policy.Element, bool) {
	if b.unsupported(e.Name) {
		return e, false
	}
	cp := *e
	changed := false
	replace := func(s string) string {
		if len(policy.NamedValueRefs(s)) == 0 {
			return s
		}
		changed = true
		return policy.ReplaceNamedValues(s, func(name string) string {
			v, ok := b.env.NamedValues[name]
			if !ok {
				v, ok = b.env.NamedValues[strings.ToLower(name)]
			}
			if !ok && sub.missing == "" {
				sub.missing = name
			}
			if b.expanded[b.level] += len(v); b.expanded[b.level] > MaxNamedValueExpansion {
				return ""
			}
			if sub.secret == "" && b.isSecret(v) {
				sub.secret = name
			}
			return v
		})
	}
	cp.Attrs = make([]policy.Attr, len(e.Attrs))
	for i, a := range e.Attrs {
		cp.Attrs[i] = policy.Attr{Name: a.Name, Value: replace(a.Value)}
	}
	cp.Nodes = make([]policy.Node, len(e.Nodes))
	for i, n := range e.Nodes {
		if n.Elem != nil {
			c, ch := b.substitute(n.Elem, sub)
			changed = changed || ch
			cp.Nodes[i] = policy.Node{Elem: c}
			continue
		}
		cp.Nodes[i] = policy.Node{Text: replace(n.Text)}
	}
	return &cp, changed
}

// isSecret reports whether v is the value of a secret named value.
func (b *builder) isSecret(v string) bool {
	return v != "" && slices.Contains(b.env.Secrets, v)
}

// unsupported reports whether the registry decodes elements called name to *Unsupported.
func (b *builder) unsupported(name string) bool {
	p, err := b.reg.Decode(&policy.Element{Name: name})
	_, ok := p.(*policy.Unsupported)
	return err == nil && ok
}
