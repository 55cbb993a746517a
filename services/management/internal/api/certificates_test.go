package api_test

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // APIM's thumbprint
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

func TestCertificates(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "certs")
	ca := mgmttest.NewCert(t, "Test CA", nil, nil)
	leaf := mgmttest.NewCert(t, "api.example.com", []string{"api.example.com"}, ca)
	const password = "s3cret-pfx-password"
	data := leaf.PFX(t, password)

	t.Run("PUT answers what the PFX says, never data or password", func(t *testing.T) {
		c := svcClient{t: t, env: env, svc: c.svc}
		r := c.must(http.StatusCreated, http.MethodPut, "/certificates/api", map[string]any{"properties": map[string]any{"data": data, "password": password}})
		sum := sha1.Sum(leaf.Cert.Raw) //nolint:gosec // APIM's thumbprint
		want := map[string]any{"subject": "CN=api.example.com,O=Gatehouse tests", "thumbprint": strings.ToUpper(hex.EncodeToString(sum[:])),
			"expirationDate": leaf.Cert.NotAfter.UTC().Format(time.RFC3339)}
		if diff := cmp.Diff(want, armProps(t, r)); diff != "" {
			t.Errorf("properties (-want +got):\n%s", diff)
		}
		for _, got := range []mgmttest.Response{r, c.must(http.StatusOK, http.MethodGet, "/certificates/api", nil), c.must(http.StatusOK, http.MethodGet, "/certificates", nil)} {
			if bytes.Contains(got.Body, []byte(password)) || bytes.Contains(got.Body, []byte(data[:40])) || bytes.Contains(got.Body, []byte("PRIVATE KEY")) {
				t.Errorf("a response shows the PFX, its password or its key: %s", got.Body)
			}
		}
		list := c.must(http.StatusOK, http.MethodGet, "/certificates?$filter="+url.QueryEscape("thumbprint eq '"+want["thumbprint"].(string)+"'"), nil)
		if n := len(decodeList(t, list).Value); n != 1 {
			t.Errorf("$filter on thumbprint found %d certificates, want 1", n)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		c := svcClient{t: t, env: env, svc: c.svc}
		tests := []struct {
			name   string
			props  map[string]any
			target string
			msg    string
		}{
			{"wrong password", map[string]any{"data": data, "password": "wrong"}, "properties.password", "password does not open"},
			{"no password", map[string]any{"data": data}, "properties.password", "password does not open"},
			{"not Base64", map[string]any{"data": "%%%not-base64%%%", "password": password}, "properties.data", "not valid Base64"},
			{"not a PFX", map[string]any{"data": base64.StdEncoding.EncodeToString([]byte("hello, not a pfx")), "password": password}, "properties.data", "not a PFX"},
			{"no data", map[string]any{"password": password}, "properties.data", "data is required"},
			{"Key Vault", map[string]any{"keyVault": map[string]any{"secretIdentifier": "https://kv.vault.azure.net/secrets/c"}}, "properties.keyVault",
				"Key Vault certificates are not supported: upload the PFX as data"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := svcClient{t: t, env: env, svc: c.svc}
				r := c.do(http.MethodPut, "/certificates/bad", map[string]any{"properties": tc.props})
				wantError(t, r, http.StatusBadRequest, "ValidationError", tc.target, tc.msg)
				if bytes.Contains(r.Body, []byte("wrong")) || bytes.Contains(r.Body, []byte("not-base64")) {
					t.Errorf("the error quotes the input: %s", r.Body)
				}
			})
		}
		c.must(http.StatusNotFound, http.MethodGet, "/certificates/bad", nil)
		wantError(t, c.do(http.MethodPost, "/certificates/api/refreshSecret", nil), http.StatusBadRequest, "ValidationError", "", "Key Vault")
		if r := c.do(http.MethodPatch, "/certificates/api", map[string]any{"properties": map[string]any{}}, "If-Match", "*"); r.Status != http.StatusMethodNotAllowed {
			t.Errorf("PATCH: status %d, want 405; body %s", r.Status, r.Body)
		}
	})

	t.Run("hostname configurations and CAs", func(t *testing.T) {
		c := svcClient{t: t, env: env, svc: c.svc}
		c.must(http.StatusCreated, http.MethodPut, "/gateways/edge", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "here"}}})
		c.must(http.StatusCreated, http.MethodPut, "/certificates/ca", map[string]any{"properties": map[string]any{"data": ca.PFX(t, ""), "password": ""}})
		certID := c.svc + "/certificates/api"
		host := func(h string) map[string]any {
			return map[string]any{"properties": map[string]any{"hostname": h, "certificateId": certID}}
		}
		r := c.must(http.StatusCreated, http.MethodPut, "/gateways/edge/hostnameConfigurations/api", host("API.example.com"))
		if got := armProps(t, r)["hostname"]; got != "api.example.com" {
			t.Errorf("hostname = %v, want it lower-cased", got)
		}
		c.must(http.StatusCreated, http.MethodPut, "/gateways/edge/hostnameConfigurations/default", host("*"))
		c.must(http.StatusCreated, http.MethodPut, "/gateways/edge/hostnameConfigurations/wild", host("*.example.com"))
		c.must(http.StatusCreated, http.MethodPut, "/gateways/edge/hostnameConfigurations/partial", host("api-*.example.com"))
		tests := []struct {
			name   string
			props  map[string]any
			target string
		}{
			{"no hostname", map[string]any{"certificateId": certID}, "properties.hostname"},
			{"bad hostname", map[string]any{"hostname": "a b.example.com", "certificateId": certID}, "properties.hostname"},
			{"two wildcards", map[string]any{"hostname": "*.*.example.com", "certificateId": certID}, "properties.hostname"},
			{"taken hostname", map[string]any{"hostname": "api.example.com", "certificateId": certID}, "properties.hostname"},
			{"no certificate", map[string]any{"hostname": "x.example.com"}, "properties.certificateId"},
			{"unknown certificate", map[string]any{"hostname": "x.example.com", "certificateId": c.svc + "/certificates/none"}, "properties.certificateId"},
			{"certificate of another service", map[string]any{"hostname": "x.example.com",
				"certificateId": mgmttest.ServicePath("other", "rg", "svc") + "/certificates/api"}, "properties.certificateId"},
			{"TLS 1.0", map[string]any{"hostname": "x.example.com", "certificateId": certID, "tls10Enabled": true}, "properties.tls10Enabled"},
			{"TLS 1.1", map[string]any{"hostname": "x.example.com", "certificateId": certID, "tls11Enabled": true}, "properties.tls11Enabled"},
			{"HTTP/2", map[string]any{"hostname": "x.example.com", "certificateId": certID, "http2Enabled": true}, "properties.http2Enabled"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := svcClient{t: t, env: env, svc: c.svc}
				wantError(t, c.do(http.MethodPut, "/gateways/edge/hostnameConfigurations/x", map[string]any{"properties": tc.props}),
					http.StatusBadRequest, "ValidationError", tc.target, "")
			})
		}
		c.must(http.StatusNotFound, http.MethodPut, "/gateways/none/hostnameConfigurations/x", host("x.example.com"))

		c.must(http.StatusCreated, http.MethodPut, "/gateways/edge/certificateAuthorities/ca", map[string]any{"properties": map[string]any{"isTrusted": true}})
		wantError(t, c.do(http.MethodPut, "/gateways/edge/certificateAuthorities/none", map[string]any{"properties": map[string]any{"isTrusted": true}}),
			http.StatusBadRequest, "ValidationError", "", "does not exist")
		if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/gateways/edge/certificateAuthorities/ca", nil)); !cmp.Equal(got, map[string]any{"isTrusted": true}) {
			t.Errorf("CA properties = %v", got)
		}

		// In use: refused, naming the users.
		wantError(t, c.do(http.MethodDelete, "/certificates/api", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "",
			"hostname configuration 'gateways/edge/hostnameConfigurations/api'")
		wantError(t, c.do(http.MethodDelete, "/certificates/ca", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "",
			"certificate authority 'gateways/edge/certificateAuthorities/ca'")
		// Deleting the gateway deletes its TLS settings, which frees the certificates.
		c.must(http.StatusOK, http.MethodDelete, "/gateways/edge", nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/certificates/api", nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/certificates/ca", nil, "If-Match", "*")
	})
}
