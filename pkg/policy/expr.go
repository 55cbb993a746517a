package policy

import (
	"strings"
)

// IsExpression reports whether an attribute value or element text is a policy expression:
// after optional whitespace it starts with "@(" (single C# expression) or "@{" (statement
// block). Parse does not check the type of expression values; the gateway evaluates them.
func IsExpression(s string) bool {
	return isExprStart(s, skipSpace(s, 0))
}

// isDynamic reports whether the value is only known at run time: a policy expression, or a
// value with {{named value}} references that management substitutes.
func isDynamic(s string) bool {
	return IsExpression(s) || hasNamedValue(s)
}

func isExprStart(s string, i int) bool {
	return i+1 < len(s) && s[i] == '@' && (s[i+1] == '(' || s[i+1] == '{')
}

// exprEnd returns the offset just past the bracket that closes the expression starting at
// s[start] ("@(" or "@{"), or -1 when it is not closed. It lexes enough C# to skip brackets
// inside string and character literals (regular, verbatim and interpolated) and comments.
// Each byte examined costs one unit of *budget; when budget is non-nil and runs out the result
// is -1 with *budget < 0.
func exprEnd(s string, start int, budget *int) int {
	l := lexer{s: s, budget: budget}
	return l.code(start+2, false)
}

type lexer struct {
	s      string
	budget *int
}

// spend charges n bytes to the budget and reports whether any is left.
func (l *lexer) spend(n int) bool {
	if l.budget == nil {
		return true
	}
	*l.budget -= n
	return *l.budget >= 0
}

// code scans C# code from i to the first unbalanced closing bracket and returns the offset just
// past it, or -1. In an interpolation hole, a ':' at depth 0 starts a format specifier that
// runs to the closing '}'.
func (l *lexer) code(i int, hole bool) int {
	s := l.s
	depth := 0
	for i < len(s) {
		if !l.spend(1) {
			return -1
		}
		switch c := s[i]; c {
		case '(', '[', '{':
			depth++
			i++
		case ')', ']', '}':
			if depth == 0 {
				return i + 1
			}
			depth--
			i++
		case ':':
			if hole && depth == 0 {
				k := strings.IndexByte(s[i:], '}')
				if k < 0 || !l.spend(k) {
					return -1
				}
				return i + k + 1
			}
			i++
		case '"', '\'', '@', '$':
			i = l.literal(i)
			if i < 0 {
				return -1
			}
		case '/':
			switch {
			case strings.HasPrefix(s[i:], "//"):
				k := strings.IndexByte(s[i:], '\n')
				if k < 0 || !l.spend(k) {
					return -1
				}
				i += k + 1
			case strings.HasPrefix(s[i:], "/*"):
				k := strings.Index(s[i+2:], "*/")
				if k < 0 || !l.spend(k) {
					return -1
				}
				i += 2 + k + 2
			default:
				i++
			}
		default:
			i++
		}
	}
	return -1
}

// literal skips the string or character literal starting at s[i] and returns the offset just
// past it, -1 if it does not end; when s[i] does not start a literal (a verbatim identifier
// such as @class) it returns i+1.
func (l *lexer) literal(i int) int {
	s := l.s
	rest := s[i:]
	switch {
	case strings.HasPrefix(rest, `$@"`), strings.HasPrefix(rest, `@$"`):
		return l.str(i+3, true, true)
	case strings.HasPrefix(rest, `$"`):
		return l.str(i+2, false, true)
	case strings.HasPrefix(rest, `@"`):
		return l.str(i+2, true, false)
	case rest[0] == '"':
		return l.str(i+1, false, false)
	case rest[0] == '\'':
		for j := i + 1; j < len(s); j++ {
			if !l.spend(1) {
				return -1
			}
			switch s[j] {
			case '\\':
				j++
			case '\'':
				return j + 1
			}
		}
		return -1
	}
	return i + 1
}

// str skips the body of a string literal from i (just past the opening quote) and returns the
// offset just past the closing quote, or -1.
func (l *lexer) str(i int, verbatim, interpolated bool) int {
	s := l.s
	for i < len(s) {
		if !l.spend(1) {
			return -1
		}
		c := s[i]
		switch {
		case c == '\\' && !verbatim:
			i += 2
		case c == '"':
			if verbatim && i+1 < len(s) && s[i+1] == '"' {
				i += 2
				continue
			}
			return i + 1
		case interpolated && c == '{':
			if i+1 < len(s) && s[i+1] == '{' {
				i += 2
				continue
			}
			i = l.code(i+1, true)
			if i < 0 {
				return -1
			}
		default:
			i++
		}
	}
	return -1
}
