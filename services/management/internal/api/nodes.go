package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
)

// Headers of the gateway nodes list, a Gatehouse extension.
const (
	// HeaderRevision carries the service's current configuration revision.
	HeaderRevision = "Gatehouse-Revision"
	// HeaderConverged answers a waitForRevision request: "true" when every live node serves
	// the revision, "false" when the timeout came first.
	HeaderConverged = "Gatehouse-Converged"
)

// Bounds of the waitForRevision timeout.
const (
	defaultNodesWait = 30 * time.Second
	maxNodesWait     = 60 * time.Second
)

// NodeType is the ARM type of a gateway node, a Gatehouse extension resource.
const NodeType = "Microsoft.ApiManagement/service/gateways/nodes"

// nodeRoutes registers the gateway nodes list.
func (s *Server) nodeRoutes(g *echo.Group) {
	g.GET(ServicePrefix+"/gateways/:gatewayId/nodes", s.gatewayNodes)
}

// nodeResource is the ARM body of one gateway node.
type nodeResource struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Name       string         `json:"name"`
	Properties nodeProperties `json:"properties"`
}

type nodeProperties struct {
	Revision      int64     `json:"revision"`
	Connections   int       `json:"connections"`
	Healthy       bool      `json:"healthy"`
	LastError     string    `json:"lastError,omitempty"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
	Started       time.Time `json:"started"`
	Hostname      string    `json:"hostname,omitempty"`
	Version       string    `json:"version,omitempty"`
	// URL is where clients reach the node (its GATEWAY_PUBLIC_URL), when it reports one.
	URL string `json:"url,omitempty"`
	// Status is "live" while the node reports, "stale" once it has been silent too long.
	Status string `json:"status"`
	// PolicyFailures are the policies the node could not compile in the revision it serves
	// (at most 50 listed): their APIs fail closed on that node, answering 500, while it
	// enforces the rest of the revision. FailedAPIs counts the APIs concerned.
	PolicyFailures []configwire.PolicyFailure `json:"policyFailures"`
	FailedAPIs     int                        `json:"failedApis"`
}

// nodesWait is a parsed waitForRevision request.
type nodesWait struct {
	latest   bool
	revision int64
	timeout  time.Duration
}

// parseNodesWait reads waitForRevision (an integer, or "latest" for the service's current
// revision) and timeout (a Go duration such as "10s", or whole seconds; at most 60 s). It
// returns nil when the caller does not ask to wait.
func parseNodesWait(c echo.Context) (*nodesWait, error) {
	w := &nodesWait{timeout: defaultNodesWait}
	if v := c.QueryParam("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if n, nerr := strconv.Atoi(v); nerr == nil {
			d, err = time.Duration(n)*time.Second, nil
		}
		if err != nil || d <= 0 || d > maxNodesWait {
			return nil, apierror.Validation("timeout", "timeout must be a duration such as 10s or a number of seconds, above 0 and at most %s", maxNodesWait)
		}
		w.timeout = d
	}
	v := c.QueryParam("waitForRevision")
	switch {
	case v == "":
		return nil, nil
	case strings.EqualFold(v, "latest"):
		w.latest = true
	default:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, apierror.Validation("waitForRevision", "waitForRevision must be 'latest' or a revision number of at least 0")
		}
		w.revision = n
	}
	return w, nil
}

// gatewayNodes lists the nodes that reported for a gateway resource, live and stale. With
// waitForRevision it first waits, up to timeout, until every live node serves that revision,
// and says in HeaderConverged whether they do.
func (s *Server) gatewayNodes(c echo.Context) error {
	ctx := c.Request().Context()
	wait, err := parseNodesWait(c)
	if err != nil {
		return err
	}
	svc, err := s.cat.GetService(ctx, ref(c))
	if err != nil {
		return err
	}
	gw, err := s.cat.Get(ctx, ref(c), catalog.KindGateway, "", c.Param("gatewayId"))
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(HeaderRevision, strconv.FormatInt(svc.Revision, 10))
	if wait != nil {
		if wait.latest {
			wait.revision = svc.Revision
		}
		wctx, cancel := context.WithTimeout(ctx, wait.timeout)
		_, _ = s.cfg.Fleet.Wait(wctx, svc.ID, gw.Name, wait.revision)
		cancel()
	}
	nodes := s.cfg.Fleet.Nodes(svc.ID, gw.Name)
	converged := true
	items := make([]any, 0, len(nodes))
	base := catalog.ServiceID(ref(c)) + "/" + gw.Path() + "/nodes/"
	for _, n := range nodes {
		status := "stale"
		if n.Live {
			status = "live"
			converged = converged && (wait == nil || n.Revision >= wait.revision)
		}
		items = append(items, nodeResource{ID: base + n.NodeID, Type: NodeType, Name: n.NodeID, Properties: nodeProperties{
			Revision: n.Revision, Connections: n.Connections, Healthy: n.Healthy, LastError: n.LastError,
			LastHeartbeat: n.LastSeen.UTC(), Started: n.Started.UTC(), Hostname: n.Hostname, Version: n.Version, URL: n.URL, Status: status,
			PolicyFailures: append([]configwire.PolicyFailure{}, n.PolicyFailures...), FailedAPIs: n.FailedAPIs,
		}})
	}
	if wait != nil {
		h.Set(HeaderConverged, strconv.FormatBool(converged))
	}
	return c.JSON(http.StatusOK, armList{Value: items, Count: len(items)})
}
