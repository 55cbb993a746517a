package migrate_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/store/migrate"
)

func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url, drop, err := dbtest.Setup(ctx, "migrate", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)

	// Replicas starting together each migrate the same fresh database.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = migrate.Migrate(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate #%d: %v", i, err)
		}
	}
	if err := migrate.Migrate(ctx, url); err != nil {
		t.Errorf("Migrate on a current schema: %v", err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `
		SELECT table_name::text FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name IN ('services', 'resources', 'outbox')
		ORDER BY table_name`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"outbox", "resources", "services"}, tables); diff != "" {
		t.Errorf("tables (-want +got):\n%s", diff)
	}
	var applied int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id = 1 AND is_applied").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Errorf("migration 1 recorded %d times, want once", applied)
	}
}

func TestMigrateBadURL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := migrate.Migrate(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"); err == nil {
		t.Error("Migrate against a closed port succeeded")
	}
}
