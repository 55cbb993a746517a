package catalog

import (
	"context"
	"encoding/json"
	"strings"
)

// ProductProperties are the stored ARM properties of a product.
type ProductProperties struct {
	DisplayName          string `json:"displayName"`
	Description          string `json:"description,omitempty"`
	Terms                string `json:"terms,omitempty"`
	SubscriptionRequired *bool  `json:"subscriptionRequired"`
	ApprovalRequired     *bool  `json:"approvalRequired,omitempty"`
	SubscriptionsLimit   *int   `json:"subscriptionsLimit,omitempty"`
	State                string `json:"state"`
}

var productBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p ProductProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if n := len(strings.TrimSpace(p.DisplayName)); n == 0 || len(p.DisplayName) > 300 {
			return invalid("properties.displayName", "displayName is required and must be at most 300 characters")
		}
		if len(p.Description) > 1000 {
			return invalid("properties.description", "description must be at most 1000 characters")
		}
		if p.SubscriptionRequired == nil {
			t := true
			p.SubscriptionRequired = &t
		}
		if !*p.SubscriptionRequired {
			if p.ApprovalRequired != nil && *p.ApprovalRequired {
				return invalid("properties.approvalRequired", "approvalRequired can be set only when subscriptionRequired is true")
			}
			if p.SubscriptionsLimit != nil {
				return invalid("properties.subscriptionsLimit", "subscriptionsLimit can be set only when subscriptionRequired is true")
			}
		}
		if p.SubscriptionsLimit != nil && *p.SubscriptionsLimit < 0 {
			return invalid("properties.subscriptionsLimit", "subscriptionsLimit must not be negative")
		}
		switch p.State {
		case "":
			p.State = "notPublished"
		case "notPublished", "published":
		default:
			return invalid("properties.state", "state must be notPublished or published")
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		subs := Query{Kind: KindSubscription, PropEquals: map[string]string{"scope": w.scopeID(r.Path())}}
		if err := w.refuseOrDelete(ctx, subs, opts, "Product has subscriptions; delete them first or pass deleteSubscriptions=true."); err != nil {
			return err
		}
		if err := w.deleteAll(ctx, Query{Kind: KindProductAPI, Parent: r.Path()}, opts); err != nil {
			return err
		}
		return w.deleteAll(ctx, Query{Kind: KindPolicy, Parent: r.Path()}, opts)
	},
}

// refuseOrDelete deletes what q selects when opts.DeleteSubscriptions is set and refuses with
// msg when it is not and q selects something.
func (w *write) refuseOrDelete(ctx context.Context, q Query, opts Options, msg string) error {
	if opts.DeleteSubscriptions {
		return w.deleteAll(ctx, q, opts)
	}
	q.Page = Page{Top: 1}
	_, n, err := w.tx.List(ctx, q)
	if err != nil {
		return err
	}
	if n > 0 {
		return &ConflictError{Message: msg}
	}
	return nil
}

// linkBehaviour joins the parent of kind parent to an API named by the link's name.
func linkBehaviour(parent *Kind) behaviour { return linkTo(parentOf(parent), KindAPI) }

// linkTo joins a parent that parentKind accepts to the top-level resource of kind target
// named by the link's name, which takes that resource's spelling. A link has no properties.
func linkTo(parentKind func(parent string) (*Kind, string, error), target *Kind) behaviour {
	return behaviour{
		parentKind: parentKind,
		prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
			t, err := w.tx.Get(ctx, target, "", r.Name)
			if err != nil {
				return err
			}
			r.Name = t.Name
			r.Properties = json.RawMessage(`{}`)
			return nil
		},
	}
}

var (
	productAPIBehaviour = linkBehaviour(KindProduct)
	gatewayAPIBehaviour = linkBehaviour(KindGateway)
)

// UserProperties are the stored ARM properties of a user. Passwords are not kept: Gatehouse
// users sign in with bearer tokens.
type UserProperties struct {
	Email            string          `json:"email"`
	FirstName        string          `json:"firstName"`
	LastName         string          `json:"lastName"`
	State            string          `json:"state"`
	Note             string          `json:"note,omitempty"`
	Identities       json.RawMessage `json:"identities"`
	RegistrationDate string          `json:"registrationDate"`
	Groups           json.RawMessage `json:"groups"`
}

var userBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		var p UserProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if !validEmail(p.Email) {
			return invalid("properties.email", "email is required: an e-mail address of at most 254 characters")
		}
		for field, v := range map[string]string{"firstName": p.FirstName, "lastName": p.LastName} {
			if n := len(strings.TrimSpace(v)); n == 0 || len(v) > 100 {
				return invalid("properties."+field, "%s is required and must be at most 100 characters", field)
			}
		}
		switch p.State {
		case "":
			p.State = "active"
		case "active", "blocked", "pending", "deleted":
		default:
			return invalid("properties.state", "state must be active, blocked, pending or deleted")
		}
		same, _, err := w.tx.List(ctx, Query{Kind: KindUser, PropEquals: map[string]string{"email": p.Email}, All: true})
		if err != nil {
			return err
		}
		for _, u := range same {
			if !strings.EqualFold(u.Name, r.Name) {
				return invalid("properties.email", "Email '%s' already exists.", p.Email)
			}
		}
		if len(p.Identities) == 0 || string(p.Identities) == "null" {
			p.Identities = mustJSON([]map[string]string{{"provider": "Basic", "id": p.Email}})
		}
		p.Groups = json.RawMessage("[]")
		p.RegistrationDate = w.now.Format(dateFormat)
		if old == nil {
			w.then = func(ctx context.Context, r *Resource) error { return addDeveloper(ctx, w.tx, w.svc.ID, r.Name) }
		} else {
			var o UserProperties
			_ = json.Unmarshal(old.Properties, &o)
			p.RegistrationDate = o.RegistrationDate
		}
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		subs := Query{Kind: KindSubscription, PropEquals: map[string]string{"ownerId": w.scopeID(r.Path())}}
		return w.refuseOrDelete(ctx, subs, opts, "User has subscriptions; delete them first or pass deleteSubscriptions=true.")
	},
}

func validEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	return len(s) <= 254 && at > 0 && at < len(s)-1 && !strings.ContainsAny(s, " \t\r\n<>(),;:\"[]\\")
}
