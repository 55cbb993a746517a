package policy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenInputs returns the testdata inputs: name.input.xml or name.input.rawxml, parsed in the
// format their extension names.
func goldenInputs(t testing.TB) map[string]Format {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.input.*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	inputs := map[string]Format{}
	for _, p := range paths {
		inputs[p] = Format(strings.TrimPrefix(filepath.Ext(p), "."))
	}
	return inputs
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	for path, format := range goldenInputs(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Parse(string(in), format)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			base := strings.TrimSuffix(path, ".input."+string(format))
			for _, out := range []Format{FormatXML, FormatRawXML} {
				golden := base + ".golden." + string(out)
				got := doc.Render(out)
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if diff := cmp.Diff(string(want), got); diff != "" {
					t.Errorf("Render(%s) differs from %s (-want +got):\n%s", out, golden, diff)
				}
			}
		})
	}
}

// TestRoundTrip checks Parse → Render → Parse in every combination of input and output
// format, for every valid document the tests know.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	type input struct {
		name   string
		text   string
		format Format
	}
	var inputs []input
	for path, format := range goldenInputs(t) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{filepath.Base(path), string(b), format})
	}
	for _, tc := range elementTests {
		if tc.wantErr == "" {
			inputs = append(inputs, input{tc.name, inbound(tc.xml), FormatXML})
		}
	}
	for _, tc := range rawTests {
		inputs = append(inputs, input{"raw " + tc.name, inbound(tc.raw), FormatRawXML})
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse(in.text, in.format)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, out := range []Format{FormatXML, FormatRawXML} {
				rendered := doc.Render(out)
				again, err := Parse(rendered, out)
				if err != nil {
					t.Fatalf("Parse(Render(%s)): %v\n%s", out, err, rendered)
				}
				if diff := cmp.Diff(doc, again, ignorePos); diff != "" {
					t.Errorf("Parse(Render(%s)) differs (-first +second):\n%s\n%s", out, diff, rendered)
				}
				if again.Render(out) != rendered {
					t.Errorf("Render(%s) is not stable", out)
				}
			}
		})
	}
}

// TestRenderRawFallback checks values that rawxml cannot carry unescaped: they are written
// escaped with the expression's '@' hidden, and still read back unchanged.
func TestRenderRawFallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, wantAttr string
	}{
		{"plain", "a<b", `value="a&lt;b"`},
		{"expression", `@(a < "b")`, `value="@(a < "b")"`},
		{"leading space", " \n@(a)x\"", "value=\" \n@(a)x&quot;\""},
		{"carriage return", "@(a &&\r b)", `value="&#64;(a &amp;&amp;&#xD; b)"`},
		{"unbalanced", `@(a < "b"`, `value="&#64;(a &lt; &quot;b&quot;"`},
		{"unbalanced block", "@{ return 1;", `value="&#64;{ return 1;"`},
		{"not at start", `x @(a < b)`, `value="x @(a &lt; b)"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := &Document{Inbound: &Section{Policies: []Policy{&SetVariable{Name: "v", Value: tc.value}}}}
			out := doc.Render(FormatRawXML)
			if !strings.Contains(out, tc.wantAttr) {
				t.Errorf("Render(rawxml) = %s\nwant it to contain %s", out, tc.wantAttr)
			}
			again, err := Parse(out, FormatRawXML)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, out)
			}
			if diff := cmp.Diff(doc, again, ignorePos); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenderInvalidCharacters(t *testing.T) {
	t.Parallel()
	doc := &Document{Inbound: &Section{Policies: []Policy{&SetVariable{Name: "v", Value: "a\x00b\xffc"}}}}
	for _, format := range []Format{FormatXML, FormatRawXML} {
		got, err := Parse(doc.Render(format), format)
		if err != nil {
			t.Fatalf("Parse(Render(%s)): %v", format, err)
		}
		if v := got.Inbound.Policies[0].(*SetVariable).Value; v != "a\uFFFDb\uFFFDc" {
			t.Errorf("value after Render(%s) = %q, want U+FFFD replacements", format, v)
		}
	}
}
