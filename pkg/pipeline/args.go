package pipeline

import (
	"fmt"
	"strconv"
	"strings"

	"gatehouse.dev/pkg/policy"
)

// text is an attribute value or element text: a literal, or a policy expression evaluated per
// request and converted to a string.
type text struct {
	lit string
	e   *expr
}

// compileText compiles s, which is an expression when it starts with "@(" after whitespace.
func compileText(s string) (text, error) {
	if !policy.IsExpression(s) {
		return text{lit: s}, nil
	}
	e, err := parseExpr(s, exprOptions{})
	if err != nil {
		return text{}, err
	}
	return text{e: e}, nil
}

// compileTexts compiles each of ss.
func compileTexts(ss []string) ([]text, error) {
	out := make([]text, len(ss))
	for i, s := range ss {
		var err error
		if out[i], err = compileText(s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t text) eval(c *runCtx) (string, error) {
	if t.e == nil {
		return t.lit, nil
	}
	v, err := t.e.root.eval(c)
	if err != nil {
		return "", err
	}
	return v.text(), nil
}

// number is an integer attribute: a literal or an expression giving an int or a numeric
// string.
type number struct {
	lit int64
	e   *expr
}

// compileNumber compiles an integer attribute; an empty value gives def.
func compileNumber(attr, s string, def int64) (number, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return number{lit: def}, nil
	case policy.IsExpression(s):
		e, err := parseExpr(s, exprOptions{})
		if err != nil {
			return number{}, fmt.Errorf("%s: %w", attr, err)
		}
		if e.typ.known() && e.typ != tyInt && e.typ != tyString {
			return number{}, fmt.Errorf("%s: the expression must give an integer, not '%s'", attr, e.typ)
		}
		return number{e: e}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return number{}, fmt.Errorf("%s: '%s' is not an integer", attr, s)
	}
	return number{lit: n}, nil
}

func (n number) eval(c *runCtx) (int64, error) {
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

// flag is a boolean attribute: a literal "true"/"false" (any case) or an expression giving a
// bool or such a string.
type flag struct {
	lit bool
	e   *expr
}

// compileFlag compiles a boolean attribute; an empty value gives def.
func compileFlag(attr, s string, def bool) (flag, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return flag{lit: def}, nil
	case policy.IsExpression(s):
		e, err := parseExpr(s, exprOptions{})
		if err != nil {
			return flag{}, fmt.Errorf("%s: %w", attr, err)
		}
		if e.typ.known() && e.typ != tyBool && e.typ != tyString {
			return flag{}, fmt.Errorf("%s: the expression must give a bool, not '%s'", attr, e.typ)
		}
		return flag{e: e}, nil
	case strings.EqualFold(s, "true"):
		return flag{lit: true}, nil
	case strings.EqualFold(s, "false"):
		return flag{lit: false}, nil
	}
	return flag{}, fmt.Errorf("%s: '%s' is not true or false", attr, s)
}

func (f flag) eval(c *runCtx) (bool, error) {
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

// compileCondition compiles a choose or increment condition, which must be an expression
// giving a bool (or the literal true/false).
func compileCondition(attr, s string, opts exprOptions) (*expr, bool, error) {
	if !policy.IsExpression(s) {
		f, err := compileFlag(attr, s, false)
		return nil, f.lit, err
	}
	e, err := parseExpr(s, opts)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", attr, err)
	}
	if e.typ.known() && e.typ != tyBool {
		return nil, false, fmt.Errorf("%s: the expression must give a bool, not '%s'", attr, e.typ)
	}
	return e, false, nil
}
