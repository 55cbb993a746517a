package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/console"
	"gatehouse.dev/pkg/apierror"
)

// console routes the test console's WebSocket to the console package, which relays it; this
// package decides who may connect where (consoleEndpoint).
func (s *Server) console(c echo.Context) error {
	if !websocket.IsWebSocketUpgrade(c.Request()) {
		return &apierror.Error{Code: apierror.InvalidRequestContent,
			Message: "The test console speaks WebSocket: open it with a WebSocket upgrade request."}
	}
	s.consoles.ServeHTTP(c.Response(), c.Request())
	if !c.Response().Committed {
		// The connection was hijacked: record the upgrade for the request metrics.
		c.Response().Status = http.StatusSwitchingProtocols
	}
	return nil
}

// consoleEndpoint authenticates a test console's opening message and decides where it may
// connect: only to live nodes of the caller's service that advertise a URL, and only to an API
// the caller may test.
func (s *Server) consoleEndpoint(ctx context.Context, open console.Open) (console.Endpoint, error) {
	cl, err := s.identify(ctx, open.Authorization)
	if err != nil {
		return console.Endpoint{}, err
	}
	ref, ok := catalog.ParseServiceID(open.Service)
	if !ok {
		return console.Endpoint{}, apierror.Validation("service",
			"service must be a service's ARM id: /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.ApiManagement/service/{name}")
	}
	svc, err := s.serviceFor(ctx, cl, ref)
	if err != nil {
		return console.Endpoint{}, err
	}
	api, err := s.consoleAPI(ctx, cl, svc.Ref, open.API)
	if err != nil {
		return console.Endpoint{}, err
	}
	nodes := s.consoleNodesOf(svc.ID)
	i := slices.IndexFunc(nodes, func(n consoleNode) bool { return n.NodeID == open.Node })
	if i < 0 || open.Node == "" {
		return console.Endpoint{}, apierror.New(apierror.ResourceNotFound,
			"The gateway node is not a live node of this service that reports a URL; pick one from consolenodes.")
	}
	var p catalog.APIProperties
	_ = json.Unmarshal(api.Properties, &p)
	ep := console.Endpoint{Subject: cl.Subject, Service: catalog.ServiceID(svc.Ref), API: api.Name, APIPath: p.Path,
		Node: nodes[i].NodeID, NodeURL: nodes[i].URL}
	if p.SubscriptionKeyParameterNames != nil {
		ep.KeyParam = p.SubscriptionKeyParameterNames.Query
	}
	return ep, nil
}

// consoleAPI returns the API name of the service if cl may test it: any API for an
// administrator or a tenant, one of its own APIs (APIsOfUser) for a consumer.
func (s *Server) consoleAPI(ctx context.Context, cl caller, ref catalog.ServiceRef, name string) (catalog.Resource, error) {
	if cl.consumer == nil {
		return s.cat.Get(ctx, ref, catalog.KindAPI, "", name)
	}
	apis, err := s.cat.APIsOfUser(ctx, ref, cl.User)
	if err != nil {
		return catalog.Resource{}, err
	}
	for _, a := range apis {
		if strings.EqualFold(a.Name, name) {
			return a, nil
		}
	}
	return catalog.Resource{}, apierror.NotFound(catalog.KindAPI.What)
}
