package catalog

import (
	"context"
	"strings"
)

// ProductsOfAPI lists the products an API belongs to.
func (c *Catalog) ProductsOfAPI(ctx context.Context, ref ServiceRef, apiName, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	if _, err := c.store.Get(ctx, svc.ID, KindAPI, "", apiName); err != nil {
		return nil, 0, err
	}
	links, _, err := c.store.List(ctx, svc.ID, Query{Kind: KindProductAPI, AnyParent: true, Name: apiName, All: true})
	if err != nil {
		return nil, 0, err
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, strings.TrimPrefix(l.Parent, KindProduct.Segment+"/"))
	}
	return c.store.List(ctx, svc.ID, Query{Kind: KindProduct, Names: names, Filter: filter, Page: page})
}

// SubscriptionsOf lists the subscriptions whose prop ("scope" or "ownerId") is the resource
// of kind named name (a product or a user).
func (c *Catalog) SubscriptionsOf(ctx context.Context, ref ServiceRef, kind *Kind, name, prop, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	r, err := c.store.Get(ctx, svc.ID, kind, "", name)
	if err != nil {
		return nil, 0, err
	}
	id := ServiceID(svc.Ref) + "/" + r.Path()
	return c.store.List(ctx, svc.ID, Query{Kind: KindSubscription, PropEquals: map[string]string{prop: id}, Filter: filter, Page: page})
}

// UserSubscription returns a subscription owned by a user.
func (c *Catalog) UserSubscription(ctx context.Context, ref ServiceRef, user, sid string) (Resource, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return Resource{}, err
	}
	u, err := c.store.Get(ctx, svc.ID, KindUser, "", user)
	if err != nil {
		return Resource{}, err
	}
	rs, _, err := c.store.List(ctx, svc.ID, Query{Kind: KindSubscription, Name: sid,
		PropEquals: map[string]string{"ownerId": ServiceID(svc.Ref) + "/" + u.Path()}, All: true})
	if err != nil {
		return Resource{}, err
	}
	if len(rs) == 0 {
		return Resource{}, notFound(KindSubscription.What)
	}
	return rs[0], nil
}
