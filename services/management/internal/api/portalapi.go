package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/pkg/apierror"
)

// PortalPrefix is where management serves Gatehouse's portal API (issue 6): who the caller is,
// a consumer's own subscriptions, keys and APIs, the gateway nodes a test console can use, and
// the console itself. It takes the ARM API's bearer tokens and consumers' user tokens, needs no
// api-version, and answers errors in the ARM envelope.
const PortalPrefix = "/gatehouse/portal/v1"

// maxPortalServices bounds the services GET /me lists.
const maxPortalServices = 1000

const callerKey = "caller"

func (s *Server) portalRoutes(e *echo.Echo) {
	// The console authenticates with its first message: a browser cannot set headers on a
	// WebSocket handshake.
	e.GET(PortalPrefix+"/console", s.console)
	g := e.Group(PortalPrefix, decodeParams, s.authenticatePortal, jsonBody)
	g.GET("/me", s.me)
	g.GET("/services/:serviceName/consolenodes", s.consoleNodes)
	// A consumer's own resources, served by the ARM handlers on the consumer's service and user.
	g.GET("/subscriptions", s.asConsumer(s.related(catalog.KindUser, "userId", "ownerId")))
	g.POST("/subscriptions/:sid/listSecrets", s.asConsumer(s.ownSubscription(s.listSubscriptionSecrets)))
	g.POST("/subscriptions/:sid/regeneratePrimaryKey", s.asConsumer(s.ownSubscription(s.regenerateSubscriptionKey(true))))
	g.POST("/subscriptions/:sid/regenerateSecondaryKey", s.asConsumer(s.ownSubscription(s.regenerateSubscriptionKey(false))))
	g.GET("/apis", s.asConsumer(s.consumerAPIs))
	g.GET("/products", s.asConsumer(s.visibleProducts))
	// A consumer's usage and connection log, of its own subscriptions only.
	g.GET("/reports/byTime", s.asConsumer(s.report(reports.ByTime, true)))
	g.GET("/reports/byApi", s.asConsumer(s.report(reports.ByAPI, true)))
	g.GET("/reports/bySubscription", s.asConsumer(s.report(reports.BySubscription, true)))
	g.GET("/connectionLogs", s.asConsumer(s.connectionLogs(true)))
}

// authenticatePortal admits any principal, consumers included; handlers check the rest.
func (s *Server) authenticatePortal(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		cl, err := s.identifyRequest(c)
		if err != nil {
			return err
		}
		c.Set(callerKey, cl)
		return next(c)
	}
}

func callerOf(c echo.Context) caller {
	cl, _ := c.Get(callerKey).(caller)
	return cl
}

// asConsumer admits consumers only and points the route parameters of the ARM handlers
// (subscriptionId, resourceGroupName, serviceName, userId) at the consumer's service and user.
func (s *Server) asConsumer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		cl := callerOf(c)
		if cl.consumer == nil {
			return apierror.New(apierror.AuthorizationFailed,
				"The client '%s' is not a consumer: these endpoints serve users signed in with a user token; use the ARM API.", cl.Subject)
		}
		svc := cl.consumer.Service.Ref
		names := append([]string{"subscriptionId", "resourceGroupName", "serviceName", "userId"}, c.ParamNames()...)
		values := append([]string{svc.Subscription, svc.ResourceGroup, svc.Name, cl.User}, c.ParamValues()...)
		c.SetParamNames(names...)
		c.SetParamValues(values...)
		return next(c)
	}
}

// ownSubscription answers 404 unless the subscription sid belongs to the consumer.
func (s *Server) ownSubscription(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := s.cat.UserSubscription(c.Request().Context(), ref(c), c.Param("userId"), c.Param("sid")); err != nil {
			return err
		}
		return next(c)
	}
}

func (s *Server) consumerAPIs(c echo.Context) error {
	rs, err := s.cat.APIsOfUser(c.Request().Context(), ref(c), c.Param("userId"))
	if err != nil {
		return err
	}
	items := make([]any, 0, len(rs))
	for _, r := range rs {
		items = append(items, s.armOf(c, r))
	}
	return c.JSON(http.StatusOK, armList{Value: items, Count: len(items)})
}

// portalIdentity is the body of GET /me.
type portalIdentity struct {
	Kind     auth.Kind       `json:"kind"`
	Subject  string          `json:"subject"`
	Role     auth.Role       `json:"role"`
	Services []portalService `json:"services"`
	User     *portalUser     `json:"user,omitempty"`
}

type portalService struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	SubscriptionID string `json:"subscriptionId"`
	ResourceGroup  string `json:"resourceGroup"`
}

type portalUser struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
}

func (s *Server) me(c echo.Context) error {
	cl := callerOf(c)
	out := portalIdentity{Kind: cl.Kind, Subject: cl.Subject, Role: cl.Role, Services: []portalService{}}
	var svcs []catalog.Service
	if cl.consumer != nil {
		svc, u := cl.consumer.Service, cl.consumer.User
		svcs = []catalog.Service{svc}
		var p catalog.UserProperties
		_ = json.Unmarshal(u.Properties, &p)
		out.User = &portalUser{ID: catalog.ServiceID(svc.Ref) + "/" + u.Path(), Name: u.Name, Email: p.Email, FirstName: p.FirstName, LastName: p.LastName}
	} else {
		var err error
		if svcs, _, err = s.cat.ListServicesIn(c.Request().Context(), cl.Subscriptions, catalog.Page{Top: maxPortalServices}); err != nil {
			return err
		}
	}
	for _, svc := range svcs {
		out.Services = append(out.Services, portalService{ID: catalog.ServiceID(svc.Ref), Name: svc.Ref.Name,
			SubscriptionID: svc.Ref.Subscription, ResourceGroup: svc.Ref.ResourceGroup})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

// serviceFor returns the service ref names if cl may read it. A consumer reads its own service
// only, and may leave out the tenant and resource group; anyone else names both.
func (s *Server) serviceFor(ctx context.Context, cl caller, ref catalog.ServiceRef) (catalog.Service, error) {
	if cl.consumer != nil {
		own := cl.consumer.Service.Ref
		if (ref.Subscription == "" || strings.EqualFold(ref.Subscription, own.Subscription)) &&
			(ref.ResourceGroup == "" || strings.EqualFold(ref.ResourceGroup, own.ResourceGroup)) && strings.EqualFold(ref.Name, own.Name) {
			return cl.consumer.Service, nil
		}
		return catalog.Service{}, apierror.NotFound("Service")
	}
	if ref.Subscription == "" || ref.ResourceGroup == "" {
		return catalog.Service{}, apierror.Validation("subscriptionId", "subscriptionId and resourceGroup name the service's tenant and resource group; both are required")
	}
	if !cl.CanAccess(ref.Subscription) {
		return catalog.Service{}, apierror.New(apierror.AuthorizationFailed,
			"The client '%s' does not have authorization over scope '/subscriptions/%s' or the scope is invalid.", cl.Subject, ref.Subscription)
	}
	return s.cat.GetService(ctx, ref)
}

// consoleNode is a gateway node a test console can connect through.
type consoleNode struct {
	Gateway  string `json:"gateway"`
	NodeID   string `json:"nodeId"`
	URL      string `json:"url"`
	Revision int64  `json:"revision"`
	Healthy  bool   `json:"healthy"`
}

// consoleNodes lists the live nodes of the service's gateways that advertise a URL.
func (s *Server) consoleNodes(c echo.Context) error {
	svc, err := s.serviceFor(c.Request().Context(), callerOf(c), catalog.ServiceRef{Subscription: c.QueryParam("subscriptionId"),
		ResourceGroup: c.QueryParam("resourceGroup"), Name: c.Param("serviceName")})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"value": s.consoleNodesOf(svc.ID)})
}

// consoleNodesOf returns the live nodes of the service with internal id serviceID that
// advertise a URL: the only places a test console connects to.
func (s *Server) consoleNodesOf(serviceID string) []consoleNode {
	out := []consoleNode{}
	for _, n := range s.cfg.Fleet.Nodes(serviceID, "") {
		if n.Live && n.URL != "" {
			out = append(out, consoleNode{Gateway: n.Gateway, NodeID: n.NodeID, URL: n.URL, Revision: n.Revision, Healthy: n.Healthy})
		}
	}
	return out
}
