package odata_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"gatehouse.dev/management/internal/odata"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// connect opens a connection to DATABASE_URL (the local trust-auth server when unset). With
// no server answering it skips the test on a developer machine and fails it under CI.
func connect(t *testing.T) *pgx.Conn {
	t.Helper()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = defaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		err = conn.Ping(ctx)
	}
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Postgres at %s: %v", url, err)
		}
		t.Fatalf("no Postgres at %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.WithoutCancel(t.Context())) })
	return conn
}

// injected is the name of a row that an injected "OR 1=1" would wrongly select with the
// others.
const injected = "x' OR 1=1 --"

// TestToSQLPostgres runs the translated filters against real rows, in a transaction that is
// rolled back, to show that the SQL means what the package comment says.
func TestToSQLPostgres(t *testing.T) {
	t.Parallel()
	conn := connect(t)
	ctx := t.Context()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })

	_, err = tx.Exec(ctx, `
		CREATE TEMP TABLE apis (
			name       text    NOT NULL,
			state      text    NOT NULL,
			revision   integer NOT NULL,
			properties jsonb   NOT NULL
		) ON COMMIT DROP;
		INSERT INTO apis AS r (name, state, revision, properties) VALUES
		  ('echo',   'active',    1,  '{"displayName":"Echo API","description":"Echoes frames","serviceUrl":"wss://echo.example/ws","path":"echo","isCurrent":true}'),
		  ('chat',   'suspended', 2,  '{"displayName":"Chat","serviceUrl":"wss://chat.example/hub","path":"chat/v1","isCurrent":false}'),
		  ('prices', 'active',    10, '{"displayName":"Stock Prices 100%","description":"50_off","serviceUrl":"wss://prices.example","path":"prices"}'),
		  ('x'' OR 1=1 --', 'active', 3, '{"displayName":"Injection","description":"a\\b","serviceUrl":"https://evil.example","path":"evil","isCurrent":true}');
	`)
	if err != nil {
		t.Fatal(err)
	}

	all := []string{"chat", "echo", "prices", injected}
	tests := []struct {
		filter string
		want   []string
	}{
		{"", all},
		{"name eq 'echo'", []string{"echo"}},
		{"name eq 'Echo'", nil}, // eq is case-sensitive
		{"NAME ne 'echo'", []string{"chat", "prices", injected}},
		{"contains(displayName, 'ECHO')", []string{"echo"}}, // functions are not
		{"substringof('HAT', name)", []string{"chat"}},
		{"startswith(serviceUrl, 'WSS://')", []string{"chat", "echo", "prices"}},
		{"endswith(path, '/v1')", []string{"chat"}},
		{"contains(name, '')", all},
		{"contains(displayName, '%')", []string{"prices"}},
		{"contains(description, '_')", []string{"prices"}},
		{`contains(description, '\')`, []string{injected}},
		{"startswith(description, '50_')", []string{"prices"}},
		{"startswith(description, '5_')", nil}, // _ is no wildcard
		{"startswith(description, '5%')", nil},
		{"isCurrent eq true", []string{"echo", injected}},
		{"isCurrent eq false", []string{"chat", "prices"}}, // a missing isCurrent is false
		{"isCurrent ne true", []string{"chat", "prices"}},
		{"isCurrent eq null", nil},
		{"description eq null", []string{"chat"}},
		{"description ne null", []string{"echo", "prices", injected}},
		{"description ne 'Echoes frames'", []string{"chat", "prices", injected}}, // NULL ne 'x' is true
		{"description gt '6'", []string{"echo", injected}},                       // NULL gt '6' is false
		{"not (description eq 'Echoes frames')", []string{"chat", "prices", injected}},
		{"not contains(description, 'echo')", []string{"chat", "prices", injected}},
		{"not (description gt '6')", []string{"chat", "prices"}},
		{"not not contains(description, 'echo')", []string{"echo"}},
		{"not (contains(description, 'echo') or isCurrent eq true)", []string{"chat", "prices"}},
		{"displayName gt 'D'", []string{"echo", "prices", injected}},
		{"revision gt 2", []string{"prices", injected}},
		{"revision ge 1.5 and revision lt 1e1", []string{"chat", injected}},
		{"revision eq 1.0", []string{"echo"}},
		{"revision le -1", nil},
		{"revision lt 1e1000", all},
		{"state eq 'active' and (name eq 'echo' or name eq 'prices')", []string{"echo", "prices"}},
		{"substringof('s', name) eq false", []string{"chat", "echo", injected}},
		// Injection attempts select only what the literal text selects.
		{"name eq 'x'' OR 1=1 --'", []string{injected}},
		{"name eq 'y'' OR 1=1 --'", nil},
		{"name eq 'nobody''; DROP TABLE apis; --'", nil},
		{"contains(name, ''' OR ''1''=''1')", nil},
		{"name eq '$1' or name eq '?'", nil},
		{`description eq 'a\\b'`, nil}, // no backslash escapes: the literal has two backslashes
		{`description eq 'a\b'`, []string{injected}},
	}
	for _, tc := range tests {
		e, err := odata.Parse(tc.filter)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.filter, err)
			continue
		}
		sql, args, err := odata.ToSQL(e, apiFields, 1)
		if err != nil {
			t.Errorf("ToSQL(%q): %v", tc.filter, err)
			continue
		}
		got, err := names(ctx, tx, "SELECT r.name FROM apis r WHERE "+sql+" ORDER BY r.name", args...)
		if err != nil {
			t.Errorf("filter %q: query with %s %v: %v", tc.filter, sql, args, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("filter %q (%s %v) rows mismatch (-want +got):\n%s", tc.filter, sql, args, diff)
		}
	}

	// The condition composes with the caller's own parameters.
	e, err := odata.Parse("not contains(name, 'ECHO')")
	if err != nil {
		t.Fatal(err)
	}
	sql, args, err := odata.ToSQL(e, apiFields, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := names(ctx, tx, "SELECT r.name FROM apis r WHERE r.state = $1 AND "+sql+" ORDER BY r.name",
		append([]any{"active"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"prices", injected}, got); diff != "" {
		t.Errorf("with argStart 2: rows mismatch (-want +got):\n%s", diff)
	}

	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM apis").Scan(&n); err != nil || n != len(all) {
		t.Errorf("after the filters the table has %d rows (err %v), want %d", n, err, len(all))
	}
}

// names runs the query in a savepoint, so that a failing query does not abort the
// transaction for the ones after it, and returns the names it selects.
func names(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]string, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sp.Rollback(ctx) }()
	rows, err := sp.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if len(got) == 0 {
		got = nil
	}
	return got, err
}
