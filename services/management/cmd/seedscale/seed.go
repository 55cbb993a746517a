package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/store"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/configwire"
)

type seedConfig struct {
	shape
	databaseURL   string
	encryptionKey string
	backend       string
	tokenLifetime time.Duration
}

func parseSeedConfig(args []string) (seedConfig, error) {
	var c seedConfig
	fs := flag.NewFlagSet("seedscale seed", flag.ContinueOnError)
	c.flags(fs)
	fs.StringVar(&c.databaseURL, "database-url", env("DATABASE_URL", ""), "Postgres URL of a fresh database (DATABASE_URL)")
	fs.StringVar(&c.encryptionKey, "encryption-key", env("MANAGEMENT_ENCRYPTION_KEY", secretbox.DevKey), "management's key sealing secrets (MANAGEMENT_ENCRYPTION_KEY)")
	fs.StringVar(&c.backend, "backend", "ws://127.0.0.1:9/", "serviceUrl of every API")
	fs.DurationVar(&c.tokenLifetime, "token-lifetime", 24*time.Hour, "lifetime of the printed gateway token")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.databaseURL == "" {
		return c, errors.New("DATABASE_URL is required")
	}
	return c, c.check()
}

// seed creates the service and prints nothing; it returns a gateway token for the service's
// gateway. The first API, product link, gateway link and subscription, the products and the
// gateway go through the catalog, as an ARM client would create them. The bulk is then copied
// in one transaction with the same columns, sealed secrets (aad = resource id), key hashes,
// etags and revision the store writes, as one revision of the service whose outbox row is a
// resync (what the store publishes for a change too large to send).
func seed(ctx context.Context, c seedConfig, log *slog.Logger) (string, error) {
	start := time.Now()
	if err := migrate.Migrate(ctx, c.databaseURL); err != nil {
		return "", err
	}
	box, err := secretbox.New(c.encryptionKey)
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, c.databaseURL)
	if err != nil {
		return "", err
	}
	defer pool.Close()
	st := store.New(pool, box)
	cat := catalog.New(st, log)
	ref := catalog.ServiceRef{Subscription: c.subscription, ResourceGroup: c.resourceGroup, Name: c.service}

	svc, created, err := cat.PutService(ctx, ref, catalog.ServiceInput{Location: "local",
		SKU:        &catalog.ServiceSKU{Name: "Developer", Capacity: 1},
		Properties: json.RawMessage(`{"publisherEmail":"scale@example.com","publisherName":"Scale"}`)}, catalog.Options{})
	if err != nil {
		return "", fmt.Errorf("service: %w", err)
	}
	if !created {
		return "", fmt.Errorf("service %s exists already: seed a fresh database", c.armPath())
	}
	tpl, err := seedTemplates(ctx, cat, st, svc, c)
	if err != nil {
		return "", err
	}
	log.Info("templates created through the catalog", "took", time.Since(start).Round(time.Millisecond))

	var rev int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `UPDATE services SET revision = revision + 1 WHERE id = $1 RETURNING revision`, svc.ID).Scan(&rev); err != nil {
			return err
		}
		b := bulk{c: c, svc: svc, box: box, tpl: tpl, rev: rev, now: time.Now().UTC()}
		for _, part := range []struct {
			what string
			rows pgx.CopyFromSource
		}{
			{"APIs", b.apis()},
			{"onHandshake operations", b.operations()},
			{"gateway links", b.gatewayLinks()},
			{"product links", b.productLinks()},
			{"subscriptions", b.subscriptions()},
		} {
			t := time.Now()
			n, err := tx.CopyFrom(ctx, pgx.Identifier{"resources"}, copyColumns, part.rows)
			if err != nil {
				return fmt.Errorf("copying %s: %w", part.what, err)
			}
			log.Info("copied", "what", part.what, "rows", n, "took", time.Since(t).Round(time.Millisecond))
		}
		payload, err := json.Marshal(configwire.Change{ServiceID: svc.ID, Revision: rev, Items: []configwire.Item{{Op: configwire.OpResync}}})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO outbox (service_id, revision, payload) VALUES ($1, $2, $3)`, svc.ID, rev, payload); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, outbox.NotifyChannel)
		return err
	})
	if err != nil {
		return "", err
	}
	// A live database reaches this state through autovacuum: planner statistics, and the key
	// index's pending list merged (until it is, every key lookup scans megabytes of it).
	t := time.Now()
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) resources`); err != nil {
		return "", err
	}
	log.Info("vacuumed", "took", time.Since(t).Round(time.Millisecond))
	token, err := cat.GenerateGatewayToken(ctx, ref, c.gateway, "primary", time.Now().Add(c.tokenLifetime))
	if err != nil {
		return "", err
	}
	log.Info("seeded", "service", c.armPath(), "revision", rev, "apis", c.apis, "subscriptions", c.subscriptions,
		"products", c.products, "took", time.Since(start).Round(time.Millisecond))
	return token, nil
}

// templates are the stored properties of resources created through the catalog, which the
// bulk copies vary.
type templates struct {
	api          catalog.APIProperties
	operation    json.RawMessage
	subscription catalog.SubscriptionProperties
}

func seedTemplates(ctx context.Context, cat *catalog.Catalog, st *store.Store, svc catalog.Service, c seedConfig) (templates, error) {
	var tpl templates
	ref := svc.Ref
	put := func(kind *catalog.Kind, parent, name string, props any) error {
		raw, err := json.Marshal(props)
		if err != nil {
			return err
		}
		if _, _, err := cat.Put(ctx, ref, kind, parent, name, raw, catalog.Options{}); err != nil {
			return fmt.Errorf("%s %s/%s: %w", kind.Name, parent, name, err)
		}
		return nil
	}
	if err := put(catalog.KindGateway, "", c.gateway, map[string]any{"locationData": map[string]string{"name": "scale"}}); err != nil {
		return tpl, err
	}
	for p := range c.products {
		if err := put(catalog.KindProduct, "", productName(p), map[string]any{"displayName": "Scale product " + fmt.Sprint(p),
			"subscriptionRequired": true, "state": "published"}); err != nil {
			return tpl, err
		}
	}
	if err := put(catalog.KindAPI, "", apiName(0), map[string]any{"displayName": "Scale API 0", "type": "websocket",
		"path": apiPath(0), "serviceUrl": c.backend, "protocols": []string{"ws", "wss"}}); err != nil {
		return tpl, err
	}
	if err := put(catalog.KindGatewayAPI, "gateways/"+c.gateway, apiName(0), map[string]any{}); err != nil {
		return tpl, err
	}
	if err := put(catalog.KindProductAPI, "products/"+productName(0), apiName(0), map[string]any{}); err != nil {
		return tpl, err
	}
	if err := put(catalog.KindSubscription, "", subName(0), map[string]any{"displayName": "Scale subscription 0",
		"scope": "/" + c.scope(0), "state": "active"}); err != nil {
		return tpl, err
	}

	get := func(kind *catalog.Kind, parent, name string, into any) error {
		r, err := st.Get(ctx, svc.ID, kind, parent, name)
		if err != nil {
			return fmt.Errorf("reading back %s %s: %w", kind.Name, name, err)
		}
		return json.Unmarshal(r.Properties, into)
	}
	if err := get(catalog.KindAPI, "", apiName(0), &tpl.api); err != nil {
		return tpl, err
	}
	if err := get(catalog.KindOperation, "apis/"+apiName(0), catalog.OnHandshake, &tpl.operation); err != nil {
		return tpl, err
	}
	return tpl, get(catalog.KindSubscription, "", subName(0), &tpl.subscription)
}

var copyColumns = []string{"id", "service_id", "kind", "parent", "name", "properties", "sealed", "key_hashes",
	"etag", "revision", "created_at", "updated_at"}

// bulk produces the copied rows; each source streams, so memory stays flat at any scale.
type bulk struct {
	c   seedConfig
	svc catalog.Service
	box *secretbox.Box
	tpl templates
	rev int64
	now time.Time
}

// rows is a pgx.CopyFromSource of n rows made by row(i) for i in [from, n).
func rows(from, n int, row func(i int) ([]any, error)) pgx.CopyFromSource {
	i := from - 1
	return pgx.CopyFromFunc(func() ([]any, error) {
		i++
		if i >= n {
			return nil, nil
		}
		return row(i)
	})
}

// resource is one row of copyColumns.
func (b *bulk) resource(id, kind, parent, name string, props []byte, sealed []byte, hashes []string) []any {
	if hashes == nil {
		hashes = []string{}
	}
	return []any{id, b.svc.ID, kind, parent, name, props, sealed, hashes, newETag(), b.rev, b.now, b.now}
}

func (b *bulk) apis() pgx.CopyFromSource {
	return rows(1, b.c.apis, func(i int) ([]any, error) {
		p := b.tpl.api
		p.DisplayName, p.Path = fmt.Sprintf("Scale API %d", i), apiPath(i)
		props, err := json.Marshal(p)
		return b.resource(uuid.NewString(), catalog.KindAPI.Name, "", apiName(i), props, nil, nil), err
	})
}

func (b *bulk) operations() pgx.CopyFromSource {
	return rows(1, b.c.apis, func(i int) ([]any, error) {
		return b.resource(uuid.NewString(), catalog.KindOperation.Name, "apis/"+apiName(i), catalog.OnHandshake, b.tpl.operation, nil, nil), nil
	})
}

func (b *bulk) gatewayLinks() pgx.CopyFromSource {
	return rows(1, b.c.apis, func(i int) ([]any, error) {
		return b.resource(uuid.NewString(), catalog.KindGatewayAPI.Name, "gateways/"+b.c.gateway, apiName(i), []byte(`{}`), nil, nil), nil
	})
}

func (b *bulk) productLinks() pgx.CopyFromSource {
	return rows(1, b.c.apis, func(i int) ([]any, error) {
		return b.resource(uuid.NewString(), catalog.KindProductAPI.Name, "products/"+productName(i%b.c.products), apiName(i), []byte(`{}`), nil, nil), nil
	})
}

func (b *bulk) subscriptions() pgx.CopyFromSource {
	prefix := catalog.ServiceID(b.svc.Ref) + "/"
	return rows(1, b.c.subscriptions, func(i int) ([]any, error) {
		p := b.tpl.subscription
		p.DisplayName, p.Scope = fmt.Sprintf("Scale subscription %d", i), prefix+b.c.scope(i)
		props, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		primary, secondary := catalog.NewSubscriptionKey(), catalog.NewSubscriptionKey()
		secrets, err := json.Marshal(map[string]string{"primaryKey": primary, "secondaryKey": secondary})
		if err != nil {
			return nil, err
		}
		id := uuid.NewString()
		return b.resource(id, catalog.KindSubscription.Name, "", subName(i), props, b.box.Seal(secrets, []byte(id)),
			[]string{configwire.KeyHash(primary), configwire.KeyHash(secondary)}), nil
	})
}

// newETag is the store's ETag shape: a quoted random 64-bit hex string.
func newETag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return `"` + hex.EncodeToString(b) + `"`
}
