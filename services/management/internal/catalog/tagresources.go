package catalog

import (
	"context"
	"strings"

	"gatehouse.dev/management/internal/odata"
)

// TagResource is one item of apisByTags, productsByTags, operationsByTags and tagResources: a
// tag and one resource it is assigned to. Tag is nil for an untagged resource listed on request.
// An operation's item carries its API in API too.
type TagResource struct {
	Tag       *Resource
	API       *Resource
	Operation *Resource
	Product   *Resource
}

// TagResourceQuery selects the items of a tag resources list.
type TagResourceQuery struct {
	// APIs, Operations and Products select the kinds of tagged resources listed.
	APIs, Operations, Products bool
	// API, when set, restricts operations to those of the API of this name.
	API string
	// IncludeUntagged lists the selected resources that have no tag as well, with a nil Tag.
	IncludeUntagged bool
}

// tagResourceRoots are the $filter prefixes of a tag resources list and the kinds they read.
var tagResourceRoots = map[string]*Kind{"tag": KindTag, "api": KindAPI, "operation": KindOperation, "product": KindProduct}

// TagResources lists tag assignments as q selects, filtered by filter, whose fields are paths
// below tag/, api/, operation/ and product/ ("tag/id eq 'x'", "contains(api/name,'chat')"):
// id is the resource's name and name its display name, as the items show them.
func (c *Catalog) TagResources(ctx context.Context, ref ServiceRef, q TagResourceQuery, filter string, page Page) ([]TagResource, int, error) {
	filters, err := splitTagFilter(filter)
	if err != nil {
		return nil, 0, err
	}
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	t := tagResourceLister{rd: readerFor(c.store, svc.ID), filters: filters, q: q}
	if t.tags, err = t.index(ctx, KindTag); err != nil {
		return nil, 0, err
	}
	var items []TagResource
	for _, step := range []struct {
		on   bool
		list func(ctx context.Context) ([]TagResource, error)
	}{{q.APIs, t.apis}, {q.Operations, t.operations}, {q.Products, t.products}} {
		if !step.on {
			continue
		}
		more, err := step.list(ctx)
		if err != nil {
			return nil, 0, err
		}
		items = append(items, more...)
	}
	return pageOf(items, page), len(items), nil
}

// pageOf returns the window of items page selects.
func pageOf(items []TagResource, page Page) []TagResource {
	top := page.Top
	if top <= 0 {
		top = 100
	}
	start := min(max(page.Skip, 0), len(items))
	return items[start:min(start+top, len(items))]
}

// tagResourceLister reads the items of one TagResources call.
type tagResourceLister struct {
	rd      Reader
	filters map[string]string
	q       TagResourceQuery
	// tags are the tags the filter selects, by lower-case name.
	tags map[string]Resource
}

// index lists the resources of kind the filter selects, by lower-case name.
func (t *tagResourceLister) index(ctx context.Context, kind *Kind) (map[string]Resource, error) {
	rs, _, err := t.rd.List(ctx, t.query(kind))
	if err != nil {
		return nil, err
	}
	out := make(map[string]Resource, len(rs))
	for _, r := range rs {
		out[strings.ToLower(r.Name)] = r
	}
	return out, nil
}

// tagsOf groups the links of kind link by their lower-case parent path, keeping those naming a
// selected tag.
func (t *tagResourceLister) tagsOf(ctx context.Context, link *Kind) (map[string][]Resource, error) {
	links, _, err := t.rd.List(ctx, Query{Kind: link, AnyParent: true, All: true, NoSecrets: true})
	if err != nil {
		return nil, err
	}
	out := map[string][]Resource{}
	for _, l := range links {
		if tag, ok := t.tags[strings.ToLower(l.Name)]; ok {
			out[strings.ToLower(l.Parent)] = append(out[strings.ToLower(l.Parent)], tag)
		}
	}
	return out, nil
}

// itemsOf makes the items of one resource: one per tag, or an untagged one on request when no
// tag filter applies.
func (t *tagResourceLister) itemsOf(tags []Resource, item TagResource) []TagResource {
	if len(tags) == 0 {
		if t.q.IncludeUntagged && t.filters["tag"] == "" {
			return []TagResource{item}
		}
		return nil
	}
	out := make([]TagResource, 0, len(tags))
	for i := range tags {
		it := item
		it.Tag = &tags[i]
		out = append(out, it)
	}
	return out
}

// apis lists the items of APIs, unless the filter selects products or operations only.
func (t *tagResourceLister) apis(ctx context.Context) ([]TagResource, error) {
	if t.filters["product"] != "" || t.filters["operation"] != "" {
		return nil, nil
	}
	apis, _, err := t.rd.List(ctx, t.query(KindAPI))
	if err != nil {
		return nil, err
	}
	tags, err := t.tagsOf(ctx, KindAPITag)
	if err != nil {
		return nil, err
	}
	var out []TagResource
	for i := range apis {
		out = append(out, t.itemsOf(tags[strings.ToLower(apis[i].Path())], TagResource{API: &apis[i]})...)
	}
	return out, nil
}

// operations lists the items of operations (of q.API, when set) whose API the filter selects.
func (t *tagResourceLister) operations(ctx context.Context) ([]TagResource, error) {
	if t.filters["product"] != "" {
		return nil, nil
	}
	apis, err := t.index(ctx, KindAPI)
	if err != nil {
		return nil, err
	}
	q := t.query(KindOperation)
	if t.q.API != "" {
		q.AnyParent, q.Parent = false, KindAPI.Segment+"/"+t.q.API
	}
	ops, _, err := t.rd.List(ctx, q)
	if err != nil {
		return nil, err
	}
	tags, err := t.tagsOf(ctx, KindOperationTag)
	if err != nil {
		return nil, err
	}
	var out []TagResource
	for i := range ops {
		api, ok := apis[strings.ToLower(strings.TrimPrefix(ops[i].Parent, KindAPI.Segment+"/"))]
		if !ok {
			continue
		}
		out = append(out, t.itemsOf(tags[strings.ToLower(ops[i].Path())], TagResource{API: &api, Operation: &ops[i]})...)
	}
	return out, nil
}

// products lists the items of products, unless the filter selects APIs or operations only.
func (t *tagResourceLister) products(ctx context.Context) ([]TagResource, error) {
	if t.filters["api"] != "" || t.filters["operation"] != "" {
		return nil, nil
	}
	products, _, err := t.rd.List(ctx, t.query(KindProduct))
	if err != nil {
		return nil, err
	}
	tags, err := t.tagsOf(ctx, KindProductTag)
	if err != nil {
		return nil, err
	}
	var out []TagResource
	for i := range products {
		out = append(out, t.itemsOf(tags[strings.ToLower(products[i].Path())], TagResource{Product: &products[i]})...)
	}
	return out, nil
}

// query selects every resource of kind, with its root's filter.
func (t *tagResourceLister) query(kind *Kind) Query {
	q := Query{Kind: kind, AnyParent: kind == KindOperation, All: true, NoSecrets: true}
	for root, k := range tagResourceRoots {
		if k == kind {
			q.Filter = t.filters[root]
		}
	}
	if kind == KindAPI && !strings.Contains(strings.ToLower(q.Filter), "iscurrent") {
		q.PropEquals = map[string]string{"isCurrent": "true"}
	}
	return q
}

// splitTagFilter splits a tag resources $filter, a conjunction of terms each on one root
// (tag/, api/, operation/, product/), into a filter per root on that kind's own fields.
func splitTagFilter(filter string) (map[string]string, error) {
	expr, err := odata.Parse(filter)
	if err != nil {
		return nil, &FilterError{Message: err.Error()}
	}
	terms := []odata.Expr{}
	switch e := expr.(type) {
	case nil:
	case *odata.And:
		terms = e.Terms
	default:
		terms = []odata.Expr{e}
	}
	out := map[string]string{}
	for _, term := range terms {
		root := ""
		if err := eachIdent(term, func(id *odata.Ident, v *odata.Value) error {
			r, field, ok := strings.Cut(id.Name, "/")
			if _, known := tagResourceRoots[r]; !ok || !known || (root != "" && r != root) {
				return &FilterError{Message: "each term of a tag resources $filter, the terms joined by and, names fields below one of tag/, api/, operation/ or product/ (found '" + id.Name + "')"}
			}
			root = r
			id.Name = tagFilterField(field, v)
			return nil
		}); err != nil {
			return nil, err
		}
		if out[root] != "" {
			out[root] += " and "
		}
		out[root] += "(" + term.String() + ")"
	}
	return out, nil
}

// tagFilterField maps a field of a tag resources item to the field of its resource: id is its
// name (a full id compared with eq is reduced to its last segment), name its display name.
func tagFilterField(field string, v *odata.Value) string {
	switch field {
	case "id":
		if v != nil && v.Kind == odata.KindString {
			v.Text = v.Text[strings.LastIndexByte(v.Text, '/')+1:]
		}
		return "name"
	case "name":
		return "displayName"
	}
	return field
}

// eachIdent calls fn with every field of e and the literal it is compared with.
func eachIdent(e odata.Expr, fn func(*odata.Ident, *odata.Value) error) error {
	switch e := e.(type) {
	case *odata.And:
		return eachTerm(e.Terms, fn)
	case *odata.Or:
		return eachTerm(e.Terms, fn)
	case *odata.Not:
		return eachIdent(e.X, fn)
	case *odata.Compare:
		return fn(&e.Field, &e.Value)
	case *odata.Call:
		return fn(&e.Field, nil)
	}
	return nil
}

func eachTerm(terms []odata.Expr, fn func(*odata.Ident, *odata.Value) error) error {
	for _, t := range terms {
		if err := eachIdent(t, fn); err != nil {
			return err
		}
	}
	return nil
}
