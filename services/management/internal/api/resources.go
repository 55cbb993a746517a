package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// collection is one ARM resource collection below a service.
type collection struct {
	kind *catalog.Kind
	// path is the collection's route below ServicePrefix ("/apis/:apiId/operations") and param
	// the route parameter naming one item ("operationId").
	path  string
	param string
	// parent builds the parent resource path from the route ("apis/echo").
	parent func(c echo.Context) string
}

// pathOf builds a parent path from alternating segment names and route parameters.
func pathOf(pairs ...string) func(c echo.Context) string {
	return func(c echo.Context) string {
		parts := make([]string, len(pairs))
		for i := 0; i < len(pairs); i += 2 {
			parts[i], parts[i+1] = pairs[i], c.Param(pairs[i+1])
		}
		return strings.Join(parts, "/")
	}
}

func topLevel(echo.Context) string { return "" }

func (s *Server) routes(g *echo.Group) {
	s.serviceRoutes(g)
	s.providerRoutes(g)
	p := ServicePrefix
	cols := []collection{
		{catalog.KindAPI, "/apis", "apiId", topLevel},
		{catalog.KindOperation, "/apis/:apiId/operations", "operationId", pathOf("apis", "apiId")},
		{catalog.KindPolicy, "/policies", "policyId", topLevel},
		{catalog.KindPolicy, "/apis/:apiId/policies", "policyId", pathOf("apis", "apiId")},
		{catalog.KindPolicy, "/apis/:apiId/operations/:operationId/policies", "policyId", pathOf("apis", "apiId", "operations", "operationId")},
		{catalog.KindPolicy, "/products/:productId/policies", "policyId", pathOf("products", "productId")},
		{catalog.KindProduct, "/products", "productId", topLevel},
		{catalog.KindUser, "/users", "userId", topLevel},
		{catalog.KindSubscription, "/subscriptions", "sid", topLevel},
		{catalog.KindGateway, "/gateways", "gatewayId", topLevel},
		{catalog.KindNamedValue, "/namedValues", "namedValueId", topLevel},
		{catalog.KindBackend, "/backends", "backendId", topLevel},
		{catalog.KindAPIVersionSet, "/apiVersionSets", "versionSetId", topLevel},
		{catalog.KindAPIRelease, "/apis/:apiId/releases", "releaseId", pathOf("apis", "apiId")},
		{catalog.KindLogger, "/loggers", "loggerId", topLevel},
		{catalog.KindDiagnostic, "/diagnostics", "diagnosticId", topLevel},
		{catalog.KindDiagnostic, "/apis/:apiId/diagnostics", "diagnosticId", pathOf("apis", "apiId")},
	}
	for _, col := range cols {
		s.itemRoutes(g, col, s.patch(col))
	}
	// Certificates and a gateway's TLS settings have no PATCH in ARM: it answers 405, which
	// echo's router would turn into 404 where a parameter route matches the path.
	unpatched := []collection{
		{catalog.KindCertificate, "/certificates", "certificateId", topLevel},
		{catalog.KindGatewayHostname, "/gateways/:gatewayId/hostnameConfigurations", "hcId", pathOf("gateways", "gatewayId")},
		{catalog.KindGatewayCA, "/gateways/:gatewayId/certificateAuthorities", "certificateId", pathOf("gateways", "gatewayId")},
		{catalog.KindAPISchema, "/apis/:apiId/schemas", "schemaId", pathOf("apis", "apiId")},
	}
	for _, col := range unpatched {
		s.itemRoutes(g, col, noPatch)
	}
	links := []collection{
		{catalog.KindProductAPI, "/products/:productId/apis", "apiId", pathOf("products", "productId")},
		{catalog.KindGatewayAPI, "/gateways/:gatewayId/apis", "apiId", pathOf("gateways", "gatewayId")},
	}
	for _, col := range links {
		item := p + col.path + "/:" + col.param
		g.GET(p+col.path, s.list(col))
		g.HEAD(item, s.get(col))
		g.PUT(item, s.put(col))
		g.DELETE(item, s.delete(col))
	}
	g.GET(p+"/apis/:apiId/products", s.productsOfAPI)
	g.GET(p+"/apis/:apiId/revisions", s.revisions)
	g.GET(p+"/products/:productId/subscriptions", s.related(catalog.KindProduct, "productId", "scope"))
	g.GET(p+"/users/:userId/subscriptions", s.related(catalog.KindUser, "userId", "ownerId"))
	g.GET(p+"/users/:userId/subscriptions/:sid", s.userSubscription)
	s.tagGroupRoutes(g)
	s.actionRoutes(g)
	s.fragmentRoutes(g)
	s.portalSettingRoutes(g)
	s.nodeRoutes(g)
	s.reportRoutes(g)
	s.connectionRoutes(g)
	s.connectionLogRoutes(g)
}

// itemRoutes serves a collection's list and its items' GET, HEAD, PUT, PATCH (with patch)
// and DELETE.
func (s *Server) itemRoutes(g *echo.Group, col collection, patch echo.HandlerFunc) {
	item := ServicePrefix + col.path + "/:" + col.param
	g.GET(ServicePrefix+col.path, s.list(col))
	g.GET(item, s.get(col))
	g.HEAD(item, s.get(col))
	g.PUT(item, s.put(col))
	g.PATCH(item, patch)
	g.DELETE(item, s.delete(col))
}

// ref is the service a request addresses.
func ref(c echo.Context) catalog.ServiceRef {
	return catalog.ServiceRef{Subscription: c.Param("subscriptionId"), ResourceGroup: c.Param("resourceGroupName"), Name: c.Param("serviceName")}
}

// armResource is the ARM body of a child resource.
type armResource struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Properties json.RawMessage `json:"properties"`
}

// armList is the ARM body of a collection page.
type armList struct {
	Value    []any  `json:"value"`
	Count    int    `json:"count"`
	NextLink string `json:"nextLink,omitempty"`
}

// typeOf derives an ARM type from a resource path: "apis/a/operations/o/policies/policy" is
// Microsoft.ApiManagement/service/apis/operations/policies.
func typeOf(path string) string {
	parts := strings.Split(path, "/")
	var b strings.Builder
	b.WriteString("Microsoft.ApiManagement/service")
	for i := 0; i < len(parts); i += 2 {
		b.WriteString("/" + parts[i])
	}
	return b.String()
}

func (s *Server) represent(c echo.Context, r catalog.Resource) (armResource, error) {
	if r.Kind.Link {
		target, err := s.cat.Get(c.Request().Context(), ref(c), r.Kind.Target, "", r.Name)
		if err != nil {
			return armResource{}, err
		}
		out := s.armOf(c, target)
		if r.Kind == catalog.KindGatewayAPI {
			out.Type = "Microsoft.ApiManagement/service/gateways/apis"
		}
		return out, nil
	}
	out := s.armOf(c, r)
	if r.Kind == catalog.KindTagDescription {
		return s.describedTag(c, out)
	}
	if r.Kind == catalog.KindAPI && strings.EqualFold(c.QueryParam("expandApiVersionSet"), "true") {
		return s.expandVersionSet(c, out)
	}
	return out, nil
}

func (s *Server) armOf(c echo.Context, r catalog.Resource) armResource {
	typ := typeOf(r.Path())
	if r.Kind == catalog.KindAPIVersionSet {
		typ = r.Kind.Type // APIM's hyphenated api-version-sets
	}
	return armResource{ID: catalog.ServiceID(ref(c)) + "/" + r.Path(), Type: typ, Name: r.Name, Properties: r.Properties}
}

// page reads $top, $skip and $filter.
func page(c echo.Context) (catalog.Page, string, error) {
	var p catalog.Page
	for _, q := range []struct {
		name string
		min  int
		dst  *int
	}{{"$top", 1, &p.Top}, {"$skip", 0, &p.Skip}} {
		v := c.QueryParam(q.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < q.min {
			return p, "", apierror.Validation(q.name, "%s must be an integer of at least %d", q.name, q.min)
		}
		*q.dst = n
	}
	return p, c.QueryParam("$filter"), nil
}

// nextLink is the absolute URL of the page after the one served, or "" at the end.
func nextLink(c echo.Context, p catalog.Page, served, total int) string {
	next := p.Skip + served
	if served == 0 || next >= total {
		return ""
	}
	u := *c.Request().URL
	q := u.Query()
	q.Set("$skip", strconv.Itoa(next))
	if p.Top > 0 {
		q.Set("$top", strconv.Itoa(p.Top))
	}
	u.RawQuery = q.Encode()
	u.Scheme, u.Host = c.Scheme(), c.Request().Host
	return u.String()
}

func (s *Server) writeList(c echo.Context, p catalog.Page, items []any, total int) error {
	if items == nil {
		items = []any{}
	}
	return c.JSON(http.StatusOK, armList{Value: items, Count: total, NextLink: nextLink(c, p, len(items), total)})
}

func (s *Server) list(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, filter, err := page(c)
		if err != nil {
			return err
		}
		rs, total, err := s.cat.List(c.Request().Context(), ref(c), col.kind, col.parent(c), filter, p)
		if err != nil {
			return err
		}
		items := make([]any, 0, len(rs))
		for _, r := range rs {
			a, err := s.represent(c, r)
			if err != nil {
				return err
			}
			items = append(items, a)
		}
		return s.writeList(c, p, items, total)
	}
}

func (s *Server) get(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		r, err := s.cat.Get(c.Request().Context(), ref(c), col.kind, col.parent(c), c.Param(col.param))
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", r.ETag)
		if c.Request().Method == http.MethodHead {
			if col.kind == catalog.KindProductAPI || col.kind == catalog.KindGroupUser || col.kind == catalog.KindProductGroup {
				return c.NoContent(http.StatusNoContent)
			}
			return c.NoContent(http.StatusOK)
		}
		if col.kind == catalog.KindPolicy {
			pp, err := catalog.RenderPolicy(r, c.QueryParam("format"))
			if err != nil {
				return err
			}
			out := s.armOf(c, r)
			out.Properties, _ = json.Marshal(pp)
			return c.JSON(http.StatusOK, out)
		}
		if col.kind == catalog.KindAPI && (c.QueryParams().Has("export") || c.QueryParams().Has("format")) {
			return s.exportAPI(c, r)
		}
		out, err := s.represent(c, r)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

func (s *Server) put(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := readBody(c, col.kind.Link)
		if err == nil {
			err = onlyFields(body, childBodyFields)
		}
		if err != nil {
			return err
		}
		r, created, err := s.cat.Put(c.Request().Context(), ref(c), col.kind, col.parent(c), c.Param(col.param), body["properties"],
			putConditions(c))
		if err != nil {
			return err
		}
		return s.written(c, r, created)
	}
}

func (s *Server) written(c echo.Context, r catalog.Resource, created bool) error {
	out, err := s.represent(c, r)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(status, out)
}

func (s *Server) patch(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		r, err := s.patched(c, col)
		if err != nil {
			return err
		}
		return s.written(c, r, false)
	}
}

// patched applies a PATCH of an item of col and returns the resource written.
func (s *Server) patched(c echo.Context, col collection) (catalog.Resource, error) {
	ifMatch, err := requireIfMatch(c)
	if err != nil {
		return catalog.Resource{}, err
	}
	body, err := readBody(c, false)
	if err == nil {
		err = onlyFields(body, childBodyFields)
	}
	if err != nil {
		return catalog.Resource{}, err
	}
	return s.cat.Patch(c.Request().Context(), ref(c), col.kind, col.parent(c), c.Param(col.param), body["properties"],
		catalog.Options{IfMatch: ifMatch})
}

func (s *Server) delete(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		opts := catalog.Options{DeleteSubscriptions: c.QueryParam("deleteSubscriptions") == "true"}
		if !col.kind.Link {
			ifMatch, err := requireIfMatch(c)
			if err != nil {
				return err
			}
			opts.IfMatch = ifMatch
		}
		err := s.cat.Delete(c.Request().Context(), ref(c), col.kind, col.parent(c), c.Param(col.param), opts)
		var nf *catalog.NotFoundError
		if errors.As(err, &nf) && nf.What == col.kind.What {
			return c.NoContent(http.StatusNoContent)
		}
		if err != nil {
			return err
		}
		if col.kind == catalog.KindGateway {
			s.revokeBus(c, c.Param(col.param))
		}
		if col.kind == catalog.KindAPI || col.kind == catalog.KindUser {
			// SDK v3 accepts only 202/204 for these (v2: 200/204); 204 satisfies both.
			return c.NoContent(http.StatusNoContent)
		}
		return c.NoContent(http.StatusOK)
	}
}

// noPatch answers PATCH on a resource that has none, with the methods it has.
func noPatch(c echo.Context) error {
	c.Response().Header().Set("Allow", "GET, HEAD, PUT, DELETE")
	return echo.NewHTTPError(http.StatusMethodNotAllowed)
}

// putConditions are a PUT's conditional headers.
func putConditions(c echo.Context) catalog.Options {
	h := c.Request().Header
	return catalog.Options{IfMatch: strings.TrimSpace(h.Get("If-Match")), IfNoneMatch: strings.TrimSpace(h.Get("If-None-Match"))}
}

func requireIfMatch(c echo.Context) (string, error) {
	v := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if v == "" {
		return "", &apierror.Error{Code: apierror.PreconditionRequired, Target: "If-Match",
			Message: "The If-Match header is required: send the entity's ETag, or * to apply the change unconditionally."}
	}
	return v, nil
}

// readBody reads a JSON object body. An empty body is allowed only when optional is set.
func readBody(c echo.Context, optional bool) (map[string]json.RawMessage, error) {
	raw, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, &bodyError{code: apierror.InvalidRequestContent, target: "body", msg: "The request body could not be read."}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		if optional {
			return map[string]json.RawMessage{}, nil
		}
		return nil, &bodyError{code: apierror.InvalidRequestContent, target: "body", msg: "The request body is empty; send a JSON object."}
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		return nil, &bodyError{code: apierror.InvalidRequestContent, target: "body", msg: "The request content was invalid and could not be deserialized: " + jsonProblem(raw, err)}
	}
	if p, ok := body["properties"]; ok && len(p) > 0 && p[0] != '{' && string(p) != "null" {
		return nil, &bodyError{code: apierror.InvalidRequestContent, target: "properties", msg: "properties must be a JSON object."}
	}
	if hasEscapedNUL(raw) {
		return nil, &bodyError{code: apierror.InvalidRequestContent, target: "body", msg: "The request body contains the character U+0000 (\\u0000), which cannot be stored."}
	}
	return body, nil
}

// hasEscapedNUL reports whether valid JSON raw has the escape \u0000 in a string: Postgres
// stores no U+0000 in text or jsonb. An escape is a backslash preceded by an even number of them.
func hasEscapedNUL(raw []byte) bool {
	for i := 0; ; i++ {
		n := bytes.Index(raw[i:], []byte(`\u0000`))
		if n < 0 {
			return false
		}
		i += n
		j := i
		for j > 0 && raw[j-1] == '\\' {
			j--
		}
		if (i-j)%2 == 0 {
			return true
		}
	}
}

// jsonProblem describes a JSON syntax error without echoing the body.
func jsonProblem(raw []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(raw[:min(int(se.Offset), len(raw))], []byte("\n"))
		return fmt.Sprintf("%s (line %d, offset %d).", se.Error(), line, se.Offset)
	}
	return "the body must be a JSON object."
}

func (s *Server) productsOfAPI(c echo.Context) error {
	p, filter, err := page(c)
	if err != nil {
		return err
	}
	rs, total, err := s.cat.ProductsOfAPI(c.Request().Context(), ref(c), c.Param("apiId"), filter, p)
	if err != nil {
		return err
	}
	items := make([]any, 0, len(rs))
	for _, r := range rs {
		items = append(items, s.armOf(c, r))
	}
	return s.writeList(c, p, items, total)
}

// related lists subscriptions whose prop (scope or ownerId) names the resource of the route.
func (s *Server) related(kind *catalog.Kind, param, prop string) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, filter, err := page(c)
		if err != nil {
			return err
		}
		rs, total, err := s.cat.SubscriptionsOf(c.Request().Context(), ref(c), kind, c.Param(param), prop, filter, p)
		if err != nil {
			return err
		}
		items := make([]any, 0, len(rs))
		for _, r := range rs {
			items = append(items, s.armOf(c, r))
		}
		return s.writeList(c, p, items, total)
	}
}

func (s *Server) userSubscription(c echo.Context) error {
	r, err := s.cat.UserSubscription(c.Request().Context(), ref(c), c.Param("userId"), c.Param("sid"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", r.ETag)
	out := s.armOf(c, r)
	out.ID = catalog.ServiceID(ref(c)) + "/users/" + url.PathEscape(c.Param("userId")) + "/subscriptions/" + r.Name
	return c.JSON(http.StatusOK, out)
}
