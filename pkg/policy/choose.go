package policy

// Choose is <choose>: the policies of the first When whose Condition is true run, else those of
// Otherwise. Nested policies may be any policy but <base/>.
type Choose struct {
	Meta
	Whens []When
	// Otherwise holds the <otherwise> policies; nil when it is absent or empty.
	Otherwise []Policy
}

// When is a <when condition="..."> branch of choose. Condition is normally an expression.
type When struct {
	Pos       Pos
	Condition string
	Policies  []Policy
}

// ElementName returns "choose".
func (*Choose) ElementName() string { return "choose" }

// Encode returns the <choose> element.
func (p *Choose) Encode() *Element {
	e := newElement("choose", p.Meta).attr("id", p.ID)
	for _, w := range p.Whens {
		we := (&Element{Name: "when", Pos: w.Pos}).attrAlways("condition", w.Condition)
		for _, np := range w.Policies {
			we.child(np.Encode())
		}
		e.child(we)
	}
	if len(p.Otherwise) > 0 {
		oe := &Element{Name: "otherwise"}
		for _, np := range p.Otherwise {
			oe.child(np.Encode())
		}
		e.child(oe)
	}
	return e
}

func decodeChoose(r *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &Choose{Meta: a.meta()}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	otherwise := false
	for _, c := range e.Elements() {
		if otherwise {
			return nil, c.Errorf("The 'otherwise' element must be the last element of 'choose'.")
		}
		switch c.Name {
		case "when":
			ca := readAttrs(c)
			w := When{Pos: c.Pos, Condition: ca.str("condition", true)}
			if err := ca.done(); err != nil {
				return nil, err
			}
			var err error
			if w.Policies, err = r.decodeNested(c); err != nil {
				return nil, err
			}
			p.Whens = append(p.Whens, w)
		case "otherwise":
			if len(p.Whens) == 0 {
				return nil, c.Errorf("The 'otherwise' element must follow at least one 'when' element.")
			}
			otherwise = true
			if err := readAttrs(c).done(); err != nil {
				return nil, err
			}
			var err error
			if p.Otherwise, err = r.decodeNested(c); err != nil {
				return nil, err
			}
		default:
			return nil, unexpected(e, c)
		}
	}
	if len(p.Whens) == 0 {
		return nil, e.Errorf("At least one 'when' element is required.")
	}
	return p, nil
}
