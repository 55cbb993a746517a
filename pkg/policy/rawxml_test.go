package policy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// rawTests are rawxml policy elements and the set-variable value (or first text value) they
// must decode to. Shared with TestRoundTrip and FuzzParse.
var rawTests = []struct {
	name string
	raw  string
	want string
}{
	{"quotes and operators", `<set-variable name="v" value="@(context.Request.Headers.GetValueOrDefault("a","") != "")" />`, `@(context.Request.Headers.GetValueOrDefault("a","") != "")`},
	{"ampersands", `<set-variable name="v" value="@(a && b)" />`, `@(a && b)`},
	{"angle brackets in text", `<set-header name="h"><value>@(a < b ? "<x>" : "y")</value></set-header>`, `@(a < b ? "<x>" : "y")`},
	{"statement block", "<set-variable name=\"v\" value=\"@{\n\tif (x > 1) { return \"a\"; }\n\treturn \"}\";\n}\" />", "@{\n\tif (x > 1) { return \"a\"; }\n\treturn \"}\";\n}"},
	{"brackets in strings", `<set-variable name="v" value="@(")" + ")(" + "\")" + '(' + "")" />`, `@(")" + ")(" + "\")" + '(' + "")`},
	{"verbatim string", `<set-variable name="v" value="@(@"c:\dir\""" + @")")" />`, `@(@"c:\dir\""" + @")")`},
	{"interpolated string", `<set-variable name="v" value="@($"{a}<{(b ? "x" : ")")}>{{}}" + $@"{c:N2}""")" />`, `@($"{a}<{(b ? "x" : ")")}>{{}}" + $@"{c:N2}""")`},
	{"comments", "<set-variable name=\"v\" value=\"@{ /* ) */ return 1; // )\n}\" />", "@{ /* ) */ return 1; // )\n}"},
	{"single-quoted attribute", `<set-variable name="v" value='@(c == '\'' ? "a" : "b")' />`, `@(c == '\'' ? "a" : "b")`},
	{"leading whitespace", "<set-variable name=\"v\" value=\" \t@(a<b)\" />", " \t@(a<b)"},
	{"entities inside expressions are literal", `<set-variable name="v" value="@(&amp;)" />`, `@(&amp;)`},
	{"text outside expressions is XML", `<set-variable name="v" value="a &lt; b &amp; c" />`, `a < b & c`},
	{"expression not at start is XML", `<set-variable name="v" value="x @(a &lt; b)" />`, `x @(a < b)`},
	{"rest after expression is XML", `<set-variable name="v" value="@(a<b) &amp;" />`, `@(a<b) &`},
	{"unbalanced expression", `<set-variable name="v" value="@(a" />`, `@(a`},
	{"named value in expression", `<set-variable name="v" value="@("{{key}}" != "")" />`, `@("{{key}}" != "")`},
	{"cdata", `<set-header name="h"><value><![CDATA[@(a<b) & "]]></value></set-header>`, `@(a<b) & "`},
	{"comment before value", `<set-header name="h"><value><!-- @(x --> @(a<b)</value></set-header>`, `@(a<b)`},
	{"greater-than in tag attribute", `<set-query-parameter name="a>b"><value>@(x<y)</value></set-query-parameter>`, `@(x<y)`},
}

func TestRawXML(t *testing.T) {
	t.Parallel()
	for _, tc := range rawTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse(inbound(tc.raw), FormatRawXML)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var got string
			switch p := doc.Inbound.Policies[0].(type) {
			case *SetVariable:
				got = p.Value
			case *SetHeader:
				got = p.Values[0]
			case *SetQueryParameter:
				got = p.Values[0]
			}
			if got != tc.want {
				t.Errorf("value = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRawXMLIsNotXML(t *testing.T) {
	t.Parallel()
	in := inbound(`<set-variable name="v" value="@(context.Request.Headers.GetValueOrDefault("a","") != "")" />`)
	if _, err := Parse(in, FormatRawXML); err != nil {
		t.Fatalf("Parse(rawxml): %v", err)
	}
	var se *SyntaxError
	if _, err := Parse(in, FormatXML); !errors.As(err, &se) || se.Line != 3 {
		t.Errorf("Parse(xml) error = %v, want a syntax error on line 3", err)
	}
}

// TestRawXMLLineNumbers checks that escaping multi-line expressions keeps error positions on
// the lines and columns of the input.
func TestRawXMLLineNumbers(t *testing.T) {
	t.Parallel()
	in := `<policies>
	<inbound>
		<set-variable name="a" value="@{
			if (x < 1 && y > "2") { return "<&>"; }
			return "";
		}" />
		<set-header name="b"><value>@(a && b)</value></set-header>
		<set-header name="Connection"><value>@("<" + "&")</value></set-header>
	</inbound>
</policies>`
	_, err := Parse(in, FormatRawXML)
	want := &SyntaxError{Line: 8, Column: 3, Element: "set-header", Msg: "Header name is invalid or restricted from modification"}
	var got *SyntaxError
	if !errors.As(err, &got) {
		t.Fatalf("Parse error = %v, want a *SyntaxError", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestExprEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int // -1: not closed
	}{
		{"@()", 3},
		{"@(a)b", 4},
		{"@{ return (1); }x", 16},
		{"@(a[1] + f(b))", 14},
		{`@(")")`, 6},
		{`@("\")")`, 8},
		{`@(')')`, 6},
		{`@('\'')`, 7},
		{`@(@"\")`, 7},
		{`@(@"a""")")`, 9},
		{`@($"{x})")`, 10},
		{`@($"{{)")`, 9},
		{`@($"{f(")")}")`, 14},
		{`@($"{x:)}")`, 11},
		{`@($@"{x}"")")`, 13},
		{"@(a // )\n)", 10},
		{"@(a /* ) */)", 12},
		{"@(a / b)", 8},
		{"@(@class)", 9},
		{"@(", -1},
		{"@(a", -1},
		{`@(")`, -1},
		{`@(')`, -1},
		{"@(a // )", -1},
		{"@(a /* )", -1},
		{`@($"{)`, -1},
	}
	for _, tc := range tests {
		if got := exprEnd(tc.in, 0, nil); got != tc.want {
			t.Errorf("exprEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestRawXMLBudget checks that a value full of unterminated expressions is refused instead of
// being scanned in quadratic time.
func TestRawXMLBudget(t *testing.T) {
	t.Parallel()
	var b []byte
	b = append(b, "<policies><inbound>"...)
	for len(b) < MaxSize-100 {
		b = append(b, `<a b="@("/>`...)
	}
	b = append(b, "</inbound></policies>"...)
	_, err := Parse(string(b), FormatRawXML)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Msg != "The policy expressions are too long to scan." {
		t.Fatalf("Parse error = %v, want the expression budget error", err)
	}
}

func TestIsExpression(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"@(x)": true, "@{ return 1; }": true, " \n@(x)": true, "@x": false, "x@(y)": false, "": false, "{{nv}}": false,
	}
	for in, want := range tests {
		if got := IsExpression(in); got != want {
			t.Errorf("IsExpression(%q) = %v, want %v", in, got, want)
		}
	}
}
