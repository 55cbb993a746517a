package reports

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"

	"gatehouse.dev/management/internal/jsutil"
)

// StreamMaxAge is how long bus.UsageStream keeps a batch no management replica stored (the
// database was down for that long).
const StreamMaxAge = 7 * 24 * time.Hour

// ConsumerName is the durable consumer every management replica shares, so that each batch
// is stored by one of them.
const ConsumerName = "gatehouse-usage"

// retryDelay is how long a batch that could not be stored waits before it is delivered again.
const retryDelay = 2 * time.Second

// EnsureStream creates bus.UsageStream, a work queue of usage batches de-duplicated by batch
// id, or updates an existing one. It is idempotent and safe to call from several replicas;
// replicas below 1 means 1.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	err := jsutil.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name:        bus.UsageStream,
		Description: "Gatehouse usage batches from gateway nodes, one message per batch",
		Subjects:    []string{bus.UsageSubjects},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		MaxAge:      StreamMaxAge,
		Duplicates:  bus.UsageDuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("reports: ensure stream %s: %w", bus.UsageStream, err)
	}
	return nil
}

// Ingester stores the usage batches of bus.UsageStream. A batch is acknowledged only after
// its rows are committed, and a batch delivered again inserts nothing, so each counts once.
type Ingester struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	opt  IngesterOptions
}

// IngesterOptions configure an Ingester.
type IngesterOptions struct {
	// Auth checks each batch's node authentication against the keys of the gateway the batch
	// names (gatewaykeys.Cache): any node may publish on its service's usage subject, so the
	// batch itself must prove which gateway it comes from (issue 12). Without it no batch is
	// stored.
	Auth NodeAuth
	// Rejected, if set, is told of every batch dropped because its node authentication is
	// missing ("unsigned") or wrong ("forged"), with kind "usage"
	// (metrics.Management.NodeMessageRejected).
	Rejected func(kind, reason string)
	// Log is where dropped batches are logged; nil discards.
	Log *slog.Logger
}

// NodeAuth checks the node authentication of a message.
type NodeAuth interface {
	// Verify checks auth, a bus.HeaderNodeAuth value, over a message on subject with data from
	// a node of gateway in the service serviceID; the error wraps configwire.ErrUnsigned or
	// configwire.ErrForged.
	Verify(subject string, data []byte, auth, serviceID, gateway string) error
}

// NewIngester returns an Ingester; the stream must exist (EnsureStream).
func NewIngester(pool *pgxpool.Pool, js jetstream.JetStream, opt IngesterOptions) *Ingester {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Ingester{pool: pool, js: js, opt: opt}
}

// Run consumes batches with the durable consumer ConsumerName until ctx ends, then returns
// nil; it returns an error only if it cannot start consuming.
func (in *Ingester) Run(ctx context.Context) error {
	cons, err := in.js.CreateOrUpdateConsumer(ctx, bus.UsageStream, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "management stores usage batches in Postgres",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 256,
	})
	if err != nil {
		return fmt.Errorf("reports: consumer %s: %w", ConsumerName, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { in.handle(ctx, msg) })
	if err != nil {
		return fmt.Errorf("reports: consume: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	return nil
}

// handle stores one batch and acknowledges it; a batch that can never be stored (malformed,
// not authenticated by its gateway's node key, or of a service that no longer exists) is
// acknowledged too, and one the database refused for now is delivered again after retryDelay.
func (in *Ingester) handle(ctx context.Context, msg jetstream.Msg) {
	log := in.opt.Log
	b, err := decodeBatch(msg)
	if err != nil {
		log.WarnContext(ctx, "usage batch dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	if err := in.authenticate(msg, b); err != nil {
		in.reject(err)
		log.WarnContext(ctx, "unauthenticated usage batch dropped", "subject", msg.Subject(), "gateway", b.Gateway,
			"node", b.NodeID, "batch", b.BatchID, "err", err)
		_ = msg.Term()
		return
	}
	inserted, err := in.Store(ctx, b)
	if err != nil {
		if ctx.Err() == nil {
			log.ErrorContext(ctx, "usage batch not stored; retrying", "batch", b.BatchID, "err", err)
		}
		_ = msg.NakWithDelay(retryDelay)
		return
	}
	if err := msg.Ack(); err != nil {
		log.WarnContext(ctx, "usage batch stored but not acknowledged", "batch", b.BatchID, "err", err)
	}
	log.DebugContext(ctx, "usage batch stored", "batch", b.BatchID, "node", b.NodeID, "records", len(b.Records), "inserted", inserted)
}

// decodeBatch reads and validates the batch of msg, which must be on its service's subject.
func decodeBatch(msg jetstream.Msg) (*configwire.UsageBatch, error) {
	var b configwire.UsageBatch
	if err := json.Unmarshal(msg.Data(), &b); err != nil {
		return nil, err
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if _, err := uuid.Parse(b.ServiceID); err != nil {
		return nil, fmt.Errorf("usage batch: serviceId %q is not a service id", b.ServiceID)
	}
	if msg.Subject() != bus.UsageSubject(b.ServiceID) {
		return nil, fmt.Errorf("usage batch: serviceId %q on a subject not its own", b.ServiceID)
	}
	return &b, nil
}

// authenticate checks that a node of the gateway b names sent msg, with its node key.
func (in *Ingester) authenticate(msg jetstream.Msg, b *configwire.UsageBatch) error {
	auth := msg.Headers().Get(bus.HeaderNodeAuth)
	if auth == "" {
		return configwire.ErrUnsigned
	}
	if in.opt.Auth == nil {
		return configwire.ErrForged
	}
	return in.opt.Auth.Verify(msg.Subject(), msg.Data(), auth, b.ServiceID, b.Gateway)
}

// reject counts a batch dropped by authenticate.
func (in *Ingester) reject(err error) {
	if in.opt.Rejected == nil {
		return
	}
	reason := "forged"
	if errors.Is(err, configwire.ErrUnsigned) {
		reason = "unsigned"
	}
	in.opt.Rejected("usage", reason)
}

// Store inserts the records of a valid batch and returns how many rows were new. Records
// already stored (the same node, minute, API and subscription) are left as they are, so a
// batch stored twice counts once. A batch of a service that no longer exists stores nothing.
func (in *Ingester) Store(ctx context.Context, b *configwire.UsageBatch) (int64, error) {
	n := len(b.Records)
	minutes := make([]time.Time, n)
	apis, subs, refusals := make([]string, n), make([]string, n), make([]*string, n)
	cols := make([][]int64, 10)
	for i := range cols {
		cols[i] = make([]int64, n)
	}
	for i, r := range b.Records {
		minutes[i], apis[i], subs[i] = r.Minute.UTC(), r.API, r.Subscription
		for j, v := range []int64{r.HandshakesSuccess, r.HandshakesBlocked, r.HandshakesFailed, r.HandshakesOther,
			r.MessagesIn, r.MessagesOut, r.BytesIn, r.BytesOut, r.ConnectionMillis, r.ConnectionsClosed} {
			cols[j][i] = v
		}
		if len(r.Refusals) > 0 {
			raw, err := json.Marshal(r.Refusals)
			if err != nil {
				return 0, fmt.Errorf("reports: batch %s: %w", b.BatchID, err)
			}
			text := string(raw)
			refusals[i] = &text
		}
	}
	tag, err := in.pool.Exec(ctx, `
		INSERT INTO usage (service_id, node_id, batch_id, minute, api, subscription,
			handshakes_success, handshakes_blocked, handshakes_failed, handshakes_other,
			messages_in, messages_out, bytes_in, bytes_out, connection_ms, connections_closed, refusals)
		SELECT $1::uuid, $2, $3, r.minute, r.api, r.subscription, r.hs, r.hb, r.hf, r.ho, r.mi, r.mo, r.bi, r.bo, r.ms, r.cc,
			r.refusals::jsonb
		FROM unnest($4::timestamptz[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[],
			$11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::text[])
			AS r(minute, api, subscription, hs, hb, hf, ho, mi, mo, bi, bo, ms, cc, refusals)
		WHERE EXISTS (SELECT 1 FROM services WHERE id = $1::uuid)
		ON CONFLICT DO NOTHING`,
		b.ServiceID, b.NodeID, b.BatchID, minutes, apis, subs,
		cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], refusals)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // the service was deleted meanwhile
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reports: store batch %s: %w", b.BatchID, err)
	}
	return tag.RowsAffected(), nil
}
