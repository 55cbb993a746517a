package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// ConnectionType is the ARM type of a live WebSocket connection, a Gatehouse extension
// resource.
const ConnectionType = "Microsoft.ApiManagement/service/connections"

// connectionsWait bounds how long a live-connection request waits for the nodes' answers.
const connectionsWait = time.Second

// maxConnectionFilterBytes bounds the filter values a caller may send.
const maxConnectionFilterBytes = 256

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
	replies, err := s.askNodes(ctx, svc.ID, configwire.ConnectionsRequest{Op: configwire.ConnectionsList, Filter: f})
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
	n, err := s.closeConnections(ctx, svc.ID, configwire.ConnectionFilter{ID: id})
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
	n, err := s.closeConnections(ctx, svc.ID, configwire.ConnectionFilter{Subscription: sub.Name})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int{"closed": n})
}

// closeConnections asks the nodes to close the sessions f selects and returns how many they
// closed.
func (s *Server) closeConnections(ctx context.Context, serviceID string, f configwire.ConnectionFilter) (int, error) {
	replies, err := s.askNodes(ctx, serviceID, configwire.ConnectionsRequest{Op: configwire.ConnectionsClose, Filter: f,
		Code: configwire.AdminCloseCode, Reason: configwire.AdminCloseReason})
	n := 0
	for _, r := range replies {
		n += r.Closed
	}
	return n, err
}

// askNodes sends req to every node of the service on bus.ConnectionsSubject and gathers the
// answers until each live node the fleet knows (only the filter's node, if it names one)
// answered or connectionsWait passed; a node that answers late is left out. Without a NATS
// connection or a live node no node is asked. A node's refusal is logged and left out.
func (s *Server) askNodes(ctx context.Context, serviceID string, req configwire.ConnectionsRequest) ([]configwire.ConnectionsReply, error) {
	nc := s.cfg.NATS
	if nc == nil {
		return nil, nil
	}
	waiting := map[string]bool{}
	for _, n := range s.cfg.Fleet.Nodes(serviceID, "") {
		if n.Live && (req.Filter.Node == "" || n.NodeID == req.Filter.Node) {
			waiting[n.NodeID] = true
		}
	}
	if len(waiting) == 0 {
		return nil, nil
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	unavailable := func(err error) error {
		s.log.WarnContext(ctx, "live-connection request failed", "op", req.Op, "err", err)
		return apierror.New(apierror.ServiceUnavailable, "The gateway nodes cannot be reached now; try again later.")
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, unavailable(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(bus.ConnectionsSubject(serviceID), inbox, body); err != nil {
		return nil, unavailable(err)
	}
	wctx, cancel := context.WithTimeout(ctx, connectionsWait)
	defer cancel()
	var replies []configwire.ConnectionsReply
	answered := map[string]bool{}
	for len(waiting) > 0 {
		m, err := sub.NextMsgWithContext(wctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
				return replies, unavailable(err)
			}
			s.log.WarnContext(ctx, "gateway nodes did not answer a live-connection request in time", "op", req.Op,
				"missing", len(waiting), "wait", connectionsWait)
			break
		}
		var r configwire.ConnectionsReply
		if err := json.Unmarshal(m.Data, &r); err != nil || r.Node == "" || answered[r.Node] {
			continue
		}
		answered[r.Node] = true
		delete(waiting, r.Node)
		switch {
		case r.Error != "":
			s.log.WarnContext(ctx, "a gateway node refused a live-connection request", "node", r.Node, "op", req.Op, "err", r.Error)
		case r.Truncated:
			s.log.InfoContext(ctx, "a gateway node listed only part of its connections", "node", r.Node,
				"listed", len(r.Connections))
			fallthrough
		default:
			replies = append(replies, r)
		}
	}
	return replies, nil
}
