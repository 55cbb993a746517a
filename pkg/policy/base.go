package policy

// Base is <base/>: the same section of the parent scope is evaluated at this position.
type Base struct {
	Meta
}

// ElementName returns "base".
func (*Base) ElementName() string { return "base" }

// Encode returns <base/>.
func (p *Base) Encode() *Element {
	return newElement("base", p.Meta).attr("id", p.ID)
}

func decodeBase(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &Base{Meta: a.meta()}
	if err := a.done(); err != nil {
		return nil, err
	}
	if len(e.Nodes) > 0 {
		return nil, e.Errorf("The base element must be empty.")
	}
	return p, nil
}

// Unsupported is an APIM policy that Gatehouse recognises but does not run on a WebSocket
// handshake (cors, mock-response, set-body, ...). Its content is kept verbatim, unvalidated, so
// that Render returns it unchanged. The gateway skips it when it is inherited from a parent
// scope; management refuses it where APIM refuses it.
type Unsupported struct {
	Meta
	// Name is the element name, e.g. "cors".
	Name string
	// Raw is the element as parsed.
	Raw *Element
}

// ElementName returns the element name.
func (p *Unsupported) ElementName() string { return p.Name }

// Encode returns the element as parsed.
func (p *Unsupported) Encode() *Element { return p.Raw }

func decodeUnsupported(_ *Registry, e *Element) (Policy, error) {
	id, _ := e.Attr("id")
	return &Unsupported{Meta: Meta{Pos: e.Pos, ID: id}, Name: e.Name, Raw: e}, nil
}
