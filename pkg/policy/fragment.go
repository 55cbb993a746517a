package policy

import (
	"errors"
	"fmt"
	"strings"
)

// MaxFragmentSize is the largest policy fragment value ParseFragment accepts, in bytes (APIM's
// 32 KB limit for a fragment).
const MaxFragmentSize = 32 << 10

// fragmentRoot is the root element of a policy fragment.
const fragmentRoot = "fragment"

// IncludeFragment is <include-fragment fragment-id="x"/>: the policies of the policy fragment
// x, inserted at this position when the document is compiled. The id is a literal: APIM
// allows no policy expression in it, and Gatehouse no named value either, so that the
// fragments a document uses are known without compiling it.
type IncludeFragment struct {
	Meta
	FragmentID string
}

// ElementName returns "include-fragment".
func (*IncludeFragment) ElementName() string { return "include-fragment" }

// Encode returns the <include-fragment> element.
func (p *IncludeFragment) Encode() *Element {
	return newElement("include-fragment", p.Meta).attr("id", p.ID).attrAlways("fragment-id", p.FragmentID)
}

func decodeIncludeFragment(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &IncludeFragment{Meta: a.meta(), FragmentID: trimSpace(a.str("fragment-id", true))}
	a.literal("fragment-id", p.FragmentID, false)
	if err := a.done(); err != nil {
		return nil, err
	}
	if hasNamedValue(p.FragmentID) {
		return nil, e.Errorf("Named values are not allowed in the attribute 'fragment-id'.")
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	if len(e.Elements()) > 0 {
		return nil, e.Errorf("The include-fragment element must be empty.")
	}
	return p, nil
}

// FragmentRef is one <include-fragment> of a document: the fragment it names and where.
type FragmentRef struct {
	ID  string
	Pos Pos
}

// Fragments lists the include-fragment elements of every section, in document order, those
// nested in choose included; also those inside policies Gatehouse does not run (their content
// is kept verbatim), so that a fragment a document names is never deleted from under it.
// Elements without a fragment-id are left out.
func (d *Document) Fragments() []FragmentRef {
	var out []FragmentRef
	var visit func(e *Element)
	visit = func(e *Element) {
		if e.Name == "include-fragment" {
			if id, _ := e.Attr("fragment-id"); trimSpace(id) != "" {
				out = append(out, FragmentRef{ID: trimSpace(id), Pos: e.Pos})
			}
		}
		for _, c := range e.Elements() {
			visit(c)
		}
	}
	visit(d.Encode())
	return out
}

// Fragment is a parsed policy fragment, <fragment> holding one or more policies, which
// documents insert with <include-fragment>. Its methods do not modify it, so a Fragment that
// nobody mutates is safe for concurrent use.
type Fragment struct {
	Pos      Pos
	Policies []Policy
}

// ParseFragment parses and validates a policy fragment with the default Registry.
func ParseFragment(value string, format Format) (*Fragment, error) {
	return NewRegistry().ParseFragment(value, format)
}

// ParseFragment parses and validates a policy fragment: <fragment> holding one or more
// policies, no section element, no <base/>, no nested <include-fragment> and no
// <websocket-limits> (a section's own setting), at most MaxFragmentSize bytes. A value that
// does not start with <fragment> is taken as the fragment's content, which is how GET with
// format xml returns it; positions in errors are those of the value given. Errors are as for
// Parse.
func (r *Registry) ParseFragment(value string, format Format) (*Fragment, error) {
	if len(value) > MaxFragmentSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d bytes for a policy fragment", ErrTooLarge, len(value), MaxFragmentSize)
	}
	wrapped := !HasFragmentRoot(value)
	if wrapped {
		value = "<" + fragmentRoot + ">" + value + "</" + fragmentRoot + ">"
	}
	root, err := r.root(value, format)
	if wrapped {
		unshift(root, err, len(fragmentRoot)+2)
	}
	if err != nil {
		return nil, err
	}
	return r.fragment(root)
}

// HasFragmentRoot reports whether value starts, after any byte order mark and whitespace,
// with a <fragment> start tag.
func HasFragmentRoot(value string) bool {
	rest, ok := strings.CutPrefix(strings.TrimLeft(strings.TrimPrefix(value, "\uFEFF"), " \t\r\n"), "<"+fragmentRoot)
	return ok && rest != "" && strings.ContainsRune(" \t\r\n/>", rune(rest[0]))
}

// FragmentContent returns the text between the <fragment> start and end tags of value, a
// fragment written with its root, as written; false when value has no root or anything but
// whitespace follows the end tag.
func FragmentContent(value string) (string, bool) {
	if !HasFragmentRoot(value) {
		return "", false
	}
	v := strings.Trim(strings.TrimPrefix(value, "\uFEFF"), " \t\r\n")
	start := strings.IndexByte(v, '>')
	end := strings.LastIndex(v, "</"+fragmentRoot)
	if start < 0 || v[start-1] == '/' || end < start || strings.Trim(v[end+len(fragmentRoot)+2:], " \t\r\n") != ">" {
		return "", false
	}
	return v[start+1 : end], true
}

// unshift moves the positions on the first line of root and of err back by n columns, the
// length of the opening tag ParseFragment added before the value.
func unshift(root *Element, err error, n int) {
	var se *SyntaxError
	if errors.As(err, &se) && se.Line == 1 {
		se.Column = max(1, se.Column-n)
	}
	if root == nil {
		return
	}
	var visit func(e *Element)
	visit = func(e *Element) {
		if e.Pos.Line == 1 {
			e.Pos.Column = max(1, e.Pos.Column-n)
		}
		for _, c := range e.Elements() {
			visit(c)
		}
	}
	visit(root)
}

func (r *Registry) fragment(root *Element) (*Fragment, error) {
	if root.Name != fragmentRoot {
		return nil, root.Errorf("The root element of a policy fragment must be 'fragment'.")
	}
	if len(root.Attrs) > 0 {
		return nil, root.Errorf("The attribute '%s' is not allowed.", root.Attrs[0].Name)
	}
	if err := root.noText(); err != nil {
		return nil, err
	}
	f := &Fragment{Pos: root.Pos}
	for _, pe := range root.Elements() {
		if err := fragmentPlacement(pe); err != nil {
			return nil, err
		}
		p, err := r.Decode(pe)
		if err != nil {
			return nil, err
		}
		f.Policies = append(f.Policies, p)
	}
	if len(f.Policies) == 0 {
		return nil, root.Errorf("A policy fragment must contain at least one policy.")
	}
	var nested *IncludeFragment
	walkPolicies(f.Policies, func(p Policy) {
		if in, ok := p.(*IncludeFragment); ok && nested == nil {
			nested = in
		}
	})
	if nested != nil {
		return nil, nested.Encode().Errorf("A policy fragment cannot include another policy fragment.")
	}
	return f, nil
}

// fragmentPlacement refuses the elements a fragment must not hold directly.
func fragmentPlacement(e *Element) error {
	switch e.Name {
	case SectionInbound, SectionBackend, SectionOutbound, SectionOnError:
		return e.Errorf("A policy fragment must not contain a section element; it holds policies only.")
	case "base":
		return e.Errorf("A policy fragment must not contain the base element.")
	case "include-fragment":
		return e.Errorf("A policy fragment cannot include another policy fragment.")
	case "websocket-limits":
		return e.Errorf("The websocket-limits element is not allowed in a policy fragment; put it in the inbound section of the policy.")
	}
	return nil
}

// Encode returns the <fragment> element tree.
func (f *Fragment) Encode() *Element {
	root := &Element{Name: fragmentRoot, Pos: f.Pos}
	for _, p := range f.Policies {
		root.Nodes = append(root.Nodes, Node{Elem: p.Encode()})
	}
	return root
}

// Render serializes the fragment with its <fragment> root, indented with tabs, as Document's
// Render does.
func (f *Fragment) Render(format Format) string {
	w := writer{raw: format == FormatRawXML}
	w.element(f.Encode(), 0, true)
	w.b.WriteByte('\n')
	return w.b.String()
}

// RenderContent serializes the fragment's policies without the <fragment> root, one after
// another: what APIM returns for a fragment in format xml. ParseFragment reads it back.
func (f *Fragment) RenderContent(format Format) string {
	w := writer{raw: format == FormatRawXML}
	for _, p := range f.Policies {
		w.element(p.Encode(), 0, true)
		w.b.WriteByte('\n')
	}
	return w.b.String()
}

// NamedValues returns the names of every {{named value}} the fragment references,
// deduplicated and sorted, as Document's NamedValues does.
func (f *Fragment) NamedValues() []string { return namedValuesIn(f.Encode()) }

// Unsupported lists the fragment's policies that Gatehouse recognises but does not run,
// including those nested in choose, in document order.
func (f *Fragment) Unsupported() []Unsupported {
	return (&Section{Policies: f.Policies}).Unsupported()
}
