package api

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
)

// ConnectionType is the ARM type of a live WebSocket connection, a Gatehouse extension
// resource.
const ConnectionType = "Microsoft.ApiManagement/service/connections"

// maxConnectionFilterBytes bounds the filter values a caller may send.
const maxConnectionFilterBytes = 256

// LiveConnections lists and closes the sessions open on the gateway nodes of a service
// (fleet.Connections). List and Close of a nil *fleet.Connections ask no node.
type LiveConnections interface {
	List(ctx context.Context, serviceID string, f configwire.ConnectionFilter) ([]configwire.ConnectionsReply, error)
	Close(ctx context.Context, serviceID string, f configwire.ConnectionFilter) (int, error)
}

var _ LiveConnections = (*fleet.Connections)(nil)

// connectionRoutes registers the live connections of a service: listed and closed on the
// gateway nodes over NATS.
func (s *Server) connectionRoutes(g *echo.Group) {
	p := ServicePrefix
	g.GET(p+"/connections", s.listConnections)
	g.POST(p+"/connections/:connectionId/close", s.closeConnection)
	g.POST(p+"/subscriptions/:sid/closeConnections", s.closeSubscriptionConnections)
}

// connectionResource is the ARM body of one live connection.
type connectionResource struct {
	ID         string               `json:"id"`
	Type       string               `json:"type"`
	Name       string               `json:"name"`
	Properties connectionProperties `json:"properties"`
}

type connectionProperties struct {
	Node         string    `json:"node"`
	Gateway      string    `json:"gateway,omitempty"`
	API          string    `json:"api"`
	Subscription string    `json:"subscription,omitempty"`
	Product      string    `json:"product,omitempty"`
	ClientIP     string    `json:"clientIp,omitempty"`
	Since        time.Time `json:"since"`
	MessagesIn   int64     `json:"messagesIn"`
	MessagesOut  int64     `json:"messagesOut"`
	BytesIn      int64     `json:"bytesIn"`
	BytesOut     int64     `json:"bytesOut"`
}

// listConnections lists the WebSocket sessions open on the live nodes of the service,
// optionally only those of an API, a subscription or a node, oldest first.
func (s *Server) listConnections(c echo.Context) error {
	ctx := c.Request().Context()
	f := configwire.ConnectionFilter{API: c.QueryParam("api"), Subscription: c.QueryParam("subscription"), Node: c.QueryParam("node")}
	for _, q := range []struct{ name, value string }{{"api", f.API}, {"subscription", f.Subscription}, {"node", f.Node}} {
		if len(q.value) > maxConnectionFilterBytes {
			return apierror.Validation(q.name, "%s must be at most %d bytes", q.name, maxConnectionFilterBytes)
		}
	}
	svc, err := s.cat.GetService(ctx, ref(c))
	if err != nil {
		return err
	}
	replies, err := s.cfg.Connections.List(ctx, svc.ID, f)
	if err != nil {
		return err
	}
	var conns []connectionResource
	base := catalog.ServiceID(ref(c)) + "/connections/"
	for _, r := range replies {
		for _, x := range r.Connections {
			conns = append(conns, connectionResource{ID: base + x.ID, Type: ConnectionType, Name: x.ID, Properties: connectionProperties{
				Node: r.Node, Gateway: r.Gateway, API: x.API, Subscription: x.Subscription, Product: x.Product, ClientIP: x.ClientIP,
				Since: x.Since.UTC(), MessagesIn: x.MessagesIn, MessagesOut: x.MessagesOut, BytesIn: x.BytesIn, BytesOut: x.BytesOut}})
		}
	}
	slices.SortFunc(conns, func(a, b connectionResource) int {
		return cmp.Or(a.Properties.Since.Compare(b.Properties.Since), strings.Compare(a.Name, b.Name))
	})
	items := make([]any, len(conns))
	for i := range conns {
		items[i] = conns[i]
	}
	return c.JSON(http.StatusOK, armList{Value: items, Count: len(items)})
}

// closeConnection closes one live connection, wherever it is open, with 1008 "closed by an
// administrator": 204, or 404 when no live node has it open.
func (s *Server) closeConnection(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("connectionId")
	if len(id) > maxConnectionFilterBytes {
		return apierror.Validation("connectionId", "connectionId must be at most %d bytes", maxConnectionFilterBytes)
	}
	svc, err := s.cat.GetService(ctx, ref(c))
	if err != nil {
		return err
	}
	n, err := s.cfg.Connections.Close(ctx, svc.ID, configwire.ConnectionFilter{ID: id})
	if err != nil {
		return err
	}
	if n == 0 {
		return apierror.NotFound("Connection")
	}
	return c.NoContent(http.StatusNoContent)
}

// closeSubscriptionConnections closes every live connection of a subscription with 1008
// "closed by an administrator" and says how many it closed.
func (s *Server) closeSubscriptionConnections(c echo.Context) error {
	ctx := c.Request().Context()
	sub, err := s.cat.Get(ctx, ref(c), catalog.KindSubscription, "", c.Param("sid"))
	if err != nil {
		return err
	}
	svc, err := s.cat.GetService(ctx, ref(c))
	if err != nil {
		return err
	}
	n, err := s.cfg.Connections.Close(ctx, svc.ID, configwire.ConnectionFilter{Subscription: sub.Name})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int{"closed": n})
}
