package policy

import "net/netip"

// CheckHeader is <check-header>: the request must carry the header Name and, when Values is not
// empty, one of Values. All four attributes are required, as APIM documents.
type CheckHeader struct {
	Meta
	Name                    string
	FailedCheckHTTPCode     string
	FailedCheckErrorMessage string
	IgnoreCase              string
	Values                  []string
}

// ElementName returns "check-header".
func (*CheckHeader) ElementName() string { return "check-header" }

// Encode returns the <check-header> element.
func (p *CheckHeader) Encode() *Element {
	e := newElement("check-header", p.Meta).
		attrAlways("name", p.Name).
		attrAlways("failed-check-httpcode", p.FailedCheckHTTPCode).
		attrAlways("failed-check-error-message", p.FailedCheckErrorMessage).
		attrAlways("ignore-case", p.IgnoreCase).
		attr("id", p.ID)
	for _, v := range p.Values {
		e.textChild("value", v)
	}
	return e
}

func decodeCheckHeader(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &CheckHeader{
		Meta:                    a.meta(),
		Name:                    a.str("name", true),
		FailedCheckHTTPCode:     a.integer("failed-check-httpcode", true, 100, 599, true),
		FailedCheckErrorMessage: a.present("failed-check-error-message"),
		IgnoreCase:              a.boolean("ignore-case", true),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	var err error
	if p.Values, err = decodeValues(e); err != nil {
		return nil, err
	}
	return p, nil
}

// IPFilter is <ip-filter>: Action "allow" admits only the listed callers, "forbid" refuses
// them. Addresses and ranges hold IPv4 or IPv6 addresses as written.
type IPFilter struct {
	Meta
	Action    string
	Addresses []string
	Ranges    []AddressRange
}

// AddressRange is an inclusive <address-range from="..." to="..."/>.
type AddressRange struct {
	Pos      Pos
	From, To string
}

// ElementName returns "ip-filter".
func (*IPFilter) ElementName() string { return "ip-filter" }

// Encode returns the <ip-filter> element: addresses first, then ranges.
func (p *IPFilter) Encode() *Element {
	e := newElement("ip-filter", p.Meta).attrAlways("action", p.Action).attr("id", p.ID)
	for _, ad := range p.Addresses {
		e.textChild("address", ad)
	}
	for _, r := range p.Ranges {
		e.child((&Element{Name: "address-range", Pos: r.Pos}).attrAlways("from", r.From).attrAlways("to", r.To))
	}
	return e
}

func decodeIPFilter(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &IPFilter{Meta: a.meta(), Action: a.enum("action", true, "allow", "forbid")}
	if err := a.done(); err != nil {
		return nil, err
	}
	if err := e.noText(); err != nil {
		return nil, err
	}
	for _, c := range e.Elements() {
		switch c.Name {
		case "address":
			v, err := elementLeaf(c)
			if err != nil {
				return nil, err
			}
			if _, ok := parseIP(v); !ok {
				return nil, c.Errorf("'%s' is not a valid IP address.", v)
			}
			p.Addresses = append(p.Addresses, v)
		case "address-range":
			ra := readAttrs(c)
			r := AddressRange{Pos: c.Pos, From: trimSpace(ra.str("from", true)), To: trimSpace(ra.str("to", true))}
			if err := ra.done(); err != nil {
				return nil, err
			}
			if len(c.Nodes) > 0 {
				return nil, c.Errorf("The element must be empty.")
			}
			from, okFrom := parseIP(r.From)
			to, okTo := parseIP(r.To)
			switch {
			case !okFrom:
				return nil, c.Errorf("'%s' is not a valid IP address.", r.From)
			case !okTo:
				return nil, c.Errorf("'%s' is not a valid IP address.", r.To)
			case from.IsValid() && to.IsValid() && (from.Is4() != to.Is4() || to.Less(from)):
				return nil, c.Errorf("The range from '%s' to '%s' is empty or mixes IPv4 and IPv6.", r.From, r.To)
			}
			p.Ranges = append(p.Ranges, r)
		default:
			return nil, unexpected(e, c)
		}
	}
	if len(p.Addresses) == 0 && len(p.Ranges) == 0 {
		return nil, e.Errorf("At least one 'address' or 'address-range' element is required.")
	}
	return p, nil
}

// parseIP parses a literal address, unmapping IPv4-in-IPv6. A dynamic value (expression or
// named value) is accepted as the invalid Addr, to be checked by the gateway once known.
func parseIP(s string) (netip.Addr, bool) {
	if isDynamic(s) {
		return netip.Addr{}, true
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
