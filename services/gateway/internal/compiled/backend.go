package compiled

import (
	"cmp"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"gatehouse.dev/pkg/backend"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/policy"
)

// Backend is a compiled backend entity (docs/backends.md): a Single backend with its URL,
// credentials, TLS checks and circuit-breaker rule, or a Pool of Single backends.
type Backend struct {
	// Name is the entity's name as written; configuration lookups are case-insensitive.
	Name string
	// URL is a Single backend's base URL; nil for a Pool.
	URL *url.URL
	// Header and Query are the credentials added to every call, named values resolved; the
	// Authorization credential is in Header.
	Header http.Header
	Query  url.Values
	// SkipChain and SkipName turn off the certificate checks of a wss or https backend
	// (tls.validateCertificateChain and validateCertificateName false).
	SkipChain, SkipName bool
	// Breaker is the circuit-breaker rule; nil for none.
	Breaker *backend.Breaker
	// ClientCertificates are presented to a wss or https backend that asks for a client
	// certificate: the certificates its credentials name, in their order, from the snapshot.
	ClientCertificates []tls.Certificate
	// Members are a Pool's backends, by ascending priority (a smaller number first).
	Members []Member
	// Failure says why the backend could not be compiled (a named value missing on this
	// node); calls to it fail closed with 500.
	Failure error
}

// Member is one backend of a pool.
type Member struct {
	Backend  *Backend
	Priority int
	// Weight shares the calls within a priority group; 0 means an equal share (1).
	Weight int
}

// Backend returns the backend named name (case-insensitively), or nil.
func (c *Config) Backend(name string) *Backend { return c.backends[strings.ToLower(name)] }

// BackendAt returns the Single backend whose URL is exactly u, or nil: APIM uses a backend
// entity for a call to its URL even without backend-id.
func (c *Config) BackendAt(u *url.URL) *Backend {
	if u == nil || len(c.backendURLs) == 0 {
		return nil
	}
	return c.backendURLs[u.String()]
}

// backendEntities returns the backend entities.
func (b *Builder) backendEntities() []configwire.Entity {
	var ents []configwire.Entity
	for k := range b.children[childKey(configwire.KindBackend, "")] {
		ents = append(ents, b.ents[k])
	}
	return ents
}

// compileBackends compiles every backend entity with the named values nv and sets cfg's
// backends. It returns the map pipeline.Env.Backends wants: lower-cased names to URLs ("" for
// a pool).
func (b *Builder) compileBackends(cfg *Config, nv map[string]string) map[string]string {
	ents := b.backendEntities()
	cfg.backends = make(map[string]*Backend, len(ents))
	cfg.backendURLs = map[string]*Backend{}
	env := make(map[string]string, len(ents))
	props := map[string]backend.Properties{}
	for _, e := range ents {
		p, err := backend.Decode(e.Properties)
		be := &Backend{Name: e.Name, Failure: err}
		if err == nil {
			be.Failure = compileSingle(be, p, nv)
		}
		if be.Failure == nil {
			be.ClientCertificates, be.Failure = cfg.clientCertificates(p.Credentials)
		}
		name := strings.ToLower(e.Name)
		cfg.backends[name], props[name] = be, p
		env[name] = ""
		if be.URL != nil {
			env[name] = be.URL.String()
			cfg.backendURLs[be.URL.String()] = be
		}
	}
	for name, p := range props {
		if p.Type == backend.TypePool && cfg.backends[name].Failure == nil {
			cfg.backends[name].Members, cfg.backends[name].Failure = poolMembers(cfg, p.Pool)
		}
	}
	return env
}

// compileSingle fills be from a Single backend's properties p (a Pool's are filled later),
// resolving named values in its credentials from nv.
func compileSingle(be *Backend, p backend.Properties, nv map[string]string) error {
	if p.Type == backend.TypePool {
		return nil
	}
	if p.URL == nil {
		return fmt.Errorf("backend %s has no url", be.Name)
	}
	u, err := backend.ParseURL(*p.URL)
	if err != nil {
		return fmt.Errorf("backend %s: %w", be.Name, err)
	}
	be.URL = u
	if p.TLS != nil {
		be.SkipChain = p.TLS.ValidateCertificateChain != nil && !*p.TLS.ValidateCertificateChain
		be.SkipName = p.TLS.ValidateCertificateName != nil && !*p.TLS.ValidateCertificateName
	}
	if p.CircuitBreaker != nil {
		if be.Breaker, err = p.CircuitBreaker.Compile(); err != nil {
			return fmt.Errorf("backend %s: %w", be.Name, err)
		}
	}
	return compileCredentials(be, p.Credentials, nv)
}

// compileCredentials resolves the credentials' named values into be's Header and Query.
func compileCredentials(be *Backend, c *backend.Credentials, nv map[string]string) error {
	if c == nil {
		return nil
	}
	var missing []string
	resolve := func(v string) string {
		return policy.ReplaceNamedValues(v, func(name string) string {
			val, ok := nv[strings.ToLower(name)]
			if !ok {
				missing = append(missing, name)
			}
			return val
		})
	}
	be.Header, be.Query = http.Header{}, url.Values{}
	for k, vs := range c.Header {
		for _, v := range vs {
			be.Header.Add(k, resolve(v))
		}
	}
	for k, vs := range c.Query {
		for _, v := range vs {
			be.Query.Add(k, resolve(v))
		}
	}
	if a := c.Authorization; a != nil {
		be.Header.Set("Authorization", resolve(a.Scheme)+" "+resolve(a.Parameter))
	}
	if len(missing) > 0 {
		return fmt.Errorf("backend %s: the credentials reference the named value '%s', which this node does not have", be.Name, strings.Join(missing, "', '"))
	}
	return nil
}

// poolMembers resolves a pool's members and sorts them by priority.
func poolMembers(cfg *Config, pool *backend.Pool) ([]Member, error) {
	if pool == nil {
		return nil, fmt.Errorf("a pool without members")
	}
	var out []Member
	for _, s := range pool.Services {
		name, _ := backend.MemberName(s.ID)
		be := cfg.Backend(name)
		if be == nil || be.URL == nil {
			return nil, fmt.Errorf("the pool member '%s' is not a Single backend on this node", s.ID)
		}
		m := Member{Backend: be, Weight: 1}
		if s.Priority != nil {
			m.Priority = *s.Priority
		}
		if s.Weight != nil && *s.Weight > 0 {
			m.Weight = *s.Weight
		}
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(x, y Member) int { return cmp.Compare(x.Priority, y.Priority) })
	return out, nil
}

// clientCertificates returns the client certificates credentials name, by certificateIds or
// else by thumbprint, from the certificates of the snapshot; an error when one is missing or
// has no private key, so the backend fails closed rather than connect without it.
func (c *Config) clientCertificates(cred *backend.Credentials) ([]tls.Certificate, error) {
	refs, byThumbprint := cred.ClientCertificates()
	out := make([]tls.Certificate, 0, len(refs))
	for _, ref := range refs {
		var cert *Certificate
		if byThumbprint {
			cert = c.certificateByThumbprint(ref)
		} else {
			cert = c.Certificate(ref)
		}
		if cert == nil || cert.TLS == nil {
			return nil, fmt.Errorf("the client certificate '%s' is not on this node with its private key", ref)
		}
		out = append(out, *cert.TLS)
	}
	return out, nil
}

// certificateByThumbprint returns a certificate with a private key whose SHA-1 thumbprint is t
// (hex, any case), or nil.
func (c *Config) certificateByThumbprint(t string) *Certificate {
	if c.tls == nil {
		return nil
	}
	for _, cert := range c.tls.certs {
		if cert.TLS != nil && strings.EqualFold(cert.Thumbprint, t) {
			return cert
		}
	}
	return nil
}

// certificatesHeld reports whether the Builder holds every certificate the backend entity e
// presents, which a change cannot bring (their keys travel in snapshots only).
func (b *Builder) certificatesHeld(e configwire.Entity) bool {
	p, err := backend.Decode(e.Properties)
	if err != nil {
		return true // it fails to compile whatever the node holds
	}
	refs, byThumbprint := p.Credentials.ClientCertificates()
	for _, ref := range refs {
		if !byThumbprint {
			if _, ok := b.ents[key(configwire.KindCertificate, "", backend.CertificateName(ref))]; !ok {
				return false
			}
			continue
		}
		if !b.holdsThumbprint(ref) {
			return false
		}
	}
	return true
}

// holdsThumbprint reports whether the Builder holds a certificate entity of thumbprint t.
func (b *Builder) holdsThumbprint(t string) bool {
	for k := range b.children[childKey(configwire.KindCertificate, "")] {
		var p struct {
			Thumbprint string `json:"thumbprint"`
		}
		_ = json.Unmarshal(b.ents[k].Properties, &p)
		if strings.EqualFold(p.Thumbprint, t) {
			return true
		}
	}
	return false
}
