package compiled

import (
	"encoding/json"
	"net/http"
	"strings"

	"gatehouse.dev/pkg/configwire"
)

// Versions and revisions on the node (docs/versions.md). An API is served under its route:
// its path, followed by "/{version}" for a Segment version, by ";rev=n" for a revision that
// is not current, and by versionSep and the version for a Query or Header version; where
// Query or Header versions answer, Config.versioned names the set, so that a lookup reads the
// version from the request.

// Versioning schemes, as management stores them.
const (
	schemeSegment = "Segment"
	schemeQuery   = "Query"
	schemeHeader  = "Header"
)

// versionSep separates a route from a Query or Header version in a key of Config.apis; no
// path contains it.
const versionSep = "\x00"

// VersionSet is an API version set: where a request names the version it calls.
type VersionSet struct {
	Name              string
	Scheme            string // Segment, Query or Header
	QueryName, Header string
}

// versionOf returns the version r names under the set's Query or Header scheme, or "".
func (s *VersionSet) versionOf(r *http.Request) string {
	switch s.Scheme {
	case schemeQuery:
		return r.URL.Query().Get(s.QueryName)
	case schemeHeader:
		return r.Header.Get(s.Header)
	}
	return ""
}

// versionedRoute is a route where n APIs of a Query or Header version set answer.
type versionedRoute struct {
	set *VersionSet
	n   int
}

// splitRevision splits "chat;rev=2" into ("chat", "2", true); another name comes back whole.
func splitRevision(name string) (base, rev string, ok bool) {
	i := strings.Index(strings.ToLower(name), ";rev=")
	if i < 0 {
		return name, "", false
	}
	return name[:i], name[i+len(";rev="):], true
}

// apiWire are the properties of an API entity about its versions and revisions.
type apiWire struct {
	APIRevision     string `json:"apiRevision"`
	IsCurrent       *bool  `json:"isCurrent"`
	APIVersion      string `json:"apiVersion"`
	APIVersionSetID string `json:"apiVersionSetId"`
}

// versioning fills api's revision and version from the entity's properties p; it returns an
// error when the API's version set is not in the configuration.
func (b *Builder) versioning(api *API, p apiWire) error {
	api.Revision, api.Current = p.APIRevision, p.IsCurrent == nil || *p.IsCurrent
	if api.Revision == "" {
		api.Revision = "1"
	}
	if p.APIVersionSetID == "" {
		return nil
	}
	name := p.APIVersionSetID[strings.LastIndexByte(p.APIVersionSetID, '/')+1:]
	e, ok := b.ents[key(configwire.KindAPIVersionSet, "", name)]
	if !ok {
		return &versionSetError{name}
	}
	var vs struct {
		VersioningScheme  string `json:"versioningScheme"`
		VersionQueryName  string `json:"versionQueryName"`
		VersionHeaderName string `json:"versionHeaderName"`
	}
	if err := json.Unmarshal(e.Properties, &vs); err != nil {
		return &versionSetError{name}
	}
	api.VersionSet = &VersionSet{Name: e.Name, Scheme: vs.VersioningScheme, QueryName: vs.VersionQueryName, Header: vs.VersionHeaderName}
	api.Version = p.APIVersion
	return nil
}

// versionSetError is an API whose version set this node does not know.
type versionSetError struct{ name string }

func (e *versionSetError) Error() string {
	return "the API's version set " + e.name + " is not in this node's configuration"
}

// setRoute computes api's route and the versioned route it counts in.
func (api *API) setRoute() {
	base := strings.ToLower(api.Path)
	if api.VersionSet != nil && api.VersionSet.Scheme == schemeSegment && api.Version != "" {
		base = strings.TrimPrefix(base+"/"+strings.ToLower(api.Version), "/")
	}
	if !api.Current {
		base += ";rev=" + api.Revision // the current one answers there too (Config.route)
	}
	api.routeKey, api.versionedAt, api.routed = base, "", true
	if s := api.VersionSet; s != nil && (s.Scheme == schemeQuery || s.Scheme == schemeHeader) {
		api.versionedAt = base
		if api.Version != "" {
			api.routeKey = base + versionSep + strings.ToLower(api.Version)
		}
	}
}

// unroute removes api's route from apis and its count from versioned.
func unroute(api *API, apis *cowEditor[*API], versioned *cowEditor[versionedRoute]) {
	if !api.routed {
		return
	}
	if apis.get(api.routeKey) == api {
		apis.delete(api.routeKey)
	}
	if api.versionedAt == "" {
		return
	}
	if vr := versioned.get(api.versionedAt); vr.n > 1 {
		versioned.set(api.versionedAt, versionedRoute{set: vr.set, n: vr.n - 1})
	} else {
		versioned.delete(api.versionedAt)
	}
}

// route adds api's route to apis and its count to versioned.
func route(api *API, apis *cowEditor[*API], versioned *cowEditor[versionedRoute]) {
	apis.set(api.routeKey, api)
	if api.versionedAt != "" {
		versioned.set(api.versionedAt, versionedRoute{set: api.VersionSet, n: versioned.get(api.versionedAt).n + 1})
	}
}
