package policy

import "strings"

// Exists actions of set-header and set-query-parameter. An empty ExistsAction means override.
const (
	ExistsOverride = "override"
	ExistsSkip     = "skip"
	ExistsAppend   = "append"
	ExistsDelete   = "delete"
)

// SetHeader is <set-header>: set, append, skip or delete the header Name with Values. The
// headers APIM refuses to modify (Connection, Content-Length, Keep-Alive, Transfer-Encoding)
// and deleting Server are refused at parse time; whether Host may be set depends on where the
// policy runs and is left to the caller.
type SetHeader struct {
	Meta
	Name         string
	ExistsAction string
	Values       []string
}

// ElementName returns "set-header".
func (*SetHeader) ElementName() string { return "set-header" }

// Encode returns the <set-header> element.
func (p *SetHeader) Encode() *Element {
	return encodeSetNamed("set-header", p.Meta, p.Name, p.ExistsAction, p.Values)
}

func decodeSetHeader(_ *Registry, e *Element) (Policy, error) {
	m, name, action, values, err := decodeSetNamed(e)
	if err != nil {
		return nil, err
	}
	if !isDynamic(name) {
		if !isToken(name) || restrictedHeader(name) {
			return nil, e.Errorf("Header name is invalid or restricted from modification")
		}
		if strings.EqualFold(action, ExistsDelete) && strings.EqualFold(name, "Server") {
			return nil, e.Errorf("Header 'Server' cannot be removed.")
		}
	}
	return &SetHeader{Meta: m, Name: name, ExistsAction: action, Values: values}, nil
}

// SetQueryParameter is <set-query-parameter>: set, append, skip or delete the query parameter
// Name with Values.
type SetQueryParameter struct {
	Meta
	Name         string
	ExistsAction string
	Values       []string
}

// ElementName returns "set-query-parameter".
func (*SetQueryParameter) ElementName() string { return "set-query-parameter" }

// Encode returns the <set-query-parameter> element.
func (p *SetQueryParameter) Encode() *Element {
	return encodeSetNamed("set-query-parameter", p.Meta, p.Name, p.ExistsAction, p.Values)
}

func decodeSetQueryParameter(_ *Registry, e *Element) (Policy, error) {
	m, name, action, values, err := decodeSetNamed(e)
	if err != nil {
		return nil, err
	}
	return &SetQueryParameter{Meta: m, Name: name, ExistsAction: action, Values: values}, nil
}

func encodeSetNamed(elem string, m Meta, name, action string, values []string) *Element {
	e := newElement(elem, m).attrAlways("name", name).attr("exists-action", action).attr("id", m.ID)
	for _, v := range values {
		e.textChild("value", v)
	}
	return e
}

func decodeSetNamed(e *Element) (m Meta, name, action string, values []string, err error) {
	a := readAttrs(e)
	m = a.meta()
	name = a.str("name", true)
	action = a.enum("exists-action", false, ExistsOverride, ExistsSkip, ExistsAppend, ExistsDelete)
	if err = a.done(); err != nil {
		return
	}
	values, err = decodeValues(e)
	return
}

// restrictedHeader reports the headers APIM does not let set-header modify, by their HTTP
// names and by the .NET property names APIM's documentation uses.
func restrictedHeader(name string) bool {
	switch strings.ToLower(strings.ReplaceAll(name, "-", "")) {
	case "connection", "contentlength", "keepalive", "transferencoding":
		return true
	}
	return false
}

// isToken reports whether s is an RFC 9110 token, the syntax of a header field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
