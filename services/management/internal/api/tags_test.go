package api_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

func TestTags(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "tags")
	c.put("/apis/chat", wsAPI("chat"))
	c.put("/apis/orders", httpAPI("orders"))
	c.put("/apis/orders/operations/list", map[string]any{"displayName": "List orders", "method": "GET", "urlTemplate": "/orders"})
	c.put("/products/gold", map[string]any{"displayName": "Gold"})

	r := c.must(http.StatusCreated, http.MethodPut, "/tags/realtime", map[string]any{"properties": map[string]any{"displayName": "Real time"}})
	if got := r.JSON(); got["id"] != c.id("/tags/realtime") || got["type"] != "Microsoft.ApiManagement/service/tags" {
		t.Errorf("tag = %v", got)
	}
	c.put("/tags/public", map[string]any{"displayName": "Public"})
	c.put("/tags/unused", map[string]any{"displayName": "Unused"})
	wantError(t, c.do(http.MethodPut, "/tags/bad", map[string]any{"properties": map[string]any{}}), http.StatusBadRequest, "ValidationError", "properties.displayName", "")
	wantError(t, c.do(http.MethodPut, "/tags/bad", map[string]any{"properties": map[string]any{"displayName": "x", "color": "red"}}),
		http.StatusBadRequest, "ValidationError", "properties.color", "")

	// Assignment: no body, the tag is the answer; a missing tag or entity is a 404.
	r = c.must(http.StatusCreated, http.MethodPut, "/apis/chat/tags/realtime", nil)
	if got := r.JSON(); got["id"] != c.id("/tags/realtime") || got["type"] != "Microsoft.ApiManagement/service/tags" || armProps(t, r)["displayName"] != "Real time" {
		t.Errorf("assignment answer = %v", got)
	}
	c.must(http.StatusOK, http.MethodPut, "/apis/chat/tags/REALTIME", nil)
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat/tags/public", nil)
	c.must(http.StatusCreated, http.MethodPut, "/apis/orders/operations/list/tags/public", nil)
	c.must(http.StatusCreated, http.MethodPut, "/products/gold/tags/public", nil)
	wantError(t, c.do(http.MethodPut, "/apis/chat/tags/nope", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	wantError(t, c.do(http.MethodPut, "/apis/nope/tags/public", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	c.must(http.StatusOK, http.MethodGet, "/apis/chat/tags/realtime", nil)
	c.must(http.StatusOK, http.MethodHead, "/apis/orders/operations/list/tags/public", nil)
	c.must(http.StatusNotFound, http.MethodHead, "/products/gold/tags/realtime", nil)

	lists := []struct {
		rel  string
		want []string
	}{
		{"/apis/chat/tags", []string{"public", "realtime"}},
		{"/apis/chat/tags?$filter=" + url.QueryEscape("displayName eq 'Public'"), []string{"public"}},
		{"/apis/orders/operations/list/tags", []string{"public"}},
		{"/products/gold/tags", []string{"public"}},
		{"/apis/orders/tags", nil},
		{"/tags", []string{"public", "realtime", "unused"}},
		{"/tags?scope=apis", []string{"public", "realtime"}},
		{"/tags?scope=products", []string{"public"}},
		{"/tags?scope=apis/chat", []string{"public", "realtime"}},
		{"/tags?scope=apis/orders", nil},
	}
	for _, tc := range lists {
		if d := cmp.Diff(tc.want, c.names(tc.rel)); d != "" {
			t.Errorf("GET %s (-want +got):\n%s", tc.rel, d)
		}
	}
	wantError(t, c.do(http.MethodGet, "/tags?scope=gateways", nil), http.StatusBadRequest, "ValidationError", "scope", "")
	wantError(t, c.do(http.MethodGet, "/apis/chat/tags?scope=apis", nil), http.StatusBadRequest, "ValidationError", "scope", "")

	// Tag descriptions carry the tag's id and display name.
	r = c.must(http.StatusCreated, http.MethodPut, "/apis/chat/tagDescriptions/realtime", map[string]any{"properties": map[string]any{
		"description": "Streams", "externalDocsUrl": "https://docs.example.com/rt", "externalDocsDescription": "More"}})
	want := map[string]any{"description": "Streams", "externalDocsUrl": "https://docs.example.com/rt", "externalDocsDescription": "More",
		"tagId": c.id("/tags/realtime"), "displayName": "Real time"}
	if d := cmp.Diff(want, armProps(t, r)); d != "" {
		t.Errorf("tag description (-want +got):\n%s", d)
	}
	wantError(t, c.do(http.MethodPut, "/apis/chat/tagDescriptions/realtime", map[string]any{"properties": map[string]any{"externalDocsUrl": "docs"}}),
		http.StatusBadRequest, "ValidationError", "properties.externalDocsUrl", "")
	wantError(t, c.do(http.MethodPut, "/apis/chat/tagDescriptions/nope", map[string]any{"properties": map[string]any{}}), http.StatusNotFound, "ResourceNotFound", "", "")
	c.put("/tags/realtime", map[string]any{"displayName": "Live"})
	if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat/tagDescriptions/realtime", nil))["displayName"]; got != "Live" {
		t.Errorf("description's displayName after renaming the tag = %v, want Live", got)
	}

	// Deleting a tag removes its assignments and descriptions.
	c.must(http.StatusOK, http.MethodDelete, "/tags/realtime", nil, "If-Match", "*")
	if got := c.names("/apis/chat/tags"); !cmp.Equal(got, []string{"public"}) {
		t.Errorf("API tags after deleting realtime = %v", got)
	}
	if got := c.names("/apis/chat/tagDescriptions"); len(got) != 0 {
		t.Errorf("tag descriptions after deleting realtime = %v", got)
	}
	// Unassigning, and deleting what a tag is assigned to.
	c.must(http.StatusOK, http.MethodDelete, "/products/gold/tags/public", nil)
	c.must(http.StatusNoContent, http.MethodDelete, "/products/gold/tags/public", nil)
	c.must(http.StatusOK, http.MethodDelete, "/apis/orders/operations/list", nil, "If-Match", "*")
	c.put("/apis/orders/operations/list", map[string]any{"displayName": "List orders", "method": "GET", "urlTemplate": "/orders"})
	if got := c.names("/apis/orders/operations/list/tags"); len(got) != 0 {
		t.Errorf("a re-created operation kept the tags of the deleted one: %v", got)
	}
}

func TestTagResources(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "tagresources")
	c.put("/apis/chat", wsAPI("chat"))
	c.put("/apis/orders", httpAPI("orders"))
	c.put("/apis/orders/operations/list", map[string]any{"displayName": "List orders", "method": "GET", "urlTemplate": "/orders"})
	c.put("/apis/orders/operations/get", map[string]any{"displayName": "Get order", "method": "GET", "urlTemplate": "/orders/{id}",
		"templateParameters": []map[string]any{{"name": "id", "type": "string", "required": true}}})
	c.put("/products/gold", map[string]any{"displayName": "Gold"})
	c.put("/products/silver", map[string]any{"displayName": "Silver"})
	c.put("/tags/live", map[string]any{"displayName": "Live"})
	c.put("/tags/public", map[string]any{"displayName": "Public"})
	for _, rel := range []string{"/apis/chat/tags/live", "/apis/chat/tags/public", "/apis/orders/operations/list/tags/public", "/products/gold/tags/live"} {
		c.must(http.StatusCreated, http.MethodPut, rel, nil)
	}

	// item names an item "tag:api", "tag:api/operation" or "tag:product", "-" for no tag.
	item := func(v map[string]any) string {
		tag := "-"
		if tg, ok := v["tag"].(map[string]any); ok {
			tag = tg["id"].(string) + "=" + tg["name"].(string)
		}
		for _, k := range []string{"api", "operation", "product"} {
			if e, ok := v[k].(map[string]any); ok {
				return tag + " " + k + " " + e["id"].(string) + "=" + e["name"].(string)
			}
		}
		return tag
	}
	q := url.QueryEscape
	for _, tc := range []struct {
		name, rel string
		want      []string
	}{
		{"apis", "/apisByTags", []string{"/tags/live=Live api /apis/chat=WS chat", "/tags/public=Public api /apis/chat=WS chat"}},
		{"apis with untagged", "/apisByTags?includeNotTaggedApis=true",
			[]string{"/tags/live=Live api /apis/chat=WS chat", "/tags/public=Public api /apis/chat=WS chat", "- api /apis/orders=HTTP orders"}},
		{"apis by tag id", "/apisByTags?$filter=" + q("tag/id eq 'public'"), []string{"/tags/public=Public api /apis/chat=WS chat"}},
		{"apis by full tag id", "/apisByTags?$filter=" + q("tag/id eq '"+c.id("/tags/live")+"'"), []string{"/tags/live=Live api /apis/chat=WS chat"}},
		{"apis by name and current", "/apisByTags?includeNotTaggedApis=true&$filter=" + q("contains(api/name,'HTTP') and api/isCurrent eq true"),
			[]string{"- api /apis/orders=HTTP orders"}},
		{"products", "/productsByTags?includeNotTaggedProducts=true",
			[]string{"/tags/live=Live product /products/gold=Gold", "- product /products/silver=Silver"}},
		{"operations", "/apis/orders/operationsByTags", []string{"/tags/public=Public operation /apis/orders/operations/list=List orders"}},
		{"operations with untagged", "/apis/orders/operationsByTags?includeNotTaggedOperations=true",
			[]string{"- operation /apis/orders/operations/get=Get order", "/tags/public=Public operation /apis/orders/operations/list=List orders"}},
		{"tag resources", "/tagResources", []string{"/tags/live=Live api /apis/chat=WS chat", "/tags/public=Public api /apis/chat=WS chat",
			"/tags/public=Public operation /apis/orders/operations/list=List orders", "/tags/live=Live product /products/gold=Gold"}},
		{"tag resources of products", "/tagResources?$filter=" + q("product/name eq 'Gold'"), []string{"/tags/live=Live product /products/gold=Gold"}},
		{"tag resources paged", "/tagResources?$top=1&$skip=3", []string{"/tags/live=Live product /products/gold=Gold"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := decodeList(t, c.must(http.StatusOK, http.MethodGet, tc.rel, nil))
			var got []string
			for _, v := range l.Value {
				got = append(got, item(v))
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// The operation item names its API.
	l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/orders/operationsByTags", nil))
	if op, _ := l.Value[0]["operation"].(map[string]any); op["apiName"] != "HTTP orders" || op["method"] != "GET" || op["urlTemplate"] != "/orders" {
		t.Errorf("operation item = %v", op)
	}
	wantError(t, c.do(http.MethodGet, "/apisByTags?$filter="+q("color eq 'red'"), nil), http.StatusBadRequest, "InvalidFilterParameter", "$filter", "tag/")
	wantError(t, c.do(http.MethodGet, "/apisByTags?$filter="+q("tag/id eq 'a' or api/name eq 'b'"), nil), http.StatusBadRequest, "InvalidFilterParameter", "$filter", "tag/")
	wantError(t, c.do(http.MethodGet, "/apis/nope/operationsByTags", nil), http.StatusNotFound, "ResourceNotFound", "", "")
	wantError(t, c.do(http.MethodGet, "/apisByTags?includeNotTaggedProducts=true", nil), http.StatusBadRequest, "ValidationError", "includeNotTaggedProducts", "")
}
