package api_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/mgmttest"
)

// TestARMEveryAPIVersion sends a list with every published api-version: those the SDKs and
// templates pin are named here, so that the table cannot lose one unnoticed.
func TestARMEveryAPIVersion(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "allversions")
	pinned := []string{"2016-07-07", "2019-01-01", "2021-08-01", "2022-08-01", "2022-09-01-preview",
		"2023-03-01-preview", "2023-05-01-preview", "2024-05-01", "2024-06-01-preview", "2025-09-01-preview", "2026-09-01-preview"}
	for _, v := range append(pinned, api.APIVersions...) {
		r := rawRequest(t, env, http.MethodGet, c.svc+"/apis?api-version="+v)
		if r.Status != http.StatusOK {
			t.Errorf("api-version %s: status %d; body %s", v, r.Status, r.Body)
		}
	}
}

// TestARMCaseInsensitive holds ARM's case rules: query option names and the fixed segments of a
// path in any case, parameter values kept as the caller wrote them.
func TestARMCaseInsensitive(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "casing")
	c.put("/apis/Chat", wsAPI("chat"))
	c.put("/apis/Products", wsAPI("products"))
	lower := strings.ToLower(c.svc)

	t.Run("fixed segments", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{
			lower + "/apis/Chat",
			strings.Replace(c.svc, "resourceGroups", "RESOURCEGROUPS", 1) + "/APIS/Chat",
			strings.Replace(c.svc, "Microsoft.ApiManagement", "microsoft.apimanagement", 1) + "/Apis/Chat",
		} {
			r := env.Do(t, http.MethodGet, p, nil)
			if r.Status != http.StatusOK || r.JSON()["name"] != "Chat" {
				t.Errorf("GET %s: status %d, want 200 naming Chat; body %s", p, r.Status, r.Body)
			}
		}
	})
	t.Run("a parameter spelled like a segment keeps its case", func(t *testing.T) {
		t.Parallel()
		r := env.Do(t, http.MethodGet, lower+"/apis/Products", nil)
		if r.Status != http.StatusOK || r.JSON()["name"] != "Products" {
			t.Errorf("status %d, want 200 naming Products; body %s", r.Status, r.Body)
		}
		r = env.Do(t, http.MethodGet, lower+"/APIS/Products/OPERATIONS", nil)
		if got := listNames(t, r); !cmp.Equal(got, []string{"onHandshake"}) {
			t.Errorf("operations of Products = %v, want [onHandshake]", got)
		}
	})
	t.Run("writes through a lower-case path", func(t *testing.T) {
		t.Parallel()
		r := env.Do(t, http.MethodPut, lower+"/namedvalues/Colour", map[string]any{"properties": map[string]any{"displayName": "Colour", "value": "blue"}})
		if r.Status != http.StatusCreated {
			t.Fatalf("PUT: status %d; body %s", r.Status, r.Body)
		}
		if id, _ := r.JSON()["id"].(string); id != c.svc+"/namedValues/Colour" {
			t.Errorf("id = %q, want the canonical %q", id, c.svc+"/namedValues/Colour")
		}
	})
	t.Run("query option names", func(t *testing.T) {
		t.Parallel()
		filter := url.QueryEscape("name eq 'Chat'")
		r := rawRequest(t, env, http.MethodGet, c.svc+"/apis?API-VERSION=2024-05-01&$FILTER="+filter+"&$Top=5")
		if got := listNames(t, r); !cmp.Equal(got, []string{"Chat"}) {
			t.Errorf("names = %v, want [Chat]; body %s", got, r.Body)
		}
		r = rawRequest(t, env, http.MethodGet, c.svc+"/apis?Api-Version=2024-05-01&$tOP=1")
		if got := decodeList(t, r); len(got.Value) != 1 {
			t.Errorf("$tOP=1 served %d items, want 1", len(got.Value))
		}
	})
}

// TestARMTrackingHeaders holds ARM's request-tracking headers on successes and errors alike.
func TestARMTrackingHeaders(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "tracking")
	for _, tc := range []struct {
		name   string
		path   string
		status int
	}{
		{"success", c.svc + "/apis", 200},
		{"not found", c.svc + "/apis/none", 404},
		{"no route", c.svc + "/nothing", 404},
		{"bad api-version", c.svc + "/apis?api-version=1999-01-01", 400},
		{"outside ARM", "/healthz", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := env.Do(t, http.MethodGet, tc.path, nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.Status, tc.status, r.Body)
			}
			if r.Header.Get("x-ms-request-id") == "" || r.Header.Get("x-ms-correlation-request-id") == "" {
				t.Errorf("headers %v lack x-ms-request-id or a generated x-ms-correlation-request-id", r.Header)
			}
			if r.Header.Get("x-ms-client-request-id") != "" {
				t.Errorf("x-ms-client-request-id returned unasked: %q", r.Header.Get("x-ms-client-request-id"))
			}
			r = env.Do(t, http.MethodGet, tc.path, nil, "x-ms-correlation-request-id", "corr-1",
				"x-ms-client-request-id", "client-1", "x-ms-return-client-request-id", "true")
			if got := r.Header.Get("x-ms-correlation-request-id"); got != "corr-1" {
				t.Errorf("x-ms-correlation-request-id = %q, want the caller's corr-1", got)
			}
			if got := r.Header.Get("x-ms-client-request-id"); got != "client-1" {
				t.Errorf("x-ms-client-request-id = %q, want client-1 when asked", got)
			}
		})
	}
	t.Run("two requests, two ids", func(t *testing.T) {
		t.Parallel()
		a, b := env.Do(t, http.MethodGet, c.svc, nil), env.Do(t, http.MethodGet, c.svc, nil)
		if a.Header.Get("x-ms-request-id") == b.Header.Get("x-ms-request-id") {
			t.Errorf("both requests have x-ms-request-id %q", a.Header.Get("x-ms-request-id"))
		}
	})
}

// TestARMQueryOptions holds that a query option Gatehouse does not implement on a request is
// refused naming it, never ignored, and that those it implements or that change nothing pass.
func TestARMQueryOptions(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "options")
	c.put("/apis/chat", wsAPI("chat"))
	c.put("/products/p", map[string]any{"displayName": "P"})
	user := map[string]any{"properties": map[string]any{"email": "u@example.com", "firstName": "U", "lastName": "Ser"}}
	for _, tc := range []struct {
		name, method, rel string
		body              any
		option            string // "" for accepted
	}{
		{"$orderby on apis", "GET", "/apis?$orderby=name", nil, "$orderby"},
		{"$expand", "GET", "/apis?$expand=tags", nil, "$expand"},
		{"$select", "GET", "/products?$select=name", nil, "$select"},
		{"expandApiVersionSet", "GET", "/apis?expandApiVersionSet=true", nil, "expandApiVersionSet"},
		{"includeNotTaggedApis", "GET", "/apis?includeNotTaggedApis=true", nil, "includeNotTaggedApis"},
		{"tags on apis", "GET", "/apis?tags=a", nil, "tags"},
		{"deleteRevisions", "DELETE", "/apis/chat?deleteRevisions=true", nil, "deleteRevisions"},
		{"notify", "PUT", "/users/u1?notify=true", user, "notify"},
		{"appType", "PUT", "/users/u1?appType=developerPortal", user, "appType"},
		{"an option no route has", "GET", "/apis?foo=bar", nil, "foo"},
		{"paging on an item", "GET", "/apis/chat?$top=1", nil, "$top"},
		{"format on an api", "GET", "/apis/chat?format=xml", nil, "format"},
		{"deleteSubscriptions on an api", "DELETE", "/apis/chat?deleteSubscriptions=true", nil, "deleteSubscriptions"},
		{"notify=false changes nothing", "PUT", "/users/u2?notify=false", user, ""},
		{"expandApiVersionSet=false changes nothing", "GET", "/apis?expandApiVersionSet=false", nil, ""},
		{"paging on a list", "GET", "/apis?$top=1&$skip=0", nil, ""},
		{"format on a policy", "GET", "/apis/chat/operations/onHandshake/policies/policy?format=rawxml", nil, ""},
		{"deleteSubscriptions on a product", "DELETE", "/products/p?deleteSubscriptions=true", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(tc.method, tc.rel, tc.body, "If-Match", "*")
			if tc.option == "" {
				if r.Status >= 300 && r.Status != http.StatusNotFound {
					t.Fatalf("status %d, want success; body %s", r.Status, r.Body)
				}
				return
			}
			wantError(t, r, 400, "ValidationError", tc.option, "'"+tc.option+"'")
		})
	}
	// Nothing a refused request asked for happened.
	c.must(http.StatusOK, http.MethodGet, "/apis/chat", nil)
	c.must(http.StatusNotFound, http.MethodGet, "/users/u1", nil)
}
