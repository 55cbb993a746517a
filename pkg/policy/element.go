package policy

import (
	"errors"
	"fmt"
	"strings"
)

// ErrTooLarge is wrapped by the error Parse returns for a value larger than MaxSize.
var ErrTooLarge = errors.New("policy document is too large")

// SyntaxError reports a value that is not well-formed XML or that breaks the policy schema.
// Line and Column are 1-based positions in the value given to Parse (for rawxml, the text
// before expressions were escaped); Column counts characters. Element names the element in
// error and is empty for XML well-formedness errors.
type SyntaxError struct {
	Line, Column int
	Element      string
	Msg          string
}

// Error formats the error the way APIM words its validation errors: "<msg> Line 12, position
// 151." for malformed XML, "Error in element 'set-header' on line 3, column 5: <msg>" otherwise.
func (e *SyntaxError) Error() string {
	if e.Element == "" {
		return fmt.Sprintf("%s Line %d, position %d.", e.Msg, e.Line, e.Column)
	}
	return fmt.Sprintf("Error in element '%s' on line %d, column %d: %s", e.Element, e.Line, e.Column, e.Msg)
}

// Element is a generic XML element: the form every policy decodes from and encodes to, and the
// verbatim content of unsupported policies. Names keep their namespace prefix ("xsl:template").
type Element struct {
	Name  string
	Attrs []Attr
	// Nodes is the content in document order. Parse drops comments and processing
	// instructions, merges adjacent character data, and drops whitespace-only text from elements
	// that have child elements.
	Nodes []Node
	Pos   Pos
}

// Attr is an attribute with its decoded value.
type Attr struct {
	Name, Value string
}

// Node is one item of element content: a child element when Elem is non-nil, otherwise the
// character data Text.
type Node struct {
	Elem *Element
	Text string
}

// Attr returns the value of the named attribute and whether it is present.
func (e *Element) Attr(name string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// Elements returns the child elements in document order.
func (e *Element) Elements() []*Element {
	var out []*Element
	for _, n := range e.Nodes {
		if n.Elem != nil {
			out = append(out, n.Elem)
		}
	}
	return out
}

// Text returns the element's character data, the text nodes concatenated.
func (e *Element) Text() string {
	var b strings.Builder
	for _, n := range e.Nodes {
		if n.Elem == nil {
			b.WriteString(n.Text)
		}
	}
	return b.String()
}

// Errorf returns a *SyntaxError about the element at its position.
func (e *Element) Errorf(format string, args ...any) *SyntaxError {
	return &SyntaxError{Line: e.Pos.Line, Column: e.Pos.Column, Element: e.Name, Msg: fmt.Sprintf(format, args...)}
}

// noText reports an error when the element has non-whitespace character data; used for
// elements whose content is only child elements.
func (e *Element) noText() error {
	for _, n := range e.Nodes {
		if n.Elem == nil && trimSpace(n.Text) != "" {
			return e.Errorf("Text is not allowed in this element.")
		}
	}
	return nil
}

// textOnly returns the element's text, trimmed of surrounding whitespace, and reports an error
// when it has child elements; used for leaf elements such as <value> and <audience>.
func (e *Element) textOnly() (string, error) {
	for _, n := range e.Nodes {
		if n.Elem != nil {
			return "", n.Elem.Errorf("Child elements are not allowed in '%s'.", e.Name)
		}
	}
	return trimSpace(e.Text()), nil
}

// newElement starts building an element for Encode.
func newElement(name string, m Meta) *Element {
	return &Element{Name: name, Pos: m.Pos}
}

// attr appends an optional attribute: empty values are omitted, because Parse treats an empty
// optional attribute as absent.
func (e *Element) attr(name, value string) *Element {
	if value != "" {
		e.Attrs = append(e.Attrs, Attr{Name: name, Value: value})
	}
	return e
}

// attrAlways appends a required attribute, even when empty.
func (e *Element) attrAlways(name, value string) *Element {
	e.Attrs = append(e.Attrs, Attr{Name: name, Value: value})
	return e
}

// child appends a child element.
func (e *Element) child(c *Element) *Element {
	e.Nodes = append(e.Nodes, Node{Elem: c})
	return e
}

// text sets the element's content to the character data s (none when s is empty).
func (e *Element) text(s string) *Element {
	if s != "" {
		e.Nodes = append(e.Nodes, Node{Text: s})
	}
	return e
}

// textChild appends <name>s</name>.
func (e *Element) textChild(name, s string) *Element {
	return e.child((&Element{Name: name}).text(s))
}
