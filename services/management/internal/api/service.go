package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// armService is the ARM body of a service.
type armService struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Location   string            `json:"location"`
	Etag       string            `json:"etag"`
	Tags       map[string]string `json:"tags"`
	SKU        json.RawMessage   `json:"sku"`
	Properties json.RawMessage   `json:"properties"`
}

const serviceType = "Microsoft.ApiManagement/service"

func (s *Server) serviceRoutes(g *echo.Group) {
	g.GET("/subscriptions/:subscriptionId/providers/Microsoft.ApiManagement/service", s.listServices)
	g.GET("/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/providers/Microsoft.ApiManagement/service", s.listServices)
	g.GET(ServicePrefix, s.getService)
	g.HEAD(ServicePrefix, s.getService)
	g.PUT(ServicePrefix, s.putService)
	g.PATCH(ServicePrefix, s.patchService)
	g.DELETE(ServicePrefix, s.deleteService)
}

func (s *Server) armService(c echo.Context, svc catalog.Service) armService {
	// gatewayUrl and managementApiUrl describe this deployment, not Azure.
	var props map[string]any
	_ = json.Unmarshal(svc.Properties, &props)
	props["managementApiUrl"] = c.Scheme() + "://" + c.Request().Host
	raw, _ := json.Marshal(props)
	return armService{ID: catalog.ServiceID(svc.Ref), Type: serviceType, Name: svc.Ref.Name, Location: svc.Location,
		Etag: svc.ETag, Tags: svc.Tags, SKU: svc.SKU, Properties: raw}
}

func (s *Server) listServices(c echo.Context) error {
	p, filter, err := page(c)
	if err != nil {
		return err
	}
	if filter != "" {
		return &apierror.Error{Code: apierror.InvalidFilter, Target: "$filter", Message: "$filter is not supported when listing services."}
	}
	svcs, total, err := s.cat.ListServices(c.Request().Context(), c.Param("subscriptionId"), c.Param("resourceGroupName"), p)
	if err != nil {
		return err
	}
	items := make([]any, 0, len(svcs))
	for _, svc := range svcs {
		items = append(items, s.armService(c, svc))
	}
	return s.writeList(c, p, items, total)
}

func (s *Server) getService(c echo.Context) error {
	svc, err := s.cat.GetService(c.Request().Context(), ref(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", svc.ETag)
	if c.Request().Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	return c.JSON(http.StatusOK, s.armService(c, svc))
}

func serviceInput(c echo.Context) (catalog.ServiceInput, error) {
	body, err := readBody(c, false)
	if err != nil {
		return catalog.ServiceInput{}, err
	}
	if err := onlyFields(body, serviceBodyFields); err != nil {
		return catalog.ServiceInput{}, err
	}
	if err := checkIdentity(body["identity"]); err != nil {
		return catalog.ServiceInput{}, err
	}
	if z := string(bytes.TrimSpace(body["zones"])); z != "" && z != "null" && z != "[]" {
		return catalog.ServiceInput{}, apierror.Validation("zones", "Gatehouse does not place services in availability zones; remove zones or send []")
	}
	var in catalog.ServiceInput
	for field, dst := range map[string]any{"location": &in.Location, "sku": &in.SKU, "tags": &in.Tags} {
		if raw, ok := body[field]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return in, apierror.Validation(field, "%s has the wrong type", field)
			}
		}
	}
	in.Properties = body["properties"]
	return in, nil
}

func (s *Server) putService(c echo.Context) error {
	in, err := serviceInput(c)
	if err != nil {
		return err
	}
	svc, created, err := s.cat.PutService(c.Request().Context(), ref(c), in, putConditions(c))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.Response().Header().Set("ETag", svc.ETag)
	return c.JSON(status, s.armService(c, svc))
}

func (s *Server) patchService(c echo.Context) error {
	in, err := serviceInput(c)
	if err != nil {
		return err
	}
	svc, err := s.cat.PatchService(c.Request().Context(), ref(c), in, catalog.Options{IfMatch: c.Request().Header.Get("If-Match")})
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", svc.ETag)
	return c.JSON(http.StatusOK, s.armService(c, svc))
}

func (s *Server) deleteService(c echo.Context) error {
	err := s.cat.DeleteService(c.Request().Context(), ref(c), catalog.Options{IfMatch: c.Request().Header.Get("If-Match")})
	var nf *catalog.NotFoundError
	if errors.As(err, &nf) {
		return c.NoContent(http.StatusNoContent)
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusOK)
}

// serviceBodyFields are the top-level members of a service's body: the read-only id, name,
// type, etag and systemData are ignored, as ARM does.
var serviceBodyFields = []string{"location", "sku", "tags", "properties", "identity", "zones", "id", "name", "type", "etag", "systemData"}

// checkIdentity refuses a managed identity: Gatehouse reaches no Azure resource (Key Vault
// references are refused everywhere), so an identity would be accepted and never used, and
// Gatehouse has no principalId or tenantId to return for one (docs/arm.md). Absent, null and
// type None are accepted: they ask for no identity.
func checkIdentity(raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	var id struct {
		Type                   string                     `json:"type"`
		UserAssignedIdentities map[string]json.RawMessage `json:"userAssignedIdentities"`
	}
	if err := json.Unmarshal(raw, &id); err != nil {
		return apierror.Validation("identity", "identity must be an object with a type")
	}
	if strings.EqualFold(id.Type, "None") && len(id.UserAssignedIdentities) == 0 {
		return nil
	}
	return apierror.Validation("identity.type", "Gatehouse does not support managed identities (identity type '%s'): it reaches no Azure resource with one; remove identity or set its type to None", id.Type)
}
