package api

import (
	"encoding/json"
	"strings"

	"github.com/labstack/echo/v4"

	"gatehouse.dev/management/internal/catalog"
)

// tagGroupRoutes serves tags, groups and their assignments (reference/apim-surface.md §5).
func (s *Server) tagGroupRoutes(g *echo.Group) {
	p := ServicePrefix
	g.GET(p+"/tags", s.tagList)
	for _, col := range []collection{
		{catalog.KindTag, "/tags", "tagId", topLevel},
		{catalog.KindGroup, "/groups", "groupId", topLevel},
	} {
		item := p + col.path + "/:" + col.param
		g.GET(item, s.get(col))
		g.HEAD(item, s.get(col))
		g.PUT(item, s.put(col))
		g.PATCH(item, s.patch(col))
		g.DELETE(item, s.delete(col))
	}
	g.GET(p+"/groups", s.list(collection{catalog.KindGroup, "/groups", "groupId", topLevel}))
	s.itemRoutes(g, collection{catalog.KindTagDescription, "/apis/:apiId/tagDescriptions", "tagDescriptionId", pathOf("apis", "apiId")}, noPatch)
	tagLinks := []collection{
		{catalog.KindAPITag, "/apis/:apiId/tags", "tagId", pathOf("apis", "apiId")},
		{catalog.KindOperationTag, "/apis/:apiId/operations/:operationId/tags", "tagId", pathOf("apis", "apiId", "operations", "operationId")},
		{catalog.KindProductTag, "/products/:productId/tags", "tagId", pathOf("products", "productId")},
	}
	for _, col := range tagLinks {
		g.GET(p+col.path+"/:"+col.param, s.get(col))
	}
	groupLinks := []collection{
		{catalog.KindGroupUser, "/groups/:groupId/users", "userId", pathOf("groups", "groupId")},
		{catalog.KindProductGroup, "/products/:productId/groups", "groupId", pathOf("products", "productId")},
	}
	for _, col := range append(tagLinks, groupLinks...) {
		item := p + col.path + "/:" + col.param
		g.GET(p+col.path, s.linked(col))
		g.HEAD(item, s.get(col))
		g.PUT(item, s.put(col))
		g.DELETE(item, s.delete(col))
	}
	g.GET(p+"/users/:userId/groups", s.groupsOfUser)
	g.GET(p+"/apisByTags", s.tagResources(catalog.TagResourceQuery{APIs: true}, "includeNotTaggedApis"))
	g.GET(p+"/productsByTags", s.tagResources(catalog.TagResourceQuery{Products: true}, "includeNotTaggedProducts"))
	g.GET(p+"/apis/:apiId/operationsByTags", s.tagResources(catalog.TagResourceQuery{Operations: true}, "includeNotTaggedOperations"))
	g.GET(p+"/tagResources", s.tagResources(catalog.TagResourceQuery{APIs: true, Operations: true, Products: true}, ""))
}

// tagList lists the service's tags, or those assigned in ?scope (apis, products, apis/{apiId}).
func (s *Server) tagList(c echo.Context) error {
	p, filter, err := page(c)
	if err != nil {
		return err
	}
	rs, total, err := s.cat.TagsInScope(c.Request().Context(), ref(c), c.QueryParam("scope"), filter, p)
	if err != nil {
		return err
	}
	return s.writeResources(c, p, rs, total)
}

// linked lists the resources the links of col name: an entity's tags, a group's users, a
// product's groups. $filter takes the fields of the linked resources.
func (s *Server) linked(col collection) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, filter, err := page(c)
		if err != nil {
			return err
		}
		rs, total, err := s.cat.Linked(c.Request().Context(), ref(c), col.kind, col.parent(c), filter, p)
		if err != nil {
			return err
		}
		return s.writeResources(c, p, rs, total)
	}
}

// groupsOfUser lists the groups a user belongs to.
func (s *Server) groupsOfUser(c echo.Context) error {
	p, filter, err := page(c)
	if err != nil {
		return err
	}
	rs, total, err := s.cat.GroupsOfUser(c.Request().Context(), ref(c), c.Param("userId"), filter, p)
	if err != nil {
		return err
	}
	return s.writeResources(c, p, rs, total)
}

// writeResources answers a page of top-level resources.
func (s *Server) writeResources(c echo.Context, p catalog.Page, rs []catalog.Resource, total int) error {
	items := make([]any, 0, len(rs))
	for _, r := range rs {
		items = append(items, s.armOf(c, r))
	}
	return s.writeList(c, p, items, total)
}

// describedTag adds to a tag description the tag's id and display name.
func (s *Server) describedTag(c echo.Context, out armResource) (armResource, error) {
	tag, err := s.cat.Get(c.Request().Context(), ref(c), catalog.KindTag, "", out.Name)
	if err != nil {
		return armResource{}, err
	}
	var p catalog.TagDescriptionProperties
	_ = json.Unmarshal(out.Properties, &p)
	var tp catalog.TagProperties
	_ = json.Unmarshal(tag.Properties, &tp)
	p.TagID, p.DisplayName = catalog.ServiceID(ref(c))+"/"+tag.Path(), tp.DisplayName
	out.Properties, _ = json.Marshal(p)
	return out, nil
}

// tagResourceItem is one item of a tag resources list (TagResourceContract).
type tagResourceItem struct {
	Tag       *tagReference  `json:"tag,omitempty"`
	API       map[string]any `json:"api,omitempty"`
	Operation map[string]any `json:"operation,omitempty"`
	Product   map[string]any `json:"product,omitempty"`
}

// tagReference names a tag in a tag resources item.
type tagReference struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// tagResources lists tag assignments as q selects; untagged, when not "", names the option
// that lists untagged resources too.
func (s *Server) tagResources(q catalog.TagResourceQuery, untagged string) echo.HandlerFunc {
	return func(c echo.Context) error {
		p, filter, err := page(c)
		if err != nil {
			return err
		}
		q := q
		q.API = c.Param("apiId")
		q.IncludeUntagged = untagged != "" && strings.EqualFold(c.QueryParam(untagged), "true")
		if q.API != "" {
			if _, err := s.cat.Get(c.Request().Context(), ref(c), catalog.KindAPI, "", q.API); err != nil {
				return err
			}
		}
		rs, total, err := s.cat.TagResources(c.Request().Context(), ref(c), q, filter, p)
		if err != nil {
			return err
		}
		items := make([]any, 0, len(rs))
		for _, r := range rs {
			items = append(items, tagResourceOf(r))
		}
		return s.writeList(c, p, items, total)
	}
}

// tagResourceOf renders an item as APIM does: each resource's id is its path below the service
// ("/apis/chat") and its name its display name.
func tagResourceOf(r catalog.TagResource) tagResourceItem {
	var out tagResourceItem
	if r.Tag != nil {
		out.Tag = &tagReference{ID: "/" + r.Tag.Path(), Name: displayNameOf(*r.Tag)}
	}
	switch {
	case r.Operation != nil:
		op := referenceOf(*r.Operation)
		for _, k := range []string{"request", "responses", "templateParameters", "policies"} {
			delete(op, k)
		}
		api := referenceOf(*r.API)
		op["apiName"], op["apiRevision"], op["apiVersion"] = api["name"], api["apiRevision"], api["apiVersion"]
		out.Operation = op
	case r.API != nil:
		out.API = referenceOf(*r.API)
	case r.Product != nil:
		out.Product = referenceOf(*r.Product)
	}
	return out
}

// referenceOf is r's properties with its id (its path below the service) and its display name
// as name.
func referenceOf(r catalog.Resource) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(r.Properties, &m)
	m["id"], m["name"] = "/"+r.Path(), displayNameOf(r)
	delete(m, "displayName")
	return m
}

// displayNameOf reads a resource's displayName property.
func displayNameOf(r catalog.Resource) string {
	var p struct {
		DisplayName string `json:"displayName"`
	}
	_ = json.Unmarshal(r.Properties, &p)
	return p.DisplayName
}

// visibleProducts lists the published products the developer portal shows the consumer: those
// visible to one of its groups (docs/tags-groups.md).
func (s *Server) visibleProducts(c echo.Context) error {
	p, filter, err := page(c)
	if err != nil {
		return err
	}
	rs, total, err := s.cat.ProductsVisibleTo(c.Request().Context(), ref(c), c.Param("userId"), filter, p)
	if err != nil {
		return err
	}
	return s.writeResources(c, p, rs, total)
}
