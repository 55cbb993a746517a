package catalog

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/diagnostic"
)

// SnapshotSink receives a snapshot as Snapshot reads it (a configwire.SnapshotWriter).
type SnapshotSink interface {
	WriteEntity(configwire.Entity) error
	WriteSubscription(configwire.Subscription) error
}

// Snapshot reads the configuration a gateway node needs (configwire.Snapshot) at one revision
// and hands it over as it reads it, so that it is never held whole (a million subscriptions):
// the APIs linked to the node's gateway resource with their revisions, operations and policies, the
// products containing those APIs with their policies and links, the subscriptions that can
// reach them (key hashes only), the global policy, the named values, and the gateway's
// API version sets, hostname configurations and CAs, the loggers and diagnostics, and the backends, with the certificates
// they use (secret values and private keys included; the snapshot travels only over the
// authenticated management API). start is called first, with the snapshot's header (no
// entities), and returns where the entities go.
// With compact, subscriptions go in their compact form, read without the properties gateways
// do not use; otherwise as entities.
func (c *Catalog) Snapshot(ctx context.Context, node GatewayNode, compact bool, start func(configwire.Snapshot) (SnapshotSink, error)) error {
	return c.store.Snapshot(ctx, node.Service.ID, func(ctx context.Context, r SnapshotReader, revision int64) error {
		sink, err := start(configwire.Snapshot{ServiceID: node.Service.ID, Service: node.Service.Ref.Name, Gateway: node.Gateway.Name,
			Revision: revision})
		if err != nil {
			return err
		}
		b := snapshotBuilder{r: r, svc: node.Service, sink: sink, compact: compact}
		return b.build(ctx, node.Gateway)
	})
}

type snapshotBuilder struct {
	r       SnapshotReader
	svc     Service
	sink    SnapshotSink
	compact bool
}

func (b *snapshotBuilder) list(ctx context.Context, q Query) ([]Resource, error) {
	return b.listWhere(ctx, q, func(Resource) bool { return true })
}

// listWhere hands over the resources q selects that keep accepts, and returns all of them.
func (b *snapshotBuilder) listWhere(ctx context.Context, q Query, keep func(Resource) bool) ([]Resource, error) {
	q.All = true
	rs, _, err := b.r.List(ctx, q)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if keep(r) {
			if err := b.sink.WriteEntity(WireEntity(r, true)); err != nil {
				return nil, err
			}
		}
	}
	return rs, nil
}

func (b *snapshotBuilder) build(ctx context.Context, gw Resource) error {
	if err := b.sink.WriteEntity(WireEntity(gw, false)); err != nil {
		return err
	}
	certs, err := b.gatewayTLS(ctx, gw)
	if err != nil {
		return err
	}
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
		// An API's revisions go with it: "chat;rev=2" is served where "chat" is linked.
		linked := map[string]bool{}
		for _, a := range apiNames {
			linked[strings.ToLower(a)] = true
		}
		var revNames []string
		if _, err := b.listWhere(ctx, Query{Kind: KindAPI}, func(r Resource) bool {
			base, _, isRev, _ := SplitRevision(r.Name)
			if isRev && linked[strings.ToLower(base)] {
				revNames = append(revNames, r.Name)
			}
			return linked[strings.ToLower(base)]
		}); err != nil {
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
		for _, a := range revNames {
			served[strings.ToLower("apis/"+a)] = true
		}
		for _, p := range dedupeFold(productNames) {
			scopes = append(scopes, ServiceID(b.svc.Ref)+"/products/"+p)
			served[strings.ToLower("products/"+p)] = true
		}
		// Operations and policies are read in one query each, not one per API: a gateway with
		// 10,000 APIs would otherwise wait for 30,000 round trips.
		if _, err := b.listWhere(ctx, Query{Kind: KindOperation, AnyParent: true}, func(op Resource) bool {
			if !served[strings.ToLower(op.Parent)] {
				return false
			}
			served[strings.ToLower(op.Path())] = true
			return true
		}); err != nil {
			return err
		}
		if _, err := b.listWhere(ctx, Query{Kind: KindPolicy, AnyParent: true}, func(r Resource) bool { return served[strings.ToLower(r.Parent)] }); err != nil {
			return err
		}
	} else if _, err := b.list(ctx, Query{Kind: KindPolicy, Parent: ""}); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindNamedValue}); err != nil {
		return err
	}
	backends, err := b.list(ctx, Query{Kind: KindBackend})
	if err != nil {
		return err
	}
	names, thumbprints := backendCertificateRefs(backends)
	if err := b.certificates(ctx, append(certs, names...), thumbprints); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindPolicyFragment}); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindAPIVersionSet}); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindLogger}); err != nil {
		return err
	}
	if _, err := b.list(ctx, Query{Kind: KindDiagnostic, AnyParent: true}); err != nil {
		return err
	}
	return b.subscriptions(ctx, scopes)
}

// gatewayTLS hands over the gateway's hostname configurations and certificate authorities,
// and returns the names of the certificates they use.
func (b *snapshotBuilder) gatewayTLS(ctx context.Context, gw Resource) ([]string, error) {
	hosts, err := b.list(ctx, Query{Kind: KindGatewayHostname, Parent: gw.Path()})
	if err != nil {
		return nil, err
	}
	cas, err := b.list(ctx, Query{Kind: KindGatewayCA, Parent: gw.Path()})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, h := range hosts {
		var p HostnameProperties
		_ = json.Unmarshal(h.Properties, &p)
		names = append(names, p.CertificateID[strings.LastIndexByte(p.CertificateID, '/')+1:])
	}
	for _, ca := range cas {
		names = append(names, ca.Name)
	}
	return names, nil
}

// certificates hands over, with their chains and keys, the certificates called names and
// those whose thumbprint is one of thumbprints: the gateway's hostnames and CAs use the
// former, backends present both as client certificates.
func (b *snapshotBuilder) certificates(ctx context.Context, names, thumbprints []string) error {
	sent := map[string]bool{}
	if names = dedupeFold(names); len(names) > 0 {
		certs, err := b.list(ctx, Query{Kind: KindCertificate, Names: names})
		if err != nil {
			return err
		}
		for _, c := range certs {
			sent[strings.ToLower(c.Name)] = true
		}
	}
	if len(thumbprints) == 0 {
		return nil
	}
	_, err := b.listWhere(ctx, Query{Kind: KindCertificate, PropIn: map[string][]string{"thumbprint": thumbprints}},
		func(c Resource) bool { return !sent[strings.ToLower(c.Name)] })
	return err
}

// subscriptions hands over the subscriptions of scopes (full ARM ids) as they are read, in one
// query; their keys stay sealed (only their hashes travel).
func (b *snapshotBuilder) subscriptions(ctx context.Context, scopes []string) error {
	q := Query{Kind: KindSubscription, PropIn: map[string][]string{"scope": scopes}}
	if !b.compact {
		q.NoSecrets = true
		return b.r.Each(ctx, q, func(r Resource) error { return b.sink.WriteEntity(WireEntity(r, false)) })
	}
	q.Fields = []string{"scope", "state", "ownerId", "startDate", "createdDate"}
	var hashes [][32]byte           // reused: the sink is done with a subscription when it returns
	relative := map[string]string{} // a million subscriptions have a few thousand scopes
	return b.r.Each(ctx, q, func(r Resource) error {
		f := r.Fields
		scope, ok := relative[f[0]]
		if !ok {
			scope = configwire.RelativeScope(f[0])
			relative[f[0]] = scope
		}
		s := configwire.Subscription{Name: r.Name, Scope: scope, State: f[1], OwnerID: f[2], StartDate: configwire.StartDate(f[3], f[4])}
		hashes = hashes[:0]
		for _, h := range r.KeyHashes {
			if hb, ok := configwire.ParseKeyHash(h); ok {
				hashes = append(hashes, hb)
			}
		}
		s.KeyHashes = hashes
		return b.sink.WriteSubscription(s)
	})
}

// WireEntity is r as gateways see it: no secrets but key hashes, and for a secret named value
// its value, for a certificate its chain and key, for an otlp logger its credentials (JSON),
// only when withSecretValue is set (snapshots, never changes).
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
	if r.Kind == KindLogger {
		var p diagnostic.Logger
		_ = json.Unmarshal(r.Properties, &p)
		e.Secret = p.LoggerType == diagnostic.TypeOTLP
		if e.Secret && withSecretValue {
			e.SecretValue = string(mustJSON(LoggerCredentials(r)))
		}
	}
	if r.Kind == KindCertificate {
		e.Secret = true
		if withSecretValue {
			e.SecretValue = r.Secrets[secretCertificate]
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
