package odata

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLength is the longest filter, in bytes, that Parse accepts.
const MaxLength = 2048

// MaxDepth is the deepest nesting of parentheses and "not" that Parse accepts. It bounds the
// parser's recursion so that no input can exhaust the stack.
const MaxDepth = 32

// maxExponent bounds the exponent of a number literal so that every accepted number fits
// Postgres' numeric type.
const maxExponent = 1000

// Error is a filter the client got wrong. Msg is safe to show to the client: it quotes at
// most a short, sanitised piece of the filter. Pos is the byte offset in the filter (0-based)
// at which the problem was found.
type Error struct {
	Pos int
	Msg string
}

// Error returns Msg followed by the position.
func (e *Error) Error() string {
	return e.Msg + " at position " + strconv.Itoa(e.Pos)
}

// Parse parses an OData $filter expression (see the package comment for the grammar). A filter
// that is empty or only blanks parses to a nil Expr and no error, meaning "no filter". Every
// other failure is an *Error.
func Parse(filter string) (Expr, error) {
	if len(filter) > MaxLength {
		return nil, &Error{Pos: MaxLength, Msg: "filter is longer than " + strconv.Itoa(MaxLength) + " bytes"}
	}
	if !utf8.ValidString(filter) {
		pos := 0
		for pos < len(filter) {
			r, size := utf8.DecodeRuneInString(filter[pos:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			pos += size
		}
		return nil, &Error{Pos: pos, Msg: "filter is not valid UTF-8"}
	}
	toks, err := lex(filter)
	if err != nil {
		return nil, err
	}
	if toks[0].kind == tokEOF {
		return nil, nil
	}
	p := &parser{toks: toks}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, p.unexpected(t, "")
	}
	return e, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokString
	tokNumber
	tokLParen
	tokRParen
	tokComma
	tokDateTime // datetime'…' or datetimeoffset'…' (OData v2's typed literals); val holds the text
)

// isDateTimePrefix reports whether word, written right before a quote, makes the string a
// date-time literal.
func isDateTimePrefix(word string) bool {
	return strings.EqualFold(word, "datetime") || strings.EqualFold(word, "datetimeoffset")
}

type token struct {
	kind tokKind
	pos  int
	raw  string // the source text of the token
	val  string // the unescaped contents of a string
}

// lex splits the filter into tokens, ending with a tokEOF.
func lex(s string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(s) && isBlank(s[i]) {
			i++
		}
		if i == len(s) {
			return append(toks, token{kind: tokEOF, pos: i}), nil
		}
		start := i
		c := s[i]
		switch {
		case c == '(':
			toks = append(toks, token{kind: tokLParen, pos: i, raw: "("})
			i++
		case c == ')':
			toks = append(toks, token{kind: tokRParen, pos: i, raw: ")"})
			i++
		case c == ',':
			toks = append(toks, token{kind: tokComma, pos: i, raw: ","})
			i++
		case c == '\'':
			val, end, err := lexString(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokString, pos: start, raw: s[start:end], val: val})
			i = end
		case isDigit(c) || c == '-' && i+1 < len(s) && isDigit(s[i+1]):
			end, err := lexNumber(s, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokNumber, pos: start, raw: s[start:end]})
			i = end
		case isIdentStart(c):
			for i < len(s) && (isIdentPart(s[i]) || s[i] == '/' && i+1 < len(s) && isIdentStart(s[i+1])) {
				i++
			}
			if i < len(s) && s[i] == '\'' && isDateTimePrefix(s[start:i]) {
				val, end, err := lexString(s, i)
				if err != nil {
					return nil, err
				}
				toks = append(toks, token{kind: tokDateTime, pos: start, raw: s[start:end], val: val})
				i = end
				continue
			}
			toks = append(toks, token{kind: tokIdent, pos: start, raw: s[start:i]})
		default:
			r, _ := utf8.DecodeRuneInString(s[i:])
			return nil, &Error{Pos: i, Msg: "unexpected character " + quote(string(r))}
		}
	}
}

// lexString reads the string literal that starts with the quote at s[start] and returns its
// contents and the offset just past the closing quote.
func lexString(s string, start int) (string, int, error) {
	var b strings.Builder
	i := start + 1
	for {
		j := strings.IndexByte(s[i:], '\'')
		if j < 0 {
			return "", 0, &Error{Pos: start, Msg: "unterminated string literal"}
		}
		b.WriteString(s[i : i+j])
		i += j + 1
		if i < len(s) && s[i] == '\'' { // '' is an escaped quote
			b.WriteByte('\'')
			i++
			continue
		}
		val := b.String()
		if k := strings.IndexByte(val, 0); k >= 0 {
			return "", 0, &Error{Pos: start, Msg: "string literal contains a NUL character"}
		}
		return val, i, nil
	}
}

// lexNumber reads the number that starts at s[start] and returns the offset just past it.
func lexNumber(s string, start int) (int, error) {
	i := start
	if s[i] == '-' {
		i++
	}
	digits := func() bool {
		j := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		return i > j
	}
	digits()
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return 0, &Error{Pos: i, Msg: "malformed number " + quote(s[start:i]) + ": expected digits after '.'"}
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		expStart := i
		if !digits() {
			return 0, &Error{Pos: i, Msg: "malformed number " + quote(s[start:i]) + ": expected digits in the exponent"}
		}
		exp := strings.TrimLeft(s[expStart:i], "0")
		if len(exp) > len(strconv.Itoa(maxExponent)) {
			return 0, &Error{Pos: start, Msg: "number " + quote(s[start:i]) + " is out of range"}
		}
		if n, _ := strconv.Atoi(exp); n > maxExponent {
			return 0, &Error{Pos: start, Msg: "number " + quote(s[start:i]) + " is out of range"}
		}
	}
	return i, nil
}

func isBlank(c byte) bool      { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// quote renders a piece of the filter for an error message: single-quoted, cut to a few dozen
// characters, with control and other non-printing characters escaped.
func quote(s string) string {
	const maxRunes = 32
	if utf8.RuneCountInString(s) > maxRunes {
		n := 0
		for i := range s {
			if n == maxRunes {
				s = s[:i] + "…"
				break
			}
			n++
		}
	}
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		if unicode.IsGraphic(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRuneToASCII(r) // e.g. '\x00'
		b.WriteString(q[1 : len(q)-1])
	}
	b.WriteByte('\'')
	return b.String()
}

var comparisonOps = map[string]Op{"eq": OpEq, "ne": OpNe, "gt": OpGt, "ge": OpGe, "lt": OpLt, "le": OpLe}

var functions = map[string]Op{
	"substringof": OpContains, "contains": OpContains, "startswith": OpStartsWith, "endswith": OpEndsWith,
}

const (
	expectedOp    = "eq, ne, gt, ge, lt or le"
	knownFuncs    = "contains, endswith, startswith, substringof"
	expectedValue = "a value (a 'string', a number, true, false or null)"
)

type parser struct {
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

// peekAt returns the token n places ahead, or the final tokEOF.
func (p *parser) peekAt(n int) token {
	if p.i+n >= len(p.toks) {
		return p.toks[len(p.toks)-1]
	}
	return p.toks[p.i+n]
}

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

// isKeyword reports whether t is the identifier kw, ignoring case.
func isKeyword(t token, kw string) bool {
	return t.kind == tokIdent && strings.EqualFold(t.raw, kw)
}

// unexpected reports t where something else was needed; want, if set, says what.
func (p *parser) unexpected(t token, want string) *Error {
	var msg string
	if t.kind == tokEOF {
		msg = "unexpected end of filter"
		if p.i > 0 {
			msg += " after " + describe(p.toks[p.i-1])
		}
	} else {
		msg = "unexpected "
		if t.kind != tokString && t.kind != tokNumber && t.kind != tokDateTime {
			msg += "token "
		}
		msg += describe(t)
	}
	if want != "" {
		msg += "; expected " + want
	}
	return &Error{Pos: t.pos, Msg: msg}
}

// describe names a token for an error message: "'foo'", "string 'x'", "number 12".
func describe(t token) string {
	switch t.kind {
	case tokString:
		return "string " + quote(t.val)
	case tokDateTime:
		return "datetime " + quote(t.val)
	case tokNumber:
		q := quote(t.raw)
		return "number " + q[1:len(q)-1]
	case tokEOF:
		return "end of filter"
	}
	return quote(t.raw)
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > MaxDepth {
		return &Error{Pos: pos, Msg: "filter is nested deeper than " + strconv.Itoa(MaxDepth) + " levels"}
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) parseOr() (Expr, error) {
	first, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for isKeyword(p.peek(), "or") {
		p.next()
		t, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &Or{Terms: terms}, nil
}

func (p *parser) parseAnd() (Expr, error) {
	first, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for isKeyword(p.peek(), "and") {
		p.next()
		t, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	if len(terms) == 1 {
		return first, nil
	}
	return &And{Terms: terms}, nil
}

func (p *parser) parseUnary() (Expr, error) {
	// "not" followed by an operator is a comparison of a field named "not".
	if t := p.peek(); isKeyword(t, "not") && !isOperator(p.peekAt(1)) {
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return &Not{X: x, At: t.pos}, nil
	}
	return p.parsePrimary()
}

func isOperator(t token) bool {
	_, ok := comparisonOps[strings.ToLower(t.raw)]
	return t.kind == tokIdent && ok
}

func (p *parser) parsePrimary() (Expr, error) {
	t := p.peek()
	switch {
	case t.kind == tokLParen:
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tokRParen {
			return nil, p.unexpected(c, "')' to close the '(' at position "+strconv.Itoa(t.pos))
		}
		p.next()
		return x, nil
	case (isKeyword(t, "and") || isKeyword(t, "or")) && !isOperator(p.peekAt(1)):
		// a misplaced keyword, not a field named "and" or "or"
	case t.kind == tokIdent && p.peekAt(1).kind == tokLParen:
		return p.parseCall()
	case t.kind == tokIdent:
		return p.parseComparison()
	}
	return nil, p.unexpected(t, "a comparison such as name eq 'value', a function call, 'not' or '('")
}

func (p *parser) parseComparison() (Expr, error) {
	field := p.next()
	opTok := p.peek()
	if opTok.kind != tokIdent {
		return nil, p.unexpected(opTok, "an operator ("+expectedOp+")")
	}
	op, ok := comparisonOps[strings.ToLower(opTok.raw)]
	if !ok {
		return nil, &Error{Pos: opTok.pos, Msg: "unknown operator " + quote(opTok.raw) + "; expected " + expectedOp}
	}
	p.next()
	v, err := p.parseValue(opTok)
	if err != nil {
		return nil, err
	}
	return &Compare{Field: Ident{Name: field.raw, At: field.pos}, Op: op, Value: v}, nil
}

// parseValue reads the literal that follows the operator token after.
func (p *parser) parseValue(after token) (Value, error) {
	t := p.peek()
	switch t.kind {
	case tokString:
		p.next()
		return Value{Kind: KindString, Text: t.val, At: t.pos}, nil
	case tokNumber:
		p.next()
		return Value{Kind: KindNumber, Text: t.raw, At: t.pos}, nil
	case tokDateTime:
		p.next()
		return Value{Kind: KindDateTime, Text: t.val, At: t.pos}, nil
	case tokIdent:
		switch lower := strings.ToLower(t.raw); lower {
		case "true", "false":
			p.next()
			return Value{Kind: KindBool, Text: lower, At: t.pos}, nil
		case "null":
			p.next()
			return Value{Kind: KindNull, Text: lower, At: t.pos}, nil
		}
		return Value{}, &Error{Pos: t.pos, Msg: "expected " + expectedValue + " after " + quote(after.raw) +
			", found " + quote(t.raw) + " (string values need single quotes)"}
	}
	return Value{}, p.unexpected(t, expectedValue)
}

func (p *parser) parseCall() (Expr, error) {
	nameTok := p.next()
	name := strings.ToLower(nameTok.raw)
	op, ok := functions[name]
	if !ok {
		return nil, &Error{Pos: nameTok.pos, Msg: "unknown function " + quote(nameTok.raw) + "; supported: " + knownFuncs}
	}
	p.next() // (
	call := &Call{Name: name, Op: op, At: nameTok.pos}
	fieldArg := func(ordinal string) error {
		t := p.peek()
		if t.kind != tokIdent || isKeyword(t, "true") || isKeyword(t, "false") || isKeyword(t, "null") {
			return p.unexpected(t, "a field name as the "+ordinal+" argument of "+name)
		}
		p.next()
		call.Field = Ident{Name: t.raw, At: t.pos}
		return nil
	}
	stringArg := func(ordinal string) error {
		t := p.peek()
		if t.kind != tokString {
			return p.unexpected(t, "a 'string' as the "+ordinal+" argument of "+name)
		}
		p.next()
		call.Value = Value{Kind: KindString, Text: t.val, At: t.pos}
		return nil
	}
	first, second := fieldArg, stringArg
	if name == "substringof" { // OData v2: substringof('needle', field)
		first, second = stringArg, fieldArg
	}
	if err := first("first"); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokComma {
		return nil, p.unexpected(t, "',' between the arguments of "+name)
	}
	p.next()
	if err := second("second"); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokRParen {
		return nil, p.unexpected(t, "')' after the arguments of "+name)
	}
	p.next()

	// OData v2 clients write "substringof('x', name) eq true".
	opTok := p.peek()
	if !isKeyword(opTok, "eq") && !isKeyword(opTok, "ne") {
		return call, nil
	}
	p.next()
	b := p.peek()
	if !isKeyword(b, "true") && !isKeyword(b, "false") {
		return nil, p.unexpected(b, "true or false after "+quote(opTok.raw)+": a function call can only be compared with a boolean")
	}
	p.next()
	if isKeyword(opTok, "eq") == isKeyword(b, "true") {
		return call, nil
	}
	return &Not{X: call, At: nameTok.pos}, nil
}
