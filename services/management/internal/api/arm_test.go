package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/mgmttest"
)

// svcClient talks to one service of an Env as an ARM client would. Every response it sees is
// checked for what no synchronous ARM response may carry: long-running-operation polling headers,
// which would send the Azure SDK's pollers to URLs that do not exist (reference/apim.md §2.4).
type svcClient struct {
	t   *testing.T
	env *mgmttest.Env
	svc string // ARM path (and id) of the service
}

// newSvcClient creates a service named name in env for t.
func newSvcClient(t *testing.T, env *mgmttest.Env, name string) svcClient {
	t.Helper()
	return svcClient{t: t, env: env, svc: env.CreateService(t, "sub-arm", "rg-arm", name)}
}

// do sends a request to rel below the service ("" is the service itself).
func (c svcClient) do(method, rel string, body any, headers ...string) mgmttest.Response {
	c.t.Helper()
	return checkNoPolling(c.t, method, rel, c.env.Do(c.t, method, c.svc+rel, body, headers...))
}

// must sends a request and stops the test unless the status is want.
func (c svcClient) must(want int, method, rel string, body any, headers ...string) mgmttest.Response {
	c.t.Helper()
	r := c.do(method, rel, body, headers...)
	if r.Status != want {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, rel, r.Status, want, r.Body)
	}
	return r
}

// put creates or replaces rel with properties props, accepting 200 or 201.
func (c svcClient) put(rel string, props map[string]any) mgmttest.Response {
	c.t.Helper()
	r := c.do(http.MethodPut, rel, map[string]any{"properties": props})
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		c.t.Fatalf("PUT %s: status %d; body %s", rel, r.Status, r.Body)
	}
	return r
}

// names returns the names of the items of a list response.
func (c svcClient) names(rel string) []string {
	c.t.Helper()
	return listNames(c.t, c.must(http.StatusOK, http.MethodGet, rel, nil))
}

// id is the full ARM id of rel.
func (c svcClient) id(rel string) string { return c.svc + rel }

func checkNoPolling(t *testing.T, method, path string, r mgmttest.Response) mgmttest.Response {
	t.Helper()
	for _, h := range []string{"Location", "Azure-AsyncOperation", "Operation-Location"} {
		if v := r.Header.Get(h); v != "" {
			t.Errorf("%s %s: response has %s: %q; operations complete synchronously and must not send polling headers", method, path, h, v)
		}
	}
	return r
}

// armError is an ARM error body as a client reads it: APIM nests field errors in details, so
// Target falls back to the first detail's and Message joins the top message with the details'.
type armError struct {
	Code, Target, Message string
}

func armErrorOf(r mgmttest.Response) armError {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Target  string `json:"target"`
			Message string `json:"message"`
			Details []struct {
				Target  string `json:"target"`
				Message string `json:"message"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &body)
	e := armError{Code: body.Error.Code, Target: body.Error.Target, Message: body.Error.Message}
	for _, d := range body.Error.Details {
		if e.Target == "" {
			e.Target = d.Target
		}
		e.Message += " " + d.Message
	}
	return e
}

// wantError fails t unless r is an ARM error with status, code, target (when not empty) and a
// message containing msg (when not empty).
func wantError(t *testing.T, r mgmttest.Response, status int, code, target, msg string) {
	t.Helper()
	e := armErrorOf(r)
	if r.Status != status || e.Code != code || target != "" && e.Target != target || !strings.Contains(e.Message, msg) {
		t.Errorf("got status %d %+v, want %d code %s target %q message containing %q; body %s",
			r.Status, e, status, code, target, msg, r.Body)
	}
	if got := r.Header.Get("x-ms-error-code"); r.Status >= 400 && got != e.Code {
		t.Errorf("x-ms-error-code = %q, want the body's code %q", got, e.Code)
	}
}

// armProps returns the properties of an ARM resource body.
func armProps(t *testing.T, r mgmttest.Response) map[string]any {
	t.Helper()
	p, ok := r.JSON()["properties"].(map[string]any)
	if !ok {
		t.Fatalf("body has no properties object: %s", r.Body)
	}
	return p
}

// armList is a decoded collection page.
type armList struct {
	Value    []map[string]any `json:"value"`
	Count    *int             `json:"count"`
	NextLink *string          `json:"nextLink"`
}

func decodeList(t *testing.T, r mgmttest.Response) armList {
	t.Helper()
	var l armList
	if err := json.Unmarshal(r.Body, &l); err != nil || l.Value == nil || l.Count == nil {
		t.Fatalf("not an ARM list {value,count,nextLink}: %s", r.Body)
	}
	return l
}

func listNames(t *testing.T, r mgmttest.Response) []string {
	t.Helper()
	var names []string
	for _, v := range decodeList(t, r).Value {
		n, _ := v["name"].(string)
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func wsAPI(path string) map[string]any {
	return map[string]any{"displayName": "WS " + path, "type": "websocket", "serviceUrl": "wss://backend.example.com/" + path,
		"path": path, "protocols": []string{"wss"}}
}

func httpAPI(path string) map[string]any {
	return map[string]any{"displayName": "HTTP " + path, "serviceUrl": "https://backend.example.com/" + path, "path": path,
		"protocols": []string{"https"}}
}

// rawRequest sends a request exactly as given: no api-version is added.
func rawRequest(t *testing.T, env *mgmttest.Env, method, path string) mgmttest.Response {
	t.Helper()
	req, err := http.NewRequest(method, env.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+env.Token)
	resp, err := env.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mgmttest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

func TestARMAPIVersion(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "versions")
	tests := []struct {
		name    string
		path    string
		status  int
		errCode string
	}{
		{"missing on the service", c.svc, 400, "MissingApiVersionParameter"},
		{"missing on a collection", c.svc + "/apis", 400, "MissingApiVersionParameter"},
		{"empty", c.svc + "/apis?api-version=", 400, "MissingApiVersionParameter"},
		{"unknown", c.svc + "/apis?api-version=2019-01-02", 400, "InvalidApiVersionParameter"},
		{"a preview date never published", c.svc + "/apis?api-version=2024-05-01-preview", 400, "InvalidApiVersionParameter"},
		{"not a version", c.svc + "?api-version=latest", 400, "InvalidApiVersionParameter"},
		{"2021-08-01", c.svc + "/apis?api-version=2021-08-01", 200, ""},
		{"2022-08-01", c.svc + "/apis?api-version=2022-08-01", 200, ""},
		{"2024-05-01", c.svc + "?api-version=2024-05-01", 200, ""},
		{"2025-09-01-preview", c.svc + "/apis?api-version=2025-09-01-preview", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := checkNoPolling(t, "GET", tc.path, rawRequest(t, env, http.MethodGet, tc.path))
			if tc.errCode == "" {
				if r.Status != tc.status {
					t.Fatalf("status %d, want %d; body %s", r.Status, tc.status, r.Body)
				}
				return
			}
			wantError(t, r, tc.status, tc.errCode, "", "api-version")
		})
	}
	t.Run("checked on writes too", func(t *testing.T) {
		t.Parallel()
		r := env.Do(t, http.MethodPut, c.svc+"/products/p?api-version=2000-01-01", map[string]any{"properties": map[string]any{"displayName": "P"}})
		wantError(t, r, 400, "InvalidApiVersionParameter", "", "")
		c.must(http.StatusNotFound, http.MethodGet, "/products/p", nil)
	})
}

// lifecycleCase is one resource kind driven through the ARM lifecycle.
type lifecycleCase struct {
	name  string
	setup func(c svcClient)
	rel   string
	props map[string]any
	typ   string
	// patch is a PATCH body's properties, nil for kinds APIM cannot PATCH.
	patch map[string]any
	// deleted is the status of a successful DELETE: 200, or 204 for the kinds whose SDK v3
	// Delete accepts only 202 and 204 (APIs and users, reference/apim.md §2.2).
	deleted int
}

func TestResourceLifecycle(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	tests := []lifecycleCase{
		{name: "api", rel: "/apis/echo", props: wsAPI("echo"), typ: "Microsoft.ApiManagement/service/apis",
			patch: map[string]any{"description": "patched"}, deleted: http.StatusNoContent},
		{name: "operation", setup: func(c svcClient) { c.put("/apis/rest", httpAPI("rest")) },
			rel: "/apis/rest/operations/list-items", props: map[string]any{"displayName": "List", "method": "GET", "urlTemplate": "/items"},
			typ: "Microsoft.ApiManagement/service/apis/operations", patch: map[string]any{"displayName": "List items"}},
		{name: "product", rel: "/products/starter", props: map[string]any{"displayName": "Starter", "state": "published"},
			typ: "Microsoft.ApiManagement/service/products", patch: map[string]any{"description": "For starters"}},
		{name: "user", rel: "/users/alice", props: map[string]any{"email": "alice@example.com", "firstName": "Alice", "lastName": "Smith"},
			typ: "Microsoft.ApiManagement/service/users", patch: map[string]any{"note": "vip"}, deleted: http.StatusNoContent},
		{name: "subscription", rel: "/subscriptions/s1", props: map[string]any{"scope": "/apis", "displayName": "S1", "state": "active"},
			typ: "Microsoft.ApiManagement/service/subscriptions", patch: map[string]any{"displayName": "S1 renamed"}},
		{name: "gateway", rel: "/gateways/edge", props: map[string]any{"locationData": map[string]any{"name": "eu-west"}},
			typ: "Microsoft.ApiManagement/service/gateways", patch: map[string]any{"description": "edge nodes"}},
		{name: "named value", rel: "/namedValues/nv1", props: map[string]any{"displayName": "nv1", "value": "v1"},
			typ: "Microsoft.ApiManagement/service/namedValues", patch: map[string]any{"tags": []any{"t1"}}},
		{name: "global policy", rel: "/policies/policy", props: map[string]any{"value": "<policies><inbound><base /></inbound></policies>", "format": "xml"},
			typ: "Microsoft.ApiManagement/service/policies"},
		{name: "operation policy", setup: func(c svcClient) { c.put("/apis/ws", wsAPI("ws")) },
			rel: "/apis/ws/operations/onHandshake/policies/policy", props: map[string]any{"value": "<policies><inbound><base /></inbound></policies>"},
			typ: "Microsoft.ApiManagement/service/apis/operations/policies"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newSvcClient(t, env, "life"+strconv.Itoa(i))
			if tc.setup != nil {
				tc.setup(c)
			}
			testLifecycle(t, c, tc)
		})
	}
}

func testLifecycle(t *testing.T, c svcClient, tc lifecycleCase) {
	body := map[string]any{"properties": tc.props}
	created := c.must(http.StatusCreated, http.MethodPut, tc.rel, body)
	got := created.JSON()
	if keys := mapKeys(got); !slices.Equal(keys, []string{"id", "name", "properties", "type"}) {
		t.Errorf("PUT body has keys %v, want exactly id, name, type, properties", keys)
	}
	want := map[string]any{"id": c.id(tc.rel), "name": tc.rel[strings.LastIndex(tc.rel, "/")+1:], "type": tc.typ}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("PUT body %s = %v, want %v", k, got[k], v)
		}
	}
	etags := []string{created.Header.Get("ETag")}
	if etags[0] == "" {
		t.Fatal("PUT (created) has no ETag")
	}

	read := c.must(http.StatusOK, http.MethodGet, tc.rel, nil)
	if diff := cmp.Diff(created.JSON(), read.JSON()); diff != "" {
		t.Errorf("GET differs from the PUT response (-put +get):\n%s", diff)
	}
	if e := read.Header.Get("ETag"); e != etags[0] {
		t.Errorf("GET ETag %q, want the PUT's %q", e, etags[0])
	}
	head := c.must(http.StatusOK, http.MethodHead, tc.rel, nil)
	if e := head.Header.Get("ETag"); e != etags[0] || len(head.Body) != 0 {
		t.Errorf("HEAD: ETag %q body %q, want ETag %q and no body", e, head.Body, etags[0])
	}

	replaced := c.must(http.StatusOK, http.MethodPut, tc.rel, body, "If-Match", etags[0])
	etags = append(etags, replaced.Header.Get("ETag"))
	wantError(t, c.do(http.MethodPut, tc.rel, body, "If-Match", etags[0]), http.StatusPreconditionFailed, "PreconditionFailed", "", "")

	if tc.patch != nil {
		before := armProps(t, c.must(http.StatusOK, http.MethodGet, tc.rel, nil))
		pbody := map[string]any{"properties": tc.patch}
		wantError(t, c.do(http.MethodPatch, tc.rel, pbody), http.StatusPreconditionRequired, "PreconditionRequired", "If-Match", "")
		wantError(t, c.do(http.MethodPatch, tc.rel, pbody, "If-Match", etags[0]), http.StatusPreconditionFailed, "PreconditionFailed", "", "")
		patched := c.must(http.StatusOK, http.MethodPatch, tc.rel, pbody, "If-Match", etags[len(etags)-1])
		for k, v := range tc.patch {
			before[k] = v
		}
		if diff := cmp.Diff(before, armProps(t, patched)); diff != "" {
			t.Errorf("PATCH did not merge (-want +got):\n%s", diff)
		}
		etags = append(etags, patched.Header.Get("ETag"))
		star := c.must(http.StatusOK, http.MethodPatch, tc.rel, pbody, "If-Match", "*")
		etags = append(etags, star.Header.Get("ETag"))
	}
	for i := 1; i < len(etags); i++ {
		if etags[i] == "" || slices.Contains(etags[:i], etags[i]) {
			t.Errorf("write %d: ETag %q, want a new one after each write (earlier %v)", i, etags[i], etags[:i])
		}
	}
	current := etags[len(etags)-1]
	if e := c.must(http.StatusOK, http.MethodGet, tc.rel, nil).Header.Get("ETag"); e != current {
		t.Errorf("GET ETag %q, want the last write's %q", e, current)
	}

	wantError(t, c.do(http.MethodDelete, tc.rel, nil), http.StatusPreconditionRequired, "PreconditionRequired", "If-Match", "")
	wantError(t, c.do(http.MethodDelete, tc.rel, nil, "If-Match", etags[0]), http.StatusPreconditionFailed, "PreconditionFailed", "", "")
	c.must(http.StatusOK, http.MethodGet, tc.rel, nil)
	deleted := http.StatusOK
	if tc.deleted != 0 {
		deleted = tc.deleted
	}
	c.must(deleted, http.MethodDelete, tc.rel, nil, "If-Match", current)
	wantError(t, c.do(http.MethodGet, tc.rel, nil), http.StatusNotFound, "ResourceNotFound", "", "")
	c.must(http.StatusNoContent, http.MethodDelete, tc.rel, nil, "If-Match", "*")
	if tc.patch != nil {
		wantError(t, c.do(http.MethodPatch, tc.rel, map[string]any{"properties": tc.patch}, "If-Match", "*"), http.StatusNotFound, "ResourceNotFound", "", "")
	}
	c.must(http.StatusNotFound, http.MethodHead, tc.rel, nil)
}

func mapKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestARMConventions(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})

	t.Run("provisioningState Succeeded", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "provisioning")
		svc := c.must(http.StatusOK, http.MethodPut, "", map[string]any{"location": "westeurope",
			"sku":        map[string]any{"name": "Developer", "capacity": 1},
			"properties": map[string]any{"publisherEmail": "ops@example.com", "publisherName": "Ops"}})
		for name, r := range map[string]mgmttest.Response{
			"service":     svc,
			"api":         c.must(http.StatusCreated, http.MethodPut, "/apis/a", map[string]any{"properties": wsAPI("a")}),
			"named value": c.must(http.StatusCreated, http.MethodPut, "/namedValues/n", map[string]any{"properties": map[string]any{"displayName": "n", "value": "x"}}),
		} {
			if got := armProps(t, r)["provisioningState"]; got != "Succeeded" {
				t.Errorf("%s PUT: provisioningState %v, want Succeeded", name, got)
			}
		}
	})

	t.Run("delete of a missing child under a missing parent is 404", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "orphans")
		wantError(t, c.do(http.MethodDelete, "/apis/nope/operations/op", nil, "If-Match", "*"), http.StatusNotFound, "ResourceNotFound", "", "Api")
		wantError(t, c.do(http.MethodGet, "/apis/nope/operations", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	})

	t.Run("paging", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "paging")
		var all []string
		for i := range 5 {
			name := fmt.Sprintf("p%d", i)
			all = append(all, name)
			c.put("/products/"+name, map[string]any{"displayName": "Product " + name})
		}
		first := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/products", nil))
		if len(first.Value) != 5 || *first.Count != 5 || first.NextLink != nil {
			t.Errorf("unpaged list: %d items, count %d, nextLink %v; want 5, 5, none", len(first.Value), *first.Count, first.NextLink)
		}

		var got []string
		next := c.svc + "/products?api-version=" + mgmttest.APIVersion + "&$top=2"
		for pages := 0; next != ""; pages++ {
			if pages > 5 {
				t.Fatal("nextLink never ends")
			}
			rel, ok := strings.CutPrefix(next, env.URL)
			if pages > 0 && !ok {
				t.Fatalf("nextLink %q is not an absolute URL of this server (%s)", next, env.URL)
			}
			r := checkNoPolling(t, "GET", rel, env.Do(t, http.MethodGet, rel, nil))
			l := decodeList(t, r)
			if *l.Count != 5 {
				t.Errorf("page %d: count %d, want the total 5", pages, *l.Count)
			}
			if len(l.Value) > 2 {
				t.Errorf("page %d: %d items, want at most $top=2", pages, len(l.Value))
			}
			for _, v := range l.Value {
				got = append(got, v["name"].(string))
			}
			next = ""
			if l.NextLink != nil {
				next = *l.NextLink
				u, err := url.Parse(next)
				if err != nil || !u.IsAbs() || u.Query().Get("api-version") != mgmttest.APIVersion || u.Query().Get("$top") != "2" {
					t.Fatalf("nextLink %q: want an absolute URL keeping api-version and $top", next)
				}
			}
		}
		if diff := cmp.Diff(all, got); diff != "" {
			t.Errorf("pages did not return every product once, in order (-want +got):\n%s", diff)
		}

		tail := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/products?$skip=4", nil))
		if len(tail.Value) != 1 || *tail.Count != 5 || tail.NextLink != nil {
			t.Errorf("$skip=4: %d items, count %d, nextLink %v; want 1, 5, none", len(tail.Value), *tail.Count, tail.NextLink)
		}
		past := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/products?$skip=10", nil))
		if len(past.Value) != 0 || *past.Count != 5 || past.NextLink != nil {
			t.Errorf("$skip=10: %d items, count %d, nextLink %v; want 0, 5, none", len(past.Value), *past.Count, past.NextLink)
		}
		for _, q := range []string{"$top=0", "$top=x", "$skip=-1"} {
			if r := c.do(http.MethodGet, "/products?"+q, nil); r.Status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400; body %s", q, r.Status, r.Body)
			}
		}
	})

	t.Run("filter", func(t *testing.T) {
		t.Parallel()
		c := newSvcClient(t, env, "filters")
		c.put("/apis/alpha", map[string]any{"displayName": "Alpha Chat", "type": "websocket", "serviceUrl": "wss://a.example.com", "path": "chat/alpha"})
		c.put("/apis/beta", map[string]any{"displayName": "Beta Chat", "type": "websocket", "serviceUrl": "wss://b.example.com", "path": "chat/beta"})
		c.put("/apis/gamma", map[string]any{"displayName": "Gamma Feed", "serviceUrl": "https://g.example.com", "path": "feed"})
		c.put("/subscriptions/on1", map[string]any{"scope": "/apis", "displayName": "On 1", "state": "active"})
		c.put("/subscriptions/on2", map[string]any{"scope": "/apis/alpha", "displayName": "On 2", "state": "active"})
		c.put("/subscriptions/off", map[string]any{"scope": "/apis", "displayName": "Off", "state": "suspended"})
		tests := []struct {
			rel, filter string
			want        []string
		}{
			{"/apis", "name eq 'alpha'", []string{"alpha"}},
			{"/apis", "contains(displayName,'chat')", []string{"alpha", "beta"}},
			{"/apis", "startswith(path,'chat/')", []string{"alpha", "beta"}},
			{"/apis", "endswith(displayName,'Feed')", []string{"gamma"}},
			{"/apis", "startswith(name,'a') or startswith(name,'g')", []string{"alpha", "gamma"}},
			{"/apis", "contains(displayName,'Chat') and path eq 'chat/beta'", []string{"beta"}},
			{"/apis", "not contains(displayName,'Chat')", []string{"gamma"}},
			{"/apis", "name eq 'x'' or ''1''=''1'", nil},
			{"/subscriptions", "state eq 'active'", []string{"on1", "on2"}},
			{"/subscriptions", "state eq 'suspended'", []string{"off"}},
			{"/subscriptions", "state eq 'active' and startswith(displayName,'On 2')", []string{"on2"}},
		}
		for _, tc := range tests {
			r := c.must(http.StatusOK, http.MethodGet, tc.rel+"?$filter="+url.QueryEscape(tc.filter), nil)
			got := listNames(t, r)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s $filter=%s (-want +got):\n%s", tc.rel, tc.filter, diff)
			}
			if n := *decodeList(t, r).Count; n != len(tc.want) {
				t.Errorf("%s $filter=%s: count %d, want %d", tc.rel, tc.filter, n, len(tc.want))
			}
		}

		paged := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis?$top=1&$filter="+url.QueryEscape("contains(displayName,'chat')"), nil))
		if *paged.Count != 2 || paged.NextLink == nil {
			t.Fatalf("filtered page: count %d nextLink %v, want count 2 and a nextLink", *paged.Count, paged.NextLink)
		}
		if u, _ := url.Parse(*paged.NextLink); u.Query().Get("$filter") != "contains(displayName,'chat')" {
			t.Errorf("nextLink %q lost the $filter", *paged.NextLink)
		}

		for _, bad := range []struct{ rel, filter string }{
			{"/apis", "name eq"},
			{"/apis", "secret eq 'x'"},
			{"/apis", "name eq 'a'; DROP TABLE resources"},
			{"/apis", "contains(displayName)"},
			{"/apis", "(name eq 'a'"},
			{"/subscriptions", "contains(state,'act')"},
		} {
			r := c.do(http.MethodGet, bad.rel+"?$filter="+url.QueryEscape(bad.filter), nil)
			wantError(t, r, http.StatusBadRequest, "InvalidFilterParameter", "$filter", "")
		}
	})
}

// configMessage is one message of the GATEHOUSE_CONFIG stream.
type configMessage struct {
	subject  string
	revision int64
	data     []byte
	change   struct {
		ServiceID string `json:"serviceId"`
		Revision  int64  `json:"revision"`
		Items     []struct {
			Op     string `json:"op"`
			Entity struct {
				Kind   string `json:"kind"`
				Parent string `json:"parent"`
				Name   string `json:"name"`
			} `json:"entity"`
		} `json:"items"`
	}
}

// has reports whether the change holds an item doing op to the entity kind/name.
func (m configMessage) has(op, kind, name string) bool {
	for _, it := range m.change.Items {
		if it.Op == op && it.Entity.Kind == kind && strings.EqualFold(it.Entity.Name, name) {
			return true
		}
	}
	return false
}

// serviceID reads a service's internal id, the token of its change subject.
func serviceID(t *testing.T, env *mgmttest.Env, name string) string {
	t.Helper()
	var id string
	if err := env.Pool.QueryRow(context.Background(), `SELECT id FROM services WHERE name = $1`, name).Scan(&id); err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return id
}

// readChanges reads n messages of subject from the start of the config stream, then makes sure
// no further message arrives within quiet.
func readChanges(t *testing.T, env *mgmttest.Env, subject string, n int, quiet time.Duration) []configMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cons, err := env.JS.OrderedConsumer(ctx, "GATEHOUSE_CONFIG", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var out []configMessage
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < n && time.Now().Before(deadline) {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		out = append(out, decodeConfigMessage(t, msg))
	}
	if len(out) < n {
		t.Fatalf("got %d change messages on %s, want %d", len(out), subject, n)
	}
	if msg, err := cons.Next(jetstream.FetchMaxWait(quiet)); err == nil {
		m := decodeConfigMessage(t, msg)
		t.Fatalf("unexpected extra change message at revision %d: %s", m.revision, m.data)
	}
	return out
}

func decodeConfigMessage(t *testing.T, msg jetstream.Msg) configMessage {
	t.Helper()
	m := configMessage{subject: msg.Subject(), data: msg.Data()}
	rev, err := strconv.ParseInt(msg.Headers().Get("Gatehouse-Revision"), 10, 64)
	if err != nil {
		t.Fatalf("message on %s without a Gatehouse-Revision header: %v", msg.Subject(), msg.Headers())
	}
	m.revision = rev
	if err := json.Unmarshal(m.data, &m.change); err != nil {
		t.Fatalf("change payload is not JSON: %v", err)
	}
	return m
}

func TestChangePublication(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "changes")
	sid := serviceID(t, env, "changes")
	const givenKey = "given-primary-key-0123456789abcdef"
	secretValue := "named-value-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	// Each write, what a failed one looks like, and the item its change must carry.
	type step struct {
		name             string
		method, rel      string
		body             any
		headers          []string
		status           int
		op, kind, entity string // the item expected in the change; op "" = nothing published
	}
	steps := []step{
		{"create ws api", "PUT", "/apis/chat", map[string]any{"properties": wsAPI("chat")}, nil, 201, "put", "apis", "chat"},
		{"bad serviceUrl", "PUT", "/apis/bad", map[string]any{"properties": map[string]any{"displayName": "B", "type": "websocket", "serviceUrl": "http://x", "path": "bad"}}, nil, 400, "", "", ""},
		{"onHandshake policy", "PUT", "/apis/chat/operations/onHandshake/policies/policy", map[string]any{"properties": map[string]any{"value": "<policies><inbound><base /></inbound></policies>"}}, nil, 201, "put", "policies", "policy"},
		{"malformed policy", "PUT", "/policies/policy", map[string]any{"properties": map[string]any{"value": "<policies><inbound></policies>"}}, nil, 400, "", "", ""},
		{"product", "PUT", "/products/gold", map[string]any{"properties": map[string]any{"displayName": "Gold"}}, nil, 201, "put", "products", "gold"},
		{"product api link", "PUT", "/products/gold/apis/chat", nil, nil, 201, "put", "productApis", "chat"},
		{"subscription with a given key", "PUT", "/subscriptions/s1", map[string]any{"properties": map[string]any{"scope": "/products/gold", "displayName": "S1", "state": "active", "primaryKey": givenKey}}, nil, 201, "put", "subscriptions", "s1"},
		{"duplicate key", "PUT", "/subscriptions/s2", map[string]any{"properties": map[string]any{"scope": "/apis", "displayName": "S2", "primaryKey": givenKey}}, nil, 400, "", "", ""},
		{"regenerate primary", "POST", "/subscriptions/s1/regeneratePrimaryKey", nil, nil, 204, "put", "subscriptions", "s1"},
		{"regenerate secondary", "POST", "/subscriptions/s1/regenerateSecondaryKey", nil, nil, 204, "put", "subscriptions", "s1"},
		{"secret named value", "PUT", "/namedValues/sec", map[string]any{"properties": map[string]any{"displayName": "sec", "value": secretValue, "secret": true}}, nil, 201, "put", "namedValues", "sec"},
		{"gateway", "PUT", "/gateways/gw", map[string]any{"properties": map[string]any{"locationData": map[string]any{"name": "dc1"}}}, nil, 201, "put", "gateways", "gw"},
		{"gateway key", "POST", "/gateways/gw/regenerateKey", map[string]any{"keyType": "primary"}, nil, 204, "put", "gateways", "gw"},
		{"patch api", "PATCH", "/apis/chat", map[string]any{"properties": map[string]any{"description": "d"}}, []string{"If-Match", "*"}, 200, "put", "apis", "chat"},
		{"bad state", "PATCH", "/subscriptions/s1", map[string]any{"properties": map[string]any{"state": "paused"}}, []string{"If-Match", "*"}, 400, "", "", ""},
		{"delete link", "DELETE", "/products/gold/apis/chat", nil, nil, 200, "delete", "productApis", "chat"},
	}
	var keys []string
	published := 1 // creating the service published its built-in groups
	for _, s := range steps {
		r := c.do(s.method, s.rel, s.body, s.headers...)
		if r.Status != s.status {
			t.Fatalf("%s: %s %s: status %d, want %d; body %s", s.name, s.method, s.rel, r.Status, s.status, r.Body)
		}
		if s.op != "" {
			published++
		}
		if strings.HasPrefix(s.rel, "/subscriptions/s1") && s.status < 300 {
			k := c.must(http.StatusOK, http.MethodPost, "/subscriptions/s1/listSecrets", nil).JSON()
			keys = append(keys, k["primaryKey"].(string), k["secondaryKey"].(string))
		}
	}
	if keys[0] != givenKey {
		t.Fatalf("listSecrets primaryKey %q, want the given key", keys[0])
	}
	gwKeys := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/listKeys", nil).JSON()

	msgs := readChanges(t, env, "gatehouse.config."+sid, published, 500*time.Millisecond)
	if !msgs[0].has("put", "groups", "developers") {
		t.Errorf("the service's first change is not its built-in groups: %s", msgs[0].data)
	}
	i := 1
	for _, s := range steps {
		if s.op == "" {
			continue
		}
		m := msgs[i]
		if m.subject != "gatehouse.config."+sid || m.change.ServiceID != sid || m.change.Revision != m.revision {
			t.Errorf("%s: message subject %s service %s revision %d/header %d; want subject and service of %s, revisions equal",
				s.name, m.subject, m.change.ServiceID, m.change.Revision, m.revision, sid)
		}
		if i > 0 && m.revision != msgs[i-1].revision+1 {
			t.Errorf("%s: revision %d after %d, want consecutive revisions", s.name, m.revision, msgs[i-1].revision)
		}
		if !m.has(s.op, s.kind, s.entity) {
			t.Errorf("%s: change at revision %d lacks %s %s/%s: %s", s.name, m.revision, s.op, s.kind, s.entity, m.data)
		}
		i++
	}
	if !msgs[1].has("put", "operations", "onHandshake") {
		t.Errorf("creating a websocket API did not publish its onHandshake operation: %s", msgs[1].data)
	}

	// A gateway starting now gets a snapshot at the last published revision, then follows the stream.
	token := c.must(http.StatusOK, http.MethodPost, "/gateways/gw/generateToken",
		map[string]any{"keyType": "secondary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).JSON()["value"].(string)
	snap := env.Do(t, http.MethodGet, "/gatehouse/gateway/v1/config", nil, "Authorization", "GatewayKey "+token)
	if rev, _ := snap.JSON()["revision"].(float64); snap.Status != http.StatusOK || int64(rev) != msgs[len(msgs)-1].revision {
		t.Errorf("snapshot: status %d revision %v, want the last published revision %d", snap.Status, snap.JSON()["revision"], msgs[len(msgs)-1].revision)
	}

	// Deleting the service is published too, at the next revision.
	c.must(http.StatusOK, http.MethodDelete, "", nil, "If-Match", "*")
	all := readChanges(t, env, "gatehouse.config."+sid, published+1, 300*time.Millisecond)
	if last := all[len(all)-1]; last.revision != msgs[len(msgs)-1].revision+1 || len(last.change.Items) != 1 || last.change.Items[0].Op != "deleteService" {
		t.Errorf("service delete published revision %d %s, want revision %d with one deleteService item",
			last.revision, last.data, msgs[len(msgs)-1].revision+1)
	}

	secrets := append(keys, secretValue, gwKeys["primary"].(string), gwKeys["secondary"].(string))
	for _, m := range all {
		for _, s := range secrets {
			if strings.Contains(string(m.data), s) {
				t.Errorf("revision %d publishes the secret %q: %s", m.revision, s, m.data)
			}
		}
	}
}
