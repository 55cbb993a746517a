package policy

// ReturnResponse is <return-response>: end the pipeline and answer with the response in
// ResponseVariableName, if set, modified by SetStatus, SetHeaders and SetBody. APIM's default
// is 200 OK with no body.
type ReturnResponse struct {
	Meta
	ResponseVariableName string
	SetStatus            *SetStatus
	SetHeaders           []SetHeader
	SetBody              *SetBody
}

// SetStatus is <set-status code="..." reason="..."/> inside return-response.
type SetStatus struct {
	Pos    Pos
	Code   string
	Reason string
}

// SetBody is <set-body> inside return-response. Body is the element text, verbatim (an
// expression, a Liquid template when Template is "liquid", or literal content).
type SetBody struct {
	Pos       Pos
	Template  string
	XsiNil    string
	ParseDate string
	Body      string
}

// ElementName returns "return-response".
func (*ReturnResponse) ElementName() string { return "return-response" }

// Encode returns the <return-response> element: set-status, set-header, set-body in that order.
func (p *ReturnResponse) Encode() *Element {
	e := newElement("return-response", p.Meta).attr("response-variable-name", p.ResponseVariableName).attr("id", p.ID)
	if s := p.SetStatus; s != nil {
		e.child((&Element{Name: "set-status", Pos: s.Pos}).attrAlways("code", s.Code).attr("reason", s.Reason))
	}
	for i := range p.SetHeaders {
		e.child(p.SetHeaders[i].Encode())
	}
	if b := p.SetBody; b != nil {
		e.child((&Element{Name: "set-body", Pos: b.Pos}).
			attr("template", b.Template).attr("xsi-nil", b.XsiNil).attr("parse-date", b.ParseDate).
			text(b.Body))
	}
	return e
}

func decodeReturnResponse(r *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &ReturnResponse{Meta: a.meta(), ResponseVariableName: a.str("response-variable-name", false)}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	for _, c := range e.Elements() {
		switch c.Name {
		case "set-status":
			if p.SetStatus != nil {
				return nil, c.Errorf("The element may appear only once in 'return-response'.")
			}
			ca := readAttrs(c)
			s := &SetStatus{Pos: c.Pos, Code: ca.integer("code", true, 100, 599, true), Reason: ca.str("reason", false)}
			if err := ca.done(); err != nil {
				return nil, err
			}
			if len(c.Nodes) > 0 {
				return nil, c.Errorf("The element must be empty.")
			}
			p.SetStatus = s
		case "set-header":
			h, err := decodeSetHeader(r, c)
			if err != nil {
				return nil, err
			}
			p.SetHeaders = append(p.SetHeaders, *h.(*SetHeader))
		case "set-body":
			if p.SetBody != nil {
				return nil, c.Errorf("The element may appear only once in 'return-response'.")
			}
			ca := readAttrs(c)
			b := &SetBody{
				Pos:       c.Pos,
				Template:  ca.enum("template", false, "liquid", "none"),
				XsiNil:    ca.enum("xsi-nil", false, "blank", "null"),
				ParseDate: ca.boolean("parse-date", false),
			}
			if err := ca.done(); err != nil {
				return nil, err
			}
			for _, n := range c.Nodes {
				if n.Elem != nil {
					return nil, n.Elem.Errorf("Child elements are not allowed in 'set-body'; escape XML content.")
				}
			}
			b.Body = c.Text()
			p.SetBody = b
		default:
			return nil, unexpected(e, c)
		}
	}
	return p, nil
}
