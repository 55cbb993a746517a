package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// NotifyChannel is the Postgres channel a writer notifies, with pg_notify, in the transaction that
// inserts an outbox row, so the relay publishes at once instead of at its next poll.
const NotifyChannel = "gatehouse_outbox"

// lockKey is the Postgres advisory lock (ASCII "gatehous") whose holder is the one relay that
// publishes. Advisory locks are per database, so relays of different databases do not contend.
const lockKey int64 = 0x67617465686f7573

// Defaults of the Options.
const (
	DefaultLockRetry       = time.Second
	DefaultPollInterval    = 2 * time.Second
	DefaultBatchSize       = 100
	DefaultPublishTimeout  = 5 * time.Second
	DefaultRetention       = 24 * time.Hour
	DefaultCleanupInterval = 10 * time.Minute
	DefaultBackoffMin      = 100 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
)

// cleanupChunk is how many published rows one cleanup statement deletes at most.
const cleanupChunk = 1000

type settings struct {
	streamReplicas  int
	lockRetry       time.Duration
	pollInterval    time.Duration
	batchSize       int
	publishTimeout  time.Duration
	retention       time.Duration
	cleanupInterval time.Duration
	backoffMin      time.Duration
	backoffMax      time.Duration
	// afterPublish, set only by tests, runs after a row is acknowledged by JetStream and before
	// it is marked published; an error aborts the leader there, as a crash would.
	afterPublish func(id int64) error
	observer     Observer
}

// Observer is told how publication goes, for metrics. Its methods are called from the
// Relay's goroutine and must not block.
type Observer interface {
	// Leading is told when the Relay starts (true) and stops (false) leading.
	Leading(leading bool)
	// Lag is told the age of the oldest unpublished row whenever the leader reads pending
	// rows, and zero when it has published every row it found.
	Lag(age time.Duration)
	// Published is told how many rows the leader has just marked published.
	Published(rows int)
}

type noObserver struct{}

func (noObserver) Leading(bool)       {}
func (noObserver) Lag(time.Duration)  {}
func (noObserver) Published(rows int) {}

// Option adjusts a Relay. Options given zero or negative values are ignored.
type Option func(*settings)

// WithLockRetry sets how often a relay that is not the leader tries to become it (default 1s).
// It bounds how long publication pauses after the leader goes.
func WithLockRetry(d time.Duration) Option {
	return func(s *settings) { setPositive(&s.lockRetry, d) }
}

// WithPollInterval sets how often the leader looks for pending rows without being notified
// (default 2s); a row whose notification was lost waits at most this long.
func WithPollInterval(d time.Duration) Option {
	return func(s *settings) { setPositive(&s.pollInterval, d) }
}

// WithStreamReplicas is the replication factor the relay gives the stream when it has to
// recreate it (see EnsureStream).
func WithStreamReplicas(n int) Option { return func(s *settings) { s.streamReplicas = n } }

// WithBatchSize sets how many pending rows the leader reads per query (default 100).
func WithBatchSize(n int) Option {
	return func(s *settings) {
		if n > 0 {
			s.batchSize = n
		}
	}
}

// WithPublishTimeout bounds the wait for one JetStream acknowledgement (default 5s).
func WithPublishTimeout(d time.Duration) Option {
	return func(s *settings) { setPositive(&s.publishTimeout, d) }
}

// WithRetention sets how long published rows stay in the outbox before cleanup deletes them
// (default 24h), and how often cleanup runs (default 10m).
func WithRetention(retention, cleanupInterval time.Duration) Option {
	return func(s *settings) {
		setPositive(&s.retention, retention)
		setPositive(&s.cleanupInterval, cleanupInterval)
	}
}

// WithRetryBackoff sets the bounds of the exponential backoff between attempts to publish a row
// that failed (defaults 100ms and 5s).
func WithRetryBackoff(minWait, maxWait time.Duration) Option {
	return func(s *settings) {
		setPositive(&s.backoffMin, minWait)
		setPositive(&s.backoffMax, maxWait)
	}
}

// WithObserver makes the Relay report its leadership, lag and publications to o.
func WithObserver(o Observer) Option {
	return func(s *settings) {
		if o != nil {
			s.observer = o
		}
	}
}

// withAfterPublish installs a test hook; see settings.afterPublish.
func withAfterPublish(f func(id int64) error) Option {
	return func(s *settings) { s.afterPublish = f }
}

func setPositive(dst *time.Duration, d time.Duration) {
	if d > 0 {
		*dst = d
	}
}

// Relay publishes outbox rows to bus.ConfigStream and marks them published.
//
// Every management replica runs a Relay; a session-level Postgres advisory lock, held on a
// connection taken out of the pool for as long as the replica leads, elects the one that
// publishes. When that connection or its process dies the lock goes with it and another replica
// takes over within the lock retry interval. The leader publishes pending rows in id order and
// marks each only after JetStream acknowledged it, so a crash between the two re-publishes the
// row, and JetStream drops the copy by its message id (bus.ConfigMsgID). When a row cannot be
// published the leader stops there and retries with backoff: rows of a service are never
// published ahead of an earlier revision. Even two relays that both believe they lead keep that
// order, because each publishes a row only after the previous revision was acknowledged.
//
// The order relies on the writer's contract: in one transaction, bump services.revision (which
// locks the service row) before inserting the outbox row, so within a service ids follow
// revisions. The advisory lock needs session-pooled connections (not a transaction-mode pooler).
type Relay struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	signer  func() *configwire.Signer
	log     *slog.Logger
	set     settings
	leading atomic.Bool
}

// NewRelay returns a Relay over the outbox in pool's database publishing through js, each
// change signed by the Signer signer returns when it is published (signing.Keyring.Signer). A
// nil log discards logs. While leading, the Relay holds one connection outside the pool's
// accounting.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, signer func() *configwire.Signer, log *slog.Logger, opts ...Option) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		pool:   pool,
		js:     js,
		signer: signer,
		log:    log.With("component", "outbox_relay"),
		set: settings{
			lockRetry:       DefaultLockRetry,
			pollInterval:    DefaultPollInterval,
			batchSize:       DefaultBatchSize,
			publishTimeout:  DefaultPublishTimeout,
			retention:       DefaultRetention,
			cleanupInterval: DefaultCleanupInterval,
			backoffMin:      DefaultBackoffMin,
			backoffMax:      DefaultBackoffMax,
			observer:        noObserver{},
		},
	}
	for _, o := range opts {
		o(&r.set)
	}
	return r
}

// Leading reports whether the Relay currently holds the leader lock. Safe for concurrent use.
func (r *Relay) Leading() bool { return r.leading.Load() }

// Run campaigns for leadership and, while leading, publishes; it returns nil once ctx is done.
// Database and NATS failures are logged and retried, never returned. Run must not be called
// again before a previous call returned.
func (r *Relay) Run(ctx context.Context) error {
	for {
		if err := r.campaign(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "outbox relay not leading after error", "err", err)
		}
		t := time.NewTimer(r.set.lockRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// campaign tries once to take the leader lock and, if it gets it, leads until ctx ends or the
// lock's connection fails.
func (r *Relay) campaign(ctx context.Context) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	var locked bool
	if err := pc.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&locked); err != nil {
		pc.Release()
		return fmt.Errorf("try leader lock: %w", err)
	}
	if !locked {
		pc.Release()
		return nil
	}
	// The lock lives as long as this session: keep the connection out of the pool and close it
	// when done, which releases the lock and the LISTEN together.
	conn := pc.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()

	r.leading.Store(true)
	r.set.observer.Leading(true)
	defer func() {
		r.leading.Store(false)
		r.set.observer.Leading(false)
	}()
	r.log.InfoContext(ctx, "outbox relay leading")
	err = r.lead(ctx, conn)
	r.log.InfoContext(ctx, "outbox relay stopped leading")
	return err
}

// lead publishes pending rows whenever notified or polled until ctx ends (nil) or the database
// fails (the error). Publish failures are retried here, keeping the lock.
func (r *Relay) lead(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return ignoreDone(ctx, fmt.Errorf("listen: %w", err))
	}
	var backoff time.Duration
	nextCleanup := time.Now()
	for {
		discardNotifications(ctx, conn)
		err := r.drain(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		if pe := (*publishError)(nil); errors.As(err, &pe) {
			backoff = min(max(2*backoff, r.set.backoffMin), r.set.backoffMax)
			level := slog.LevelWarn
			if nc := r.js.Conn(); nc != nil && !nc.IsConnected() {
				// NATS is away: the rows wait here, as they should. The connection's owner
				// logs the outage once; a warning per retry would only repeat it.
				level = slog.LevelDebug
			}
			r.log.Log(ctx, level, "outbox relay publish failed; retrying",
				"outbox_id", pe.id, "service_id", pe.serviceID, "revision", pe.revision,
				"retry_in", backoff, "err", pe.err)
			if errors.Is(pe.err, jetstream.ErrNoStreamResponse) {
				// The stream is gone (e.g. an embedded NATS lost its store): recreate it.
				if err := EnsureStream(ctx, r.js, r.set.streamReplicas); err != nil {
					r.log.WarnContext(ctx, "outbox relay cannot recreate stream", "err", err)
				}
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		if err != nil {
			return err
		}
		backoff = 0

		if !time.Now().Before(nextCleanup) {
			if err := r.cleanup(ctx, conn); err != nil {
				return ignoreDone(ctx, err)
			}
			nextCleanup = time.Now().Add(r.set.cleanupInterval)
		}
		if err := r.wait(ctx, conn); err != nil {
			return ignoreDone(ctx, err)
		}
	}
}

// wait returns when a notification arrives on conn or after the poll interval.
func (r *Relay) wait(ctx context.Context, conn *pgx.Conn) error {
	wctx, cancel := context.WithTimeout(ctx, r.set.pollInterval)
	defer cancel()
	_, err := conn.WaitForNotification(wctx)
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		return nil // poll interval passed; the connection stays usable
	}
	if err != nil {
		return fmt.Errorf("wait for notification: %w", err)
	}
	return nil
}

// discardNotifications drops notifications that arrived while draining: the next drain sees
// their rows anyway. An already-cancelled context makes pgx return buffered ones without I/O.
func discardNotifications(ctx context.Context, conn *pgx.Conn) {
	done, cancel := context.WithCancel(ctx)
	cancel()
	for {
		if _, err := conn.WaitForNotification(done); err != nil {
			return
		}
	}
}

// pendingRow is an outbox row not yet published.
type pendingRow struct {
	ID        int64
	ServiceID string
	Revision  int64
	Payload   []byte
	CreatedAt time.Time
}

// publishError is a failure to get a JetStream acknowledgement for a row.
type publishError struct {
	id        int64
	serviceID string
	revision  int64
	err       error
}

func (e *publishError) Error() string {
	return fmt.Sprintf("publish outbox row %d (service %s revision %d): %v", e.id, e.serviceID, e.revision, e.err)
}

func (e *publishError) Unwrap() error { return e.err }

// drain publishes pending rows in id order until none is left or one fails. Rows are marked
// published once per batch, in one statement, so the relay adds one commit per batch rather
// than one per row to the database's load; a crash before the mark re-publishes the batch,
// which JetStream de-duplicates by message id.
func (r *Relay) drain(ctx context.Context, conn *pgx.Conn) error {
	for {
		rows, _ := conn.Query(ctx, `
			SELECT id, service_id::text, revision, payload, created_at
			FROM outbox
			WHERE published_at IS NULL
			ORDER BY id
			LIMIT $1`, r.set.batchSize)
		pending, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pendingRow])
		if err != nil {
			return fmt.Errorf("read pending outbox rows: %w", err)
		}
		if len(pending) > 0 {
			r.set.observer.Lag(time.Since(pending[0].CreatedAt))
		}
		published := make([]int64, 0, len(pending))
		var failed error
		for _, row := range pending {
			ack, err := r.publish(ctx, row)
			if err != nil {
				failed = &publishError{id: row.ID, serviceID: row.ServiceID, revision: row.Revision, err: err}
				break
			}
			if r.set.afterPublish != nil {
				if err := r.set.afterPublish(row.ID); err != nil {
					return fmt.Errorf("after publishing outbox row %d: %w", row.ID, err)
				}
			}
			published = append(published, row.ID)
			r.log.DebugContext(ctx, "outbox row published",
				"outbox_id", row.ID, "service_id", row.ServiceID, "revision", row.Revision,
				"stream_seq", ack.Sequence, "duplicate", ack.Duplicate)
		}
		if len(published) > 0 {
			if _, err := conn.Exec(ctx, "UPDATE outbox SET published_at = now() WHERE id = ANY($1)", published); err != nil {
				return fmt.Errorf("mark %d outbox rows published: %w", len(published), err)
			}
			r.set.observer.Published(len(published))
		}
		if failed != nil {
			r.set.observer.Lag(time.Since(pending[len(published)].CreatedAt))
			return failed
		}
		if len(pending) < r.set.batchSize {
			r.set.observer.Lag(0)
			return nil
		}
	}
}

// publish signs row, sends it to its service's subject and waits for the stream's
// acknowledgement. Its message id holds a digest of its signature (bus.ConfigMsgID), so that
// no message published by anyone else is taken for it.
func (r *Relay) publish(ctx context.Context, row pendingRow) (*jetstream.PubAck, error) {
	sig := r.signer().SignChange(row.ServiceID, row.Revision, row.Payload)
	msg := &nats.Msg{
		Subject: bus.ConfigSubject(row.ServiceID),
		Data:    row.Payload,
		Header:  nats.Header{},
	}
	msg.Header.Set(bus.HeaderRevision, strconv.FormatInt(row.Revision, 10))
	msg.Header.Set(bus.HeaderService, row.ServiceID)
	msg.Header.Set(bus.HeaderSignature, sig)
	pctx, cancel := context.WithTimeout(ctx, r.set.publishTimeout)
	defer cancel()
	return r.js.PublishMsg(pctx, msg,
		jetstream.WithMsgID(bus.ConfigMsgID(row.ServiceID, row.Revision, configwire.SignatureDigest(sig))),
		jetstream.WithExpectStream(bus.ConfigStream),
		// No hidden retries: a missing stream surfaces as ErrNoStreamResponse at once and lead
		// retries with its own backoff.
		jetstream.WithRetryAttempts(0))
}

// cleanup deletes rows published longer than the retention ago, in chunks so no statement holds
// many locks or runs long.
func (r *Relay) cleanup(ctx context.Context, conn *pgx.Conn) error {
	var deleted int64
	for {
		tag, err := conn.Exec(ctx, `
			DELETE FROM outbox
			WHERE id IN (
				SELECT id FROM outbox
				WHERE published_at < now() - make_interval(secs => $1)
				LIMIT $2)`, r.set.retention.Seconds(), cleanupChunk)
		if err != nil {
			return fmt.Errorf("delete published outbox rows: %w", err)
		}
		deleted += tag.RowsAffected()
		if tag.RowsAffected() < cleanupChunk {
			break
		}
	}
	if deleted > 0 {
		r.log.InfoContext(ctx, "outbox relay deleted published rows", "rows", deleted)
	}
	return nil
}

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ignoreDone returns nil for an error caused by ctx ending, which is a normal stop.
func ignoreDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
