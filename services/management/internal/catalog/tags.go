package catalog

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"

	"gatehouse.dev/pkg/configwire"
)

// The tag kinds (reference/apim-surface.md §5): tags, their assignment to APIs, operations and
// products, and the description an API gives a tag. Tags are the developer portal's metadata:
// no gateway reads them.
var (
	KindTag = &Kind{Name: configwire.KindTag, Segment: "tags", Type: "Microsoft.ApiManagement/service/tags", What: "Tag",
		MaxLen: 80, Pattern: idPattern, Filter: stringFields("displayName")}
	KindAPITag = &Kind{Name: configwire.KindAPITag, Segment: "tags", Type: "Microsoft.ApiManagement/service/apis/tags", What: "Tag",
		MaxLen: 80, Pattern: idPattern, Link: true, Target: KindTag, Filter: stringFields()}
	KindOperationTag = &Kind{Name: configwire.KindOperationTag, Segment: "tags", Type: "Microsoft.ApiManagement/service/apis/operations/tags", What: "Tag",
		MaxLen: 80, Pattern: idPattern, Link: true, Target: KindTag, Filter: stringFields()}
	KindProductTag = &Kind{Name: configwire.KindProductTag, Segment: "tags", Type: "Microsoft.ApiManagement/service/products/tags", What: "Tag",
		MaxLen: 80, Pattern: idPattern, Link: true, Target: KindTag, Filter: stringFields()}
	KindTagDescription = &Kind{Name: configwire.KindTagDescription, Segment: "tagDescriptions", Type: "Microsoft.ApiManagement/service/apis/tagDescriptions",
		What: "TagDescription", MaxLen: 80, Pattern: idPattern, Filter: stringFields("description", "externalDocsUrl", "externalDocsDescription")}
)

// TagProperties are the stored ARM properties of a tag.
type TagProperties struct {
	DisplayName string `json:"displayName"`
}

// TagDescriptionProperties are the stored ARM properties of an API's description of a tag. The
// answer adds the tag's id and display name, read from the tag (TagID, DisplayName).
type TagDescriptionProperties struct {
	Description             string `json:"description,omitempty"`
	ExternalDocsURL         string `json:"externalDocsUrl,omitempty"`
	ExternalDocsDescription string `json:"externalDocsDescription,omitempty"`
	TagID                   string `json:"tagId,omitempty"`
	DisplayName             string `json:"displayName,omitempty"`
}

var tagBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p TagProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if n := len(strings.TrimSpace(p.DisplayName)); n == 0 || len(p.DisplayName) > 160 {
			return invalid("properties.displayName", "displayName is required and must be at most 160 characters")
		}
		r.Properties = mustJSON(p)
		return nil
	},
}

var (
	apiTagBehaviour       = linkTo(parentOf(KindAPI), KindTag)
	operationTagBehaviour = linkTo(operationParent, KindTag)
	productTagBehaviour   = linkTo(parentOf(KindProduct), KindTag)
)

var tagDescriptionBehaviour = behaviour{
	parentKind: parentOf(KindAPI),
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p TagDescriptionProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		tag, err := w.tx.Get(ctx, KindTag, "", r.Name)
		if err != nil {
			return err
		}
		r.Name = tag.Name
		if len(p.ExternalDocsURL) > 2000 {
			return invalid("properties.externalDocsUrl", "externalDocsUrl must be at most 2000 characters")
		}
		if u, err := url.Parse(p.ExternalDocsURL); p.ExternalDocsURL != "" && (err != nil || !u.IsAbs()) {
			return invalid("properties.externalDocsUrl", "externalDocsUrl must be an absolute URL")
		}
		p.TagID, p.DisplayName = "", "" // the tag's, read when answering
		r.Properties = mustJSON(p)
		return nil
	},
}

// operationParent accepts parents of the form "apis/{api}/operations/{operation}".
func operationParent(parent string) (*Kind, string, error) {
	parts := strings.Split(parent, "/")
	if len(parts) != 4 || parts[0] != KindAPI.Segment || parts[2] != KindOperation.Segment || parts[1] == "" || parts[3] == "" {
		return nil, "", notFound(KindOperation.What)
	}
	return KindOperation, parts[3], nil
}

// assignments lists, by kind, what a deleted resource of that kind takes with it: its own
// tags, tag descriptions and group links (below its path), and the assignments that name it.
var assignments = map[*Kind]struct{ below, naming []*Kind }{
	KindAPI:       {below: []*Kind{KindAPITag, KindTagDescription}},
	KindOperation: {below: []*Kind{KindOperationTag}},
	KindProduct:   {below: []*Kind{KindProductTag, KindProductGroup}},
	KindTag:       {naming: []*Kind{KindAPITag, KindOperationTag, KindProductTag, KindTagDescription}},
	KindGroup:     {below: []*Kind{KindGroupUser}, naming: []*Kind{KindProductGroup}},
	KindUser:      {naming: []*Kind{KindGroupUser}},
}

// deleteAssignments deletes the tag and group assignments r takes with it (assignments).
func (w *write) deleteAssignments(ctx context.Context, r Resource, opts Options) error {
	a := assignments[r.Kind]
	for _, k := range a.below {
		if err := w.deleteAll(ctx, Query{Kind: k, Parent: r.Path()}, opts); err != nil {
			return err
		}
	}
	for _, k := range a.naming {
		if err := w.deleteAll(ctx, Query{Kind: k, AnyParent: true, Name: r.Name}, opts); err != nil {
			return err
		}
	}
	return nil
}

// Linked lists the resources of link's target kind that the links of kind link below parent
// name (an API's tags, a group's users, a product's groups), filtered on the target's fields.
func (c *Catalog) Linked(ctx context.Context, ref ServiceRef, link *Kind, parent, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	rd := readerFor(c.store, svc.ID)
	sp, _, err := storedPath(ctx, rd, link, parent, "")
	if err != nil {
		return nil, 0, err
	}
	if err := c.checkParent(ctx, rd, link, sp); err != nil {
		return nil, 0, err
	}
	links, _, err := rd.List(ctx, Query{Kind: link, Parent: sp, All: true, NoSecrets: true})
	if err != nil {
		return nil, 0, err
	}
	return c.store.List(ctx, svc.ID, Query{Kind: link.Target, Names: linkNames(links), Filter: filter, Page: page})
}

// linkNames returns the names of links, never nil: an empty list selects nothing.
func linkNames(links []Resource) []string {
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Name)
	}
	return names
}

// TagsInScope lists the tags assigned in scope: "apis" (to any API), "products" (to any
// product) or "apis/{apiId}" (to that API); "" lists every tag.
func (c *Catalog) TagsInScope(ctx context.Context, ref ServiceRef, scope, filter string, page Page) ([]Resource, int, error) {
	if scope == "" {
		return c.List(ctx, ref, KindTag, "", filter, page)
	}
	seg, api, _ := strings.Cut(strings.Trim(scope, "/"), "/")
	switch {
	case strings.EqualFold(seg, KindProduct.Segment) && api == "":
		return c.tagsAssigned(ctx, ref, Query{Kind: KindProductTag, AnyParent: true}, filter, page)
	case strings.EqualFold(seg, KindAPI.Segment) && api == "":
		return c.tagsAssigned(ctx, ref, Query{Kind: KindAPITag, AnyParent: true}, filter, page)
	case strings.EqualFold(seg, KindAPI.Segment) && !strings.Contains(api, "/"):
		return c.Linked(ctx, ref, KindAPITag, KindAPI.Segment+"/"+api, filter, page)
	}
	return nil, 0, invalid("scope", "scope must be apis, products or apis/{apiId}")
}

// tagsAssigned lists the tags named by the assignments q selects.
func (c *Catalog) tagsAssigned(ctx context.Context, ref ServiceRef, q Query, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	q.All, q.NoSecrets = true, true
	links, _, err := c.store.List(ctx, svc.ID, q)
	if err != nil {
		return nil, 0, err
	}
	return c.store.List(ctx, svc.ID, Query{Kind: KindTag, Names: linkNames(links), Filter: filter, Page: page})
}
