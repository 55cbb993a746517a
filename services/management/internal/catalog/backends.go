package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gatehouse.dev/pkg/backend"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/policy"
)

// Backends (issue 14, docs/backends.md): the shape and its structural rules live in
// pkg/backend, which nodes compile from too; the catalog adds what needs the service's other
// resources: the egress policy on url, named values in credentials, pool members that are
// existing Single backends, and refusing a deletion or a change that would break a policy's
// backend-id or a pool.

var backendBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		p, err := backend.Decode(in)
		if err == nil {
			err = backend.Validate(&p)
		}
		if be := (*backend.Error)(nil); errors.As(err, &be) {
			return invalid(be.Field, "%s", be.Message)
		} else if err != nil {
			return err
		}
		if p.URL != nil {
			if err := w.c.checkURLEgress("url", *p.URL); err != nil {
				return err
			}
		}
		if err := w.checkCredentialRefs(ctx, p.Credentials); err != nil {
			return err
		}
		if err := w.checkClientCertificates(ctx, p.Credentials); err != nil {
			return err
		}
		if err := w.checkPoolMembers(ctx, r.Name, p.Pool); err != nil {
			return err
		}
		if old != nil {
			if err := w.checkBackendChange(ctx, r.Name, p, old); err != nil {
				return err
			}
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		users, err := w.backendUsers(ctx, r.Name)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return &ConflictError{Message: fmt.Sprintf("Backend '%s' is referenced by %s; remove the references first.", r.Name, strings.Join(users, ", "))}
		}
		return nil
	},
}

// checkCredentialRefs refuses credentials that reference a named value that does not exist.
func (w *write) checkCredentialRefs(ctx context.Context, c *backend.Credentials) error {
	var refs []string
	for _, v := range c.Values() {
		refs = append(refs, policy.NamedValueRefs(v)...)
	}
	if len(refs) == 0 {
		return nil
	}
	known, err := w.namedValueNames(ctx)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		if !known[strings.ToLower(ref)] {
			return invalid("properties.credentials", "Cannot find a property '%s'. Create the named value first.", ref)
		}
	}
	return nil
}

// checkPoolMembers checks that every member of a pool is an existing Single backend of this
// service, and not the pool itself.
func (w *write) checkPoolMembers(ctx context.Context, self string, pool *backend.Pool) error {
	if pool == nil {
		return nil
	}
	prefix := strings.ToLower(ServiceID(w.svc.Ref) + "/backends/")
	for i, m := range pool.Services {
		field := fmt.Sprintf("properties.pool.services[%d].id", i)
		name, _ := backend.MemberName(m.ID)
		if !strings.HasPrefix(strings.ToLower(m.ID), prefix) {
			return invalid(field, "'%s' is not a backend of this service", m.ID)
		}
		if strings.EqualFold(name, self) {
			return invalid(field, "a pool cannot be its own member")
		}
		mr, err := w.tx.Get(ctx, KindBackend, "", name)
		if errors.Is(err, ErrNotFound) {
			return invalid(field, "the backend '%s' does not exist", name)
		} else if err != nil {
			return err
		}
		if mp, _ := backend.Decode(mr.Properties); mp.Type != backend.TypeSingle {
			return invalid(field, "the backend '%s' is a Pool: members must be Single backends", name)
		}
	}
	return nil
}

// checkBackendChange refuses turning a pool member into a Pool, and compiles again the
// policies whose backend-id names the backend, with its new URL.
func (w *write) checkBackendChange(ctx context.Context, name string, p backend.Properties, old *Resource) error {
	if p.Type == backend.TypePool {
		pools, err := w.poolsOf(ctx, name)
		if err != nil {
			return err
		}
		if len(pools) > 0 {
			return invalid("properties.type", "the backend '%s' is a member of %s: it must stay Single", name, strings.Join(pools, ", "))
		}
	}
	env, err := w.policyEnv(ctx)
	if err != nil {
		return err
	}
	env.Backends[strings.ToLower(name)] = backendURL(p)
	uses := func(doc *policy.Document, env pipeline.Env) bool {
		return slices.Contains(documentBackendIDs(doc, env), strings.ToLower(name))
	}
	return w.recheckPolicies(ctx, env, uses, fmt.Sprintf("The backend '%s'", name))
}

// backendUsers names what refers to the backend name: policies whose literal backend-id
// names it, policy fragments whose literal backend-id names it, and pools that have it as a
// member.
func (w *write) backendUsers(ctx context.Context, name string) ([]string, error) {
	var users []string
	policies, _, err := w.tx.List(ctx, Query{Kind: KindPolicy, AnyParent: true, All: true})
	if err != nil {
		return nil, err
	}
	for _, pol := range policies {
		doc, _, err := ParsePolicy(policyValue(pol))
		if err == nil && slices.Contains(doc.BackendIDs(), strings.ToLower(name)) {
			users = append(users, "the policy of '"+policyOwner(pol.Parent)+"'")
		}
	}
	fragments, _, err := w.tx.List(ctx, Query{Kind: KindPolicyFragment, All: true})
	if err != nil {
		return nil, err
	}
	for _, r := range fragments {
		if f, err := fragmentOf(r); err == nil && slices.Contains(f.BackendIDs(), strings.ToLower(name)) {
			users = append(users, "the policy fragment '"+r.Name+"'")
		}
	}
	pools, err := w.poolsOf(ctx, name)
	for _, p := range pools {
		users = append(users, "the pool '"+p+"'")
	}
	return users, err
}

// documentBackendIDs returns the literal backend-ids doc names, itself and in the fragments
// of env it includes.
func documentBackendIDs(doc *policy.Document, env pipeline.Env) []string {
	ids := doc.BackendIDs()
	for _, f := range doc.Fragments() {
		if frag := env.Fragments[strings.ToLower(f.ID)]; frag.Doc != nil {
			ids = append(ids, frag.Doc.BackendIDs()...)
		}
	}
	return ids
}

// poolsOf returns the names of the pools that have the backend name as a member.
func (w *write) poolsOf(ctx context.Context, name string) ([]string, error) {
	all, _, err := w.tx.List(ctx, Query{Kind: KindBackend, All: true})
	if err != nil {
		return nil, err
	}
	var pools []string
	for _, r := range all {
		p, _ := backend.Decode(r.Properties)
		if p.Pool == nil {
			continue
		}
		for _, m := range p.Pool.Services {
			if n, _ := backend.MemberName(m.ID); strings.EqualFold(n, name) {
				pools = append(pools, r.Name)
			}
		}
	}
	return pools, nil
}

// backendURL is what pipeline.Env.Backends holds for a backend: its URL, "" for a pool.
func backendURL(p backend.Properties) string {
	if p.Type == backend.TypePool || p.URL == nil {
		return ""
	}
	return *p.URL
}

// backendEnv returns the service's backends as pipeline.Env.Backends wants them.
func (w *write) backendEnv(ctx context.Context) (map[string]string, error) {
	all, _, err := w.tx.List(ctx, Query{Kind: KindBackend, All: true})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(all))
	for _, r := range all {
		p, _ := backend.Decode(r.Properties)
		out[strings.ToLower(r.Name)] = backendURL(p)
	}
	return out, nil
}

// ReconnectBackend checks a reconnect request: the backend exists and after, when given, is an
// ISO 8601 duration of at least two minutes (APIM's minimum). There is nothing to do: nodes
// keep no connections to a backend between calls.
func (c *Catalog) ReconnectBackend(ctx context.Context, ref ServiceRef, name, after string) error {
	if _, err := c.Get(ctx, ref, KindBackend, "", name); err != nil {
		return err
	}
	if after == "" {
		return nil
	}
	d, err := backend.ParseDuration(after)
	if err != nil || d < 2*time.Minute {
		return invalid("properties.after", "after must be an ISO 8601 duration of at least PT2M")
	}
	return nil
}

// checkNamedValueKept refuses deleting or renaming a named value that a backend's credentials
// reference by its name or its display name (oldDisplay); newDisplay is "" for a deletion.
func (w *write) checkNamedValueKept(ctx context.Context, name, oldDisplay, newDisplay string) error {
	all, _, err := w.tx.List(ctx, Query{Kind: KindBackend, All: true})
	if err != nil {
		return err
	}
	for _, r := range all {
		p, _ := backend.Decode(r.Properties)
		for _, v := range p.Credentials.Values() {
			for _, ref := range policy.NamedValueRefs(v) {
				gone := newDisplay == "" && strings.EqualFold(ref, name) || strings.EqualFold(ref, oldDisplay) && !strings.EqualFold(ref, newDisplay)
				if gone {
					return &ConflictError{Message: fmt.Sprintf("Named value '%s' is referenced by the credentials of the backend '%s'; remove the reference first.", oldDisplay, r.Name)}
				}
			}
		}
	}
	return nil
}
