package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/apierror"
)

// portalSettingRoutes serves the developer portal's settings and identity providers (docs/arm.md):
// stored and returned, with their secrets only through listSecrets; nothing at run time uses
// them. The portal settings always exist, so they have no DELETE, and a PUT answers 200 and a
// PATCH 204.
func (s *Server) portalSettingRoutes(g *echo.Group) {
	p := ServicePrefix
	settings := collection{catalog.KindPortalSetting, "/portalsettings", "portalSettingName", topLevel}
	item := p + settings.path + "/:" + settings.param
	g.GET(p+settings.path, s.listPortalSettings)
	g.GET(item, s.get(settings))
	g.HEAD(item, s.get(settings))
	g.PUT(item, s.put(settings))
	g.PATCH(item, s.patchPortalSetting(settings))
	g.POST(p+settings.path+"/delegation/listSecrets", s.listDelegationSecrets)

	providers := collection{catalog.KindIdentityProvider, "/identityProviders", "identityProviderName", topLevel}
	s.itemRoutes(g, providers, s.patch(providers))
	g.POST(p+providers.path+"/:"+providers.param+"/listSecrets", s.listIdentityProviderSecrets)
}

// patchPortalSetting answers a portal setting's PATCH with 204 and its new ETag, as APIM
// does (the SDKs accept nothing else).
func (s *Server) patchPortalSetting(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		r, err := s.patched(c, col)
		if err != nil {
			return err
		}
		c.Response().Header().Set("ETag", r.ETag)
		return c.NoContent(http.StatusNoContent)
	}
}

// listPortalSettings answers the three portal settings. The collection has no paging or
// $filter in APIM: they are refused rather than ignored.
func (s *Server) listPortalSettings(c echo.Context) error {
	for _, o := range pagingOptions {
		if c.QueryParams().Has(o) {
			return apierror.Validation(o, "The query parameter '%s' is not supported on the portal settings, which are always the three of them; remove it.", o)
		}
	}
	rs, err := s.cat.PortalSettings(c.Request().Context(), ref(c))
	if err != nil {
		return err
	}
	items := make([]any, len(rs))
	for i, r := range rs {
		items[i] = s.armOf(c, r)
	}
	return s.writeList(c, catalog.Page{}, items, len(items))
}

// listDelegationSecrets answers the delegation's validation key ("" when none was set).
func (s *Server) listDelegationSecrets(c echo.Context) error {
	key, r, err := s.cat.DelegationValidationKey(c.Request().Context(), ref(c))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(http.StatusOK, map[string]string{"validationKey": key})
}

// listIdentityProviderSecrets answers an identity provider's client secret.
func (s *Server) listIdentityProviderSecrets(c echo.Context) error {
	secret, r, err := s.cat.IdentityProviderSecret(c.Request().Context(), ref(c), c.Param("identityProviderName"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(http.StatusOK, map[string]string{"clientSecret": secret})
}
