package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
)

// HostnameProperties are the ARM properties of a gateway's hostname configuration: a host
// name its nodes serve TLS on, with which certificate and whether they ask for a client's.
type HostnameProperties struct {
	// Hostname is a domain name, a wildcard one ("*.example.com", or partial: "api-*.example.com"),
	// or "*", the default for server names no other configuration matches.
	Hostname string `json:"hostname"`
	// CertificateID is the full ARM id of a certificate of the service.
	CertificateID              string `json:"certificateId"`
	NegotiateClientCertificate bool   `json:"negotiateClientCertificate"`
	TLS10Enabled               bool   `json:"tls10Enabled"`
	TLS11Enabled               bool   `json:"tls11Enabled"`
	HTTP2Enabled               bool   `json:"http2Enabled"`
}

// GatewayCAProperties are the ARM properties of a gateway's certificate authority.
type GatewayCAProperties struct {
	// IsTrusted makes the certificate a root that client certificates are verified against;
	// an untrusted one is an intermediate a client's chain may pass through.
	IsTrusted bool `json:"isTrusted"`
}

// hostLabel is one label of a domain name; wildLabel is a first label that holds one '*'
// standing for any non-empty run of characters of a label.
var (
	hostLabel = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
	wildLabel = regexp.MustCompile(`^[a-z0-9-]{0,62}\*[a-z0-9-]{0,62}$`)
)

// validHostname reports whether h (lower-cased) is "*", a domain name, or a domain name whose
// first label has one wildcard.
func validHostname(h string) bool {
	if h == "*" {
		return true
	}
	labels := strings.Split(h, ".")
	if len(h) > 253 || len(labels) < 2 {
		return false
	}
	for i, l := range labels {
		if !hostLabel.MatchString(l) && (i > 0 || len(l) > 63 || !wildLabel.MatchString(l)) {
			return false
		}
	}
	return true
}

var hostnameBehaviour = behaviour{
	parentKind: parentOf(KindGateway),
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p HostnameProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		p.Hostname = strings.ToLower(strings.TrimSpace(p.Hostname))
		switch {
		case !validHostname(p.Hostname):
			return invalid("properties.hostname", "hostname is required: a domain name, a wildcard domain name (*.example.com, api-*.example.com) or * for the default")
		case p.TLS10Enabled:
			return invalid("properties.tls10Enabled", "TLS 1.0 is not supported: gateway nodes serve TLS 1.2 and 1.3 only; set tls10Enabled to false")
		case p.TLS11Enabled:
			return invalid("properties.tls11Enabled", "TLS 1.1 is not supported: gateway nodes serve TLS 1.2 and 1.3 only; set tls11Enabled to false")
		case p.HTTP2Enabled:
			return invalid("properties.http2Enabled", "HTTP/2 is not supported: gateway nodes serve HTTP/1.1, which WebSocket upgrades use; set http2Enabled to false")
		}
		if err := w.uniqueHostname(ctx, r, p.Hostname); err != nil {
			return err
		}
		id, err := w.hostnameCertificate(ctx, p.CertificateID)
		if err != nil {
			return err
		}
		p.CertificateID = id
		r.Properties = mustJSON(p)
		return nil
	},
}

// uniqueHostname refuses a hostname that another configuration of the gateway already has.
func (w *write) uniqueHostname(ctx context.Context, r *Resource, hostname string) error {
	same, _, err := w.tx.List(ctx, Query{Kind: KindGatewayHostname, Parent: r.Parent, All: true, NoSecrets: true,
		PropEquals: map[string]string{"hostname": hostname}})
	if err != nil {
		return err
	}
	for _, o := range same {
		if !strings.EqualFold(o.Name, r.Name) {
			return invalid("properties.hostname", "hostname '%s' is already configured by '%s' on this gateway", hostname, o.Name)
		}
	}
	return nil
}

// hostnameCertificate checks that id is the full ARM id of a certificate of the service with
// a private key, and returns it as stored.
func (w *write) hostnameCertificate(ctx context.Context, id string) (string, error) {
	rel, ok := w.relativePath(id)
	seg, name, _ := strings.Cut(rel, "/")
	if !ok || seg != KindCertificate.Segment || name == "" || strings.Contains(name, "/") {
		return "", invalid("properties.certificateId", "certificateId is required: the ARM id of a certificate of this service (%s/certificates/{certificateId})", ServiceID(w.svc.Ref))
	}
	cert, err := w.tx.Get(ctx, KindCertificate, "", name)
	if errors.Is(err, ErrNotFound) {
		return "", invalid("properties.certificateId", "Certificate '%s' does not exist", name)
	}
	if err != nil {
		return "", err
	}
	if !certificateHasKey(cert) {
		return "", invalid("properties.certificateId", "Certificate '%s' has no private key: a hostname needs a PFX with the certificate's key", cert.Name)
	}
	return w.scopeID(KindCertificate.Segment + "/" + cert.Name), nil
}

var gatewayCABehaviour = behaviour{
	parentKind: parentOf(KindGateway),
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p GatewayCAProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		cert, err := w.tx.Get(ctx, KindCertificate, "", r.Name)
		if errors.Is(err, ErrNotFound) {
			return invalid("certificateId", "Certificate '%s' does not exist: upload it to certificates first", r.Name)
		}
		if err != nil {
			return err
		}
		r.Name = cert.Name
		r.Properties = mustJSON(p)
		return nil
	},
}
