package compiled

import (
	"crypto/sha1" //nolint:gosec // APIM's thumbprint
	"encoding/hex"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"gatehouse.dev/pkg/configwire"
)

// thumbprinted is a certificate entity with the thumbprint property management gives it.
func thumbprinted(t *testing.T, name string) (configwire.Entity, string) {
	t.Helper()
	e := certEntity(t, name, name)
	block, _ := pem.Decode([]byte(e.SecretValue))
	sum := sha1.Sum(block.Bytes) //nolint:gosec // APIM's thumbprint
	tp := strings.ToUpper(hex.EncodeToString(sum[:]))
	e.Properties = raw(obj{"subject": "CN=" + name, "thumbprint": tp})
	return e, tp
}

// backendWith is a wss backend entity with credentials cred.
func backendWith(name string, cred obj) configwire.Entity {
	return ent(configwire.KindBackend, "", name, obj{"url": "wss://" + name + ".example.com/", "protocol": "http", "type": "Single", "credentials": cred})
}

func TestBackendClientCertificates(t *testing.T) {
	t.Parallel()
	byID, _ := thumbprinted(t, "by-id")
	byThumb, tp := thumbprinted(t, "by-thumb")
	snap := configwire.Snapshot{ServiceID: testServiceID, Gateway: "gw", Revision: 1, Entities: []configwire.Entity{
		{Kind: configwire.KindGateway, Name: "gw", Revision: 1}, byID, byThumb,
		backendWith("ids", obj{"certificateIds": []string{"/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc/certificates/BY-ID", "by-thumb"}}),
		backendWith("thumbs", obj{"certificate": []string{strings.ToLower(tp)}}),
		backendWith("ids-win", obj{"certificateIds": []string{"by-id"}, "certificate": []string{strings.Repeat("0", 40)}}),
		backendWith("plain", nil),
	}}
	b, cfg := load(t, snap)
	leaf := func(be *Backend, i int) string {
		if be == nil || be.Failure != nil || len(be.ClientCertificates) <= i {
			t.Fatalf("backend %+v has no client certificate %d", be, i)
		}
		return be.ClientCertificates[i].Leaf.Subject.CommonName
	}
	if got := []string{leaf(cfg.Backend("ids"), 0), leaf(cfg.Backend("ids"), 1)}; got[0] != "by-id" || got[1] != "by-thumb" || len(cfg.Backend("ids").ClientCertificates) != 2 {
		t.Errorf("ids presents %v, want [by-id by-thumb]", got)
	}
	if got := leaf(cfg.Backend("thumbs"), 0); got != "by-thumb" {
		t.Errorf("thumbs presents %s, want by-thumb", got)
	}
	if got := leaf(cfg.Backend("ids-win"), 0); got != "by-id" || len(cfg.Backend("ids-win").ClientCertificates) != 1 {
		t.Errorf("ids-win presents %s, want only by-id (thumbprints are ignored when ids are given)", got)
	}
	if n := len(cfg.Backend("plain").ClientCertificates); n != 0 {
		t.Errorf("plain presents %d certificates", n)
	}

	// A backend naming a certificate the node holds applies; one it does not hold needs a
	// snapshot, which alone carries keys.
	if _, err := b.Apply(change(2, put(backendWith("later", obj{"certificateIds": []string{"by-thumb"}})))); err != nil {
		t.Fatalf("a backend naming a held certificate: %v", err)
	}
	for _, cred := range []obj{{"certificateIds": []string{"new"}}, {"certificate": []string{strings.Repeat("A", 40)}}} {
		if _, err := b.Apply(change(3, put(backendWith("later", cred)))); !errors.Is(err, ErrResync) {
			t.Errorf("a backend naming %v the node does not hold: %v, want ErrResync", cred, err)
		}
	}
	if _, err := b.Apply(change(3, put(configwire.Entity{Kind: configwire.KindCertificate, Name: "by-id", Secret: true, Revision: 3}))); !errors.Is(err, ErrResync) {
		t.Errorf("a client certificate changed: %v, want ErrResync", err)
	}
}

func TestBackendMissingCertificateFailsClosed(t *testing.T) {
	t.Parallel()
	snap := configwire.Snapshot{ServiceID: testServiceID, Gateway: "gw", Revision: 1, Entities: []configwire.Entity{
		{Kind: configwire.KindGateway, Name: "gw", Revision: 1},
		backendWith("ids", obj{"certificateIds": []string{"ghost"}}),
	}}
	_, cfg := load(t, snap)
	if be := cfg.Backend("ids"); be == nil || be.Failure == nil || !strings.Contains(be.Failure.Error(), "ghost") {
		t.Errorf("a backend without its certificate: %+v, want a failure naming it", be)
	}
}
