// Package outbox publishes committed configuration changes from the Postgres outbox table to
// NATS JetStream, in revision order per service and at least once (JetStream drops duplicates).
package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/bus"

	"gatehouse.dev/management/internal/jsutil"
)

// StreamMaxAge is how long bus.ConfigStream keeps a change. A gateway that was away for longer
// finds a gap and fetches a snapshot, as it would for any other gap.
const StreamMaxAge = 7 * 24 * time.Hour

// streamConfig is the desired configuration of bus.ConfigStream.
func streamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Replicas:    max(replicas, 1),
		Name:        bus.ConfigStream,
		Description: "Gatehouse configuration changes, one message per service revision",
		Subjects:    []string{bus.ConfigSubjects},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		MaxAge:      StreamMaxAge,
		Duplicates:  bus.ConfigDuplicateWindow,
	}
}

// EnsureStream creates bus.ConfigStream, or updates an existing one to the configuration this
// package relies on (subjects, de-duplication window, retention). It is idempotent and safe to
// call from several management replicas at once. replicas is the stream's replication factor
// on a NATS cluster (NATS_STREAM_REPLICAS, 3 on a 3-node cluster); below 1 means 1.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if err := jsutil.EnsureStream(ctx, js, streamConfig(replicas)); err != nil {
		return fmt.Errorf("outbox: ensure stream %s: %w", bus.ConfigStream, err)
	}
	return nil
}

// Pending counts the outbox rows not yet published: the changes waiting for NATS. It reads the
// partial index of pending rows, so it is cheap while few wait.
func Pending(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox: count pending rows: %w", err)
	}
	return n, nil
}
