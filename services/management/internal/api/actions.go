package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"time"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// actionRoutes serves the POST actions that reveal or rotate secrets. They are writes for
// authorization: a Reader cannot call them.
func (s *Server) actionRoutes(g *echo.Group) {
	p := ServicePrefix
	g.POST(p+"/subscriptions/:sid/listSecrets", s.listSubscriptionSecrets)
	g.POST(p+"/subscriptions/:sid/regeneratePrimaryKey", s.regenerateSubscriptionKey(true))
	g.POST(p+"/subscriptions/:sid/regenerateSecondaryKey", s.regenerateSubscriptionKey(false))
	g.POST(p+"/gateways/:gatewayId/listKeys", s.listGatewayKeys)
	g.POST(p+"/gateways/:gatewayId/regenerateKey", s.regenerateGatewayKey)
	g.POST(p+"/gateways/:gatewayId/generateToken", s.generateGatewayToken)
	g.POST(p+"/namedValues/:namedValueId/listValue", s.listNamedValue)
	g.POST(p+"/users/:userId/token", s.generateUserToken)
	g.POST(p+"/certificates/:certificateId/refreshSecret", s.refreshCertificateSecret)
	g.POST(p+"/backends/:backendId/reconnect", s.reconnectBackend)
}

// refreshCertificateSecret answers refreshSecret, which only Key Vault certificates have: 400
// for an existing certificate (catalog.RefreshCertificateSecret).
func (s *Server) refreshCertificateSecret(c echo.Context) error {
	return s.cat.RefreshCertificateSecret(c.Request().Context(), ref(c), c.Param("certificateId"))
}

func (s *Server) listSubscriptionSecrets(c echo.Context) error {
	keys, r, err := s.cat.SubscriptionSecrets(c.Request().Context(), ref(c), c.Param("sid"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(http.StatusOK, keys)
}

func (s *Server) regenerateSubscriptionKey(primary bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.cat.RegenerateSubscriptionKey(c.Request().Context(), ref(c), c.Param("sid"), primary); err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	}
}

func (s *Server) listGatewayKeys(c echo.Context) error {
	keys, r, err := s.cat.GatewayKeys(c.Request().Context(), ref(c), c.Param("gatewayId"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(http.StatusOK, keys)
}

// decodeAction reads a POST action's JSON body into v.
func decodeAction(c echo.Context, v any) error { return decodeActionBody(c, v, false) }

// decodeActionBody reads a POST action's JSON body into v; with optional, an empty body leaves
// v as it is.
func decodeActionBody(c echo.Context, v any, optional bool) error {
	body, err := readBody(c, optional)
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(body)
	if err := json.Unmarshal(raw, v); err != nil {
		return &apierror.Error{Code: apierror.InvalidRequestContent, Target: "body", Message: "The request body has a field of the wrong type."}
	}
	if p := catalog.UnknownField(raw, reflect.TypeOf(v)); p != "" {
		return &apierror.Error{Code: apierror.ValidationError, Target: p,
			Message: "Gatehouse does not implement the member '" + p + "' of this request body; remove it (docs/arm.md)."}
	}
	return nil
}

func (s *Server) regenerateGatewayKey(c echo.Context) error {
	var in struct {
		KeyType string `json:"keyType"`
	}
	if err := decodeAction(c, &in); err != nil {
		return err
	}
	if err := s.cat.RegenerateGatewayKey(c.Request().Context(), ref(c), c.Param("gatewayId"), in.KeyType); err != nil {
		return err
	}
	s.revokeBus(c, c.Param("gatewayId"))
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) generateGatewayToken(c echo.Context) error {
	var in struct {
		KeyType string `json:"keyType"`
		Expiry  string `json:"expiry"`
	}
	if err := decodeAction(c, &in); err != nil {
		return err
	}
	exp, err := parseExpiry(in.Expiry, "expiry")
	if err != nil {
		return err
	}
	token, err := s.cat.GenerateGatewayToken(c.Request().Context(), ref(c), c.Param("gatewayId"), in.KeyType, exp)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"value": token})
}

// parseExpiry reads the expiry of a token request, the field target.
func parseExpiry(v, target string) (time.Time, error) {
	exp, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return exp, apierror.Validation(target, "%s must be an ISO 8601 date-time such as 2030-01-01T00:00:00Z", target)
	}
	return exp, nil
}

func (s *Server) listNamedValue(c echo.Context) error {
	v, r, err := s.cat.NamedValue(c.Request().Context(), ref(c), c.Param("namedValueId"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(http.StatusOK, map[string]string{"value": v})
}

// revokeBus disconnects the bus connections of the nodes of gateway, whose tokens may have
// stopped being valid: those still valid reconnect at once (issue 12). A failure is logged, not
// returned: the write is done, and the nodes' bus credentials expire on their own.
func (s *Server) revokeBus(c echo.Context, gateway string) {
	if s.cfg.Bus == nil {
		return
	}
	ctx := c.Request().Context()
	svc, err := s.cat.GetService(ctx, ref(c))
	if err == nil {
		var n int
		n, err = s.cfg.Bus.Revoke(ctx, svc.ID, gateway)
		s.log.InfoContext(ctx, "gateway nodes disconnected from the bus", "gateway", gateway, "connections", n)
	}
	if err != nil {
		s.log.WarnContext(ctx, "disconnecting gateway nodes from the bus failed; their credentials expire on their own", "gateway", gateway, "err", err)
	}
}

// reconnectBackend answers APIM's reconnect action with 202 once the backend exists and the
// optional "after" is a duration. Nodes hold no connections to recreate: every WebSocket
// session and REST call dials its backend afresh (docs/backends.md).
func (s *Server) reconnectBackend(c echo.Context) error {
	var in struct {
		Properties struct {
			After string `json:"after"`
		} `json:"properties"`
	}
	if err := decodeActionBody(c, &in, true); err != nil {
		return err
	}
	if err := s.cat.ReconnectBackend(c.Request().Context(), ref(c), c.Param("backendId"), in.Properties.After); err != nil {
		return err
	}
	return c.NoContent(http.StatusAccepted)
}
