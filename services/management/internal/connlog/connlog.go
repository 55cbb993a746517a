// Package connlog is management's connection log (issue 17): it receives the records of
// ended WebSocket sessions that gateway nodes publish on core NATS
// (configwire.ConnectionLogBatch on bus.ConnectionLogSubjects), keeps those a node
// authenticated with its gateway's node key, stores them in Postgres once per correlation id,
// prunes them by age and by rows per service, and answers filtered, paged reads.
package connlog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"

	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/reports"
)

// Defaults of Options.
const (
	// DefaultMaxAge is how long a record is kept (MANAGEMENT_CONNECTION_LOG_RETENTION).
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultMaxRows is how many records of one service are kept, the newest
	// (MANAGEMENT_CONNECTION_LOG_MAX_ROWS).
	DefaultMaxRows = 100000
	// DefaultPruneEvery is how often Run prunes.
	DefaultPruneEvery = time.Minute
)

// QueueGroup spreads the batches over management's replicas: each is stored by one.
const QueueGroup = "gatehouse-connlog"

// RejectKind is the kind under which Options.Rejected counts dropped batches.
const RejectKind = "connlog"

// Page bounds: a JSON page holds at most MaxTop entries, a CSV export at most MaxExport.
const (
	MaxTop    = 1000
	MaxExport = 10000
)

// Options configure a Log. The zero value of a field means its default.
type Options struct {
	// Keys checks the node authentication of batches (gatewaykeys); without it no batch
	// verifies and none is stored.
	Keys fleet.NodeAuth
	// Rejected, if set, is told of every batch dropped because its node authentication is
	// missing (reason "unsigned") or wrong ("forged"), with kind RejectKind
	// (metrics.Management.NodeMessageRejected). Called on NATS's goroutines.
	Rejected func(kind, reason string)
	// MaxAge and MaxRows bound what is kept: records closed longer ago than MaxAge, and a
	// service's records beyond its MaxRows newest, are pruned. Negative turns a bound off.
	MaxAge     time.Duration
	MaxRows    int
	PruneEvery time.Duration
	Log        *slog.Logger
}

// Log stores and reads the connection log. It is safe for concurrent use.
type Log struct {
	pool *pgxpool.Pool
	opt  Options
}

// New returns a Log over pool.
func New(pool *pgxpool.Pool, opt Options) *Log {
	if opt.MaxAge == 0 {
		opt.MaxAge = DefaultMaxAge
	}
	if opt.MaxRows == 0 {
		opt.MaxRows = DefaultMaxRows
	}
	if opt.PruneEvery <= 0 {
		opt.PruneEvery = DefaultPruneEvery
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Log{pool: pool, opt: opt}
}

// Run stores the batches published on nc's server and prunes the log every PruneEvery until
// ctx ends, then unsubscribes and returns nil; ctx bounds each insert. Replicas share the
// queue group QueueGroup, so each batch is stored by one of them; every replica prunes, and
// pruning twice deletes nothing more. A disconnected nc sends the subscription once
// connected.
func (l *Log) Run(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.QueueSubscribe(bus.ConnectionLogSubjects, QueueGroup, func(m *nats.Msg) { l.receive(ctx, m) })
	if err != nil {
		return fmt.Errorf("connlog: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if nc.IsConnected() {
		_ = nc.FlushTimeout(5 * time.Second)
	}
	t := time.NewTicker(l.opt.PruneEvery)
	defer t.Stop()
	for {
		if n, err := l.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
			l.opt.Log.WarnContext(ctx, "pruning the connection log failed", "err", err)
		} else if n > 0 {
			l.opt.Log.DebugContext(ctx, "connection log pruned", "records", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// receive stores one batch if it is valid, on its own subject and authenticated.
func (l *Log) receive(ctx context.Context, m *nats.Msg) {
	var b configwire.ConnectionLogBatch
	err := json.Unmarshal(m.Data, &b)
	if err == nil {
		err = b.Validate()
	}
	if err == nil && m.Subject != bus.ConnectionLogSubject(b.ServiceID, b.Gateway) {
		err = fmt.Errorf("connection log on subject %q of another service or gateway", m.Subject)
	}
	if err == nil {
		if _, perr := uuid.Parse(b.ServiceID); perr != nil {
			err = fmt.Errorf("connection log: serviceId %q is not a service id", b.ServiceID)
		}
	}
	if err != nil {
		l.opt.Log.WarnContext(ctx, "connection log batch dropped", "subject", m.Subject, "err", err)
		return
	}
	if err := fleet.Authenticate(l.opt.Keys, m, b.ServiceID, b.Gateway); err != nil {
		if l.opt.Rejected != nil {
			l.opt.Rejected(RejectKind, fleet.RejectReason(err))
		}
		l.opt.Log.WarnContext(ctx, "unauthenticated connection log batch dropped", "subject", m.Subject, "node_id", b.NodeID, "err", err)
		return
	}
	n, err := l.Store(ctx, &b)
	if err != nil {
		l.opt.Log.ErrorContext(ctx, "connection log batch not stored", "node_id", b.NodeID, "records", len(b.Records), "err", err)
		return
	}
	l.opt.Log.DebugContext(ctx, "connection log batch stored", "node_id", b.NodeID, "records", len(b.Records), "inserted", n)
}

// Store inserts the records of a valid batch and returns how many were new: a record already
// stored (its correlation id) is left as it is. A batch of a service that no longer exists
// stores nothing.
func (l *Log) Store(ctx context.Context, b *configwire.ConnectionLogBatch) (int64, error) {
	n := len(b.Records)
	if n == 0 {
		return 0, nil
	}
	text := make([][]string, 10) // correlation id … client ip, closed by, reason, detail
	for i := range text {
		text[i] = make([]string, n)
	}
	opened, closed := make([]time.Time, n), make([]time.Time, n)
	counts := make([][]int64, 5) // messages and bytes each way, close code
	for i := range counts {
		counts[i] = make([]int64, n)
	}
	for i, r := range b.Records {
		for j, v := range []string{r.CorrelationID, r.API, r.Operation, r.Product, r.Subscription, r.User, r.ClientIP, r.ClosedBy, r.Reason, r.Detail} {
			text[j][i] = v
		}
		opened[i], closed[i] = r.Opened.UTC(), r.Closed.UTC()
		for j, v := range []int64{r.MessagesIn, r.MessagesOut, r.BytesIn, r.BytesOut, int64(r.CloseCode)} {
			counts[j][i] = v
		}
	}
	tag, err := l.pool.Exec(ctx, `
		INSERT INTO connection_log (service_id, node_id, gateway, correlation_id, api, operation, product, subscription,
			user_id, client_ip, closed_by, reason, detail, opened_at, closed_at, messages_in, messages_out, bytes_in, bytes_out,
			close_code)
		SELECT $1::uuid, $2, $3, r.*
		FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
			$13::text[], $14::timestamptz[], $15::timestamptz[], $16::bigint[], $17::bigint[], $18::bigint[], $19::bigint[],
			$20::int[]) AS r
		WHERE EXISTS (SELECT 1 FROM services WHERE id = $1::uuid)
		ON CONFLICT DO NOTHING`,
		b.ServiceID, b.NodeID, b.Gateway, text[0], text[1], text[2], text[3], text[4], text[5], text[6], text[7], text[8], text[9],
		opened, closed, counts[0], counts[1], counts[2], counts[3], counts[4])
	if err != nil {
		return 0, fmt.Errorf("connlog: store %d records of node %s: %w", n, b.NodeID, err)
	}
	return tag.RowsAffected(), nil
}

// Prune deletes the records closed before now minus MaxAge and, per service, those beyond
// its MaxRows newest. It returns how many it deleted.
func (l *Log) Prune(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	if l.opt.MaxAge > 0 {
		tag, err := l.pool.Exec(ctx, "DELETE FROM connection_log WHERE closed_at < $1", now.Add(-l.opt.MaxAge))
		if err != nil {
			return 0, fmt.Errorf("connlog: prune by age: %w", err)
		}
		n += tag.RowsAffected()
	}
	if l.opt.MaxRows > 0 {
		tag, err := l.pool.Exec(ctx, `
			DELETE FROM connection_log c USING (
				SELECT service_id, correlation_id FROM (
					SELECT service_id, correlation_id,
						row_number() OVER (PARTITION BY service_id ORDER BY closed_at DESC, correlation_id DESC) AS n
					FROM connection_log) ranked
				WHERE n > $1) old
			WHERE c.service_id = old.service_id AND c.correlation_id = old.correlation_id`, l.opt.MaxRows)
		if err != nil {
			return n, fmt.Errorf("connlog: prune by rows: %w", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

// Query selects entries of one service's log.
type Query struct {
	// Filter's time range bounds when sessions closed; its API, subscription, node and close
	// code select entries.
	Filter reports.Filter
	// Subscriptions, when not nil, admits only entries of these subscriptions (a consumer's
	// own); an empty non-nil slice admits none.
	Subscriptions []string
	// Top and Skip page the entries, newest first; Top is at most Limit (MaxTop when zero).
	Top, Skip int
	Limit     int
}

// Entry is one stored record.
type Entry struct {
	configwire.ConnectionLogRecord
	NodeID  string
	Gateway string
}

// List answers q for the service with internal id serviceID: one page of entries, newest
// closed first, and the number of entries of all pages.
func (l *Log) List(ctx context.Context, serviceID string, q Query) ([]Entry, int, error) {
	args := []any{serviceID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	where := append([]string{"service_id = $1"}, reports.Conditions(q.Filter, q.Subscriptions, "closed_at", arg)...)
	cond := strings.Join(where, " AND ")
	var total int
	if err := l.pool.QueryRow(ctx, "SELECT count(*) FROM connection_log WHERE "+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("connlog: count: %w", err)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = MaxTop
	}
	top := q.Top
	if top <= 0 || top > limit {
		top = limit
	}
	rows, err := l.pool.Query(ctx, "SELECT node_id, gateway, correlation_id, api, operation, product, subscription, user_id, client_ip,"+
		" opened_at, closed_at, messages_in, messages_out, bytes_in, bytes_out, close_code, closed_by, reason, detail"+
		" FROM connection_log WHERE "+cond+" ORDER BY closed_at DESC, correlation_id DESC LIMIT "+arg(top)+" OFFSET "+arg(max(q.Skip, 0)), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("connlog: query: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.NodeID, &e.Gateway, &e.CorrelationID, &e.API, &e.Operation, &e.Product, &e.Subscription, &e.User,
			&e.ClientIP, &e.Opened, &e.Closed, &e.MessagesIn, &e.MessagesOut, &e.BytesIn, &e.BytesOut, &e.CloseCode,
			&e.ClosedBy, &e.Reason, &e.Detail)
		e.Opened, e.Closed = e.Opened.UTC(), e.Closed.UTC()
		return e, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("connlog: query: %w", err)
	}
	return out, total, nil
}
