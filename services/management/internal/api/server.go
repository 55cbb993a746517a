// Package api serves management's ARM-compatible REST API with echo: routing, api-version and
// auth checks, ARM envelopes, ETags and paging. The domain rules live in catalog.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/connlog"
	"gatehouse.dev/management/internal/console"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/metrics"
	"gatehouse.dev/management/internal/portal"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/openapi"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
)

// MaxBodyBytes bounds request bodies; a policy document may be 512 KiB of XML, JSON-escaped.
const MaxBodyBytes = 4 << 20

// ServicePrefix is the ARM path of one service; every child route hangs below it.
const ServicePrefix = "/subscriptions/:subscriptionId/resourceGroups/:resourceGroupName/providers/Microsoft.ApiManagement/service/:serviceName"

// Config is the static configuration of the API server.
type Config struct {
	// NATSURLs are the NATS servers gateway nodes are told to use.
	NATSURLs []string
	// Ready reports whether management can take requests and how its dependencies are, for
	// /readyz; nil reports ready with no checks.
	Ready func(ctx context.Context) Readiness
	// Fleet is the view of the gateway nodes served under .../gateways/{id}/nodes; nil lists none.
	Fleet *fleet.Registry
	// Connections lists and closes the live connections on the gateway nodes
	// (.../connections); nil asks no node, so no connection is listed or closed.
	Connections LiveConnections
	// Metrics records each request's duration by route template and status; nil records none.
	Metrics *metrics.Management
	// MetricsHandler, if set, serves GET /metrics on the admin handler (AdminHandler), never on
	// the API's listener (docs/observability.md).
	MetricsHandler http.Handler
	// Reports answers the usage reports under .../reports; nil serves empty reports.
	Reports *reports.Store
	// ConnectionLog answers the connection log under .../connectionLogs; nil serves an empty
	// log.
	ConnectionLog *connlog.Log
	// Bus cuts a gateway's nodes off the bus when its keys are regenerated or it is deleted;
	// nil leaves them connected until their bus credentials expire.
	Bus BusRevoker
	// Keys signs the snapshots served to gateway nodes and gives them their verification keys
	// and node keys (signing.Keyring). Required.
	Keys Keys
}

// BusRevoker disconnects the bus connections of a gateway's nodes (busauth.Authorizer).
type BusRevoker interface {
	Revoke(ctx context.Context, serviceID, gateway string) (int, error)
}

// Keys is what the snapshot endpoint needs of management's signing keys.
type Keys interface {
	Signer() *configwire.Signer
	VerifyKeys() []configwire.VerifyKey
	// NodeKey is the node key of gateway bound to the gateway key that signed the caller's
	// token (catalog.GatewayNode.KeyBinding).
	NodeKey(serviceID, gateway string, binding []byte) configwire.NodeKey
}

// Server is management's HTTP API.
type Server struct {
	cfg      Config
	cat      *catalog.Catalog
	auth     *auth.Verifier
	log      *slog.Logger
	echo     *echo.Echo
	consoles *console.Handler
	// fixed holds the fixed path segments of the routes, for armConventions.
	fixed *segmentTrie
	// operations is the provider operations list, derived from the routes.
	operations []armOperation
}

// New builds the server and its routes.
func New(cfg Config, cat *catalog.Catalog, verifier *auth.Verifier, log *slog.Logger) *Server {
	if cfg.Connections == nil {
		cfg.Connections = (*fleet.Connections)(nil)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	s := &Server{cfg: cfg, cat: cat, auth: verifier, log: log, echo: e}
	s.consoles = console.New(console.Config{Resolve: s.consoleEndpoint, Explain: toAPIError, Log: log})
	e.HTTPErrorHandler = s.errorHandler
	e.Pre(s.armConventions)
	e.JSONSerializer = jsonSerializer{}
	e.Use(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		Generator:    uuid.NewString,
		TargetHeader: echo.HeaderXRequestID,
		RequestIDHandler: func(c echo.Context, id string) {
			c.Response().Header().Set("x-ms-request-id", id)
		},
	}))
	e.Use(s.observe)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.ErrorContext(c.Request().Context(), "panic", "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(middleware.BodyLimit("4M"))

	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openapi.Management)
	})
	e.GET(configwire.SnapshotPath, s.gatewayConfig)
	portal.Register(e)

	arm := e.Group("", decodeParams, s.authenticate, s.requireAPIVersion, checkQuery, jsonBody)
	s.routes(arm)
	s.portalRoutes(e)
	e.GET(ExportLinkPath, s.serveExportLink)
	s.fixed = newSegmentTrie(e.Routes())
	s.operations = providerOperations(e.Routes())
	return s
}

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// AdminHandler serves the admin listener (MANAGEMENT_ADMIN_LISTEN), without authentication:
// GET /metrics (when Config.MetricsHandler is set), /healthz and /readyz. It is meant for a
// listener that only operators and Prometheus reach; the API's listener does not serve
// /metrics (issue 12: the series name services, gateways and routes).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	if s.cfg.MetricsHandler != nil {
		mux.Handle("GET /metrics", s.cfg.MetricsHandler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rd := Readiness{Ready: true}
		if s.cfg.Ready != nil {
			rd = s.cfg.Ready(r.Context())
		}
		status := http.StatusOK
		if !rd.Ready {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(rd)
	})
	return mux
}

// Routes lists the method and path of every route, for the contract test.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }

// Readiness is the body of /readyz. Ready decides the status (200 or 503), which is what a load
// balancer reads; Checks tell an operator the state of each dependency, such as
// {"database": "ok", "nats": "disconnected, 3 changes waiting in the outbox"}.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Checks map[string]string `json:"checks,omitempty"`
}

func (s *Server) readyz(c echo.Context) error {
	r := Readiness{Ready: true}
	if s.cfg.Ready != nil {
		r = s.cfg.Ready(c.Request().Context())
	}
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, r)
}

// observe records each request's duration by route template and status. It hands an error
// to the error handler itself, so that the status it records is the one the client gets.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		s.cfg.Metrics.Request(c.Request().Method, c.Path(), c.Response().Status, time.Since(start))
		return nil
	}
}

type principalKey struct{}

// authenticate checks the bearer token, then that the caller may act on the path's tenant:
// reads need any role, writes and list* secret reads need Contributor. A consumer may act on
// no tenant here: it uses the portal API.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, err := s.identifyRequest(c)
		if err != nil {
			return err
		}
		sub := c.Param("subscriptionId")
		method := c.Request().Method
		if c.Path() == providerOperationsPath {
			return next(c) // the provider's operations belong to no tenant
		}
		if !p.CanAccess(sub) || (method != http.MethodGet && method != http.MethodHead && !p.CanWrite()) {
			action := strings.TrimPrefix(c.Path(), "/subscriptions/:subscriptionId")
			return apierror.New(apierror.AuthorizationFailed,
				"The client '%s' does not have authorization to perform action '%s %s' over scope '/subscriptions/%s' or the scope is invalid.",
				p.Subject, method, action, sub)
		}
		c.Set("principal", p.Principal)
		return next(c)
	}
}

// decodeParams unescapes the path parameters, since echo matches the escaped path when there is
// one (URL.RawPath) and the Azure SDK escapes ids with url.PathEscape: "a%3Bb" names "a;b". It
// runs before authenticate so that authorization and handlers see the same values, and refuses
// values Postgres cannot store (invalid UTF-8, U+0000) or that would split a resource path ('/').
func decodeParams(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		names, values := c.ParamNames(), c.ParamValues()
		for i, v := range values {
			if names[i] == "*" {
				continue // the group's not-found route
			}
			var err error
			if c.Request().URL.RawPath != "" {
				v, err = url.PathUnescape(v)
			}
			if err != nil || !utf8.ValidString(v) || strings.ContainsAny(v, "\x00/") {
				return apierror.Validation(names[i], "%s must be valid UTF-8 without '/' or the character U+0000", names[i])
			}
			values[i] = v
		}
		c.SetParamValues(values...)
		return next(c)
	}
}

// jsonSerializer writes JSON without HTML escaping, so values such as gateway tokens keep their
// '&' instead of "\u0026" for clients that do not decode JSON strictly.
type jsonSerializer struct{}

func (jsonSerializer) Serialize(c echo.Context, i any, indent string) error {
	enc := json.NewEncoder(c.Response())
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(i)
}

func (jsonSerializer) Deserialize(c echo.Context, i any) error {
	return json.NewDecoder(c.Request().Body).Decode(i)
}
