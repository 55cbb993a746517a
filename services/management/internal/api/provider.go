package api

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// Provider-level ARM routes (reference/apim-surface.md §10).
const (
	providerPath           = "/providers/Microsoft.ApiManagement"
	providerOperationsPath = providerPath + "/operations"
	checkNameRoute         = "/subscriptions/:subscriptionId" + providerPath + "/checkNameAvailability"
)

// providerRoutes serves the provider operations list and checkNameAvailability.
func (s *Server) providerRoutes(g *echo.Group) {
	g.GET(providerOperationsPath, s.listProviderOperations)
	g.POST(checkNameRoute, s.checkNameAvailability)
}

// armOperation is one entry of the provider operations list.
type armOperation struct {
	Name         string           `json:"name"`
	IsDataAction bool             `json:"isDataAction"`
	Display      operationDisplay `json:"display"`
	Origin       string           `json:"origin"`
}

// operationDisplay describes an operation to people.
type operationDisplay struct {
	Provider    string `json:"provider"`
	Resource    string `json:"resource"`
	Operation   string `json:"operation"`
	Description string `json:"description"`
}

// providerOperations derives the provider operations list from the ARM routes, so that it
// names exactly what Gatehouse serves: GET and HEAD are read, PUT and PATCH write, DELETE
// delete, and a POST the action its last segment names. The type of a route is the
// collections of its path: ".../service/:s/apis/:a/operations/:o" is
// Microsoft.ApiManagement/service/apis/operations.
func providerOperations(routes []*echo.Route) []armOperation {
	seen := map[string]bool{}
	var out []armOperation
	for _, r := range routes {
		name, resource, verb, ok := operationOf(r.Method, r.Path)
		if !ok || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, armOperation{Name: name, Origin: "user,system", Display: operationDisplay{
			Provider: "Microsoft API Management", Resource: resource, Operation: verb + " " + resource,
			Description: verb + " " + resource + " (" + r.Method + ")",
		}})
	}
	slices.SortFunc(out, func(a, b armOperation) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// operationOf names the ARM operation of the route method path, with its resource and verb,
// or reports false for a route outside ARM.
func operationOf(method, path string) (name, resource, verb string, ok bool) {
	rest, found := strings.CutPrefix(path, "/subscriptions/:subscriptionId")
	if !found && path != providerOperationsPath {
		return "", "", "", false
	}
	if found {
		if i := strings.Index(rest, providerPath); i >= 0 {
			rest = rest[i:]
		}
	}
	rest, found = strings.CutPrefix(rest, providerPath)
	if !found {
		return "", "", "", false
	}
	var segs []string
	for _, seg := range strings.Split(strings.Trim(rest, "/"), "/") {
		if seg != "" && !strings.HasPrefix(seg, ":") && seg != "*" {
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "", "", "", false
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		verb = "read"
	case http.MethodPut, http.MethodPatch:
		verb = "write"
	case http.MethodDelete:
		verb = "delete"
	case http.MethodPost:
		verb = "action"
	default:
		return "", "", "", false
	}
	resource = segs[len(segs)-1]
	if verb == "action" && len(segs) > 1 {
		resource = segs[len(segs)-2]
	}
	return "Microsoft.ApiManagement/" + strings.Join(segs, "/") + "/" + verb, resource, verb, true
}

func (s *Server) listProviderOperations(c echo.Context) error {
	items := make([]any, len(s.operations))
	for i, op := range s.operations {
		items[i] = op
	}
	return c.JSON(http.StatusOK, map[string]any{"value": items})
}

// nameAvailability is the answer of checkNameAvailability.
type nameAvailability struct {
	NameAvailable bool   `json:"nameAvailable"`
	Reason        string `json:"reason"`
	Message       string `json:"message"`
}

// checkNameAvailability says whether a service name is valid and free. Gatehouse has no global
// DNS names: a name is taken when a service of the caller's subscription has it, in any
// resource group and case (docs/arm.md).
func (s *Server) checkNameAvailability(c echo.Context) error {
	var in struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := decodeAction(c, &in); err != nil {
		return err
	}
	if in.Type != "" && !strings.EqualFold(in.Type, serviceType) {
		return apierror.Validation("type", "type must be %s", serviceType)
	}
	out, err := s.nameAvailability(c.Request().Context(), c.Param("subscriptionId"), in.Name)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) nameAvailability(ctx context.Context, sub, name string) (nameAvailability, error) {
	if err := catalog.ValidServiceName(name); err != nil {
		return nameAvailability{Reason: "Invalid", Message: "Invalid name: " + name +
			". The name must be 1 to 50 characters: letters, digits and dashes, starting with a letter and ending with a letter or digit."}, nil
	}
	taken, err := s.cat.ServiceNameTaken(ctx, sub, name)
	if err != nil {
		return nameAvailability{}, err
	}
	if taken {
		return nameAvailability{Reason: "AlreadyExists", Message: name + " is already in use. Please select a different name."}, nil
	}
	return nameAvailability{NameAvailable: true, Reason: "Valid", Message: ""}, nil
}
