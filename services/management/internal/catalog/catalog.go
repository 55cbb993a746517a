// Package catalog is management's domain: services and their APIs, operations, policies,
// products, users, subscriptions, gateways and named values, with APIM's validation rules. It
// knows nothing of HTTP, SQL or NATS: handlers call it, and it persists through Store.
package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"time"

	"gatehouse.dev/pkg/egress"
)

// Catalog applies APIM's rules to reads and writes of a service's resources. It is safe for
// concurrent use.
type Catalog struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	egress *egress.Policy
	// own are management's listeners, which what management fetches itself (import links)
	// never reaches (RefuseOwn).
	own []net.Addr
}

// Option adjusts a Catalog.
type Option func(*Catalog)

// WithEgress refuses API serviceUrls the operator's egress policy denies (pkg/egress): a
// write naming one fails with a ValidationError that names the rule. nil allows every URL.
func WithEgress(p *egress.Policy) Option { return func(c *Catalog) { c.egress = p } }

// RefuseOwn makes the links management fetches itself (API import) refuse management's own
// listeners, whatever the egress policy allows, as a gateway node's dialer refuses the node's.
// It is called once, before the catalog serves.
func (c *Catalog) RefuseOwn(addrs ...net.Addr) { c.own = append(c.own, addrs...) }

// New returns a Catalog persisting through store.
func New(store Store, log *slog.Logger, opts ...Option) *Catalog {
	c := &Catalog{store: store, log: log, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Options carries the query parameters of a write that change its effect.
type Options struct {
	// IfMatch is the If-Match header: "" for none, "*" for any.
	IfMatch string
	// IfNoneMatch is the If-None-Match header of a PUT: "" for none, "*" to create only
	// (an existing resource fails with ErrPreconditionFailed), ETags to write only over
	// another version (RFC 9110 §13.1.2).
	IfNoneMatch string
	// DeleteSubscriptions deletes a product's or user's subscriptions with it.
	DeleteSubscriptions bool
	// APIType is the type of the API a child resource belongs to, filled in by the catalog.
}

// behaviour is what makes a kind more than a JSON document.
type behaviour struct {
	// parentKind is the kind of the parent for kinds that have one; the parent must exist.
	parentKind func(parent string) (*Kind, string, error)
	// prepare validates in (the merged properties for PATCH) and fills r; old is nil on create.
	prepare func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error
	// beforeDelete removes or refuses what depends on r.
	beforeDelete func(ctx context.Context, w *write, r Resource, opts Options) error
	// immutable refuses user writes (onHandshake).
	writable func(ctx context.Context, w *write, parent, name string) error
	// implicit, for kinds whose resources always exist (the portal settings), gives the
	// properties of one never written: reads return it, and a write replaces it (200, not 201).
	implicit func(name string) json.RawMessage
}

// implicitETag is the ETag of an implicit resource never written.
const implicitETag = `"0"`

// implicitResource is the resource kind's implicit behaviour gives name before any write.
func implicitResource(serviceID string, kind *Kind, parent, name string) Resource {
	return Resource{ServiceID: serviceID, Kind: kind, Parent: parent, Name: name,
		Properties: behaviours[kind].implicit(name), ETag: implicitETag}
}

var behaviours map[*Kind]behaviour

func init() {
	behaviours = map[*Kind]behaviour{
		KindAPI:              apiBehaviour,
		KindOperation:        operationBehaviour,
		KindPolicy:           policyBehaviour,
		KindProduct:          productBehaviour,
		KindProductAPI:       productAPIBehaviour,
		KindUser:             userBehaviour,
		KindSubscription:     subscriptionBehaviour,
		KindGateway:          gatewayBehaviour,
		KindGatewayAPI:       gatewayAPIBehaviour,
		KindNamedValue:       namedValueBehaviour,
		KindCertificate:      certificateBehaviour,
		KindGatewayHostname:  hostnameBehaviour,
		KindGatewayCA:        gatewayCABehaviour,
		KindBackend:          backendBehaviour,
		KindPolicyFragment:   policyFragmentBehaviour,
		KindAPIVersionSet:    versionSetBehaviour,
		KindAPIRelease:       releaseBehaviour,
		KindPortalSetting:    portalSettingBehaviour,
		KindIdentityProvider: identityProviderBehaviour,
		KindLogger:           loggerBehaviour,
		KindDiagnostic:       diagnosticBehaviour,
		KindTag:              tagBehaviour,
		KindAPITag:           apiTagBehaviour,
		KindOperationTag:     operationTagBehaviour,
		KindProductTag:       productTagBehaviour,
		KindTagDescription:   tagDescriptionBehaviour,
		KindGroup:            groupBehaviour,
		KindGroupUser:        groupUserBehaviour,
		KindProductGroup:     productGroupBehaviour,
		KindAPISchema:        apiSchemaBehaviour,
	}
}

// write is the context of one write transaction.
type write struct {
	c   *Catalog
	tx  Tx
	svc Service
	now time.Time
	// then, when prepare sets it, runs after the resource is stored and may replace it (an
	// API revision made current).
	then func(ctx context.Context, r *Resource) error
}

// Get returns one resource.
func (c *Catalog) Get(ctx context.Context, ref ServiceRef, kind *Kind, parent, name string) (Resource, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return Resource{}, err
	}
	rd := readerFor(c.store, svc.ID)
	sp, sn, err := storedPath(ctx, rd, kind, parent, name)
	if err != nil {
		return Resource{}, err
	}
	if err := c.checkParent(ctx, rd, kind, sp); err != nil {
		return Resource{}, err
	}
	r, err := c.store.Get(ctx, svc.ID, kind, sp, sn)
	if errors.Is(err, ErrNotFound) && behaviours[kind].implicit != nil && kind.ValidName(sn) == nil {
		r, err = implicitResource(svc.ID, kind, sp, sn), nil
	}
	if err != nil || (sp == parent && sn == name) {
		return r, err
	}
	return asRequested(r, parent, name), nil
}

// List returns a page of resources of kind under parent and the total count.
func (c *Catalog) List(ctx context.Context, ref ServiceRef, kind *Kind, parent, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	rd := readerFor(c.store, svc.ID)
	sp, _, err := storedPath(ctx, rd, kind, parent, "")
	if err != nil {
		return nil, 0, err
	}
	if err := c.checkParent(ctx, rd, kind, sp); err != nil {
		return nil, 0, err
	}
	q := Query{Kind: kind, Parent: sp, Filter: filter, Page: page}
	if kind == KindAPI && !strings.Contains(strings.ToLower(filter), "iscurrent") {
		// The collection lists APIs, that is their current revisions; apis/{id}/revisions
		// and $filter=isCurrent eq false list the others.
		q.PropEquals = map[string]string{"isCurrent": "true"}
	}
	rs, n, err := c.store.List(ctx, svc.ID, q)
	if sp != parent {
		for i := range rs {
			rs[i].Parent = parent
		}
	}
	return rs, n, err
}

// Put creates or replaces a resource from the ARM properties in. It reports whether it created.
func (c *Catalog) Put(ctx context.Context, ref ServiceRef, kind *Kind, parent, name string, in json.RawMessage, opts Options) (Resource, bool, error) {
	if err := kind.ValidName(name); err != nil {
		return Resource{}, false, err
	}
	if kind == KindAPI {
		if base, _, _, err := SplitRevision(name); err != nil {
			return Resource{}, false, err
		} else if err := kind.ValidName(base); err != nil {
			return Resource{}, false, err
		}
		var err error
		if in, err = c.fetchImportLink(ctx, in); err != nil {
			return Resource{}, false, err
		}
	}
	return c.upsert(ctx, ref, kind, parent, name, opts, func(old *Resource) (json.RawMessage, error) { return in, nil })
}

// Patch merges the ARM properties in into an existing resource (JSON merge patch) and
// re-validates the result as a Put would.
func (c *Catalog) Patch(ctx context.Context, ref ServiceRef, kind *Kind, parent, name string, in json.RawMessage, opts Options) (Resource, error) {
	r, _, err := c.upsert(ctx, ref, kind, parent, name, opts, func(old *Resource) (json.RawMessage, error) {
		if old == nil {
			return nil, notFound(kind.What)
		}
		return mergePatch(old.Properties, in)
	})
	return r, err
}

func (c *Catalog) upsert(ctx context.Context, ref ServiceRef, kind *Kind, askedParent, askedName string, opts Options,
	props func(old *Resource) (json.RawMessage, error)) (Resource, bool, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return Resource{}, false, err
	}
	b := behaviours[kind]
	var out Resource
	var created bool
	_, err = c.store.Write(ctx, svc.ID, func(ctx context.Context, tx Tx) error {
		w := &write{c: c, tx: tx, svc: svc, now: c.now().UTC()}
		parent, name, err := storedPath(ctx, tx, kind, askedParent, askedName)
		if err != nil {
			return err
		}
		if err := c.checkParent(ctx, tx, kind, parent); err != nil {
			return err
		}
		if b.writable != nil {
			if err := b.writable(ctx, w, parent, name); err != nil {
				return err
			}
		}
		var old *Resource
		cur, err := tx.Get(ctx, kind, parent, name)
		switch {
		case err == nil:
			old = &cur
		case errors.Is(err, ErrNotFound) && b.implicit != nil:
			cur = implicitResource(svc.ID, kind, parent, name)
			old = &cur
		case !errors.Is(err, ErrNotFound):
			return err
		}
		if err := checkETag(old, opts); err != nil {
			return err
		}
		in, err := props(old)
		if err != nil {
			return err
		}
		r := Resource{ServiceID: svc.ID, Kind: kind, Parent: parent, Name: name}
		if old != nil {
			r.ID, r.Name, r.Created = old.ID, old.Name, old.Created
		}
		if err := b.prepare(ctx, w, &r, in, old); err != nil {
			return err
		}
		if err := tx.Put(ctx, &r); err != nil {
			return err
		}
		if w.then != nil {
			if err := w.then(ctx, &r); err != nil {
				return err
			}
		}
		out, created = r, old == nil
		if parent != askedParent || name != askedName {
			out = asRequested(out, askedParent, askedName)
		}
		return nil
	})
	return out, created, err
}

// Delete removes a resource and what depends on it.
func (c *Catalog) Delete(ctx context.Context, ref ServiceRef, kind *Kind, parent, name string, opts Options) error {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return err
	}
	b := behaviours[kind]
	_, err = c.store.Write(ctx, svc.ID, func(ctx context.Context, tx Tx) error {
		w := &write{c: c, tx: tx, svc: svc, now: c.now().UTC()}
		parent, stored, err := storedPath(ctx, tx, kind, parent, name)
		if err != nil {
			return err
		}
		if err := c.checkParent(ctx, tx, kind, parent); err != nil {
			return err
		}
		if b.writable != nil {
			if err := b.writable(ctx, w, parent, stored); err != nil {
				return err
			}
		}
		r, err := tx.Get(ctx, kind, parent, stored)
		if err != nil {
			return err
		}
		if _, _, isRev, _ := SplitRevision(name); kind == KindAPI && isRev && !strings.Contains(stored, ";") {
			return invalid("apiId", "Cannot delete the current revision of an API.")
		}
		if err := checkETag(&r, opts); err != nil {
			return err
		}
		return w.delete(ctx, r, opts)
	})
	return err
}

// delete removes r after its dependents.
func (w *write) delete(ctx context.Context, r Resource, opts Options) error {
	if b := behaviours[r.Kind]; b.beforeDelete != nil {
		if err := b.beforeDelete(ctx, w, r, opts); err != nil {
			return err
		}
	}
	if err := w.deleteAssignments(ctx, r, opts); err != nil {
		return err
	}
	return w.tx.Delete(ctx, r)
}

// deleteAll deletes every resource q selects.
func (w *write) deleteAll(ctx context.Context, q Query, opts Options) error {
	q.All = true
	rs, _, err := w.tx.List(ctx, q)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := w.delete(ctx, r, opts); err != nil {
			return err
		}
	}
	return nil
}

// checkParent makes sure the parent of a child resource exists.
func (c *Catalog) checkParent(ctx context.Context, r Reader, kind *Kind, parent string) error {
	b := behaviours[kind]
	if b.parentKind == nil {
		if parent != "" {
			return notFound(kind.What)
		}
		return nil
	}
	pk, pname, err := b.parentKind(parent)
	if err != nil || pk == nil {
		return err
	}
	pp, _ := splitParent(parent)
	_, err = r.Get(ctx, pk, pp, pname)
	return err
}

// splitParent splits "apis/a/operations/o" into ("apis/a", "o").
func splitParent(path string) (string, string) {
	parts := strings.Split(path, "/")
	if len(parts) < 2 {
		return "", ""
	}
	return strings.Join(parts[:len(parts)-2], "/"), parts[len(parts)-1]
}

// checkETag enforces If-Match and If-None-Match. If-Match: "*" matches any existing resource; a
// value matches the current ETag; empty matches anything (PUT without If-Match is an upsert, as
// ARM deployments expect). If-None-Match: "*" fails on any existing resource, a value on the
// current ETag.
func checkETag(cur *Resource, opts Options) error {
	var etag *string
	if cur != nil {
		etag = &cur.ETag
	}
	return checkPreconditions(etag, opts)
}

// checkPreconditions is checkETag for the ETag of any entity; etag is nil when there is none.
func checkPreconditions(etag *string, opts Options) error {
	if opts.IfNoneMatch != "" && etag != nil && ETagMatch(*etag, opts.IfNoneMatch) {
		return &PreconditionError{Header: "If-None-Match"}
	}
	if opts.IfMatch == "" {
		return nil
	}
	if etag == nil {
		if opts.IfMatch == "*" {
			return nil
		}
		return &PreconditionError{Header: "If-Match"}
	}
	if ETagMatch(*etag, opts.IfMatch) {
		return nil
	}
	return &PreconditionError{Header: "If-Match"}
}

// ETagMatch compares an ETag with an If-Match value, which may list several, quoted or not.
func ETagMatch(etag, ifMatch string) bool {
	for _, v := range strings.Split(ifMatch, ",") {
		v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), "W/"))
		if v == "*" || strings.Trim(v, `"`) == strings.Trim(etag, `"`) {
			return true
		}
	}
	return false
}

// decodeProps decodes ARM properties into v, reporting type errors against their field, and
// refuses a property, at any depth v types, that v has no place for: Gatehouse keeps only what
// it implements, and a property it would drop is refused naming it rather than ignored
// (issue 15, docs/arm.md).
func decodeProps(in json.RawMessage, v any) error {
	if err := decodePart(in, v); err != nil {
		return err
	}
	if p := UnknownField(in, reflect.TypeOf(v)); p != "" {
		return invalid("properties."+p, "Gatehouse does not implement the property 'properties.%s' on this resource; remove it (docs/arm.md)", p)
	}
	return nil
}

// decodePart decodes the properties of in that v has fields for, as decodeProps does, without
// refusing the others: for a part of a write whose whole decodeProps checks.
func decodePart(in json.RawMessage, v any) error {
	if len(bytes.TrimSpace(in)) == 0 || bytes.Equal(bytes.TrimSpace(in), []byte("null")) {
		in = json.RawMessage("{}")
	}
	if err := json.Unmarshal(in, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := "properties"
			if te.Field != "" {
				field += "." + te.Field
			}
			return invalid(field, "expected a value of type %s, got %s", jsonTypeName(te.Type.Kind().String()), te.Value)
		}
		return invalid("properties", "properties must be a JSON object")
	}
	return nil
}

func jsonTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	default:
		return "number"
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("catalog: marshal %T: %v", v, err)) // only plain structs are marshalled
	}
	return b
}

// mergePatch applies an RFC 7386 JSON merge patch to doc.
func mergePatch(doc, patch json.RawMessage) (json.RawMessage, error) {
	var d, p any
	if len(doc) > 0 {
		if err := json.Unmarshal(doc, &d); err != nil {
			return nil, err
		}
	}
	if len(bytes.TrimSpace(patch)) == 0 {
		return doc, nil
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, invalid("properties", "properties must be a JSON object")
	}
	if _, ok := p.(map[string]any); !ok {
		return nil, invalid("properties", "properties must be a JSON object")
	}
	return json.Marshal(mergeValue(d, p))
}

func mergeValue(doc, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	dm, ok := doc.(map[string]any)
	if !ok {
		dm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(dm, k)
			continue
		}
		dm[k] = mergeValue(dm[k], v)
	}
	return dm
}

// readerFor reads one service outside a transaction.
func readerFor(s Store, serviceID string) Reader { return storeReader{s, serviceID} }

type storeReader struct {
	s  Store
	id string
}

func (r storeReader) Get(ctx context.Context, kind *Kind, parent, name string) (Resource, error) {
	return r.s.Get(ctx, r.id, kind, parent, name)
}

func (r storeReader) List(ctx context.Context, q Query) ([]Resource, int, error) {
	return r.s.List(ctx, r.id, q)
}
