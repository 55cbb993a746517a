package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/store"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/configwire"
)

// world is a migrated database of its own with one service of two APIs, a product and
// subscriptions to each, written through the catalog.
type world struct {
	pool *pgxpool.Pool
	st   *store.Store
	svc  catalog.Service
	keys map[string]string // primary key by subscription
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := t.Context()
	url, drop, err := dbtest.Setup(ctx, "store", migrate.Migrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1 // one session, so that its prepared statements can be inspected
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	box, err := secretbox.New("store-test")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{pool: pool, st: store.New(pool, box), keys: map[string]string{}}
	cat := catalog.New(w.st, slog.New(slog.DiscardHandler))
	ref := catalog.ServiceRef{Subscription: "tenant", ResourceGroup: "rg", Name: "svc"}
	w.svc, _, err = cat.PutService(ctx, ref, catalog.ServiceInput{Location: "local", SKU: &catalog.ServiceSKU{Name: "Developer", Capacity: 1},
		Properties: json.RawMessage(`{"publisherEmail":"a@example.com","publisherName":"A"}`)}, catalog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(kind *catalog.Kind, parent, name, props string) {
		t.Helper()
		if _, _, err := cat.Put(ctx, ref, kind, parent, name, json.RawMessage(props), catalog.Options{}); err != nil {
			t.Fatalf("%s %s: %v", kind.Name, name, err)
		}
	}
	for _, a := range []string{"chat", "feed"} {
		put(catalog.KindAPI, "", a, `{"displayName":"`+a+`","type":"websocket","path":"`+a+`","serviceUrl":"wss://backend.example.com"}`)
	}
	put(catalog.KindProduct, "", "gold", `{"displayName":"Gold"}`)
	for name, scope := range map[string]string{"all": "/apis", "chat-1": "/apis/chat", "chat-2": "/apis/CHAT", "feed-1": "/apis/feed", "gold-1": "/products/gold"} {
		put(catalog.KindSubscription, "", name, `{"displayName":"`+name+`","scope":"`+scope+`","primaryKey":"key-`+name+`","secondaryKey":"second-`+name+`"}`)
		w.keys[name] = "key-" + name
	}
	return w
}

func names(rs []catalog.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestListPropIn(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	scope := func(rel string) string { return catalog.ServiceID(w.svc.Ref) + "/" + rel }
	tests := []struct {
		name   string
		scopes []string
		want   []string
	}{
		{"one API, any case", []string{scope("APIS/chat")}, []string{"chat-1", "chat-2"}},
		{"several scopes", []string{scope("apis"), scope("products/gold"), scope("apis/feed")}, []string{"all", "feed-1", "gold-1"}},
		{"no match", []string{scope("apis/nope")}, nil},
		{"none", []string{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, total, err := w.st.List(t.Context(), w.svc.ID, catalog.Query{Kind: catalog.KindSubscription,
				PropIn: map[string][]string{"scope": tc.scopes}, All: true})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, names(rs)); diff != "" {
				t.Errorf("subscriptions (-want +got):\n%s", diff)
			}
			if total != len(tc.want) {
				t.Errorf("total = %d, want %d", total, len(tc.want))
			}
		})
	}
}

func TestListNoSecretsUnordered(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	q := catalog.Query{Kind: catalog.KindSubscription, All: true}
	sealed, total, err := w.st.List(t.Context(), w.svc.ID, q)
	if err != nil {
		t.Fatal(err)
	}
	if total != 5 || sealed[0].Secrets["primaryKey"] != w.keys[sealed[0].Name] {
		t.Fatalf("a plain list: total %d, secrets of %s = %v", total, sealed[0].Name, sealed[0].Secrets)
	}
	q.NoSecrets, q.Unordered = true, true
	bare, total, err := w.st.List(t.Context(), w.svc.ID, q)
	if err != nil {
		t.Fatal(err)
	}
	if total != 5 {
		t.Errorf("total = %d, want 5", total)
	}
	got := names(bare)
	slices.Sort(got)
	if diff := cmp.Diff(names(sealed), got); diff != "" {
		t.Errorf("NoSecrets, Unordered lists other subscriptions (-ordered +unordered, sorted):\n%s", diff)
	}
	for _, r := range bare {
		if r.Secrets != nil {
			t.Errorf("%s: secrets opened despite NoSecrets", r.Name)
		}
		if want := []string{configwire.KeyHash(w.keys[r.Name]), configwire.KeyHash("second-" + r.Name)}; !cmp.Equal(want, r.KeyHashes) {
			t.Errorf("%s: key hashes %v, want those of its keys", r.Name, r.KeyHashes)
		}
	}
}

// TestSnapshotEach checks that Each reads what List does, one resource at a time, and with
// Fields only the properties asked for.
func TestSnapshotEach(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	scope := func(rel string) string { return catalog.ServiceID(w.svc.Ref) + "/" + rel }
	q := catalog.Query{Kind: catalog.KindSubscription, PropIn: map[string][]string{"scope": {scope("apis"), scope("apis/chat")}}}
	lq := q
	lq.All = true
	want, _, err := w.st.List(t.Context(), w.svc.ID, lq)
	if err != nil {
		t.Fatal(err)
	}
	errStop := errors.New("stop")
	err = w.st.Snapshot(t.Context(), w.svc.ID, func(ctx context.Context, r catalog.SnapshotReader, _ int64) error {
		var all []catalog.Resource
		if err := r.Each(ctx, q, func(res catalog.Resource) error {
			all = append(all, res)
			return nil
		}); err != nil {
			return err
		}
		slices.SortFunc(all, func(a, b catalog.Resource) int { return strings.Compare(a.Name, b.Name) })
		// Kinds are shared: the same pointer.
		if diff := cmp.Diff(want, all, cmp.Comparer(func(a, b *catalog.Kind) bool { return a == b })); diff != "" {
			t.Errorf("Each (-List +Each):\n%s", diff)
		}

		fq := q
		fq.Fields = []string{"scope", "state", "missing"}
		got := map[string][]string{}
		if err := r.Each(ctx, fq, func(res catalog.Resource) error {
			if res.Properties != nil || res.Secrets != nil || res.ID != "" {
				t.Errorf("%s: Fields read more than the fields: %+v", res.Name, res)
			}
			if want := []string{configwire.KeyHash(w.keys[res.Name]), configwire.KeyHash("second-" + res.Name)}; !cmp.Equal(want, res.KeyHashes) {
				t.Errorf("%s: key hashes %v, want those of its keys", res.Name, res.KeyHashes)
			}
			got[res.Name] = res.Fields
			return nil
		}); err != nil {
			return err
		}
		wantFields := map[string][]string{"all": {scope("apis"), "submitted", ""}, "chat-1": {scope("apis/chat"), "submitted", ""},
			"chat-2": {scope("apis/chat"), "submitted", ""}}
		if diff := cmp.Diff(wantFields, got); diff != "" {
			t.Errorf("Fields (-want +got):\n%s", diff)
		}

		calls := 0
		if err := r.Each(ctx, q, func(catalog.Resource) error { calls++; return errStop }); !errors.Is(err, errStop) || calls != 1 {
			t.Errorf("Each after fn failed: %v, %d calls", err, calls)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIndexedQueriesPlannedEachTime checks that lists by property or key hash are never cached
// as prepared statements: after five executions Postgres may switch a prepared statement to a
// generic plan, which cannot use the partial indexes these lists need, and scans every
// subscription of the service instead (seconds at a million).
func TestIndexedQueriesPlannedEachTime(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := t.Context()
	for i := range 8 {
		for _, q := range []catalog.Query{
			{Kind: catalog.KindSubscription, KeyHash: configwire.KeyHash(fmt.Sprint("key-", i)), All: true},
			{Kind: catalog.KindSubscription, PropEquals: map[string]string{"scope": fmt.Sprint("/apis/", i)}, All: true},
			{Kind: catalog.KindSubscription, PropIn: map[string][]string{"scope": {fmt.Sprint("/apis/", i)}}, All: true},
			{Kind: catalog.KindAPI}, // an ordinary list, cached as usual
		} {
			if _, _, err := w.st.List(ctx, w.svc.ID, q); err != nil {
				t.Fatal(err)
			}
		}
		// A snapshot's read of every subscription of its scopes, too.
		if err := w.st.Snapshot(ctx, w.svc.ID, func(ctx context.Context, r catalog.SnapshotReader, _ int64) error {
			return r.Each(ctx, catalog.Query{Kind: catalog.KindSubscription, PropIn: map[string][]string{"scope": {fmt.Sprint("/apis/", i)}},
				Fields: []string{"state"}}, func(catalog.Resource) error { return nil })
		}); err != nil {
			t.Fatal(err)
		}
	}
	var indexed, plain int
	err := w.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE statement LIKE '%key_hashes @>%' OR statement LIKE '%properties ->>%'),
		count(*) FILTER (WHERE statement LIKE '%FROM resources%') FROM pg_prepared_statements
		WHERE statement NOT LIKE '%pg_prepared_statements%'`).Scan(&indexed, &plain)
	if err != nil {
		t.Fatal(err)
	}
	if indexed != 0 {
		t.Errorf("%d list statements by property or key hash are prepared and cached", indexed)
	}
	if plain == 0 {
		t.Error("no list statement is cached: the check sees no prepared statements at all")
	}
}
