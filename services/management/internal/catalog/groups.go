package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"gatehouse.dev/pkg/configwire"
)

// The group kinds (reference/apim-surface.md §5): groups, their users and the groups a product
// is visible to in the developer portal.
var (
	KindGroup = &Kind{Name: configwire.KindGroup, Segment: "groups", Type: "Microsoft.ApiManagement/service/groups", What: "Group",
		MaxLen: 256, Pattern: idPattern,
		Filter: withField(stringFields("displayName", "description"), "externalId", FilterField{Prop: "externalId", Type: "string", EqOnly: true})}
	KindGroupUser = &Kind{Name: configwire.KindGroupUser, Segment: "users", Type: "Microsoft.ApiManagement/service/groups/users", What: "User",
		MaxLen: 80, Pattern: idPattern, Link: true, Target: KindUser, Filter: stringFields()}
	KindProductGroup = &Kind{Name: configwire.KindProductGroup, Segment: "groups", Type: "Microsoft.ApiManagement/service/products/groups", What: "Group",
		MaxLen: 256, Pattern: idPattern, Link: true, Target: KindGroup, Filter: stringFields()}
)

// Group types.
const (
	GroupCustom   = "custom"
	GroupExternal = "external"
	GroupSystem   = "system"
)

// GroupDevelopers is the built-in group every user belongs to: Gatehouse's consumers are
// always signed in, so they are developers, never guests.
const GroupDevelopers = "developers"

// GroupProperties are the stored ARM properties of a group. BuiltIn is read-only: true for the
// system groups every service has, false for every group a client writes.
type GroupProperties struct {
	DisplayName string `json:"displayName"`
	Description string `json:"description,omitempty"`
	Type        string `json:"type"`
	ExternalID  string `json:"externalId,omitempty"`
	BuiltIn     bool   `json:"builtIn"`
}

// builtInGroups are APIM's system groups, created for each service; their membership is
// managed by Gatehouse (every user is a developer; no user is an administrator or a guest).
var builtInGroups = []struct{ name, displayName, description string }{
	{"administrators", "Administrators", "Administrators is a built-in group. Its membership is managed by the system."},
	{GroupDevelopers, "Developers", "Developers is a built-in group. Its membership is managed by the system. Signed-in users fall into this group."},
	{"guests", "Guests", "Guests is a built-in group. Its membership is managed by the system. Unauthenticated users visiting the developer portal fall into this group."},
}

var groupBehaviour = behaviour{
	prepare: func(ctx context.Context, w *write, r *Resource, in json.RawMessage, old *Resource) error {
		if old != nil && groupProps(*old).BuiltIn {
			return errBuiltInGroup(old.Name)
		}
		var p GroupProperties
		if err := decodeProps(in, &p); err != nil {
			return err
		}
		if n := len(strings.TrimSpace(p.DisplayName)); n == 0 || len(p.DisplayName) > 300 {
			return invalid("properties.displayName", "displayName is required and must be at most 300 characters")
		}
		if len(p.Description) > 1000 {
			return invalid("properties.description", "description must be at most 1000 characters")
		}
		switch p.Type {
		case "":
			p.Type = GroupCustom
		case GroupCustom, GroupExternal:
		default:
			return invalid("properties.type", "type must be custom or external: the system groups administrators, developers and guests are built in")
		}
		if p.ExternalID != "" && p.Type != GroupExternal {
			return invalid("properties.externalId", "externalId names the identity provider's group of an external group; set type to external or remove it")
		}
		p.BuiltIn = false
		r.Properties = mustJSON(p)
		return nil
	},
	beforeDelete: func(ctx context.Context, w *write, r Resource, opts Options) error {
		if groupProps(r).BuiltIn {
			return errBuiltInGroup(r.Name)
		}
		return nil
	},
}

// groupUserBehaviour adds users to custom and external groups; a system group's membership
// is Gatehouse's.
var groupUserBehaviour = func() behaviour {
	b := linkTo(parentOf(KindGroup), KindUser)
	b.writable = func(ctx context.Context, w *write, parent, name string) error {
		_, group, _ := strings.Cut(parent, "/")
		g, err := w.tx.Get(ctx, KindGroup, "", group)
		if err != nil {
			return err
		}
		if groupProps(g).BuiltIn {
			return invalid("groupId", "The membership of the built-in group '%s' is managed by Gatehouse: every user is a developer, and no user is an administrator or a guest (docs/tags-groups.md).", g.Name)
		}
		return nil
	}
	return b
}()

var productGroupBehaviour = linkTo(parentOf(KindProduct), KindGroup)

func errBuiltInGroup(name string) error {
	return invalid("groupId", "The group '%s' is a built-in system group: it cannot be changed or deleted.", name)
}

// groupProps decodes a group's stored properties; a stored group always decodes.
func groupProps(r Resource) GroupProperties {
	var p GroupProperties
	_ = json.Unmarshal(r.Properties, &p)
	return p
}

// ensureBuiltInGroups creates the system groups svc lacks (all of them for a new service) and,
// with developers, makes every existing user a member.
func (c *Catalog) ensureBuiltInGroups(ctx context.Context, svc Service) error {
	_, err := c.store.Write(ctx, svc.ID, func(ctx context.Context, tx Tx) error {
		for _, g := range builtInGroups {
			_, err := tx.Get(ctx, KindGroup, "", g.name)
			if err == nil {
				continue
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
			p := GroupProperties{DisplayName: g.displayName, Description: g.description, Type: GroupSystem, BuiltIn: true}
			if err := tx.Put(ctx, &Resource{ServiceID: svc.ID, Kind: KindGroup, Name: g.name, Properties: mustJSON(p)}); err != nil {
				return err
			}
			if g.name == GroupDevelopers {
				if err := addDevelopers(ctx, tx, svc.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// addDevelopers makes every user of the service a member of developers.
func addDevelopers(ctx context.Context, tx Tx, serviceID string) error {
	users, _, err := tx.List(ctx, Query{Kind: KindUser, All: true, NoSecrets: true})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := addDeveloper(ctx, tx, serviceID, u.Name); err != nil {
			return err
		}
	}
	return nil
}

// addDeveloper makes the user named user a member of developers.
func addDeveloper(ctx context.Context, tx Tx, serviceID, user string) error {
	return tx.Put(ctx, &Resource{ServiceID: serviceID, Kind: KindGroupUser, Parent: KindGroup.Segment + "/" + GroupDevelopers,
		Name: user, Properties: json.RawMessage(`{}`)})
}

// GroupsOfUser lists the groups the user named user belongs to.
func (c *Catalog) GroupsOfUser(ctx context.Context, ref ServiceRef, user, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	if _, err := c.store.Get(ctx, svc.ID, KindUser, "", user); err != nil {
		return nil, 0, err
	}
	names, err := groupNamesOf(ctx, readerFor(c.store, svc.ID), user)
	if err != nil {
		return nil, 0, err
	}
	return c.store.List(ctx, svc.ID, Query{Kind: KindGroup, Names: names, Filter: filter, Page: page})
}

// groupNamesOf returns the names of the groups user belongs to.
func groupNamesOf(ctx context.Context, r Reader, user string) ([]string, error) {
	links, _, err := r.List(ctx, Query{Kind: KindGroupUser, AnyParent: true, Name: user, All: true, NoSecrets: true})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, strings.TrimPrefix(l.Parent, KindGroup.Segment+"/"))
	}
	return names, nil
}

// ProductsVisibleTo lists the published products the developer portal shows the user named
// user: those visible to a group the user belongs to. A product visible to no group is shown to
// nobody but administrators, as in APIM (docs/tags-groups.md).
func (c *Catalog) ProductsVisibleTo(ctx context.Context, ref ServiceRef, user, filter string, page Page) ([]Resource, int, error) {
	svc, err := c.store.GetService(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	rd := readerFor(c.store, svc.ID)
	groups, err := groupNamesOf(ctx, rd, user)
	if err != nil {
		return nil, 0, err
	}
	products := []string{}
	if len(groups) > 0 {
		links, _, err := rd.List(ctx, Query{Kind: KindProductGroup, AnyParent: true, Names: groups, All: true, NoSecrets: true})
		if err != nil {
			return nil, 0, err
		}
		for _, l := range links {
			products = append(products, strings.TrimPrefix(l.Parent, KindProduct.Segment+"/"))
		}
	}
	return c.store.List(ctx, svc.ID, Query{Kind: KindProduct, Names: products, PropEquals: map[string]string{"state": "published"},
		Filter: filter, Page: page})
}
