package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/management/internal/mgmttest"
)

// petstoreJSON is an OpenAPI 3 description with three operations, a path parameter, a query
// parameter, a component schema and two servers, the https one to become the serviceUrl.
const petstoreJSON = `{
  "openapi": "3.0.1",
  "info": {"title": "Petstore", "description": "Pets for sale", "version": "1.0"},
  "servers": [{"url": "http://plain.example.com/v1"}, {"url": "https://{host}/v1", "variables": {"host": {"default": "backend.example.com"}}}],
  "paths": {
    "/pets": {
      "get": {"operationId": "listPets", "summary": "List pets",
        "parameters": [{"name": "limit", "in": "query", "required": false, "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "A page of pets", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}},
      "post": {"operationId": "createPet", "summary": "Create a pet",
        "requestBody": {"description": "The pet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
        "responses": {"201": {"description": "Created"}}}
    },
    "/pets/{petId}": {
      "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "show Pet.ById", "responses": {"200": {"description": "The pet"}, "default": {"description": "An error"}}}
    }
  },
  "components": {"schemas": {"Pet": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}}}
}`

// petstoreYAML is petstoreJSON's first two operations in YAML, without operationIds on one.
const petstoreYAML = `openapi: 3.0.1
info:
  title: Petstore YAML
  version: "2"
servers:
  - url: https://yaml.example.com/api
paths:
  /pets:
    get:
      operationId: listPets
      responses:
        "200":
          description: ok
  /pets/{petId}/photos:
    put:
      summary: Upload a photo
      parameters:
        - name: petId
          in: path
          required: true
          schema:
            type: string
      responses:
        "204":
          description: stored
`

// swaggerJSON is a Swagger 2.0 description: its host, basePath and schemes give the serviceUrl.
const swaggerJSON = `{
  "swagger": "2.0",
  "info": {"title": "Swagger Petstore", "version": "1.0"},
  "host": "petstore.example.com", "basePath": "/v2", "schemes": ["https"],
  "paths": {"/pet/{petId}": {"get": {"operationId": "getPetById", "summary": "Find a pet",
    "parameters": [{"name": "petId", "in": "path", "required": true, "type": "integer"}],
    "responses": {"200": {"description": "ok"}}}}}
}`

// importAPI returns the properties of an API PUT importing value in format at path.
func importAPI(path, format, value string) map[string]any {
	return map[string]any{"path": path, "format": format, "value": value}
}

// operationsOf returns the operations of the API apiID by name.
func operationsOf(t *testing.T, c svcClient, apiID string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, v := range decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/"+apiID+"/operations", nil)).Value {
		out[v["name"].(string)] = v["properties"].(map[string]any)
	}
	return out
}

// opSummary is what a user checks of an imported operation.
type opSummary struct{ Method, URLTemplate, DisplayName string }

func summaries(ops map[string]map[string]any) map[string]opSummary {
	out := map[string]opSummary{}
	for name, p := range ops {
		out[name] = opSummary{p["method"].(string), p["urlTemplate"].(string), p["displayName"].(string)}
	}
	return out
}

func TestImportOpenAPIJSONCreatesOperations(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "import-json")

	r := c.must(http.StatusCreated, http.MethodPut, "/apis/pets", map[string]any{"properties": importAPI("pets", "openapi+json", petstoreJSON)})
	got := armProps(t, r)
	if got["displayName"] != "Petstore" || got["description"] != "Pets for sale" || got["serviceUrl"] != "https://backend.example.com/v1" {
		t.Errorf("API from the description: %v", got)
	}
	if _, ok := got["format"]; ok {
		t.Errorf("format is write-only, but came back: %v", got)
	}
	ops := operationsOf(t, c, "pets")
	want := map[string]opSummary{
		"listpets":      {"GET", "/pets", "List pets"},
		"createpet":     {"POST", "/pets", "Create a pet"},
		"show-pet-byid": {"GET", "/pets/{petId}", "show Pet.ById"},
	}
	if diff := cmp.Diff(want, summaries(ops)); diff != "" {
		t.Fatalf("operations (-want +got):\n%s", diff)
	}
	show := ops["show-pet-byid"]
	if tp := show["templateParameters"].([]any); len(tp) != 1 || tp[0].(map[string]any)["name"] != "petId" || tp[0].(map[string]any)["required"] != true {
		t.Errorf("templateParameters = %v", tp)
	}
	if resp := show["responses"].([]any); len(resp) != 1 || resp[0].(map[string]any)["statusCode"] != float64(200) {
		t.Errorf("responses = %v, want the 200 alone (default has no status code)", resp)
	}
	req := ops["createpet"]["request"].(map[string]any)
	rep := req["representations"].([]any)[0].(map[string]any)
	if req["description"] != "The pet" || rep["contentType"] != "application/json" || rep["typeName"] != "Pet" || rep["schemaId"] == "" {
		t.Errorf("createpet request = %v", req)
	}
	if q := ops["listpets"]["request"].(map[string]any)["queryParameters"].([]any); len(q) != 1 || q[0].(map[string]any)["type"] != "integer" {
		t.Errorf("listpets query parameters = %v", q)
	}
	// The components are stored as the API schema the representations name.
	schemas := decodeList(t, c.must(http.StatusOK, http.MethodGet, "/apis/pets/schemas", nil)).Value
	if len(schemas) != 1 || schemas[0]["name"] != rep["schemaId"] {
		t.Fatalf("schemas = %v, want one named %v", schemas, rep["schemaId"])
	}
	sp := schemas[0]["properties"].(map[string]any)
	if sp["contentType"] != "application/vnd.oai.openapi.components+json" || !strings.Contains(mustMarshal(t, sp["document"]), `"Pet"`) {
		t.Errorf("schema = %v", sp)
	}

	// serviceUrl in the request wins over the servers.
	p := importAPI("pets2", "openapi+json", petstoreJSON)
	p["serviceUrl"] = "https://override.example.com"
	if got := armProps(t, c.must(http.StatusCreated, http.MethodPut, "/apis/pets2", map[string]any{"properties": p}))["serviceUrl"]; got != "https://override.example.com" {
		t.Errorf("serviceUrl = %v, want the request's", got)
	}

	// A re-import updates operations in place (keeping their policies) and deletes the others.
	c.must(http.StatusCreated, http.MethodPut, "/apis/pets/operations/listpets/policies/policy", map[string]any{"properties": map[string]any{
		"format": "rawxml", "value": "<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"}})
	c.must(http.StatusOK, http.MethodPut, "/apis/pets", map[string]any{"properties": importAPI("pets", "openapi", petstoreYAML)})
	if diff := cmp.Diff(map[string]opSummary{
		"listpets":              {"GET", "/pets", "listPets"},
		"put-pets-petid-photos": {"PUT", "/pets/{petId}/photos", "Upload a photo"},
	}, summaries(operationsOf(t, c, "pets"))); diff != "" {
		t.Errorf("operations after re-import (-want +got):\n%s", diff)
	}
	c.must(http.StatusOK, http.MethodGet, "/apis/pets/operations/listpets/policies/policy", nil)
}

func TestImportSwagger2(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "import-swagger")
	got := armProps(t, c.must(http.StatusCreated, http.MethodPut, "/apis/petstore", map[string]any{"properties": importAPI("petstore", "swagger-json", swaggerJSON)}))
	if got["serviceUrl"] != "https://petstore.example.com/v2" || got["displayName"] != "Swagger Petstore" {
		t.Errorf("API from Swagger: %v", got)
	}
	ops := operationsOf(t, c, "petstore")
	if diff := cmp.Diff(map[string]opSummary{"getpetbyid": {"GET", "/pet/{petId}", "Find a pet"}}, summaries(ops)); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
	if tp := ops["getpetbyid"]["templateParameters"].([]any); len(tp) != 1 || tp[0].(map[string]any)["type"] != "integer" {
		t.Errorf("templateParameters = %v", tp)
	}
}

func TestImportRefusesWhatItCannotKeep(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "import-bad")
	ws := importAPI("ws", "openapi+json", petstoreJSON)
	ws["type"] = "websocket"
	sel := importAPI("soap", "wsdl", "<definitions/>")
	for _, tc := range []struct {
		name          string
		props         map[string]any
		target, words string
	}{
		{"wsdl", importAPI("soap", "wsdl", "<definitions/>"), "properties.format", "'wsdl'"},
		{"graphql", importAPI("gql", "graphql-link", "https://example.com/graphql"), "properties.format", "'graphql-link'"},
		{"yaml sent as json", importAPI("y", "openapi+json", petstoreYAML), "properties.value", "JSON"},
		{"swagger as openapi", importAPI("s", "openapi+json", swaggerJSON), "properties.value", ""},
		{"openapi as swagger", importAPI("o", "swagger-json", petstoreJSON), "properties.value", "Swagger 2.0"},
		{"not a document", importAPI("n", "openapi", "::: not yaml"), "properties.value", ""},
		{"value without format", map[string]any{"path": "v", "displayName": "v", "value": petstoreJSON}, "properties.format", ""},
		{"websocket", ws, "properties.type", "websocket"},
		{"template translation", map[string]any{"path": "t", "format": "openapi+json", "value": petstoreJSON, "translateRequiredQueryParameters": "template"}, "properties.translateRequiredQueryParameters", ""},
		{"wsdl selector", func() map[string]any { sel["wsdlSelector"] = map[string]any{"wsdlServiceName": "s"}; return sel }(), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, c.do(http.MethodPut, "/apis/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, tc.words)
		})
	}
	c.must(http.StatusNotFound, http.MethodGet, "/apis/bad", nil)
	// An import into a revision that is not current is refused, not dropped.
	c.put("/apis/rev", httpAPI("rev"))
	p := importAPI("rev", "openapi+json", petstoreJSON)
	p["sourceApiId"] = c.svc + "/apis/rev"
	wantError(t, c.do(http.MethodPut, "/apis/rev;rev=2", map[string]any{"properties": p}), http.StatusBadRequest, "ValidationError", "properties.format", "current revision")
}

func TestImportFromLinkUnderEgressPolicy(t *testing.T) {
	t.Parallel()
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, petstoreJSON) }))
	t.Cleanup(denied.Close)
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/petstore.json":
			io.WriteString(w, petstoreJSON)
		case "/petstore.yaml":
			io.WriteString(w, petstoreYAML)
		case "/swagger.json":
			io.WriteString(w, swaggerJSON)
		case "/elsewhere":
			http.Redirect(w, r, denied.URL+"/petstore.json", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(allowed.Close)
	env := mgmttest.Start(t, mgmttest.Options{EgressAllow: strings.TrimPrefix(allowed.URL, "http://")})
	c := newSvcClient(t, env, "import-link")

	for _, tc := range []struct{ format, file, op string }{
		{"openapi+json-link", "/petstore.json", "createpet"},
		{"openapi-link", "/petstore.yaml", "put-pets-petid-photos"},
		{"swagger-link-json", "/swagger.json", "getpetbyid"},
	} {
		name := strings.NewReplacer("+", "-", "/", "", ".", "-").Replace(tc.format + tc.file)
		c.must(http.StatusCreated, http.MethodPut, "/apis/"+name, map[string]any{"properties": importAPI(name, tc.format, allowed.URL+tc.file)})
		if _, ok := operationsOf(t, c, name)[tc.op]; !ok {
			t.Errorf("%s: no operation %s after importing %s", tc.format, tc.op, tc.file)
		}
	}
	for _, tc := range []struct{ name, link, words string }{
		{"denied host", denied.URL + "/petstore.json", "egress"},
		{"redirect to a denied host", allowed.URL + "/elsewhere", "egress"},
		{"not found", allowed.URL + "/missing", "404"},
		{"not a URL", "petstore.json", "URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, c.do(http.MethodPut, "/apis/linked", map[string]any{"properties": importAPI("linked", "openapi+json-link", tc.link)}),
				http.StatusBadRequest, "ValidationError", "properties.value", tc.words)
		})
	}
}

func TestExportRoundTripsAndLinks(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "export")
	c.must(http.StatusCreated, http.MethodPut, "/apis/pets", map[string]any{"properties": importAPI("pets", "openapi+json", petstoreJSON)})
	want := summaries(operationsOf(t, c, "pets"))

	r := c.must(http.StatusOK, http.MethodGet, "/apis/pets?export=true&format=openapi%2Bjson", nil)
	var res struct {
		ID     string          `json:"id"`
		Format string          `json:"format"`
		Value  json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil || res.ID != c.svc+"/apis/pets" || res.Format != "openapi+json" {
		t.Fatalf("export = %s", r.Body)
	}
	// The export imports back to the same operations.
	c.must(http.StatusCreated, http.MethodPut, "/apis/pets-again", map[string]any{"properties": importAPI("pets-again", "openapi+json", string(res.Value))})
	if diff := cmp.Diff(want, summaries(operationsOf(t, c, "pets-again"))); diff != "" {
		t.Errorf("round trip through openapi+json (-want +got):\n%s", diff)
	}
	sw := c.must(http.StatusOK, http.MethodGet, "/apis/pets?export=true&format=swagger-json", nil)
	var swRes struct{ Value json.RawMessage }
	_ = json.Unmarshal(sw.Body, &swRes)
	c.must(http.StatusCreated, http.MethodPut, "/apis/pets-swagger", map[string]any{"properties": importAPI("pets-swagger", "swagger-json", string(swRes.Value))})
	if diff := cmp.Diff(want, summaries(operationsOf(t, c, "pets-swagger"))); diff != "" {
		t.Errorf("round trip through swagger-json (-want +got):\n%s", diff)
	}

	// A link format answers APIM's {"value":{"link"}}; the link serves the YAML document without
	// credentials, and a link altered in any way serves nothing.
	lr := c.must(http.StatusOK, http.MethodGet, "/apis/pets?format=openapi-link&export=true", nil)
	var link struct {
		Format string `json:"format"`
		Value  struct {
			Link string `json:"link"`
		} `json:"value"`
	}
	if err := json.Unmarshal(lr.Body, &link); err != nil || link.Format != "openapi-link" || link.Value.Link == "" {
		t.Fatalf("link export = %s", lr.Body)
	}
	resp, err := http.Get(link.Value.Link)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(doc), "openapi: 3.0.1") || !strings.Contains(string(doc), "/pets/{petId}:") {
		t.Errorf("GET link: %d %s", resp.StatusCode, doc)
	}
	u, _ := url.Parse(link.Value.Link)
	q := u.Query()
	q.Set("token", q.Get("token")+"x")
	u.RawQuery = q.Encode()
	if resp, err := http.Get(u.String()); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("tampered link: %v %v, want 404", resp.StatusCode, err)
	}

	for _, tc := range []struct{ name, query, target string }{
		{"wadl", "export=true&format=wadl-link", "format"},
		{"no format", "export=true", "format"},
		{"export false", "export=false&format=openapi", "export"},
		{"asyncapi of an http API", "export=true&format=asyncapi%2Bjson", "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, c.do(http.MethodGet, "/apis/pets?"+tc.query, nil), http.StatusBadRequest, "ValidationError", tc.target, "")
		})
	}
}

func TestExportWebSocketAPIAsAsyncAPI(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "asyncapi")
	p := wsAPI("chat")
	p["subscriptionKeyParameterNames"] = map[string]any{"header": "X-Key", "query": "key"}
	c.put("/apis/chat", p)
	r := c.must(http.StatusOK, http.MethodGet, "/apis/chat?export=true&format=asyncapi%2Bjson", nil)
	var res struct {
		Format string `json:"format"`
		Value  struct {
			AsyncAPI string `json:"asyncapi"`
			Info     struct {
				Title, Version string
			} `json:"info"`
			Channels map[string]struct {
				Bindings  map[string]map[string]any `json:"bindings"`
				Publish   map[string]any            `json:"publish"`
				Subscribe map[string]any            `json:"subscribe"`
			} `json:"channels"`
			Components struct {
				SecuritySchemes map[string]struct{ Type, In, Name string } `json:"securitySchemes"`
			} `json:"components"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil {
		t.Fatal(err)
	}
	v := res.Value
	if res.Format != "asyncapi+json" || v.AsyncAPI != "2.6.0" || v.Info.Title != "WS chat" || v.Info.Version == "" {
		t.Errorf("AsyncAPI header: %s", r.Body)
	}
	ch, ok := v.Channels["/chat"]
	if !ok || ch.Bindings["ws"]["method"] != "GET" || ch.Publish["message"] == nil || ch.Subscribe["message"] == nil {
		t.Errorf("channel /chat: %s", r.Body)
	}
	want := map[string]struct{ Type, In, Name string }{
		"subscriptionKeyHeader": {"httpApiKey", "header", "X-Key"},
		"subscriptionKeyQuery":  {"httpApiKey", "query", "key"},
	}
	if diff := cmp.Diff(want, v.Components.SecuritySchemes); diff != "" {
		t.Errorf("security schemes (-want +got):\n%s", diff)
	}
	wantError(t, c.do(http.MethodGet, "/apis/chat?export=true&format=openapi%2Bjson", nil), http.StatusBadRequest, "ValidationError", "format", "AsyncAPI")
}

func TestAPISchemas(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	c := newSvcClient(t, env, "schemas")
	c.put("/apis/echo", httpAPI("echo"))
	doc := map[string]any{"contentType": "application/vnd.ms-azure-apim.xsd+xml", "document": map[string]any{"value": "<xs:schema/>"}}
	got := armProps(t, c.must(http.StatusCreated, http.MethodPut, "/apis/echo/schemas/xsd", map[string]any{"properties": doc}))
	if diff := cmp.Diff(doc, got); diff != "" {
		t.Errorf("schema (-want +got):\n%s", diff)
	}
	r := c.must(http.StatusOK, http.MethodGet, "/apis/echo/schemas/xsd", nil)
	if r.JSON()["type"] != "Microsoft.ApiManagement/service/apis/schemas" {
		t.Errorf("type = %v", r.JSON()["type"])
	}
	if names := listNames(t, c.must(http.StatusOK, http.MethodGet, "/apis/echo/schemas", nil)); !cmp.Equal(names, []string{"xsd"}) {
		t.Errorf("list = %v", names)
	}
	for _, tc := range []struct {
		name   string
		props  map[string]any
		target string
	}{
		{"no content type", map[string]any{"document": map[string]any{"value": "x"}}, "properties.contentType"},
		{"empty document", map[string]any{"contentType": "a", "document": map[string]any{}}, "properties.document"},
		{"components not an object", map[string]any{"contentType": "a", "document": map[string]any{"components": []any{}}}, "properties.document.components"},
		{"unknown field", map[string]any{"contentType": "a", "document": map[string]any{"value": "x"}, "schemaType": "json"}, "properties.schemaType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, c.do(http.MethodPut, "/apis/echo/schemas/bad", map[string]any{"properties": tc.props}), http.StatusBadRequest, "ValidationError", tc.target, "")
		})
	}
	c.must(http.StatusNotFound, http.MethodPut, "/apis/none/schemas/x", map[string]any{"properties": doc})
	c.must(http.StatusMethodNotAllowed, http.MethodPatch, "/apis/echo/schemas/xsd", map[string]any{"properties": doc}, "If-Match", "*")
	c.must(http.StatusOK, http.MethodDelete, "/apis/echo/schemas/xsd", nil, "If-Match", "*")
	c.must(http.StatusNotFound, http.MethodGet, "/apis/echo/schemas/xsd", nil)
	// Deleting the API deletes its schemas.
	c.must(http.StatusCreated, http.MethodPut, "/apis/echo/schemas/again", map[string]any{"properties": doc})
	c.must(http.StatusNoContent, http.MethodDelete, "/apis/echo", nil, "If-Match", "*")
	c.put("/apis/echo", httpAPI("echo"))
	c.must(http.StatusNotFound, http.MethodGet, "/apis/echo/schemas/again", nil)
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
