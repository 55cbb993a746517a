package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"gatehouse.dev/pkg/backend"
)

// Backend client certificates (docs/backends.md): a backend's credentials.certificateIds name
// certificates of the service, by name or ARM id, or, when there are none, its
// credentials.certificate lists their thumbprints. Either way each must be a certificate with
// a private key, which nodes present when a wss or https backend asks for a client
// certificate. The certificates travel to every gateway's nodes in snapshots, since backends
// are service-wide.

// checkClientCertificates refuses client certificate references that name no certificate of
// the service with a private key. Thumbprints are not checked when certificateIds are given:
// APIM ignores them then.
func (w *write) checkClientCertificates(ctx context.Context, c *backend.Credentials) error {
	refs, byThumbprint := c.ClientCertificates()
	for i, ref := range refs {
		var err error
		if byThumbprint {
			err = w.checkThumbprint(ctx, fmt.Sprintf("properties.credentials.certificate[%d]", i), ref)
		} else {
			err = w.checkCertificateID(ctx, fmt.Sprintf("properties.credentials.certificateIds[%d]", i), ref)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkCertificateID checks that id, a certificateIds entry, is the name or the ARM id of a
// certificate of this service that has a private key.
func (w *write) checkCertificateID(ctx context.Context, field, id string) error {
	name := id
	if strings.HasPrefix(id, "/") {
		rel, ok := w.relativePath(id)
		seg, rest, _ := strings.Cut(rel, "/")
		if !ok || seg != KindCertificate.Segment {
			return invalid(field, "'%s' is not a certificate of this service: give its name or %s/certificates/{certificateId}", id, ServiceID(w.svc.Ref))
		}
		name = rest
	}
	if name == "" || strings.Contains(name, "/") {
		return invalid(field, "'%s' is not a certificate name or ARM id", id)
	}
	cert, err := w.tx.Get(ctx, KindCertificate, "", name)
	if errors.Is(err, ErrNotFound) {
		return invalid(field, "Certificate '%s' does not exist", name)
	} else if err != nil {
		return err
	}
	if !certificateHasKey(cert) {
		return invalid(field, "Certificate '%s' has no private key: a client certificate needs a PFX with the certificate's key", cert.Name)
	}
	return nil
}

// checkThumbprint checks that a certificate of this service with a private key has the
// thumbprint t.
func (w *write) checkThumbprint(ctx context.Context, field, t string) error {
	certs, _, err := w.tx.List(ctx, Query{Kind: KindCertificate, PropEquals: map[string]string{"thumbprint": t}, All: true})
	if err != nil {
		return err
	}
	if len(certs) == 0 {
		return invalid(field, "no certificate of this service has the thumbprint '%s'", t)
	}
	for _, c := range certs {
		if certificateHasKey(c) {
			return nil
		}
	}
	return invalid(field, "Certificate '%s' has no private key: a client certificate needs a PFX with the certificate's key", certs[0].Name)
}

// backendCertificateRefs lists the certificates backends present: the names their
// certificateIds give and the thumbprints of those that give none.
func backendCertificateRefs(backends []Resource) (names, thumbprints []string) {
	for _, r := range backends {
		p, _ := backend.Decode(r.Properties)
		refs, byThumbprint := p.Credentials.ClientCertificates()
		for _, ref := range refs {
			if byThumbprint {
				thumbprints = append(thumbprints, strings.ToUpper(ref))
			} else {
				names = append(names, backend.CertificateName(ref))
			}
		}
	}
	return dedupeFold(names), dedupeFold(thumbprints)
}

// backendsUsingCertificate names the backends that present the certificate called name,
// whose thumbprint is thumbprint; byThumbprint lists those that name it by its thumbprint.
func (w *write) backendsUsingCertificate(ctx context.Context, name, thumbprint string) (users, byThumbprint []string, err error) {
	all, _, err := w.tx.List(ctx, Query{Kind: KindBackend, All: true})
	if err != nil {
		return nil, nil, err
	}
	for _, r := range all {
		names, thumbs := backendCertificateRefs([]Resource{r})
		switch {
		case containsFold(names, name):
			users = append(users, "backend '"+r.Name+"'")
		case containsFold(thumbs, thumbprint):
			users = append(users, "backend '"+r.Name+"'")
			byThumbprint = append(byThumbprint, r.Name)
		}
	}
	return users, byThumbprint, nil
}

// checkCertificateReplace refuses replacing the certificate called name (old) with one
// (props, hasKey) that a backend presenting it could no longer use: one without a private
// key, or one of another thumbprint when a backend names it by its thumbprint.
func (w *write) checkCertificateReplace(ctx context.Context, name string, old *Resource, props CertificateProperties, hasKey bool) error {
	var was CertificateProperties
	_ = json.Unmarshal(old.Properties, &was)
	users, byThumbprint, err := w.backendsUsingCertificate(ctx, name, was.Thumbprint)
	if err != nil {
		return err
	}
	switch {
	case len(users) > 0 && !hasKey:
		return invalid("properties.data", "Certificate '%s' is a client certificate of %s: the PFX must hold the certificate's private key", name, strings.Join(users, ", "))
	case len(byThumbprint) > 0 && !strings.EqualFold(was.Thumbprint, props.Thumbprint):
		return invalid("properties.data", "the backends %s name Certificate '%s' by its thumbprint, which this PFX changes: name it in their credentials.certificateIds first",
			strings.Join(byThumbprint, ", "), name)
	}
	return nil
}

// containsFold reports whether list holds s, case-insensitively.
func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
