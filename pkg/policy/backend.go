package policy

import (
	"net/url"
	"slices"
	"strings"
)

// SetBackendService is <set-backend-service>: exactly one of BaseURL (replaces the API's
// service URL; path remainder and query are kept) and BackendID (a backend entity) is set. The
// sf-* attributes address Service Fabric backends and are kept as written.
type SetBackendService struct {
	Meta
	BaseURL               string
	BackendID             string
	SFResolveCondition    string
	SFServiceInstanceName string
	SFPartitionKey        string
	SFListenerName        string
}

// ElementName returns "set-backend-service".
func (*SetBackendService) ElementName() string { return "set-backend-service" }

// Encode returns the <set-backend-service> element.
func (p *SetBackendService) Encode() *Element {
	return newElement("set-backend-service", p.Meta).
		attr("base-url", p.BaseURL).
		attr("backend-id", p.BackendID).
		attr("sf-resolve-condition", p.SFResolveCondition).
		attr("sf-service-instance-name", p.SFServiceInstanceName).
		attr("sf-partition-key", p.SFPartitionKey).
		attr("sf-listener-name", p.SFListenerName).
		attr("id", p.ID)
}

func decodeSetBackendService(_ *Registry, e *Element) (Policy, error) {
	a := readAttrs(e)
	p := &SetBackendService{
		Meta:                  a.meta(),
		BaseURL:               a.str("base-url", false),
		BackendID:             a.str("backend-id", false),
		SFResolveCondition:    a.str("sf-resolve-condition", false),
		SFServiceInstanceName: a.str("sf-service-instance-name", false),
		SFPartitionKey:        a.str("sf-partition-key", false),
		SFListenerName:        a.str("sf-listener-name", false),
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	if (p.BaseURL == "") == (p.BackendID == "") {
		return nil, e.Errorf("Exactly one of the attributes 'base-url' and 'backend-id' must be specified.")
	}
	if p.BaseURL != "" && !isDynamic(p.BaseURL) {
		u, err := url.Parse(trimSpace(p.BaseURL))
		if err != nil || u.Host == "" {
			return nil, e.Errorf("The attribute 'base-url' must be an absolute URL.")
		}
		switch u.Scheme {
		case "http", "https", "ws", "wss":
		default:
			return nil, e.Errorf("The attribute 'base-url' must use the http, https, ws or wss scheme.")
		}
	}
	if len(e.Nodes) > 0 {
		return nil, e.Errorf("The element must be empty.")
	}
	return p, nil
}

// BackendIDs returns the literal backend-id values of every set-backend-service in the
// document, choose branches included, lower-cased and deduplicated, in document order; an
// expression names no backend until it runs and is left out.
func (d *Document) BackendIDs() []string {
	var ids []string
	for _, ns := range d.sections() {
		if ns.s != nil {
			ids = backendIDsIn(ns.s.Policies, ids)
		}
	}
	return ids
}

// BackendIDs returns the literal backend-id values of the fragment's set-backend-service
// policies, as Document.BackendIDs.
func (f *Fragment) BackendIDs() []string { return backendIDsIn(f.Policies, nil) }

// backendIDsIn appends to ids the literal backend-ids of policies not already in it.
func backendIDsIn(policies []Policy, ids []string) []string {
	walkPolicies(policies, func(p Policy) {
		s, ok := p.(*SetBackendService)
		if !ok {
			return
		}
		id := strings.ToLower(strings.TrimSpace(s.BackendID))
		if id != "" && !strings.HasPrefix(id, "@") && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	})
	return ids
}
