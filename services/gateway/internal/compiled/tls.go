package compiled

import (
	"cmp"
	"crypto/sha1" //nolint:gosec // see loadCertificate
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"gatehouse.dev/pkg/configwire"
)

// Certificate is a certificate of the service as the node holds it: from the snapshot only,
// since its key never travels in a change.
type Certificate struct {
	Name string
	// Chain is the certificate, leaf first, then the issuers the PFX held.
	Chain []*x509.Certificate
	// TLS is the chain with its private key, nil when the PFX had no key (a CA's).
	TLS *tls.Certificate
	// Thumbprint is the SHA-1 of the leaf in upper-case hex, as APIM shows it.
	Thumbprint string
}

// Hostname is one of the gateway's hostname configurations.
type Hostname struct {
	Name string
	// Hostname is lower-cased: a domain name, a wildcard one ("*.example.com",
	// "api-*.example.com"), or "*", the default.
	Hostname string
	// Certificate is served for the hostname; nil when the node could not load it, and then
	// handshakes for the hostname fail.
	Certificate                *Certificate
	NegotiateClientCertificate bool
}

// gatewayTLS is the gateway's TLS settings in one Config. It is immutable.
type gatewayTLS struct {
	certs map[string]*Certificate // by lower-cased name
	exact map[string]*Hostname    // by hostname
	// wild are the wildcard hostnames, most specific (longest) first.
	wild []*Hostname
	def  *Hostname
	// clientCAs are the trusted certificate authorities, nil when there are none.
	clientCAs *x509.CertPool
}

// Certificate returns the certificate id names, by its name or its full ARM id
// (".../certificates/{name}"), or nil when the node holds none of that name: the snapshot
// carries the certificates the gateway's hostnames and certificate authorities and the
// service's backends use.
func (c *Config) Certificate(id string) *Certificate {
	if c.tls == nil {
		return nil
	}
	if i := strings.LastIndex(strings.ToLower(id), "/certificates/"); i >= 0 {
		id = id[i+len("/certificates/"):]
	}
	return c.tls.certs[strings.ToLower(id)]
}

// Hostname returns the hostname configuration serving serverName (a TLS client's SNI): the
// one naming it exactly, else the most specific wildcard matching it, else the default "*";
// nil when none does.
func (c *Config) Hostname(serverName string) *Hostname {
	if c.tls == nil {
		return nil
	}
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if h := c.tls.exact[name]; h != nil {
		return h
	}
	for _, h := range c.tls.wild {
		if wildcardMatch(h.Hostname, name) {
			return h
		}
	}
	return c.tls.def
}

// ClientCAs returns the trusted certificate authorities client certificates are verified
// against, nil when the gateway trusts none. An untrusted one (isTrusted false) is not used:
// a client sends its intermediates itself.
func (c *Config) ClientCAs() *x509.CertPool {
	if c.tls == nil {
		return nil
	}
	return c.tls.clientCAs
}

// wildcardMatch reports whether name matches pattern, whose first label holds one '*'
// standing for one or more characters of a single label; the other labels compare equal.
func wildcardMatch(pattern, name string) bool {
	pl, prest, _ := strings.Cut(pattern, ".")
	nl, nrest, ok := strings.Cut(name, ".")
	if !ok || prest != nrest {
		return false
	}
	before, after, _ := strings.Cut(pl, "*")
	return len(nl) > len(before)+len(after) && strings.HasPrefix(nl, before) && strings.HasSuffix(nl, after)
}

// buildTLS compiles the gateway's hostname configurations and certificate authorities from
// the entities. A certificate that does not load is logged (without its content) and left
// out, so its hostname fails handshakes rather than serve another certificate.
func (b *Builder) buildTLS(log *slog.Logger) *gatewayTLS {
	t := &gatewayTLS{certs: map[string]*Certificate{}, exact: map[string]*Hostname{}}
	for k := range b.children[childKey(configwire.KindCertificate, "")] {
		e := b.ents[k]
		c, err := loadCertificate(e)
		if err != nil {
			if log != nil {
				log.Error("certificate from management does not load; its hostnames fail TLS handshakes", "certificate", e.Name, "err", err)
			}
			continue
		}
		t.certs[strings.ToLower(e.Name)] = c
	}
	gw := "gateways/" + b.gateway
	for k := range b.children[childKey(configwire.KindGatewayHostname, gw)] {
		var p struct {
			Hostname                   string `json:"hostname"`
			CertificateID              string `json:"certificateId"`
			NegotiateClientCertificate bool   `json:"negotiateClientCertificate"`
		}
		e := b.ents[k]
		_ = json.Unmarshal(e.Properties, &p)
		h := &Hostname{Name: e.Name, Hostname: strings.ToLower(p.Hostname), NegotiateClientCertificate: p.NegotiateClientCertificate}
		h.Certificate = (&Config{tls: t}).Certificate(p.CertificateID)
		switch {
		case h.Hostname == "*":
			t.def = h
		case strings.Contains(h.Hostname, "*"):
			t.wild = append(t.wild, h)
		default:
			t.exact[h.Hostname] = h
		}
	}
	slices.SortFunc(t.wild, func(x, y *Hostname) int {
		return cmp.Or(cmp.Compare(len(y.Hostname), len(x.Hostname)), cmp.Compare(x.Hostname, y.Hostname))
	})
	for k := range b.children[childKey(configwire.KindGatewayCA, gw)] {
		e := b.ents[k]
		var p struct {
			IsTrusted bool `json:"isTrusted"`
		}
		_ = json.Unmarshal(e.Properties, &p)
		c := t.certs[strings.ToLower(e.Name)]
		if c == nil || !p.IsTrusted {
			continue
		}
		if t.clientCAs == nil {
			t.clientCAs = x509.NewCertPool()
		}
		t.clientCAs.AddCert(c.Chain[0])
	}
	return t
}

// loadCertificate reads a certificate entity's chain and key (PEM in SecretValue).
func loadCertificate(e configwire.Entity) (*Certificate, error) {
	c := &Certificate{Name: e.Name}
	var hasKey bool
	for rest := []byte(e.SecretValue); ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			x, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d of the chain: %w", len(c.Chain)+1, err)
			}
			c.Chain = append(c.Chain, x)
		case "PRIVATE KEY":
			hasKey = true
		}
	}
	if len(c.Chain) == 0 {
		return nil, fmt.Errorf("no certificate in the snapshot's entity")
	}
	sum := sha1.Sum(c.Chain[0].Raw) //nolint:gosec // APIM's thumbprint is an identifier, not a signature
	c.Thumbprint = strings.ToUpper(hex.EncodeToString(sum[:]))
	if hasKey {
		pair, err := tls.X509KeyPair([]byte(e.SecretValue), []byte(e.SecretValue))
		if err != nil {
			return nil, fmt.Errorf("the key pair: %w", err)
		}
		c.TLS = &pair
	}
	return c, nil
}

// tlsChange reports whether e, a certificate, hostname configuration or certificate authority
// from a change, touches this gateway's TLS settings, which only a snapshot can update (a
// certificate's key travels in snapshots only).
func (b *Builder) tlsChange(e configwire.Entity) bool {
	if e.Kind == configwire.KindCertificate {
		_, held := b.ents[key(e.Kind, e.Parent, e.Name)]
		return held
	}
	return strings.EqualFold(e.Parent, "gateways/"+b.gateway)
}
