package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

// TestPortalSettings checks signin, signup and delegation: they exist before any write, are
// written with PUT (200) and PATCH, keep the delegation's validation key sealed behind
// listSecrets, and refuse what would promise sign-up or delegation the portal does not have.
func TestPortalSettings(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "portal-settings")

	if got := c.names("/portalsettings"); !cmp.Equal(got, []string{"delegation", "signin", "signup"}) {
		t.Errorf("portalsettings = %v, want delegation, signin and signup before any write", got)
	}
	signin := c.must(http.StatusOK, http.MethodGet, "/portalsettings/signin", nil)
	if got := signin.JSON()["type"]; got != "Microsoft.ApiManagement/service/portalsettings" {
		t.Errorf("type = %v, want Microsoft.ApiManagement/service/portalsettings", got)
	}
	if got := armProps(t, signin)["enabled"]; got != true {
		t.Errorf("signin enabled = %v, want true: every portal page asks for a token", got)
	}
	c.must(http.StatusOK, http.MethodHead, "/portalsettings/signup", nil)
	c.must(http.StatusOK, http.MethodPut, "/portalsettings/signin", map[string]any{"properties": map[string]any{"enabled": true}})

	tos := map[string]any{"text": "Be kind.", "enabled": true, "consentRequired": true}
	c.must(http.StatusOK, http.MethodPut, "/portalsettings/signup", map[string]any{"properties": map[string]any{"enabled": false, "termsOfService": tos}})
	if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/portalsettings/signup", nil))["termsOfService"]; !cmp.Equal(got, any(tos)) {
		t.Errorf("signup termsOfService = %v, want %v as written", got, tos)
	}

	const key = "c2VjcmV0LXZhbGlkYXRpb24ta2V5"
	put := c.must(http.StatusOK, http.MethodPut, "/portalsettings/delegation", map[string]any{"properties": map[string]any{
		"url": "https://portal.example.com/delegate", "validationKey": key, "subscriptions": map[string]any{"enabled": false}}})
	if strings.Contains(string(put.Body), key) {
		t.Errorf("PUT delegation returned the validation key: %s", put.Body)
	}
	c.must(http.StatusNoContent, http.MethodPatch, "/portalsettings/delegation", map[string]any{"properties": map[string]any{"url": "https://portal.example.com/v2"}}, "If-Match", "*")
	got := c.must(http.StatusOK, http.MethodGet, "/portalsettings/delegation", nil)
	if p := armProps(t, got); p["url"] != "https://portal.example.com/v2" || p["validationKey"] != nil {
		t.Errorf("delegation = %v, want the patched url and no validationKey", p)
	}
	if got := c.must(http.StatusOK, http.MethodPost, "/portalsettings/delegation/listSecrets", nil).JSON()["validationKey"]; got != key {
		t.Errorf("listSecrets validationKey = %v, want the key written before the PATCH", got)
	}
	if strings.Contains(string(c.must(http.StatusOK, http.MethodGet, "/portalsettings", nil).Body), key) {
		t.Error("the portalsettings list shows the validation key")
	}

	for _, tc := range []struct {
		name, path string
		props      map[string]any
		target     string
	}{
		{"signin off", "signin", map[string]any{"enabled": false}, "properties.enabled"},
		{"signup on", "signup", map[string]any{"enabled": true}, "properties.enabled"},
		{"subscription delegation", "delegation", map[string]any{"subscriptions": map[string]any{"enabled": true}}, "properties.subscriptions.enabled"},
		{"registration delegation", "delegation", map[string]any{"userRegistration": map[string]any{"enabled": true}}, "properties.userRegistration.enabled"},
		{"bad url", "delegation", map[string]any{"url": "ftp://x"}, "properties.url"},
		{"bad key", "delegation", map[string]any{"validationKey": "not base64!"}, "properties.validationKey"},
		{"unknown property", "signin", map[string]any{"enabled": true, "redirect": "x"}, "properties.redirect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(http.MethodPut, "/portalsettings/"+tc.path, map[string]any{"properties": tc.props})
			wantError(t, r, http.StatusBadRequest, "ValidationError", tc.target, "")
		})
	}
	c.must(http.StatusNotFound, http.MethodGet, "/portalsettings/other", nil)
	wantError(t, c.do(http.MethodGet, "/portalsettings?$top=1", nil), http.StatusBadRequest, "ValidationError", "$top", "")
}

// TestIdentityProviders checks identity providers' lifecycle: the name is the type, the client
// secret is sealed and leaves only through listSecrets, PATCH keeps it, and settings that do
// not apply to a type are refused.
func TestIdentityProviders(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "identity-providers")

	const secret = "aad-client-secret-value"
	created := c.must(http.StatusCreated, http.MethodPut, "/identityProviders/aad", map[string]any{"properties": map[string]any{
		"clientId": "app-id", "clientSecret": secret, "allowedTenants": []string{"contoso.onmicrosoft.com"}, "signinTenant": "contoso.onmicrosoft.com",
		"authority": "login.microsoftonline.com", "clientLibrary": "MSAL-2"}})
	if strings.Contains(string(created.Body), secret) {
		t.Errorf("PUT returned the client secret: %s", created.Body)
	}
	if p := armProps(t, created); p["type"] != "aad" || p["clientId"] != "app-id" {
		t.Errorf("properties = %v, want type aad and the clientId", p)
	}
	c.must(http.StatusOK, http.MethodPatch, "/identityProviders/aad", map[string]any{"properties": map[string]any{"clientId": "app-id-2"}}, "If-Match", "*")
	got := c.must(http.StatusOK, http.MethodGet, "/identityProviders/aad", nil)
	if p := armProps(t, got); p["clientId"] != "app-id-2" || p["clientSecret"] != nil || got.JSON()["type"] != "Microsoft.ApiManagement/service/identityProviders" {
		t.Errorf("GET = %s, want the patched clientId, no clientSecret and the identityProviders type", got.Body)
	}
	if got := c.must(http.StatusOK, http.MethodPost, "/identityProviders/aad/listSecrets", nil).JSON()["clientSecret"]; got != secret {
		t.Errorf("listSecrets clientSecret = %v, want the secret written before the PATCH", got)
	}
	c.put("/identityProviders/aadB2C", map[string]any{"clientId": "b2c", "clientSecret": "s", "signinPolicyName": "B2C_1_signin", "signupPolicyName": "B2C_1_signup"})
	if got := c.names("/identityProviders"); !cmp.Equal(got, []string{"aad", "aadB2C"}) {
		t.Errorf("identityProviders = %v, want aad and aadB2C", got)
	}

	for _, tc := range []struct {
		name, provider string
		props          map[string]any
		target         string
	}{
		{"unknown type", "github", map[string]any{"clientId": "x", "clientSecret": "s"}, "name"},
		{"no secret", "google", map[string]any{"clientId": "x"}, "properties.clientSecret"},
		{"no client id", "google", map[string]any{"clientSecret": "s"}, "properties.clientId"},
		{"type differs", "google", map[string]any{"clientId": "x", "clientSecret": "s", "type": "facebook"}, "properties.type"},
		{"tenants on google", "google", map[string]any{"clientId": "x", "clientSecret": "s", "allowedTenants": []string{"t"}}, "properties.allowedTenants"},
		{"policy on aad", "aad", map[string]any{"clientId": "x", "clientSecret": "s", "signupPolicyName": "p"}, "properties.signupPolicyName"},
		{"b2c without signin policy", "aadB2C", map[string]any{"clientId": "x", "clientSecret": "s", "signinPolicyName": ""}, "properties.signinPolicyName"},
		{"unknown property", "twitter", map[string]any{"clientId": "x", "clientSecret": "s", "scopes": "x"}, "properties.scopes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(http.MethodPut, "/identityProviders/"+tc.provider, map[string]any{"properties": tc.props})
			wantError(t, r, http.StatusBadRequest, "ValidationError", tc.target, "")
		})
	}
	c.must(http.StatusOK, http.MethodDelete, "/identityProviders/aad", nil, "If-Match", "*")
	c.must(http.StatusNotFound, http.MethodPost, "/identityProviders/aad/listSecrets", nil)
}
