package mgmttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Cert is a certificate made for a test, with its key: a CA when it has no issuer.
type Cert struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Chain is the certificate followed by its issuers up to the root.
	Chain []*x509.Certificate
}

// NewCert makes a certificate for commonName valid for hosts (DNS names or IP addresses),
// signed by issuer, or a self-signed CA when issuer is nil. It lasts a day.
func NewCert(t testing.TB, commonName string, hosts []string, issuer *Cert) *Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: commonName, Organization: []string{"Gatehouse tests"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	parent, signer := tmpl, key
	if issuer == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cert{Cert: cert, Key: key, Chain: []*x509.Certificate{cert}}
	if issuer != nil {
		c.Chain = append(c.Chain, issuer.Chain...)
	}
	return c
}

// PFX is the certificate, its issuers and its key as a Base64 PFX protected by password, with
// AES-256 and PBKDF2 as openssl 3 writes by default.
func (c *Cert) PFX(t testing.TB, password string) string {
	t.Helper()
	der, err := pkcs12.Modern.Encode(c.Key, c.Cert, c.Chain[1:], password)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TLS is the certificate as a client or server presents it.
func (c *Cert) TLS() tls.Certificate {
	out := tls.Certificate{PrivateKey: c.Key, Leaf: c.Cert}
	for _, x := range c.Chain {
		out.Certificate = append(out.Certificate, x.Raw)
	}
	return out
}
