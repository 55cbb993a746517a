package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// Versioning schemes of an API version set (reference/apim-surface.md §4): where a request
// names the version of the API it calls.
const (
	VersioningSegment = "Segment"
	VersioningQuery   = "Query"
	VersioningHeader  = "Header"
)

// VersionSetProperties are the stored ARM properties of an API version set.
type VersionSetProperties struct {
	DisplayName       string `json:"displayName"`
	Description       string `json:"description,omitempty"`
	VersioningScheme  string `json:"versioningScheme"`
	VersionQueryName  string `json:"versionQueryName,omitempty"`
	VersionHeaderName string `json:"versionHeaderName,omitempty"`
}

var versionSetBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p VersionSetProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if err := p.normalize("properties."); err != nil {
			return err
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		users, _, err := w.tx.List(ctx, Query{Kind: KindAPI, PropEquals: map[string]string{"apiVersionSetId": w.scopeID(r.Path())}, All: true})
		if err != nil || len(users) == 0 {
			return err
		}
		names := make([]string, len(users))
		for i, u := range users {
			names[i] = u.Name
		}
		return invalid("apiVersionSet", "The API version set '%s' is used by the APIs %s; delete them or move them out of the set first.", r.Name, strings.Join(names, ", "))
	},
}

// normalize checks the properties of a version set, field names prefixed with at ("properties."
// or "properties.apiVersionSet."), and canonicalizes the scheme's case.
func (p *VersionSetProperties) normalize(at string) error {
	if n := len(p.DisplayName); n == 0 || n > 100 {
		return invalid(at+"displayName", "displayName is required and must be at most 100 characters")
	}
	if len(p.Description) > 100_000 {
		return invalid(at+"description", "description is too long")
	}
	switch {
	case strings.EqualFold(p.VersioningScheme, VersioningSegment):
		p.VersioningScheme = VersioningSegment
	case strings.EqualFold(p.VersioningScheme, VersioningQuery):
		p.VersioningScheme = VersioningQuery
	case strings.EqualFold(p.VersioningScheme, VersioningHeader):
		p.VersioningScheme = VersioningHeader
	default:
		return invalid(at+"versioningScheme", "versioningScheme is required: Segment, Query or Header")
	}
	if p.VersioningScheme == VersioningQuery {
		if p.VersionQueryName == "" || len(p.VersionQueryName) > 100 || strings.ContainsAny(p.VersionQueryName, "&=#?; ") {
			return invalid(at+"versionQueryName", "a Query version set needs versionQueryName: 1 to 100 characters of a query parameter name")
		}
	} else if p.VersionQueryName != "" {
		return invalid(at+"versionQueryName", "versionQueryName applies to the Query scheme only")
	}
	if p.VersioningScheme == VersioningHeader {
		if len(p.VersionHeaderName) > 100 || !validHeaderName(p.VersionHeaderName) {
			return invalid(at+"versionHeaderName", "a Header version set needs versionHeaderName: 1 to 100 characters of a header name")
		}
	} else if p.VersionHeaderName != "" {
		return invalid(at+"versionHeaderName", "versionHeaderName applies to the Header scheme only")
	}
	return nil
}

// inlineVersionSet is the apiVersionSet object of an API write: an existing set by id, or a
// new one when id is omitted.
type inlineVersionSet struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	VersionSetProperties
}

// versionSetOf checks an API's version set fields and returns the set's name ("" for none).
// An inline set is created (no id) or updated (an id with a scheme) first, and its id goes to
// apiVersionSetId.
func (w *write) versionSetOf(ctx context.Context, p *APIProperties, inline *inlineVersionSet) (string, error) {
	if inline != nil {
		name, err := w.putInlineVersionSet(ctx, p.APIVersionSetID, inline)
		if err != nil {
			return "", err
		}
		p.APIVersionSetID = w.scopeID(KindAPIVersionSet.Segment + "/" + name)
	}
	if p.APIVersionSetID == "" {
		if p.APIVersion != "" {
			return "", invalid("properties.apiVersion", "apiVersion needs apiVersionSetId: a version belongs to a version set")
		}
		return "", nil
	}
	name, ok := w.versionSetName(p.APIVersionSetID)
	if !ok {
		return "", invalid("properties.apiVersionSetId", "'%s' is not the id of an API version set of this service", p.APIVersionSetID)
	}
	if _, err := w.tx.Get(ctx, KindAPIVersionSet, "", name); err != nil {
		return "", invalid("properties.apiVersionSetId", "the API version set '%s' does not exist", name)
	}
	p.APIVersionSetID = w.scopeID(KindAPIVersionSet.Segment + "/" + name)
	if len(p.APIVersion) > 100 || strings.ContainsAny(p.APIVersion, "/?#;\\ \t\r\n") {
		return "", invalid("properties.apiVersion", "apiVersion must be at most 100 characters of one URL path segment")
	}
	return name, nil
}

// versionSetName reads the set's name from its ARM id (this service's), or from the short form
// "/apiVersionSets/{name}".
func (w *write) versionSetName(id string) (string, bool) {
	rest := id
	if len(id) > len(ServiceID(w.svc.Ref)) && strings.EqualFold(id[:len(ServiceID(w.svc.Ref))], ServiceID(w.svc.Ref)) {
		rest = id[len(ServiceID(w.svc.Ref)):]
	}
	seg, name, ok := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	if !ok || !strings.EqualFold(seg, KindAPIVersionSet.Segment) || KindAPIVersionSet.ValidName(name) != nil || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// putInlineVersionSet creates the inline set of an API write, or updates the one its id names
// when it carries a scheme, and returns its name. An id that disagrees with apiVersionSetId is
// refused.
func (w *write) putInlineVersionSet(ctx context.Context, setID string, in *inlineVersionSet) (string, error) {
	name := ""
	if in.ID != "" {
		n, ok := w.versionSetName(in.ID)
		if !ok {
			return "", invalid("properties.apiVersionSet.id", "'%s' is not the id of an API version set of this service", in.ID)
		}
		if other, ok := w.versionSetName(setID); setID != "" && (!ok || !strings.EqualFold(other, n)) {
			return "", invalid("properties.apiVersionSetId", "apiVersionSetId and apiVersionSet.id name different version sets")
		}
		name = n
		if in.VersioningScheme == "" && in.DisplayName == "" {
			return name, nil // a reference only
		}
	} else if setID != "" {
		return "", invalid("properties.apiVersionSet", "send apiVersionSet.id with apiVersionSetId, or omit apiVersionSetId to create a new set")
	} else {
		name = newVersionSetName()
	}
	if in.DisplayName == "" {
		in.DisplayName = in.Name
	}
	if err := in.normalize("properties.apiVersionSet."); err != nil {
		return "", err
	}
	set := Resource{ServiceID: w.svc.ID, Kind: KindAPIVersionSet, Name: name, Properties: mustJSON(in.VersionSetProperties)}
	if old, err := w.tx.Get(ctx, KindAPIVersionSet, "", name); err == nil {
		set.ID, set.Name, set.Created = old.ID, old.Name, old.Created
	}
	if err := w.tx.Put(ctx, &set); err != nil {
		return "", fmt.Errorf("store the inline version set: %w", err)
	}
	return set.Name, nil
}

// newVersionSetName names a set created inline, as APIM does: 24 hex digits.
func newVersionSetName() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
