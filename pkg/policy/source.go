package policy

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// source is the value given to Parse. It turns decoder offsets into positions in that value,
// undoing the escapes that escapeExpressions inserts for rawxml.
type source struct {
	orig   string
	shifts []shift
	// cursor: the position of offset off in orig; advanced monotonically by pos.
	off, line, col int
}

// shift records one character of orig that escapeExpressions replaced by an entity.
type shift struct {
	esc   int // offset of the entity in the escaped text
	orig  int // offset of the replaced character in orig
	size  int // length of the entity
	delta int // bytes added by this entity and all before it
}

func newSource(value string) *source {
	return &source{orig: value, line: 1, col: 1}
}

// origOffset maps an offset in the text handed to the decoder back to an offset in orig.
func (s *source) origOffset(esc int) int {
	i := sort.Search(len(s.shifts), func(i int) bool { return s.shifts[i].esc > esc }) - 1
	if i < 0 {
		return esc
	}
	sh := s.shifts[i]
	if esc < sh.esc+sh.size {
		return sh.orig
	}
	return esc - sh.delta
}

// pos returns the position of decoder offset esc. Successive calls are cheap when offsets
// grow, as they do while decoding.
func (s *source) pos(esc int64) Pos {
	o := min(max(s.origOffset(int(esc)), 0), len(s.orig))
	if o < s.off {
		s.off, s.line, s.col = 0, 1, 1
	}
	for s.off < o {
		r, size := utf8.DecodeRuneInString(s.orig[s.off:])
		if r == '\n' {
			s.line++
			s.col = 1
		} else {
			s.col++
		}
		s.off += size
	}
	return Pos{Line: s.line, Column: s.col}
}

// syntaxErrorAt returns a well-formedness error at decoder offset esc.
func (s *source) syntaxErrorAt(esc int64, format string, args ...any) *SyntaxError {
	p := s.pos(esc)
	return &SyntaxError{Line: p.Line, Column: p.Column, Msg: fmt.Sprintf(format, args...)}
}

// entities are the escapes escapeExpressions uses for characters inside rawxml expressions.
var entities = [256]string{'<': "&lt;", '>': "&gt;", '&': "&amp;", '"': "&quot;", '\'': "&apos;"}

// escapeExpressions turns a rawxml value into XML by escaping <, >, &, " and ' inside every
// policy expression that starts an attribute value or a run of element text (after optional
// whitespace), recording each escape so that positions still refer to the original value.
// Comments, CDATA sections, processing instructions and declarations are copied unchanged.
func (s *source) escapeExpressions() (string, *SyntaxError) {
	in := s.orig
	var b strings.Builder
	b.Grow(len(in) + len(in)/8)
	// budget bounds the work spent looking for the end of expressions, which a hostile value
	// could otherwise make quadratic with many unterminated expressions.
	budget := 16*len(in) + 1<<16
	last, delta := 0, 0
	escape := func(from, to int) {
		for i := from; i < to; i++ {
			ent := entities[in[i]]
			if ent == "" {
				continue
			}
			b.WriteString(in[last:i])
			delta += len(ent) - 1
			s.shifts = append(s.shifts, shift{esc: b.Len(), orig: i, size: len(ent), delta: delta})
			b.WriteString(ent)
			last = i + 1
		}
	}
	// expression escapes the expression starting at i, if any, and returns where scanning
	// continues.
	overBudget := -1 // where the budget ran out
	expression := func(i int) int {
		j := skipSpace(in, i)
		if !isExprStart(in, j) {
			return j
		}
		end := exprEnd(in, j, &budget)
		if budget < 0 {
			overBudget = j
			return len(in)
		}
		if end < 0 {
			return j + 2
		}
		escape(j, end)
		return end
	}
	i := expression(0)
	for i < len(in) && overBudget < 0 {
		if in[i] != '<' {
			i++
			continue
		}
		rest := in[i:]
		switch {
		case strings.HasPrefix(rest, "<!--"):
			i = skipPast(in, i+4, "-->")
		case strings.HasPrefix(rest, "<![CDATA["):
			i = skipPast(in, i+9, "]]>")
		case strings.HasPrefix(rest, "<?"):
			i = skipPast(in, i+2, "?>")
		case strings.HasPrefix(rest, "<!"), strings.HasPrefix(rest, "</"):
			i = skipPast(in, i+2, ">")
		default:
			i = scanTag(in, i+1, expression)
		}
		if i < len(in) && in[i-1] == '>' {
			i = expression(i)
		}
	}
	if overBudget >= 0 {
		// No escapes have been recorded past this point, so escaped and original offsets agree
		// after subtracting the escapes before it.
		return "", s.syntaxErrorAt(int64(overBudget+delta), "The policy expressions are too long to scan.")
	}
	b.WriteString(in[last:])
	return b.String(), nil
}

// scanTag scans the rest of a start tag from i (just past '<') and returns the offset just past
// its '>', calling expression at the start of every attribute value. On malformed input it
// returns early; the decoder reports the error.
func scanTag(in string, i int, expression func(int) int) int {
	for i < len(in) && !isSpace(in[i]) && in[i] != '>' && in[i] != '/' {
		i++
	}
	for {
		i = skipSpace(in, i)
		switch {
		case i >= len(in):
			return i
		case in[i] == '>':
			return i + 1
		case strings.HasPrefix(in[i:], "/>"):
			return i + 2
		}
		start := i
		for i < len(in) && !isSpace(in[i]) && in[i] != '=' && in[i] != '>' && in[i] != '/' && in[i] != '<' {
			i++
		}
		i = skipSpace(in, i)
		if i >= len(in) || in[i] != '=' || i == start {
			return i
		}
		i = skipSpace(in, i+1)
		if i >= len(in) || (in[i] != '"' && in[i] != '\'') {
			return i
		}
		q := in[i]
		i = expression(i + 1)
		k := strings.IndexByte(in[min(i, len(in)):], q)
		if k < 0 {
			return len(in)
		}
		i += k + 1
	}
}

// skipPast returns the offset just past the first end at or after i, or len(in).
func skipPast(in string, i int, end string) int {
	k := strings.Index(in[min(i, len(in)):], end)
	if k < 0 {
		return len(in)
	}
	return i + k + len(end)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(in string, i int) int {
	for i < len(in) && isSpace(in[i]) {
		i++
	}
	return i
}

// frame is an open element while building the tree, with its pending character data.
type frame struct {
	el      *Element
	text    []byte
	hasText bool
}

func (f *frame) flush() {
	if f.hasText {
		f.el.Nodes = append(f.el.Nodes, Node{Text: string(f.text)})
		f.text, f.hasText = f.text[:0], false
	}
}

// tree decodes text (orig, or its escaped form) into the root element.
func (s *source) tree(text string) (*Element, error) {
	d := xml.NewDecoder(strings.NewReader(text))
	d.Strict = true
	var (
		root  *Element
		stack []*frame
	)
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			msg := err.Error()
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				msg = se.Msg
			}
			return nil, s.syntaxErrorAt(d.InputOffset(), "Invalid XML: %s.", msg)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && root != nil {
				return nil, s.syntaxErrorAt(off, "There are multiple root elements.")
			}
			if len(stack) >= maxDepth {
				return nil, s.syntaxErrorAt(off, "Elements are nested more than %d deep.", maxDepth)
			}
			el := &Element{Name: xmlName(t.Name), Pos: s.pos(off), Attrs: make([]Attr, 0, len(t.Attr))}
			seen := make(map[string]bool, len(t.Attr))
			for _, a := range t.Attr {
				name := xmlName(a.Name)
				if seen[name] {
					return nil, s.syntaxErrorAt(off, "'%s' is a duplicate attribute name.", name)
				}
				seen[name] = true
				el.Attrs = append(el.Attrs, Attr{Name: name, Value: a.Value})
			}
			if len(stack) == 0 {
				root = el
			} else {
				parent := stack[len(stack)-1]
				parent.flush()
				parent.el.Nodes = append(parent.el.Nodes, Node{Elem: el})
			}
			stack = append(stack, &frame{el: el})
		case xml.EndElement:
			name := xmlName(t.Name)
			if len(stack) == 0 {
				return nil, s.syntaxErrorAt(off, "Unexpected end tag '%s'.", name)
			}
			top := stack[len(stack)-1]
			if top.el.Name != name {
				return nil, s.syntaxErrorAt(off, "The '%s' start tag on line %d position %d does not match the end tag of '%s'.",
					top.el.Name, top.el.Pos.Line, top.el.Pos.Column, name)
			}
			top.flush()
			dropSpace(top.el)
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				// Whitespace and a byte order mark may surround the root element.
				if strings.Trim(string(t), " \t\r\n\uFEFF") != "" {
					return nil, s.syntaxErrorAt(off, "Data at the root level is invalid.")
				}
				continue
			}
			top := stack[len(stack)-1]
			top.text = append(top.text, t...)
			top.hasText = true
		case xml.Directive:
			return nil, s.syntaxErrorAt(off, "DTDs and declarations are not allowed in a policy document.")
		case xml.Comment, xml.ProcInst:
			// Dropped: a policy document has no use for them.
		}
	}
	end := int64(len(text))
	if len(stack) > 0 {
		names := make([]string, len(stack))
		for i, f := range stack {
			names[i] = f.el.Name
		}
		return nil, s.syntaxErrorAt(end, "Unexpected end of file has occurred. The following elements are not closed: %s.", strings.Join(names, ", "))
	}
	if root == nil {
		return nil, s.syntaxErrorAt(end, "Root element is missing.")
	}
	return root, nil
}

// dropSpace removes whitespace-only text from an element that has child elements: it is
// indentation, which Render writes afresh.
func dropSpace(e *Element) {
	hasElem := false
	for _, n := range e.Nodes {
		if n.Elem != nil {
			hasElem = true
			break
		}
	}
	if !hasElem {
		return
	}
	e.Nodes = slices.DeleteFunc(e.Nodes, func(n Node) bool {
		return n.Elem == nil && trimSpace(n.Text) == ""
	})
}

func xmlName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}
