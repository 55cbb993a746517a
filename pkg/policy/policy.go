// Package policy parses, validates and renders APIM policy documents (<policies> XML), the model
// that management validates on PUT and the gateway compiles into handshake checks.
package policy

import (
	"fmt"
	"slices"
)

// Format is how a policy value is encoded, as in APIM's PolicyContract.properties.format.
type Format string

// The formats Parse accepts. APIM's "-link" formats (the value is a URL) are not supported.
const (
	// FormatXML is a well-formed XML document: characters such as < and & inside policy
	// expressions are escaped (&lt;, &amp;).
	FormatXML Format = "xml"
	// FormatRawXML is a policy document whose policy expressions (@(...) and @{...} at the start
	// of an attribute value or of element text) are not XML-encoded and may contain raw <, >, &,
	// " and ' characters.
	FormatRawXML Format = "rawxml"
)

// MaxSize is the largest policy value Parse accepts, in bytes (APIM's 512 KiB document limit for
// classic and v2 tiers).
const MaxSize = 512 << 10

// maxDepth bounds element nesting so that hostile documents cannot make parsing or rendering
// recurse without limit. APIM documents no such limit; real policies nest a handful of levels.
const maxDepth = 100

// Section names, in document order.
const (
	SectionInbound  = "inbound"
	SectionBackend  = "backend"
	SectionOutbound = "outbound"
	SectionOnError  = "on-error"
)

// Pos is a position in the policy value given to Parse: 1-based line and 1-based column counted
// in characters. The zero Pos means the node was built in code, not parsed.
type Pos struct {
	Line, Column int
}

// Meta is embedded in every policy type: where the element started and its optional id
// attribute, which APIM reports as context.LastError.PolicyId.
type Meta struct {
	Pos Pos
	ID  string
}

// Position returns where the policy element starts.
func (m Meta) Position() Pos { return m.Pos }

// Policy is one policy element of a section, e.g. *SetHeader or *Unsupported. Callers dispatch
// on the concrete pointer type.
type Policy interface {
	// ElementName returns the XML element name, e.g. "set-header".
	ElementName() string
	// Position returns where the element starts in the parsed value.
	Position() Pos
	// Encode returns the element tree that Render writes for the policy. Decoding the result
	// with the same Registry yields an equal policy (positions aside).
	Encode() *Element
}

// Document is a parsed <policies> document. A nil section is absent from the document; an
// empty non-nil section was present with no policies. Its methods do not modify it, so a
// Document that nobody mutates is safe for concurrent use.
type Document struct {
	Inbound  *Section
	Backend  *Section
	Outbound *Section
	OnError  *Section
}

// Section is one of inbound, backend, outbound and on-error: the policies in document order.
type Section struct {
	Pos      Pos
	Policies []Policy
}

// Section returns the named section (SectionInbound, ...), or nil when the document does not
// have it or name is not a section name.
func (d *Document) Section(name string) *Section {
	switch name {
	case SectionInbound:
		return d.Inbound
	case SectionBackend:
		return d.Backend
	case SectionOutbound:
		return d.Outbound
	case SectionOnError:
		return d.OnError
	}
	return nil
}

// sections returns the section names and values in document order.
func (d *Document) sections() []namedSection {
	return []namedSection{
		{SectionInbound, d.Inbound},
		{SectionBackend, d.Backend},
		{SectionOutbound, d.Outbound},
		{SectionOnError, d.OnError},
	}
}

type namedSection struct {
	name string
	s    *Section
}

func (d *Document) setSection(name string, s *Section) {
	switch name {
	case SectionInbound:
		d.Inbound = s
	case SectionBackend:
		d.Backend = s
	case SectionOutbound:
		d.Outbound = s
	case SectionOnError:
		d.OnError = s
	}
}

// HasBase reports whether the section contains <base/>, i.e. inherits the same section of the
// parent scope. A nil section has no <base/>. Parse only accepts <base/> directly in a section,
// never nested in choose.
func (s *Section) HasBase() bool {
	if s == nil {
		return false
	}
	for _, p := range s.Policies {
		if _, ok := p.(*Base); ok {
			return true
		}
	}
	return false
}

// HasBase reports whether any section of the document contains <base/>.
func (d *Document) HasBase() bool {
	for _, ns := range d.sections() {
		if ns.s.HasBase() {
			return true
		}
	}
	return false
}

// Unsupported lists the policies of the section that Gatehouse recognises but does not run,
// including those nested in choose, in document order.
func (s *Section) Unsupported() []Unsupported {
	if s == nil {
		return nil
	}
	var out []Unsupported
	walkPolicies(s.Policies, func(p Policy) {
		if u, ok := p.(*Unsupported); ok {
			out = append(out, *u)
		}
	})
	return out
}

// Unsupported lists the policies of every section that Gatehouse recognises but does not run,
// including those nested in choose, in document order. The gateway skips them when they are
// inherited; management refuses them where APIM says they cannot be applied.
func (d *Document) Unsupported() []Unsupported {
	var out []Unsupported
	for _, ns := range d.sections() {
		out = append(out, ns.s.Unsupported()...)
	}
	return out
}

// walkPolicies calls fn for every policy in ps and, depth first, for the policies nested in
// them (choose branches).
func walkPolicies(ps []Policy, fn func(Policy)) {
	for _, p := range ps {
		fn(p)
		if c, ok := p.(*Choose); ok {
			for _, w := range c.Whens {
				walkPolicies(w.Policies, fn)
			}
			walkPolicies(c.Otherwise, fn)
		}
	}
}

// NamedValues returns the names of every {{named value}} referenced anywhere in the document,
// in attribute values and in text, unsupported policies included; deduplicated and sorted.
func (d *Document) NamedValues() []string { return namedValuesIn(d.Encode()) }

// namedValuesIn returns the names of every {{named value}} referenced in root's attribute
// values and text, deduplicated and sorted.
func namedValuesIn(root *Element) []string {
	seen := map[string]bool{}
	add := func(_, _ int, name string) bool {
		seen[name] = true
		return true
	}
	var visit func(e *Element)
	visit = func(e *Element) {
		for _, a := range e.Attrs {
			forEachRef(a.Value, add)
		}
		for _, n := range e.Nodes {
			if n.Elem != nil {
				visit(n.Elem)
			} else {
				forEachRef(n.Text, add)
			}
		}
	}
	visit(root)
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Encode returns the <policies> element tree of the document, sections in document order.
func (d *Document) Encode() *Element {
	root := &Element{Name: "policies"}
	for _, ns := range d.sections() {
		if ns.s == nil {
			continue
		}
		se := &Element{Name: ns.name, Pos: ns.s.Pos}
		for _, p := range ns.s.Policies {
			se.Nodes = append(se.Nodes, Node{Elem: p.Encode()})
		}
		root.Nodes = append(root.Nodes, Node{Elem: se})
	}
	return root
}

// Parse parses and validates a policy document with the default Registry (NewRegistry). A
// problem with the document is a *SyntaxError carrying its line and column; a value larger than
// MaxSize gives an error wrapping ErrTooLarge; any other error means format is not supported.
func Parse(value string, format Format) (*Document, error) {
	return NewRegistry().Parse(value, format)
}

// Parse parses and validates a policy document: the XML must be well formed, the root must be
// <policies> with at most one of each section, and every policy element must be known to the
// registry and valid; <websocket-limits> only directly in inbound, at most once. Errors are as
// for the package-level Parse.
func (r *Registry) Parse(value string, format Format) (*Document, error) {
	if len(value) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d bytes", ErrTooLarge, len(value), MaxSize)
	}
	root, err := r.root(value, format)
	if err != nil {
		return nil, err
	}
	return r.document(root)
}

// root parses value, written in format, into its element tree.
func (r *Registry) root(value string, format Format) (*Element, error) {
	src := newSource(value)
	text := value
	switch format {
	case FormatXML:
	case FormatRawXML:
		var err *SyntaxError
		text, err = src.escapeExpressions()
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("policy: unsupported format %q, want %q or %q", format, FormatXML, FormatRawXML)
	}
	return src.tree(text)
}

func (r *Registry) document(root *Element) (*Document, error) {
	if root.Name != "policies" {
		return nil, root.Errorf("The root element must be 'policies'.")
	}
	if len(root.Attrs) > 0 {
		return nil, root.Errorf("The attribute '%s' is not allowed.", root.Attrs[0].Name)
	}
	if err := root.noText(); err != nil {
		return nil, err
	}
	doc := &Document{}
	for _, se := range root.Elements() {
		switch se.Name {
		case SectionInbound, SectionBackend, SectionOutbound, SectionOnError:
		default:
			return nil, se.Errorf("Unknown section; expected inbound, backend, outbound or on-error.")
		}
		if doc.Section(se.Name) != nil {
			return nil, se.Errorf("The section is specified more than once.")
		}
		s, err := r.section(se)
		if err != nil {
			return nil, err
		}
		doc.setSection(se.Name, s)
	}
	return doc, nil
}

func (r *Registry) section(se *Element) (*Section, error) {
	if len(se.Attrs) > 0 {
		return nil, se.Errorf("The attribute '%s' is not allowed.", se.Attrs[0].Name)
	}
	if err := se.noText(); err != nil {
		return nil, err
	}
	s := &Section{Pos: se.Pos}
	bases := 0
	wsLimits := false
	for _, pe := range se.Elements() {
		if pe.Name == "base" {
			bases++
			if bases > 1 {
				return nil, pe.Errorf("The base element can appear only once in a section.")
			}
		}
		if err := checkPlacement(se.Name, pe, &wsLimits); err != nil {
			return nil, err
		}
		p, err := r.Decode(pe)
		if err != nil {
			return nil, err
		}
		s.Policies = append(s.Policies, p)
	}
	return s, nil
}
