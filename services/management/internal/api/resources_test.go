package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/configwire"
)

const wsOperationMsg = "Operation entity cannot be defined by user for web socket api type."

func TestWebSocketAPIs(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})

	t.Run("serviceUrl and protocols", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "ws-validation")
		tests := []struct {
			name       string
			serviceURL any
			protocols  []string
			target     string // "" = accepted
		}{
			{"wss", "wss://backend.example.com/hub", []string{"wss"}, ""},
			{"ws with both protocols", "ws://backend.example.com:8080/hub", []string{"ws", "wss"}, ""},
			{"http serviceUrl", "http://backend.example.com/hub", nil, "properties.serviceUrl"},
			{"https serviceUrl", "https://backend.example.com/hub", nil, "properties.serviceUrl"},
			{"no serviceUrl", nil, nil, "properties.serviceUrl"},
			{"relative serviceUrl", "backend.example.com/hub", nil, "properties.serviceUrl"},
			{"http protocol", "wss://backend.example.com/hub", []string{"http"}, "properties.protocols"},
			{"https beside wss", "wss://backend.example.com/hub", []string{"wss", "https"}, "properties.protocols"},
		}
		for i, tc := range tests {
			props := map[string]any{"displayName": tc.name, "type": "websocket", "path": "v" + string(rune('a'+i))}
			if tc.serviceURL != nil {
				props["serviceUrl"] = tc.serviceURL
			}
			if tc.protocols != nil {
				props["protocols"] = tc.protocols
			}
			r := c.do(http.MethodPut, "/apis/v"+string(rune('a'+i)), map[string]any{"properties": props})
			if tc.target != "" {
				wantError(t, r, http.StatusBadRequest, "ValidationError", tc.target, "")
				continue
			}
			if r.Status != http.StatusCreated {
				t.Errorf("%s: status %d, want 201; body %s", tc.name, r.Status, r.Body)
				continue
			}
			got := armProps(t, r)
			want := map[string]any{"type": "websocket", "serviceUrl": tc.serviceURL, "protocols": toAny(tc.protocols)}
			for k, v := range want {
				if !cmp.Equal(got[k], v) {
					t.Errorf("%s: %s = %v, want %v", tc.name, k, got[k], v)
				}
			}
		}
		// An http API takes http(s) only.
		wantError(t, c.do(http.MethodPut, "/apis/rest", map[string]any{"properties": map[string]any{
			"displayName": "REST", "path": "rest", "serviceUrl": "https://b.example.com", "protocols": []string{"ws"}}}),
			http.StatusBadRequest, "ValidationError", "properties.protocols", "")
		// The type of an existing API is fixed.
		wantError(t, c.do(http.MethodPut, "/apis/va", map[string]any{"properties": httpAPI("va")}),
			http.StatusBadRequest, "ValidationError", "properties.type", "")
	})

	t.Run("onHandshake is immutable", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "ws-onhandshake")
		c.must(http.StatusCreated, http.MethodPut, "/apis/chat", map[string]any{"properties": wsAPI("chat")})
		op := c.must(http.StatusOK, http.MethodGet, "/apis/chat/operations/onHandshake", nil)
		if got := op.JSON(); got["id"] != c.id("/apis/chat/operations/onHandshake") || got["name"] != "onHandshake" ||
			got["type"] != "Microsoft.ApiManagement/service/apis/operations" {
			t.Errorf("onHandshake body %s", op.Body)
		}
		if diff := cmp.Diff([]string{"onHandshake"}, c.names("/apis/chat/operations")); diff != "" {
			t.Errorf("operations of a websocket API (-want +got):\n%s", diff)
		}
		opProps := map[string]any{"properties": map[string]any{"displayName": "x", "method": "GET", "urlTemplate": "/"}}
		for _, tc := range []struct {
			method, rel string
			body        any
		}{
			{http.MethodPut, "/apis/chat/operations/onHandshake", opProps},
			{http.MethodPatch, "/apis/chat/operations/onHandshake", map[string]any{"properties": map[string]any{"displayName": "renamed"}}},
			{http.MethodDelete, "/apis/chat/operations/onHandshake", nil},
			{http.MethodPut, "/apis/chat/operations/send", opProps},
		} {
			r := c.do(tc.method, tc.rel, tc.body, "If-Match", "*")
			wantError(t, r, http.StatusBadRequest, "ValidationError", "", wsOperationMsg)
		}
		c.must(http.StatusOK, http.MethodGet, "/apis/chat/operations/onHandshake", nil)
		c.must(http.StatusNotFound, http.MethodGet, "/apis/chat/operations/send", nil)

		// Deleting the API takes its onHandshake with it.
		c.must(http.StatusNoContent, http.MethodDelete, "/apis/chat", nil, "If-Match", "*")
		c.must(http.StatusNotFound, http.MethodGet, "/apis/chat/operations/onHandshake", nil)
	})

	t.Run("API-scope policy refused", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "ws-apipolicy")
		c.put("/apis/chat", wsAPI("chat"))
		r := c.do(http.MethodPut, "/apis/chat/policies/policy", map[string]any{"properties": map[string]any{
			"value": "<policies><inbound><base /></inbound></policies>", "format": "xml"}})
		wantError(t, r, http.StatusBadRequest, "ValidationError", "", "Not allowed at 'Api' scope for 'WEBSOCKET' api type")
		c.must(http.StatusCreated, http.MethodPut, "/apis/chat/operations/onHandshake/policies/policy", map[string]any{"properties": map[string]any{
			"value": "<policies><inbound><base /></inbound></policies>", "format": "xml"}})
	})

	t.Run("paths are unique", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "ws-paths")
		c.must(http.StatusCreated, http.MethodPut, "/apis/one", map[string]any{"properties": wsAPI("team/path")})
		for _, tc := range []struct {
			name  string
			props map[string]any
		}{
			{"websocket", wsAPI("team/path")},
			{"http", httpAPI("team/path")},
			{"slashes around", wsAPI("/team/path/")},
		} {
			r := c.do(http.MethodPut, "/apis/two", map[string]any{"properties": tc.props})
			wantError(t, r, http.StatusBadRequest, "ValidationError", "path", "same Path")
		}
		c.must(http.StatusOK, http.MethodPut, "/apis/one", map[string]any{"properties": wsAPI("team/path")})
		c.must(http.StatusCreated, http.MethodPut, "/apis/two", map[string]any{"properties": wsAPI("team/other")})
		wantError(t, c.do(http.MethodPatch, "/apis/two", map[string]any{"properties": map[string]any{"path": "team/path"}}, "If-Match", "*"),
			http.StatusBadRequest, "ValidationError", "path", "")
		// A deleted API frees its path.
		c.must(http.StatusNoContent, http.MethodDelete, "/apis/one", nil, "If-Match", "*")
		c.must(http.StatusNotFound, http.MethodGet, "/apis/one", nil)
		c.must(http.StatusOK, http.MethodPatch, "/apis/two", map[string]any{"properties": map[string]any{"path": "team/path"}}, "If-Match", "*")
	})

	t.Run("http API operations", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "http-ops")
		c.put("/apis/rest", httpAPI("rest"))
		if got := c.names("/apis/rest/operations"); len(got) != 0 {
			t.Errorf("a new http API has operations %v, want none", got)
		}
		created := c.must(http.StatusCreated, http.MethodPut, "/apis/rest/operations/get-order", map[string]any{"properties": map[string]any{
			"displayName": "Get order", "method": "get", "urlTemplate": "/orders/{orderId}",
			"templateParameters": []any{map[string]any{"name": "orderId", "type": "string", "required": true}}}})
		p := armProps(t, created)
		if p["method"] != "GET" || p["urlTemplate"] != "/orders/{orderId}" || p["displayName"] != "Get order" {
			t.Errorf("operation properties %v", p)
		}
		c.must(http.StatusCreated, http.MethodPut, "/apis/rest/operations/create-order", map[string]any{"properties": map[string]any{
			"displayName": "Create order", "method": "POST", "urlTemplate": "/orders"}})
		if diff := cmp.Diff([]string{"create-order", "get-order"}, c.names("/apis/rest/operations")); diff != "" {
			t.Errorf("operations (-want +got):\n%s", diff)
		}
		if got := c.names("/apis/rest/operations?$filter=method%20eq%20'POST'"); !slices.Equal(got, []string{"create-order"}) {
			t.Errorf("operations with method POST: %v", got)
		}
		for _, bad := range []struct {
			target string
			props  map[string]any
		}{
			{"properties.urlTemplate", map[string]any{"displayName": "x", "method": "GET", "urlTemplate": "orders"}},
			{"properties.urlTemplate", map[string]any{"displayName": "x", "method": "GET", "urlTemplate": "/orders/{id"}},
			{"properties.method", map[string]any{"displayName": "x", "urlTemplate": "/"}},
			{"properties.displayName", map[string]any{"method": "GET", "urlTemplate": "/"}},
		} {
			wantError(t, c.do(http.MethodPut, "/apis/rest/operations/bad", map[string]any{"properties": bad.props}),
				http.StatusBadRequest, "ValidationError", bad.target, "")
		}
		c.must(http.StatusOK, http.MethodDelete, "/apis/rest/operations/get-order", nil, "If-Match", "*")
		c.must(http.StatusNoContent, http.MethodDelete, "/apis/rest/operations/get-order", nil, "If-Match", "*")
		if diff := cmp.Diff([]string{"create-order"}, c.names("/apis/rest/operations")); diff != "" {
			t.Errorf("operations after delete (-want +got):\n%s", diff)
		}
	})
}

func toAny(ss []string) []any {
	var out []any
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// subscriptionKeys calls listSecrets.
func (c svcClient) subscriptionKeys(name string) (primary, secondary string) {
	c.t.Helper()
	r := c.must(http.StatusOK, http.MethodPost, "/subscriptions/"+name+"/listSecrets", nil)
	var k struct{ PrimaryKey, SecondaryKey string }
	if err := json.Unmarshal(r.Body, &k); err != nil || k.PrimaryKey == "" || k.SecondaryKey == "" {
		c.t.Fatalf("listSecrets %s: %s", name, r.Body)
	}
	return k.PrimaryKey, k.SecondaryKey
}

func TestSubscriptions(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})

	t.Run("scope forms", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "sub-scopes")
		c.put("/apis/echo", wsAPI("echo"))
		c.put("/products/gold", map[string]any{"displayName": "Gold"})
		other := newSvcClient(t, env, "sub-scopes-other")
		other.put("/apis/echo", wsAPI("echo"))
		tests := []struct {
			name, scope, want string // want "" = refused
		}{
			{"all apis", "/apis", c.id("/apis")},
			{"one api", "/apis/echo", c.id("/apis/echo")},
			{"product", "/products/gold", c.id("/products/gold")},
			{"full api id", c.id("/apis/echo"), c.id("/apis/echo")},
			{"full product id", c.id("/products/gold"), c.id("/products/gold")},
			{"full all-apis id", c.id("/apis"), c.id("/apis")},
			{"name in another case", "/apis/ECHO", c.id("/apis/echo")},
			{"missing api", "/apis/nope", ""},
			{"missing product", "/products/nope", ""},
			{"another service's api", other.id("/apis/echo"), ""},
			{"not a scope", "/users/u1", ""},
			{"empty", "", ""},
		}
		for i, tc := range tests {
			rel := "/subscriptions/s" + string(rune('a'+i))
			r := c.do(http.MethodPut, rel, map[string]any{"properties": map[string]any{"scope": tc.scope, "displayName": tc.name}})
			if tc.want == "" {
				wantError(t, r, http.StatusBadRequest, "ValidationError", "properties.scope", "")
				continue
			}
			if r.Status != http.StatusCreated {
				t.Errorf("%s: status %d; body %s", tc.name, r.Status, r.Body)
				continue
			}
			if got := armProps(t, c.must(http.StatusOK, http.MethodGet, rel, nil))["scope"]; got != tc.want {
				t.Errorf("%s: scope %v, want %s", tc.name, got, tc.want)
			}
		}
	})

	t.Run("keys", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "sub-keys")
		gen := c.must(http.StatusCreated, http.MethodPut, "/subscriptions/gen", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Generated"}})
		p1, s1 := c.subscriptionKeys("gen")
		if !hex32.MatchString(p1) || !hex32.MatchString(s1) || p1 == s1 {
			t.Errorf("generated keys %q %q, want two different 32-hex-digit keys", p1, s1)
		}
		c.must(http.StatusCreated, http.MethodPut, "/subscriptions/given", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Given",
			"primaryKey": "my-primary-key-0001", "secondaryKey": "my-secondary-key-0001"}})
		if p, s := c.subscriptionKeys("given"); p != "my-primary-key-0001" || s != "my-secondary-key-0001" {
			t.Errorf("given keys came back as %q %q", p, s)
		}
		// Only the primary given: the secondary is generated.
		c.put("/subscriptions/half", map[string]any{"scope": "/apis", "displayName": "Half", "primaryKey": "my-primary-key-0002"})
		if p, s := c.subscriptionKeys("half"); p != "my-primary-key-0002" || !hex32.MatchString(s) {
			t.Errorf("half-given keys came back as %q %q", p, s)
		}

		for _, r := range []mgmttest.Response{
			gen,
			c.must(http.StatusOK, http.MethodGet, "/subscriptions/gen", nil),
			c.must(http.StatusOK, http.MethodGet, "/subscriptions/given", nil),
			c.must(http.StatusOK, http.MethodGet, "/subscriptions", nil),
			c.must(http.StatusOK, http.MethodGet, "/subscriptions?$filter=state%20eq%20'submitted'", nil),
		} {
			for _, s := range []string{"primaryKey", "secondaryKey", p1, s1, "my-primary-key-0001", "my-secondary-key-0001"} {
				if strings.Contains(string(r.Body), s) {
					t.Errorf("a subscription body contains %q: %s", s, r.Body)
				}
			}
		}

		// A re-PUT without keys keeps them.
		c.must(http.StatusOK, http.MethodPut, "/subscriptions/gen", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Generated"}})
		if p, s := c.subscriptionKeys("gen"); p != p1 || s != s1 {
			t.Errorf("re-PUT without keys changed them")
		}

		etag := c.must(http.StatusOK, http.MethodGet, "/subscriptions/gen", nil).Header.Get("ETag")
		if got := c.must(http.StatusOK, http.MethodPost, "/subscriptions/gen/listSecrets", nil).Header.Get("ETag"); got != etag {
			t.Errorf("listSecrets ETag %q, want the subscription's %q", got, etag)
		}
		c.must(http.StatusNoContent, http.MethodPost, "/subscriptions/gen/regeneratePrimaryKey", nil)
		p2, s2 := c.subscriptionKeys("gen")
		if p2 == p1 || !hex32.MatchString(p2) || s2 != s1 {
			t.Errorf("regeneratePrimaryKey: keys %q %q → %q %q, want only the primary changed", p1, s1, p2, s2)
		}
		if got := c.must(http.StatusOK, http.MethodPost, "/subscriptions/gen/listSecrets", nil).Header.Get("ETag"); got == etag || got == "" {
			t.Errorf("ETag %q did not change after regeneratePrimaryKey", got)
		}
		c.must(http.StatusNoContent, http.MethodPost, "/subscriptions/gen/regenerateSecondaryKey", nil)
		p3, s3 := c.subscriptionKeys("gen")
		if p3 != p2 || s3 == s2 || !hex32.MatchString(s3) {
			t.Errorf("regenerateSecondaryKey: keys %q %q → %q %q, want only the secondary changed", p2, s2, p3, s3)
		}
		wantError(t, c.do(http.MethodPost, "/subscriptions/nope/regeneratePrimaryKey", nil), http.StatusNotFound, "ResourceNotFound", "", "")
		wantError(t, c.do(http.MethodPost, "/subscriptions/nope/listSecrets", nil), http.StatusNotFound, "ResourceNotFound", "", "")

		// A key belongs to one subscription.
		for _, tc := range []struct {
			name, field, key string
		}{
			{"primary taken as primary", "primaryKey", "my-primary-key-0001"},
			{"primary taken as secondary", "secondaryKey", "my-primary-key-0001"},
			{"secondary taken", "primaryKey", "my-secondary-key-0001"},
			{"generated key taken", "primaryKey", p3},
		} {
			r := c.do(http.MethodPut, "/subscriptions/dup", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Dup", tc.field: tc.key}})
			wantError(t, r, http.StatusBadRequest, "ValidationError", "properties."+tc.field, "")
		}
		c.must(http.StatusNotFound, http.MethodGet, "/subscriptions/dup", nil)
		wantError(t, c.do(http.MethodPut, "/subscriptions/same", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Same",
			"primaryKey": "k-same-1", "secondaryKey": "k-same-1"}}), http.StatusBadRequest, "ValidationError", "", "")
		// The holder itself may be re-PUT with its keys.
		c.must(http.StatusOK, http.MethodPut, "/subscriptions/given", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Given",
			"primaryKey": "my-primary-key-0001", "secondaryKey": "my-secondary-key-0001"}})
		// Once a key is regenerated away, it is free again.
		c.must(http.StatusCreated, http.MethodPut, "/subscriptions/reuse", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "Reuse", "primaryKey": p1}})
	})

	t.Run("states", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "sub-states")
		for _, state := range []string{"active", "suspended", "submitted", "rejected", "cancelled", "expired"} {
			r := c.must(http.StatusCreated, http.MethodPut, "/subscriptions/"+state, map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": state, "state": state}})
			if got := armProps(t, r)["state"]; got != state {
				t.Errorf("state %s came back as %v", state, got)
			}
		}
		if got := armProps(t, c.must(http.StatusCreated, http.MethodPut, "/subscriptions/default", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "d"}}))["state"]; got != "submitted" {
			t.Errorf("default state %v, want submitted", got)
		}
		for _, bad := range []string{"paused", "Active ", "deleted"} {
			wantError(t, c.do(http.MethodPut, "/subscriptions/bad", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "b", "state": bad}}),
				http.StatusBadRequest, "ValidationError", "properties.state", "")
		}
		r := c.must(http.StatusOK, http.MethodPatch, "/subscriptions/submitted", map[string]any{"properties": map[string]any{"state": "active"}}, "If-Match", "*")
		if p := armProps(t, r); p["state"] != "active" || p["displayName"] != "submitted" {
			t.Errorf("PATCH state: %v", p)
		}
		if got := c.names("/subscriptions?$filter=state%20eq%20'active'"); !slices.Equal(got, []string{"active", "submitted"}) {
			t.Errorf("active subscriptions %v", got)
		}
	})

	t.Run("by product and by user", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "sub-related")
		c.put("/apis/echo", wsAPI("echo"))
		c.put("/products/p1", map[string]any{"displayName": "P1"})
		c.put("/products/p2", map[string]any{"displayName": "P2"})
		c.put("/products/empty", map[string]any{"displayName": "Empty"})
		c.put("/users/u1", map[string]any{"email": "u1@example.com", "firstName": "U", "lastName": "One"})
		c.put("/users/u2", map[string]any{"email": "u2@example.com", "firstName": "U", "lastName": "Two"})
		for _, s := range []struct{ name, scope, owner string }{
			{"s1", "/products/p1", "/users/u1"},
			{"s2", "/products/p1", c.id("/users/u2")},
			{"s3", "/products/p2", "/users/u1"},
			{"s4", "/apis", ""},
			{"s5", "/apis/echo", "/users/u2"},
		} {
			props := map[string]any{"scope": s.scope, "displayName": s.name}
			if s.owner != "" {
				props["ownerId"] = s.owner
			}
			r := c.put("/subscriptions/"+s.name, props)
			if want := c.id("/users/" + s.owner[strings.LastIndex(s.owner, "/")+1:]); s.owner != "" && armProps(t, r)["ownerId"] != want {
				t.Errorf("%s: ownerId %v, want %s", s.name, armProps(t, r)["ownerId"], want)
			}
		}
		wantError(t, c.do(http.MethodPut, "/subscriptions/s6", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "x", "ownerId": "/users/nobody"}}),
			http.StatusBadRequest, "ValidationError", "properties.ownerId", "")
		for rel, want := range map[string][]string{
			"/products/p1/subscriptions":    {"s1", "s2"},
			"/products/p2/subscriptions":    {"s3"},
			"/products/empty/subscriptions": nil,
			"/users/u1/subscriptions":       {"s1", "s3"},
			"/users/u2/subscriptions":       {"s2", "s5"},
		} {
			r := c.must(http.StatusOK, http.MethodGet, rel, nil)
			if diff := cmp.Diff(want, listNames(t, r)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", rel, diff)
			}
			if n := *decodeList(t, r).Count; n != len(want) {
				t.Errorf("%s: count %d, want %d", rel, n, len(want))
			}
		}
		if r := c.must(http.StatusOK, http.MethodGet, "/users/u1/subscriptions?$top=1", nil); len(decodeList(t, r).Value) != 1 || decodeList(t, r).NextLink == nil {
			t.Errorf("/users/u1/subscriptions?$top=1: %s", r.Body)
		}
		c.must(http.StatusOK, http.MethodGet, "/users/u1/subscriptions/s1", nil)
		c.must(http.StatusNotFound, http.MethodGet, "/users/u1/subscriptions/s2", nil)
		c.must(http.StatusNotFound, http.MethodGet, "/products/nope/subscriptions", nil)

		wantError(t, c.do(http.MethodDelete, "/products/p1", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "")
		wantError(t, c.do(http.MethodDelete, "/users/u1", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "")
		c.must(http.StatusOK, http.MethodGet, "/subscriptions/s1", nil)
		c.must(http.StatusOK, http.MethodDelete, "/products/empty", nil, "If-Match", "*")
		c.must(http.StatusOK, http.MethodDelete, "/products/p1?deleteSubscriptions=true", nil, "If-Match", "*")
		c.must(http.StatusNotFound, http.MethodGet, "/products/p1", nil)
		for _, gone := range []string{"s1", "s2"} {
			c.must(http.StatusNotFound, http.MethodGet, "/subscriptions/"+gone, nil)
		}
		if diff := cmp.Diff([]string{"s3", "s4", "s5"}, c.names("/subscriptions")); diff != "" {
			t.Errorf("subscriptions after deleting p1 (-want +got):\n%s", diff)
		}
	})
}

const basePolicy = "<policies>\n\t<inbound>\n\t\t<base />\n\t</inbound>\n</policies>"

func policyDoc(value, format string) map[string]any {
	p := map[string]any{"value": value}
	if format != "" {
		p["format"] = format
	}
	return map[string]any{"properties": p}
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})

	setup := func(t *testing.T, name string) svcClient {
		c := newSvcClient(t, env, name)
		c.put("/apis/rest", httpAPI("rest"))
		c.put("/apis/rest/operations/get", map[string]any{"displayName": "Get", "method": "GET", "urlTemplate": "/"})
		c.put("/apis/chat", wsAPI("chat"))
		c.put("/products/gold", map[string]any{"displayName": "Gold"})
		return c
	}
	scopes := []struct{ name, rel string }{
		{"global", "/policies/policy"},
		{"product", "/products/gold/policies/policy"},
		{"http api", "/apis/rest/policies/policy"},
		{"http operation", "/apis/rest/operations/get/policies/policy"},
		{"onHandshake", "/apis/chat/operations/onHandshake/policies/policy"},
	}

	t.Run("scopes", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "pol-scopes")
		doc := "<policies>\n\t<inbound>\n\t\t<base />\n\t\t<set-header name=\"X-Scope\" exists-action=\"override\">\n\t\t\t<value>v</value>\n\t\t</set-header>\n\t</inbound>\n</policies>"
		for _, s := range scopes {
			c.must(http.StatusCreated, http.MethodPut, s.rel, policyDoc(doc, "xml"))
			got := armProps(t, c.must(http.StatusOK, http.MethodGet, s.rel, nil))
			if got["value"] != doc {
				t.Errorf("%s: GET value %q, want the document as PUT", s.name, got["value"])
			}
			c.must(http.StatusOK, http.MethodPut, s.rel, policyDoc(doc, ""))
			list := decodeList(t, c.must(http.StatusOK, http.MethodGet, strings.TrimSuffix(s.rel, "/policy"), nil))
			if len(list.Value) != 1 || list.Value[0]["name"] != "policy" || list.Value[0]["id"] != c.id(s.rel) {
				t.Errorf("%s: policy list %v", s.name, list.Value)
			}
		}
		// Each scope holds its own document.
		c.must(http.StatusOK, http.MethodDelete, "/products/gold/policies/policy", nil, "If-Match", "*")
		c.must(http.StatusNotFound, http.MethodGet, "/products/gold/policies/policy", nil)
		c.must(http.StatusOK, http.MethodGet, "/policies/policy", nil)
		wantError(t, c.do(http.MethodPut, "/products/nope/policies/policy", policyDoc(basePolicy, "xml")), http.StatusNotFound, "ResourceNotFound", "", "")
	})

	t.Run("xml and rawxml", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "pol-formats")
		raw := "<policies>\n\t<inbound>\n\t\t<set-header name=\"X-Region\" exists-action=\"override\">\n\t\t\t<value>@(context.Request.Headers.GetValueOrDefault(\"X-Region\",\"\") == \"eu\" && true)</value>\n\t\t</set-header>\n\t</inbound>\n</policies>"
		escaped := `@(context.Request.Headers.GetValueOrDefault("X-Region","") == "eu" &amp;&amp; true)`
		for _, s := range scopes {
			c.must(http.StatusCreated, http.MethodPut, s.rel, policyDoc(raw, "rawxml"))
			if got := armProps(t, c.must(http.StatusOK, http.MethodGet, s.rel+"?format=rawxml", nil))["value"]; got != raw {
				t.Errorf("%s: rawxml GET %q, want the rawxml PUT", s.name, got)
			}
			xml := armProps(t, c.must(http.StatusOK, http.MethodGet, s.rel, nil))
			if v, _ := xml["value"].(string); !strings.Contains(v, escaped) || strings.Contains(v, "&& true") {
				t.Errorf("%s: default (xml) GET %q, want the expression XML-escaped", s.name, v)
			}
			if got := armProps(t, c.must(http.StatusOK, http.MethodGet, s.rel+"?format=xml", nil)); !cmp.Equal(got, xml) {
				t.Errorf("%s: ?format=xml %v differs from the default %v", s.name, got, xml)
			}
		}
		// An XML-escaped document comes back unescaped as rawxml.
		x := strings.Replace(raw, "&& true", "&amp;&amp; true", 1)
		c.must(http.StatusOK, http.MethodPut, "/policies/policy", policyDoc(x, "xml"))
		if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/policies/policy?format=rawxml", nil))["value"]; !strings.Contains(got.(string), "\"eu\" && true)") {
			t.Errorf("xml→rawxml GET %q", got)
		}
		wantError(t, c.do(http.MethodGet, "/policies/policy?format=json", nil), http.StatusBadRequest, "ValidationError", "", "")
		wantError(t, c.do(http.MethodPut, "/policies/policy", policyDoc(basePolicy, "xml-link")), http.StatusBadRequest, "ValidationError", "properties.format", "")
	})

	t.Run("invalid documents", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "pol-invalid")
		tests := []struct {
			name, value, line string
		}{
			{"not xml", "hello", "line 1"},
			{"unclosed element", "<policies>\n\t<inbound>\n\t\t<base />\n</policies>", "line 4"},
			{"unknown element", "<policies>\n\t<inbound>\n\t\t<frobnicate />\n\t</inbound>\n</policies>", "line 3"},
			{"wrong root", "\n<policy />", "line 2"},
			{"bad attribute value", "<policies>\n\t<inbound>\n\t\t<rate-limit-by-key calls=\"many\" renewal-period=\"60\" counter-key=\"k\" />\n\t</inbound>\n</policies>", "line 3"},
		}
		for _, s := range scopes {
			for _, tc := range tests {
				r := c.do(http.MethodPut, s.rel, policyDoc(tc.value, "xml"))
				wantError(t, r, http.StatusBadRequest, "ValidationError", "representation", "")
				if msg := strings.ToLower(armErrorOf(r).Message); !strings.Contains(msg, tc.line) {
					t.Errorf("%s at %s: message %q does not name %s", tc.name, s.name, armErrorOf(r).Message, tc.line)
				}
			}
			c.must(http.StatusNotFound, http.MethodGet, s.rel, nil)
		}
		wantError(t, c.do(http.MethodPut, "/policies/policy", policyDoc("", "xml")), http.StatusBadRequest, "ValidationError", "properties.value", "")
		for _, id := range []string{"other", "policies", "policy1"} {
			r := c.do(http.MethodPut, "/policies/"+id, policyDoc(basePolicy, "xml"))
			if r.Status != http.StatusBadRequest || armErrorOf(r).Code != "ValidationError" {
				t.Errorf("policyId %q: status %d %s, want 400 ValidationError", id, r.Status, r.Body)
			}
		}
	})

	t.Run("unsupported at onHandshake", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "pol-unsupported")
		cors := "<policies>\n\t<inbound>\n\t\t<base />\n\t\t<cors allow-credentials=\"false\">\n\t\t\t<allowed-origins>\n\t\t\t\t<origin>*</origin>\n\t\t\t</allowed-origins>\n\t\t</cors>\n\t</inbound>\n</policies>"
		wantError(t, c.do(http.MethodPut, "/apis/chat/operations/onHandshake/policies/policy", policyDoc(cors, "xml")),
			http.StatusBadRequest, "ValidationError", "representation", "cors")
		mock := "<policies>\n\t<inbound>\n\t\t<mock-response status-code=\"200\" content-type=\"application/json\" />\n\t</inbound>\n</policies>"
		wantError(t, c.do(http.MethodPut, "/apis/chat/operations/onHandshake/policies/policy", policyDoc(mock, "xml")),
			http.StatusBadRequest, "ValidationError", "representation", "line 3")
		for _, rel := range []string{"/products/gold/policies/policy", "/policies/policy", "/apis/rest/policies/policy", "/apis/rest/operations/get/policies/policy"} {
			c.must(http.StatusCreated, http.MethodPut, rel, policyDoc(cors, "xml"))
		}
	})

	t.Run("named values", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "pol-named")
		doc := "<policies>\n\t<inbound>\n\t\t<set-header name=\"X-Audience\" exists-action=\"override\">\n\t\t\t<value>{{ws-audience}}</value>\n\t\t</set-header>\n\t</inbound>\n</policies>"
		for _, s := range scopes {
			wantError(t, c.do(http.MethodPut, s.rel, policyDoc(doc, "xml")), http.StatusBadRequest, "ValidationError", "representation", "ws-audience")
		}
		// Referenced by display name: the resource name differs.
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/aud", map[string]any{"properties": map[string]any{"displayName": "ws-audience", "value": "api://chat"}})
		for _, s := range scopes {
			c.must(http.StatusCreated, http.MethodPut, s.rel, policyDoc(doc, "xml"))
		}
		wantError(t, c.do(http.MethodDelete, "/namedValues/aud", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "")
		for _, s := range scopes {
			c.must(http.StatusOK, http.MethodDelete, s.rel, nil, "If-Match", "*")
		}
		c.must(http.StatusOK, http.MethodDelete, "/namedValues/aud", nil, "If-Match", "*")

		// Referenced by resource name.
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/backend-key", map[string]any{"properties": map[string]any{"displayName": "BackendKey", "value": "k", "secret": true}})
		byName := strings.ReplaceAll(doc, "ws-audience", "backend-key")
		c.must(http.StatusCreated, http.MethodPut, "/policies/policy", policyDoc(byName, "xml"))
		wantError(t, c.do(http.MethodDelete, "/namedValues/backend-key", nil, "If-Match", "*"), http.StatusConflict, "Conflict", "", "")
	})

	t.Run("named value changes re-check their policies", func(t *testing.T) {
		t.Parallel()
		c := setup(t, "pol-recheck")
		nv := func(name, value string, secret bool) map[string]any {
			return map[string]any{"properties": map[string]any{"displayName": name, "value": value, "secret": secret}}
		}
		inbound := func(body string) map[string]any {
			return policyDoc("<policies><inbound><base />"+body+"</inbound></policies>", "xml")
		}
		// A value a policy uses as a number must stay one.
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/calls", nv("calls", "5", false))
		c.must(http.StatusCreated, http.MethodPut, "/apis/chat/operations/onHandshake/policies/policy",
			inbound(`<rate-limit calls="{{calls}}" renewal-period="60" />`))
		wantError(t, c.do(http.MethodPut, "/namedValues/calls", nv("calls", "five", false), "If-Match", "*"),
			http.StatusBadRequest, "ValidationError", "", "would break the policy of 'apis/chat/operations/onHandshake'")
		if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/namedValues/calls", nil))["value"]; got != "5" {
			t.Errorf("after the refused change the value is %v, want 5", got)
		}
		// A value that grows must not multiply a document past the limit (memory and time on
		// management and every node).
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/grow", nv("grow", "x", false))
		c.must(http.StatusCreated, http.MethodPut, "/apis/rest/policies/policy",
			inbound(`<set-header name="X" exists-action="override"><value>`+strings.Repeat("{{grow}}", 200)+`</value></set-header>`))
		wantError(t, c.do(http.MethodPut, "/namedValues/grow", nv("grow", strings.Repeat("x", 4096), false), "If-Match", "*"),
			http.StatusBadRequest, "ValidationError", "", "expand the document")
		// A refusal never reveals a secret value, even a part of it.
		const secret = "hunter2 correct-horse"
		c.must(http.StatusCreated, http.MethodPut, "/namedValues/pw", nv("pw", secret, true))
		r := c.do(http.MethodPut, "/policies/policy", inbound(`<set-header name="X" exists-action="override"><value>@({{pw}})</value></set-header>`))
		wantError(t, r, http.StatusBadRequest, "ValidationError", "", "secret named value 'pw'")
		if strings.Contains(string(r.Body), "hunter2") || strings.Contains(string(r.Body), "horse") {
			t.Errorf("the refusal reveals the secret: %s", r.Body)
		}
	})
}

func TestNamedValues(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "named-values")
	const secret = "s3cr3t-value-that-must-stay-hidden"

	created := c.must(http.StatusCreated, http.MethodPut, "/namedValues/sec", map[string]any{"properties": map[string]any{"displayName": "sec", "value": secret, "secret": true}})
	c.must(http.StatusCreated, http.MethodPut, "/namedValues/plain", map[string]any{"properties": map[string]any{"displayName": "plain", "value": "visible-value", "tags": []string{"a"}}})
	for name, r := range map[string]mgmttest.Response{
		"PUT":  created,
		"GET":  c.must(http.StatusOK, http.MethodGet, "/namedValues/sec", nil),
		"list": c.must(http.StatusOK, http.MethodGet, "/namedValues", nil),
	} {
		if strings.Contains(string(r.Body), secret) {
			t.Errorf("%s shows the secret value: %s", name, r.Body)
		}
	}
	if p := armProps(t, c.must(http.StatusOK, http.MethodGet, "/namedValues/sec", nil)); p["secret"] != true || p["displayName"] != "sec" {
		t.Errorf("secret named value properties %v", p)
	}
	if p := armProps(t, c.must(http.StatusOK, http.MethodGet, "/namedValues/plain", nil)); p["value"] != "visible-value" || p["secret"] != false {
		t.Errorf("plain named value properties %v", p)
	}
	var plainInList bool
	for _, v := range decodeList(t, c.must(http.StatusOK, http.MethodGet, "/namedValues", nil)).Value {
		if p, _ := v["properties"].(map[string]any); v["name"] == "plain" && p["value"] == "visible-value" {
			plainInList = true
		}
	}
	if !plainInList {
		t.Error("the list does not show the plain named value's value")
	}

	listValue := func(name string) string {
		t.Helper()
		r := c.must(http.StatusOK, http.MethodPost, "/namedValues/"+name+"/listValue", nil)
		if r.Header.Get("ETag") == "" {
			t.Errorf("listValue %s has no ETag", name)
		}
		v, _ := r.JSON()["value"].(string)
		return v
	}
	if got := listValue("sec"); got != secret {
		t.Errorf("listValue sec = %q, want the secret", got)
	}
	if got := listValue("plain"); got != "visible-value" {
		t.Errorf("listValue plain = %q", got)
	}
	// A PATCH that does not name the value keeps it.
	c.must(http.StatusOK, http.MethodPatch, "/namedValues/sec", map[string]any{"properties": map[string]any{"tags": []string{"rotated"}}}, "If-Match", "*")
	if got := listValue("sec"); got != secret {
		t.Errorf("after PATCH of tags, listValue sec = %q, want the secret kept", got)
	}
	wantError(t, c.do(http.MethodPost, "/namedValues/nope/listValue", nil), http.StatusNotFound, "ResourceNotFound", "", "")

	for _, tc := range []struct {
		name, target string
		props        map[string]any
	}{
		{"space in displayName", "properties.displayName", map[string]any{"displayName": "has space", "value": "v"}},
		{"slash in displayName", "properties.displayName", map[string]any{"displayName": "a/b", "value": "v"}},
		{"braces in displayName", "properties.displayName", map[string]any{"displayName": "{{x}}", "value": "v"}},
		{"no displayName", "properties.displayName", map[string]any{"value": "v"}},
		{"empty value", "properties.value", map[string]any{"displayName": "e", "value": ""}},
		{"blank value", "properties.value", map[string]any{"displayName": "e", "value": "  \t"}},
		{"no value", "properties.value", map[string]any{"displayName": "e"}},
		{"display name taken", "properties.displayName", map[string]any{"displayName": "plain", "value": "v"}},
	} {
		wantError(t, c.do(http.MethodPut, "/namedValues/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
	}
	c.must(http.StatusCreated, http.MethodPut, "/namedValues/ok", map[string]any{"properties": map[string]any{"displayName": "Ok.name-1_x", "value": "v"}})
	// Display names stay unique when renamed, too; keeping one's own is fine.
	wantError(t, c.do(http.MethodPatch, "/namedValues/ok", map[string]any{"properties": map[string]any{"displayName": "plain"}}, "If-Match", "*"),
		http.StatusBadRequest, "ValidationError", "properties.displayName", "")
	c.must(http.StatusOK, http.MethodPut, "/namedValues/ok", map[string]any{"properties": map[string]any{"displayName": "Ok.name-1_x", "value": "v2"}})
}

// gatewayConfig fetches a gateway's configuration snapshot with token.
func gatewayConfig(t *testing.T, env *mgmttest.Env, token string) (mgmttest.Response, configwire.Snapshot) {
	t.Helper()
	r := env.Do(t, http.MethodGet, "/gatehouse/gateway/v1/config", nil, "Authorization", "GatewayKey "+token)
	var snap configwire.Snapshot
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &snap); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}
	return r, snap
}

func entityNames(snap configwire.Snapshot, kind string) []string {
	var out []string
	for _, e := range snap.Entities {
		if e.Kind == kind {
			out = append(out, strings.TrimPrefix(e.Parent+"/", "/")+e.Name)
		}
	}
	slices.Sort(out)
	return out
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestGateways(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})

	t.Run("resource", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "gw-crud")
		r := c.must(http.StatusCreated, http.MethodPut, "/gateways/edge", map[string]any{"properties": map[string]any{
			"locationData": map[string]any{"name": "Amsterdam DC", "city": "Amsterdam", "countryOrRegion": "NL"}, "description": "edge"}})
		if p := armProps(t, r); !cmp.Equal(p["locationData"], map[string]any{"name": "Amsterdam DC", "city": "Amsterdam", "countryOrRegion": "NL"}) {
			t.Errorf("locationData %v", p["locationData"])
		}
		for _, s := range []string{"primary", "secondary"} {
			if strings.Contains(string(r.Body), `"`+s+`"`) {
				t.Errorf("gateway body shows its %s key: %s", s, r.Body)
			}
		}
		c.must(http.StatusCreated, http.MethodPut, "/gateways/core", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "core"}}})
		if diff := cmp.Diff([]string{"core", "edge"}, c.names("/gateways")); diff != "" {
			t.Errorf("gateways (-want +got):\n%s", diff)
		}
		for _, id := range []string{"managed", "Managed"} {
			wantError(t, c.do(http.MethodPut, "/gateways/"+id, map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "x"}}}),
				http.StatusBadRequest, "ValidationError", "", "managed")
		}
		wantError(t, c.do(http.MethodPut, "/gateways/nowhere", map[string]any{"properties": map[string]any{"description": "x"}}),
			http.StatusBadRequest, "ValidationError", "properties.locationData.name", "")

		keys := func() (string, string) {
			t.Helper()
			r := c.must(http.StatusOK, http.MethodPost, "/gateways/edge/listKeys", nil)
			if r.Header.Get("ETag") == "" {
				t.Error("listKeys has no ETag")
			}
			var k struct{ Primary, Secondary string }
			if err := json.Unmarshal(r.Body, &k); err != nil || k.Primary == "" || k.Secondary == "" || k.Primary == k.Secondary {
				t.Fatalf("listKeys: %s", r.Body)
			}
			return k.Primary, k.Secondary
		}
		p1, s1 := keys()
		c.must(http.StatusNoContent, http.MethodPost, "/gateways/edge/regenerateKey", map[string]any{"keyType": "primary"})
		p2, s2 := keys()
		if p2 == p1 || s2 != s1 {
			t.Errorf("regenerateKey primary changed primary %v secondary %v, want only primary", p2 != p1, s2 != s1)
		}
		c.must(http.StatusNoContent, http.MethodPost, "/gateways/edge/regenerateKey", map[string]any{"keyType": "secondary"})
		p3, s3 := keys()
		if p3 != p2 || s3 == s2 {
			t.Errorf("regenerateKey secondary changed primary %v secondary %v, want only secondary", p3 != p2, s3 != s2)
		}
		wantError(t, c.do(http.MethodPost, "/gateways/edge/regenerateKey", map[string]any{"keyType": "tertiary"}), http.StatusBadRequest, "ValidationError", "keyType", "")
		// A PUT that replaces the gateway keeps its keys.
		c.must(http.StatusOK, http.MethodPut, "/gateways/edge", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "moved"}}})
		if p, s := keys(); p != p3 || s != s3 {
			t.Error("re-PUT of the gateway changed its keys")
		}
		c.must(http.StatusOK, http.MethodDelete, "/gateways/edge", nil, "If-Match", "*")
		wantError(t, c.do(http.MethodPost, "/gateways/edge/listKeys", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	})

	t.Run("generateToken expiry", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "gw-tokens")
		c.put("/gateways/gw", map[string]any{"locationData": map[string]any{"name": "dc"}})
		now := time.Now().UTC()
		for _, tc := range []struct {
			name    string
			keyType string
			expiry  string
			ok      bool
		}{
			{"one hour", "primary", now.Add(time.Hour).Format(time.RFC3339), true},
			{"29 days on the secondary key", "secondary", now.Add(29 * 24 * time.Hour).Format(time.RFC3339), true},
			{"31 days", "primary", now.Add(31 * 24 * time.Hour).Format(time.RFC3339), false},
			{"past", "primary", now.Add(-time.Hour).Format(time.RFC3339), false},
			{"not a date", "primary", "next week", false},
			{"no expiry", "primary", "", false},
			{"bad key type", "tertiary", now.Add(time.Hour).Format(time.RFC3339), false},
		} {
			r := c.do(http.MethodPost, "/gateways/gw/generateToken", map[string]any{"keyType": tc.keyType, "expiry": tc.expiry})
			if !tc.ok {
				wantError(t, r, http.StatusBadRequest, "ValidationError", "", "")
				continue
			}
			v, _ := r.JSON()["value"].(string)
			if r.Status != http.StatusOK || strings.Count(v, "&") != 2 {
				t.Errorf("%s: status %d, token %q; want 200 and a token of the form id&expiry&signature", tc.name, r.Status, v)
			}
		}
		wantError(t, c.do(http.MethodPost, "/gateways/nope/generateToken", map[string]any{"keyType": "primary", "expiry": now.Add(time.Hour).Format(time.RFC3339)}),
			http.StatusNotFound, "ResourceNotFound", "", "")
	})

	t.Run("api links", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "gw-links")
		c.put("/gateways/gw", map[string]any{"locationData": map[string]any{"name": "dc"}})
		c.put("/apis/chat", wsAPI("chat"))
		c.put("/apis/feed", wsAPI("feed"))
		r := c.must(http.StatusCreated, http.MethodPut, "/gateways/gw/apis/chat", nil)
		if got := r.JSON(); got["type"] != "Microsoft.ApiManagement/service/gateways/apis" || got["name"] != "chat" {
			t.Errorf("link PUT body %s", r.Body)
		}
		c.must(http.StatusOK, http.MethodPut, "/gateways/gw/apis/chat", map[string]any{"properties": map[string]any{"provisioningState": "created"}})
		c.must(http.StatusOK, http.MethodHead, "/gateways/gw/apis/chat", nil)
		c.must(http.StatusNotFound, http.MethodHead, "/gateways/gw/apis/feed", nil)
		if diff := cmp.Diff([]string{"chat"}, c.names("/gateways/gw/apis")); diff != "" {
			t.Errorf("gateway apis (-want +got):\n%s", diff)
		}
		wantError(t, c.do(http.MethodPut, "/gateways/gw/apis/nope", nil), http.StatusNotFound, "ResourceNotFound", "", "")
		wantError(t, c.do(http.MethodPut, "/gateways/nope/apis/chat", nil), http.StatusNotFound, "ResourceNotFound", "", "")
		c.must(http.StatusOK, http.MethodDelete, "/gateways/gw/apis/chat", nil)
		c.must(http.StatusNotFound, http.MethodHead, "/gateways/gw/apis/chat", nil)
		c.must(http.StatusNoContent, http.MethodDelete, "/gateways/gw/apis/chat", nil)
		c.must(http.StatusOK, http.MethodGet, "/apis/chat", nil)
	})

	t.Run("token and snapshot", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "gw-snapshot")
		sid := serviceID(t, env, "gw-snapshot")
		c.put("/gateways/gw", map[string]any{"locationData": map[string]any{"name": "dc"}})
		c.put("/apis/chat", wsAPI("chat"))
		c.put("/apis/other", wsAPI("other"))
		c.put("/apis/chat/operations/onHandshake/policies/policy", map[string]any{"value": basePolicy})
		c.put("/apis/other/operations/onHandshake/policies/policy", map[string]any{"value": basePolicy})
		c.put("/products/gold", map[string]any{"displayName": "Gold"})
		c.must(http.StatusCreated, http.MethodPut, "/products/gold/apis/chat", nil)
		c.put("/products/silver", map[string]any{"displayName": "Silver"})
		c.must(http.StatusCreated, http.MethodPut, "/products/silver/apis/other", nil)
		c.put("/subscriptions/gold-sub", map[string]any{"scope": "/products/gold", "displayName": "Gold", "state": "active"})
		c.put("/subscriptions/chat-sub", map[string]any{"scope": "/apis/chat", "displayName": "Chat"})
		c.put("/subscriptions/all-sub", map[string]any{"scope": "/apis", "displayName": "All"})
		c.put("/subscriptions/other-sub", map[string]any{"scope": "/apis/other", "displayName": "Other"})
		c.put("/subscriptions/silver-sub", map[string]any{"scope": "/products/silver", "displayName": "Silver"})
		c.put("/namedValues/sec", map[string]any{"displayName": "sec", "value": "secret-for-gateways", "secret": true})
		c.put("/policies/policy", map[string]any{"value": basePolicy})
		c.put("/products/gold/policies/policy", map[string]any{"value": basePolicy})
		c.put("/products/silver/policies/policy", map[string]any{"value": basePolicy})
		c.must(http.StatusCreated, http.MethodPut, "/gateways/gw/apis/chat", nil)
		c.must(http.StatusNoContent, http.MethodHead, "/products/gold/apis/chat", nil)

		primaryToken := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/generateToken",
			map[string]any{"keyType": "primary", "expiry": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)}).JSON()["value"].(string)
		secondaryToken := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/generateToken",
			map[string]any{"keyType": "secondary", "expiry": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)}).JSON()["value"].(string)

		r, snap := gatewayConfig(t, env, primaryToken)
		if r.Status != http.StatusOK {
			t.Fatalf("config with a fresh token: status %d; body %s", r.Status, r.Body)
		}
		if snap.ServiceID != sid || snap.Gateway != "gw" || snap.Revision <= 0 || snap.NATS.Subject != "gatehouse.config."+sid || snap.NATS.Stream != "GATEHOUSE_CONFIG" {
			t.Errorf("snapshot header: service %q gateway %q revision %d nats %+v", snap.ServiceID, snap.Gateway, snap.Revision, snap.NATS)
		}
		for kind, want := range map[string][]string{
			"apis":          {"chat"},
			"operations":    {"apis/chat/onHandshake"},
			"policies":      {"apis/chat/operations/onHandshake/policy", "policy", "products/gold/policy"},
			"products":      {"gold"},
			"productApis":   {"products/gold/chat"},
			"subscriptions": {"all-sub", "chat-sub", "gold-sub"},
			"namedValues":   {"sec"},
		} {
			if diff := cmp.Diff(want, entityNames(snap, kind)); diff != "" {
				t.Errorf("snapshot %s (-want +got):\n%s", kind, diff)
			}
		}
		for _, e := range snap.Entities {
			switch {
			case e.Kind == "subscriptions":
				p, s := c.subscriptionKeys(e.Name)
				if diff := cmp.Diff([]string{sha256Hex(p), sha256Hex(s)}, e.KeyHashes); diff != "" {
					t.Errorf("subscription %s keyHashes (-sha256 of the keys +got):\n%s", e.Name, diff)
				}
				for _, k := range []string{p, s} {
					if strings.Contains(string(r.Body), k) {
						t.Errorf("snapshot contains the plaintext key of %s", e.Name)
					}
				}
			case e.Kind == "namedValues" && e.Name == "sec":
				if !e.Secret || e.SecretValue != "secret-for-gateways" {
					t.Errorf("secret named value in snapshot: secret %v value %q", e.Secret, e.SecretValue)
				}
			}
		}
		checkStreamMatches(t, env, primaryToken, snap)
		gwKeys := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/listKeys", nil).JSON()
		if strings.Contains(string(r.Body), gwKeys["primary"].(string)) || strings.Contains(string(r.Body), gwKeys["secondary"].(string)) {
			t.Error("snapshot contains a gateway key")
		}

		// Unlinking an API takes it out of the snapshot.
		c.must(http.StatusOK, http.MethodDelete, "/gateways/gw/apis/chat", nil)
		c.must(http.StatusCreated, http.MethodPut, "/gateways/gw/apis/other", nil)
		_, snap = gatewayConfig(t, env, primaryToken)
		if got := entityNames(snap, "apis"); !slices.Equal(got, []string{"other"}) {
			t.Errorf("apis after relinking: %v, want [other]", got)
		}
		if got := entityNames(snap, "subscriptions"); !slices.Equal(got, []string{"all-sub", "other-sub", "silver-sub"}) {
			t.Errorf("subscriptions after relinking: %v", got)
		}

		for _, bad := range []struct{ name, header string }{
			{"no header", ""},
			{"bearer admin token", "Bearer " + mgmttest.AdminToken},
			{"garbage", "GatewayKey garbage"},
			{"tampered signature", "GatewayKey " + primaryToken[:len(primaryToken)-4] + "AAA="},
		} {
			r := env.Do(t, http.MethodGet, "/gatehouse/gateway/v1/config", nil, "Authorization", bad.header)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("%s: status %d, want 401; body %s", bad.name, r.Status, r.Body)
			}
		}

		// Regenerating the signing key revokes its tokens, and only those.
		c.must(http.StatusNoContent, http.MethodPost, "/gateways/gw/regenerateKey", map[string]any{"keyType": "primary"})
		if r, _ := gatewayConfig(t, env, primaryToken); r.Status != http.StatusUnauthorized {
			t.Errorf("token of a regenerated key: status %d, want 401", r.Status)
		}
		if r, _ := gatewayConfig(t, env, secondaryToken); r.Status != http.StatusOK {
			t.Errorf("token of the secondary key after regenerating the primary: status %d, want 200", r.Status)
		}
		// Deleting the gateway revokes every token.
		c.must(http.StatusOK, http.MethodDelete, "/gateways/gw", nil, "If-Match", "*")
		if r, _ := gatewayConfig(t, env, secondaryToken); r.Status != http.StatusUnauthorized {
			t.Errorf("token of a deleted gateway: status %d, want 401", r.Status)
		}
	})
}
