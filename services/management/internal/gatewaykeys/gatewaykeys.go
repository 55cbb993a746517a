// Package gatewaykeys checks the node authentication of the messages gateway nodes send
// management (heartbeats, live-connection replies, usage batches) against the gateway's current
// keys (issue 12). A node key is bound to the gateway key that signed its node's token
// (catalog.GatewayKeyBinding), so regenerating that key invalidates it; the Cache holds every
// gateway's bindings in memory, so that no message costs a database read, and follows Postgres
// notifications (NotifyChannel, sent by the store whenever a gateway is written or deleted) to
// stay current.
package gatewaykeys

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/pkg/configwire"
)

// NotifyChannel is the Postgres channel the store notifies, in the transaction that writes or
// deletes a gateway resource (or deletes a service), with the service's internal id as payload.
const NotifyChannel = "gatehouse_gateways"

// Source reads the gateways' bindings (catalog.Catalog).
type Source interface {
	// GatewayKeyBindings returns the bindings of every gateway of the service serviceID, or of
	// every service when serviceID is "".
	GatewayKeyBindings(ctx context.Context, serviceID string) ([]catalog.GatewayBindings, error)
}

// Deriver derives node keys from management's signing keys (signing.Keyring).
type Deriver interface {
	// NodeKeyFor returns the node key of gateway in the service serviceID, bound to binding,
	// derived from the signing key id; false when the id is unknown.
	NodeKeyFor(id, serviceID, gateway string, binding []byte) (configwire.NodeKey, bool)
}

// Cache holds the node-key bindings of every gateway resource. It is safe for concurrent use.
type Cache struct {
	pool *pgxpool.Pool
	src  Source
	keys Deriver
	log  *slog.Logger

	mu sync.RWMutex
	// byService maps a service id to its gateways' bindings, by lower-cased gateway name.
	byService map[string]map[string][][]byte
}

// Open returns a Cache holding the bindings of every gateway as they are now; Follow keeps it
// current. A nil log discards logs.
func Open(ctx context.Context, pool *pgxpool.Pool, src Source, keys Deriver, log *slog.Logger) (*Cache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{pool: pool, src: src, keys: keys, log: log, byService: map[string]map[string][][]byte{}}
	if err := c.load(ctx, ""); err != nil {
		return nil, err
	}
	return c, nil
}

// Verify checks auth, a bus.HeaderNodeAuth value, over a message on subject with data from a
// node of gateway in the service serviceID. It returns nil when auth was made with the node
// key of one of the gateway's current keys, and otherwise an error wrapping
// configwire.ErrUnsigned (no auth) or configwire.ErrForged: another gateway's key, a key
// bound to a regenerated gateway key, an unknown signing key id, or other bytes.
func (c *Cache) Verify(subject string, data []byte, auth, serviceID, gateway string) error {
	if auth == "" {
		return configwire.ErrUnsigned
	}
	id := configwire.NodeAuthKeyID(auth)
	for _, b := range c.bindings(serviceID, gateway) {
		key, ok := c.keys.NodeKeyFor(id, serviceID, gateway, b)
		if !ok {
			break
		}
		if key.Verify(subject, data, auth) == nil {
			return nil
		}
	}
	return configwire.ErrForged
}

// bindings returns the bindings of gateway (case-insensitively) in the service serviceID.
func (c *Cache) bindings(serviceID, gateway string) [][]byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byService[serviceID][strings.ToLower(gateway)]
}

// load reads the bindings of the gateways of the service serviceID again (of every service when
// serviceID is "") and replaces what the Cache held for it.
func (c *Cache) load(ctx context.Context, serviceID string) error {
	all, err := c.src.GatewayKeyBindings(ctx, serviceID)
	if err != nil {
		return fmt.Errorf("gatewaykeys: read gateway keys: %w", err)
	}
	next := map[string]map[string][][]byte{}
	for _, g := range all {
		if next[g.ServiceID] == nil {
			next[g.ServiceID] = map[string][][]byte{}
		}
		next[g.ServiceID][strings.ToLower(g.Gateway)] = g.Bindings
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if serviceID == "" {
		c.byService = next
		return nil
	}
	if next[serviceID] == nil {
		delete(c.byService, serviceID)
	} else {
		c.byService[serviceID] = next[serviceID]
	}
	return nil
}

// Follow listens on NotifyChannel on a connection of its own, reads every gateway once
// listening (so that what changed before, while no one listened, is read too), and then the
// gateways of the service each notification names, until ctx ends (nil) or the connection
// fails (the error; call Follow again to resume).
func (c *Cache) Follow(ctx context.Context) error {
	err := c.follow(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *Cache) follow(ctx context.Context) error {
	pc, err := c.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("gatewaykeys: acquire connection: %w", err)
	}
	// A listening session stays out of the pool and is closed when done.
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize()); err != nil {
		return fmt.Errorf("gatewaykeys: listen: %w", err)
	}
	if err := c.load(ctx, ""); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("gatewaykeys: wait for notifications: %w", err)
		}
		if err := c.load(ctx, n.Payload); err != nil {
			return err
		}
	}
}
