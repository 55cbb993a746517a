package api_test

import (
	"crypto/sha1" //nolint:gosec // APIM's thumbprint
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"software.sslmate.com/src/go-pkcs12"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

// thumbprintOf is a certificate's thumbprint as APIM shows it.
func thumbprintOf(c *mgmttest.Cert) string {
	sum := sha1.Sum(c.Cert.Raw) //nolint:gosec // APIM's thumbprint
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// trustStorePFX is c as a Base64 PFX without its private key.
func trustStorePFX(t *testing.T, c *mgmttest.Cert) string {
	t.Helper()
	der, err := pkcs12.Modern.EncodeTrustStore([]*x509.Certificate{c.Cert}, "")
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestBackendClientCertificates covers credentials.certificateIds and credentials.certificate:
// what is refused and why, what is kept as given, what a certificate in use refuses, and that
// every gateway's snapshot carries the certificates with their keys.
func TestBackendClientCertificates(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "backend-certs")
	ca := mgmttest.NewCert(t, "Client CA", nil, nil)
	certs := map[string]*mgmttest.Cert{}
	for _, name := range []string{"client", "second", "thumb", "unused"} {
		certs[name] = mgmttest.NewCert(t, "gatehouse-"+name, nil, ca)
		c.must(http.StatusCreated, http.MethodPut, "/certificates/"+name, map[string]any{"properties": map[string]any{"data": certs[name].PFX(t, "pw"), "password": "pw"}})
	}
	c.must(http.StatusCreated, http.MethodPut, "/certificates/keyless", map[string]any{"properties": map[string]any{"data": trustStorePFX(t, ca), "password": ""}})
	creds := func(cred map[string]any) map[string]any {
		p := single("wss://b.example.com/hub")
		p["credentials"] = cred
		return p
	}
	ids := func(ids ...string) map[string]any { return creds(map[string]any{"certificateIds": ids}) }

	t.Run("refused", func(t *testing.T) {
		many := make([]string, 33)
		for i := range many {
			many[i] = "client"
		}
		other := "/subscriptions/sub-arm/resourceGroups/rg-arm/providers/Microsoft.ApiManagement/service/other/certificates/client"
		for _, tc := range []struct {
			name, target, msg string
			props             map[string]any
		}{
			{"missing", "properties.credentials.certificateIds[0]", "Certificate 'ghost' does not exist", ids("ghost")},
			{"missing by id", "properties.credentials.certificateIds[1]", "Certificate 'ghost' does not exist", ids("client", c.id("/certificates/ghost"))},
			{"without a key", "properties.credentials.certificateIds[0]", "no private key", ids("keyless")},
			{"another service's", "properties.credentials.certificateIds[0]", "not a certificate of this service", ids(other)},
			{"not a certificate id", "properties.credentials.certificateIds[0]", "not a certificate of this service", ids(c.id("/backends/client"))},
			{"empty id", "properties.credentials.certificateIds[0]", "name or the ARM id", ids(" ")},
			{"too many ids", "properties.credentials.certificateIds", "at most 32", ids(many...)},
			{"thumbprint not hex", "properties.credentials.certificate[0]", "40 hexadecimal digits", creds(map[string]any{"certificate": []string{"ABCD"}})},
			{"unknown thumbprint", "properties.credentials.certificate[0]", "no certificate of this service", creds(map[string]any{"certificate": []string{strings.Repeat("0", 40)}})},
			{"thumbprint without a key", "properties.credentials.certificate[0]", "no private key", creds(map[string]any{"certificate": []string{thumbprintOf(ca)}})},
			{"too many thumbprints", "properties.credentials.certificate", "at most 32", creds(map[string]any{"certificate": slices.Repeat([]string{thumbprintOf(ca)}, 33)})},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, c.do(http.MethodPut, "/backends/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, tc.msg)
			})
		}
		c.must(http.StatusNotFound, http.MethodGet, "/backends/bad", nil)
	})

	t.Run("accepted as given", func(t *testing.T) {
		given := []any{"client", c.id("/certificates/second")}
		p := armProps(t, c.must(http.StatusCreated, http.MethodPut, "/backends/by-id", map[string]any{"properties": ids("client", c.id("/certificates/second"))}))
		if diff := cmp.Diff(given, p["credentials"].(map[string]any)["certificateIds"]); diff != "" {
			t.Errorf("certificateIds (-want +got):\n%s", diff)
		}
		lower := strings.ToLower(thumbprintOf(certs["thumb"]))
		p = armProps(t, c.must(http.StatusCreated, http.MethodPut, "/backends/by-thumbprint", map[string]any{"properties": creds(map[string]any{"certificate": []string{lower}})}))
		if diff := cmp.Diff([]any{lower}, p["credentials"].(map[string]any)["certificate"]); diff != "" {
			t.Errorf("certificate (-want +got):\n%s", diff)
		}
		// APIM ignores the thumbprints when certificateIds are given.
		c.must(http.StatusCreated, http.MethodPut, "/backends/both", map[string]any{"properties": creds(map[string]any{
			"certificateIds": []string{"client"}, "certificate": []string{strings.Repeat("0", 40)}})})
		c.must(http.StatusOK, http.MethodDelete, "/backends/both", nil, "If-Match", "*")
	})

	t.Run("a certificate in use", func(t *testing.T) {
		wantError(t, c.do(http.MethodDelete, "/certificates/second", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "backend 'by-id'")
		wantError(t, c.do(http.MethodDelete, "/certificates/thumb", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "backend 'by-thumbprint'")
		wantError(t, c.do(http.MethodPut, "/certificates/client", map[string]any{"properties": map[string]any{"data": trustStorePFX(t, ca), "password": ""}}),
			http.StatusBadRequest, "ValidationError", "properties.data", "private key")
		rotated := mgmttest.NewCert(t, "gatehouse-thumb-2", nil, ca)
		wantError(t, c.do(http.MethodPut, "/certificates/thumb", map[string]any{"properties": map[string]any{"data": rotated.PFX(t, "pw"), "password": "pw"}}),
			http.StatusBadRequest, "ValidationError", "properties.data", "by its thumbprint")
		// Named by id, a certificate rotates: a new PFX under the same name.
		rotated = mgmttest.NewCert(t, "gatehouse-client-2", nil, ca)
		p := armProps(t, c.must(http.StatusOK, http.MethodPut, "/certificates/client", map[string]any{"properties": map[string]any{"data": rotated.PFX(t, "pw"), "password": "pw"}}))
		if p["thumbprint"] != thumbprintOf(rotated) {
			t.Errorf("thumbprint after rotation %v, want %s", p["thumbprint"], thumbprintOf(rotated))
		}
		c.must(http.StatusOK, http.MethodDelete, "/certificates/unused", nil, "If-Match", "*")
	})

	t.Run("in every gateway's snapshot, with keys", func(t *testing.T) {
		c.must(http.StatusCreated, http.MethodPut, "/certificates/unused", map[string]any{"properties": map[string]any{"data": certs["unused"].PFX(t, "pw"), "password": "pw"}})
		for _, gw := range []string{"gw1", "gw2"} {
			c.must(http.StatusCreated, http.MethodPut, "/gateways/"+gw, map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "here"}}})
			token := c.must(http.StatusOK, http.MethodPost, "/gateways/"+gw+"/generateToken",
				map[string]any{"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).JSON()["value"].(string)
			_, snap := gatewayConfig(t, env, token)
			names := entityNames(snap, configwire.KindCertificate)
			slices.Sort(names)
			if want := []string{"client", "second", "thumb"}; !slices.Equal(names, want) {
				t.Errorf("%s: certificates in the snapshot %v, want %v", gw, names, want)
			}
			for _, e := range snap.Entities {
				if e.Kind == configwire.KindCertificate && !strings.Contains(e.SecretValue, "PRIVATE KEY") {
					t.Errorf("%s: certificate %s without its key in the snapshot", gw, e.Name)
				}
			}
		}
	})
}
