package policy

import (
	"errors"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse checks that Parse never panics, fails only with its documented errors, and that
// whatever it accepts renders to text that parses back to an equal document in both formats.
func FuzzParse(f *testing.F) {
	for path := range goldenInputs(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), false)
		f.Add(string(b), true)
	}
	for _, tc := range elementTests {
		f.Add(inbound(tc.xml), false)
	}
	for _, tc := range rawTests {
		f.Add(inbound(tc.raw), true)
	}
	f.Fuzz(func(t *testing.T, in string, raw bool) {
		format := FormatXML
		if raw {
			format = FormatRawXML
		}
		doc, err := Parse(in, format)
		if err != nil {
			checkParseError(t, err)
			return
		}
		names := doc.NamedValues()
		for _, out := range []Format{FormatXML, FormatRawXML} {
			rendered := doc.Render(out)
			if len(rendered) > MaxSize {
				continue
			}
			again, err := Parse(rendered, out)
			if err != nil {
				t.Fatalf("Parse(Render(%s)): %v\ninput:\n%q\nrendered:\n%s", out, err, in, rendered)
			}
			if diff := cmp.Diff(doc, again, ignorePos); diff != "" {
				t.Fatalf("Parse(Render(%s)) differs (-first +second):\n%s\ninput:\n%q\nrendered:\n%s", out, diff, in, rendered)
			}
			if diff := cmp.Diff(names, again.NamedValues()); diff != "" {
				t.Fatalf("NamedValues after Render(%s) differ:\n%s", out, diff)
			}
		}
	})
}

// checkParseError fails t unless err is one a parser documents: a *SyntaxError with a
// 1-based position, or ErrTooLarge.
func checkParseError(t *testing.T, err error) {
	t.Helper()
	var se *SyntaxError
	if !errors.As(err, &se) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("parse error %v (%T) is neither a *SyntaxError nor ErrTooLarge", err, err)
	}
	if se != nil && (se.Line < 1 || se.Column < 1) {
		t.Fatalf("error position %d:%d is not 1-based: %v", se.Line, se.Column, se)
	}
}
