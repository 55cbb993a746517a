package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// ignorePos compares documents as Render round trips promise: equal apart from positions.
var ignorePos = cmp.Options{cmpopts.IgnoreTypes(Pos{}), cmpopts.EquateEmpty()}

// inbound wraps policy elements in a document with one inbound section, starting on line 3.
func inbound(policies string) string {
	return "<policies>\n\t<inbound>\n" + policies + "\n\t</inbound>\n</policies>"
}

func TestParseDocument(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want *Document
	}{
		{
			name: "all sections",
			in: `<policies>
				<inbound><base /></inbound>
				<backend><base/></backend>
				<outbound />
				<on-error><base></base></on-error>
			</policies>`,
			want: &Document{
				Inbound:  &Section{Policies: []Policy{&Base{}}},
				Backend:  &Section{Policies: []Policy{&Base{}}},
				Outbound: &Section{},
				OnError:  &Section{Policies: []Policy{&Base{}}},
			},
		},
		{
			name: "sections in any order, absent ones nil",
			in:   `<policies><outbound/><inbound><base id="b"/></inbound></policies>`,
			want: &Document{
				Inbound:  &Section{Policies: []Policy{&Base{Meta: Meta{ID: "b"}}}},
				Outbound: &Section{},
			},
		},
		{
			name: "byte order mark",
			in:   "\uFEFF<policies><inbound><base/></inbound></policies>\n",
			want: &Document{Inbound: &Section{Policies: []Policy{&Base{}}}},
		},
		{
			name: "empty policies",
			in:   `<policies/>`,
			want: &Document{},
		},
		{
			name: "xml declaration, comments and processing instructions are dropped",
			in: `<?xml version="1.0" encoding="utf-8"?>
<!-- leading comment -->
<policies>
	<!-- IMPORTANT: keep base -->
	<inbound>
		<base /><!-- trailing -->
	</inbound>
</policies>
<!-- tail -->`,
			want: &Document{Inbound: &Section{Policies: []Policy{&Base{}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in, FormatXML)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, ignorePos); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		format Format
		want   *SyntaxError
	}{
		{
			name: "not XML",
			in:   "hello",
			want: &SyntaxError{Line: 1, Column: 1, Msg: "Data at the root level is invalid."},
		},
		{
			name: "empty",
			in:   "",
			want: &SyntaxError{Line: 1, Column: 1, Msg: "Root element is missing."},
		},
		{
			name: "wrong root",
			in:   "\n  <policy/>",
			want: &SyntaxError{Line: 2, Column: 3, Element: "policy", Msg: "The root element must be 'policies'."},
		},
		{
			name: "attribute on root",
			in:   `<policies a="b"/>`,
			want: &SyntaxError{Line: 1, Column: 1, Element: "policies", Msg: "The attribute 'a' is not allowed."},
		},
		{
			name: "two roots",
			in:   "<policies/>\n<policies/>",
			want: &SyntaxError{Line: 2, Column: 1, Msg: "There are multiple root elements."},
		},
		{
			name: "unclosed",
			in:   "<policies>\n\t<inbound>\n",
			want: &SyntaxError{Line: 3, Column: 1, Msg: "Unexpected end of file has occurred. The following elements are not closed: policies, inbound."},
		},
		{
			name: "mismatched end tag",
			in:   "<policies>\n\t<inbound>\n\t</outbound>\n</policies>",
			want: &SyntaxError{Line: 3, Column: 2, Msg: "The 'inbound' start tag on line 2 position 2 does not match the end tag of 'outbound'."},
		},
		{
			name: "unescaped ampersand in xml",
			in:   inbound(`<set-variable name="a" value="@(a && b)" />`),
			want: &SyntaxError{Line: 3, Column: 36, Msg: "Invalid XML: invalid character entity & (no semicolon)."},
		},
		{
			name: "unknown entity",
			in:   inbound(`<set-variable name="a" value="&nbsp;" />`),
			want: &SyntaxError{Line: 3, Column: 37, Msg: "Invalid XML: invalid character entity &nbsp;."},
		},
		{
			name: "duplicate attribute",
			in:   inbound(`		<set-variable name="a" name="b" value="c" />`),
			want: &SyntaxError{Line: 3, Column: 3, Msg: "'name' is a duplicate attribute name."},
		},
		{
			name: "doctype",
			in:   `<!DOCTYPE policies [<!ENTITY x "y">]><policies/>`,
			want: &SyntaxError{Line: 1, Column: 1, Msg: "DTDs and declarations are not allowed in a policy document."},
		},
		{
			name: "unknown section",
			in:   "<policies>\n  <inbund/>\n</policies>",
			want: &SyntaxError{Line: 2, Column: 3, Element: "inbund", Msg: "Unknown section; expected inbound, backend, outbound or on-error."},
		},
		{
			name: "section twice",
			in:   "<policies><inbound/>\n<inbound/></policies>",
			want: &SyntaxError{Line: 2, Column: 1, Element: "inbound", Msg: "The section is specified more than once."},
		},
		{
			name: "text in section",
			in:   "<policies><inbound>\nhello</inbound></policies>",
			want: &SyntaxError{Line: 1, Column: 11, Element: "inbound", Msg: "Text is not allowed in this element."},
		},
		{
			name: "unknown policy",
			in:   inbound("\t\t<base />\n\t\t<set-headers name=\"a\" />"),
			want: &SyntaxError{Line: 4, Column: 3, Element: "set-headers", Msg: "Unknown policy."},
		},
		{
			name: "namespaced policy is unknown",
			in:   inbound(`<x:set-header xmlns:x="urn:x" name="a" />`),
			want: &SyntaxError{Line: 3, Column: 1, Element: "x:set-header", Msg: "Unknown policy."},
		},
		{
			name: "base twice",
			in:   inbound("<base/>\n<base/>"),
			want: &SyntaxError{Line: 4, Column: 1, Element: "base", Msg: "The base element can appear only once in a section."},
		},
		{
			name: "base with content",
			in:   inbound("<base>x</base>"),
			want: &SyntaxError{Line: 3, Column: 1, Element: "base", Msg: "The base element must be empty."},
		},
		{
			name: "base inside choose",
			in:   inbound("<choose>\n<when condition=\"@(true)\">\n<base/>\n</when>\n</choose>"),
			want: &SyntaxError{Line: 5, Column: 1, Element: "base", Msg: "The base element is only allowed directly in a section."},
		},
		{
			name: "column counts characters, not bytes",
			in:   "<policies>\n<!-- ünïcödé --><inbound><bad/></inbound></policies>",
			want: &SyntaxError{Line: 2, Column: 26, Element: "bad", Msg: "Unknown policy."},
		},
		{
			name:   "rawxml positions refer to the unescaped input",
			in:     inbound(`<set-variable name="a" value="@(x < y && "a" != "b")" /><nope/>`),
			format: FormatRawXML,
			want:   &SyntaxError{Line: 3, Column: 57, Element: "nope", Msg: "Unknown policy."},
		},
		{
			name:   "rawxml error inside text after an expression",
			in:     "<policies>\n<inbound>\n<set-header name=\"a\"><value>@(a<b) & c</value></set-header>\n</inbound>\n</policies>",
			format: FormatRawXML,
			want:   &SyntaxError{Line: 3, Column: 37, Msg: "Invalid XML: invalid character entity & (no semicolon)."},
		},
		{
			name: "deep nesting",
			in:   "<policies>" + strings.Repeat("<a>", maxDepth) + "x",
			want: &SyntaxError{Line: 1, Column: 11 + 3*(maxDepth-1), Msg: "Elements are nested more than 100 deep."},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			format := orXML(tc.format)
			_, err := Parse(tc.in, format)
			var got *SyntaxError
			if !errors.As(err, &got) {
				t.Fatalf("Parse error = %v, want a *SyntaxError", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSyntaxErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *SyntaxError
		want string
	}{
		{&SyntaxError{Line: 12, Column: 151, Msg: "Root element is missing."}, "Root element is missing. Line 12, position 151."},
		{
			&SyntaxError{Line: 3, Column: 5, Element: "set-header", Msg: "Header name is invalid or restricted from modification"},
			"Error in element 'set-header' on line 3, column 5: Header name is invalid or restricted from modification",
		},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestParseLimits(t *testing.T) {
	t.Parallel()
	pad := func(n int) string {
		const head, tail = "<policies>", "</policies>"
		return head + strings.Repeat(" ", n-len(head)-len(tail)) + tail
	}
	if _, err := Parse(pad(MaxSize), FormatXML); err != nil {
		t.Errorf("Parse of exactly MaxSize bytes: %v", err)
	}
	_, err := Parse(pad(MaxSize+1), FormatXML)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Parse of MaxSize+1 bytes: error %v, want ErrTooLarge", err)
	}
	if _, err := Parse("<policies/>", "xml-link"); err == nil {
		t.Error("Parse with format xml-link: no error")
	}
}

func TestHasBase(t *testing.T) {
	t.Parallel()
	doc, err := Parse(`<policies>
		<inbound><set-variable name="a" value="b"/><base/></inbound>
		<backend><set-variable name="a" value="b"/></backend>
		<outbound/>
	</policies>`, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, name := range []string{SectionInbound, SectionBackend, SectionOutbound, SectionOnError} {
		got[name] = doc.Section(name).HasBase()
	}
	want := map[string]bool{SectionInbound: true, SectionBackend: false, SectionOutbound: false, SectionOnError: false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("HasBase per section (-want +got):\n%s", diff)
	}
	if !doc.HasBase() {
		t.Error("Document.HasBase() = false, want true")
	}
	noBase, err := Parse(`<policies><inbound><set-variable name="a" value="b"/></inbound></policies>`, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	if noBase.HasBase() {
		t.Error("Document.HasBase() = true for a document without base")
	}
}

func TestUnsupported(t *testing.T) {
	t.Parallel()
	doc, err := Parse(`<policies>
	<inbound>
		<base />
		<cors allow-credentials="true">
			<allowed-origins><origin>*</origin></allowed-origins>
		</cors>
		<choose>
			<when condition="@(true)">
				<mock-response status-code="200" />
			</when>
			<otherwise>
				<set-method>POST</set-method>
			</otherwise>
		</choose>
	</inbound>
	<outbound>
		<xsl-transform>
			<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
				<xsl:template match="/">x</xsl:template>
			</xsl:stylesheet>
		</xsl-transform>
	</outbound>
</policies>`, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	type found struct {
		Name string
		Line int
	}
	var got []found
	for _, u := range doc.Unsupported() {
		got = append(got, found{u.Name, u.Pos.Line})
	}
	want := []found{{"cors", 4}, {"mock-response", 9}, {"set-method", 12}, {"xsl-transform", 17}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Unsupported (-want +got):\n%s", diff)
	}
	if got := doc.Outbound.Unsupported(); len(got) != 1 || got[0].Name != "xsl-transform" {
		t.Errorf("Outbound.Unsupported() = %v, want xsl-transform only", got)
	}
	// Unsupported policies keep their content for Render.
	cors := doc.Inbound.Policies[1].(*Unsupported)
	want2 := &Element{Name: "cors", Attrs: []Attr{{"allow-credentials", "true"}}, Nodes: []Node{{Elem: &Element{
		Name:  "allowed-origins",
		Nodes: []Node{{Elem: &Element{Name: "origin", Nodes: []Node{{Text: "*"}}}}},
	}}}}
	if diff := cmp.Diff(want2, cors.Raw, ignorePos); diff != "" {
		t.Errorf("cors content (-want +got):\n%s", diff)
	}
}

func TestNamedValues(t *testing.T) {
	t.Parallel()
	doc, err := Parse(`<policies>
	<inbound>
		<validate-jwt header-name="{{jwt-header}}">
			<issuer-signing-keys><key>{{jwt-signing-key}}</key></issuer-signing-keys>
			<audiences><audience>{{aud}}</audience><audience>{{aud}}</audience></audiences>
		</validate-jwt>
		<set-header name="x-{{Env.Name}}"><value>{{a_b}}{{a_b}}</value></set-header>
		<cors><allowed-origins><origin>{{origin}}</origin></allowed-origins></cors>
		<set-variable name="v" value="{{ spaced }} {{}} {x} {{{nested}}}" />
	</inbound>
</policies>`, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Env.Name", "a_b", "aud", "jwt-header", "jwt-signing-key", "nested", "origin"}
	if diff := cmp.Diff(want, doc.NamedValues()); diff != "" {
		t.Errorf("NamedValues (-want +got):\n%s", diff)
	}
}

func TestReplaceNamedValues(t *testing.T) {
	t.Parallel()
	values := map[string]string{"a": "1", "b": "{{a}}"}
	lookup := func(name string) string { return values[name] }
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"{{a}}", "1"},
		{"x{{a}}y{{b}}z", "x1y{{a}}z"},
		{"{{missing}}", ""},
		{"{{ a }}", "{{ a }}"},
		{"{{{a}}}", "{1}"},
	}
	for _, tc := range tests {
		if got := ReplaceNamedValues(tc.in, lookup); got != tc.want {
			t.Errorf("ReplaceNamedValues(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRegistryExtension(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	r.Register("gatehouse-message-limit", func(_ *Registry, e *Element) (Policy, error) {
		max, ok := e.Attr("max-size")
		if !ok {
			return nil, e.Errorf("The attribute 'max-size' is required.")
		}
		return &testPolicy{Meta: Meta{Pos: e.Pos}, MaxSize: max}, nil
	})
	doc, err := r.Parse(inbound(`<gatehouse-message-limit max-size="1024" />`), FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	want := &Document{Inbound: &Section{Policies: []Policy{&testPolicy{MaxSize: "1024"}}}}
	if diff := cmp.Diff(want, doc, ignorePos); diff != "" {
		t.Errorf("Parse with extension (-want +got):\n%s", diff)
	}
	_, err = r.Parse(inbound(`<gatehouse-message-limit />`), FormatXML)
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 3 || se.Element != "gatehouse-message-limit" {
		t.Errorf("Parse of invalid extension policy: error %v, want a SyntaxError on line 3", err)
	}
	if _, err := Parse(inbound(`<gatehouse-message-limit max-size="1" />`), FormatXML); err == nil {
		t.Error("default registry accepted an extension element")
	}
}

type testPolicy struct {
	Meta
	MaxSize string
}

func (*testPolicy) ElementName() string { return "gatehouse-message-limit" }

func (p *testPolicy) Encode() *Element {
	return newElement("gatehouse-message-limit", p.Meta).attrAlways("max-size", p.MaxSize)
}
