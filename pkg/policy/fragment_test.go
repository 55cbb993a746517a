package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIncludeFragment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    *IncludeFragment
		wantErr string
	}{
		{name: "fragment id", in: `<include-fragment fragment-id="auth" />`, want: &IncludeFragment{FragmentID: "auth"}},
		{name: "with id", in: `<include-fragment id="i" fragment-id="auth"></include-fragment>`, want: &IncludeFragment{Meta: Meta{ID: "i"}, FragmentID: "auth"}},
		{name: "no fragment id", in: `<include-fragment />`, wantErr: "The attribute 'fragment-id' is required."},
		{name: "blank fragment id", in: `<include-fragment fragment-id=" " />`, wantErr: "The attribute 'fragment-id' is required."},
		{name: "expression", in: `<include-fragment fragment-id="@(&quot;a&quot;)" />`, wantErr: "Policy expressions are not allowed in the attribute 'fragment-id'."},
		{name: "named value", in: `<include-fragment fragment-id="{{name}}" />`, wantErr: "Named values are not allowed in the attribute 'fragment-id'."},
		{name: "other attribute", in: `<include-fragment fragment-id="a" x="1" />`, wantErr: "The attribute 'x' is not allowed."},
		{name: "content", in: `<include-fragment fragment-id="a"><base /></include-fragment>`, wantErr: "The include-fragment element must be empty."},
		{name: "text", in: `<include-fragment fragment-id="a">x</include-fragment>`, wantErr: "Text is not allowed in this element."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse("<policies><inbound>"+tc.in+"</inbound></policies>", FormatXML)
			if !wantError(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff([]Policy{tc.want}, doc.Inbound.Policies, ignorePos); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
}

// orXML is format, or FormatXML when it is empty.
func orXML(format Format) Format {
	if format == "" {
		return FormatXML
	}
	return format
}

// wantError fails t unless err contains want (no error when want is empty), and reports
// whether the test goes on to check a result.
func wantError(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("err = %v, want %q", err, want)
	case want == "" && err != nil:
		t.Fatal(err)
	}
	return want == ""
}

func TestDocumentFragments(t *testing.T) {
	t.Parallel()
	doc, err := Parse(`<policies>
	<inbound><include-fragment fragment-id="a" /><choose><when condition="@(true)"><include-fragment fragment-id="b" /></when></choose></inbound>
	<outbound><include-fragment fragment-id="c" /><retry condition="@(true)" count="1" interval="1"><include-fragment fragment-id="d" /></retry></outbound>
</policies>`, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	want := []FragmentRef{{"a", Pos{2, 11}}, {"b", Pos{2, 81}}, {"c", Pos{3, 12}}, {"d", Pos{3, 98}}}
	if diff := cmp.Diff(want, doc.Fragments()); diff != "" {
		t.Errorf("Fragments (-want +got):\n%s", diff)
	}
}

func TestParseFragment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		format   Format
		want     []Policy
		wantErr  string
	}{
		{name: "one policy", in: `<fragment><rate-limit calls="5" renewal-period="60" /></fragment>`,
			want: []Policy{&RateLimit{Calls: "5", RenewalPeriod: "60"}}},
		{name: "content without the wrapper", in: "<rate-limit calls=\"5\" renewal-period=\"60\" />\n<base-not-here-either />", wantErr: "Error in element 'base-not-here-either' on line 2, column 1: Unknown policy."},
		{name: "content without the wrapper parses", in: "\n<rate-limit calls=\"5\" renewal-period=\"60\" />\n<ip-filter action=\"allow\"><address>1.2.3.4</address></ip-filter>",
			want: []Policy{&RateLimit{Calls: "5", RenewalPeriod: "60"}, &IPFilter{Action: "allow", Addresses: []string{"1.2.3.4"}}}},
		{name: "error column on the first line of unwrapped content", in: `<rate-limit calls="x" renewal-period="60" />`,
			wantErr: "Error in element 'rate-limit' on line 1, column 1:"},
		{name: "rawxml expression", format: FormatRawXML, in: `<fragment><set-header name="X" exists-action="override"><value>@(1 < 2 ? "a" : "b")</value></set-header></fragment>`,
			want: []Policy{&SetHeader{Name: "X", ExistsAction: "override", Values: []string{`@(1 < 2 ? "a" : "b")`}}}},
		{name: "a policy document", in: `<policies />`, wantErr: "Error in element 'policies' on line 1, column 1: Unknown policy."},
		{name: "a root named like fragment", in: `<fragments><base /></fragments>`, wantErr: "Error in element 'fragments' on line 1, column 1: Unknown policy."},
		{name: "byte order mark", in: "\uFEFF<fragment><rate-limit calls=\"5\" renewal-period=\"60\" /></fragment>", want: []Policy{&RateLimit{Calls: "5", RenewalPeriod: "60"}}},
		{name: "empty", in: `<fragment />`, wantErr: "A policy fragment must contain at least one policy."},
		{name: "section", in: `<fragment><inbound /></fragment>`, wantErr: "must not contain a section element"},
		{name: "base", in: `<fragment><base /></fragment>`, wantErr: "must not contain the base element"},
		{name: "nested include", in: `<fragment><include-fragment fragment-id="x" /></fragment>`, wantErr: "cannot include another policy fragment"},
		{name: "nested include in choose", in: `<fragment><choose><when condition="@(true)"><include-fragment fragment-id="x" /></when></choose></fragment>`,
			wantErr: "Error in element 'include-fragment' on line 1, column 45: A policy fragment cannot include another policy fragment."},
		{name: "websocket-limits", in: `<fragment><websocket-limits idle-timeout="60" /></fragment>`, wantErr: "not allowed in a policy fragment"},
		{name: "attribute on root", in: `<fragment x="1"><base /></fragment>`, wantErr: "The attribute 'x' is not allowed."},
		{name: "malformed", in: `<fragment><rate-limit></fragment>`, wantErr: "Line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			format := orXML(tc.format)
			f, err := ParseFragment(tc.in, format)
			if !wantError(t, err, tc.wantErr) {
				return
			}
			if diff := cmp.Diff(tc.want, f.Policies, ignorePos); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFragmentSize(t *testing.T) {
	t.Parallel()
	big := "<fragment><set-header name=\"X\" exists-action=\"override\"><value>" + strings.Repeat("a", MaxFragmentSize) + "</value></set-header></fragment>"
	if _, err := ParseFragment(big, FormatXML); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// TestFragmentRender checks both renderings read back as the same fragment: with the
// <fragment> root (rawxml, as APIM returns it) and without (xml).
func TestFragmentRender(t *testing.T) {
	t.Parallel()
	in := `<fragment><set-header name="X" exists-action="override"><value>@(context.Api.Name + "&lt;")</value></set-header><rate-limit calls="{{calls}}" renewal-period="60" /></fragment>`
	f, err := ParseFragment(in, FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	content := f.RenderContent(FormatXML)
	if strings.Contains(content, "<fragment") || !strings.HasPrefix(content, "<set-header") {
		t.Errorf("RenderContent(xml) = %q, want the policies without the <fragment> root", content)
	}
	raw := f.Render(FormatRawXML)
	if !strings.HasPrefix(raw, "<fragment>") || !strings.Contains(raw, `@(context.Api.Name + "<")`) {
		t.Errorf("Render(rawxml) = %q, want the <fragment> root and the expression unescaped", raw)
	}
	for _, tc := range []struct {
		text   string
		format Format
	}{{content, FormatXML}, {raw, FormatRawXML}, {f.Render(FormatXML), FormatXML}} {
		back, err := ParseFragment(tc.text, tc.format)
		if err != nil {
			t.Fatalf("%q does not read back: %v", tc.text, err)
		}
		if diff := cmp.Diff(f, back, ignorePos); diff != "" {
			t.Errorf("round trip of %q (-want +got):\n%s", tc.text, diff)
		}
	}
	if diff := cmp.Diff([]string{"calls"}, f.NamedValues()); diff != "" {
		t.Errorf("NamedValues (-want +got):\n%s", diff)
	}
}

// FuzzParseFragment checks that ParseFragment never panics, fails only with its documented
// errors, and that whatever it accepts reads back equal from both of its renderings.
func FuzzParseFragment(f *testing.F) {
	for _, tc := range elementTests {
		f.Add("<fragment>"+tc.xml+"</fragment>", false)
		f.Add(tc.xml, false)
	}
	for _, tc := range rawTests {
		f.Add("<fragment>"+tc.raw+"</fragment>", true)
	}
	f.Fuzz(func(t *testing.T, in string, raw bool) {
		format := FormatXML
		if raw {
			format = FormatRawXML
		}
		frag, err := ParseFragment(in, format)
		if err != nil {
			checkParseError(t, err)
			return
		}
		for _, out := range []string{frag.Render(FormatRawXML), frag.RenderContent(FormatXML)} {
			if len(out) > MaxFragmentSize {
				continue
			}
			f := FormatXML
			if strings.HasPrefix(out, "<fragment") {
				f = FormatRawXML
			}
			again, err := ParseFragment(out, f)
			if err != nil {
				t.Fatalf("ParseFragment(%q) of its rendering: %v\ninput: %q", out, err, in)
			}
			if diff := cmp.Diff(frag, again, ignorePos); diff != "" {
				t.Fatalf("rendering %q reads back different (-first +second):\n%s", out, diff)
			}
		}
	})
}

func TestFragmentContent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"<fragment><base-like /></fragment>", "<base-like />", true},
		{"\n<fragment >\n\t<a />\n</fragment >\n", "\n\t<a />\n", true},
		{"<a />", "", false},
		{"<fragment><a /></fragment><!-- after -->", "", false},
	} {
		got, ok := FragmentContent(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("FragmentContent(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
