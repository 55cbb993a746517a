package catalog

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"gatehouse.dev/pkg/configwire"
)

// Snapshot returns the configuration a gateway node needs (configwire.Snapshot), read at one
// revision: the APIs linked to its gateway resource with their operations and policies, the
// products containing those APIs with their policies and links, the subscriptions that can reach
// them (key hashes only), the global policy and the named values (secret values included; the
// snapshot travels only over the authenticated management API).
func (c *Catalog) Snapshot(ctx context.Context, node GatewayNode) (configwire.Snapshot, error) {
	snap := configwire.Snapshot{ServiceID: node.Service.ID, Service: node.Service.Ref.Name, Gateway: node.Gateway.Name}
	err := c.store.Snapshot(ctx, node.Service.ID, func(ctx context.Context, r Reader, revision int64) error {
		snap.Revision = revision
		b := snapshotBuilder{r: r, svc: node.Service}
		err := b.build(ctx, node.Gateway)
		snap.Entities = b.out
		return err
	})
	return snap, err
}

type snapshotBuilder struct {
	r   Reader
	svc Service
	out []configwire.Entity
}

func (b *snapshotBuilder) list(ctx context.Context, q Query) ([]Resource, error) {
	q.All = true
	rs, _, err := b.r.List(ctx, q)
	if err == nil {
		b.out = slices.Grow(b.out, len(rs))
		for _, r := range rs {
			b.out = append(b.out, WireEntity(r, true))
		}
	}
	return rs, err
}

// listWhere adds the resources q selects that keep accepts.
func (b *snapshotBuilder) listWhere(ctx context.Context, q Query, keep func(Resource) bool) error {
	q.All = true
	rs, _, err := b.r.List(ctx, q)
	for _, r := range rs {
		if keep(r) {
			b.out = append(b.out, WireEntity(r, true))
		}
	}
	return err
}

func (b *snapshotBuilder) build(ctx context.Context, gw Resource) error {
	b.out = append(b.out, WireEntity(gw, false))
	links, err := b.list(ctx, Query{Kind: KindGatewayAPI, Parent: gw.Path()})
	if err != nil {
		return err
	}
	apiNames := make([]string, 0, len(links))
	for _, l := range links {
		apiNames = append(apiNames, l.Name)
	}
	scopes := []string{ServiceID(b.svc.Ref) + "/apis"}
	if len(apiNames) > 0 {
		if _, err := b.list(ctx, Query{Kind: KindAPI, Names: apiNames}); err != nil {
			return err
		}
		productLinks, err := b.list(ctx, Query{Kind: KindProductAPI, AnyParent: true, Names: apiNames})
		if err != nil {
			return err
		}
		var productNames []string
		for _, l := range productLinks {
			productNames = append(productNames, strings.TrimPrefix(l.Parent, "products/"))
		}
		if len(productNames) > 0 {
			if _, err := b.list(ctx, Query{Kind: KindProduct, Names: productNames}); err != nil {
				return err
			}
		}
		served := map[string]bool{"": true} // lower-cased parents whose policies the node needs
		for _, a := range apiNames {
			scopes = append(scopes, ServiceID(b.svc.Ref)+"/apis/"+a)
			served[strings.ToLower("apis/"+a)] = true
		}
		for _, p := range dedupeFold(productNames) {
			scopes = append(scopes, ServiceID(b.svc.Ref)+"/products/"+p)
			served[strings.ToLower("products/"+p)] = true
		}
		// Operations and policies are read in one query each, not one per API: a gateway with
		// 10,000 APIs would otherwise wait for 30,000 round trips.
		ops, _, err := b.r.List(ctx, Query{Kind: KindOperation, AnyParent: true, All: true})
		if err != nil {
			return err
		}
		for _, op := range ops {
			if served[strings.ToLower(op.Parent)] {
				b.out = append(b.out, WireEntity(op, true))
				served[strings.ToLower(op.Path())] = true
			}
		}
		if err := b.listWhere(ctx, Query{Kind: KindPolicy, AnyParent: true}, func(r Resource) bool { return served[strings.ToLower(r.Parent)] }); err != nil {
			return err
		}
	} else if _, err := b.list(ctx, Query{Kind: KindPolicy, Parent: ""}); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindNamedValue}); err != nil {
		return err
	}
	// One query for the subscriptions of every scope; their keys stay sealed (only their hashes
	// travel).
	_, err = b.list(ctx, Query{Kind: KindSubscription, PropIn: map[string][]string{"scope": scopes}, NoSecrets: true, Unordered: true})
	return err
}

// WireEntity is r as gateways see it: no secrets but key hashes, and for a secret named value
// its value only when withSecretValue is set (snapshots, never changes).
func WireEntity(r Resource, withSecretValue bool) configwire.Entity {
	e := configwire.Entity{Kind: r.Kind.Name, Parent: r.Parent, Name: r.Name, Properties: r.Properties,
		KeyHashes: r.KeyHashes, Revision: r.Revision}
	if r.Kind == KindNamedValue {
		var p NamedValueProperties
		_ = json.Unmarshal(r.Properties, &p)
		e.Secret = p.Secret
		if p.Secret && withSecretValue {
			e.SecretValue = r.Secrets[secretValue]
		}
	}
	return e
}

func dedupeFold(list []string) []string {
	var out []string
	for _, s := range list {
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, s) }) {
			out = append(out, s)
		}
	}
	return out
}
