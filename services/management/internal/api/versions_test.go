package api_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

func TestAPIVersionSets(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "versions")

	r := c.must(http.StatusCreated, http.MethodPut, "/apiVersionSets/chat", map[string]any{"properties": map[string]any{
		"displayName": "Chat", "versioningScheme": "query", "versionQueryName": "api-version", "description": "chat versions"}})
	if got := r.JSON()["type"]; got != "Microsoft.ApiManagement/service/api-version-sets" {
		t.Errorf("type = %v", got)
	}
	if got := armProps(t, r)["versioningScheme"]; got != "Query" {
		t.Errorf("versioningScheme = %v, want Query", got)
	}
	for _, tc := range []struct {
		name   string
		props  map[string]any
		target string
	}{
		{"no scheme", map[string]any{"displayName": "x"}, "properties.versioningScheme"},
		{"query without name", map[string]any{"displayName": "x", "versioningScheme": "Query"}, "properties.versionQueryName"},
		{"header without name", map[string]any{"displayName": "x", "versioningScheme": "Header"}, "properties.versionHeaderName"},
		{"header name on segment", map[string]any{"displayName": "x", "versioningScheme": "Segment", "versionHeaderName": "v"}, "properties.versionHeaderName"},
		{"no displayName", map[string]any{"versioningScheme": "Segment"}, "properties.displayName"},
	} {
		wantError(t, c.do(http.MethodPut, "/apiVersionSets/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
	}

	setID := c.svc + "/apiVersionSets/chat"
	v1 := wsAPI("chat")
	v1["apiVersionSetId"], v1["apiVersion"], v1["apiVersionDescription"] = setID, "v1", "first"
	r = c.must(http.StatusCreated, http.MethodPut, "/apis/chat-v1", map[string]any{"properties": v1})
	got := armProps(t, r)
	if got["apiVersionSetId"] != setID || got["apiVersion"] != "v1" || got["apiVersionDescription"] != "first" {
		t.Errorf("version fields not kept: %v", got)
	}
	// A second version shares the path; a third API with the same path outside the set may not,
	// nor one with the same version.
	v2 := wsAPI("chat")
	v2["apiVersionSetId"], v2["apiVersion"] = setID, "v2"
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat-v2", map[string]any{"properties": v2})
	wantError(t, c.do(http.MethodPut, "/apis/other", map[string]any{"properties": wsAPI("chat")}), http.StatusBadRequest, "ValidationError", "path", "version set")
	dup := wsAPI("chat")
	dup["apiVersionSetId"], dup["apiVersion"] = setID, "V2"
	wantError(t, c.do(http.MethodPut, "/apis/chat-dup", map[string]any{"properties": dup}), http.StatusBadRequest, "ValidationError", "properties.apiVersion", "")
	// A set that does not exist, and a version without a set, are refused.
	bad := wsAPI("x")
	bad["apiVersionSetId"] = c.svc + "/apiVersionSets/nope"
	wantError(t, c.do(http.MethodPut, "/apis/x", map[string]any{"properties": bad}), http.StatusBadRequest, "ValidationError", "properties.apiVersionSetId", "")
	bad = wsAPI("x")
	bad["apiVersion"] = "v1"
	wantError(t, c.do(http.MethodPut, "/apis/x", map[string]any{"properties": bad}), http.StatusBadRequest, "ValidationError", "properties.apiVersion", "")

	// expandApiVersionSet returns the set inline.
	r = c.must(http.StatusOK, http.MethodGet, "/apis/chat-v2?expandApiVersionSet=true", nil)
	inline, _ := armProps(t, r)["apiVersionSet"].(map[string]any)
	want := map[string]any{"id": setID, "name": "chat", "displayName": "Chat", "description": "chat versions",
		"versioningScheme": "Query", "versionQueryName": "api-version"}
	if d := cmp.Diff(want, inline); d != "" {
		t.Errorf("apiVersionSet (-want +got):\n%s", d)
	}
	// A set in use cannot be deleted.
	wantError(t, c.do(http.MethodDelete, "/apiVersionSets/chat", nil, "If-Match", "*"), http.StatusBadRequest, "ValidationError", "apiVersionSet", "chat-v1")

	// An inline set without an id creates a new set.
	inl := httpAPI("orders")
	inl["apiVersion"] = "2024-01-01"
	inl["apiVersionSet"] = map[string]any{"name": "Orders", "versioningScheme": "Header", "versionHeaderName": "Api-Version"}
	r = c.must(http.StatusCreated, http.MethodPut, "/apis/orders", map[string]any{"properties": inl})
	id, _ := armProps(t, r)["apiVersionSetId"].(string)
	setName := id[len(c.svc+"/apiVersionSets/"):]
	r = c.must(http.StatusOK, http.MethodGet, "/apiVersionSets/"+setName, nil)
	if p := armProps(t, r); p["versioningScheme"] != "Header" || p["versionHeaderName"] != "Api-Version" || p["displayName"] != "Orders" {
		t.Errorf("inline set stored as %v", p)
	}
	if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apiVersionSets", nil)); len(l.Value) != 2 {
		t.Errorf("list has %d sets, want 2", len(l.Value))
	}
}

func TestAPIRevisions(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "revisions")
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat", map[string]any{"properties": wsAPI("chat")})
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat/operations/onHandshake/policies/policy", policyDoc(`<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`, "xml"))

	// Revision 1 is the API itself, also by its revision name; revision 2 does not exist yet.
	r := c.must(http.StatusOK, http.MethodGet, "/apis/chat;rev=1", nil)
	if r.JSON()["name"] != "chat;rev=1" || armProps(t, r)["isCurrent"] != true {
		t.Errorf("chat;rev=1 = %s", r.Body)
	}
	c.must(http.StatusNotFound, http.MethodGet, "/apis/chat;rev=2", nil)
	wantError(t, c.do(http.MethodPut, "/apis/chat;rev=2", map[string]any{"properties": map[string]any{"path": "chat"}}),
		http.StatusBadRequest, "ValidationError", "properties.sourceApiId", "")
	wantError(t, c.do(http.MethodPut, "/apis/chat;x=2", map[string]any{"properties": wsAPI("chat")}), http.StatusBadRequest, "ValidationError", "name", "")

	r = c.must(http.StatusCreated, http.MethodPut, "/apis/chat;rev=2", map[string]any{"properties": map[string]any{
		"sourceApiId": c.svc + "/apis/chat", "path": "chat", "serviceUrl": "wss://v2.example.com/chat", "apiRevisionDescription": "second"}})
	p := armProps(t, r)
	if r.JSON()["name"] != "chat;rev=2" || p["apiRevision"] != "2" || p["isCurrent"] != false || p["serviceUrl"] != "wss://v2.example.com/chat" || p["type"] != "websocket" {
		t.Errorf("revision 2 = %s", r.Body)
	}
	// It has its own onHandshake operation with a copy of its policy.
	c.must(http.StatusOK, http.MethodGet, "/apis/chat;rev=2/operations/onHandshake", nil)
	c.must(http.StatusOK, http.MethodGet, "/apis/chat;rev=2/operations/onHandshake/policies/policy", nil)
	// The API list shows APIs, not revisions.
	if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis", nil)); len(l.Value) != 1 {
		t.Errorf("apis lists %d, want 1: %v", len(l.Value), l.Value)
	}
	// A non-current revision cannot change what the API shares.
	wantError(t, c.do(http.MethodPatch, "/apis/chat;rev=2", map[string]any{"properties": map[string]any{"displayName": "New"}}, "If-Match", "*"),
		http.StatusBadRequest, "ValidationError", "properties.displayName", "non-current revision")
	wantError(t, c.do(http.MethodPatch, "/apis/chat", map[string]any{"properties": map[string]any{"isCurrent": false}}, "If-Match", "*"),
		http.StatusBadRequest, "ValidationError", "properties.isCurrent", "")
	// A change to the API reaches its revisions.
	c.must(http.StatusOK, http.MethodPatch, "/apis/chat", map[string]any{"properties": map[string]any{"displayName": "Chat!"}}, "If-Match", "*")
	if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat;rev=2", nil))["displayName"]; got != "Chat!" {
		t.Errorf("revision 2 displayName = %v", got)
	}

	revs := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat/revisions", nil))
	var ids []any
	for _, v := range revs.Value {
		ids = append(ids, []any{v["apiId"], v["apiRevision"], v["isCurrent"]})
	}
	if d := cmp.Diff([]any{[]any{"/apis/chat;rev=1", "1", true}, []any{"/apis/chat;rev=2", "2", false}}, ids); d != "" {
		t.Errorf("revisions (-want +got):\n%s", d)
	}
	if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat/revisions?$filter="+url.QueryEscape("apiRevision eq '2'"), nil)); len(l.Value) != 1 {
		t.Errorf("filtered revisions: %v", l.Value)
	}

	// A release of revision 2 makes it current: apis/chat is revision 2, revision 1 is kept.
	r = c.must(http.StatusCreated, http.MethodPut, "/apis/chat/releases/go-live", map[string]any{"properties": map[string]any{
		"apiId": c.svc + "/apis/chat;rev=2", "notes": "v2 goes live"}})
	if got := armProps(t, r)["notes"]; got != "v2 goes live" {
		t.Errorf("release notes = %v", got)
	}
	p = armProps(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat", nil))
	if p["apiRevision"] != "2" || p["serviceUrl"] != "wss://v2.example.com/chat" || p["isCurrent"] != true || p["apiRevisionDescription"] != "second" {
		t.Errorf("after the release apis/chat = %v", p)
	}
	p = armProps(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat;rev=1", nil))
	if p["apiRevision"] != "1" || p["isCurrent"] != false || p["serviceUrl"] != "wss://backend.example.com/chat" {
		t.Errorf("after the release chat;rev=1 = %v", p)
	}
	c.must(http.StatusOK, http.MethodGet, "/apis/chat;rev=1/operations/onHandshake", nil)
	c.must(http.StatusOK, http.MethodGet, "/apis/chat/releases/go-live", nil)
	if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat/releases", nil)); len(l.Value) != 1 {
		t.Errorf("releases: %v", l.Value)
	}

	// isCurrent true on a revision switches back; the current revision cannot be deleted.
	c.must(http.StatusOK, http.MethodPatch, "/apis/chat;rev=1", map[string]any{"properties": map[string]any{"isCurrent": true}}, "If-Match", "*")
	if got := armProps(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat", nil))["apiRevision"]; got != "1" {
		t.Errorf("after isCurrent apis/chat is revision %v, want 1", got)
	}
	wantError(t, c.do(http.MethodDelete, "/apis/chat;rev=1", nil, "If-Match", "*"), http.StatusBadRequest, "ValidationError", "", "Cannot delete the current revision")
	c.must(http.StatusNoContent, http.MethodDelete, "/apis/chat;rev=2", nil, "If-Match", "*")
	c.must(http.StatusNotFound, http.MethodGet, "/apis/chat;rev=2", nil)

	// Deleting the API deletes its revisions and releases.
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat;rev=3", map[string]any{"properties": map[string]any{"sourceApiId": c.svc + "/apis/chat"}})
	c.must(http.StatusNoContent, http.MethodDelete, "/apis/chat", nil, "If-Match", "*")
	c.must(http.StatusNotFound, http.MethodGet, "/apis/chat;rev=3", nil)
	c.must(http.StatusCreated, http.MethodPut, "/apis/chat", map[string]any{"properties": wsAPI("chat")})
	if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat/revisions", nil)); len(l.Value) != 1 {
		t.Errorf("revisions of the new chat: %v", l.Value)
	}
	if l := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/chat/releases", nil)); len(l.Value) != 0 {
		t.Errorf("releases of the new chat: %v", l.Value)
	}
}
