// Package signing holds management's configuration signing keys (issue 12): Ed25519 keys,
// generated once per installation and stored in Postgres with their private half sealed by
// secretbox, that sign every change and snapshot sent to gateway nodes, and from which the
// gateways' node keys (heartbeat and reply authentication) are derived. One key is active;
// Rotate retires it and makes a new one, and retired keys keep verifying for a while.
package signing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/pkg/configwire"
)

// RefreshEvery is how often a Keyring reads the keys again, so that a rotation by another
// management replica reaches it.
const RefreshEvery = 30 * time.Second

// RetiredVerifyFor is how long a retired key stays among the keys nodes verify with: as long
// as the change stream keeps a change (outbox.StreamMaxAge), so that every change still in the
// stream verifies.
const RetiredVerifyFor = 7 * 24 * time.Hour

// Keyring is the signing keys of one installation. It is safe for concurrent use.
type Keyring struct {
	pool *pgxpool.Pool
	box  *secretbox.Box
	log  *slog.Logger

	mu  sync.Mutex
	cur *keys
}

// keys is one reading of the table.
type keys struct {
	active *configwire.Signer
	verify []configwire.VerifyKey // the active key and those retired within RetiredVerifyFor
	seeds  map[string][]byte      // every key's seed, by id, for node keys
}

// Open returns the Keyring of the database of pool, creating the installation's first key if
// there is none. A nil log discards logs.
func Open(ctx context.Context, pool *pgxpool.Pool, box *secretbox.Box, log *slog.Logger) (*Keyring, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{pool: pool, box: box, log: log}
	if err := k.ensureActive(ctx); err != nil {
		return nil, err
	}
	if _, err := k.load(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// ensureActive creates an active key unless one exists; replicas racing here create one
// between them (the partial unique index admits a single active key).
func (k *Keyring) ensureActive(ctx context.Context) error {
	var n int
	if err := k.pool.QueryRow(ctx, "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL").Scan(&n); err != nil {
		return fmt.Errorf("signing: read keys: %w", err)
	}
	if n > 0 {
		return nil
	}
	id, pub, sealed, err := k.generate()
	if err != nil {
		return err
	}
	if _, err := k.pool.Exec(ctx, `INSERT INTO signing_keys (id, public_key, sealed_seed) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, id, pub, sealed); err != nil {
		return fmt.Errorf("signing: store a new key: %w", err)
	}
	k.log.InfoContext(ctx, "configuration signing key created", "key_id", id)
	return nil
}

// generate makes a key and seals its seed.
func (k *Keyring) generate() (id string, pub ed25519.PublicKey, sealed []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, nil, fmt.Errorf("signing: generate a key: %w", err)
	}
	id = configwire.KeyID(pub)
	return id, pub, k.box.Seal(priv.Seed(), aad(id)), nil
}

// aad binds a sealed seed to its key id.
func aad(id string) []byte { return []byte("signing_keys/" + id) }

// Rotate retires the active key and makes a new one active, returning its id. Changes and
// snapshots are signed with the new key at once by this replica and within RefreshEvery by the
// others (Run); a
// node that meets a key it does not know yet fetches a snapshot, which lists it.
func (k *Keyring) Rotate(ctx context.Context) (string, error) {
	id, pub, sealed, err := k.generate()
	if err != nil {
		return "", err
	}
	err = pgx.BeginFunc(ctx, k.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO signing_keys (id, public_key, sealed_seed) VALUES ($1, $2, $3)", id, pub, sealed)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("signing: rotate: %w", err)
	}
	if _, err := k.load(ctx); err != nil {
		return "", err
	}
	k.log.InfoContext(ctx, "configuration signing key rotated", "key_id", id)
	return id, nil
}

// Run reads the keys again every RefreshEvery until ctx ends, then returns nil, so that a
// rotation by another management replica reaches this one. A failed read keeps the keys read
// before and is logged.
func (k *Keyring) Run(ctx context.Context) error {
	t := time.NewTicker(RefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := k.load(ctx); err != nil && ctx.Err() == nil {
			k.log.WarnContext(ctx, "reading the signing keys failed; using those read before", "err", err)
		}
	}
}

// current returns the keys last read.
func (k *Keyring) current() *keys {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur
}

func (k *Keyring) load(ctx context.Context) (*keys, error) {
	rows, err := k.pool.Query(ctx, `SELECT id, public_key, sealed_seed, retired_at IS NULL,
		retired_at IS NULL OR retired_at > now() - make_interval(secs => $1),
		retired_at + make_interval(secs => $1)
		FROM signing_keys ORDER BY created_at DESC`, RetiredVerifyFor.Seconds())
	if err != nil {
		return nil, fmt.Errorf("signing: read keys: %w", err)
	}
	defer rows.Close()
	next := &keys{seeds: map[string][]byte{}}
	for rows.Next() {
		var (
			id             string
			pub, sealed    []byte
			active, listed bool
			until          *time.Time // when a retired key stops verifying
		)
		if err := rows.Scan(&id, &pub, &sealed, &active, &listed, &until); err != nil {
			return nil, fmt.Errorf("signing: read keys: %w", err)
		}
		seed, err := k.box.Open(sealed, aad(id))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("signing: key %s does not open with MANAGEMENT_ENCRYPTION_KEY: %w", id, errors.Join(err, secretbox.ErrOpen))
		}
		next.seeds[id] = seed
		if listed {
			vk := configwire.VerifyKey{ID: id, Key: pub}
			if until != nil {
				vk.Until = until.UTC()
			}
			next.verify = append(next.verify, vk)
		}
		if active {
			next.active = configwire.NewSigner(ed25519.NewKeyFromSeed(seed))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("signing: read keys: %w", err)
	}
	if next.active == nil {
		return nil, errors.New("signing: no active key")
	}
	k.mu.Lock()
	k.cur = next
	k.mu.Unlock()
	return next, nil
}

// Signer returns the Signer of the active key.
func (k *Keyring) Signer() *configwire.Signer { return k.current().active }

// VerifyKeys returns the public keys nodes verify with: the active key's and those of keys
// retired within RetiredVerifyFor, each with the end of its window as its Until.
func (k *Keyring) VerifyKeys() []configwire.VerifyKey { return k.current().verify }

// NodeKey returns the node key of gateway in the service serviceID bound to binding (the
// catalog.GatewayKeyBinding of the gateway key that signed the caller's token), derived from the
// active key: what the snapshot call hands that gateway's nodes.
func (k *Keyring) NodeKey(serviceID, gateway string, binding []byte) configwire.NodeKey {
	cur := k.current()
	id := cur.active.KeyID()
	return configwire.DeriveNodeKey(id, cur.seeds[id], serviceID, gateway, binding)
}

// NodeKeyFor returns the node key of gateway in the service serviceID bound to binding, derived
// from the key id, reporting false for a key it does not know: what a message's authentication
// is checked with (gatewaykeys.Cache). It never reads the database, so forged ids cost nothing.
func (k *Keyring) NodeKeyFor(id, serviceID, gateway string, binding []byte) (configwire.NodeKey, bool) {
	seed, ok := k.current().seeds[id]
	if !ok {
		return configwire.NodeKey{}, false
	}
	return configwire.DeriveNodeKey(id, seed, serviceID, gateway, binding), true
}
