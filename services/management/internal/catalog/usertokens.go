package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// ErrInvalidUserToken means a user token is malformed, expired, wrongly signed, or names a user
// that is gone or no longer active. Callers learn nothing about which.
var ErrInvalidUserToken = errors.New("invalid user token")

// userTokenSecret names the service secret that signs user tokens with the key keyName returns.
func userTokenSecret(key string) string { return "userToken/" + key }

// newUserTokenKeys returns fresh signing keys for a service's user tokens.
func newUserTokenKeys() map[string]string {
	return map[string]string{
		userTokenSecret(secretGatewayPrimary):   newGatewayKey(),
		userTokenSecret(secretGatewaySecondary): newGatewayKey(),
	}
}

// GenerateUserToken returns a token that signs the user name of the service in to Gatehouse's
// portal API as a consumer (APIM's POST users/{userId}/token), valid until expiry (at most 30
// days ahead). It has APIM's shape, "{id}&{yyyyMMddHHmm}&{signature}", with the user's internal
// id, so it names the service and the user: deleting the user, even to create it again, ends
// it. The signature is made with the service's primary or secondary signing key (keyType),
// kept sealed with the service.
func (c *Catalog) GenerateUserToken(ctx context.Context, ref ServiceRef, name, keyType string, expiry time.Time) (string, error) {
	key, err := c.checkTokenRequest(keyType, expiry)
	if err != nil {
		return "", err
	}
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return "", err
	}
	u, err := c.store.Get(ctx, svc.ID, KindUser, "", name)
	if err != nil {
		return "", err
	}
	if state := userState(u); state != "active" {
		return "", invalid("userId", "User '%s' is %s; only an active user can sign in", u.Name, state)
	}
	keys, err := c.store.ServiceSecrets(ctx, svc.ID, newUserTokenKeys)
	if err != nil {
		return "", err
	}
	return newSignedToken(u.ID, expiry, keys[userTokenSecret(key)]), nil
}

func userState(u Resource) string {
	var p UserProperties
	_ = json.Unmarshal(u.Properties, &p)
	return p.State
}

// Consumer is a verified user token's holder: an active user of a service.
type Consumer struct {
	Service Service
	User    Resource
	Expiry  time.Time
}

// LooksLikeUserToken reports whether token has the shape of GenerateUserToken's tokens, so a
// caller can tell it from other bearer tokens without a database round trip.
func LooksLikeUserToken(token string) bool {
	id, rest, ok := strings.Cut(token, "&")
	return ok && len(id) == 36 && strings.Count(rest, "&") == 1
}

// VerifyUserToken checks a token from GenerateUserToken: its expiry, its signature against the
// service's current keys, and that its user still exists and is active. Every failure of the
// token is ErrInvalidUserToken.
func (c *Catalog) VerifyUserToken(ctx context.Context, token string) (Consumer, error) {
	t, u, err := c.tokenHolder(ctx, token, KindUser, ErrInvalidUserToken)
	if err != nil {
		return Consumer{}, err
	}
	keys, err := c.store.ServiceSecrets(ctx, u.ServiceID, newUserTokenKeys)
	if err != nil {
		return Consumer{}, err
	}
	if !t.signedBy(keys[userTokenSecret(secretGatewayPrimary)], keys[userTokenSecret(secretGatewaySecondary)]) || userState(u) != "active" {
		return Consumer{}, ErrInvalidUserToken
	}
	svc, err := c.store.GetServiceByID(ctx, u.ServiceID)
	if err != nil {
		return Consumer{}, err
	}
	return Consumer{Service: svc, User: u, Expiry: t.expiry}, nil
}

// APIsOfUser lists the APIs the user name reaches through its active subscriptions: every API
// for a subscription to all APIs, the API of an API scope, the APIs of a product scope.
func (c *Catalog) APIsOfUser(ctx context.Context, ref ServiceRef, name string) ([]Resource, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, err
	}
	u, err := c.store.Get(ctx, svc.ID, KindUser, "", name)
	if err != nil {
		return nil, err
	}
	prefix := ServiceID(svc.Ref) + "/"
	subs, _, err := c.store.List(ctx, svc.ID, Query{Kind: KindSubscription, NoSecrets: true, All: true,
		PropEquals: map[string]string{"ownerId": prefix + u.Path(), "state": "active"}})
	if err != nil {
		return nil, err
	}
	all := Query{Kind: KindAPI, NoSecrets: true, All: true}
	var names []string
	for _, s := range subs {
		var p SubscriptionProperties
		_ = json.Unmarshal(s.Properties, &p)
		if len(p.Scope) < len(prefix) || !strings.EqualFold(p.Scope[:len(prefix)], prefix) {
			continue
		}
		seg, target, _ := strings.Cut(p.Scope[len(prefix):], "/")
		switch {
		case strings.EqualFold(seg, "apis") && target == "":
			rs, _, err := c.store.List(ctx, svc.ID, all)
			return rs, err
		case strings.EqualFold(seg, "apis"):
			names = append(names, target)
		case strings.EqualFold(seg, "products"):
			links, _, err := c.store.List(ctx, svc.ID, Query{Kind: KindProductAPI, Parent: KindProduct.Segment + "/" + target, All: true})
			if err != nil {
				return nil, err
			}
			for _, l := range links {
				names = append(names, l.Name)
			}
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	all.Names = names
	rs, _, err := c.store.List(ctx, svc.ID, all)
	return rs, err
}
