package api

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
)

// fragmentRoutes serves policy fragments (reference/apim-surface.md §8): list, GET with
// ?format=xml|rawxml, HEAD, PUT, DELETE and POST listReferences. APIM's 2024-05-01 spec has
// no PATCH for them. PUT is long-running in the spec; it completes here before answering, with
// provisioningState Succeeded and no polling headers, so the SDK's BeginCreateOrUpdate is
// done at its first response, as for every other kind.
func (s *Server) fragmentRoutes(g *echo.Group) {
	col := collection{catalog.KindPolicyFragment, "/policyFragments", "id", topLevel}
	item := ServicePrefix + col.path + "/:" + col.param
	g.GET(ServicePrefix+col.path, s.list(col))
	g.GET(item, s.getFragment)
	g.HEAD(item, s.get(col))
	g.PUT(item, s.put(col))
	g.DELETE(item, s.delete(col))
	g.POST(item+"/listReferences", s.fragmentReferences)
}

// getFragment answers a fragment in the format asked for: xml without the <fragment> root,
// rawxml with it.
func (s *Server) getFragment(c echo.Context) error {
	r, err := s.cat.Get(c.Request().Context(), ref(c), catalog.KindPolicyFragment, "", c.Param("id"))
	if err != nil {
		return err
	}
	props, err := catalog.RenderFragment(r, c.QueryParam("format"))
	if err != nil {
		return err
	}
	out := s.armOf(c, r)
	out.Properties, _ = json.Marshal(props)
	c.Response().Header().Set("ETag", r.ETag)
	return c.JSON(http.StatusOK, out)
}

// resourceRef is one entry of listReferences: the ARM id, name and type of a policy.
type resourceRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// fragmentReferences lists the policies that include a fragment, paged by $top and $skip.
func (s *Server) fragmentReferences(c echo.Context) error {
	p, _, err := page(c)
	if err != nil {
		return err
	}
	rs, total, err := s.cat.FragmentReferences(c.Request().Context(), ref(c), c.Param("id"), p)
	if err != nil {
		return err
	}
	items := make([]any, 0, len(rs))
	for _, r := range rs {
		a := s.armOf(c, r)
		items = append(items, resourceRef{ID: a.ID, Name: a.Name, Type: a.Type})
	}
	return s.writeList(c, p, items, total)
}
