package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
)

// expandVersionSet adds to an API's properties its version set as the inline apiVersionSet
// object (expandApiVersionSet=true): the set's id, name and properties.
func (s *Server) expandVersionSet(c echo.Context, out armResource) (armResource, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(out.Properties, &p); err != nil {
		return out, err
	}
	var id string
	if raw, ok := p["apiVersionSetId"]; !ok || json.Unmarshal(raw, &id) != nil || id == "" {
		return out, nil
	}
	name := id[strings.LastIndexByte(id, '/')+1:]
	set, err := s.cat.Get(c.Request().Context(), ref(c), catalog.KindAPIVersionSet, "", name)
	if err != nil {
		return out, err
	}
	var inline map[string]json.RawMessage
	if err := json.Unmarshal(set.Properties, &inline); err != nil {
		return out, err
	}
	inline["id"], _ = json.Marshal(id)
	inline["name"], _ = json.Marshal(set.Name)
	p["apiVersionSet"], _ = json.Marshal(inline)
	out.Properties, err = json.Marshal(p)
	return out, err
}

// revisionList is the body of apis/{id}/revisions.
type revisionList struct {
	Value []catalog.Revision `json:"value"`
	Count int                `json:"count"`
}

// revisions lists an API's revisions (ApiRevision_ListByService), current one included.
func (s *Server) revisions(c echo.Context) error {
	p, filter, err := page(c)
	if err != nil {
		return err
	}
	revs, err := s.cat.Revisions(c.Request().Context(), ref(c), c.Param("apiId"), filter)
	if err != nil {
		return err
	}
	total := len(revs)
	revs = revs[min(p.Skip, total):]
	if p.Top > 0 && p.Top < len(revs) {
		revs = revs[:p.Top]
	}
	return c.JSON(http.StatusOK, revisionList{Value: revs, Count: total})
}
