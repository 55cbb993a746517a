// Package compiled is the gateway's runtime configuration: the immutable, fully compiled form
// of a configuration revision that the hot path reads through one atomic pointer. A Builder
// turns snapshots and revisioned changes from management into new Configs, doing work in
// proportion to each change; it never edits a Config that has been handed out.
package compiled

import (
	"cmp"
	"crypto/sha256"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// Config is one compiled revision. It is immutable and safe for concurrent use.
type Config struct {
	Revision  int64
	ServiceID string
	Service   string
	Gateway   string

	// apis maps the lower-cased routes of the APIs this gateway serves to them (routeKeys:
	// the path, with a Segment version and a ";rev=n" revision, and a Query or Header
	// version after versionSep); byName maps their lower-cased names to them, so a change
	// replaces an API without a scan. versioned maps the routes where the APIs of a Query or
	// Header version set answer to that set.
	apis      *cowMap[*API]
	byName    *cowMap[*API]
	versioned *cowMap[versionedRoute]
	// failed maps the lower-cased names of the APIs with Failures to them.
	failed *cowMap[*API]
	subs   *subIndex
	// tls is the gateway's hostnames, certificates and CAs (tls.go).
	tls *gatewayTLS
	// backends maps lower-cased names to the backend entities, backendURLs the URLs of the
	// Single ones to them, and backendEnv is pipeline.Env.Backends for the policies.
	backends    map[string]*Backend
	backendURLs map[string]*Backend
	backendEnv  map[string]string
	// diagnostics are the service's and the APIs' diagnostics (diagnostics.go).
	diagnostics diagnosticSet
}

// Failure is a policy (or an API's own settings) that this node could not compile. The
// pipelines it belongs to refuse every request with 500 until a later change fixes it.
type Failure = configwire.PolicyFailure

// Failures returns what this revision could not compile, by API name, operation, product and
// scope; empty when everything compiled.
func (c *Config) Failures() []Failure {
	var out []Failure
	for _, a := range c.failed.all() {
		out = append(out, a.Failures...)
	}
	slices.SortFunc(out, func(x, y Failure) int {
		return cmp.Or(cmp.Compare(x.API, y.API), cmp.Compare(x.Operation, y.Operation), cmp.Compare(x.Product, y.Product), cmp.Compare(x.Scope, y.Scope))
	})
	return out
}

// FailedAPIs returns how many APIs have at least one Failure.
func (c *Config) FailedAPIs() int { return c.failed.len() }

// API is a served API (one revision of it) with its compiled pipelines.
type API struct {
	// Name is the API's name, with ";rev=n" for a revision that is not current; APIName is
	// the name without it, which products, gateways and subscriptions name.
	Name        string
	APIName     string
	DisplayName string
	Path        string
	// Revision is the API's revision number ("1" when unknown) and Current whether it is the
	// current one, which is served at Path as well as at Path;rev=n.
	Revision string
	Current  bool
	// VersionSet is the version set of the API (nil for none) and Version its version in it
	// ("" for the Original, answering requests that name no version).
	VersionSet           *VersionSet
	Version              string
	Type                 string // "http" or "websocket"
	ServiceURL           *url.URL
	ServiceURLText       string // ServiceURL.String(), made once
	Protocols            []string
	SubscriptionRequired bool
	KeyHeader, KeyQuery  string
	// Products are the lower-cased names of the products containing the API.
	Products map[string]*Product
	// OpenProduct is a product without subscription requirement containing the API, if any.
	OpenProduct *Product
	Operations  []*Operation
	// Failures lists what of the API did not compile: those pipelines fail closed.
	Failures []Failure
	// routeKey is the key of Config.apis it is served under when routed, versionedAt the one
	// of Config.versioned it counts in ("" for none).
	routeKey, versionedAt string
	routed                bool
}

// Broken reports whether the API's properties did not decode (a node older than management):
// it is routed by its path only, and every request for it fails closed.
func (a *API) Broken() bool { return a.Type == "" }

// Operation is an API operation with the pipelines of each product context.
type Operation struct {
	Name        string
	DisplayName string
	Method      string
	URLTemplate string
	template    *urlTemplate
	// pipelines maps a lower-cased product name ("" = no product context) to the effective
	// pipeline: global → product → API → operation.
	pipelines map[string]*pipeline.Pipeline
}

// Pipeline returns the effective pipeline in the context of product (nil = none).
func (o *Operation) Pipeline(product *Product) *pipeline.Pipeline {
	if product == nil {
		return o.pipelines[""]
	}
	return o.pipelines[strings.ToLower(product.Name)]
}

// Product is a product containing served APIs.
type Product struct {
	Name                 string
	DisplayName          string
	SubscriptionRequired bool
}

// Subscription is a subscription as the gateway knows it: no keys, only their hashes. A
// million of them are most of a node's memory: each takes 112 bytes, its scope and state
// shared with others.
type Subscription struct {
	Name    string
	OwnerID string
	kind    *subKind
	start   int64 // Unix seconds; 0 when unknown
	// hashes are the SHA-256 hashes of the keys; a zero one (no key has it) is none.
	hashes [maxKeys][sha256.Size]byte
}

// subKind is what many subscriptions share.
type subKind struct{ scope, state string }

// maxKeys is how many keys a subscription has: a primary and a secondary one.
const maxKeys = 2

// keyHashes returns the hashes of s's keys.
func (s *Subscription) keyHashes() [][sha256.Size]byte {
	n := 0
	for n < maxKeys && s.hashes[n] != [sha256.Size]byte{} {
		n++
	}
	return s.hashes[:n]
}

// State is the subscription's state: "active", "suspended" and so on.
func (s *Subscription) State() string { return s.kind.state }

// Scope is the scope below the service: "apis", "apis/{id}" or "products/{id}", lower-cased.
func (s *Subscription) Scope() string { return s.kind.scope }

// StartDate is when the subscription became active (or was created), to the second, or zero
// when unknown; quota periods count from it.
func (s *Subscription) StartDate() time.Time {
	if s.start == 0 {
		return time.Time{}
	}
	return time.Unix(s.start, 0).UTC()
}

// Active reports whether the subscription may call APIs.
func (s *Subscription) Active() bool { return s.kind.state == "active" }

// Covers reports whether the subscription's scope includes api, and in which product context.
func (s *Subscription) Covers(api *API) (ok bool, product *Product) {
	switch scope := s.kind.scope; {
	case scope == "apis":
		return true, nil
	case strings.HasPrefix(scope, "apis/"):
		return strings.EqualFold(scope[len("apis/"):], api.APIName), nil
	case strings.HasPrefix(scope, "products/"):
		p := api.Products[scope[len("products/"):]]
		return p != nil, p
	}
	return false, nil
}

// LookupWebSocket returns the API whose route equals r's path exactly (no extra segments), or
// a broken API there. A path where a Query or Header version set answers takes the version r
// names; an unknown one finds nothing.
func (c *Config) LookupWebSocket(r *http.Request) *API {
	a := c.route(strings.ToLower(strings.Trim(r.URL.Path, "/")), r)
	if a == nil || (a.Type != "websocket" && !a.Broken()) {
		return nil
	}
	return a
}

// LookupHTTP returns the HTTP API with the longest route that is a segment prefix of r's
// path, and the rest of the path after it (without a leading slash); a broken API stops the
// search. Paths compare case-insensitively.
func (c *Config) LookupHTTP(r *http.Request) (*API, string) {
	p := strings.Trim(r.URL.Path, "/")
	// Lower-casing keeps byte offsets of ASCII text only; other paths are lowered per prefix.
	lower, ascii := strings.ToLower(p), isASCII(p)
	end := len(p)
	for {
		k := lower[:min(end, len(lower))]
		if !ascii {
			k = strings.ToLower(p[:end])
		}
		if a := c.route(k, r); a != nil && (a.Type == "http" || a.Broken()) {
			return a, strings.TrimPrefix(p[end:], "/")
		}
		if end == 0 {
			return nil, ""
		}
		end = max(strings.LastIndexByte(p[:end], '/'), 0)
	}
}

// route returns the API at the lower-cased route key for r: the version r names when a
// Query or Header version set answers there, else the API at the key. "{route};rev=n" is
// also the current revision at the route when that is n. A key holding versionSep (a path
// with %00) names no route: it would reach a version the request does not name.
func (c *Config) route(key string, r *http.Request) *API {
	if strings.Contains(key, versionSep) {
		return nil
	}
	if a := c.routeVersion(key, r); a != nil {
		return a
	}
	if base, rev, ok := splitRevision(key); ok {
		if a := c.routeVersion(base, r); a != nil && a.Current && a.Revision == rev {
			return a
		}
	}
	return nil
}

// routeVersion is route without the revision suffix.
func (c *Config) routeVersion(key string, r *http.Request) *API {
	if vr := c.versioned.get(key); vr.n > 0 {
		if v := vr.set.versionOf(r); v != "" {
			return c.apis.get(key + versionSep + strings.ToLower(v))
		}
	}
	return c.apis.get(key)
}

// APIByName returns a served API by name, of either type: "chat;rev=n" is also the current
// revision of chat when that is n.
func (c *Config) APIByName(name string) *API {
	name = strings.ToLower(name)
	if a := c.byName.get(name); a != nil {
		return a
	}
	base, rev, ok := splitRevision(name)
	if a := c.byName.get(base); ok && a != nil && a.Revision == rev {
		return a
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// API returns a served API by route (its path for an unversioned current revision), of
// either type.
func (c *Config) API(path string) *API { return c.apis.get(strings.ToLower(strings.Trim(path, "/"))) }

// APIs returns the number of served APIs (each revision counts).
func (c *Config) APIs() int { return c.byName.len() }

// Subscription resolves a presented key (by its SHA-256 hash).
func (c *Config) Subscription(keyHash [32]byte) *Subscription { return c.subs.byKey(keyHash) }

// Keys returns how many subscription keys the config resolves.
func (c *Config) Keys() int { return c.subs.len() }
