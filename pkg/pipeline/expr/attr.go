package expr

import (
	"fmt"
	"strconv"
	"strings"

	"gatehouse.dev/pkg/policy"
)

// Text is an attribute value or element text: a literal, or a policy expression evaluated per
// request and converted to a string. The zero Text is the empty literal.
type Text struct {
	lit string
	e   *Expr
}

// LiteralText is the literal s, never parsed as an expression.
func LiteralText(s string) Text { return Text{lit: s} }

// CompileText compiles s, which is an expression when it starts with "@(" after whitespace.
func CompileText(s string) (Text, error) {
	if !policy.IsExpression(s) {
		return Text{lit: s}, nil
	}
	e, err := Compile(s, Options{})
	if err != nil {
		return Text{}, err
	}
	return Text{e: e}, nil
}

// CompileTexts compiles each of ss.
func CompileTexts(ss []string) ([]Text, error) {
	out := make([]Text, len(ss))
	for i, s := range ss {
		var err error
		if out[i], err = CompileText(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Literal returns the text and true when t is a literal, or "" and false for an expression.
func (t Text) Literal() (string, bool) { return t.lit, t.e == nil }

// Eval returns the literal, or evaluates the expression in c and converts it as C#'s
// ToString() does.
func (t Text) Eval(c Context) (string, error) {
	if t.e == nil {
		return t.lit, nil
	}
	v, err := t.e.root.eval(c)
	if err != nil {
		return "", err
	}
	return v.text(), nil
}

// EvalAny is Eval without the conversion to a string: a literal is its string, an
// expression's value is as Expr.EvalAny returns it (set-variable keeps the type).
func (t Text) EvalAny(c Context) (any, error) {
	if t.e == nil {
		return t.lit, nil
	}
	return t.e.EvalAny(c)
}

// Number is an integer attribute: a literal or an expression giving an int or a numeric
// string.
type Number struct {
	lit int64
	e   *Expr
}

// LiteralNumber is the literal n.
func LiteralNumber(n int64) Number { return Number{lit: n} }

// CompileNumber compiles the integer attribute attr, whose value is s; an empty value gives
// def.
func CompileNumber(attr, s string, def int64) (Number, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Number{lit: def}, nil
	case policy.IsExpression(s):
		e, err := Compile(s, Options{})
		if err != nil {
			return Number{}, fmt.Errorf("%s: %w", attr, err)
		}
		if e.typ.known() && e.typ != tyInt && e.typ != tyString {
			return Number{}, fmt.Errorf("%s: the expression must give an integer, not '%s'", attr, e.typ)
		}
		return Number{e: e}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return Number{}, fmt.Errorf("%s: '%s' is not an integer", attr, s)
	}
	return Number{lit: n}, nil
}

// Literal returns the number and true when n is a literal, or 0 and false for an expression.
func (n Number) Literal() (int64, bool) { return n.lit, n.e == nil }

// Eval returns the literal, or evaluates the expression in c.
func (n Number) Eval(c Context) (int64, error) {
	if n.e == nil {
		return n.lit, nil
	}
	v, err := n.e.root.eval(c)
	if err != nil {
		return 0, err
	}
	switch v.k {
	case kInt:
		return v.n, nil
	case kString:
		if i, err := strconv.ParseInt(strings.TrimSpace(v.s), 10, 64); err == nil {
			return i, nil
		}
	}
	return 0, &evalError{"The expression must give an integer."}
}

// Flag is a boolean attribute: a literal "true"/"false" (any case) or an expression giving a
// bool or such a string.
type Flag struct {
	lit bool
	e   *Expr
}

// CompileFlag compiles the boolean attribute attr, whose value is s; an empty value gives
// def.
func CompileFlag(attr, s string, def bool) (Flag, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return Flag{lit: def}, nil
	case policy.IsExpression(s):
		e, err := Compile(s, Options{})
		if err != nil {
			return Flag{}, fmt.Errorf("%s: %w", attr, err)
		}
		if e.typ.known() && e.typ != tyBool && e.typ != tyString {
			return Flag{}, fmt.Errorf("%s: the expression must give a bool, not '%s'", attr, e.typ)
		}
		return Flag{e: e}, nil
	case strings.EqualFold(s, "true"):
		return Flag{lit: true}, nil
	case strings.EqualFold(s, "false"):
		return Flag{lit: false}, nil
	}
	return Flag{}, fmt.Errorf("%s: '%s' is not true or false", attr, s)
}

// Literal returns the flag and true when f is a literal, or false and false for an
// expression.
func (f Flag) Literal() (bool, bool) { return f.lit, f.e == nil }

// Eval returns the literal, or evaluates the expression in c.
func (f Flag) Eval(c Context) (bool, error) {
	if f.e == nil {
		return f.lit, nil
	}
	v, err := f.e.root.eval(c)
	if err != nil {
		return false, err
	}
	switch {
	case v.k == kBool:
		return v.n != 0, nil
	case v.k == kString && strings.EqualFold(strings.TrimSpace(v.s), "true"):
		return true, nil
	case v.k == kString && strings.EqualFold(strings.TrimSpace(v.s), "false"):
		return false, nil
	}
	return false, &evalError{"The expression must give a bool."}
}

// CompileCondition compiles a choose or increment condition attr, which must be an
// expression giving a bool (or the literal true/false). It returns the expression, or nil and
// the literal's value.
func CompileCondition(attr, s string, opts Options) (*Expr, bool, error) {
	if !policy.IsExpression(s) {
		f, err := CompileFlag(attr, s, false)
		return nil, f.lit, err
	}
	e, err := Compile(s, opts)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", attr, err)
	}
	if e.typ.known() && e.typ != tyBool {
		return nil, false, fmt.Errorf("%s: the expression must give a bool, not '%s'", attr, e.typ)
	}
	return e, false, nil
}
