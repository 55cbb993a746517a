package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestImportedOperationsRoute imports an OpenAPI description with two operations and calls them
// through a real gateway node: a defined operation reaches the backend at the serviceUrl the
// description's servers gave, an undefined one is APIM's 404.
func TestImportedOperationsRoute(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	b := newBackend(t, "imported", "")
	doc := `{"openapi": "3.0.1", "info": {"title": "Items", "version": "1"},
	  "servers": [{"url": "` + b.srv.URL + `/base"}],
	  "paths": {"/items/{id}": {"get": {"operationId": "getItem", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
	      "responses": {"200": {"description": "the item"}}}},
	    "/items": {"post": {"operationId": "addItem", "responses": {"201": {"description": "added"}}}}}}`
	s.must(t, []int{http.StatusCreated}, http.MethodPut, "/apis/items", map[string]any{"properties": map[string]any{
		"path": "imp", "protocols": []string{"http"}, "format": "openapi+json", "value": doc}})
	s.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/items", nil)
	key := s.subscription(t, "items", "/apis/items", "active")
	gw := s.startNode(t, "gw1", nodeOptions{})

	call := func(method, path string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, gw.http(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = keyHeader(key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	status, _, body := call(http.MethodGet, "/imp/items/42")
	var h hello
	if err := json.Unmarshal([]byte(body), &h); status != http.StatusOK || err != nil {
		t.Fatalf("GET /imp/items/42: %d %s", status, body)
	}
	if h.Backend != "imported" || h.Method != http.MethodGet || h.Path != "/base/items/42" {
		t.Errorf("the backend saw %+v, want GET /base/items/42 on the imported backend", h)
	}
	if status, _, body := call(http.MethodPost, "/imp/items"); status != http.StatusOK || !strings.Contains(body, `"/base/items"`) {
		t.Errorf("POST /imp/items: %d %s", status, body)
	}
	for _, tc := range []struct{ method, path string }{{http.MethodGet, "/imp/orders/1"}, {http.MethodDelete, "/imp/items/42"}} {
		status, hdr, body := call(tc.method, tc.path)
		wantGatewayError(t, status, hdr, body, http.StatusNotFound, "Resource not found")
	}
}
