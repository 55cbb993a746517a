package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

// TestARMNoSilentDrops holds that a body member or property Gatehouse does not implement, at
// any depth, is refused naming it, and that nothing of the refused write is kept.
func TestARMNoSilentDrops(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "nodrops")
	c.put("/apis/chat", wsAPI("chat"))
	c.put("/products/p", map[string]any{"displayName": "P"})
	withProp := func(base map[string]any, k string, v any) map[string]any {
		m := map[string]any{k: v}
		for bk, bv := range base {
			m[bk] = bv
		}
		return map[string]any{"properties": m}
	}
	httpAPI := map[string]any{"displayName": "Orders", "path": "orders", "serviceUrl": "https://backend.example.com"}
	c.put("/apis/rest", map[string]any{"displayName": "Rest", "path": "rest", "serviceUrl": "https://backend.example.com"})
	for _, tc := range []struct {
		name, method, rel string
		body              any
		target            string
	}{
		{"apiVersionSetId", "PUT", "/apis/v1", withProp(httpAPI, "apiVersionSetId", "/apiVersionSets/x"), "properties.apiVersionSetId"},
		{"inline apiVersionSet member", "PUT", "/apis/v1", withProp(httpAPI, "apiVersionSet", map[string]any{"displayName": "V", "versioningScheme": "Segment", "color": "red"}), "properties.apiVersionSet.color"},
		{"sourceApiId", "PUT", "/apis/v1", withProp(httpAPI, "sourceApiId", "/apis/chat"), "properties.sourceApiId"},
		{"import format without value", "PUT", "/apis/v1", withProp(httpAPI, "format", "openapi+json"), "properties.value"},
		{"unsupported import format", "PUT", "/apis/v1", withProp(httpAPI, "format", "wadl-xml"), "properties.format"},
		{"nested contact", "PUT", "/apis/v1", withProp(httpAPI, "contact", map[string]any{"name": "n", "phone": "1"}), "properties.contact.phone"},
		{"nested authentication", "PUT", "/apis/v1", withProp(httpAPI, "authenticationSettings", map[string]any{"oAuth2": map[string]any{"scope": "s", "extra": 1}}), "properties.authenticationSettings.oAuth2.extra"},
		{"operation response member", "PUT", "/apis/rest/operations/o", map[string]any{"properties": map[string]any{"displayName": "O", "method": "GET", "urlTemplate": "/o",
			"responses": []any{map[string]any{"statusCode": 200, "sample": "x"}}}}, "properties.responses[0].sample"},
		{"product member", "PUT", "/products/q", map[string]any{"properties": map[string]any{"displayName": "Q", "groups": []string{"developers"}}}, "properties.groups"},
		{"user password", "PUT", "/users/u", map[string]any{"properties": map[string]any{"email": "u@example.com", "firstName": "U", "lastName": "S", "password": "p"}}, "properties.password"},
		{"named value member", "PUT", "/namedValues/nv", map[string]any{"properties": map[string]any{"displayName": "nv", "value": "v", "secretIdentifier": "x"}}, "properties.secretIdentifier"},
		{"gateway member", "PUT", "/gateways/g", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "l", "zip": "1"}}}, "properties.locationData.zip"},
		{"top-level member of a child", "PUT", "/products/q", map[string]any{"properties": map[string]any{"displayName": "Q"}, "tags": map[string]any{"a": "b"}}, "tags"},
		{"misspelt properties", "PUT", "/products/q", map[string]any{"Properties": map[string]any{"displayName": "Q"}}, "Properties"},
		{"PATCH member", "PATCH", "/apis/chat", map[string]any{"properties": map[string]any{"isCurrentRevision": true}}, "properties.isCurrentRevision"},
		{"action member", "POST", "/gateways/missing/regenerateKey", map[string]any{"keyType": "primary", "force": true}, "force"},
		{"service identity", "PUT", "", serviceBody(map[string]any{"identity": map[string]any{"type": "SystemAssigned"}}), "identity.type"},
		{"service user identity", "PATCH", "", map[string]any{"identity": map[string]any{"type": "UserAssigned", "userAssignedIdentities": map[string]any{"/x": map[string]any{}}}}, "identity.type"},
		{"service zones", "PUT", "", serviceBody(map[string]any{"zones": []string{"1"}}), "zones"},
		{"service property", "PUT", "", serviceBody(map[string]any{"properties": map[string]any{"publisherEmail": "a@example.com", "publisherName": "A",
			"hostnameConfigurations": []any{}}}), "properties.hostnameConfigurations"},
		{"service virtual network", "PATCH", "", map[string]any{"properties": map[string]any{"virtualNetworkType": "External"}}, "properties.virtualNetworkType"},
		{"service disableGateway", "PATCH", "", map[string]any{"properties": map[string]any{"disableGateway": true}}, "properties.disableGateway"},
		{"service member", "PUT", "", serviceBody(map[string]any{"plan": "x"}), "plan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(tc.method, tc.rel, tc.body, "If-Match", "*")
			wantError(t, r, 400, "ValidationError", tc.target, "")
		})
	}
	for _, rel := range []string{"/apis/v1", "/apis/rest/operations/o", "/products/q", "/users/u", "/namedValues/nv", "/gateways/g"} {
		c.must(http.StatusNotFound, http.MethodGet, rel, nil)
	}
	if p := armProps(t, c.must(http.StatusOK, http.MethodGet, "", nil)); p["virtualNetworkType"] != "None" || p["disableGateway"] != false {
		t.Errorf("service properties changed by refused PATCHes: %v", p)
	}

	t.Run("what a GET returns goes back in a PUT", func(t *testing.T) {
		for _, rel := range []string{"", "/apis/chat", "/products/p", "/apis/chat/operations/onHandshake"} {
			got := c.must(http.StatusOK, http.MethodGet, rel, nil).JSON()
			if rel == "/apis/chat/operations/onHandshake" {
				continue // the system operation is not writable; its shape is checked by decoding
			}
			if r := c.do(http.MethodPut, rel, got); r.Status != http.StatusOK {
				t.Errorf("PUT %s of its own GET: status %d; body %s", rel, r.Status, r.Body)
			}
		}
	})
	t.Run("identity None and empty zones ask for nothing", func(t *testing.T) {
		c.must(http.StatusOK, http.MethodPatch, "", map[string]any{"identity": map[string]any{"type": "None"}, "zones": []string{}}, "If-Match", "*")
	})
}

// serviceBody is a valid service PUT body with extra top-level members.
func serviceBody(extra map[string]any) map[string]any {
	b := map[string]any{"location": "westeurope", "sku": map[string]any{"name": "Developer", "capacity": 1},
		"properties": map[string]any{"publisherEmail": "admin@example.com", "publisherName": "Example"}}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// TestARMFilterPaths holds $filter over properties/ paths and the functions APIM documents,
// and that a raw ';' or an unparsed remainder is refused.
func TestARMFilterPaths(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "filters")
	for _, n := range []string{"chat", "wsfeed", "orders"} {
		c.put("/apis/"+n, wsAPI(n))
	}
	list := func(filter string) mgmttest.Response {
		return c.do(http.MethodGet, "/apis?$filter="+url.QueryEscape(filter), nil)
	}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"contains(properties/displayName,'WS c')", []string{"chat"}},
		{"properties/path eq 'orders'", []string{"orders"}},
		{"startswith(properties/displayName, 'ws o') or endswith(name,'feed')", []string{"orders", "wsfeed"}},
		{"substringof('feed', properties/path)", []string{"wsfeed"}},
		{"properties/isCurrent eq true and name ne 'chat'", []string{"orders", "wsfeed"}},
		{"PROPERTIES/DisplayName ge 'WS o'", []string{"orders", "wsfeed"}},
	} {
		r := list(tc.filter)
		if got := listNames(t, r); !cmp.Equal(got, tc.want) {
			t.Errorf("$filter=%s: %v, want %v; body %s", tc.filter, got, tc.want, r.Body)
		}
	}
	for _, tc := range []struct{ filter, msg string }{
		{"name eq 'chat';name eq 'orders'", "';'"},
		{"name eq 'chat' name", "name"},
		{"properties/name eq 'chat'", "properties/name"},
		{"contains(properties/isCurrent,'t')", "contains"},
		{"properties/displayName/x eq 'a'", "properties/displayName/x"},
	} {
		wantError(t, list(tc.filter), 400, "InvalidFilterParameter", "$filter", tc.msg)
	}
}

// TestProviderEndpoints drives checkNameAvailability and the provider operations list.
func TestProviderEndpoints(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	newSvcClient(t, env, "taken-name")
	check := "/subscriptions/sub-arm/providers/Microsoft.ApiManagement/checkNameAvailability"
	for _, tc := range []struct {
		name   string
		want   map[string]any
		sub    string
		status int
	}{
		{"free-name", map[string]any{"nameAvailable": true, "reason": "Valid", "message": ""}, "sub-arm", 200},
		{"Taken-Name", map[string]any{"nameAvailable": false, "reason": "AlreadyExists", "message": "Taken-Name is already in use. Please select a different name."}, "sub-arm", 200},
		{"taken-name", map[string]any{"nameAvailable": true, "reason": "Valid", "message": ""}, "other-sub", 200},
		{"1bad", nil, "sub-arm", 200},
	} {
		r := env.Must(t, []int{tc.status}, http.MethodPost, strings.Replace(check, "sub-arm", tc.sub, 1), map[string]any{"name": tc.name})
		got := r.JSON()
		if tc.want == nil {
			if got["nameAvailable"] != false || got["reason"] != "Invalid" {
				t.Errorf("%s: %v, want Invalid", tc.name, got)
			}
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s in %s (-want +got):\n%s", tc.name, tc.sub, diff)
		}
	}
	wantError(t, env.Do(t, http.MethodPost, check, map[string]any{"name": "x", "extra": 1}), 400, "ValidationError", "extra", "")

	r := env.Must(t, []int{200}, http.MethodGet, "/providers/microsoft.apimanagement/operations?api-version=2024-05-01", nil)
	var body struct {
		Value []struct {
			Name    string            `json:"name"`
			Display map[string]string `json:"display"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("operations: %v; body %s", err, r.Body)
	}
	var names []string
	for _, op := range body.Value {
		names = append(names, op.Name)
		if op.Display["provider"] != "Microsoft API Management" || op.Display["operation"] == "" {
			t.Errorf("%s: display %v", op.Name, op.Display)
		}
	}
	for _, want := range []string{"Microsoft.ApiManagement/service/read", "Microsoft.ApiManagement/service/write", "Microsoft.ApiManagement/service/apis/read",
		"Microsoft.ApiManagement/service/apis/operations/policies/write", "Microsoft.ApiManagement/service/subscriptions/listSecrets/action",
		"Microsoft.ApiManagement/checkNameAvailability/action", "Microsoft.ApiManagement/operations/read"} {
		if !slices.Contains(names, want) {
			t.Errorf("operations lack %s; have %v", want, names)
		}
	}
	for _, absent := range []string{"Microsoft.ApiManagement/service/workspaces/read", "Microsoft.ApiManagement/service/certificates/write/action"} {
		if slices.Contains(names, absent) {
			t.Errorf("operations list %s, which Gatehouse does not serve", absent)
		}
	}
	wantError(t, env.Do(t, http.MethodGet, "/providers/Microsoft.ApiManagement/operations", nil), 400, "MissingApiVersionParameter", "", "")
	wantError(t, env.Do(t, http.MethodGet, "/providers/Microsoft.ApiManagement/operations?api-version=2024-05-01", nil, "Authorization", "Bearer nope"), 401, "AuthenticationFailed", "", "")
}
