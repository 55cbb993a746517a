package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
)

// generateUserToken answers APIM's POST .../users/{userId}/token with {"value": token}, a token
// that signs the user in to the portal API as a consumer.
func (s *Server) generateUserToken(c echo.Context) error {
	var in struct {
		Properties struct {
			KeyType string `json:"keyType"`
			Expiry  string `json:"expiry"`
		} `json:"properties"`
	}
	if err := decodeAction(c, &in); err != nil {
		return err
	}
	exp, err := parseExpiry(in.Properties.Expiry, "properties.expiry")
	if err != nil {
		return err
	}
	token, err := s.cat.GenerateUserToken(c.Request().Context(), ref(c), c.Param("userId"), in.Properties.KeyType, exp)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]string{"value": token})
}

// caller is an authenticated principal and, for a consumer, what its user token names.
type caller struct {
	auth.Principal
	consumer *catalog.Consumer
}

// identifyRequest authenticates the request's Authorization header, logging a failure.
func (s *Server) identifyRequest(c echo.Context) (caller, error) {
	cl, err := s.identify(c.Request().Context(), c.Request().Header.Get(echo.HeaderAuthorization))
	if err != nil {
		s.log.InfoContext(c.Request().Context(), "authentication failed", "route", c.Path(), "err", err)
	}
	return cl, err
}

// identify authenticates an Authorization header value: the admin token or a tenant JWT
// (auth.Verifier), else a consumer's user token (catalog.VerifyUserToken). Every bad credential
// is auth.ErrUnauthenticated; the token itself never enters an error.
func (s *Server) identify(ctx context.Context, header string) (caller, error) {
	p, err := s.auth.Authenticate(header)
	if err == nil || !errors.Is(err, auth.ErrUnauthenticated) {
		return caller{Principal: p}, err
	}
	token, terr := auth.BearerToken(header)
	if terr != nil || !catalog.LooksLikeUserToken(token) {
		return caller{}, err
	}
	consumer, err := s.cat.VerifyUserToken(ctx, token)
	if errors.Is(err, catalog.ErrInvalidUserToken) {
		return caller{}, fmt.Errorf("%w: %v", auth.ErrUnauthenticated, err)
	}
	if err != nil {
		return caller{}, err
	}
	return caller{Principal: auth.NewConsumer(consumer.Service.ID, consumer.User.Name), consumer: &consumer}, nil
}
