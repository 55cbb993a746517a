package expr

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Expr is a compiled policy expression (see EXPRESSIONS.md): parsed and type-checked once,
// evaluated per request by walking the tree, without reflection. It is immutable and safe for
// concurrent use.
type Expr struct {
	root node
	typ  typ
	// usesResponse is set when the expression reads context.Response, which does not exist
	// before the backend answers.
	usesResponse bool
}

// Options says what an expression may use.
type Options struct {
	// AllowResponse lets context.Response parse (rate-limit-by-key's increment-condition);
	// evaluating it is still an error, so callers check UsesResponse.
	AllowResponse bool
}

// typ is the static type of an expression, as far as the compiler knows it.
type typ uint8

const (
	tyObject typ = iota // unknown until run time (context.Variables["x"])
	tyString
	tyInt
	tyBool
	tyNull
	tyJwt
	tyClaims
	tyStrings
	tyTime
)

func (t typ) String() string {
	switch t {
	case tyString:
		return "string"
	case tyInt:
		return "int"
	case tyBool:
		return "bool"
	case tyNull:
		return "null"
	case tyJwt:
		return "Jwt"
	case tyClaims:
		return "IReadOnlyDictionary<string, string[]>"
	case tyStrings:
		return "string[]"
	case tyTime:
		return "DateTime"
	}
	return "object"
}

// known reports whether the compiler knows the concrete type.
func (t typ) known() bool { return t != tyObject && t != tyNull }

// maxExprDepth bounds nesting so that hostile expressions cannot exhaust the stack.
const maxExprDepth = 100

// Error is a policy expression that does not compile: Column is the 1-based character
// position in the attribute value or element text that holds the expression.
type Error struct {
	Column int
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("expression error at column %d: %s", e.Column, e.Msg)
}

// Compile compiles a policy expression, "@(...)" after optional whitespace. Multi-statement
// "@{...}" blocks are refused. Errors are *Error.
func Compile(src string, opts Options) (*Expr, error) {
	e, err := parseExprAt(src, opts)
	if err != nil {
		if xe, ok := err.(*exprError); ok {
			return nil, &Error{Column: utf8.RuneCountInString(src[:min(max(xe.pos, 0), len(src))]) + 1, Msg: xe.msg}
		}
		return nil, err
	}
	return e, nil
}

// UsesResponse reports whether e reads context.Response, which only exists once the backend
// has answered: evaluating such an expression before then fails.
func (e *Expr) UsesResponse() bool { return e.usesResponse }

// EvalAny evaluates e in c and returns the value as context.Variables stores it: nil, string,
// int, bool, time.Time, *Jwt, []string, or the Go value read from a variable.
func (e *Expr) EvalAny(c Context) (any, error) {
	v, err := e.root.eval(c)
	if err != nil {
		return nil, err
	}
	return v.toAny(), nil
}

// EvalBool evaluates e in c, which must give a bool; what names e in the error otherwise,
// e.g. "The condition".
func (e *Expr) EvalBool(c Context, what string) (bool, error) {
	return evalBool(c, e.root, what)
}

func parseExprAt(src string, opts Options) (*Expr, error) {
	i := 0
	for i < len(src) && (src[i] == ' ' || src[i] == '\t' || src[i] == '\r' || src[i] == '\n') {
		i++
	}
	switch {
	case strings.HasPrefix(src[i:], "@{"):
		return nil, errAt(i, "Multi-statement expressions @{...} are not supported; use a single @(...) expression.")
	case !strings.HasPrefix(src[i:], "@("):
		return nil, errAt(i, "An expression must start with '@('.")
	}
	toks, err := lex(src, i+2, len(src))
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks, opts: opts}
	o, err := p.ternary()
	if err != nil {
		return nil, err
	}
	n, t, err := p.val(o)
	if err != nil {
		return nil, err
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	if tk := p.peek(); tk.kind != tokEOF {
		return nil, errAt(tk.pos, "Unexpected text after the end of the expression.")
	}
	return &Expr{root: n, typ: t, usesResponse: p.usesResponse}, nil
}

// parseSub parses an interpolation hole src[start:end].
func (p *parser) parseSub(start, end int) (node, error) {
	toks, err := lex(p.src, start, end)
	if err != nil {
		return nil, err
	}
	sub := &parser{src: p.src, toks: toks, opts: p.opts, depth: p.depth}
	o, err := sub.ternary()
	if err != nil {
		return nil, err
	}
	n, _, err := sub.val(o)
	if err != nil {
		return nil, err
	}
	if tk := sub.peek(); tk.kind != tokEOF {
		return nil, sub.unexpected()
	}
	p.usesResponse = p.usesResponse || sub.usesResponse
	return n, nil
}

type parser struct {
	src          string
	toks         []token
	i            int
	depth        int
	opts         Options
	usesResponse bool
}

// operand is a parsed sub-expression: a value node with its static type, or a context
// namespace (context.Request, ...) that only member access may follow.
type operand struct {
	n   node
	t   typ
	ns  nsID
	pos int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) peekAt(k int) token {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tokPunct && t.s == s
}

func (p *parser) expect(s string) error {
	if !p.isPunct(s) {
		t := p.peek()
		if t.kind == tokEOF {
			return errAt(t.pos, "Expected '%s' but the expression ended.", s)
		}
		return errAt(t.pos, "Expected '%s'.", s)
	}
	p.next()
	return nil
}

func (p *parser) unexpected() error {
	t := p.peek()
	switch t.kind {
	case tokEOF:
		return errAt(t.pos, "Unexpected end of the expression.")
	case tokPunct, tokIdent:
		return errAt(t.pos, "Unexpected '%s'.", t.s)
	}
	return errAt(t.pos, "Unexpected literal.")
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > maxExprDepth {
		return errAt(pos, "The expression is nested too deeply.")
	}
	return nil
}

// val returns the value node of o, refusing a bare namespace.
func (p *parser) val(o operand) (node, typ, error) {
	if o.ns != nsNone {
		return nil, 0, errAt(o.pos, "'%s' is not a value.", nsNames[o.ns])
	}
	return o.n, o.t, nil
}

// valOf parses with f and returns a value node.
func (p *parser) valOf(f func() (operand, error)) (node, typ, int, error) {
	pos := p.peek().pos
	o, err := f()
	if err != nil {
		return nil, 0, pos, err
	}
	n, t, err := p.val(o)
	return n, t, pos, err
}

func (p *parser) ternary() (operand, error) {
	pos := p.peek().pos
	if err := p.enter(pos); err != nil {
		return operand{}, err
	}
	defer func() { p.depth-- }()
	c, err := p.coalesce()
	if err != nil || !p.isPunct("?") {
		return c, err
	}
	cn, ct, err := p.val(c)
	if err != nil {
		return operand{}, err
	}
	if err := wantType(ct, tyBool, c.pos, "The condition"); err != nil {
		return operand{}, err
	}
	p.next()
	a, at, _, err := p.valOf(p.ternary)
	if err != nil {
		return operand{}, err
	}
	if err := p.expect(":"); err != nil {
		return operand{}, err
	}
	b, bt, _, err := p.valOf(p.ternary)
	if err != nil {
		return operand{}, err
	}
	return operand{n: &condNode{c: cn, a: a, b: b}, t: unify(at, bt), pos: pos}, nil
}

// unify is the type of a value that is either a or b.
func unify(a, b typ) typ {
	switch {
	case a == b:
		return a
	case a == tyNull:
		return b
	case b == tyNull:
		return a
	}
	return tyObject
}

func (p *parser) coalesce() (operand, error) {
	l, err := p.or()
	if err != nil || !p.isPunct("??") {
		return l, err
	}
	ln, lt, err := p.val(l)
	if err != nil {
		return operand{}, err
	}
	p.next()
	r, rt, _, err := p.valOf(p.coalesce)
	if err != nil {
		return operand{}, err
	}
	return operand{n: &coalesceNode{l: ln, r: r}, t: unify(lt, rt), pos: l.pos}, nil
}

func (p *parser) or() (operand, error) {
	return p.logical("||", p.and)
}

func (p *parser) and() (operand, error) {
	return p.logical("&&", p.equality)
}

func (p *parser) logical(op string, sub func() (operand, error)) (operand, error) {
	l, err := sub()
	if err != nil || !p.isPunct(op) {
		return l, err
	}
	ln, lt, err := p.val(l)
	if err != nil {
		return operand{}, err
	}
	if err := wantType(lt, tyBool, l.pos, "The operand of '"+op+"'"); err != nil {
		return operand{}, err
	}
	for p.isPunct(op) {
		p.next()
		r, rt, rpos, err := p.valOf(sub)
		if err != nil {
			return operand{}, err
		}
		if err := wantType(rt, tyBool, rpos, "The operand of '"+op+"'"); err != nil {
			return operand{}, err
		}
		ln = &logicNode{and: op == "&&", l: ln, r: r}
	}
	return operand{n: ln, t: tyBool, pos: l.pos}, nil
}

func (p *parser) equality() (operand, error) {
	l, err := p.relational()
	if err != nil || !(p.isPunct("==") || p.isPunct("!=")) {
		return l, err
	}
	ln, lt, err := p.val(l)
	if err != nil {
		return operand{}, err
	}
	for p.isPunct("==") || p.isPunct("!=") {
		op := p.next()
		r, rt, _, err := p.valOf(p.relational)
		if err != nil {
			return operand{}, err
		}
		if lt.known() && rt.known() && lt != rt {
			return operand{}, errAt(op.pos, "Operator '%s' cannot be applied to operands of type '%s' and '%s'.", op.s, lt, rt)
		}
		ln, lt = &eqNode{not: op.s == "!=", l: ln, r: r}, tyBool
	}
	return operand{n: ln, t: tyBool, pos: l.pos}, nil
}

func (p *parser) relational() (operand, error) {
	l, err := p.additive()
	if err != nil {
		return l, err
	}
	for p.isPunct("<") || p.isPunct("<=") || p.isPunct(">") || p.isPunct(">=") {
		ln, lt, err := p.val(l)
		if err != nil {
			return operand{}, err
		}
		op := p.next()
		r, rt, _, err := p.valOf(p.additive)
		if err != nil {
			return operand{}, err
		}
		for _, t := range []typ{lt, rt} {
			if t.known() && t != tyInt && t != tyTime || t == tyNull {
				return operand{}, errAt(op.pos, "Operator '%s' cannot be applied to operands of type '%s' and '%s'.", op.s, lt, rt)
			}
		}
		l = operand{n: &arithNode{op: op.s, l: ln, r: r}, t: tyBool, pos: l.pos}
	}
	return l, nil
}

func (p *parser) additive() (operand, error) {
	l, err := p.multiplicative()
	if err != nil {
		return l, err
	}
	for p.isPunct("+") || p.isPunct("-") {
		ln, lt, err := p.val(l)
		if err != nil {
			return operand{}, err
		}
		op := p.next()
		r, rt, _, err := p.valOf(p.multiplicative)
		if err != nil {
			return operand{}, err
		}
		if op.s == "+" && (lt == tyString || rt == tyString) {
			l = operand{n: &concatNode{l: ln, r: r}, t: tyString, pos: l.pos}
			continue
		}
		t, err := arithType(op, lt, rt)
		if err != nil {
			return operand{}, err
		}
		l = operand{n: &arithNode{op: op.s, l: ln, r: r}, t: t, pos: l.pos}
	}
	return l, nil
}

// arithType checks the operands of an arithmetic operator. "+" on unknown types may turn out
// to be a concatenation at run time.
func arithType(op token, lt, rt typ) (typ, error) {
	for _, t := range []typ{lt, rt} {
		if t.known() && t != tyInt || t == tyNull && op.s != "+" {
			return 0, errAt(op.pos, "Operator '%s' cannot be applied to operands of type '%s' and '%s'.", op.s, lt, rt)
		}
	}
	if op.s == "+" && (lt != tyInt || rt != tyInt) {
		return tyObject, nil
	}
	return tyInt, nil
}

func (p *parser) multiplicative() (operand, error) {
	l, err := p.unary()
	if err != nil {
		return l, err
	}
	for p.isPunct("*") || p.isPunct("/") || p.isPunct("%") {
		ln, lt, err := p.val(l)
		if err != nil {
			return operand{}, err
		}
		op := p.next()
		r, rt, _, err := p.valOf(p.unary)
		if err != nil {
			return operand{}, err
		}
		t, err := arithType(op, lt, rt)
		if err != nil {
			return operand{}, err
		}
		l = operand{n: &arithNode{op: op.s, l: ln, r: r}, t: t, pos: l.pos}
	}
	return l, nil
}

// typeNames are the type names accepted in casts and generic arguments.
var typeNames = map[string]typ{
	"string": tyString, "String": tyString,
	"int": tyInt, "long": tyInt, "Int32": tyInt, "Int64": tyInt,
	"bool": tyBool, "Boolean": tyBool,
	"Jwt":      tyJwt,
	"DateTime": tyTime,
	"object":   tyObject, "Object": tyObject,
}

func (p *parser) unary() (operand, error) {
	t := p.peek()
	if err := p.enter(t.pos); err != nil {
		return operand{}, err
	}
	defer func() { p.depth-- }()
	if t.kind == tokPunct {
		switch t.s {
		case "!", "-":
			p.next()
			x, xt, _, err := p.valOf(p.unary)
			if err != nil {
				return operand{}, err
			}
			want := tyBool
			if t.s == "-" {
				want = tyInt
			}
			if err := wantType(xt, want, t.pos, "The operand of '"+t.s+"'"); err != nil {
				return operand{}, err
			}
			return operand{n: &unaryNode{neg: t.s == "-", x: x}, t: want, pos: t.pos}, nil
		case "(":
			if to, ok := p.castAhead(); ok {
				p.i += 3
				x, xt, _, err := p.valOf(p.unary)
				if err != nil {
					return operand{}, err
				}
				if xt.known() && to.known() && xt != to {
					return operand{}, errAt(t.pos, "Cannot convert type '%s' to '%s'.", xt, to)
				}
				return operand{n: &castNode{to: to, x: x}, t: to, pos: t.pos}, nil
			}
		}
	}
	return p.postfix()
}

// castAhead reports whether the next tokens are "(" TypeName ")" followed by something that
// can start an operand, i.e. a cast.
func (p *parser) castAhead() (typ, bool) {
	name, closing, after := p.peekAt(1), p.peekAt(2), p.peekAt(3)
	if name.kind != tokIdent || closing.kind != tokPunct || closing.s != ")" {
		return 0, false
	}
	to, ok := typeNames[name.s]
	if !ok {
		return 0, false
	}
	switch after.kind {
	case tokEOF:
		return 0, false
	case tokPunct:
		return to, after.s == "(" || after.s == "!"
	}
	return to, true
}

func (p *parser) postfix() (operand, error) {
	o, err := p.primary()
	if err != nil {
		return o, err
	}
	nullProp := false
	for {
		t := p.peek()
		switch {
		case t.kind == tokPunct && (t.s == "." || t.s == "?."):
			p.next()
			if t.s == "?." {
				nullProp = true
			}
			name := p.next()
			if name.kind != tokIdent {
				return operand{}, errAt(name.pos, "Expected a member name after '%s'.", t.s)
			}
			var typeArg *typ
			if p.isPunct("<") && name.s == "GetValueOrDefault" {
				arg := p.peekAt(1)
				ta, ok := typeNames[arg.s]
				if arg.kind != tokIdent || !ok {
					return operand{}, errAt(arg.pos, "Unsupported type argument.")
				}
				p.i += 2
				if err := p.expect(">"); err != nil {
					return operand{}, err
				}
				typeArg = &ta
			}
			var args []operand
			call := p.isPunct("(")
			if call {
				if args, err = p.args(")"); err != nil {
					return operand{}, err
				}
			}
			if o, err = p.member(o, name, typeArg, call, args, nullProp); err != nil {
				return operand{}, err
			}
		case t.kind == tokPunct && t.s == "[":
			args, err := p.args("]")
			if err != nil {
				return operand{}, err
			}
			if len(args) != 1 {
				return operand{}, errAt(t.pos, "An indexer takes one argument.")
			}
			if o, err = p.index(o, args[0], t.pos, nullProp); err != nil {
				return operand{}, err
			}
		default:
			return o, nil
		}
	}
}

// args parses a parenthesized or bracketed argument list; the opening token is next.
func (p *parser) args(closing string) ([]operand, error) {
	p.next()
	var out []operand
	if p.isPunct(closing) {
		p.next()
		return out, nil
	}
	for {
		pos := p.peek().pos
		o, err := p.ternary()
		if err != nil {
			return nil, err
		}
		if o.ns != nsNone {
			return nil, errAt(pos, "'%s' is not a value.", nsNames[o.ns])
		}
		out = append(out, o)
		if p.isPunct(",") {
			p.next()
			continue
		}
		if err := p.expect(closing); err != nil {
			return nil, err
		}
		return out, nil
	}
}

func (p *parser) primary() (operand, error) {
	t := p.next()
	switch t.kind {
	case tokInt:
		return operand{n: &litNode{v: intValue(t.n)}, t: tyInt, pos: t.pos}, nil
	case tokString, tokChar:
		return operand{n: &litNode{v: strValue(t.s)}, t: tyString, pos: t.pos}, nil
	case tokInterp:
		return p.interp(t)
	case tokIdent:
		switch t.s {
		case "true", "false":
			return operand{n: &litNode{v: boolValue(t.s == "true")}, t: tyBool, pos: t.pos}, nil
		case "null":
			return operand{n: &litNode{v: nullValue}, t: tyNull, pos: t.pos}, nil
		case "context":
			return operand{ns: nsContext, pos: t.pos}, nil
		case "string", "String":
			return p.stringStatic(t)
		}
		return operand{}, errAt(t.pos, "Unknown name '%s'; expressions start from 'context' or a literal.", t.s)
	case tokPunct:
		if t.s == "(" {
			o, err := p.ternary()
			if err != nil {
				return o, err
			}
			if err := p.expect(")"); err != nil {
				return operand{}, err
			}
			return o, nil
		}
	}
	p.i--
	if t.kind == tokEOF {
		p.i = len(p.toks) - 1
	}
	return operand{}, p.unexpected()
}

// interp compiles $"..." into a concatenation.
func (p *parser) interp(t token) (operand, error) {
	parts := make([]node, 0, len(t.parts))
	for _, part := range t.parts {
		if !part.hole {
			parts = append(parts, &litNode{v: strValue(part.lit)})
			continue
		}
		n, err := p.parseSub(part.start, part.end)
		if err != nil {
			return operand{}, err
		}
		parts = append(parts, n)
	}
	return operand{n: &interpNode{parts: parts}, t: tyString, pos: t.pos}, nil
}

// stringStatic parses string.IsNullOrEmpty(x) and string.IsNullOrWhiteSpace(x).
func (p *parser) stringStatic(t token) (operand, error) {
	if err := p.expect("."); err != nil {
		return operand{}, err
	}
	name := p.next()
	if name.kind != tokIdent || (name.s != "IsNullOrEmpty" && name.s != "IsNullOrWhiteSpace") {
		return operand{}, errAt(name.pos, "Unknown member '%s' of 'string'; supported: IsNullOrEmpty, IsNullOrWhiteSpace.", name.s)
	}
	if !p.isPunct("(") {
		return operand{}, errAt(name.pos, "'%s' is a method; call it with ().", name.s)
	}
	args, err := p.args(")")
	if err != nil {
		return operand{}, err
	}
	if len(args) != 1 {
		return operand{}, errAt(name.pos, "'%s' takes one argument.", name.s)
	}
	if err := wantType(args[0].t, tyString, args[0].pos, "The argument"); err != nil {
		return operand{}, err
	}
	return operand{n: &isNullOrNode{white: name.s == "IsNullOrWhiteSpace", x: args[0].n}, t: tyBool, pos: t.pos}, nil
}

// wantType checks that an operand of static type got can be used where want is needed.
// Unknown (object) types are checked at run time; null passes where a string is wanted; an
// object parameter (Equals) takes any value, as C# boxes it.
func wantType(got, want typ, pos int, what string) error {
	if got == want || want == tyObject || got == tyObject || got == tyNull && (want == tyString || want == tyJwt) {
		return nil
	}
	return errAt(pos, "%s must be of type '%s', not '%s'.", what, want, got)
}

// member resolves o.name or o.name(args).
func (p *parser) member(o operand, name token, typeArg *typ, call bool, args []operand, nullProp bool) (operand, error) {
	if o.ns != nsNone {
		return p.nsMember(o, name, typeArg, call, args, nullProp)
	}
	if typeArg != nil {
		return operand{}, errAt(name.pos, "'%s' does not take type arguments here.", name.s)
	}
	id, ok := memberIDs[name.s]
	if !ok {
		return operand{}, errAt(name.pos, "Unknown member '%s' of '%s'.", name.s, o.t)
	}
	spec := memberSpecs[id]
	res, ok := spec.result(o.t)
	if !ok {
		return operand{}, errAt(name.pos, "'%s' does not contain a definition for '%s'.", o.t, name.s)
	}
	switch {
	case spec.method && !call:
		return operand{}, errAt(name.pos, "'%s' is a method; call it with ().", name.s)
	case !spec.method && call:
		return operand{}, errAt(name.pos, "'%s' is a property, not a method.", name.s)
	case len(args) < spec.minArgs || len(args) > spec.maxArgs:
		return operand{}, errAt(name.pos, "No overload of '%s' takes %d arguments.", name.s, len(args))
	}
	m := &memberNode{recv: o.n, id: id, nullProp: nullProp, pos: name.pos}
	for i, a := range args {
		want := spec.argType(i)
		if err := wantType(a.t, want, a.pos, "The argument"); err != nil {
			return operand{}, err
		}
		m.args = append(m.args, a.n)
	}
	return operand{n: m, t: res, pos: o.pos}, nil
}

// index resolves o[arg].
func (p *parser) index(o operand, arg operand, pos int, nullProp bool) (operand, error) {
	switch o.ns {
	case nsVariables:
		if err := wantType(arg.t, tyString, arg.pos, "The variable name"); err != nil {
			return operand{}, err
		}
		return operand{n: &varNode{name: arg.n}, t: tyObject, pos: o.pos}, nil
	case nsHeaders:
		if err := wantType(arg.t, tyString, arg.pos, "The header name"); err != nil {
			return operand{}, err
		}
		return operand{n: newHeaderNode(hValues, arg.n, nil), t: tyStrings, pos: o.pos}, nil
	case nsNone:
	default:
		return operand{}, errAt(pos, "'%s' cannot be indexed.", nsNames[o.ns])
	}
	var want, res typ
	switch o.t {
	case tyStrings:
		want, res = tyInt, tyString
	case tyClaims:
		want, res = tyString, tyStrings
	case tyString:
		return operand{}, errAt(pos, "Indexing strings is not supported; use Substring.")
	case tyObject:
		want, res = tyObject, tyObject
	default:
		return operand{}, errAt(pos, "'%s' cannot be indexed.", o.t)
	}
	if err := wantType(arg.t, want, arg.pos, "The index"); err != nil {
		return operand{}, err
	}
	return operand{n: &indexNode{recv: o.n, idx: arg.n, nullProp: nullProp, pos: pos}, t: res, pos: o.pos}, nil
}

// nsID names a context namespace: a part of context that is not itself a value.
type nsID uint8

const (
	nsNone nsID = iota
	nsContext
	nsRequest
	nsURL
	nsHeaders
	nsQuery
	nsVariables
	nsSubscription
	nsUser
	nsProduct
	nsAPI
	nsOperation
	nsDeployment
	nsResponse
)

var nsNames = [...]string{
	nsNone:         "",
	nsContext:      "context",
	nsRequest:      "context.Request",
	nsURL:          "context.Request.Url",
	nsHeaders:      "context.Request.Headers",
	nsQuery:        "context.Request.Url.Query",
	nsVariables:    "context.Variables",
	nsSubscription: "context.Subscription",
	nsUser:         "context.User",
	nsProduct:      "context.Product",
	nsAPI:          "context.Api",
	nsOperation:    "context.Operation",
	nsDeployment:   "context.Deployment",
	nsResponse:     "context.Response",
}

// nsEntry is a member of a namespace: another namespace, or a field with its type.
type nsEntry struct {
	ns    nsID
	field Field
	typ   typ
}

var nsMembers = map[nsID]map[string]nsEntry{
	nsContext: {
		"Request":      {ns: nsRequest},
		"Response":     {ns: nsResponse},
		"Variables":    {ns: nsVariables},
		"Subscription": {ns: nsSubscription},
		"User":         {ns: nsUser},
		"Product":      {ns: nsProduct},
		"Api":          {ns: nsAPI},
		"Operation":    {ns: nsOperation},
		"Deployment":   {ns: nsDeployment},
		"RequestId":    {field: RequestID, typ: tyString},
		"Timestamp":    {field: fTimestamp, typ: tyTime},
	},
	nsRequest: {
		"Headers":     {ns: nsHeaders},
		"Url":         {ns: nsURL},
		"OriginalUrl": {ns: nsURL},
		"IpAddress":   {field: RequestIPAddress, typ: tyString},
		"Method":      {field: fMethod, typ: tyString},
	},
	nsURL: {
		"Query":  {ns: nsQuery},
		"Path":   {field: fURLPath, typ: tyString},
		"Host":   {field: fURLHost, typ: tyString},
		"Scheme": {field: fURLScheme, typ: tyString},
		"Port":   {field: fURLPort, typ: tyInt},
	},
	nsSubscription: {
		"Id":   {field: SubscriptionID, typ: tyString},
		"Name": {field: SubscriptionName, typ: tyString},
		"Key":  {field: SubscriptionKey, typ: tyString},
	},
	nsUser: {
		"Id": {field: UserID, typ: tyString},
	},
	nsProduct: {
		"Id":   {field: ProductID, typ: tyString},
		"Name": {field: ProductName, typ: tyString},
	},
	nsAPI: {
		"Id":         {field: APIID, typ: tyString},
		"Name":       {field: APIName, typ: tyString},
		"Path":       {field: APIPath, typ: tyString},
		"ServiceUrl": {field: APIServiceURL, typ: tyString},
	},
	nsOperation: {
		"Id":          {field: OperationID, typ: tyString},
		"Name":        {field: OperationName, typ: tyString},
		"Method":      {field: OperationMethod, typ: tyString},
		"UrlTemplate": {field: OperationURLTemplate, typ: tyString},
	},
	nsDeployment: {
		"GatewayId":   {field: DeploymentGatewayID, typ: tyString},
		"Region":      {field: DeploymentRegion, typ: tyString},
		"ServiceName": {field: DeploymentServiceName, typ: tyString},
	},
	nsResponse: {
		"StatusCode": {field: fResponseStatus, typ: tyInt},
	},
}

// nsMember resolves a member of a context namespace.
func (p *parser) nsMember(o operand, name token, typeArg *typ, call bool, args []operand, nullProp bool) (operand, error) {
	switch o.ns {
	case nsHeaders, nsQuery, nsVariables:
		return p.dictMethod(o, name, typeArg, call, args)
	}
	if typeArg != nil {
		return operand{}, errAt(name.pos, "'%s' does not take type arguments.", name.s)
	}
	e, ok := nsMembers[o.ns][name.s]
	if !ok {
		return operand{}, errAt(name.pos, "Unknown or unsupported member '%s' of '%s'.", name.s, nsNames[o.ns])
	}
	if call {
		return operand{}, errAt(name.pos, "'%s.%s' is not a method.", nsNames[o.ns], name.s)
	}
	if e.ns == nsResponse {
		if !p.opts.AllowResponse {
			return operand{}, errAt(name.pos, "'context.Response' does not exist before the backend answers; it is only accepted in an increment-condition.")
		}
		p.usesResponse = true
	}
	if e.ns != nsNone {
		return operand{ns: e.ns, pos: o.pos}, nil
	}
	return operand{n: &fieldNode{f: e.field, nullProp: nullProp}, t: e.typ, pos: o.pos}, nil
}

// dictMethod resolves the methods of context.Request.Headers, context.Request.Url.Query and
// context.Variables.
func (p *parser) dictMethod(o operand, name token, typeArg *typ, call bool, args []operand) (operand, error) {
	what := nsNames[o.ns]
	if !call {
		return operand{}, errAt(name.pos, "Unknown or unsupported member '%s' of '%s'.", name.s, what)
	}
	if typeArg != nil && o.ns != nsVariables {
		return operand{}, errAt(name.pos, "'%s.%s' does not take type arguments.", what, name.s)
	}
	for i, a := range args {
		if i > 0 && o.ns == nsVariables {
			continue // the default value of a variable may be of any type
		}
		if err := wantType(a.t, tyString, a.pos, "The argument"); err != nil {
			return operand{}, err
		}
	}
	switch name.s {
	case "GetValueOrDefault":
		if len(args) < 1 || len(args) > 2 {
			return operand{}, errAt(name.pos, "'GetValueOrDefault' takes a name and an optional default value.")
		}
		var def node
		defType := tyNull
		if len(args) == 2 {
			def, defType = args[1].n, args[1].t
		}
		switch o.ns {
		case nsHeaders:
			return operand{n: newHeaderNode(hGet, args[0].n, def), t: tyString, pos: o.pos}, nil
		case nsQuery:
			return operand{n: &queryNode{name: args[0].n, def: def}, t: tyString, pos: o.pos}, nil
		}
		want := tyObject
		if typeArg != nil {
			want = *typeArg
		} else if len(args) == 2 && defType.known() {
			want = defType
		}
		if len(args) == 2 && want != tyObject {
			if err := wantType(defType, want, args[1].pos, "The default value"); err != nil {
				return operand{}, err
			}
		}
		return operand{n: &varGetNode{name: args[0].n, def: def, want: want}, t: want, pos: o.pos}, nil
	case "ContainsKey":
		if len(args) != 1 {
			return operand{}, errAt(name.pos, "'ContainsKey' takes one argument.")
		}
		switch o.ns {
		case nsHeaders:
			return operand{n: newHeaderNode(hHas, args[0].n, nil), t: tyBool, pos: o.pos}, nil
		case nsQuery:
			return operand{n: &queryNode{name: args[0].n, has: true}, t: tyBool, pos: o.pos}, nil
		}
		return operand{n: &varNode{name: args[0].n, has: true}, t: tyBool, pos: o.pos}, nil
	}
	return operand{}, errAt(name.pos, "Unknown or unsupported member '%s' of '%s'.", name.s, what)
}

// memberID names a member of a value type (string, Jwt, ...).
type memberID uint8

const (
	mLength memberID = iota
	mToString
	mToLower
	mToUpper
	mTrim
	mTrimStart
	mTrimEnd
	mContains
	mStartsWith
	mEndsWith
	mEquals
	mIndexOf
	mSplit
	mSubstring
	mReplace
	mAsJwt
	mClaims
	mSubject
	mIssuer
	mID
	mAlgorithm
	mType
	mAudiences
	mExpirationTime
	mNotBefore
	mIssuedAt
	mGetValueOrDefault
	mContainsKey
	mFirst
	mFirstOrDefault
	mLast
	mLastOrDefault
)

var memberIDs = map[string]memberID{
	"Length": mLength, "Count": mLength,
	"ToString": mToString,
	"ToLower":  mToLower, "ToLowerInvariant": mToLower,
	"ToUpper": mToUpper, "ToUpperInvariant": mToUpper,
	"Trim": mTrim, "TrimStart": mTrimStart, "TrimEnd": mTrimEnd,
	"Contains": mContains, "StartsWith": mStartsWith, "EndsWith": mEndsWith, "Equals": mEquals,
	"IndexOf": mIndexOf, "Split": mSplit, "Substring": mSubstring, "Replace": mReplace,
	"AsJwt":  mAsJwt,
	"Claims": mClaims, "Subject": mSubject, "Issuer": mIssuer, "Id": mID, "Algorithm": mAlgorithm,
	"Type": mType, "Audiences": mAudiences,
	"ExpirationTime": mExpirationTime, "NotBefore": mNotBefore, "IssuedAt": mIssuedAt,
	"GetValueOrDefault": mGetValueOrDefault, "ContainsKey": mContainsKey,
	"First": mFirst, "FirstOrDefault": mFirstOrDefault, "Last": mLast, "LastOrDefault": mLastOrDefault,
}

// memberSpec describes a member: whether it is called, its argument counts and types, and its
// result per receiver type.
type memberSpec struct {
	method           bool
	minArgs, maxArgs int
	args             []typ // argument types; the last repeats
	on               map[typ]typ
}

func (s memberSpec) argType(i int) typ {
	if len(s.args) == 0 {
		return tyObject
	}
	return s.args[min(i, len(s.args)-1)]
}

// result returns the member's type on a receiver of type t. On an object receiver the member
// must exist on some type; its type is known when it is the same on all of them.
func (s memberSpec) result(t typ) (typ, bool) {
	if t == tyNull {
		return 0, false
	}
	if t != tyObject {
		r, ok := s.on[t]
		return r, ok
	}
	res, first := tyObject, true
	for _, r := range s.on {
		if first {
			res, first = r, false
		} else if r != res {
			res = tyObject
		}
	}
	return res, true
}

var (
	onString = func(r typ) map[typ]typ { return map[typ]typ{tyString: r} }
	str1     = []typ{tyString}
)

var memberSpecs = [...]memberSpec{
	mLength:            {on: map[typ]typ{tyString: tyInt, tyStrings: tyInt, tyClaims: tyInt}},
	mToString:          {method: true, on: map[typ]typ{tyString: tyString, tyInt: tyString, tyBool: tyString, tyTime: tyString, tyJwt: tyString}},
	mToLower:           {method: true, on: onString(tyString)},
	mToUpper:           {method: true, on: onString(tyString)},
	mTrim:              {method: true, on: onString(tyString)},
	mTrimStart:         {method: true, on: onString(tyString)},
	mTrimEnd:           {method: true, on: onString(tyString)},
	mContains:          {method: true, minArgs: 1, maxArgs: 1, args: str1, on: map[typ]typ{tyString: tyBool, tyStrings: tyBool}},
	mStartsWith:        {method: true, minArgs: 1, maxArgs: 1, args: str1, on: onString(tyBool)},
	mEndsWith:          {method: true, minArgs: 1, maxArgs: 1, args: str1, on: onString(tyBool)},
	mEquals:            {method: true, minArgs: 1, maxArgs: 1, args: []typ{tyObject}, on: map[typ]typ{tyString: tyBool, tyInt: tyBool, tyBool: tyBool, tyTime: tyBool}},
	mIndexOf:           {method: true, minArgs: 1, maxArgs: 1, args: str1, on: onString(tyInt)},
	mSplit:             {method: true, minArgs: 1, maxArgs: 8, args: str1, on: onString(tyStrings)},
	mSubstring:         {method: true, minArgs: 1, maxArgs: 2, args: []typ{tyInt}, on: onString(tyString)},
	mReplace:           {method: true, minArgs: 2, maxArgs: 2, args: str1, on: onString(tyString)},
	mAsJwt:             {method: true, on: onString(tyJwt)},
	mClaims:            {on: map[typ]typ{tyJwt: tyClaims}},
	mSubject:           {on: map[typ]typ{tyJwt: tyString}},
	mIssuer:            {on: map[typ]typ{tyJwt: tyString}},
	mID:                {on: map[typ]typ{tyJwt: tyString}},
	mAlgorithm:         {on: map[typ]typ{tyJwt: tyString}},
	mType:              {on: map[typ]typ{tyJwt: tyString}},
	mAudiences:         {on: map[typ]typ{tyJwt: tyStrings}},
	mExpirationTime:    {on: map[typ]typ{tyJwt: tyTime}},
	mNotBefore:         {on: map[typ]typ{tyJwt: tyTime}},
	mIssuedAt:          {on: map[typ]typ{tyJwt: tyTime}},
	mGetValueOrDefault: {method: true, minArgs: 1, maxArgs: 2, args: str1, on: map[typ]typ{tyClaims: tyString}},
	mContainsKey:       {method: true, minArgs: 1, maxArgs: 1, args: str1, on: map[typ]typ{tyClaims: tyBool}},
	mFirst:             {method: true, on: map[typ]typ{tyStrings: tyString}},
	mFirstOrDefault:    {method: true, on: map[typ]typ{tyStrings: tyString}},
	mLast:              {method: true, on: map[typ]typ{tyStrings: tyString}},
	mLastOrDefault:     {method: true, on: map[typ]typ{tyStrings: tyString}},
}

// canonicalIfConst returns the canonical header name when n is a string literal.
func canonicalIfConst(n node) (string, bool) {
	if l, ok := n.(*litNode); ok && l.v.k == kString {
		return http.CanonicalHeaderKey(l.v.s), true
	}
	return "", false
}
