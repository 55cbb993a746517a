package api_test

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

func TestGroups(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "groups")

	// Every service has the three system groups; they cannot be changed or deleted.
	if got, want := c.names("/groups"), []string{"administrators", "developers", "guests"}; !cmp.Equal(got, want) {
		t.Errorf("groups of a new service = %v, want %v", got, want)
	}
	dev := armProps(t, c.must(http.StatusOK, http.MethodGet, "/groups/developers", nil))
	if dev["builtIn"] != true || dev["type"] != "system" || dev["displayName"] != "Developers" {
		t.Errorf("developers = %v", dev)
	}
	wantError(t, c.do(http.MethodPut, "/groups/developers", map[string]any{"properties": map[string]any{"displayName": "Devs"}}),
		http.StatusBadRequest, "ValidationError", "groupId", "built-in")
	wantError(t, c.do(http.MethodPatch, "/groups/guests", map[string]any{"properties": map[string]any{"description": "x"}}, "If-Match", "*"),
		http.StatusBadRequest, "ValidationError", "groupId", "built-in")
	wantError(t, c.do(http.MethodDelete, "/groups/administrators", nil, "If-Match", "*"), http.StatusBadRequest, "ValidationError", "groupId", "built-in")

	// Custom and external groups.
	r := c.must(http.StatusCreated, http.MethodPut, "/groups/partners", map[string]any{"properties": map[string]any{"displayName": "Partners", "description": "Our partners"}})
	if got := armProps(t, r); got["type"] != "custom" || got["builtIn"] != false {
		t.Errorf("custom group = %v", got)
	}
	c.put("/groups/aad", map[string]any{"displayName": "AAD", "type": "external", "externalId": "aad://contoso.onmicrosoft.com/groups/1"})
	for _, tc := range []struct {
		name   string
		props  map[string]any
		target string
	}{
		{"no displayName", map[string]any{}, "properties.displayName"},
		{"system type", map[string]any{"displayName": "x", "type": "system"}, "properties.type"},
		{"externalId on custom", map[string]any{"displayName": "x", "externalId": "aad://x"}, "properties.externalId"},
		{"unknown property", map[string]any{"displayName": "x", "members": []string{}}, "properties.members"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, c.do(http.MethodPut, "/groups/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
		})
	}
	if got := c.names("/groups?$filter=externalId%20eq%20'aad://contoso.onmicrosoft.com/groups/1'"); !cmp.Equal(got, []string{"aad"}) {
		t.Errorf("groups by externalId = %v", got)
	}

	// Users: every user is a developer; custom membership by PUT/HEAD/DELETE.
	c.put("/users/ann", map[string]any{"email": "ann@example.com", "firstName": "Ann", "lastName": "A"})
	c.put("/users/bob", map[string]any{"email": "bob@example.com", "firstName": "Bob", "lastName": "B"})
	if got := c.names("/groups/developers/users"); !cmp.Equal(got, []string{"ann", "bob"}) {
		t.Errorf("developers = %v", got)
	}
	r = c.must(http.StatusCreated, http.MethodPut, "/groups/partners/users/ann", nil)
	if got := r.JSON(); got["id"] != c.id("/users/ann") || got["type"] != "Microsoft.ApiManagement/service/users" {
		t.Errorf("group user answer = %v", got)
	}
	c.must(http.StatusOK, http.MethodPut, "/groups/partners/users/ann", nil)
	c.must(http.StatusNoContent, http.MethodHead, "/groups/partners/users/ann", nil)
	c.must(http.StatusNotFound, http.MethodHead, "/groups/partners/users/bob", nil)
	wantError(t, c.do(http.MethodPut, "/groups/partners/users/nobody", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	wantError(t, c.do(http.MethodPut, "/groups/guests/users/bob", nil), http.StatusBadRequest, "ValidationError", "groupId", "managed by Gatehouse")
	wantError(t, c.do(http.MethodDelete, "/groups/developers/users/bob", nil), http.StatusBadRequest, "ValidationError", "groupId", "managed by Gatehouse")
	if got := c.names("/users/ann/groups"); !cmp.Equal(got, []string{"developers", "partners"}) {
		t.Errorf("ann's groups = %v", got)
	}
	if got := c.names("/groups/partners/users?$filter=email%20eq%20'ann@example.com'"); !cmp.Equal(got, []string{"ann"}) {
		t.Errorf("partners by email = %v", got)
	}

	// Products: PUT/HEAD/DELETE and the list.
	c.put("/products/gold", map[string]any{"displayName": "Gold", "state": "published"})
	r = c.must(http.StatusCreated, http.MethodPut, "/products/gold/groups/partners", nil)
	if got := r.JSON(); got["id"] != c.id("/groups/partners") {
		t.Errorf("product group answer = %v", got)
	}
	c.must(http.StatusNoContent, http.MethodHead, "/products/gold/groups/partners", nil)
	c.must(http.StatusNotFound, http.MethodHead, "/products/gold/groups/guests", nil)
	c.must(http.StatusCreated, http.MethodPut, "/products/gold/groups/administrators", nil)
	if got := c.names("/products/gold/groups"); !cmp.Equal(got, []string{"administrators", "partners"}) {
		t.Errorf("gold's groups = %v", got)
	}
	c.must(http.StatusOK, http.MethodDelete, "/products/gold/groups/administrators", nil)

	// Deleting a group, or a user, removes their memberships and product links.
	c.must(http.StatusNoContent, http.MethodDelete, "/users/ann", nil, "If-Match", "*")
	c.put("/users/ann", map[string]any{"email": "ann@example.com", "firstName": "Ann", "lastName": "A"})
	if got := c.names("/users/ann/groups"); !cmp.Equal(got, []string{"developers"}) {
		t.Errorf("a re-created user's groups = %v, want developers only", got)
	}
	c.must(http.StatusOK, http.MethodDelete, "/groups/partners", nil, "If-Match", "*")
	if got := c.names("/products/gold/groups"); len(got) != 0 {
		t.Errorf("gold's groups after deleting partners = %v", got)
	}
}

func TestPortalProductsByGroup(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "portalgroups")
	for _, u := range []string{"ann", "bob"} {
		c.put("/users/"+u, map[string]any{"email": u + "@example.com", "firstName": u, "lastName": "X"})
	}
	c.put("/groups/partners", map[string]any{"displayName": "Partners"})
	c.must(http.StatusCreated, http.MethodPut, "/groups/partners/users/ann", nil)
	products := map[string][]string{
		"public":   {"developers"},
		"partner":  {"partners"},
		"internal": {"administrators"},
		"guest":    {"guests"},
		"draft":    {"developers"}, // not published
		"nogroups": nil,
	}
	for name, groups := range products {
		state := "published"
		if name == "draft" {
			state = "notPublished"
		}
		c.put("/products/"+name, map[string]any{"displayName": name, "state": state})
		for _, g := range groups {
			c.must(http.StatusCreated, http.MethodPut, "/products/"+name+"/groups/"+g, nil)
		}
	}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{"ann", []string{"partner", "public"}},
		{"bob", []string{"public"}},
	} {
		t.Run(tc.user, func(t *testing.T) {
			r := env.Must(t, []int{http.StatusOK}, http.MethodGet, portalPrefix+"/products", nil, bearer(userToken(t, env, c.svc, tc.user))...)
			if d := cmp.Diff(tc.want, listNames(t, r)); d != "" {
				t.Errorf("products %s sees (-want +got):\n%s", tc.user, d)
			}
		})
	}
	// Leaving the group hides its products.
	c.must(http.StatusOK, http.MethodDelete, "/groups/partners/users/ann", nil)
	r := env.Must(t, []int{http.StatusOK}, http.MethodGet, portalPrefix+"/products", nil, bearer(userToken(t, env, c.svc, "ann"))...)
	if got := listNames(t, r); !cmp.Equal(got, []string{"public"}) {
		t.Errorf("ann after leaving partners sees %v", got)
	}
}
