package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/pkg/apierror"
)

// toAPIError is the one place where errors become what a caller sees. Anything it does not
// recognise is an internal error: the caller gets a request id, the log gets the cause.
func toAPIError(err error) (*apierror.Error, bool) {
	var (
		ae   *apierror.Error
		ve   *catalog.ValidationError
		nf   *catalog.NotFoundError
		ce   *catalog.ConflictError
		fe   *catalog.FilterError
		re   *reports.Error
		he   *echo.HTTPError
		body *bodyError
		pe   *catalog.PreconditionError
	)
	switch {
	case errors.As(err, &ae):
		return ae, true
	case errors.As(err, &body):
		return &apierror.Error{Code: body.code, Message: body.msg, Target: body.target}, true
	case errors.As(err, &ve):
		return apierror.Validation(ve.Target, "%s", ve.Message), true
	case errors.As(err, &nf):
		return apierror.NotFound(nf.What), true
	case errors.Is(err, catalog.ErrNotFound):
		return apierror.NotFound("Resource"), true
	case errors.As(err, &ce):
		return apierror.New(apierror.Conflict, "%s", ce.Message), true
	case errors.As(err, &pe) && pe.Header == "If-None-Match":
		return &apierror.Error{Code: apierror.PreconditionFailed, Target: "If-None-Match",
			Message: "The entity already exists and the If-None-Match header does not allow it to be replaced."}, true
	case errors.Is(err, catalog.ErrPreconditionFailed):
		return &apierror.Error{Code: apierror.PreconditionFailed, Target: "If-Match",
			Message: "The entity's ETag does not match the If-Match header. Read the entity again and retry with its current ETag."}, true
	case errors.As(err, &fe):
		return &apierror.Error{Code: apierror.InvalidFilter, Target: "$filter", Message: "Invalid $filter: " + fe.Message}, true
	case errors.As(err, &re):
		// A report query's parameters ($filter, $orderby, interval) answer ValidationError,
		// as APIM's reports do.
		return apierror.Validation(re.Field, "%s", re.Msg), true
	case errors.Is(err, catalog.ErrInvalidToken):
		return apierror.New(apierror.InvalidGatewayToken, "The gateway token is invalid or expired. Generate a new one with generateToken."), true
	case errors.Is(err, fleet.ErrUnreachable):
		return apierror.New(apierror.ServiceUnavailable, "The gateway nodes cannot be reached now; try again later."), true
	case errors.Is(err, auth.ErrUnauthenticated):
		return apierror.New(apierror.AuthenticationFailed, "Authentication failed. The 'Authorization' header is missing or does not carry a valid bearer token."), true
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return apierror.New(apierror.ResourceNotFound, "No route matches the request path."), true
		case http.StatusMethodNotAllowed:
			return apierror.New(apierror.MethodNotAllowed, "The HTTP method is not allowed on this resource."), true
		case http.StatusRequestEntityTooLarge:
			return &apierror.Error{Code: apierror.RequestTooLarge, Target: "body", Message: "The request body is larger than the limit of 4 MiB."}, true
		case http.StatusUnsupportedMediaType:
			return &apierror.Error{Code: apierror.UnsupportedMediaType, Target: "Content-Type", Message: "The request body must be application/json."}, true
		case http.StatusBadRequest:
			return &apierror.Error{Code: apierror.InvalidRequestContent, Target: "body", Message: "The request is malformed."}, true
		}
	}
	return apierror.New(apierror.InternalError, "An internal error occurred."), false
}

// errorHandler writes err as an ARM error envelope.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae, known := toAPIError(err)
	reqID := c.Response().Header().Get(echo.HeaderXRequestID)
	if !known {
		s.log.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method,
			"route", c.Path(), "request_id", reqID, "err", err)
		ae = apierror.New(apierror.InternalError, "An internal error occurred. Request id: %s.", reqID)
	}
	h := c.Response().Header()
	h.Set("x-ms-error-code", string(ae.Code))
	if ae.Code == apierror.AuthenticationFailed {
		h.Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(ae.Status())
		return
	}
	_ = c.JSON(ae.Status(), apierror.Envelope{Error: ae})
}

// bodyError is a request body that cannot be read as the resource it should be.
type bodyError struct {
	code   apierror.Code
	target string
	msg    string
}

func (e *bodyError) Error() string { return e.msg }
