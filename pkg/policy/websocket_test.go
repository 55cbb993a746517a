package policy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestWebSocketLimitsPlacement checks where <websocket-limits> may appear: directly in
// inbound, once per section.
func TestWebSocketLimitsPlacement(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want *SyntaxError // nil: the document is valid
	}{
		{
			name: "once in inbound, beside base",
			in:   inbound("<base />\n<websocket-limits idle-timeout=\"60\" />"),
		},
		{
			name: "in inbound of a document with other sections",
			in:   "<policies>\n<inbound><websocket-limits /></inbound>\n<outbound />\n</policies>",
		},
		{
			name: "twice in inbound",
			in:   inbound("<websocket-limits idle-timeout=\"60\" />\n<base />\n  <websocket-limits ping-interval=\"30\" />"),
			want: &SyntaxError{Line: 5, Column: 3, Element: "websocket-limits", Msg: "The websocket-limits element can appear only once in a section."},
		},
		{
			name: "in outbound",
			in:   "<policies>\n<outbound>\n<base />\n<websocket-limits />\n</outbound>\n</policies>",
			want: &SyntaxError{Line: 4, Column: 1, Element: "websocket-limits", Msg: "The websocket-limits element is only allowed in the inbound section."},
		},
		{
			name: "in backend",
			in:   "<policies>\n<backend><websocket-limits /></backend>\n</policies>",
			want: &SyntaxError{Line: 2, Column: 10, Element: "websocket-limits", Msg: "The websocket-limits element is only allowed in the inbound section."},
		},
		{
			name: "in on-error",
			in:   "<policies>\n<on-error><websocket-limits /></on-error>\n</policies>",
			want: &SyntaxError{Line: 2, Column: 11, Element: "websocket-limits", Msg: "The websocket-limits element is only allowed in the inbound section."},
		},
		{
			name: "inside choose",
			in:   inbound("<choose>\n<when condition=\"@(true)\">\n<websocket-limits idle-timeout=\"5\" />\n</when>\n</choose>"),
			want: &SyntaxError{Line: 5, Column: 1, Element: "websocket-limits", Msg: "The websocket-limits element is only allowed directly in the inbound section."},
		},
		{
			name: "inside otherwise",
			in:   inbound("<choose><when condition=\"@(true)\" /><otherwise>\n<websocket-limits /></otherwise></choose>"),
			want: &SyntaxError{Line: 4, Column: 1, Element: "websocket-limits", Msg: "The websocket-limits element is only allowed directly in the inbound section."},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, format := range []Format{FormatXML, FormatRawXML} {
				_, err := Parse(tc.in, format)
				if tc.want == nil {
					if err != nil {
						t.Errorf("Parse(%s): %v", format, err)
					}
					continue
				}
				var got *SyntaxError
				if !errors.As(err, &got) {
					t.Fatalf("Parse(%s) error = %v, want a *SyntaxError", format, err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("Parse(%s) error (-want +got):\n%s", format, diff)
				}
			}
		})
	}
}

func TestIsGatehouseExtension(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"websocket-limits": true,
		"message-rate":     false, // a child, not a policy
		"rate-limit":       false,
		"cors":             false,
		"":                 false,
	} {
		if got := IsGatehouseExtension(name); got != want {
			t.Errorf("IsGatehouseExtension(%q) = %v, want %v", name, got, want)
		}
	}
	// Every extension is a policy the default registry decodes to a typed, runnable form.
	minimal := map[string][]Attr{"limit-connections": {{Name: "max", Value: "1"}}}
	for _, name := range gatehouseExtensions {
		p, err := NewRegistry().Decode(&Element{Name: name, Attrs: minimal[name]})
		if err != nil {
			t.Errorf("Decode(<%s/>): %v", name, err)
			continue
		}
		if _, ok := p.(*Unsupported); ok {
			t.Errorf("Decode(<%s/>) = *Unsupported, want a typed policy", name)
		}
	}
}

// TestWebSocketLimitsNotUnsupported checks that management, which refuses unsupported policies
// at a WebSocket operation scope, lets websocket-limits through.
func TestWebSocketLimitsNotUnsupported(t *testing.T) {
	t.Parallel()
	doc, err := Parse(inbound(`<websocket-limits max-message-size="65536"><message-rate messages="5" period="1" /></websocket-limits>`), FormatXML)
	if err != nil {
		t.Fatal(err)
	}
	if un := doc.Unsupported(); len(un) != 0 {
		t.Errorf("Unsupported() = %v, want none", un)
	}
}
