package expr

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// tokKind is the kind of a lexical token of a policy expression.
type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokIdent          // identifier or keyword, in s
	tokInt            // integer literal, in n
	tokString         // string literal, unescaped, in s
	tokChar           // character literal, in s
	tokInterp         // interpolated string, in parts
	tokPunct          // operator or punctuation, in s
)

// token is one lexical token. pos is its byte offset in the expression source.
type token struct {
	kind  tokKind
	s     string
	n     int64
	pos   int
	parts []interpPart
}

// interpPart is a piece of an interpolated string: literal text, or a hole whose source is
// src[start:end] of the enclosing expression.
type interpPart struct {
	lit        string
	hole       bool
	start, end int
}

// exprError is a syntax or type error at byte offset pos of the expression source.
type exprError struct {
	pos int
	msg string
}

func (e *exprError) Error() string { return e.msg }

func errAt(pos int, format string, args ...any) *exprError {
	return &exprError{pos: pos, msg: fmt.Sprintf(format, args...)}
}

// maxTokens bounds the work one expression may cost the compiler.
const maxTokens = 1 << 16

// lexer splits src[i:end] into tokens.
type lexer struct {
	src  string
	i    int
	end  int
	toks []token
	// nest is how deep this lexer is inside interpolation holes.
	nest int
}

// maxInterpNesting bounds interpolated strings inside interpolation holes, whose holes are
// lexed again at each level.
const maxInterpNesting = 4

// lex returns the tokens of src[start:end], ending with tokEOF at end.
func lex(src string, start, end int) ([]token, error) {
	l := &lexer{src: src, i: start, end: end}
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		l.toks = append(l.toks, t)
		if t.kind == tokEOF {
			return l.toks, nil
		}
		if len(l.toks) > maxTokens {
			return nil, errAt(t.pos, "The expression is too long.")
		}
	}
}

// puncts are the operators, longest first so that "==" wins over "=".
var puncts = []string{
	"==", "!=", "<=", ">=", "&&", "||", "??", "?.",
	"(", ")", "[", "]", "{", "}", ".", ",", "?", ":", "!", "<", ">", "+", "-", "*", "/", "%",
}

func (l *lexer) next() (token, error) {
	if err := l.skipSpace(); err != nil {
		return token{}, err
	}
	s, i := l.src, l.i
	if i >= l.end {
		return token{kind: tokEOF, pos: l.end}, nil
	}
	c := s[i]
	switch {
	case isIdentStart(c):
		j := i + 1
		for j < l.end && isIdentPart(s[j]) {
			j++
		}
		l.i = j
		return token{kind: tokIdent, s: s[i:j], pos: i}, nil
	case c >= '0' && c <= '9':
		return l.number()
	case c == '"':
		str, err := l.quoted(i+1, false)
		return token{kind: tokString, s: str, pos: i}, err
	case c == '@' && i+1 < l.end && s[i+1] == '"':
		str, err := l.quoted(i+2, true)
		return token{kind: tokString, s: str, pos: i}, err
	case c == '$' && i+1 < l.end && s[i+1] == '"':
		return l.interpolated(i)
	case (c == '$' || c == '@') && i+2 < l.end && (s[i+1] == '@' || s[i+1] == '$') && s[i+2] == '"':
		return token{}, errAt(i, "Verbatim interpolated strings are not supported.")
	case c == '\'':
		return l.char()
	}
	for _, p := range puncts {
		if strings.HasPrefix(s[i:l.end], p) {
			l.i = i + len(p)
			return token{kind: tokPunct, s: p, pos: i}, nil
		}
	}
	r, _ := utf8.DecodeRuneInString(s[i:l.end])
	return token{}, errAt(i, "Unexpected character '%c'.", r)
}

func (l *lexer) skipSpace() error {
	s := l.src
	for l.i < l.end {
		switch c := s[l.i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			l.i++
		case strings.HasPrefix(s[l.i:l.end], "//"):
			k := strings.IndexByte(s[l.i:l.end], '\n')
			if k < 0 {
				l.i = l.end
			} else {
				l.i += k + 1
			}
		case strings.HasPrefix(s[l.i:l.end], "/*"):
			k := strings.Index(s[l.i+2:l.end], "*/")
			if k < 0 {
				return errAt(l.i, "The comment is not closed.")
			}
			l.i += 2 + k + 2
		default:
			return nil
		}
	}
	return nil
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9'
}

func (l *lexer) number() (token, error) {
	s, i := l.src, l.i
	j := i
	for j < l.end && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j < l.end && (s[j] == '.' && j+1 < l.end && s[j+1] >= '0' && s[j+1] <= '9' || s[j] == 'e' || s[j] == 'E' || s[j] == 'x' || s[j] == 'X') {
		return token{}, errAt(i, "Only decimal integer literals are supported.")
	}
	n, err := strconv.ParseInt(s[i:j], 10, 64)
	if err != nil {
		return token{}, errAt(i, "The integer literal is out of range.")
	}
	if j < l.end && (s[j] == 'L' || s[j] == 'l') {
		j++
	}
	if j < l.end && isIdentPart(s[j]) {
		return token{}, errAt(i, "Invalid number literal.")
	}
	l.i = j
	return token{kind: tokInt, n: n, pos: i}, nil
}

// quoted reads a string literal body from i (just past the opening quote) and leaves l.i past
// the closing quote.
func (l *lexer) quoted(i int, verbatim bool) (string, error) {
	s := l.src
	start := i - 1
	if verbatim {
		start--
	}
	var b strings.Builder
	for i < l.end {
		c := s[i]
		switch {
		case c == '"':
			if verbatim && i+1 < l.end && s[i+1] == '"' {
				b.WriteByte('"')
				i += 2
				continue
			}
			l.i = i + 1
			return b.String(), nil
		case c == '\\' && !verbatim:
			r, n, err := l.escape(i)
			if err != nil {
				return "", err
			}
			b.WriteRune(r)
			i += n
		case (c == '\n' || c == '\r') && !verbatim:
			return "", errAt(start, "Newline in string literal.")
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", errAt(start, "The string literal is not closed.")
}

// escape decodes the escape sequence at s[i] ('\\') and returns the rune and its length.
func (l *lexer) escape(i int) (rune, int, error) {
	s := l.src
	if i+1 >= l.end {
		return 0, 0, errAt(i, "Unrecognized escape sequence.")
	}
	switch s[i+1] {
	case '\\':
		return '\\', 2, nil
	case '"':
		return '"', 2, nil
	case '\'':
		return '\'', 2, nil
	case '0':
		return 0, 2, nil
	case 'a':
		return '\a', 2, nil
	case 'b':
		return '\b', 2, nil
	case 'f':
		return '\f', 2, nil
	case 'n':
		return '\n', 2, nil
	case 'r':
		return '\r', 2, nil
	case 't':
		return '\t', 2, nil
	case 'v':
		return '\v', 2, nil
	case 'u':
		if i+6 <= l.end {
			if v, err := strconv.ParseUint(s[i+2:i+6], 16, 32); err == nil {
				r := rune(v)
				if !utf8.ValidRune(r) {
					r = utf8.RuneError
				}
				return r, 6, nil
			}
		}
	}
	return 0, 0, errAt(i, "Unrecognized escape sequence.")
}

func (l *lexer) char() (token, error) {
	s, i := l.src, l.i
	j := i + 1
	var r rune
	switch {
	case j >= l.end:
		return token{}, errAt(i, "The character literal is not closed.")
	case s[j] == '\\':
		var n int
		var err error
		if r, n, err = l.escape(j); err != nil {
			return token{}, err
		}
		j += n
	default:
		var n int
		r, n = utf8.DecodeRuneInString(s[j:l.end])
		if r == '\'' {
			return token{}, errAt(i, "Empty character literal.")
		}
		j += n
	}
	if j >= l.end || s[j] != '\'' {
		return token{}, errAt(i, "The character literal is not closed.")
	}
	l.i = j + 1
	return token{kind: tokChar, s: string(r), pos: i}, nil
}

// interpolated reads $"..." starting at i. Holes are lexed to find where they end; the parser
// parses them later from their offsets.
func (l *lexer) interpolated(i int) (token, error) {
	s := l.src
	t := token{kind: tokInterp, pos: i}
	j := i + 2
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			t.parts = append(t.parts, interpPart{lit: b.String()})
			b.Reset()
		}
	}
	for j < l.end {
		c := s[j]
		switch {
		case c == '"':
			flush()
			l.i = j + 1
			return t, nil
		case c == '{' && j+1 < l.end && s[j+1] == '{':
			b.WriteByte('{')
			j += 2
		case c == '}' && j+1 < l.end && s[j+1] == '}':
			b.WriteByte('}')
			j += 2
		case c == '}':
			return token{}, errAt(j, "Unexpected '}' in interpolated string; write '}}'.")
		case c == '{':
			flush()
			end, err := l.holeEnd(j + 1)
			if err != nil {
				return token{}, err
			}
			t.parts = append(t.parts, interpPart{hole: true, start: j + 1, end: end})
			j = end + 1
		case c == '\\':
			r, n, err := l.escape(j)
			if err != nil {
				return token{}, err
			}
			b.WriteRune(r)
			j += n
		case c == '\n' || c == '\r':
			return token{}, errAt(i, "Newline in string literal.")
		default:
			b.WriteByte(c)
			j++
		}
	}
	return token{}, errAt(i, "The string literal is not closed.")
}

// holeEnd returns the offset of the '}' that closes the interpolation hole starting at i.
func (l *lexer) holeEnd(i int) (int, error) {
	if l.nest >= maxInterpNesting {
		return 0, errAt(i, "Interpolated strings are nested too deeply.")
	}
	sub := &lexer{src: l.src, i: i, end: l.end, nest: l.nest + 1}
	depth := 0
	for n := 0; n < maxTokens; n++ {
		t, err := sub.next()
		if err != nil {
			return 0, err
		}
		switch {
		case t.kind == tokEOF:
			return 0, errAt(i, "The interpolation hole is not closed.")
		case t.kind != tokPunct:
		case t.s == "(" || t.s == "[" || t.s == "{":
			depth++
		case t.s == ")" || t.s == "]":
			depth--
		case t.s == "}":
			if depth == 0 {
				return t.pos, nil
			}
			depth--
		case t.s == ":" && depth == 0:
			return 0, errAt(t.pos, "Format specifiers in interpolated strings are not supported.")
		}
	}
	return 0, errAt(i, "The expression is too long.")
}
