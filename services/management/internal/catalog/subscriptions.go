package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"gatehouse.dev/pkg/configwire"
)

// Subscription states (reference/apim.md §2.7).
var subscriptionStates = []string{"active", "suspended", "submitted", "rejected", "cancelled", "expired"}

// SubscriptionProperties are the stored ARM properties of a subscription. Keys are not among
// them: they live sealed in the resource's secrets and leave only through listSecrets.
type SubscriptionProperties struct {
	Scope            string `json:"scope"`
	DisplayName      string `json:"displayName"`
	OwnerID          string `json:"ownerId,omitempty"`
	State            string `json:"state"`
	AllowTracing     bool   `json:"allowTracing"`
	CreatedDate      string `json:"createdDate"`
	StartDate        string `json:"startDate,omitempty"`
	ExpirationDate   string `json:"expirationDate,omitempty"`
	EndDate          string `json:"endDate,omitempty"`
	NotificationDate string `json:"notificationDate,omitempty"`
	StateComment     string `json:"stateComment,omitempty"`
}

// subscriptionInput is a subscription PUT or PATCH body: the properties plus writable keys.
type subscriptionInput struct {
	SubscriptionProperties
	PrimaryKey   *string `json:"primaryKey"`
	SecondaryKey *string `json:"secondaryKey"`
}

// SubscriptionKeys are a subscription's secrets.
type SubscriptionKeys struct {
	PrimaryKey   string `json:"primaryKey"`
	SecondaryKey string `json:"secondaryKey"`
}

// Secret names.
const (
	secretPrimary   = "primaryKey"
	secretSecondary = "secondaryKey"
)

var subscriptionBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p subscriptionInput
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		scope, err := w.normalizeScope(ctx, p.Scope)
		if err != nil {
			return err
		}
		p.Scope = scope
		if n := len(strings.TrimSpace(p.DisplayName)); n == 0 || len(p.DisplayName) > 100 {
			return invalid("properties.displayName", "displayName is required and must be at most 100 characters")
		}
		if p.OwnerID != "" {
			if p.OwnerID, err = w.normalizeOwner(ctx, p.OwnerID); err != nil {
				return err
			}
		}
		var prev SubscriptionProperties
		if old != nil {
			_ = json.Unmarshal(old.Properties, &prev)
		}
		if p.State == "" {
			p.State = "submitted"
		}
		if !slices.Contains(subscriptionStates, p.State) {
			return invalid("properties.state", "state must be one of %s", strings.Join(subscriptionStates, ", "))
		}
		for field, d := range map[string]*string{"startDate": &p.StartDate, "expirationDate": &p.ExpirationDate,
			"endDate": &p.EndDate, "notificationDate": &p.NotificationDate} {
			if *d == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339, *d)
			if err != nil {
				return invalid("properties."+field, "%s must be a date-time such as 2030-01-31T00:00:00Z", field)
			}
			*d = t.UTC().Format(dateFormat)
		}
		today := w.now.Format(dateFormat)
		p.CreatedDate = today
		if old != nil {
			p.CreatedDate = prev.CreatedDate
		}
		if p.State != prev.State {
			switch p.State {
			case "active":
				if p.StartDate == "" {
					p.StartDate = today
				}
			case "cancelled", "expired", "rejected":
				p.EndDate = today
			}
		}
		keys := SubscriptionKeys{}
		if old != nil {
			keys = SubscriptionKeys{PrimaryKey: old.Secrets[secretPrimary], SecondaryKey: old.Secrets[secretSecondary]}
		}
		for _, k := range []struct {
			field string
			in    *string
			out   *string
		}{{"properties.primaryKey", p.PrimaryKey, &keys.PrimaryKey}, {"properties.secondaryKey", p.SecondaryKey, &keys.SecondaryKey}} {
			switch {
			case k.in != nil && (len(*k.in) == 0 || len(*k.in) > 256 || strings.TrimSpace(*k.in) != *k.in):
				return invalid(k.field, "a key must be 1 to 256 characters without surrounding spaces")
			case k.in != nil:
				*k.out = *k.in
			case *k.out == "":
				*k.out = NewSubscriptionKey()
			}
		}
		if keys.PrimaryKey == keys.SecondaryKey {
			return invalid("properties.secondaryKey", "the primary and secondary keys must differ")
		}
		if err := w.setKeys(ctx, r, keys); err != nil {
			return err
		}
		r.Properties = mustJSON(p.SubscriptionProperties)
		return nil
	},
}

// setKeys stores keys on r, refusing a key another subscription already holds: a gateway must
// resolve every key to exactly one subscription.
func (w *write) setKeys(ctx context.Context, r *Resource, keys SubscriptionKeys) error {
	hashes := []string{configwire.KeyHash(keys.PrimaryKey), configwire.KeyHash(keys.SecondaryKey)}
	for i, h := range hashes {
		holders, _, err := w.tx.List(ctx, Query{Kind: KindSubscription, KeyHash: h, All: true})
		if err != nil {
			return err
		}
		for _, s := range holders {
			if !strings.EqualFold(s.Name, r.Name) {
				return invalid([]string{"properties.primaryKey", "properties.secondaryKey"}[i], "this key is already used by another subscription")
			}
		}
	}
	r.Secrets = map[string]string{secretPrimary: keys.PrimaryKey, secretSecondary: keys.SecondaryKey}
	r.KeyHashes = hashes
	return nil
}

// NewSubscriptionKey returns a fresh 128-bit key as 32 hex digits, the shape of APIM's keys.
func NewSubscriptionKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// normalizeScope accepts "/apis", "/apis/{id}", "/products/{id}" or the full ARM id of one of
// them within this service, checks the target exists, and returns the full ARM id.
func (w *write) normalizeScope(ctx context.Context, scope string) (string, error) {
	rel, ok := w.relativePath(scope)
	if !ok {
		return "", invalid("properties.scope", "scope must be /apis, /apis/{apiId} or /products/{productId} of this service")
	}
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) == 1 && parts[0] == "apis":
		return w.scopeID("apis"), nil
	case len(parts) == 2 && (parts[0] == "apis" || parts[0] == "products") && parts[1] != "":
		kind := KindAPI
		if parts[0] == "products" {
			kind = KindProduct
		}
		res, err := w.tx.Get(ctx, kind, "", parts[1])
		if errors.Is(err, ErrNotFound) {
			return "", invalid("properties.scope", "%s '%s' referenced by scope does not exist", kind.What, parts[1])
		}
		if err != nil {
			return "", err
		}
		return w.scopeID(parts[0] + "/" + res.Name), nil
	}
	return "", invalid("properties.scope", "scope must be /apis, /apis/{apiId} or /products/{productId} of this service")
}

func (w *write) normalizeOwner(ctx context.Context, owner string) (string, error) {
	rel, ok := w.relativePath(owner)
	parts := strings.Split(rel, "/")
	if !ok || len(parts) != 2 || parts[0] != "users" || parts[1] == "" {
		return "", invalid("properties.ownerId", "ownerId must be /users/{userId} of this service")
	}
	u, err := w.tx.Get(ctx, KindUser, "", parts[1])
	if errors.Is(err, ErrNotFound) {
		return "", invalid("properties.ownerId", "User '%s' referenced by ownerId does not exist", parts[1])
	}
	if err != nil {
		return "", err
	}
	return w.scopeID("users/" + u.Name), nil
}

// relativePath turns "/apis/x" or ".../service/{svc}/apis/x" into "apis/x" (segments lower-cased,
// names kept), accepting full ids only of this service.
func (w *write) relativePath(id string) (string, bool) {
	prefix := strings.ToLower(ServiceID(w.svc.Ref))
	switch {
	case strings.HasPrefix(strings.ToLower(id), prefix+"/"):
		id = id[len(prefix)+1:]
	case strings.HasPrefix(id, "/") && !strings.HasPrefix(strings.ToLower(id), "/subscriptions/"):
		id = id[1:]
	default:
		return "", false
	}
	seg, rest, _ := strings.Cut(id, "/")
	return strings.ToLower(seg) + pathRest(rest), true
}

func pathRest(rest string) string {
	if rest == "" {
		return ""
	}
	return "/" + rest
}

// SubscriptionSecrets returns a subscription's keys.
func (c *Catalog) SubscriptionSecrets(ctx context.Context, ref ServiceRef, name string) (SubscriptionKeys, Resource, error) {
	r, err := c.Get(ctx, ref, KindSubscription, "", name)
	if err != nil {
		return SubscriptionKeys{}, r, err
	}
	return SubscriptionKeys{PrimaryKey: r.Secrets[secretPrimary], SecondaryKey: r.Secrets[secretSecondary]}, r, nil
}

// RegenerateSubscriptionKey replaces the primary (or secondary) key with a fresh one.
func (c *Catalog) RegenerateSubscriptionKey(ctx context.Context, ref ServiceRef, name string, primary bool) error {
	return c.modify(ctx, ref, KindSubscription, "", name, func(ctx context.Context, w *write, r *Resource) error {
		keys := SubscriptionKeys{PrimaryKey: r.Secrets[secretPrimary], SecondaryKey: r.Secrets[secretSecondary]}
		if primary {
			keys.PrimaryKey = NewSubscriptionKey()
		} else {
			keys.SecondaryKey = NewSubscriptionKey()
		}
		return w.setKeys(ctx, r, keys)
	})
}

// modify rewrites one existing resource with fn inside a write.
func (c *Catalog) modify(ctx context.Context, ref ServiceRef, kind *Kind, parent, name string, fn func(ctx context.Context, w *write, r *Resource) error) error {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return err
	}
	_, err = c.store.Write(ctx, svc.ID, func(ctx context.Context, tx Tx) error {
		w := &write{c: c, tx: tx, svc: svc, now: c.now().UTC()}
		r, err := tx.Get(ctx, kind, parent, name)
		if err != nil {
			return err
		}
		if err := fn(ctx, w, &r); err != nil {
			return err
		}
		return tx.Put(ctx, &r)
	})
	return err
}
