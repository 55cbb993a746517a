package dbtest

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

func adminURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// databaseExists reports whether the server behind DATABASE_URL has a database called name.
func databaseExists(t *testing.T, ctx context.Context, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		t.Fatalf("connect admin: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatalf("query pg_database: %v", err)
	}
	return n == 1
}

func TestSetupCreatesMigratesAndDrops(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	migrate := func(ctx context.Context, url string) error {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "CREATE TABLE widgets (id int PRIMARY KEY); INSERT INTO widgets VALUES (7)")
		return err
	}
	url, drop, err := Setup(ctx, "DbTest-Setup", migrate)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(drop)

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	var name string
	var id int
	if err := conn.QueryRow(ctx, "SELECT current_database(), (SELECT id FROM widgets)").Scan(&name, &id); err != nil {
		t.Fatalf("query new database: %v", err)
	}
	if !regexp.MustCompile(`^dbtest_setup_[0-9a-f]{16}$`).MatchString(name) {
		t.Errorf("database name = %q, want dbtest_setup_<16 hex>", name)
	}
	if id != 7 {
		t.Errorf("migrated row id = %d, want 7", id)
	}

	// The connection is still open: drop must terminate it rather than fail.
	drop()
	if databaseExists(t, ctx, name) {
		t.Errorf("database %s still exists after drop", name)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Errorf("connection to dropped database still answers")
	}
	conn.Close(ctx)
	drop() // a second call is a no-op
}

func TestSetupDropsDatabaseWhenMigrateFails(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	boom := errors.New("boom")
	var seen string
	_, drop, err := Setup(ctx, "dbtest_fail", func(ctx context.Context, url string) error {
		seen = url
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Setup error = %v, want one wrapping %v", err, boom)
	}
	if drop != nil {
		t.Errorf("Setup returned a drop func with an error")
	}
	name := seen[strings.LastIndex(seen, "/")+1:]
	name, _, _ = strings.Cut(name, "?")
	if !strings.HasPrefix(name, "dbtest_fail_") {
		t.Fatalf("migrate got URL %q, want a database named dbtest_fail_…", seen)
	}
	if databaseExists(t, ctx, name) {
		t.Errorf("database %s left behind after failed migration", name)
	}
}

func TestDatabaseName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prefix string
		want   string // the name without the random suffix
	}{
		{name: "kept", prefix: "store_v2", want: "store_v2"},
		{name: "lowercased", prefix: "Store", want: "store"},
		{name: "punctuation replaced", prefix: "api/arm-test.x", want: "api_arm_test_x"},
		{name: "non-ASCII replaced per rune", prefix: "café", want: "caf_"},
		{name: "empty", prefix: "", want: "test"},
		{name: "too long truncated", prefix: strings.Repeat("a", 80), want: strings.Repeat("a", maxPrefix)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := databaseName(tc.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > 63 {
				t.Errorf("len(%q) = %d, exceeds Postgres' 63-byte identifier limit", got, len(got))
			}
			base, suffix := got[:strings.LastIndex(got, "_")], got[strings.LastIndex(got, "_")+1:]
			if diff := cmp.Diff(tc.want, base); diff != "" {
				t.Errorf("prefix part (-want +got):\n%s", diff)
			}
			if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(suffix) {
				t.Errorf("suffix = %q, want 16 hex digits", suffix)
			}
		})
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		admin string
		want  string
	}{
		{
			name:  "URL keeps user, host and options",
			admin: "postgres://u:p@db.example:6543/postgres?sslmode=disable&application_name=x",
			want:  "postgres://u:p@db.example:6543/t_1?sslmode=disable&application_name=x",
		},
		{
			name:  "URL without database",
			admin: "postgresql://postgres@127.0.0.1:5432",
			want:  "postgresql://postgres@127.0.0.1:5432/t_1",
		},
		{
			name:  "keyword/value",
			admin: "host=127.0.0.1 user=postgres dbname=postgres",
			want:  "host=127.0.0.1 user=postgres dbname=postgres dbname=t_1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := withDatabase(tc.admin, "t_1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("withDatabase (-want +got):\n%s", diff)
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil {
				t.Fatalf("pgx cannot parse %q: %v", got, err)
			}
			if cfg.Database != "t_1" {
				t.Errorf("pgx sees database %q, want t_1", cfg.Database)
			}
		})
	}
}
