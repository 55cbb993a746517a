// Package store keeps management's catalog in Postgres with pgx, sealing secrets with secretbox
// and writing each change's outbox row in the transaction of the change.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/gatewaykeys"
	"gatehouse.dev/management/internal/odata"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/pkg/configwire"
)

// Page sizes of lists: the default when $top is absent and the most one page holds.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Store implements catalog.Store on Postgres. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	box  *secretbox.Box
}

var _ catalog.Store = (*Store)(nil)

// New returns a Store on pool sealing secrets with box.
func New(pool *pgxpool.Pool, box *secretbox.Box) *Store { return &Store{pool: pool, box: box} }

// querier is what pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func newETag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return `"` + hex.EncodeToString(b) + `"`
}

// translate maps driver errors to catalog errors.
func translate(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return catalog.ErrNotFound
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		switch pe.ConstraintName {
		case "resources_api_path":
			return &catalog.ValidationError{Target: "path", Message: "Another API already has this path."}
		default:
			return &catalog.ConflictError{Message: "The resource was changed concurrently by another request; retry."}
		}
	}
	return err
}

// ---- services ----

const serviceColumns = `id, subscription_id, resource_group, name, location, sku, tags, properties, etag, revision, created_at, updated_at`

func scanService(row pgx.Row) (catalog.Service, error) {
	var s catalog.Service
	var tags []byte
	err := row.Scan(&s.ID, &s.Ref.Subscription, &s.Ref.ResourceGroup, &s.Ref.Name, &s.Location, &s.SKU, &tags,
		&s.Properties, &s.ETag, &s.Revision, &s.Created, &s.Updated)
	if err != nil {
		return s, err
	}
	s.Tags = map[string]string{}
	_ = json.Unmarshal(tags, &s.Tags)
	return s, nil
}

// GetService implements catalog.Store.
func (s *Store) GetService(ctx context.Context, ref catalog.ServiceRef) (catalog.Service, error) {
	svc, err := scanService(s.pool.QueryRow(ctx, `SELECT `+serviceColumns+` FROM services
		WHERE lower(subscription_id) = lower($1) AND lower(resource_group) = lower($2) AND lower(name) = lower($3)`,
		ref.Subscription, ref.ResourceGroup, ref.Name))
	if errors.Is(err, pgx.ErrNoRows) {
		return svc, &catalog.NotFoundError{What: "Service"}
	}
	return svc, translate(err)
}

// GetServiceByID implements catalog.Store.
func (s *Store) GetServiceByID(ctx context.Context, id string) (catalog.Service, error) {
	if _, err := uuid.Parse(id); err != nil {
		return catalog.Service{}, &catalog.NotFoundError{What: "Service"}
	}
	svc, err := scanService(s.pool.QueryRow(ctx, `SELECT `+serviceColumns+` FROM services WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return svc, &catalog.NotFoundError{What: "Service"}
	}
	return svc, translate(err)
}

// ListServices implements catalog.Store.
func (s *Store) ListServices(ctx context.Context, subscription, resourceGroup string, page catalog.Page) ([]catalog.Service, int, error) {
	return s.listServices(ctx, `lower(subscription_id) = lower($1) AND ($2 = '' OR lower(resource_group) = lower($2))`,
		[]any{subscription, resourceGroup}, page)
}

// ListServicesIn implements catalog.Store.
func (s *Store) ListServicesIn(ctx context.Context, subscriptions []string, page catalog.Page) ([]catalog.Service, int, error) {
	lower := make([]string, len(subscriptions))
	for i, sub := range subscriptions {
		lower[i] = strings.ToLower(sub)
	}
	return s.listServices(ctx, `($1 OR lower(subscription_id) = ANY($2))`, []any{slices.Contains(subscriptions, "*"), lower}, page)
}

// listServices lists a page of the services matching where, whose placeholders are args.
func (s *Store) listServices(ctx context.Context, where string, args []any, page catalog.Page) ([]catalog.Service, int, error) {
	top, skip := pageOf(page)
	n := len(args)
	rows, err := s.pool.Query(ctx, `SELECT `+serviceColumns+`, count(*) OVER () FROM services WHERE `+where+
		fmt.Sprintf(` ORDER BY lower(subscription_id), lower(resource_group), lower(name) LIMIT $%d OFFSET $%d`, n+1, n+2),
		append(args, top, skip)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []catalog.Service
	total := 0
	for rows.Next() {
		var svc catalog.Service
		var tags []byte
		if err := rows.Scan(&svc.ID, &svc.Ref.Subscription, &svc.Ref.ResourceGroup, &svc.Ref.Name, &svc.Location, &svc.SKU,
			&tags, &svc.Properties, &svc.ETag, &svc.Revision, &svc.Created, &svc.Updated, &total); err != nil {
			return nil, 0, err
		}
		svc.Tags = map[string]string{}
		_ = json.Unmarshal(tags, &svc.Tags)
		out = append(out, svc)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(out) == 0 && skip > 0 {
		err = s.pool.QueryRow(ctx, `SELECT count(*) FROM services WHERE `+where, args...).Scan(&total)
	}
	return out, total, err
}

// ServiceSecrets implements catalog.Store. The first caller's secrets win: a concurrent caller
// reads back the ones stored, so every replica signs with the same keys.
func (s *Store) ServiceSecrets(ctx context.Context, serviceID string, create func() map[string]string) (map[string]string, error) {
	if _, err := uuid.Parse(serviceID); err != nil {
		return nil, &catalog.NotFoundError{What: "Service"}
	}
	aad := []byte("services/" + serviceID)
	var sealed []byte
	err := s.pool.QueryRow(ctx, `SELECT sealed FROM services WHERE id = $1`, serviceID).Scan(&sealed)
	if err == nil && sealed == nil {
		plain, merr := json.Marshal(create())
		if merr != nil {
			return nil, merr
		}
		err = s.pool.QueryRow(ctx, `UPDATE services SET sealed = coalesce(sealed, $2) WHERE id = $1 RETURNING sealed`,
			serviceID, s.box.Seal(plain, aad)).Scan(&sealed)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &catalog.NotFoundError{What: "Service"}
	}
	if err != nil {
		return nil, err
	}
	plain, err := s.box.Open(sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("store: open secrets of service %s: %w", serviceID, err)
	}
	var secrets map[string]string
	if err := json.Unmarshal(plain, &secrets); err != nil {
		return nil, fmt.Errorf("store: secrets of service %s: %w", serviceID, err)
	}
	return secrets, nil
}

// PutService implements catalog.Store.
func (s *Store) PutService(ctx context.Context, svc *catalog.Service) error {
	tags, _ := json.Marshal(svc.Tags)
	svc.ETag = newETag()
	now := time.Now().UTC()
	if svc.ID == "" {
		svc.ID = uuid.NewString()
		svc.Created = now
		svc.Updated = now
		_, err := s.pool.Exec(ctx, `INSERT INTO services (id, subscription_id, resource_group, name, location, sku, tags, properties, etag, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)`,
			svc.ID, svc.Ref.Subscription, svc.Ref.ResourceGroup, svc.Ref.Name, svc.Location, svc.SKU, tags, svc.Properties, svc.ETag, now)
		return translate(err)
	}
	svc.Updated = now
	tag, err := s.pool.Exec(ctx, `UPDATE services SET location = $2, sku = $3, tags = $4, properties = $5, etag = $6, updated_at = $7 WHERE id = $1`,
		svc.ID, svc.Location, svc.SKU, tags, svc.Properties, svc.ETag, now)
	if err == nil && tag.RowsAffected() == 0 {
		return &catalog.NotFoundError{What: "Service"}
	}
	return translate(err)
}

// DeleteService implements catalog.Store. It publishes a deleteService change so gateways drop
// the service's configuration.
func (s *Store) DeleteService(ctx context.Context, id string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var rev int64
		if err := tx.QueryRow(ctx, `DELETE FROM services WHERE id = $1 RETURNING revision + 1`, id).Scan(&rev); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return &catalog.NotFoundError{What: "Service"}
			}
			return err
		}
		ch := configwire.Change{ServiceID: id, Revision: rev, Items: []configwire.Item{{Op: configwire.OpDeleteService}}}
		if err := writeOutbox(ctx, tx, ch); err != nil {
			return err
		}
		return notifyGateways(ctx, tx, id)
	})
}

// notifyGateways tells every management replica, when tx commits, that the gateway resources of
// the service serviceID changed, so that they read those gateways' keys again
// (gatewaykeys.Cache). A regenerated key then stops verifying its old node keys at once.
func notifyGateways(ctx context.Context, tx pgx.Tx, serviceID string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, gatewaykeys.NotifyChannel, serviceID)
	return err
}

func writeOutbox(ctx context.Context, tx pgx.Tx, ch configwire.Change) error {
	payload, err := json.Marshal(ch)
	if err != nil {
		return err
	}
	if len(payload) > configwire.MaxChangeBytes {
		ch.Items = []configwire.Item{{Op: configwire.OpResync}}
		if payload, err = json.Marshal(ch); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO outbox (service_id, revision, payload) VALUES ($1, $2, $3)`, ch.ServiceID, ch.Revision, payload); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, outbox.NotifyChannel)
	return err
}

// ---- resources ----

const resourceColumns = `id, service_id, kind, parent, name, properties, sealed, key_hashes, etag, revision, created_at, updated_at`

// scanResource scans a row of resourceColumns and then extra, opening the sealed secrets when
// secrets is set.
func (s *Store) scanResource(row pgx.Row, secrets bool, extra ...any) (catalog.Resource, error) {
	var r catalog.Resource
	var kind string
	var sealed []byte
	// Properties scan as plain bytes: into a json.RawMessage pgx would validate every document
	// again with encoding/json, a third of the time of reading a million subscriptions.
	dest := append([]any{&r.ID, &r.ServiceID, &kind, &r.Parent, &r.Name, (*[]byte)(&r.Properties), &sealed, &r.KeyHashes,
		&r.ETag, &r.Revision, &r.Created, &r.Updated}, extra...)
	if err := row.Scan(dest...); err != nil {
		return r, err
	}
	r.Kind = catalog.KindByName(kind)
	if r.Kind == nil {
		return r, fmt.Errorf("store: resource %s has unknown kind %q", r.ID, kind)
	}
	if len(sealed) > 0 && secrets {
		plain, err := s.box.Open(sealed, []byte(r.ID))
		if err != nil {
			return r, fmt.Errorf("store: open secrets of %s: %w", r.ID, err)
		}
		if err := json.Unmarshal(plain, &r.Secrets); err != nil {
			return r, fmt.Errorf("store: secrets of %s: %w", r.ID, err)
		}
	}
	return r, nil
}

func (s *Store) get(ctx context.Context, q querier, serviceID string, kind *catalog.Kind, parent, name string) (catalog.Resource, error) {
	r, err := s.scanResource(q.QueryRow(ctx, `SELECT `+resourceColumns+` FROM resources
		WHERE service_id = $1 AND kind = $2 AND lower(parent) = lower($3) AND lower(name) = lower($4)`,
		serviceID, kind.Name, parent, name), true)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, &catalog.NotFoundError{What: kind.What}
	}
	return r, translate(err)
}

// Get implements catalog.Store.
func (s *Store) Get(ctx context.Context, serviceID string, kind *catalog.Kind, parent, name string) (catalog.Resource, error) {
	return s.get(ctx, s.pool, serviceID, kind, parent, name)
}

// GetByID implements catalog.Store.
func (s *Store) GetByID(ctx context.Context, id string) (catalog.Resource, error) {
	if _, err := uuid.Parse(id); err != nil {
		return catalog.Resource{}, catalog.ErrNotFound
	}
	r, err := s.scanResource(s.pool.QueryRow(ctx, `SELECT `+resourceColumns+` FROM resources WHERE id = $1`, id), true)
	return r, translate(err)
}

// Gateways implements catalog.Store.
func (s *Store) Gateways(ctx context.Context, serviceID string) ([]catalog.Resource, error) {
	where, args := `kind = $1`, []any{catalog.KindGateway.Name}
	if serviceID != "" {
		if _, err := uuid.Parse(serviceID); err != nil {
			return nil, nil
		}
		where, args = where+` AND service_id = $2`, append(args, serviceID)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+resourceColumns+` FROM resources WHERE `+where, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []catalog.Resource
	for rows.Next() {
		r, err := s.scanResource(rows, true)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, translate(rows.Err())
}

// List implements catalog.Store.
func (s *Store) List(ctx context.Context, serviceID string, q catalog.Query) ([]catalog.Resource, int, error) {
	return s.list(ctx, s.pool, serviceID, q)
}

// propName guards property names spliced into SQL; they come from code, never from clients.
var propName = regexp.MustCompile(`^[A-Za-z]+$`)

// selection is the WHERE clause of a read of resources, with its arguments.
type selection struct {
	where []string
	args  []any
	// plan is set when the conditions are served by partial expression and GIN indexes that a
	// cached generic plan (chosen after five executions of a statement) does not use: it would
	// scan every subscription of the service, seconds at a million. The unnamed statement of
	// DescribeExec is planned for its parameters every time.
	plan bool
}

func (sel *selection) arg(v any) string {
	sel.args = append(sel.args, v)
	return fmt.Sprintf("$%d", len(sel.args))
}

// queryArgs are the arguments of a query on the selection and then more.
func (sel *selection) queryArgs() []any {
	if sel.plan {
		return append([]any{pgx.QueryExecModeDescribeExec}, sel.args...)
	}
	return sel.args
}

// selectionOf builds the selection of q, with q's Page and Fields left to the caller. It asks
// db to lower-case the values of q.PropIn.
func selectionOf(ctx context.Context, db querier, serviceID string, q catalog.Query) (*selection, error) {
	sel := &selection{where: []string{"service_id = $1", "kind = $2"}, args: []any{serviceID, q.Kind.Name},
		plan: len(q.PropEquals) > 0 || len(q.PropIn) > 0 || q.KeyHash != ""}
	if !q.AnyParent {
		sel.where = append(sel.where, "lower(parent) = lower("+sel.arg(q.Parent)+")")
	}
	if q.Name != "" {
		sel.where = append(sel.where, "lower(name) = lower("+sel.arg(q.Name)+")")
	}
	if q.Names != nil {
		lower := make([]string, len(q.Names))
		for i, n := range q.Names {
			lower[i] = strings.ToLower(n)
		}
		sel.where = append(sel.where, "lower(name) = ANY("+sel.arg(lower)+")")
	}
	for prop, v := range q.PropEquals {
		if !propName.MatchString(prop) {
			return nil, fmt.Errorf("store: bad property name %q", prop)
		}
		sel.where = append(sel.where, "lower(properties ->> '"+prop+"') = lower("+sel.arg(v)+")")
	}
	for prop, vs := range q.PropIn {
		if !propName.MatchString(prop) {
			return nil, fmt.Errorf("store: bad property name %q", prop)
		}
		// The values go lower-cased by Postgres, as the property is, but as a parameter rather
		// than a subquery: the planner then sees how many rows match (all of a million, or a
		// few) and checks each row against a hash of the values, not a list of thousands.
		var lower []string
		if err := db.QueryRow(ctx, `SELECT COALESCE(array_agg(lower(v)), '{}') FROM unnest($1::text[]) AS v`, vs).Scan(&lower); err != nil {
			return nil, err
		}
		sel.where = append(sel.where, "lower(properties ->> '"+prop+"') = ANY("+sel.arg(lower)+"::text[])")
	}
	if q.KeyHash != "" {
		sel.where = append(sel.where, "key_hashes @> ARRAY["+sel.arg(q.KeyHash)+"]::text[]")
	}
	if q.Filter != "" {
		cond, fargs, err := filterSQL(q.Kind, q.Filter, len(sel.args)+1)
		if err != nil {
			return nil, err
		}
		sel.where = append(sel.where, "("+cond+")")
		sel.args = append(sel.args, fargs...)
	}
	return sel, nil
}

func (s *Store) list(ctx context.Context, db querier, serviceID string, q catalog.Query) ([]catalog.Resource, int, error) {
	sel, err := selectionOf(ctx, db, serviceID, q)
	if err != nil {
		return nil, 0, err
	}
	where := strings.Join(sel.where, " AND ")
	// A page counts every match with a window. All needs no count, and Unordered no sort:
	// Postgres would materialize a million rows (on disk) for either.
	var total int
	var extra []any
	columns, order := resourceColumns, ` ORDER BY lower(parent), lower(name)`
	if !q.All {
		columns, extra = resourceColumns+`, count(*) OVER ()`, []any{&total}
	}
	if q.Unordered && q.All {
		order = ""
	}
	sql := `SELECT ` + columns + ` FROM resources WHERE ` + where + order
	countArgs := sel.args
	if !q.All {
		top, skip := pageOf(q.Page)
		sql += " LIMIT " + sel.arg(top) + " OFFSET " + sel.arg(skip)
	}
	rows, err := db.Query(ctx, sql, sel.queryArgs()...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []catalog.Resource
	for rows.Next() {
		r, err := s.scanResource(rows, !q.NoSecrets, extra...)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if q.All {
		total = len(out)
	}
	if len(out) == 0 && q.Page.Skip > 0 && !q.All {
		// Past the last page: count without the window.
		err = db.QueryRow(ctx, `SELECT count(*) FROM resources WHERE `+where, countArgs...).Scan(&total)
	}
	return out, total, err
}

// each calls fn with every resource q selects, in no particular order, as the rows arrive.
// With q.Fields it reads only those properties (catalog.Query.Fields).
func (s *Store) each(ctx context.Context, db querier, serviceID string, q catalog.Query, fn func(catalog.Resource) error) error {
	sel, err := selectionOf(ctx, db, serviceID, q)
	if err != nil {
		return err
	}
	columns := resourceColumns
	if q.Fields != nil {
		columns = `parent, name, key_hashes, revision`
		for _, f := range q.Fields {
			if !propName.MatchString(f) {
				return fmt.Errorf("store: bad property name %q", f)
			}
			columns += `, COALESCE(properties ->> '` + f + `', '')`
		}
	}
	rows, err := db.Query(ctx, `SELECT `+columns+` FROM resources WHERE `+strings.Join(sel.where, " AND "), sel.queryArgs()...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var dest []any
	for rows.Next() {
		var r catalog.Resource
		if q.Fields == nil {
			if r, err = s.scanResource(rows, !q.NoSecrets); err != nil {
				return err
			}
		} else {
			r.ServiceID, r.Kind, r.Fields = serviceID, q.Kind, make([]string, len(q.Fields))
			dest = append(dest[:0], &r.Parent, &r.Name, &r.KeyHashes, &r.Revision)
			for i := range r.Fields {
				dest = append(dest, &r.Fields[i])
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func pageOf(p catalog.Page) (top, skip int) {
	top = p.Top
	if top <= 0 {
		top = DefaultPageSize
	}
	return min(top, MaxPageSize), max(p.Skip, 0)
}

func filterSQL(kind *catalog.Kind, filter string, argStart int) (string, []any, error) {
	expr, err := odata.Parse(filter)
	if err != nil {
		return "", nil, &catalog.FilterError{Message: err.Error()}
	}
	fields := make(map[string]odata.Field, len(kind.Filter))
	for name, f := range kind.Filter {
		col := "name"
		if f.Prop != "" {
			if !propName.MatchString(f.Prop) {
				return "", nil, fmt.Errorf("store: bad filter property %q", f.Prop)
			}
			col = "(properties ->> '" + f.Prop + "')"
		}
		field := odata.Field{SQL: col, Type: odata.TypeString}
		if f.Type == "bool" {
			field = odata.Field{SQL: "COALESCE(" + col + "::boolean, false)", Type: odata.TypeBool}
		}
		if f.EqOnly {
			field.Ops = []odata.Op{odata.OpEq, odata.OpNe}
		}
		field.Property = f.Prop != ""
		fields[name] = field
	}
	cond, args, err := odata.ToSQL(expr, fields, argStart)
	var oe *odata.Error
	if errors.As(err, &oe) {
		return "", nil, &catalog.FilterError{Message: oe.Error()}
	}
	return cond, args, err
}

// Write implements catalog.Store.
func (s *Store) Write(ctx context.Context, serviceID string, fn func(ctx context.Context, tx catalog.Tx) error) (int64, error) {
	var rev int64
	err := pgx.BeginFunc(ctx, s.pool, func(ptx pgx.Tx) error {
		if err := ptx.QueryRow(ctx, `UPDATE services SET revision = revision + 1 WHERE id = $1 RETURNING revision`, serviceID).Scan(&rev); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return &catalog.NotFoundError{What: "Service"}
			}
			return err
		}
		t := &txn{s: s, tx: ptx, serviceID: serviceID, rev: rev}
		if err := fn(ctx, t); err != nil {
			return err
		}
		if len(t.items) == 0 {
			return errNoChange
		}
		if t.gateways {
			if err := notifyGateways(ctx, ptx, serviceID); err != nil {
				return err
			}
		}
		return writeOutbox(ctx, ptx, configwire.Change{ServiceID: serviceID, Revision: rev, Items: t.items})
	})
	if errors.Is(err, errNoChange) {
		return rev - 1, nil
	}
	return rev, translate(err)
}

var errNoChange = errors.New("no change")

// Snapshot implements catalog.Store with a repeatable-read, read-only transaction.
func (s *Store) Snapshot(ctx context.Context, serviceID string, fn func(ctx context.Context, r catalog.SnapshotReader, revision int64) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(ptx pgx.Tx) error {
		var rev int64
		if err := ptx.QueryRow(ctx, `SELECT revision FROM services WHERE id = $1`, serviceID).Scan(&rev); err != nil {
			return translate(err)
		}
		return fn(ctx, &txn{s: s, tx: ptx, serviceID: serviceID, rev: rev}, rev)
	})
}

// txn is a catalog.Tx on one service.
type txn struct {
	s         *Store
	tx        pgx.Tx
	serviceID string
	rev       int64
	items     []configwire.Item
	// gateways is set when a gateway resource was written or deleted (notifyGateways).
	gateways bool
}

func (t *txn) Revision() int64 { return t.rev }

func (t *txn) Get(ctx context.Context, kind *catalog.Kind, parent, name string) (catalog.Resource, error) {
	return t.s.get(ctx, t.tx, t.serviceID, kind, parent, name)
}

func (t *txn) List(ctx context.Context, q catalog.Query) ([]catalog.Resource, int, error) {
	return t.s.list(ctx, t.tx, t.serviceID, q)
}

func (t *txn) Each(ctx context.Context, q catalog.Query, fn func(catalog.Resource) error) error {
	return t.s.each(ctx, t.tx, t.serviceID, q, fn)
}

func (t *txn) Put(ctx context.Context, r *catalog.Resource) error {
	now := time.Now().UTC()
	r.ServiceID, r.ETag, r.Revision, r.Updated = t.serviceID, newETag(), t.rev, now
	insert := r.ID == ""
	if insert {
		r.ID, r.Created = uuid.NewString(), now
	}
	var sealed []byte
	if len(r.Secrets) > 0 {
		plain, err := json.Marshal(r.Secrets)
		if err != nil {
			return err
		}
		sealed = t.s.box.Seal(plain, []byte(r.ID))
	}
	if r.KeyHashes == nil {
		r.KeyHashes = []string{}
	}
	var err error
	if insert {
		_, err = t.tx.Exec(ctx, `INSERT INTO resources (`+resourceColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)`,
			r.ID, r.ServiceID, r.Kind.Name, r.Parent, r.Name, r.Properties, sealed, r.KeyHashes, r.ETag, r.Revision, now)
	} else {
		_, err = t.tx.Exec(ctx, `UPDATE resources SET properties = $2, sealed = $3, key_hashes = $4, etag = $5, revision = $6, updated_at = $7 WHERE id = $1`,
			r.ID, r.Properties, sealed, r.KeyHashes, r.ETag, r.Revision, now)
	}
	if err != nil {
		return translate(err)
	}
	t.gateways = t.gateways || r.Kind == catalog.KindGateway
	t.items = append(t.items, configwire.Item{Op: configwire.OpPut, Entity: catalog.WireEntity(*r, false)})
	return nil
}

func (t *txn) Delete(ctx context.Context, r catalog.Resource) error {
	if _, err := t.tx.Exec(ctx, `DELETE FROM resources WHERE id = $1`, r.ID); err != nil {
		return translate(err)
	}
	t.gateways = t.gateways || r.Kind == catalog.KindGateway
	t.items = append(t.items, configwire.Item{Op: configwire.OpDelete,
		Entity: configwire.Entity{Kind: r.Kind.Name, Parent: r.Parent, Name: r.Name, Revision: t.rev}})
	return nil
}
