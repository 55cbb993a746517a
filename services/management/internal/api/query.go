package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/pkg/apierror"
)

// pagingOptions are the query options of every collection GET (reference/apim.md §2.6).
var pagingOptions = []string{"$filter", "$top", "$skip"}

// routeOption lists the query options a route implements beyond api-version and, for a
// collection, pagingOptions. Method and Suffix select routes by their method and the end of
// their template.
type routeOption struct {
	method  string
	suffix  string
	options []string
}

// routeOptions is every query option management implements, by route. An option of APIM
// that a route does not list here is refused with 400 naming it (docs/arm.md).
var routeOptions = []routeOption{
	{http.MethodGet, "/policies/:policyId", []string{"format"}},
	{http.MethodGet, "/apis/:apiId", []string{"expandApiVersionSet"}},
	{http.MethodGet, "/service/:serviceName/apis/:apiId", []string{"export", "format"}},
	{http.MethodGet, "/policyFragments/:id", []string{"format"}},
	{http.MethodDelete, "/products/:productId", []string{"deleteSubscriptions"}},
	{http.MethodDelete, "/users/:userId", []string{"deleteSubscriptions"}},
	{http.MethodGet, "/gateways/:gatewayId/nodes", []string{"timeout", "waitForRevision"}},
	{http.MethodGet, "/reports/byApi", []string{"$orderby"}},
	{http.MethodGet, "/reports/bySubscription", []string{"$orderby"}},
	{http.MethodGet, "/reports/byTime", []string{"$orderby", "interval"}},
	{http.MethodGet, "/reports/byProduct", []string{"$orderby"}},
	{http.MethodGet, "/reports/byNode", []string{"$orderby"}},
	{http.MethodGet, "/connectionLogs", []string{"$format"}},
	{http.MethodGet, "/connections", []string{"api", "subscription", "node"}},
	{http.MethodPost, "/listReferences", []string{"$top", "$skip"}},
	{http.MethodGet, "/:serviceName/tags", []string{"scope"}},
	{http.MethodGet, "/apisByTags", []string{"includeNotTaggedApis"}},
	{http.MethodGet, "/productsByTags", []string{"includeNotTaggedProducts"}},
	{http.MethodGet, "/operationsByTags", []string{"includeNotTaggedOperations"}},
}

// harmlessOptions are APIM query options whose value asks for nothing Gatehouse does not do,
// so that a client sending them is served as APIM would serve it: the value named here is
// the one that changes nothing (docs/arm.md).
var harmlessOptions = map[string]string{
	"notify":               "false",
	"deleteRevisions":      "false",
	"expandApiVersionSet":  "false",
	"includeNotTaggedApis": "false",
	"expandGroups":         "false",
}

// apimOptions are the query option names of the APIM API that Gatehouse does not implement on
// every route; a request's option names are matched to these and to routeOptions
// case-insensitively and rewritten to this spelling.
var apimOptions = []string{
	"api-version", "$filter", "$top", "$skip", "$orderby", "$expand", "$select", "$count",
	"$search", "$apply", "$format", "format", "export", "import", "deleteSubscriptions", "deleteRevisions",
	"notify", "appType", "expandApiVersionSet", "includeNotTaggedApis", "expandGroups", "tags",
	"skipUserDelete", "force", "includeTotalCount", "timeout", "waitForRevision", "interval",
	"api", "subscription", "node", "scope", "includeNotTaggedProducts", "includeNotTaggedOperations",
}

// canonicalQuery rewrites the names of r's query options that match a known option
// case-insensitively ($FILTER, API-VERSION, $Top) to its canonical spelling.
func canonicalQuery(r *http.Request) {
	q := r.URL.Query()
	changed := false
	for name, values := range q {
		i := slices.IndexFunc(apimOptions, func(o string) bool { return strings.EqualFold(o, name) })
		if i < 0 || apimOptions[i] == name {
			continue
		}
		delete(q, name)
		q[apimOptions[i]] = append(q[apimOptions[i]], values...)
		changed = true
	}
	if changed {
		r.URL.RawQuery = q.Encode()
	}
}

// checkQuery refuses, with 400 naming it, a query option the matched route does not implement,
// unless harmlessOptions says its value changes nothing. It runs after routing.
func checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if strings.HasSuffix(c.Path(), "*") {
			return next(c) // no route matches: 404
		}
		allowed := optionsOf(c.Request().Method, c.Path())
		for name, values := range c.QueryParams() {
			if name == "api-version" || slices.Contains(allowed, name) {
				continue
			}
			if v, ok := harmlessOptions[name]; ok && allEqualFold(values, v) {
				continue
			}
			return apierror.Validation(name, "The query parameter '%s' is not supported by Gatehouse on this request; remove it (docs/arm.md lists the query options each request takes).", name)
		}
		return next(c)
	}
}

// optionsOf lists the query options beyond api-version that the route method path implements.
func optionsOf(method, path string) []string {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	var out []string
	last := path[strings.LastIndexByte(path, '/')+1:]
	if method == http.MethodGet && !strings.HasPrefix(last, ":") {
		out = append(out, pagingOptions...)
	}
	for _, o := range routeOptions {
		if o.method == method && strings.HasSuffix(path, o.suffix) {
			out = append(out, o.options...)
		}
	}
	return out
}

// allEqualFold reports whether every value is want, in any case.
func allEqualFold(values []string, want string) bool {
	for _, v := range values {
		if !strings.EqualFold(v, want) {
			return false
		}
	}
	return true
}
