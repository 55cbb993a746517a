package catalog

import (
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // APIM's thumbprint is the SHA-1 of the certificate, an identifier, not a signature
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// CertificateProperties are the stored ARM properties of a certificate: what the uploaded
// PFX says of its certificate. The PFX itself and its password are never stored: the
// certificate chain and private key live sealed in the resource's secrets (secretCertificate)
// and leave only in gateway snapshots.
type CertificateProperties struct {
	Subject        string `json:"subject"`
	Thumbprint     string `json:"thumbprint"`
	ExpirationDate string `json:"expirationDate"`
}

// certificateInput is the body of a certificate PUT.
type certificateInput struct {
	Data     *string         `json:"data"`
	Password *string         `json:"password"`
	KeyVault json.RawMessage `json:"keyVault"`
}

// secretCertificate names the sealed secret holding a certificate's chain, leaf first, and
// its private key (if the PFX had one), in PEM.
const secretCertificate = "pem"

// maxPFXBytes bounds a decoded PFX: a leaf, a few intermediates and a key fit in a few KiB.
const maxPFXBytes = 64 << 10

var certificateBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p certificateInput
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if len(p.KeyVault) > 0 && string(p.KeyVault) != "null" {
			return invalid("properties.keyVault", "Key Vault certificates are not supported: upload the PFX as data")
		}
		if p.Data == nil || *p.Data == "" {
			return invalid("properties.data", "data is required: the certificate as a Base64-encoded PFX (PKCS#12) file")
		}
		password := ""
		if p.Password != nil {
			password = *p.Password
		}
		props, sealed, err := parsePFX(*p.Data, password)
		if err != nil {
			return err
		}
		if old != nil {
			if err := w.checkCertificateReplace(ctx, r.Name, old, props, strings.Contains(sealed, "PRIVATE KEY-----")); err != nil {
				return err
			}
		}
		r.Properties = mustJSON(props)
		r.Secrets = map[string]string{secretCertificate: sealed}
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		users, err := w.certificateUsers(ctx, r.Name)
		if err != nil {
			return err
		}
		var cp CertificateProperties
		_ = json.Unmarshal(r.Properties, &cp)
		backends, _, err := w.backendsUsingCertificate(ctx, r.Name, cp.Thumbprint)
		if err != nil {
			return err
		}
		users = append(users, backends...)
		if len(users) > 0 {
			return &ConflictError{Message: fmt.Sprintf("Certificate '%s' is in use by %s; remove them first.", r.Name, strings.Join(users, ", "))}
		}
		return nil
	},
}

// certificateUsers names the hostname configurations and certificate authorities of every
// gateway that use the certificate called name.
func (w *write) certificateUsers(ctx context.Context, name string) ([]string, error) {
	hosts, _, err := w.tx.List(ctx, Query{Kind: KindGatewayHostname, AnyParent: true, All: true, NoSecrets: true,
		PropEquals: map[string]string{"certificateId": w.scopeID(KindCertificate.Segment + "/" + name)}})
	if err != nil {
		return nil, err
	}
	cas, _, err := w.tx.List(ctx, Query{Kind: KindGatewayCA, AnyParent: true, Name: name, All: true, NoSecrets: true})
	if err != nil {
		return nil, err
	}
	var users []string
	for _, h := range hosts {
		users = append(users, "hostname configuration '"+h.Path()+"'")
	}
	for _, ca := range cas {
		users = append(users, "certificate authority '"+ca.Path()+"'")
	}
	return users, nil
}

// parsePFX opens a Base64 PFX with password and returns what the resource shows of it and its
// certificates (leaf first) and private key in PEM. A PFX without a private key (a trust store:
// a CA's certificate) is accepted; its certificate can be a gateway's certificate authority but
// not a hostname's certificate. Errors name the field at fault and never quote it.
func parsePFX(data, password string) (CertificateProperties, string, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data))
	if err != nil {
		return CertificateProperties{}, "", invalid("properties.data", "data is not valid Base64")
	}
	if len(der) > maxPFXBytes {
		return CertificateProperties{}, "", invalid("properties.data", "data is larger than %d bytes", maxPFXBytes)
	}
	key, leaf, chain, err := pkcs12.DecodeChain(der, password)
	if err != nil && !errors.Is(err, pkcs12.ErrIncorrectPassword) {
		// No key bag: perhaps a trust store holding only certificates.
		if certs, terr := pkcs12.DecodeTrustStore(der, password); terr == nil && len(certs) > 0 {
			key, leaf, chain, err = nil, certs[0], certs[1:], nil
		}
	}
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return CertificateProperties{}, "", invalid("properties.password", "the password does not open the PFX in data")
	case err != nil:
		return CertificateProperties{}, "", invalid("properties.data", "data is not a PFX (PKCS#12) file Gatehouse can read: %s", pfxProblem(err))
	}
	var out bytes.Buffer
	for _, c := range append([]*x509.Certificate{leaf}, chain...) {
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}) // writes to a bytes.Buffer never fail
	}
	if key != nil {
		k, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return CertificateProperties{}, "", invalid("properties.data", "the PFX's private key is of a type Gatehouse cannot use (RSA, ECDSA and Ed25519 are)")
		}
		_ = pem.Encode(&out, &pem.Block{Type: "PRIVATE KEY", Bytes: k})
	}
	sum := sha1.Sum(leaf.Raw) //nolint:gosec // see the import
	return CertificateProperties{Subject: leaf.Subject.String(), Thumbprint: strings.ToUpper(hex.EncodeToString(sum[:])),
		ExpirationDate: leaf.NotAfter.UTC().Format(time.RFC3339)}, out.String(), nil
}

// pfxProblem is the library's reason a PFX did not decode, which names a structure or an
// algorithm, never the data.
func pfxProblem(err error) string {
	var nse pkcs12.NotImplementedError
	if errors.As(err, &nse) {
		return "it uses an algorithm that is not supported (" + nse.Error() + ")"
	}
	return "it is malformed"
}

// certificateHasKey reports whether a certificate resource (read with its secrets) holds a
// private key, which serving it on a hostname needs.
func certificateHasKey(r Resource) bool {
	return strings.Contains(r.Secrets[secretCertificate], "PRIVATE KEY-----")
}

// RefreshCertificateSecret answers refreshSecret: it refreshes a Key Vault certificate in APIM,
// and Gatehouse has none, so an existing certificate answers a ValidationError.
func (c *Catalog) RefreshCertificateSecret(ctx context.Context, ref ServiceRef, name string) error {
	if _, err := c.Get(ctx, ref, KindCertificate, "", name); err != nil {
		return err
	}
	return invalid("certificateId", "refreshSecret refreshes a Key Vault certificate, and Key Vault certificates are not supported: upload the PFX as data")
}
