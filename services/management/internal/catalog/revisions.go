package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Revisions (reference/apim-surface.md §4, docs/versions.md). The current revision of API
// "chat" is stored as the API "chat"; every other revision n as the API "chat;rev=n" with its
// own operations and policies below "apis/chat;rev=n". Products, gateways and subscriptions
// name the API ("chat") and so reach every revision. Making revision n current swaps the two
// in one transaction, so that one configuration revision switches every node.

// revSuffix separates an API's name from a revision number.
const revSuffix = ";rev="

// SplitRevision splits "chat;rev=2" into ("chat", "2", true); a name without a revision comes
// back whole with ok false. A ';' in any other form is refused.
func SplitRevision(name string) (base, rev string, ok bool, err error) {
	i := strings.IndexByte(name, ';')
	if i < 0 {
		return name, "", false, nil
	}
	if !hasFoldPrefix(name[i:], revSuffix) || i == 0 {
		return "", "", false, invalid("name", "'%s' is not a valid Api name: ';' may only introduce a revision, as in 'chat;rev=2'", name)
	}
	base, rev = name[:i], name[i+len(revSuffix):]
	if n, err := strconv.Atoi(rev); err != nil || n < 1 || n > 9999 || strconv.Itoa(n) != rev {
		return "", "", false, invalid("name", "'%s' is not a valid Api revision: the revision must be a number from 1 to 9999", name)
	}
	return base, rev, true, nil
}

// hasFoldPrefix reports whether s begins with prefix, ignoring case.
func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// revisionName is the stored name of revision rev of the API base.
func revisionName(base, rev string) string { return base + revSuffix + rev }

// storedAPIName resolves an API name as a request gives it to the name it is stored under:
// "chat;rev=n" is "chat" when n is the current revision (or when "chat" does not exist and n
// is 1, so that a PUT of "chat;rev=1" creates it, as Terraform does).
func storedAPIName(ctx context.Context, r Reader, name string) (string, error) {
	base, rev, ok, err := SplitRevision(name)
	if err != nil || !ok {
		return name, err
	}
	cur, err := r.Get(ctx, KindAPI, "", base)
	switch {
	case errors.Is(err, ErrNotFound) && rev == "1":
		return base, nil
	case err != nil:
		return "", err
	}
	if apiProps(cur).APIRevision == rev {
		return cur.Name, nil
	}
	return revisionName(cur.Name, rev), nil
}

// storedPath resolves the API named in a request's resource path (the parent of a child of an
// API, or an API's own name) to its stored name. It returns the stored parent and name.
func storedPath(ctx context.Context, r Reader, kind *Kind, parent, name string) (string, string, error) {
	if kind == KindAPI {
		stored, err := storedAPIName(ctx, r, name)
		return parent, stored, err
	}
	seg, rest, ok := strings.Cut(parent, "/")
	if !ok || seg != KindAPI.Segment {
		return parent, name, nil
	}
	api, tail, _ := strings.Cut(rest, "/")
	stored, err := storedAPIName(ctx, r, api)
	if err != nil {
		return "", "", err
	}
	if tail != "" {
		stored += "/" + tail
	}
	return seg + "/" + stored, name, nil
}

// asRequested names r as the request did (a revision resolved to the current API is answered
// under the name that was asked for).
func asRequested(r Resource, parent, name string) Resource {
	r.Parent = parent
	if r.Kind == KindAPI || r.Kind == KindAPIRelease {
		r.Name = name
	}
	return r
}

// apiProps decodes an API's stored properties; a stored API always decodes.
func apiProps(r Resource) APIProperties {
	var p APIProperties
	_ = json.Unmarshal(r.Properties, &p)
	return p
}

// withRevisionOf returns p, whose API-wide properties are kept, with the revision's own
// properties taken from rev: serviceUrl, apiRevision, apiRevisionDescription and isCurrent.
func (p APIProperties) withRevisionOf(rev APIProperties) APIProperties {
	p.ServiceURL, p.APIRevision, p.APIRevisionDescription, p.IsCurrent = rev.ServiceURL, rev.APIRevision, rev.APIRevisionDescription, rev.IsCurrent
	return p
}

// apiWideChange names the first API-wide property that differs between a and b, or "".
// These are the properties a non-current revision cannot change (reference/apim-surface.md §4).
func apiWideChange(a, b APIProperties) string {
	x, _ := json.Marshal(a.withRevisionOf(APIProperties{}))
	y, _ := json.Marshal(b.withRevisionOf(APIProperties{}))
	if string(x) == string(y) {
		return ""
	}
	var mx, my map[string]json.RawMessage
	_ = json.Unmarshal(x, &mx)
	_ = json.Unmarshal(y, &my)
	for k, v := range mx {
		if string(my[k]) != string(v) {
			return k
		}
	}
	for k := range my {
		if _, ok := mx[k]; !ok {
			return k
		}
	}
	return "properties"
}

// prepareRevision validates a write of the non-current revision stored as r.Name: its API-wide
// properties must be the current revision's. A new one is copied from sourceApiId, which it
// returns.
func (w *write) prepareRevision(ctx context.Context, r *Resource, in json.RawMessage, old *Resource) (*Resource, error) {
	base, rev, _, _ := SplitRevision(r.Name)
	cur, err := w.tx.Get(ctx, KindAPI, "", base)
	if err != nil {
		return nil, err
	}
	var ask struct {
		SourceAPIID            string  `json:"sourceApiId"`
		APIRevision            string  `json:"apiRevision"`
		APIRevisionDescription *string `json:"apiRevisionDescription"`
	}
	if err := decodeProps(in, &apiShape{}); err != nil {
		return nil, err
	}
	if err := decodePart(in, &ask); err != nil {
		return nil, err
	}
	if ask.APIRevision != "" && ask.APIRevision != rev {
		return nil, invalid("properties.apiRevision", "the revision is %s, as its name says", rev)
	}
	from, src := old, (*Resource)(nil)
	if old == nil {
		if ask.SourceAPIID == "" {
			return nil, invalid("properties.sourceApiId", "a new revision needs sourceApiId: the id of the API revision to copy")
		}
		s, err := w.sourceAPI(ctx, ask.SourceAPIID)
		if err != nil {
			return nil, err
		}
		if sb, _, _, _ := SplitRevision(s.Name); !strings.EqualFold(sb, cur.Name) {
			return nil, invalid("properties.sourceApiId", "sourceApiId must name a revision of the API '%s'", cur.Name)
		}
		from, src = &s, &s
	}
	merged, err := mergePatch(from.Properties, in)
	if err != nil {
		return nil, err
	}
	var p APIProperties
	if err := decodePart(merged, &p); err != nil {
		return nil, err
	}
	if err := p.normalize(); err != nil {
		return nil, err
	}
	if err := w.c.checkEgress(p.ServiceURL); err != nil {
		return nil, err
	}
	if f := apiWideChange(p, apiProps(cur)); f != "" {
		return nil, invalid("properties."+f, "Can't change property for non-current revision")
	}
	notCurrent := false
	p.APIRevision, p.IsCurrent = rev, &notCurrent
	if old == nil && ask.APIRevisionDescription == nil {
		p.APIRevisionDescription = "" // the source's description is not the new revision's
	}
	r.Properties = mustJSON(p)
	return src, nil
}

// sourceAPI loads the API (or revision) a sourceApiId names: this service's ARM id of it, or
// the short form "/apis/{id}".
func (w *write) sourceAPI(ctx context.Context, id string) (Resource, error) {
	rest := id
	svc := ServiceID(w.svc.Ref)
	if len(id) > len(svc) && strings.EqualFold(id[:len(svc)], svc) {
		rest = id[len(svc):]
	}
	seg, name, ok := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	if !ok || !strings.EqualFold(seg, KindAPI.Segment) || strings.Contains(name, "/") {
		return Resource{}, invalid("properties.sourceApiId", "'%s' is not the id of an API of this service", id)
	}
	stored, err := storedAPIName(ctx, w.tx, name)
	if err != nil {
		return Resource{}, invalid("properties.sourceApiId", "'%s' is not the id of an API of this service", id)
	}
	r, err := w.tx.Get(ctx, KindAPI, "", stored)
	if err != nil {
		return Resource{}, invalid("properties.sourceApiId", "the API '%s' does not exist", name)
	}
	return r, nil
}

// apiTree is an API's operations and policies, read to be copied or moved.
type apiTree []Resource

// treeOf reads the operations and policies below the API stored as name.
func (w *write) treeOf(ctx context.Context, name string) (apiTree, error) {
	apiPath := "apis/" + name
	var out apiTree
	for _, q := range []Query{{Kind: KindPolicy, Parent: apiPath}, {Kind: KindOperation, Parent: apiPath}} {
		q.All = true
		rs, _, err := w.tx.List(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		if q.Kind != KindOperation {
			continue
		}
		for _, op := range rs {
			ps, _, err := w.tx.List(ctx, Query{Kind: KindPolicy, Parent: op.Path(), All: true})
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		}
	}
	return out, nil
}

// copyTo writes a copy of t below the API stored as name ("apis/{from}/…" → "apis/{name}/…").
func (t apiTree) copyTo(ctx context.Context, w *write, from, name string) error {
	oldPrefix, newPrefix := "apis/"+from, "apis/"+name
	for _, r := range t {
		c := Resource{ServiceID: w.svc.ID, Kind: r.Kind, Parent: newPrefix + r.Parent[len(oldPrefix):], Name: r.Name,
			Properties: r.Properties, Secrets: r.Secrets}
		if err := w.tx.Put(ctx, &c); err != nil {
			return fmt.Errorf("copy %s to %s: %w", r.Path(), c.Path(), err)
		}
	}
	return nil
}

// deleteAll deletes t, deepest first.
func (t apiTree) deleteAll(ctx context.Context, w *write) error {
	for i := len(t) - 1; i >= 0; i-- {
		if err := w.tx.Delete(ctx, t[i]); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the operations and policies of src below the new API stored as name.
func (w *write) copyTree(ctx context.Context, src Resource, name string) error {
	t, err := w.treeOf(ctx, src.Name)
	if err != nil {
		return err
	}
	return t.copyTo(ctx, w, src.Name, name)
}

// revisionsOf lists the non-current revisions of the API stored as base.
func (w *write) revisionsOf(ctx context.Context, base Resource) ([]Resource, error) {
	return revisionsOf(ctx, w.tx, base)
}

// revisionsOf lists the stored non-current revisions of base: the APIs at its path whose names
// are base's with a revision.
func revisionsOf(ctx context.Context, r Reader, base Resource) ([]Resource, error) {
	rs, _, err := r.List(ctx, Query{Kind: KindAPI, PropEquals: map[string]string{"path": apiProps(base).Path}, All: true})
	if err != nil {
		return nil, err
	}
	var out []Resource
	for _, x := range rs {
		if b, _, ok, _ := SplitRevision(x.Name); ok && strings.EqualFold(b, base.Name) {
			out = append(out, x)
		}
	}
	return out, nil
}

// propagate writes the API-wide properties p of the current revision, stored before as old, to
// the API's other revisions.
func (w *write) propagate(ctx context.Context, old Resource, p APIProperties) error {
	revs, err := w.revisionsOf(ctx, old)
	if err != nil {
		return err
	}
	for _, r := range revs {
		rp := apiProps(r)
		if apiWideChange(p, rp) == "" {
			continue
		}
		r.Properties = mustJSON(p.withRevisionOf(rp))
		if err := w.tx.Put(ctx, &r); err != nil {
			return err
		}
	}
	return nil
}

// makeCurrent makes the revision stored as revName current: the current API becomes the
// revision "{base};rev={its revision}" and revName's properties, operations and policies
// become the API's, in the transaction of w. It returns the new current API.
func (w *write) makeCurrent(ctx context.Context, revName string) (Resource, error) {
	base, _, _, _ := SplitRevision(revName)
	cur, err := w.tx.Get(ctx, KindAPI, "", base)
	if err != nil {
		return Resource{}, err
	}
	next, err := w.tx.Get(ctx, KindAPI, "", revName)
	if err != nil {
		return Resource{}, err
	}
	curTree, err := w.treeOf(ctx, cur.Name)
	if err != nil {
		return Resource{}, err
	}
	nextTree, err := w.treeOf(ctx, next.Name)
	if err != nil {
		return Resource{}, err
	}
	if err := curTree.deleteAll(ctx, w); err != nil {
		return Resource{}, err
	}
	if err := nextTree.deleteAll(ctx, w); err != nil {
		return Resource{}, err
	}
	if err := w.tx.Delete(ctx, next); err != nil {
		return Resource{}, err
	}
	cp, np := apiProps(cur), apiProps(next)
	f, t := false, true
	old := Resource{ServiceID: w.svc.ID, Kind: KindAPI, Name: revisionName(cur.Name, cp.APIRevision)}
	cp.IsCurrent = &f
	old.Properties = mustJSON(cp)
	if err := w.tx.Put(ctx, &old); err != nil {
		return Resource{}, err
	}
	np.IsCurrent = &t
	cur.Properties = mustJSON(cp.withRevisionOf(np))
	if err := w.tx.Put(ctx, &cur); err != nil {
		return Resource{}, err
	}
	if err := curTree.copyTo(ctx, w, cur.Name, old.Name); err != nil {
		return Resource{}, err
	}
	return cur, nextTree.copyTo(ctx, w, next.Name, cur.Name)
}

// Revision is one entry of an API's revisions list (ApiRevisionContract).
type Revision struct {
	APIID           string    `json:"apiId"`
	APIRevision     string    `json:"apiRevision"`
	CreatedDateTime time.Time `json:"createdDateTime"`
	UpdatedDateTime time.Time `json:"updatedDateTime"`
	Description     string    `json:"description,omitempty"`
	PrivateURL      string    `json:"privateUrl,omitempty"`
	IsOnline        bool      `json:"isOnline"`
	IsCurrent       bool      `json:"isCurrent"`
}

// revisionFilter is the one $filter a revisions list takes: apiRevision eq 'n'.
var revisionFilter = regexp.MustCompile(`^\s*(?i:apiRevision)\s+eq\s+'([0-9]+)'\s*$`)

// Revisions lists every revision of the API named name, current one included, by revision
// number, or the one filter selects ("apiRevision eq 'n'"). Each apiId is
// "/apis/{name};rev={n}", as APIM answers.
func (c *Catalog) Revisions(ctx context.Context, ref ServiceRef, name, filter string) ([]Revision, error) {
	var only string
	if filter != "" {
		m := revisionFilter.FindStringSubmatch(filter)
		if m == nil {
			return nil, &FilterError{Message: "a revisions list filters on apiRevision eq 'n' only"}
		}
		only = m[1]
	}
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, err
	}
	r := readerFor(c.store, svc.ID)
	if _, _, ok, err := SplitRevision(name); err != nil || ok {
		return nil, notFound(KindAPI.What)
	}
	cur, err := r.Get(ctx, KindAPI, "", name)
	if err != nil {
		return nil, err
	}
	revs, err := revisionsOf(ctx, r, cur)
	if err != nil {
		return nil, err
	}
	out := make([]Revision, 0, len(revs)+1)
	for _, x := range append([]Resource{cur}, revs...) {
		p := apiProps(x)
		if only != "" && p.APIRevision != only {
			continue
		}
		out = append(out, Revision{APIID: "/apis/" + revisionName(cur.Name, p.APIRevision), APIRevision: p.APIRevision,
			CreatedDateTime: x.Created, UpdatedDateTime: x.Updated, Description: p.APIRevisionDescription,
			PrivateURL: "/" + p.Path + revSuffix + p.APIRevision, IsOnline: p.IsOnline, IsCurrent: x.Name == cur.Name})
	}
	sortRevisions(out)
	return out, nil
}

// sortRevisions orders revisions by number.
func sortRevisions(rs []Revision) {
	slices.SortFunc(rs, func(x, y Revision) int {
		a, _ := strconv.Atoi(x.APIRevision)
		b, _ := strconv.Atoi(y.APIRevision)
		return cmp.Compare(a, b)
	})
}

// ReleaseProperties are the stored ARM properties of an API release.
type ReleaseProperties struct {
	APIID           string    `json:"apiId"`
	Notes           string    `json:"notes,omitempty"`
	CreatedDateTime time.Time `json:"createdDateTime"`
	UpdatedDateTime time.Time `json:"updatedDateTime"`
}

var releaseBehaviour = behaviour{
	parentKind: parentOf(KindAPI),
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p ReleaseProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if len(p.Notes) > 1000 {
			return invalid("properties.notes", "notes must be at most 1000 characters")
		}
		_, apiName := splitParent(r.Parent)
		target, err := w.releaseTarget(ctx, apiName, p.APIID)
		if err != nil {
			return err
		}
		if base, _, isRev, _ := SplitRevision(target.Name); isRev && strings.EqualFold(base, apiName) {
			if _, err := w.makeCurrent(ctx, target.Name); err != nil {
				return err
			}
		}
		p.UpdatedDateTime = w.now
		p.CreatedDateTime = w.now
		if old != nil {
			var o ReleaseProperties
			_ = json.Unmarshal(old.Properties, &o)
			p.CreatedDateTime = o.CreatedDateTime
		}
		r.Properties = mustJSON(p)
		return nil
	},
}

// releaseTarget resolves the apiId of a release of the API apiName: the API itself or one of
// its revisions, as a full ARM id, "/apis/{id}" or "{id};rev={n}".
func (w *write) releaseTarget(ctx context.Context, apiName, apiID string) (Resource, error) {
	if apiID == "" {
		return Resource{}, invalid("properties.apiId", "apiId is required: the id of the API revision to release")
	}
	id := apiID
	if !strings.Contains(id, "/") {
		id = "/apis/" + id
	}
	target, err := w.sourceAPI(ctx, id)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Target = "properties.apiId"
		}
		return Resource{}, err
	}
	if base, _, _, _ := SplitRevision(target.Name); !strings.EqualFold(base, apiName) {
		return Resource{}, invalid("properties.apiId", "apiId must name a revision of the API '%s'", apiName)
	}
	return target, nil
}
