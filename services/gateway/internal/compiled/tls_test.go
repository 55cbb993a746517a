package compiled

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

// certEntity is a certificate entity for commonName as a snapshot carries it.
func certEntity(t *testing.T, name, commonName string) configwire.Entity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: commonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}))
	return configwire.Entity{Kind: configwire.KindCertificate, Name: name, Secret: true, SecretValue: pemText, Revision: 1}
}

func hostnameEntity(gateway, name, hostname, cert string) configwire.Entity {
	props, _ := json.Marshal(map[string]any{"hostname": hostname, "certificateId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc/certificates/" + cert})
	return configwire.Entity{Kind: configwire.KindGatewayHostname, Parent: "gateways/" + gateway, Name: name, Properties: props, Revision: 1}
}

func TestHostnameBySNI(t *testing.T) {
	t.Parallel()
	snap := configwire.Snapshot{ServiceID: "svc-1", Gateway: "gw", Revision: 1, Entities: []configwire.Entity{
		{Kind: configwire.KindGateway, Name: "gw", Revision: 1},
		certEntity(t, "exact", "exact"), certEntity(t, "wide", "wide"), certEntity(t, "narrow", "narrow"), certEntity(t, "partial", "partial"),
		certEntity(t, "default", "default"),
		hostnameEntity("gw", "exact", "api.example.com", "exact"),
		hostnameEntity("gw", "wide", "*.example.com", "wide"),
		hostnameEntity("gw", "narrow", "*.eu.example.com", "narrow"),
		hostnameEntity("gw", "partial", "api-*.eu.example.com", "partial"),
		hostnameEntity("gw", "default", "*", "default"),
		hostnameEntity("other", "elsewhere", "elsewhere.example.com", "exact"),
	}}
	b := NewBuilder(pipeline.Env{})
	cfg, err := b.Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ serverName, want string }{
		{"api.example.com", "exact"},
		{"API.Example.com.", "exact"},
		{"www.example.com", "wide"},
		{"x.eu.example.com", "narrow"},
		{"api-1.eu.example.com", "partial"},
		{"api-.eu.example.com", "narrow"}, // the '*' stands for at least one character
		{"a.b.example.com", "default"},    // a wildcard spans one label
		{"example.com", "default"},
		{"elsewhere.example.com", "wide"}, // another gateway's hostname is not this one's
		{"", "default"},
	} {
		h := cfg.Hostname(tc.serverName)
		if h == nil || h.Name != tc.want || h.Certificate == nil || h.Certificate.TLS == nil || h.Certificate.Chain[0].Subject.CommonName != tc.want {
			t.Errorf("Hostname(%q) = %+v, want configuration %s with its certificate", tc.serverName, h, tc.want)
		}
	}
	if c := cfg.Certificate("/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc/certificates/Partial"); c == nil || c.Name != "partial" {
		t.Errorf("Certificate by ARM id = %+v, want partial", c)
	}
	if c := cfg.Certificate("none"); c != nil {
		t.Errorf("Certificate(none) = %+v, want nil", c)
	}

	// A change to a certificate the node holds, or to this gateway's hostnames, needs the
	// snapshot; another gateway's hostnames and certificates it does not hold do not.
	for i, tc := range []struct {
		e      configwire.Entity
		resync bool
	}{
		{hostnameEntity("other", "elsewhere", "x.example.com", "exact"), false},
		{configwire.Entity{Kind: configwire.KindCertificate, Name: "unused", Secret: true}, false},
		{configwire.Entity{Kind: configwire.KindCertificate, Name: "exact", Secret: true}, true},
		{hostnameEntity("gw", "new", "new.example.com", "exact"), true},
		{configwire.Entity{Kind: configwire.KindGatewayCA, Parent: "gateways/gw", Name: "exact"}, true},
	} {
		rev := b.Revision() + 1
		next, err := b.Apply(configwire.Change{ServiceID: "svc-1", Revision: rev, Items: []configwire.Item{{Op: configwire.OpPut, Entity: tc.e}}})
		if got := errors.Is(err, ErrResync); got != tc.resync {
			t.Errorf("change %d (%s %s): resync %v (%v), want %v", i, tc.e.Kind, tc.e.Name, got, err, tc.resync)
		}
		if err == nil && next.Hostname("api.example.com").Name != "exact" {
			t.Errorf("change %d: the TLS settings were lost", i)
		}
	}
}
