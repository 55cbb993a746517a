package odata_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"gatehouse.dev/management/internal/odata"
)

// ignorePos compares trees by shape and values; TestParsePositions checks the offsets.
var ignorePos = cmp.Options{
	cmpopts.IgnoreFields(odata.Ident{}, "At"),
	cmpopts.IgnoreFields(odata.Value{}, "At"),
	cmpopts.IgnoreFields(odata.Not{}, "At"),
	cmpopts.IgnoreFields(odata.Call{}, "At"),
}

func str(s string) odata.Value { return odata.Value{Kind: odata.KindString, Text: s} }
func num(s string) odata.Value { return odata.Value{Kind: odata.KindNumber, Text: s} }
func boolean(b bool) odata.Value {
	if b {
		return odata.Value{Kind: odata.KindBool, Text: "true"}
	}
	return odata.Value{Kind: odata.KindBool, Text: "false"}
}

var null = odata.Value{Kind: odata.KindNull, Text: "null"}

func cmpr(field string, op odata.Op, v odata.Value) *odata.Compare {
	return &odata.Compare{Field: odata.Ident{Name: field}, Op: op, Value: v}
}

func call(name string, op odata.Op, field, s string) *odata.Call {
	return &odata.Call{Name: name, Op: op, Field: odata.Ident{Name: field}, Value: str(s)}
}

func and(terms ...odata.Expr) *odata.And { return &odata.And{Terms: terms} }
func or(terms ...odata.Expr) *odata.Or   { return &odata.Or{Terms: terms} }
func not(x odata.Expr) *odata.Not        { return &odata.Not{X: x} }

var parseTests = []struct {
	name   string
	filter string
	want   odata.Expr
	canon  string // want.String(); "" when it equals filter
}{
	{name: "empty", filter: "", want: nil},
	{name: "blank", filter: " \t\n ", want: nil},
	{name: "eq string", filter: "name eq 'echo'", want: cmpr("name", odata.OpEq, str("echo"))},
	{name: "escaped quote", filter: "name eq 'it''s'''", want: cmpr("name", odata.OpEq, str("it's'"))},
	{name: "empty string", filter: "description eq ''", want: cmpr("description", odata.OpEq, str(""))},
	{name: "unicode string", filter: "displayName eq 'Grüße 🚀'", want: cmpr("displayName", odata.OpEq, str("Grüße 🚀"))},
	{name: "datetime literal", filter: "timestamp ge datetime'2026-11-24T00:00:00'",
		want: cmpr("timestamp", odata.OpGe, odata.Value{Kind: odata.KindDateTime, Text: "2026-11-24T00:00:00"})},
	{name: "datetimeoffset literal, any case", filter: "t lt DateTimeOffset'it''s'",
		want: cmpr("t", odata.OpLt, odata.Value{Kind: odata.KindDateTime, Text: "it's"}), canon: "t lt datetime'it''s'"},
	{name: "keywords any case", filter: "Name NE 'x'", want: cmpr("Name", odata.OpNe, str("x")), canon: "Name ne 'x'"},
	{name: "every operator", filter: "a gt 'x' and a ge 'x' and a lt 'x' and a le 'x'", want: and(
		cmpr("a", odata.OpGt, str("x")), cmpr("a", odata.OpGe, str("x")),
		cmpr("a", odata.OpLt, str("x")), cmpr("a", odata.OpLe, str("x")))},
	{name: "bool", filter: "isCurrent eq TRUE", want: cmpr("isCurrent", odata.OpEq, boolean(true)), canon: "isCurrent eq true"},
	{name: "bool false", filter: "isCurrent ne false", want: cmpr("isCurrent", odata.OpNe, boolean(false))},
	{name: "null", filter: "description eq Null", want: cmpr("description", odata.OpEq, null), canon: "description eq null"},
	{name: "integer", filter: "revision ge 2", want: cmpr("revision", odata.OpGe, num("2"))},
	{name: "negative decimal with exponent", filter: "revision lt -1.5E+3", want: cmpr("revision", odata.OpLt, num("-1.5E+3"))},
	{name: "and binds tighter than or", filter: "a eq 'x' or b eq 'y' and c eq 'z'", want: or(
		cmpr("a", odata.OpEq, str("x")),
		and(cmpr("b", odata.OpEq, str("y")), cmpr("c", odata.OpEq, str("z"))))},
	{name: "parentheses", filter: "(a eq 'x' or b eq 'y') and c eq 'z'", want: and(
		or(cmpr("a", odata.OpEq, str("x")), cmpr("b", odata.OpEq, str("y"))),
		cmpr("c", odata.OpEq, str("z")))},
	{name: "redundant parentheses vanish", filter: "((a eq 'x'))", want: cmpr("a", odata.OpEq, str("x")), canon: "a eq 'x'"},
	{name: "chains are flat", filter: "a eq 1 and b eq 2 and c eq 3", want: and(
		cmpr("a", odata.OpEq, num("1")), cmpr("b", odata.OpEq, num("2")), cmpr("c", odata.OpEq, num("3")))},
	{name: "explicit grouping is kept", filter: "a eq 1 and (b eq 2 and c eq 3)", want: and(
		cmpr("a", odata.OpEq, num("1")), and(cmpr("b", odata.OpEq, num("2")), cmpr("c", odata.OpEq, num("3"))))},
	{name: "not binds to one comparison", filter: "not a eq 'x' and b eq 'y'", want: and(
		not(cmpr("a", odata.OpEq, str("x"))), cmpr("b", odata.OpEq, str("y"))),
		canon: "not (a eq 'x') and b eq 'y'"},
	{name: "not of a group", filter: "not (a eq 'x' or b eq 'y')", want: not(
		or(cmpr("a", odata.OpEq, str("x")), cmpr("b", odata.OpEq, str("y"))))},
	{name: "double not", filter: "not not a eq 'x'", want: not(not(cmpr("a", odata.OpEq, str("x")))), canon: "not not (a eq 'x')"},
	{name: "mixed case keywords", filter: "a eq 1 AND NOT b eq 2 Or c eq 3", want: or(
		and(cmpr("a", odata.OpEq, num("1")), not(cmpr("b", odata.OpEq, num("2")))),
		cmpr("c", odata.OpEq, num("3"))), canon: "a eq 1 and not (b eq 2) or c eq 3"},
	{name: "blanks", filter: "\tname\neq\r\n'x'  and(path eq 'p')", want: and(
		cmpr("name", odata.OpEq, str("x")), cmpr("path", odata.OpEq, str("p"))), canon: "name eq 'x' and path eq 'p'"},
	{name: "contains", filter: "contains(name, 'ws')", want: call("contains", odata.OpContains, "name", "ws")},
	{name: "startswith", filter: "StartsWith(path,'chat')", want: call("startswith", odata.OpStartsWith, "path", "chat"),
		canon: "startswith(path, 'chat')"},
	{name: "endswith", filter: "endswith(serviceUrl, '/hub')", want: call("endswith", odata.OpEndsWith, "serviceUrl", "/hub")},
	{name: "substringof takes the needle first", filter: "substringof('echo', displayName)",
		want: call("substringof", odata.OpContains, "displayName", "echo")},
	{name: "function eq true", filter: "substringof('x', name) eq true", want: call("substringof", odata.OpContains, "name", "x"),
		canon: "substringof('x', name)"},
	{name: "function ne false", filter: "contains(name, 'x') ne false", want: call("contains", odata.OpContains, "name", "x"),
		canon: "contains(name, 'x')"},
	{name: "function eq false", filter: "contains(name, 'x') eq false", want: not(call("contains", odata.OpContains, "name", "x")),
		canon: "not contains(name, 'x')"},
	{name: "function ne true", filter: "endswith(name, 'x') ne true", want: not(call("endswith", odata.OpEndsWith, "name", "x")),
		canon: "not endswith(name, 'x')"},
	{name: "functions combined", filter: "not contains(name, 'a') or startswith(path, 'b') and isCurrent eq true", want: or(
		not(call("contains", odata.OpContains, "name", "a")),
		and(call("startswith", odata.OpStartsWith, "path", "b"), cmpr("isCurrent", odata.OpEq, boolean(true))))},
	{name: "nesting at the limit", filter: strings.Repeat("(", odata.MaxDepth) + "a eq 1" + strings.Repeat(")", odata.MaxDepth),
		want: cmpr("a", odata.OpEq, num("1")), canon: "a eq 1"},
	{name: "length at the limit", filter: "name eq '" + strings.Repeat("x", odata.MaxLength-10) + "'",
		want: cmpr("name", odata.OpEq, str(strings.Repeat("x", odata.MaxLength-10)))},
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range parseTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := odata.Parse(tc.filter)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tc.filter, err)
			}
			if diff := cmp.Diff(tc.want, got, ignorePos); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tc.filter, diff)
			}
			if got == nil {
				return
			}
			canon := tc.canon
			if canon == "" {
				canon = tc.filter
			}
			if s := got.String(); s != canon {
				t.Errorf("String() = %q, want %q", s, canon)
			}
			again, err := odata.Parse(got.String())
			if err != nil {
				t.Fatalf("Parse(String()) error: %v", err)
			}
			if diff := cmp.Diff(got, again, ignorePos); diff != "" {
				t.Errorf("String() does not parse back to the same tree (-first +again):\n%s", diff)
			}
		})
	}
}

func TestParsePositions(t *testing.T) {
	t.Parallel()
	//      0         1         2         3         4
	//      01234567890123456789012345678901234567890123456
	in := "name eq 'x' and not contains(path, 'y') or n ne 1"
	want := &odata.Or{Terms: []odata.Expr{
		&odata.And{Terms: []odata.Expr{
			&odata.Compare{Field: odata.Ident{Name: "name", At: 0}, Op: odata.OpEq, Value: odata.Value{Kind: odata.KindString, Text: "x", At: 8}},
			&odata.Not{At: 16, X: &odata.Call{Name: "contains", Op: odata.OpContains, At: 20,
				Field: odata.Ident{Name: "path", At: 29}, Value: odata.Value{Kind: odata.KindString, Text: "y", At: 35}}},
		}},
		&odata.Compare{Field: odata.Ident{Name: "n", At: 43}, Op: odata.OpNe, Value: odata.Value{Kind: odata.KindNumber, Text: "1", At: 48}},
	}}
	got, err := odata.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	for _, c := range []struct {
		e    odata.Expr
		want int
	}{{got, 0}, {want.Terms[0], 0}, {want.Terms[0].(*odata.And).Terms[1], 16}, {want.Terms[1], 43}} {
		if p := c.e.Pos(); p != c.want {
			t.Errorf("%s: Pos() = %d, want %d", c.e, p, c.want)
		}
	}
}

var parseErrorTests = []struct {
	name   string
	filter string
	want   *odata.Error
}{
	{"trailing token", "name eq 'x' foo", &odata.Error{Pos: 12, Msg: "unexpected token 'foo'"}},
	{"unknown function", "bar(name, 'x')", &odata.Error{Pos: 0,
		Msg: "unknown function 'bar'; supported: contains, endswith, startswith, substringof"}},
	{"unknown operator", "name like 'x'", &odata.Error{Pos: 5, Msg: "unknown operator 'like'; expected eq, ne, gt, ge, lt or le"}},
	{"missing operator", "name", &odata.Error{Pos: 4,
		Msg: "unexpected end of filter after 'name'; expected an operator (eq, ne, gt, ge, lt or le)"}},
	{"punctuation for operator", "name = 'x'", &odata.Error{Pos: 5, Msg: "unexpected character '='"}},
	{"missing value", "name eq", &odata.Error{Pos: 7,
		Msg: "unexpected end of filter after 'eq'; expected a value (a 'string', a number, true, false or null)"}},
	{"unquoted value", "name eq echo", &odata.Error{Pos: 8,
		Msg: "expected a value (a 'string', a number, true, false or null) after 'eq', found 'echo' (string values need single quotes)"}},
	{"unterminated string", "name eq 'it''s", &odata.Error{Pos: 8, Msg: "unterminated string literal"}},
	{"unterminated datetime", "t ge datetime'2026", &odata.Error{Pos: 13, Msg: "unterminated string literal"}},
	{"datetime as a field", "datetime'x' eq 'y'", &odata.Error{Pos: 0,
		Msg: "unexpected datetime 'x'; expected a comparison such as name eq 'value', a function call, 'not' or '('"}},
	{"unclosed parenthesis", "(name eq 'x'", &odata.Error{Pos: 12,
		Msg: "unexpected end of filter after string 'x'; expected ')' to close the '(' at position 0"}},
	{"stray parenthesis", "name eq 'x')", &odata.Error{Pos: 11, Msg: "unexpected token ')'"}},
	{"empty parentheses", "()", &odata.Error{Pos: 1,
		Msg: "unexpected token ')'; expected a comparison such as name eq 'value', a function call, 'not' or '('"}},
	{"dangling and", "name eq 'x' and", &odata.Error{Pos: 15,
		Msg: "unexpected end of filter after 'and'; expected a comparison such as name eq 'value', a function call, 'not' or '('"}},
	{"doubled keyword", "name eq 'x' and or path eq 'y'", &odata.Error{Pos: 16,
		Msg: "unexpected token 'or'; expected a comparison such as name eq 'value', a function call, 'not' or '('"}},
	{"value first", "'x' eq name", &odata.Error{Pos: 0,
		Msg: "unexpected string 'x'; expected a comparison such as name eq 'value', a function call, 'not' or '('"}},
	{"contains arguments swapped", "contains('x', name)", &odata.Error{Pos: 9,
		Msg: "unexpected string 'x'; expected a field name as the first argument of contains"}},
	{"substringof arguments swapped", "substringof(name, 'x')", &odata.Error{Pos: 12,
		Msg: "unexpected token 'name'; expected a 'string' as the first argument of substringof"}},
	{"function with one argument", "contains(name)", &odata.Error{Pos: 13,
		Msg: "unexpected token ')'; expected ',' between the arguments of contains"}},
	{"function with a number", "startswith(name, 5)", &odata.Error{Pos: 17,
		Msg: "unexpected number 5; expected a 'string' as the second argument of startswith"}},
	{"function with three arguments", "endswith(name, 'a', 'b')", &odata.Error{Pos: 18,
		Msg: "unexpected token ','; expected ')' after the arguments of endswith"}},
	{"function compared with a string", "contains(name, 'x') eq 'y'", &odata.Error{Pos: 23,
		Msg: "unexpected string 'y'; expected true or false after 'eq': a function call can only be compared with a boolean"}},
	{"bad character", "name eq 'a' # 1", &odata.Error{Pos: 12, Msg: "unexpected character '#'"}},
	{"control character is escaped", "name eq 'a' \x01", &odata.Error{Pos: 12, Msg: `unexpected character '\x01'`}},
	{"field path ending in a slash", "properties/ eq 'a'", &odata.Error{Pos: 10, Msg: "unexpected character '/'"}},
	{"raw semicolon", "name eq 'a';name eq 'b'", &odata.Error{Pos: 11, Msg: "unexpected character ';'"}},
	{"number without fraction", "revision eq 1.", &odata.Error{Pos: 14, Msg: "malformed number '1.': expected digits after '.'"}},
	{"number without exponent", "revision eq 1e+", &odata.Error{Pos: 15, Msg: "malformed number '1e+': expected digits in the exponent"}},
	{"number out of range", "revision eq 1e1001", &odata.Error{Pos: 12, Msg: "number '1e1001' is out of range"}},
	{"invalid UTF-8", "name eq 'a\xffb'", &odata.Error{Pos: 10, Msg: "filter is not valid UTF-8"}},
	{"NUL in string", "name eq 'a\x00b'", &odata.Error{Pos: 8, Msg: "string literal contains a NUL character"}},
	{"long token is cut", "name eq 'x' " + strings.Repeat("a", 100), &odata.Error{Pos: 12,
		Msg: "unexpected token '" + strings.Repeat("a", 32) + "…'"}},
	{"too long", "name eq '" + strings.Repeat("x", odata.MaxLength) + "'", &odata.Error{Pos: odata.MaxLength,
		Msg: "filter is longer than 2048 bytes"}},
	{"too deep parentheses", strings.Repeat("(", odata.MaxDepth+1) + "a eq 1" + strings.Repeat(")", odata.MaxDepth+1),
		&odata.Error{Pos: odata.MaxDepth, Msg: "filter is nested deeper than 32 levels"}},
	{"too deep not", strings.Repeat("not ", odata.MaxDepth+1) + "a eq 1",
		&odata.Error{Pos: 4 * odata.MaxDepth, Msg: "filter is nested deeper than 32 levels"}},
	{"deep nesting does not overflow", strings.Repeat("(", odata.MaxLength), &odata.Error{Pos: odata.MaxDepth,
		Msg: "filter is nested deeper than 32 levels"}},
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range parseErrorTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := odata.Parse(tc.filter)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %v", tc.filter, got, tc.want)
			}
			var perr *odata.Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse(%q) error %v (%T) is not an *odata.Error", tc.filter, err, err)
			}
			if diff := cmp.Diff(tc.want, perr); diff != "" {
				t.Errorf("Parse(%q) error mismatch (-want +got):\n%s", tc.filter, diff)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	_, err := odata.Parse("name eq 'x' foo")
	if got, want := err.Error(), "unexpected token 'foo' at position 12"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
