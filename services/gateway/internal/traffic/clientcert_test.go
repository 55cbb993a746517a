package traffic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/compiled"
)

// issue returns a certificate for commonName signed by issuer (self-signed CA when nil).
func issue(t *testing.T, commonName string, issuer *tls.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: commonName},
		DNSNames: []string{commonName}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	parent, signer := tmpl, any(key)
	if issuer == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, tmpl.KeyUsage|x509.KeyUsageCertSign
	} else {
		parent, signer = issuer.Leaf, issuer.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestClientCertificateChoice dials a TLS server that accepts client certificates of one CA
// only, through the configuration of a backend presenting one certificate of another CA and
// one of that CA: the accepted one is presented. A backend whose certificates the server
// accepts none of presents its first.
func TestClientCertificateChoice(t *testing.T) {
	t.Parallel()
	caA, caB := issue(t, "ca-a", nil), issue(t, "ca-b", nil)
	fromA, fromB := issue(t, "client-a", &caA), issue(t, "client-b", &caB)
	server := issue(t, "backend.test", &caA)
	roots := x509.NewCertPool()
	roots.AddCert(caA.Leaf)
	v := newBackendTLS(&tls.Config{RootCAs: roots}, func(*tls.Config) http.RoundTripper { return http.DefaultTransport })

	for _, tc := range []struct {
		name    string
		present []tls.Certificate
		want    string
	}{
		{"the accepted one", []tls.Certificate{fromA, fromB}, "client-b"},
		{"the first when none is accepted", []tls.Certificate{fromA}, "client-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clientCAs := x509.NewCertPool()
			clientCAs.AddCert(caB.Leaf)
			conf := v.For(target{be: &compiled.Backend{Name: "b", ClientCertificates: tc.present}}).conf.Clone()
			conf.ServerName = "backend.test"
			got := make(chan string, 1)
			cc, sc := net.Pipe()
			go func() {
				s := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequestClientCert, ClientCAs: clientCAs})
				defer s.Close()
				if err := s.Handshake(); err != nil || len(s.ConnectionState().PeerCertificates) == 0 {
					got <- ""
					return
				}
				got <- s.ConnectionState().PeerCertificates[0].Subject.CommonName
			}()
			c := tls.Client(cc, conf)
			defer c.Close()
			if err := c.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if cn := <-got; cn != tc.want {
				t.Errorf("the backend got %q, want %q", cn, tc.want)
			}
		})
	}

	same := v.For(target{be: &compiled.Backend{Name: "x", ClientCertificates: []tls.Certificate{fromA}}})
	if again := v.For(target{be: &compiled.Backend{Name: "y", ClientCertificates: []tls.Certificate{fromA}}}); again != same {
		t.Error("two backends presenting the same certificate got two configurations")
	}
	if rotated := v.For(target{be: &compiled.Backend{Name: "x", ClientCertificates: []tls.Certificate{fromB}}}); rotated == same {
		t.Error("a rotated certificate kept the configuration of the old one")
	}
	if plain := v.For(target{be: &compiled.Backend{Name: "p"}}); plain.conf.GetClientCertificate != nil {
		t.Error("a backend without certificates presents one")
	}
}
