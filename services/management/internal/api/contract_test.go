package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/management/internal/portal"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/openapi"
	"gatehouse.dev/pkg/configwire"
)

// The contract tests hold openapi/management.yaml and the server to each other: the document
// must be valid OpenAPI 3, name exactly the routes the server registers, and describe every
// request and response of a scripted session against the real server.

// loadContract loads and validates the embedded management API document.
func loadContract(t testing.TB) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.Management)
	if err != nil {
		t.Fatalf("load openapi/management.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi/management.yaml is not valid OpenAPI: %v", err)
	}
	return doc
}

func TestContractDocument(t *testing.T) {
	t.Parallel()
	doc := loadContract(t)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	// Anything outside ARM's /subscriptions/ and /providers/ trees is Gatehouse's own and must say so.
	for path, item := range doc.Paths.Map() {
		if strings.HasPrefix(path, "/subscriptions/") || strings.HasPrefix(path, "/providers/Microsoft.ApiManagement/") {
			continue
		}
		for method, op := range item.Operations() {
			if op.Extensions["x-gatehouse-extension"] != true {
				t.Errorf("%s %s is not ARM but lacks x-gatehouse-extension: true", method, path)
			}
		}
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

func TestContractRoutes(t *testing.T) {
	t.Parallel()
	doc := loadContract(t)
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true})

	var inCode, inSpec []string
	for _, r := range env.Server.Routes() {
		// The portal's static files (/portal, /portal/*) are a web page, not an API operation.
		if r.Method == echo.RouteNotFound || r.Path == "/portal" || strings.HasPrefix(r.Path, portal.Path) {
			continue
		}
		inCode = append(inCode, r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}"))
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec = append(inSpec, method+" "+path)
		}
	}
	slices.Sort(inCode)
	inCode = slices.Compact(inCode)
	slices.Sort(inSpec)
	if len(inCode) == 0 {
		t.Fatal("the server registers no routes")
	}
	if missing := minus(inCode, inSpec); len(missing) > 0 {
		t.Errorf("routes the server serves but the spec does not describe:\n  %s", strings.Join(missing, "\n  "))
	}
	if extra := minus(inSpec, inCode); len(extra) > 0 {
		t.Errorf("operations the spec describes but the server does not route:\n  %s", strings.Join(extra, "\n  "))
	}
}

// minus returns the elements of a that are not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// session sends requests to a real management server, validating each request and response
// against the contract.
type session struct {
	env    *mgmttest.Env
	doc    *openapi3.T
	router routers.Router
	opts   *openapi3filter.Options
	// seen records the operationIds the session exercised.
	seen map[string]bool
}

func newSession(t *testing.T, env *mgmttest.Env, doc *openapi3.T) *session {
	t.Helper()
	// The servers entry names a deployment's URL; route on paths alone.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &session{env: env, doc: doc, router: router, seen: map[string]bool{}, opts: &openapi3filter.Options{
		IncludeResponseStatus:             true,
		MultiError:                        true,
		RejectWhenRequestBodyNotSpecified: true,
		AuthenticationFunc:                authenticate,
	}}
}

// authenticate checks that a request carries the credential its security scheme names.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	prefix := map[string]string{"bearer": "Bearer ", "gatewayKey": "GatewayKey "}[in.SecuritySchemeName]
	if prefix == "" {
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	if !strings.HasPrefix(h, prefix) {
		return fmt.Errorf("Authorization does not start with %q", prefix)
	}
	return nil
}

// call is one request of the session.
type call struct {
	method, path string
	body         any
	// headers are name, value pairs; an empty value removes the header (Authorization).
	headers []string
	want    int
	// offContract marks a request that deliberately breaks the contract (no If-Match, no
	// token, no api-version): the spec must reject it, and only the response is validated.
	offContract bool
	// noAPIVersion leaves out the api-version an ARM path otherwise gets.
	noAPIVersion bool
}

func (s *session) request(t *testing.T, c call) *http.Request {
	t.Helper()
	path := c.path
	if strings.HasPrefix(path, "/subscriptions/") && !c.noAPIVersion && !strings.Contains(path, "api-version=") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "api-version=" + mgmttest.APIVersion
	}
	var body io.Reader
	if c.body != nil {
		raw, err := json.Marshal(c.body)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(c.method, s.env.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.env.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(c.headers); i += 2 {
		if c.headers[i+1] == "" {
			req.Header.Del(c.headers[i])
			continue
		}
		req.Header.Set(c.headers[i], c.headers[i+1])
	}
	return req
}

// do sends c, fails the test unless the answer has status c.want, and reports every way the
// request or the response departs from the contract.
func (s *session) do(t *testing.T, c call) mgmttest.Response {
	t.Helper()
	ctx := context.Background()
	name := c.method + " " + c.path

	req := s.request(t, c)
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s: the spec has no operation for it: %v", name, err)
	}
	s.seen[route.Operation.OperationID] = true
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: s.opts}
	err = openapi3filter.ValidateRequest(ctx, in)
	switch {
	case c.offContract && err == nil:
		t.Errorf("%s: the spec accepts a request this session sends as off-contract", name)
	case !c.offContract && err != nil:
		t.Errorf("%s: request does not match the spec: %v", name, err)
	}

	resp, err := s.env.Client.Do(s.request(t, c))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	out := mgmttest.Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	if out.Status != c.want {
		t.Fatalf("%s: status %d, want %d; body %s", name, out.Status, c.want, raw)
	}

	if c.method == http.MethodHead {
		// ValidateResponse skips HEAD; check the status and headers it would.
		s.checkHead(t, name, route.Operation, out)
		return out
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: out.Status, Header: out.Header, Options: s.opts}
	rin.SetBodyBytes(raw)
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		t.Errorf("%s: %d response does not match the spec: %v\nbody: %s", name, out.Status, err, raw)
	}
	return out
}

func (s *session) checkHead(t *testing.T, name string, op *openapi3.Operation, r mgmttest.Response) {
	t.Helper()
	ref := op.Responses.Status(r.Status)
	if ref == nil {
		t.Errorf("%s: status %d is not documented", name, r.Status)
		return
	}
	for h, hr := range ref.Value.Headers {
		if hr.Value.Required && r.Header.Get(h) == "" {
			t.Errorf("%s: %d response lacks required header %s", name, r.Status, h)
		}
	}
	if len(r.Body) > 0 {
		t.Errorf("%s: HEAD answered with a body", name)
	}
}

func props(p map[string]any) map[string]any { return map[string]any{"properties": p} }

func TestContractSession(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{NoRelay: true})
	s := newSession(t, env, loadContract(t))

	// Gatehouse's own endpoints.
	s.do(t, call{method: "GET", path: "/healthz", want: 200})
	s.do(t, call{method: "GET", path: "/readyz", want: 200})
	doc := s.do(t, call{method: "GET", path: "/openapi.yaml", want: 200})
	if !bytes.Equal(doc.Body, openapi.Management) {
		t.Error("GET /openapi.yaml does not serve the embedded document")
	}

	// The service.
	svc := mgmttest.ServicePath("contract-sub", "rg1", "contract")
	s.do(t, call{method: "PUT", path: svc, want: 201, body: map[string]any{
		"location": "westeurope", "sku": map[string]any{"name": "Developer", "capacity": 1},
		"tags":       map[string]string{"team": "edge"},
		"properties": map[string]any{"publisherEmail": "admin@example.com", "publisherName": "Example"},
	}})
	r := s.do(t, call{method: "GET", path: svc, want: 200})
	s.do(t, call{method: "HEAD", path: svc, want: 200})
	s.do(t, call{method: "PATCH", path: svc, want: 200, headers: []string{"If-Match", r.Header.Get("ETag")},
		body: map[string]any{"properties": map[string]any{"publisherName": "Example Ltd"}}})
	s.do(t, call{method: "GET", path: "/subscriptions/contract-sub/resourceGroups/rg1/providers/Microsoft.ApiManagement/service", want: 200})
	s.do(t, call{method: "GET", path: "/subscriptions/contract-sub/providers/Microsoft.ApiManagement/service?$top=1", want: 200})

	// A websocket API and an http API with an operation.
	s.do(t, call{method: "PUT", path: svc + "/apis/echo", want: 201, body: props(map[string]any{
		"displayName": "Echo", "type": "websocket", "serviceUrl": "wss://echo.example.com", "path": "echo"})})
	r = s.do(t, call{method: "GET", path: svc + "/apis/echo", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/apis/echo", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/apis/echo", want: 200, headers: []string{"If-Match", r.Header.Get("ETag")},
		body: props(map[string]any{"description": "Echoes every frame."})})
	s.do(t, call{method: "PUT", path: svc + "/apis/orders", want: 201, body: props(map[string]any{
		"displayName": "Orders", "serviceUrl": "https://orders.example.com", "path": "orders", "protocols": []string{"https"},
		"subscriptionKeyParameterNames": map[string]any{"header": "X-Key"}})})
	s.do(t, call{method: "PUT", path: svc + "/apis/orders/operations/get-order", want: 201, body: props(map[string]any{
		"displayName": "Get order", "method": "get", "urlTemplate": "/orders/{id}",
		"templateParameters": []any{map[string]any{"name": "id", "type": "string", "required": true}}})})
	s.do(t, call{method: "GET", path: svc + "/apis?$filter=" + url.QueryEscape("type eq 'websocket'") + "&$top=10", want: 200})
	ops := s.do(t, call{method: "GET", path: svc + "/apis/echo/operations", want: 200})
	if got := names(t, ops); !cmp.Equal(got, []string{"onHandshake"}) {
		t.Errorf("operations of a websocket API = %v, want [onHandshake]", got)
	}
	s.do(t, call{method: "GET", path: svc + "/apis/echo/operations/onHandshake", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/apis/orders/operations/get-order", want: 200})

	// A product holding the websocket API.
	s.do(t, call{method: "PUT", path: svc + "/products/starter", want: 201, body: props(map[string]any{
		"displayName": "Starter", "subscriptionRequired": true, "subscriptionsLimit": 2, "state": "published"})})
	s.do(t, call{method: "PUT", path: svc + "/products/starter/apis/echo", want: 201})
	s.do(t, call{method: "HEAD", path: svc + "/products/starter/apis/echo", want: 204})
	s.do(t, call{method: "GET", path: svc + "/products/starter/apis", want: 200})
	s.do(t, call{method: "GET", path: svc + "/apis/echo/products", want: 200})
	s.do(t, call{method: "GET", path: svc + "/products?$top=1&$skip=0", want: 200})

	// A user and a subscription to the product.
	s.do(t, call{method: "PUT", path: svc + "/users/alice", want: 201, body: props(map[string]any{
		"email": "alice@example.com", "firstName": "Alice", "lastName": "Liddell"})})
	s.do(t, call{method: "GET", path: svc + "/users", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/subscriptions/alice-starter", want: 201, body: props(map[string]any{
		"scope": "/products/starter", "ownerId": "/users/alice", "displayName": "Alice on Starter", "state": "active"})})
	r = s.do(t, call{method: "GET", path: svc + "/subscriptions/alice-starter", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/subscriptions/alice-starter", want: 200, headers: []string{"If-Match", r.Header.Get("ETag")},
		body: props(map[string]any{"stateComment": "approved"})})
	keys := s.do(t, call{method: "POST", path: svc + "/subscriptions/alice-starter/listSecrets", want: 200}).JSON()
	s.do(t, call{method: "POST", path: svc + "/subscriptions/alice-starter/regeneratePrimaryKey", want: 204})
	if again := s.do(t, call{method: "POST", path: svc + "/subscriptions/alice-starter/listSecrets", want: 200}).JSON(); again["primaryKey"] == keys["primaryKey"] {
		t.Error("regeneratePrimaryKey left the primary key unchanged")
	}
	s.do(t, call{method: "GET", path: svc + "/subscriptions?$filter=" + url.QueryEscape("state eq 'active'"), want: 200})
	s.do(t, call{method: "GET", path: svc + "/products/starter/subscriptions", want: 200})
	s.do(t, call{method: "GET", path: svc + "/users/alice/subscriptions", want: 200})
	s.do(t, call{method: "GET", path: svc + "/users/alice/subscriptions/alice-starter", want: 200})

	// Alice as an API consumer, on the portal API.
	utok, _ := s.do(t, call{method: "POST", path: svc + "/users/alice/token", want: 200, body: props(map[string]any{
		"keyType": "primary", "expiry": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})}).JSON()["value"].(string)
	alice := []string{"Authorization", "Bearer " + utok}
	portal := "/gatehouse/portal/v1"
	s.do(t, call{method: "GET", path: portal + "/me", want: 200, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/me", want: 200})
	s.do(t, call{method: "GET", path: portal + "/subscriptions?$top=10", want: 200, headers: alice})
	s.do(t, call{method: "POST", path: portal + "/subscriptions/alice-starter/listSecrets", want: 200, headers: alice})
	s.do(t, call{method: "POST", path: portal + "/subscriptions/alice-starter/regeneratePrimaryKey", want: 204, headers: alice})
	s.do(t, call{method: "POST", path: portal + "/subscriptions/alice-starter/regenerateSecondaryKey", want: 204, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/apis", want: 200, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/services/contract/consolenodes", want: 200, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/services/contract/consolenodes?subscriptionId=contract-sub&resourceGroup=rg1", want: 200})
	wantCode(t, s.do(t, call{method: "GET", path: portal + "/subscriptions", want: 403}), "AuthorizationFailed")
	wantCode(t, s.do(t, call{method: "POST", path: portal + "/subscriptions/missing/listSecrets", want: 404, headers: alice}), "ResourceNotFound")
	wantCode(t, s.do(t, call{method: "GET", path: svc + "/apis", want: 403, headers: alice}), "AuthorizationFailed")
	wantCode(t, s.do(t, call{method: "GET", path: portal + "/me", want: 401, offContract: true, headers: []string{"Authorization", ""}}), "AuthenticationFailed")
	wantCode(t, s.do(t, call{method: "GET", path: portal + "/console", want: 400}), "InvalidRequestContent")

	// Tags and groups, and the products the portal shows alice through her groups.
	s.do(t, call{method: "PUT", path: svc + "/tags/live", want: 201, body: props(map[string]any{"displayName": "Live"})})
	r = s.do(t, call{method: "GET", path: svc + "/tags/live", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/tags/live", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/tags/live", want: 200, headers: []string{"If-Match", r.Header.Get("ETag")},
		body: props(map[string]any{"displayName": "Live streams"})})
	for _, p := range []string{"/apis/echo/tags", "/apis/orders/operations/get-order/tags", "/products/starter/tags"} {
		s.do(t, call{method: "PUT", path: svc + p + "/live", want: 201})
		s.do(t, call{method: "GET", path: svc + p + "/live", want: 200})
		s.do(t, call{method: "HEAD", path: svc + p + "/live", want: 200})
		s.do(t, call{method: "GET", path: svc + p, want: 200})
	}
	s.do(t, call{method: "GET", path: svc + "/tags?scope=apis", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/apis/echo/tagDescriptions/live", want: 201, body: props(map[string]any{
		"description": "Live data", "externalDocsUrl": "https://docs.example.com/live"})})
	s.do(t, call{method: "GET", path: svc + "/apis/echo/tagDescriptions/live", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/apis/echo/tagDescriptions/live", want: 200})
	s.do(t, call{method: "GET", path: svc + "/apis/echo/tagDescriptions", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/apis/echo/tagDescriptions/live", want: 405, headers: []string{"If-Match", "*"},
		body: props(map[string]any{"description": "x"})})
	s.do(t, call{method: "GET", path: svc + "/apisByTags?includeNotTaggedApis=true&$filter=" + url.QueryEscape("tag/id eq 'live'"), want: 200})
	s.do(t, call{method: "GET", path: svc + "/productsByTags?includeNotTaggedProducts=true", want: 200})
	s.do(t, call{method: "GET", path: svc + "/apis/orders/operationsByTags?includeNotTaggedOperations=true", want: 200})
	s.do(t, call{method: "GET", path: svc + "/tagResources", want: 200})
	s.do(t, call{method: "GET", path: svc + "/groups", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/groups/partners", want: 201, body: props(map[string]any{"displayName": "Partners"})})
	r = s.do(t, call{method: "GET", path: svc + "/groups/partners", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/groups/partners", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/groups/partners", want: 200, headers: []string{"If-Match", r.Header.Get("ETag")},
		body: props(map[string]any{"description": "Our partners"})})
	s.do(t, call{method: "PUT", path: svc + "/groups/partners/users/alice", want: 201})
	s.do(t, call{method: "HEAD", path: svc + "/groups/partners/users/alice", want: 204})
	s.do(t, call{method: "GET", path: svc + "/groups/partners/users", want: 200})
	s.do(t, call{method: "GET", path: svc + "/users/alice/groups", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/products/starter/groups/partners", want: 201})
	s.do(t, call{method: "HEAD", path: svc + "/products/starter/groups/partners", want: 204})
	s.do(t, call{method: "GET", path: svc + "/products/starter/groups", want: 200})
	if got := names(t, s.do(t, call{method: "GET", path: portal + "/products", want: 200, headers: alice})); !cmp.Equal(got, []string{"starter"}) {
		t.Errorf("portal products of alice = %v, want [starter]", got)
	}
	wantCode(t, s.do(t, call{method: "DELETE", path: svc + "/groups/developers", want: 400, headers: []string{"If-Match", "*"}}), "ValidationError")
	s.do(t, call{method: "DELETE", path: svc + "/products/starter/groups/partners", want: 200})
	s.do(t, call{method: "DELETE", path: svc + "/groups/partners/users/alice", want: 200})
	s.do(t, call{method: "DELETE", path: svc + "/groups/partners", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/echo/tagDescriptions/live", want: 200, headers: []string{"If-Match", "*"}})
	for _, p := range []string{"/apis/echo/tags", "/apis/orders/operations/get-order/tags", "/products/starter/tags"} {
		s.do(t, call{method: "DELETE", path: svc + p + "/live", want: 200})
	}
	s.do(t, call{method: "DELETE", path: svc + "/tags/live", want: 200, headers: []string{"If-Match", "*"}})

	// A secret named value and policies that reference it.
	s.do(t, call{method: "PUT", path: svc + "/namedValues/tenant", want: 201, body: props(map[string]any{
		"displayName": "tenant", "value": "contoso", "secret": true, "tags": []string{"edge"}})})
	s.do(t, call{method: "GET", path: svc + "/namedValues/tenant", want: 200})
	s.do(t, call{method: "POST", path: "/subscriptions/contract-sub/providers/Microsoft.ApiManagement/checkNameAvailability", want: 200,
		body: map[string]any{"name": "contract", "type": "Microsoft.ApiManagement/service"}})
	s.do(t, call{method: "GET", path: "/providers/Microsoft.ApiManagement/operations?api-version=2024-05-01", want: 200})
	if v := s.do(t, call{method: "POST", path: svc + "/namedValues/tenant/listValue", want: 200}).JSON()["value"]; v != "contoso" {
		t.Errorf("listValue = %v, want contoso", v)
	}
	s.do(t, call{method: "GET", path: svc + "/namedValues", want: 200})
	// A backend whose credentials use the named value, and a pool of it.
	s.do(t, call{method: "PUT", path: svc + "/backends/hub", want: 201, body: props(map[string]any{
		"url": "wss://hub.example.com/ws", "protocol": "http", "title": "Hub", "credentials": map[string]any{"header": map[string]any{"x-tenant": []string{"{{tenant}}"}}},
		"circuitBreaker": map[string]any{"rules": []any{map[string]any{"name": "r", "tripDuration": "PT1M", "failureCondition": map[string]any{
			"count": 5, "interval": "PT1M", "statusCodeRanges": []any{map[string]any{"min": 500, "max": 599}}}}}}})})
	s.do(t, call{method: "PUT", path: svc + "/backends/hubs", want: 201, body: props(map[string]any{
		"type": "Pool", "pool": map[string]any{"services": []any{map[string]any{"id": svc + "/backends/hub", "priority": 1, "weight": 1}}}})})
	s.do(t, call{method: "GET", path: svc + "/backends", want: 200})
	s.do(t, call{method: "POST", path: svc + "/backends/hub/reconnect", want: 202})
	// A version set with a version of the websocket API, a revision of it and its release.
	s.do(t, call{method: "PUT", path: svc + "/apiVersionSets/echo-versions", want: 201, body: props(map[string]any{
		"displayName": "Echo", "versioningScheme": "Header", "versionHeaderName": "Api-Version"})})
	s.do(t, call{method: "GET", path: svc + "/apiVersionSets", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/apis/echo-v2", want: 201, body: props(map[string]any{
		"displayName": "Echo", "type": "websocket", "serviceUrl": "wss://echo2.example.com", "path": "echo2",
		"apiVersion": "v2", "apiVersionSetId": svc + "/apiVersionSets/echo-versions"})})
	s.do(t, call{method: "GET", path: svc + "/apis/echo-v2?expandApiVersionSet=true", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/apis/echo-v2;rev=2", want: 201, body: props(map[string]any{
		"displayName": "Echo", "path": "echo2", "sourceApiId": svc + "/apis/echo-v2", "apiRevisionDescription": "Second"})})
	s.do(t, call{method: "GET", path: svc + "/apis/echo-v2/revisions", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/apis/echo-v2/releases/r2", want: 201, body: props(map[string]any{
		"apiId": svc + "/apis/echo-v2;rev=2", "notes": "Second goes live"})})
	s.do(t, call{method: "GET", path: svc + "/apis/echo-v2/releases", want: 200})
	// An otlp logger, a service diagnostic and an API diagnostic sending to it.
	s.do(t, call{method: "PUT", path: svc + "/loggers/collector", want: 201, body: props(map[string]any{
		"loggerType": "otlp", "description": "Collector", "credentials": map[string]any{"endpoint": "https://collector.example.com"}})})
	s.do(t, call{method: "GET", path: svc + "/loggers?$filter=" + url.QueryEscape("loggerType eq 'otlp'"), want: 200})
	s.do(t, call{method: "PUT", path: svc + "/diagnostics/applicationinsights", want: 201, body: props(map[string]any{
		"loggerId": "/loggers/collector", "sampling": map[string]any{"samplingType": "fixed", "percentage": 50}, "logClientIp": true})})
	s.do(t, call{method: "GET", path: svc + "/diagnostics", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/apis/echo/diagnostics/applicationinsights", want: 201, body: props(map[string]any{
		"loggerId": svc + "/loggers/collector", "frontend": map[string]any{"request": map[string]any{"headers": []string{"User-Agent"}}}})})
	s.do(t, call{method: "GET", path: svc + "/apis/echo/diagnostics", want: 200})
	wantCode(t, s.do(t, call{method: "DELETE", path: svc + "/loggers/collector", want: 409, headers: []string{"If-Match", "*"}}), "Conflict")
	// An OpenAPI import, its exports (inline and by link) and the schema it stores, then one more.
	s.do(t, call{method: "PUT", path: svc + "/apis/pets", want: 201, body: props(map[string]any{"path": "pets", "format": "openapi+json", "value": petstoreJSON})})
	s.do(t, call{method: "GET", path: svc + "/apis/pets?export=true&format=openapi%2Bjson", want: 200})
	var exported struct {
		Value struct{ Link string } `json:"value"`
	}
	_ = json.Unmarshal(s.do(t, call{method: "GET", path: svc + "/apis/pets?export=true&format=openapi-link", want: 200}).Body, &exported)
	if u, err := url.Parse(exported.Value.Link); err != nil {
		t.Errorf("export link %q: %v", exported.Value.Link, err)
	} else {
		s.do(t, call{method: "GET", path: u.RequestURI(), want: 200})
	}
	s.do(t, call{method: "GET", path: svc + "/apis/pets/schemas", want: 200})
	schema := svc + "/apis/pets/schemas/xsd"
	s.do(t, call{method: "PUT", path: schema, want: 201, body: props(map[string]any{"contentType": "application/vnd.ms-azure-apim.xsd+xml", "document": map[string]any{"value": "<xs:schema/>"}})})
	s.do(t, call{method: "GET", path: schema, want: 200})
	s.do(t, call{method: "HEAD", path: schema, want: 200})
	s.do(t, call{method: "PATCH", path: schema, want: 405, headers: []string{"If-Match", "*"}, body: props(map[string]any{"contentType": "a"})})
	s.do(t, call{method: "DELETE", path: schema, want: 200, headers: []string{"If-Match", "*"}})
	policy := `<policies><inbound><base /><set-header name="X-Tenant" exists-action="override"><value>{{tenant}}</value></set-header></inbound>` +
		`<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>`
	opPolicy := svc + "/apis/echo/operations/onHandshake/policies/policy"
	s.do(t, call{method: "PUT", path: opPolicy, want: 201, body: props(map[string]any{"value": policy, "format": "xml"})})
	s.do(t, call{method: "GET", path: opPolicy, want: 200})
	s.do(t, call{method: "GET", path: opPolicy + "?format=rawxml", want: 200})

	// A policy fragment that the operation's policy includes.
	frag := svc + "/policyFragments/tenant-check"
	s.do(t, call{method: "PUT", path: frag, want: 201, body: props(map[string]any{"format": "xml", "description": "tenant",
		"value": `<fragment><check-header name="X-Tenant" failed-check-httpcode="403" failed-check-error-message="no" ignore-case="true"><value>{{tenant}}</value></check-header></fragment>`})})
	s.do(t, call{method: "GET", path: frag, want: 200})
	s.do(t, call{method: "GET", path: frag + "?format=rawxml", want: 200})
	s.do(t, call{method: "HEAD", path: frag, want: 200})
	s.do(t, call{method: "GET", path: svc + "/policyFragments?$filter=contains(description,'ten')&$top=1", want: 200})
	s.do(t, call{method: "PUT", path: opPolicy, want: 200, body: props(map[string]any{"format": "xml",
		"value": `<policies><inbound><base /><include-fragment fragment-id="tenant-check" /></inbound></policies>`})})
	s.do(t, call{method: "POST", path: frag + "/listReferences?$top=1", want: 200})
	wantCode(t, s.do(t, call{method: "DELETE", path: frag, want: 400, headers: []string{"If-Match", "*"}}), "ValidationError")
	s.do(t, call{method: "GET", path: svc + "/apis/echo/operations/onHandshake/policies", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/policies/policy", want: 201, body: props(map[string]any{"value": policy})})
	r = s.do(t, call{method: "GET", path: svc + "/policies/policy", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/policies/policy", want: 200, headers: []string{"If-Match", r.Header.Get("ETag")},
		body: props(map[string]any{"format": "rawxml"})})
	s.do(t, call{method: "PUT", path: svc + "/products/starter/policies/policy", want: 201, body: props(map[string]any{"value": policy})})
	s.do(t, call{method: "HEAD", path: svc + "/products/starter/policies/policy", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/apis/orders/policies/policy", want: 201, body: props(map[string]any{"value": policy})})
	s.do(t, call{method: "GET", path: svc + "/apis/orders/policies", want: 200})

	// A self-hosted gateway serving the websocket API, and its configuration.
	s.do(t, call{method: "PUT", path: svc + "/gateways/edge", want: 201, body: props(map[string]any{
		"locationData": map[string]any{"name": "Amsterdam", "countryOrRegion": "NL"}, "description": "Edge fleet"})})
	s.do(t, call{method: "PUT", path: svc + "/gateways/edge/apis/echo", want: 201,
		body: props(map[string]any{"provisioningState": "created"})})
	s.do(t, call{method: "HEAD", path: svc + "/gateways/edge/apis/echo", want: 200})
	s.do(t, call{method: "GET", path: svc + "/gateways/edge/apis", want: 200})
	s.do(t, call{method: "GET", path: svc + "/gateways", want: 200})
	// The gateway's TLS: a certificate served on a hostname, and a CA for client certificates.
	ca := mgmttest.NewCert(t, "Contract CA", nil, nil)
	s.do(t, call{method: "PUT", path: svc + "/certificates/ca", want: 201, body: props(map[string]any{"data": ca.PFX(t, "pw"), "password": "pw"})})
	s.do(t, call{method: "PUT", path: svc + "/certificates/edge-tls", want: 201, body: props(map[string]any{
		"data": mgmttest.NewCert(t, "edge.example.com", []string{"edge.example.com"}, ca).PFX(t, "pw"), "password": "pw"})})
	s.do(t, call{method: "GET", path: svc + "/certificates/edge-tls", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/certificates/edge-tls", want: 200})
	s.do(t, call{method: "GET", path: svc + "/certificates?$filter=contains(subject,'edge')", want: 200})
	wantCode(t, s.do(t, call{method: "POST", path: svc + "/certificates/edge-tls/refreshSecret", want: 400}), "ValidationError")
	s.do(t, call{method: "PUT", path: svc + "/gateways/edge/hostnameConfigurations/edge", want: 201, body: props(map[string]any{
		"hostname": "edge.example.com", "certificateId": svc + "/certificates/edge-tls", "negotiateClientCertificate": true})})
	s.do(t, call{method: "GET", path: svc + "/gateways/edge/hostnameConfigurations/edge", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/gateways/edge/hostnameConfigurations/edge", want: 200})
	s.do(t, call{method: "GET", path: svc + "/gateways/edge/hostnameConfigurations", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/gateways/edge/certificateAuthorities/ca", want: 201, body: props(map[string]any{"isTrusted": true})})
	s.do(t, call{method: "GET", path: svc + "/gateways/edge/certificateAuthorities/ca", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/gateways/edge/certificateAuthorities/ca", want: 200})
	s.do(t, call{method: "GET", path: svc + "/gateways/edge/certificateAuthorities", want: 200})
	wantCode(t, s.do(t, call{method: "DELETE", path: svc + "/certificates/ca", want: 409, headers: []string{"If-Match", "*"}}), "Conflict")
	for _, p := range []string{"/certificates/ca", "/gateways/edge/hostnameConfigurations/edge", "/gateways/edge/certificateAuthorities/ca"} {
		wantCode(t, s.do(t, call{method: "PATCH", path: svc + p, want: 405, body: props(map[string]any{}), headers: []string{"If-Match", "*"}}), "MethodNotAllowed")
	}
	s.do(t, call{method: "GET", path: svc + "/gateways/edge/nodes?waitForRevision=latest&timeout=1s", want: 200})
	// Live connections: no gateway node runs here, so none is open (connections_test.go has them).
	s.do(t, call{method: "GET", path: svc + "/connections?api=echo&subscription=alice-starter", want: 200})
	wantCode(t, s.do(t, call{method: "POST", path: svc + "/connections/no-such-connection/close", want: 404}), "ResourceNotFound")
	s.do(t, call{method: "POST", path: svc + "/subscriptions/alice-starter/closeConnections", want: 200})
	s.do(t, call{method: "POST", path: svc + "/gateways/edge/listKeys", want: 200})
	s.do(t, call{method: "POST", path: svc + "/gateways/edge/regenerateKey", want: 204, body: map[string]any{"keyType": "secondary"}})
	tok := s.do(t, call{method: "POST", path: svc + "/gateways/edge/generateToken", want: 200, body: map[string]any{
		"keyType": "primary", "expiry": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)}}).JSON()["value"]
	token, _ := tok.(string)
	cfg := s.do(t, call{method: "GET", path: "/gatehouse/gateway/v1/config", want: 200, headers: []string{"Authorization", "GatewayKey " + token}})
	var snap struct {
		Gateway  string `json:"gateway"`
		Entities []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"entities"`
	}
	if err := json.Unmarshal(cfg.Body, &snap); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, e := range snap.Entities {
		kinds[e.Kind] = true
	}
	for _, k := range []string{"gateways", "gatewayApis", "apis", "operations", "products", "productApis", "subscriptions", "namedValues", "policies",
		"gatewayHostnameConfigurations", "gatewayCertificateAuthorities", "certificates", "backends", "policyFragments"} {
		if !kinds[k] {
			t.Errorf("the gateway snapshot has no %s entity; kinds: %v", k, kinds)
		}
	}

	// Every entity reads, answers HEAD and takes a PATCH with its ETag.
	for _, e := range []struct {
		path  string
		patch map[string]any
	}{
		{svc + "/apis/orders", map[string]any{"subscriptionRequired": false}},
		{svc + "/apis/orders/operations/get-order", map[string]any{"description": "One order."}},
		{svc + "/apis/orders/policies/policy", map[string]any{"format": "rawxml"}},
		{svc + "/apis/echo/operations/onHandshake/policies/policy", map[string]any{"format": "xml"}},
		{svc + "/policies/policy", map[string]any{"format": "xml"}},
		{svc + "/products/starter", map[string]any{"description": "For trying things out."}},
		{svc + "/products/starter/policies/policy", map[string]any{"format": "rawxml"}},
		{svc + "/users/alice", map[string]any{"note": "early adopter"}},
		{svc + "/subscriptions/alice-starter", map[string]any{"allowTracing": true}},
		{svc + "/gateways/edge", map[string]any{"locationData": map[string]any{"city": "Amsterdam"}}},
		{svc + "/namedValues/tenant", map[string]any{"tags": []string{"edge", "tenant"}}},
		{svc + "/backends/hub", map[string]any{"description": "The hub."}},
		{svc + "/apiVersionSets/echo-versions", map[string]any{"description": "Versions of Echo."}},
		{svc + "/apis/echo-v2/releases/r2", map[string]any{"notes": "Second is live"}},
		{svc + "/loggers/collector", map[string]any{"description": "The collector."}},
		{svc + "/diagnostics/applicationinsights", map[string]any{"verbosity": "error"}},
		{svc + "/apis/echo/diagnostics/applicationinsights", map[string]any{"logClientIp": false}},
	} {
		r := s.do(t, call{method: "GET", path: e.path, want: 200})
		h := s.do(t, call{method: "HEAD", path: e.path, want: 200})
		if h.Header.Get("ETag") != r.Header.Get("ETag") {
			t.Errorf("%s: HEAD ETag %q, GET ETag %q", e.path, h.Header.Get("ETag"), r.Header.Get("ETag"))
		}
		p := s.do(t, call{method: "PATCH", path: e.path, want: 200, headers: []string{"If-Match", r.Header.Get("ETag")}, body: props(e.patch)})
		if p.Header.Get("ETag") == r.Header.Get("ETag") {
			t.Errorf("%s: PATCH left the ETag unchanged", e.path)
		}
	}
	s.do(t, call{method: "GET", path: svc + "/policies", want: 200})
	s.do(t, call{method: "GET", path: svc + "/products/starter/policies", want: 200})
	s.do(t, call{method: "POST", path: svc + "/subscriptions/alice-starter/regenerateSecondaryKey", want: 204})

	// Usage reports, over a batch a gateway node would publish.
	reportUsage(t, env, "contract")
	window := "?$filter=" + url.QueryEscape("timestamp ge datetime'2026-11-24T00:00:00' and timestamp le datetime'2026-11-25T00:00:00'")
	if r := s.do(t, call{method: "GET", path: svc + "/reports/byApi" + window + "&$top=1&$orderby=callCountTotal%20desc", want: 200}); r.JSON()["nextLink"] == nil {
		t.Errorf("byApi with $top=1 over two APIs has no nextLink: %s", r.Body)
	}
	s.do(t, call{method: "GET", path: svc + "/reports/bySubscription" + window, want: 200})
	s.do(t, call{method: "GET", path: svc + "/reports/byTime" + window + "&interval=PT15M", want: 200})
	wantCode(t, s.do(t, call{method: "GET", path: svc + "/reports/byTime" + window + "&interval=PT30S", want: 400}), "ValidationError")
	s.do(t, call{method: "GET", path: svc + "/reports/byProduct" + window, want: 200})
	s.do(t, call{method: "GET", path: svc + "/reports/byNode" + window, want: 200})
	s.do(t, call{method: "GET", path: svc + "/connectionLogs?$top=5&$filter=" + url.QueryEscape("closeCode eq 1008"), want: 200})
	s.do(t, call{method: "GET", path: portal + "/reports/byTime" + window + "&interval=PT1M", want: 200, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/reports/byApi" + window, want: 200, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/reports/bySubscription" + window, want: 200, headers: alice})
	s.do(t, call{method: "GET", path: portal + "/connectionLogs", want: 200, headers: alice})

	// Errors.
	nf := s.do(t, call{method: "GET", path: svc + "/apis/missing", want: 404})
	wantCode(t, nf, "ResourceNotFound")
	s.do(t, call{method: "HEAD", path: svc + "/apis/missing", want: 404})
	bad := s.do(t, call{method: "PUT", path: svc + "/policies/policy", want: 400, body: props(map[string]any{"value": "<policies><inbound>"})})
	wantCode(t, bad, "ValidationError")
	bad = s.do(t, call{method: "PUT", path: svc + "/apis/chat", want: 400, body: props(map[string]any{
		"displayName": "Chat", "type": "websocket", "serviceUrl": "https://not-a-socket.example.com", "path": "chat"})})
	wantCode(t, bad, "ValidationError")
	stale := s.do(t, call{method: "PUT", path: svc + "/apis/echo", want: 412, headers: []string{"If-Match", `"stale"`}, body: props(map[string]any{
		"displayName": "Echo", "type": "websocket", "serviceUrl": "wss://echo.example.com", "path": "echo"})})
	wantCode(t, stale, "PreconditionFailed")
	wantCode(t, s.do(t, call{method: "DELETE", path: svc + "/apis/echo", want: 428, offContract: true}), "PreconditionRequired")
	wantCode(t, s.do(t, call{method: "GET", path: svc + "/apis", want: 401, offContract: true, headers: []string{"Authorization", ""}}), "AuthenticationFailed")
	wantCode(t, s.do(t, call{method: "GET", path: svc + "/apis", want: 400, offContract: true, noAPIVersion: true}), "MissingApiVersionParameter")
	wantCode(t, s.do(t, call{method: "GET", path: svc + "/apis?$top=0", want: 400, offContract: true}), "ValidationError")
	wantCode(t, s.do(t, call{method: "GET", path: "/gatehouse/gateway/v1/config", want: 401, headers: []string{"Authorization", "GatewayKey " + token + "x"}}), "InvalidGatewayToken")
	wantCode(t, s.do(t, call{method: "DELETE", path: svc + "/products/starter", want: 409, headers: []string{"If-Match", "*"}}), "Conflict")
	wantCode(t, s.do(t, call{method: "PUT", path: svc + "/apis/echo/operations/extra", want: 400, body: props(map[string]any{
		"displayName": "Extra", "method": "GET", "urlTemplate": "/extra"})}), "ValidationError")

	// The portal settings and an identity provider, stored and returned.
	s.do(t, call{method: "GET", path: svc + "/portalsettings", want: 200})
	s.do(t, call{method: "GET", path: svc + "/portalsettings/signin", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/portalsettings/signup", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/portalsettings/signup", want: 200, body: props(map[string]any{
		"enabled": false, "termsOfService": map[string]any{"text": "Be kind.", "enabled": true, "consentRequired": false}})})
	s.do(t, call{method: "PUT", path: svc + "/portalsettings/delegation", want: 200, body: props(map[string]any{
		"url": "https://portal.example.com/delegate", "validationKey": "a2V5"})})
	s.do(t, call{method: "PATCH", path: svc + "/portalsettings/signin", want: 204, headers: []string{"If-Match", "*"},
		body: props(map[string]any{"enabled": true})})
	s.do(t, call{method: "POST", path: svc + "/portalsettings/delegation/listSecrets", want: 200})
	s.do(t, call{method: "PUT", path: svc + "/identityProviders/google", want: 201, body: props(map[string]any{
		"clientId": "google-app", "clientSecret": "google-secret"})})
	s.do(t, call{method: "GET", path: svc + "/identityProviders", want: 200})
	s.do(t, call{method: "GET", path: svc + "/identityProviders/google", want: 200})
	s.do(t, call{method: "HEAD", path: svc + "/identityProviders/google", want: 200})
	s.do(t, call{method: "PATCH", path: svc + "/identityProviders/google", want: 200, headers: []string{"If-Match", "*"},
		body: props(map[string]any{"clientId": "google-app-2"})})
	s.do(t, call{method: "POST", path: svc + "/identityProviders/google/listSecrets", want: 200})
	s.do(t, call{method: "DELETE", path: svc + "/identityProviders/google", want: 200, headers: []string{"If-Match", "*"}})

	// Tearing down.
	s.do(t, call{method: "DELETE", path: svc + "/gateways/edge/apis/echo", want: 200})
	s.do(t, call{method: "DELETE", path: svc + "/gateways/edge/apis/echo", want: 204})
	s.do(t, call{method: "DELETE", path: svc + "/gateways/edge/hostnameConfigurations/edge", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/gateways/edge/certificateAuthorities/ca", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/certificates/ca", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/certificates/edge-tls", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/products/starter/apis/echo", want: 200})
	s.do(t, call{method: "DELETE", path: svc + "/apis/echo/operations/onHandshake/policies/policy", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/policies/policy", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/products/starter/policies/policy", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/orders/policies/policy", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/echo-v2/releases/r2", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/echo/diagnostics/applicationinsights", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/diagnostics/applicationinsights", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/loggers/collector", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/echo-v2", want: 204, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apiVersionSets/echo-versions", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/backends/hubs", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/backends/hub", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: frag, want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/namedValues/tenant", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/orders/operations/get-order", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/users/alice?deleteSubscriptions=true", want: 204, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/subscriptions/alice-starter", want: 204, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/products/starter", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/gateways/edge", want: 200, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "DELETE", path: svc + "/apis/echo", want: 204, headers: []string{"If-Match", "*"}})
	s.do(t, call{method: "GET", path: svc + "/apis/echo", want: 404})
	s.do(t, call{method: "DELETE", path: svc, want: 200})
	s.do(t, call{method: "DELETE", path: svc, want: 204})

	var untested []string
	for _, item := range s.doc.Paths.Map() {
		for _, op := range item.Operations() {
			if !s.seen[op.OperationID] {
				untested = append(untested, op.OperationID)
			}
		}
	}
	slices.Sort(untested)
	if len(untested) > 0 {
		t.Errorf("the session does not exercise these operations of the spec; add calls for them:\n  %s", strings.Join(untested, "\n  "))
	}
}

func wantCode(t *testing.T, r mgmttest.Response, code string) {
	t.Helper()
	if got := r.ErrorCode(); got != code {
		t.Errorf("error code %q, want %q; body %s", got, code, r.Body)
	}
	if got := r.Header.Get("x-ms-error-code"); got != code {
		t.Errorf("x-ms-error-code %q, want %q", got, code)
	}
}

// names returns the names of the items of a list response.
func names(t *testing.T, r mgmttest.Response) []string {
	t.Helper()
	var page struct {
		Value []struct {
			Name string `json:"name"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range page.Value {
		out = append(out, v.Name)
	}
	return out
}

// reportUsage stores a gateway node's usage of two APIs of the service named name.
func reportUsage(t *testing.T, env *mgmttest.Env, name string) {
	t.Helper()
	ctx := context.Background()
	var id string
	if err := env.Pool.QueryRow(ctx, `SELECT id::text FROM services WHERE name = $1`, name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	m := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	b := configwire.UsageBatch{NodeID: "n1", BatchID: "n1:1", ServiceID: id, Records: []configwire.UsageRecord{
		{Minute: m, API: "echo", Subscription: "alice-starter", HandshakesSuccess: 2, MessagesIn: 4, BytesIn: 40, ConnectionMillis: 2500},
		{Minute: m, API: "orders", HandshakesBlocked: 1},
	}}
	if _, err := reports.NewIngester(env.Pool, env.JS, reports.IngesterOptions{}).Store(ctx, &b); err != nil {
		t.Fatal(err)
	}
}
