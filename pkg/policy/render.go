package policy

import (
	"strings"
	"unicode/utf8"
)

// Render serializes the document, indented with tabs. FormatRawXML writes policy expressions
// that start an attribute value or element text unescaped, as APIM's rawxml does; any other
// format writes escaped XML. Parsing the result in the same format gives a Document equal to d
// apart from positions. Two rawxml limits: an expression containing a carriage return, or one
// whose brackets do not balance, is written escaped with its leading '@' as "&#64;", so that
// it reads back unchanged.
func (d *Document) Render(format Format) string {
	w := writer{raw: format == FormatRawXML}
	w.element(d.Encode(), 0, true)
	w.b.WriteByte('\n')
	return w.b.String()
}

type writer struct {
	b   strings.Builder
	raw bool
}

// element writes e. When pretty, child elements go on their own indented lines unless e also
// has non-whitespace text (mixed content), which is written as is.
func (w *writer) element(e *Element, depth int, pretty bool) {
	w.b.WriteByte('<')
	w.b.WriteString(e.Name)
	for _, a := range e.Attrs {
		w.b.WriteByte(' ')
		w.b.WriteString(a.Name)
		w.b.WriteString(`="`)
		w.value(a.Value, true)
		w.b.WriteByte('"')
	}
	if len(e.Nodes) == 0 {
		w.b.WriteString(" />")
		return
	}
	w.b.WriteByte('>')
	hasElem, mixed := false, false
	for _, n := range e.Nodes {
		if n.Elem != nil {
			hasElem = true
		} else if trimSpace(n.Text) != "" {
			mixed = true
		}
	}
	if hasElem && !mixed && pretty {
		for _, n := range e.Nodes {
			if n.Elem == nil {
				continue
			}
			w.newline(depth + 1)
			w.element(n.Elem, depth+1, true)
		}
		w.newline(depth)
	} else {
		// Adjacent text nodes are written as one run, as Parse merges them.
		var text strings.Builder
		flush := func() {
			if text.Len() > 0 {
				w.value(text.String(), false)
				text.Reset()
			}
		}
		for _, n := range e.Nodes {
			if n.Elem == nil {
				text.WriteString(n.Text)
				continue
			}
			flush()
			w.element(n.Elem, depth+1, false)
		}
		flush()
	}
	w.b.WriteString("</")
	w.b.WriteString(e.Name)
	w.b.WriteByte('>')
}

func (w *writer) newline(depth int) {
	w.b.WriteByte('\n')
	for range depth {
		w.b.WriteByte('\t')
	}
}

// value writes an attribute value or a run of text. In rawxml, an expression at its start is
// written unescaped when the rawxml reader will find exactly the same expression again.
func (w *writer) value(s string, attr bool) {
	if w.raw {
		j := skipSpace(s, 0)
		if isExprStart(s, j) {
			end := exprEnd(s, j, nil)
			if end > 0 && rawSafe(s[:end]) {
				w.b.WriteString(s[:end])
				w.escape(s[end:], attr)
				return
			}
			// Not representable unescaped: hide the expression from the rawxml reader, which
			// would otherwise take the escaped text literally.
			w.escape(s[:j], attr)
			w.b.WriteString("&#64;")
			w.escape(s[j+1:], attr)
			return
		}
	}
	w.escape(s, attr)
}

// rawSafe reports whether s survives being written unescaped: valid UTF-8 and XML characters
// only, and no carriage return (XML readers turn it into a line feed).
func rawSafe(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\r' || size == 1 && r == utf8.RuneError || !isXMLChar(r) {
			return false
		}
		i += size
	}
	return true
}

// escape writes s XML-escaped. In attributes, quotes and whitespace other than space are
// escaped too, so that readers do not normalize them. Invalid UTF-8 and characters XML cannot
// carry are written as U+FFFD.
func (w *writer) escape(s string, attr bool) {
	last := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == '&':
			esc = "&amp;"
		case r == '<':
			esc = "&lt;"
		case r == '>':
			esc = "&gt;"
		case r == '\r':
			esc = "&#xD;"
		case r == '"' && attr:
			esc = "&quot;"
		case r == '\n' && attr:
			esc = "&#xA;"
		case r == '\t' && attr:
			esc = "&#x9;"
		case size == 1 && r == utf8.RuneError || !isXMLChar(r):
			esc = "\uFFFD"
		}
		if esc != "" {
			w.b.WriteString(s[last:i])
			w.b.WriteString(esc)
			last = i + size
		}
		i += size
	}
	w.b.WriteString(s[last:])
}

// isXMLChar reports whether r may appear in an XML 1.0 document.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
