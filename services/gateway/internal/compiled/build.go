package compiled

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/policy"
)

// ErrResync means a change cannot be applied incrementally (a gap in revisions, an unknown
// change, a change too large to send, an API newly linked to this gateway or to a product):
// the caller must load a fresh snapshot.
var ErrResync = errors.New("compiled: a fresh snapshot is needed")

// Builder holds the dynamic configuration (the entities received from management) and
// compiles Configs from it. It is owned by one goroutine, the sync loop; the Configs it
// returns are immutable and may be shared freely.
type Builder struct {
	env pipeline.Env

	serviceID, service, gateway string
	revision                    int64

	// ents holds every entity but subscriptions and users, by key(kind, parent, name).
	ents map[string]configwire.Entity
	// docs caches parsed policy documents by entity key; bad holds, by the same key, why a
	// policy entity could not be parsed (a node older than management meeting a newer
	// element): the pipelines that include it fail closed.
	docs map[string]*policy.Document
	bad  map[string]error
	// frags holds the parsed policy fragments (or why one does not parse) by entity key.
	frags map[string]pipeline.Fragment
	// children indexes ents by kind and lower-cased parent: kind|parent → set of keys.
	children map[string]map[string]bool
	// productsOf and apisOf index product↔API links by lower-cased names.
	productsOf map[string]map[string]bool
	apisOf     map[string]map[string]bool
	// revisions indexes the lower-cased names of the APIs' non-current revisions
	// ("chat;rev=2") by the lower-cased API name ("chat").
	revisions map[string]map[string]bool
	// names indexes the subscriptions of the current Config by name (the entity map would
	// double their memory, a map of names cost 57 bytes a subscription).
	names    *subIndex
	nameHash nameHasher
	// kinds interns the scopes and states of subscriptions: a million subscriptions share a
	// few thousand.
	kinds map[subKind]*subKind

	cur *Config
}

// NewBuilder returns an empty Builder compiling pipelines with env (its NamedValues are
// filled from the configuration).
func NewBuilder(env pipeline.Env) *Builder { return &Builder{env: env} }

// Current returns the last Config built, or nil.
func (b *Builder) Current() *Config { return b.cur }

// Revision is the revision of the last Config built.
func (b *Builder) Revision() int64 { return b.revision }

func key(kind, parent, name string) string {
	return kind + "|" + strings.ToLower(parent) + "|" + strings.ToLower(name)
}

func childKey(kind, parent string) string { return kind + "|" + strings.ToLower(parent) }

// Load replaces everything with a snapshot and compiles it. On error the Builder keeps its
// previous state, so the caller can keep serving the previous Config.
func (b *Builder) Load(snap configwire.Snapshot) (*Config, error) {
	l := b.StartLoad()
	for _, e := range snap.Entities {
		if err := l.Add(e); err != nil {
			return nil, err
		}
	}
	return l.Finish(snap)
}

// Loading is a snapshot being loaded one entity at a time, so that a large snapshot (a million
// subscriptions are 120 MB even as a stream) never has to be held whole: a subscription is
// reduced to its compiled form as it arrives, and indexed with the others when the load
// finishes, in one pass rather than a million insertions. The Builder is untouched until
// Finish succeeds; a Loading that is dropped changes nothing. It is used by the Builder's
// goroutine only.
type Loading struct {
	b, next *Builder
	subs    []*Subscription
}

// subEdit edits the subscriptions: the key index of the next Config and the name index of the
// Builder, which it keeps when the edit succeeds.
type subEdit struct{ keys, names *subEditor }

// StartLoad begins a Load whose entities are then given to Add.
func (b *Builder) StartLoad() *Loading {
	next := &Builder{env: b.env,
		ents: map[string]configwire.Entity{}, docs: map[string]*policy.Document{}, bad: map[string]error{}, frags: map[string]pipeline.Fragment{},
		children:   map[string]map[string]bool{},
		productsOf: map[string]map[string]bool{}, apisOf: map[string]map[string]bool{}, revisions: map[string]map[string]bool{}, nameHash: newNameHasher(),
		kinds: map[subKind]*subKind{}}
	return &Loading{b: b, next: next}
}

// Add adds one entity of the snapshot.
func (l *Loading) Add(e configwire.Entity) error {
	if e.Kind != configwire.KindSubscription {
		return l.next.put(e, nil, nil)
	}
	s, err := configwire.SubscriptionOf(e)
	if err != nil {
		return err
	}
	return l.AddSubscription(s)
}

// AddSubscription adds one subscription of the snapshot. Of subscriptions of one name, the
// last added counts; of subscriptions holding one key, the last added has it.
func (l *Loading) AddSubscription(ws configwire.Subscription) error {
	s, err := l.next.newSubscription(ws)
	if err != nil {
		return err
	}
	l.subs = append(l.subs, s)
	return nil
}

// Finish compiles the entities added, with the identity and revision of h (its Entities are
// ignored), and makes the result the Builder's state and current Config. On error the Builder
// keeps its previous state. A Loading is finished at most once.
func (l *Loading) Finish(h configwire.Snapshot) (*Config, error) {
	next := l.next
	next.serviceID, next.service, next.gateway, next.revision = h.ServiceID, h.Service, h.Gateway, h.Revision
	var keys *subIndex
	next.names, keys = buildSubIndexes(l.subs, next.nameHash)
	l.subs = nil
	cfg := &Config{Revision: h.Revision, ServiceID: h.ServiceID, Service: h.Service, Gateway: h.Gateway, subs: keys,
		tls: next.buildTLS(next.env.Log), diagnostics: next.buildDiagnostics()}
	next.compileAPIs(cfg, nil, nil)
	*l.b = *next
	l.b.cur = cfg
	return cfg, nil
}

// Apply applies the change of the next revision and returns the new current Config, compiling
// only what the change affects. A revision already applied is a no-op that returns the current
// Config. Apply returns an error wrapping ErrResync when the change cannot be applied
// incrementally, or an error for an entity that cannot be decoded at all. A policy that does
// not parse or compile is no error: the pipelines that include it fail closed and the Config
// lists it in Failures, so one bad policy never holds back the keys, subscriptions and APIs
// of later changes (issue 11). On any error the Builder is unchanged: Current and Revision
// still describe the previous Config.
func (b *Builder) Apply(ch configwire.Change) (*Config, error) {
	if b.cur == nil || ch.ServiceID != b.serviceID {
		return nil, ErrResync
	}
	if ch.Revision <= b.revision {
		return b.cur, nil // already applied (a re-delivery)
	}
	if ch.Revision != b.revision+1 {
		return nil, fmt.Errorf("%w: revision %d after %d", ErrResync, ch.Revision, b.revision)
	}
	var undo undoLog
	edit := &subEdit{keys: b.cur.subs.edit(), names: b.names.edit()}
	cfg, err := b.apply(ch, edit, &undo)
	if err != nil {
		undo.run()
		return nil, err
	}
	b.revision, b.cur, b.names = ch.Revision, cfg, edit.names.done()
	return cfg, nil
}

// apply does the work of Apply with edit, recording in undo how to restore the Builder's other
// state.
func (b *Builder) apply(ch configwire.Change, edit *subEdit, undo *undoLog) (*Config, error) {
	affected := map[string]bool{}
	all, diagnostics := false, false
	for _, it := range ch.Items {
		e := it.Entity
		switch it.Op {
		case configwire.OpPut, configwire.OpDelete:
		default:
			return nil, fmt.Errorf("%w: change op %q", ErrResync, it.Op)
		}
		put := it.Op == configwire.OpPut
		switch e.Kind {
		case configwire.KindSubscription, configwire.KindUser, configwire.KindGateway:
		case configwire.KindAPI, configwire.KindOperation:
			affected[apiOf(e)] = true
		case configwire.KindPolicy:
			switch scope := strings.ToLower(e.Parent); {
			case scope == "":
				all = true
			case strings.HasPrefix(scope, "products/"):
				for a := range b.apisOf[scope[len("products/"):]] {
					affected[a] = true
				}
			default:
				affected[apiOf(e)] = true
			}
		case configwire.KindProduct:
			for a := range b.apisOf[strings.ToLower(e.Name)] {
				affected[a] = true
			}
		case configwire.KindProductAPI:
			api, product := strings.ToLower(e.Name), strings.ToLower(strings.TrimPrefix(strings.ToLower(e.Parent), "products/"))
			if put && !b.productsOf[api][product] && b.serves(api) && !b.productServed(product) {
				// The snapshot held neither this product nor the subscriptions to it.
				return nil, fmt.Errorf("%w: API %s added to product %s", ErrResync, e.Name, product)
			}
			affected[api] = true
		case configwire.KindGatewayAPI:
			if strings.EqualFold(e.Parent, "gateways/"+b.gateway) {
				if put && !b.serves(strings.ToLower(e.Name)) {
					// An API newly linked here: its operations, policies, products and
					// subscriptions were not in our snapshot.
					return nil, fmt.Errorf("%w: API %s linked to this gateway", ErrResync, e.Name)
				}
				affected[strings.ToLower(e.Name)] = true
			}
		case configwire.KindCertificate, configwire.KindGatewayHostname, configwire.KindGatewayCA:
			if b.tlsChange(e) {
				return nil, fmt.Errorf("%w: the gateway's TLS settings changed (%s %s)", ErrResync, e.Kind, e.Name)
			}
			continue // another gateway's, or a certificate this gateway does not use
		case configwire.KindBackend:
			if put && !b.certificatesHeld(e) {
				return nil, fmt.Errorf("%w: backend %s presents a certificate this node does not hold", ErrResync, e.Name)
			}
			all = true // policies compile against the backends, and pools against their members
		case configwire.KindNamedValue:
			if e.Secret {
				return nil, fmt.Errorf("%w: secret named value %s changed", ErrResync, e.Name)
			}
			all = true
		case configwire.KindPolicyFragment:
			all = true // any API may include it, through any scope
		case configwire.KindAPIVersionSet:
			all = true // a set's scheme routes each of its APIs
		case configwire.KindAPIRelease:
			continue // a record of management's: the revision it made current came as APIs
		case configwire.KindLogger:
			if put && e.Secret {
				return nil, fmt.Errorf("%w: otlp logger %s changed", ErrResync, e.Name)
			}
			diagnostics = true
		case configwire.KindDiagnostic:
			diagnostics = true
		case configwire.KindPortalSetting, configwire.KindIdentityProvider:
			continue // the developer portal's, which no node serves
		case configwire.KindTag, configwire.KindAPITag, configwire.KindOperationTag, configwire.KindProductTag,
			configwire.KindTagDescription, configwire.KindGroup, configwire.KindGroupUser, configwire.KindProductGroup:
			continue // the developer portal's metadata: nothing a gateway enforces
		case configwire.KindAPISchema:
			continue // a description of the API's messages, for its users, not for routing
		default:
			return nil, fmt.Errorf("%w: unknown kind %q", ErrResync, e.Kind)
		}
		if !put {
			b.remove(e, edit, undo)
		} else if err := b.put(e, edit, undo); err != nil {
			return nil, err
		}
	}
	cfg := &Config{Revision: ch.Revision, ServiceID: b.serviceID, Service: b.service, Gateway: b.gateway, subs: edit.keys.done(),
		tls: b.cur.tls, diagnostics: b.cur.diagnostics}
	if diagnostics {
		cfg.diagnostics = b.buildDiagnostics()
	}
	switch {
	case all:
		affected = nil
	case len(affected) == 0:
		// Nothing compiled changes: share the API maps, which no one modifies.
		cfg.apis, cfg.byName, cfg.failed, cfg.versioned = b.cur.apis, b.cur.byName, b.cur.failed, b.cur.versioned
		cfg.backends, cfg.backendURLs, cfg.backendEnv = b.cur.backends, b.cur.backendURLs, b.cur.backendEnv
		return cfg, nil
	}
	b.compileAPIs(cfg, b.cur, affected)
	return cfg, nil
}

// serves reports whether api (lower-cased) is linked to this gateway; a revision is served
// where its API is.
func (b *Builder) serves(api string) bool {
	base, _, _ := splitRevision(api)
	_, ok := b.ents[key(configwire.KindGatewayAPI, "gateways/"+b.gateway, base)]
	return ok
}

// productServed reports whether product (lower-cased) contains an API linked to this gateway,
// which means the Builder knows its subscriptions.
func (b *Builder) productServed(product string) bool {
	for a := range b.apisOf[product] {
		if b.serves(a) {
			return true
		}
	}
	return false
}

// apiOf is the lower-cased name of the API an api, operation or API/operation policy belongs to.
func apiOf(e configwire.Entity) string {
	if e.Kind == configwire.KindAPI {
		return strings.ToLower(e.Name)
	}
	parts := strings.Split(strings.ToLower(e.Parent), "/")
	if len(parts) >= 2 && parts[0] == "apis" {
		return parts[1]
	}
	return ""
}

// undoLog restores the Builder's maps after a failed Apply, in reverse order of the edits.
type undoLog []func()

func (u *undoLog) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
	*u = nil
}

// set stores v under k in m (deletes k when del), recording the previous state in u (nil = no
// recording).
func set[K comparable, V any](m map[K]V, k K, v V, del bool, u *undoLog) {
	if u != nil {
		old, had := m[k]
		*u = append(*u, func() {
			if had {
				m[k] = old
			} else {
				delete(m, k)
			}
		})
	}
	if del {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// setIn sets or clears to in the set m[from].
func setIn(m map[string]map[string]bool, from, to string, present bool, u *undoLog) {
	inner := m[from]
	if inner == nil {
		if !present {
			return
		}
		inner = map[string]bool{}
		m[from] = inner // an empty set left behind by an undo is harmless
	}
	set(inner, to, true, !present, u)
}

func (b *Builder) put(e configwire.Entity, edit *subEdit, u *undoLog) error {
	k := key(e.Kind, e.Parent, e.Name)
	switch e.Kind {
	case configwire.KindSubscription:
		s, err := configwire.SubscriptionOf(e)
		if err != nil {
			return err
		}
		return b.putSubscription(s, edit)
	case configwire.KindUser:
		return nil // users matter only as owner ids, which subscriptions carry
	case configwire.KindPolicy:
		doc, err := parsePolicy(e)
		set(b.docs, k, doc, err != nil, u)
		set(b.bad, k, err, err == nil, u)
	case configwire.KindPolicyFragment:
		set(b.frags, k, parseFragment(e), false, u)
	case configwire.KindProductAPI:
		product := strings.ToLower(strings.TrimPrefix(strings.ToLower(e.Parent), "products/"))
		api := strings.ToLower(e.Name)
		setIn(b.productsOf, api, product, true, u)
		setIn(b.apisOf, product, api, true, u)
	case configwire.KindAPI:
		if base, _, ok := splitRevision(strings.ToLower(e.Name)); ok {
			setIn(b.revisions, base, strings.ToLower(e.Name), true, u)
		}
	}
	set(b.ents, k, e, false, u)
	setIn(b.children, childKey(e.Kind, e.Parent), k, true, u)
	return nil
}

func (b *Builder) remove(e configwire.Entity, edit *subEdit, u *undoLog) {
	switch e.Kind {
	case configwire.KindSubscription:
		h, named := b.nameHash.lookup(e.Name)
		if old := edit.names.next.get(h, named); old != nil {
			edit.keys.removeKeys(old)
			edit.names.remove(h, old)
		}
		return
	case configwire.KindUser:
		return
	case configwire.KindProductAPI:
		product := strings.ToLower(strings.TrimPrefix(strings.ToLower(e.Parent), "products/"))
		api := strings.ToLower(e.Name)
		setIn(b.productsOf, api, product, false, u)
		setIn(b.apisOf, product, api, false, u)
	case configwire.KindAPI:
		if base, _, ok := splitRevision(strings.ToLower(e.Name)); ok {
			setIn(b.revisions, base, strings.ToLower(e.Name), false, u)
		}
	}
	k := key(e.Kind, e.Parent, e.Name)
	set(b.ents, k, configwire.Entity{}, true, u)
	set(b.docs, k, nil, true, u)
	set(b.bad, k, nil, true, u)
	set(b.frags, k, pipeline.Fragment{}, true, u)
	setIn(b.children, childKey(e.Kind, e.Parent), k, false, u)
}

// parsePolicy parses a policy entity's document.
func parsePolicy(e configwire.Entity) (*policy.Document, error) {
	var p struct{ Value, Format string }
	if err := json.Unmarshal(e.Properties, &p); err != nil {
		return nil, fmt.Errorf("the policy entity does not decode: %w", err)
	}
	format := policy.Format(strings.ToLower(p.Format))
	if format == "" {
		format = policy.FormatXML
	}
	return policy.Parse(p.Value, format)
}

// parseFragment parses a policy fragment entity; a fragment that does not parse fails the
// pipelines that include it.
func parseFragment(e configwire.Entity) pipeline.Fragment {
	var p struct{ Value, Format string }
	if err := json.Unmarshal(e.Properties, &p); err != nil {
		return pipeline.Fragment{Err: fmt.Errorf("the policy fragment entity does not decode: %w", err)}
	}
	format := policy.Format(strings.ToLower(p.Format))
	if format == "" {
		format = policy.FormatXML
	}
	f, err := policy.ParseFragment(p.Value, format)
	return pipeline.Fragment{Doc: f, Err: err}
}

// fragments returns the policy fragments by lower-cased name.
func (b *Builder) fragments() map[string]pipeline.Fragment {
	out := make(map[string]pipeline.Fragment, len(b.children[childKey(configwire.KindPolicyFragment, "")]))
	for k := range b.children[childKey(configwire.KindPolicyFragment, "")] {
		out[strings.ToLower(b.ents[k].Name)] = b.frags[k]
	}
	return out
}

// newSubscription compiles a subscription. Its scope and state are shared with the others
// that have them.
func (b *Builder) newSubscription(ws configwire.Subscription) (*Subscription, error) {
	if len(ws.KeyHashes) > maxKeys {
		return nil, fmt.Errorf("subscription %s: %d keys, at most %d", ws.Name, len(ws.KeyHashes), maxKeys)
	}
	kind := b.kinds[subKind{ws.Scope, ws.State}]
	if kind == nil {
		// Copies, not slices of larger strings, which would stay alive.
		kind = &subKind{scope: strings.Clone(ws.Scope), state: strings.Clone(ws.State)}
		b.kinds[*kind] = kind
	}
	s := &Subscription{Name: ws.Name, OwnerID: ws.OwnerID, kind: kind}
	if !ws.StartDate.IsZero() {
		s.start = ws.StartDate.Unix()
	}
	for i, k := range ws.KeyHashes {
		if k == [sha256.Size]byte{} {
			return nil, fmt.Errorf("subscription %s: a key hash of zeros", ws.Name)
		}
		s.hashes[i] = k
	}
	return s, nil
}

// putSubscription adds or replaces a subscription.
func (b *Builder) putSubscription(ws configwire.Subscription, edit *subEdit) error {
	s, err := b.newSubscription(ws)
	if err != nil {
		return err
	}
	h, named := b.nameHash.lookup(ws.Name)
	if old := edit.names.put(h, s, named); old != nil {
		edit.keys.removeKeys(old)
	}
	edit.keys.putKeys(s)
	return nil
}

// namedValues returns the named values by lower-cased name and display name, and the values
// of the secret ones, which compile errors must not quote.
func (b *Builder) namedValues() (map[string]string, []string) {
	var ents []configwire.Entity
	for k := range b.children[childKey(configwire.KindNamedValue, "")] {
		ents = append(ents, b.ents[k])
	}
	return b.namedValuesOf(ents)
}

// namedValuesOf is namedValues of the named value entities among ents.
func (b *Builder) namedValuesOf(ents []configwire.Entity) (map[string]string, []string) {
	out := map[string]string{}
	var secrets []string
	for _, e := range ents {
		if e.Kind != configwire.KindNamedValue {
			continue
		}
		var p struct {
			DisplayName string  `json:"displayName"`
			Value       *string `json:"value"`
		}
		_ = json.Unmarshal(e.Properties, &p)
		v := e.SecretValue
		if p.Value != nil {
			v = *p.Value
		}
		out[strings.ToLower(e.Name)] = v
		if p.DisplayName != "" {
			out[strings.ToLower(p.DisplayName)] = v
		}
		if e.Secret {
			secrets = append(secrets, v)
		}
	}
	return out, secrets
}

// compileAPIs sets cfg's APIs: those of prev with the APIs named in only recompiled, or all
// APIs compiled afresh when only is nil (prev is then unused). An API that is gone or no
// longer linked to this gateway is left out. It never fails: what does not compile fails
// closed and is listed in cfg's failures.
func (b *Builder) compileAPIs(cfg *Config, prev *Config, only map[string]bool) {
	env := b.env
	env.NamedValues, env.Secrets = b.namedValues()
	if only == nil {
		cfg.backendEnv = b.compileBackends(cfg, env.NamedValues)
	} else {
		cfg.backends, cfg.backendURLs, cfg.backendEnv = prev.backends, prev.backendURLs, prev.backendEnv
	}
	env.Backends = cfg.backendEnv
	env.Fragments = b.fragments()
	gk := key(configwire.KindPolicy, "", "policy")
	global := scopeDoc{doc: b.docs[gk], err: b.bad[gk]}
	names := map[string]bool{}
	var apis, byName, failed *cowEditor[*API]
	var versioned *cowEditor[versionedRoute]
	if only != nil {
		apis, byName, failed, versioned = prev.apis.edit(), prev.byName.edit(), prev.failed.edit(), prev.versioned.edit()
		for name := range only {
			names[name] = true
			for rev := range b.revisions[name] {
				names[rev] = true // a change to the API reaches its revisions
			}
		}
	} else {
		apis, byName, failed = (*cowMap[*API])(nil).edit(), (*cowMap[*API])(nil).edit(), (*cowMap[*API])(nil).edit()
		versioned = (*cowMap[versionedRoute])(nil).edit()
		for k := range b.children[childKey(configwire.KindAPI, "")] {
			names[strings.ToLower(b.ents[k].Name)] = true
		}
	}
	// Drop every old entry first (under its old routes): an API may have moved or gone, and
	// two APIs may have swapped paths or revisions.
	for name := range names {
		failed.delete(name)
		if old := byName.get(name); old != nil {
			byName.delete(name)
			unroute(old, apis, versioned)
		}
	}
	for name := range names {
		e, ok := b.ents[key(configwire.KindAPI, "", name)]
		if !ok || !b.serves(name) {
			continue
		}
		api := b.compileAPI(e, global, env)
		if len(api.Failures) > 0 {
			failed.set(name, api)
		}
		byName.set(name, api)
		if api.routed {
			route(api, apis, versioned)
		}
	}
	cfg.apis, cfg.byName, cfg.failed, cfg.versioned = apis.done(), byName.done(), failed.done(), versioned.done()
}

// scopeDoc is the policy document of one scope, or why it could not be parsed.
type scopeDoc struct {
	doc *policy.Document
	err error
}

// compileAPI compiles one API. A pipeline that cannot be compiled, because a document in its
// composition does not parse or does not compile, is replaced by one that refuses every
// request (pipeline.Failed), and the API lists the failure; the API's other operations and
// product contexts are unaffected. An API whose properties do not decode comes back with only
// its name and the failure.
func (b *Builder) compileAPI(e configwire.Entity, global scopeDoc, env pipeline.Env) *API {
	var p struct {
		DisplayName                   string   `json:"displayName"`
		Path                          string   `json:"path"`
		Type                          string   `json:"type"`
		ServiceURL                    string   `json:"serviceUrl"`
		Protocols                     []string `json:"protocols"`
		SubscriptionRequired          *bool    `json:"subscriptionRequired"`
		SubscriptionKeyParameterNames struct {
			Header string `json:"header"`
			Query  string `json:"query"`
		} `json:"subscriptionKeyParameterNames"`
		apiWire
	}
	if err := json.Unmarshal(e.Properties, &p); err != nil {
		// Routed by its path if that much decodes, so that requests for it fail closed rather
		// than reach an API whose path is a prefix of it.
		var raw struct {
			Path json.RawMessage `json:"path"`
		}
		var path string
		if json.Unmarshal(e.Properties, &raw) == nil && json.Unmarshal(raw.Path, &path) == nil {
			path = strings.Trim(path, "/")
		}
		base, _, _ := splitRevision(e.Name)
		api := &API{Name: e.Name, APIName: base, Path: path, Revision: "1", Current: true, Failures: []Failure{{API: e.Name, Scope: "api:" + e.Name, Error: "the API's properties do not decode: " + err.Error()}}}
		if path != "" {
			api.setRoute() // else not even its path decoded: there is nothing to route to it
		}
		return api
	}
	base, _, _ := splitRevision(e.Name)
	api := &API{Name: e.Name, APIName: base, DisplayName: p.DisplayName, Path: strings.Trim(p.Path, "/"), Type: p.Type, Protocols: p.Protocols,
		SubscriptionRequired: p.SubscriptionRequired == nil || *p.SubscriptionRequired,
		KeyHeader:            p.SubscriptionKeyParameterNames.Header, KeyQuery: p.SubscriptionKeyParameterNames.Query,
		Products: map[string]*Product{}}
	if api.KeyHeader == "" {
		api.KeyHeader = "Ocp-Apim-Subscription-Key"
	}
	if api.KeyQuery == "" {
		api.KeyQuery = "subscription-key"
	}
	// apiErr fails every pipeline of the API: nothing it would send to the backend is known,
	// or, without its version set, which requests are its.
	apiErr := b.versioning(api, p.apiWire)
	if apiErr != nil {
		// Not routed: at its bare path it would take the requests of another version.
		api.Failures = append(api.Failures, Failure{API: e.Name, Scope: "api:" + e.Name, Error: apiErr.Error()})
	} else {
		api.setRoute()
	}
	if p.ServiceURL != "" && apiErr == nil {
		u, err := url.Parse(p.ServiceURL)
		if err != nil {
			apiErr = fmt.Errorf("serviceUrl: %w", err)
			api.Failures = append(api.Failures, Failure{API: e.Name, Scope: "api:" + e.Name, Error: apiErr.Error()})
		}
		api.ServiceURL = u
		if u != nil {
			api.ServiceURLText = u.String()
		}
	}
	for prod := range b.productsOf[strings.ToLower(base)] {
		pe, ok := b.ents[key(configwire.KindProduct, "", prod)]
		if !ok {
			continue
		}
		var pp struct {
			DisplayName          string `json:"displayName"`
			SubscriptionRequired *bool  `json:"subscriptionRequired"`
		}
		_ = json.Unmarshal(pe.Properties, &pp)
		product := &Product{Name: pe.Name, DisplayName: pp.DisplayName, SubscriptionRequired: pp.SubscriptionRequired == nil || *pp.SubscriptionRequired}
		api.Products[prod] = product
		// Of several open products, the first by name gives the context, so that it does not
		// change from one compilation to the next.
		if !product.SubscriptionRequired && (api.OpenProduct == nil || strings.ToLower(api.OpenProduct.Name) > prod) {
			api.OpenProduct = product
		}
	}
	apiPath := "apis/" + e.Name
	apiDoc := b.scopeDoc(apiPath)
	for k := range b.children[childKey(configwire.KindOperation, apiPath)] {
		oe := b.ents[k]
		var op struct {
			DisplayName string `json:"displayName"`
			Method      string `json:"method"`
			URLTemplate string `json:"urlTemplate"`
		}
		opErr := apiErr
		if err := json.Unmarshal(oe.Properties, &op); err != nil && opErr == nil {
			opErr = fmt.Errorf("the operation's properties do not decode: %w", err)
			api.Failures = append(api.Failures, Failure{API: e.Name, Operation: oe.Name, Scope: "operation:" + e.Name + "/" + oe.Name, Error: opErr.Error()})
		}
		o := &Operation{Name: oe.Name, DisplayName: op.DisplayName, Method: op.Method, URLTemplate: op.URLTemplate,
			template: parseTemplate(op.URLTemplate), pipelines: map[string]*pipeline.Pipeline{}}
		c := composition{b: b, api: api, op: oe.Name, env: env, failed: opErr,
			docs: [4]scopeDoc{global, {}, apiDoc, b.scopeDoc(apiPath + "/operations/" + oe.Name)},
			ids:  pipeline.ScopeIDs{API: e.Name, Operation: e.Name + "/" + oe.Name}}
		base := c.compile(nil)
		o.pipelines[""] = base
		for prod, product := range api.Products {
			if d := b.scopeDoc("products/" + product.Name); d.doc != nil || d.err != nil {
				c.docs[1] = d
				o.pipelines[prod] = c.compile(product)
				continue
			}
			o.pipelines[prod] = base
		}
		api.Operations = append(api.Operations, o)
	}
	// Map order is random; equally specific operations must match the same way every time.
	slices.SortFunc(api.Operations, func(x, y *Operation) int { return cmp.Compare(strings.ToLower(x.Name), strings.ToLower(y.Name)) })
	slices.SortFunc(api.Failures, func(x, y Failure) int {
		return cmp.Or(cmp.Compare(x.Operation, y.Operation), cmp.Compare(x.Product, y.Product), cmp.Compare(x.Scope, y.Scope))
	})
	return api
}

// scopeDoc returns the policy document of the scope at path ("apis/echo", "products/starter").
func (b *Builder) scopeDoc(path string) scopeDoc {
	k := key(configwire.KindPolicy, path, "policy")
	return scopeDoc{doc: b.docs[k], err: b.bad[k]}
}

// composition compiles the effective pipelines of one operation.
type composition struct {
	b      *Builder
	api    *API
	op     string
	env    pipeline.Env
	failed error // set when the operation cannot be served whatever its policies
	docs   [4]scopeDoc
	ids    pipeline.ScopeIDs
}

// compile returns the pipeline of the operation in the context of product (nil = none), or a
// failed one recorded in the API's failures.
func (c *composition) compile(product *Product) *pipeline.Pipeline {
	if c.failed != nil {
		return pipeline.Failed(c.failed, c.env.Log)
	}
	ids := c.ids
	scopes := [4]string{"global", "", "api:" + c.api.Name, "operation:" + c.api.Name + "/" + c.op}
	f := Failure{API: c.api.Name, Operation: c.op}
	if product != nil {
		ids.Product = product.Name
		scopes[1] = "product:" + product.Name
		f.Product = product.Name
	}
	for i, d := range c.docs {
		if d.err != nil && (product != nil || i != 1) {
			f.Scope, f.Error = scopes[i], d.err.Error()
			if se := (*policy.SyntaxError)(nil); errors.As(d.err, &se) {
				f.Policy, f.Line, f.Column = se.Element, se.Line, se.Column
			}
			return c.fail(f, d.err)
		}
	}
	s := pipeline.Scopes{Global: c.docs[0].doc, API: c.docs[2].doc, Operation: c.docs[3].doc, IDs: ids}
	if product != nil {
		s.Product = c.docs[1].doc
	}
	pl, err := pipeline.Compile(s, c.env)
	if err == nil {
		return pl
	}
	f.Error = err.Error()
	if ce := (*pipeline.CompileError)(nil); errors.As(err, &ce) {
		f.Scope, f.Policy, f.Line, f.Column, f.Error = ce.Scope, ce.Policy, ce.Pos.Line, ce.Pos.Column, ce.Err.Error()
	}
	return c.fail(f, err)
}

func (c *composition) fail(f Failure, err error) *pipeline.Pipeline {
	c.api.Failures = append(c.api.Failures, f)
	if c.env.Log != nil {
		c.env.Log.Error("policy does not compile on this node; its requests are refused with 500 until a change fixes it",
			"api", f.API, "operation", f.Operation, "product", f.Product, "scope", f.Scope, "policy", f.Policy,
			"line", f.Line, "column", f.Column, "err", f.Error)
	}
	return pipeline.Failed(err, c.env.Log)
}
