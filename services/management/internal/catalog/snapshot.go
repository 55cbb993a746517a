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
		return b.build(ctx, node.Gateway, &snap)
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
		for _, r := range rs {
			b.out = append(b.out, WireEntity(r, true))
		}
	}
	return rs, err
}

func (b *snapshotBuilder) build(ctx context.Context, gw Resource, snap *configwire.Snapshot) error {
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
		for _, a := range apiNames {
			scopes = append(scopes, ServiceID(b.svc.Ref)+"/apis/"+a)
			if _, err := b.list(ctx, Query{Kind: KindPolicy, Parent: "apis/" + a}); err != nil {
				return err
			}
			ops, err := b.list(ctx, Query{Kind: KindOperation, Parent: "apis/" + a})
			if err != nil {
				return err
			}
			for _, op := range ops {
				if _, err := b.list(ctx, Query{Kind: KindPolicy, Parent: op.Path()}); err != nil {
					return err
				}
			}
		}
		for _, p := range dedupeFold(productNames) {
			scopes = append(scopes, ServiceID(b.svc.Ref)+"/products/"+p)
			if _, err := b.list(ctx, Query{Kind: KindPolicy, Parent: "products/" + p}); err != nil {
				return err
			}
		}
	}
	if _, err := b.list(ctx, Query{Kind: KindPolicy, Parent: ""}); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindNamedValue}); err != nil {
		return err
	}
	for _, s := range scopes {
		if _, err := b.list(ctx, Query{Kind: KindSubscription, PropEquals: map[string]string{"scope": s}}); err != nil {
			return err
		}
	}
	snap.Entities = b.out
	return nil
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
