package policy

// SetVariable is <set-variable name="..." value="..."/>: stores Value (often an expression)
// in context.Variables[Name]. Value may be empty.
type SetVariable struct {
	Meta
	Name  string
	Value string
}

// ElementName returns "set-variable".
func (*SetVariable) ElementName() string { return "set-variable" }

// Encode returns the <set-variable> element.
func (p *SetVariable) Encode() *Element {
	return newElement("set-variable", p.Meta).attrAlways("name", p.Name).attrAlways("value", p.Value).attr("id", p.ID)
}

func decodeSetVariable(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &SetVariable{Meta: a.meta(), Name: a.str("name", true), Value: a.present("value")}
	if err := a.done(); err != nil {
		return nil, err
	}
	if len(e.Nodes) > 0 {
		return nil, e.Errorf("The element must be empty.")
	}
	return p, nil
}
