package outbox

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

// testTimeout bounds each test; the relays run with short intervals so tests take seconds.
const testTimeout = time.Minute

// fastOptions make a relay react in milliseconds.
func fastOptions() []Option {
	return []Option{
		WithLockRetry(50 * time.Millisecond),
		WithPollInterval(200 * time.Millisecond),
		WithPublishTimeout(300 * time.Millisecond),
		WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond),
	}
}

// env is one test's world: its own migrated database, its own NATS server and a pool that plays
// management's writer. Each test gets its own database because relays of one database share the
// leader lock and the outbox.
type env struct {
	url    string
	writer *pgxpool.Pool
	nats   *natsembed.Server
	js     jetstream.JetStream
}

func newEnv(t *testing.T, ctx context.Context) *env {
	t.Helper()
	url, drop, err := dbtest.Setup(ctx, "outbox", migrate.Migrate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e := &env{url: url, nats: ns}
	e.js = connectJS(t, ns)
	if err := EnsureStream(ctx, e.js, 1); err != nil {
		t.Fatal(err)
	}
	e.writer = e.newPool(t, ctx)
	return e
}

// connectJS connects to ns as management, reconnecting forever, as management does.
func connectJS(t *testing.T, ns *natsembed.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL(), ns.UserInfo(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// newPool returns a pool on the test database: one per simulated management replica.
func (e *env) newPool(t *testing.T, ctx context.Context) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// createService inserts a service at revision 0 and returns its id.
func (e *env) createService(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var id string
	err := e.writer.QueryRow(ctx, `
		INSERT INTO services (id, subscription_id, resource_group, name, location, sku, properties, etag)
		VALUES (gen_random_uuid(), 'sub', 'rg', $1, 'westeurope', '{}', '{}', 'etag')
		RETURNING id::text`, name).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// write commits one change to service as management does: bump the revision, insert the outbox
// row and notify, in one transaction. It returns the new revision.
func (e *env) write(ctx context.Context, serviceID string) (int64, error) {
	var rev int64
	err := pgx.BeginFunc(ctx, e.writer, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			UPDATE services SET revision = revision + 1, updated_at = now()
			WHERE id = $1 RETURNING revision`, serviceID).Scan(&rev)
		if err != nil {
			return err
		}
		payload, err := json.Marshal(change(serviceID, rev))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO outbox (service_id, revision, payload) VALUES ($1, $2, $3)", serviceID, rev, payload); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, '')", NotifyChannel)
		return err
	})
	return rev, err
}

func (e *env) mustWrite(t *testing.T, ctx context.Context, serviceID string, n int) {
	t.Helper()
	for range n {
		if _, err := e.write(ctx, serviceID); err != nil {
			t.Fatal(err)
		}
	}
}

// change is the payload write stores for a revision.
func change(serviceID string, rev int64) configwire.Change {
	return configwire.Change{
		ServiceID: serviceID,
		Revision:  rev,
		Items: []configwire.Item{{
			Op: configwire.OpPut,
			Entity: configwire.Entity{
				Kind:       configwire.KindAPI,
				Name:       "echo",
				Properties: json.RawMessage(`{"path":"echo"}`),
				Revision:   rev,
			},
		}},
	}
}

// jsonValue compares raw JSON by value: Postgres' jsonb re-spaces what it stores.
var jsonValue = cmp.Transformer("json", func(m json.RawMessage) any {
	var v any
	if err := json.Unmarshal(m, &v); err != nil {
		return string(m)
	}
	return v
})

// pending returns how many outbox rows are not marked published.
func (e *env) pending(t *testing.T, ctx context.Context) int {
	t.Helper()
	var n int
	if err := e.writer.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// streamRevisions reads every message of the stream in order and returns each service's revisions
// in stream order. It checks that each message's headers, id and payload agree with its subject.
func (e *env) streamRevisions(t *testing.T, ctx context.Context) map[string][]int64 {
	t.Helper()
	s, err := e.js.Stream(ctx, bus.ConfigStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int64{}
	if info.State.Msgs == 0 {
		return got
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		svc := m.Header.Get(bus.HeaderService)
		rev, err := bus.ParseRevision(m.Header.Get(bus.HeaderRevision))
		if err != nil {
			t.Fatalf("message %d: revision header: %v", seq, err)
		}
		if m.Subject != bus.ConfigSubject(svc) {
			t.Errorf("message %d: subject %q, want %q", seq, m.Subject, bus.ConfigSubject(svc))
		}
		sig := m.Header.Get(bus.HeaderSignature)
		if err := testVerifier.VerifyChange(svc, rev, m.Data, sig); err != nil {
			t.Errorf("message %d: signature: %v", seq, err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), bus.ConfigMsgID(svc, rev, configwire.SignatureDigest(sig)); got != want {
			t.Errorf("message %d: %s = %q, want %q", seq, jetstream.MsgIDHeader, got, want)
		}
		var c configwire.Change
		if err := json.Unmarshal(m.Data, &c); err != nil {
			t.Fatalf("message %d: payload: %v", seq, err)
		}
		if diff := cmp.Diff(change(svc, rev), c, jsonValue); diff != "" {
			t.Errorf("message %d: payload (-want +got):\n%s", seq, diff)
		}
		got[svc] = append(got[svc], rev)
	}
	return got
}

// waitPublished waits until the outbox has no pending row and the stream holds msgs messages.
func (e *env) waitPublished(t *testing.T, ctx context.Context, msgs uint64) {
	t.Helper()
	var (
		stored uint64
		left   int
		err    error
	)
	eventually(t, ctx, func() bool {
		if err = e.writer.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&left); err != nil {
			return false
		}
		var s jetstream.Stream
		if s, err = e.js.Stream(ctx, bus.ConfigStream); err != nil {
			return false
		}
		var info *jetstream.StreamInfo
		if info, err = s.Info(ctx); err != nil {
			return false
		}
		stored = info.State.Msgs
		return stored >= msgs && left == 0
	}, func() string {
		return fmt.Sprintf("stream holds %d of %d messages, %d rows pending (last error: %v)", stored, msgs, left, err)
	})
	if stored != msgs {
		t.Fatalf("stream holds %d messages, want %d", stored, msgs)
	}
}

// eventually polls cond until it holds, failing with status() when ctx ends first.
func eventually(t *testing.T, ctx context.Context, cond func() bool, status func() string) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting: %s", status())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// consecutive returns 1..n.
func consecutive(n int) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(i + 1)
	}
	return s
}

// runRelay runs a relay until the returned stop is called (or the test ends).
func runRelay(t *testing.T, ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, name string, opts ...Option) (*Relay, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("relay", name)
	r := NewRelay(pool, js, testSigner, log, append(fastOptions(), opts...)...)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay %s: Run = %v, want nil after cancel", name, err)
		}
		if r.Leading() {
			t.Errorf("relay %s still leading after Run returned", name)
		}
	})
	t.Cleanup(stop)
	return r, stop
}

// lags is an Observer that counts what the relay's drains tell it: Lag(0) ends a drain that
// left nothing pending; a non-zero Lag starts a drain that found rows, or ends one that failed.
type lags struct{ drained, pending atomic.Int32 }

func (l *lags) Leading(bool)  {}
func (l *lags) Published(int) {}
func (l *lags) Lag(age time.Duration) {
	if age == 0 {
		l.drained.Add(1)
	} else {
		l.pending.Add(1)
	}
}

// recorder is an afterPublish hook that records the outbox ids a relay published.
type recorder struct {
	mu  sync.Mutex
	ids []int64
}

func (r *recorder) hook(id int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	return nil
}

func (r *recorder) published() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

func TestRelayPublishesRowsCommittedWhileNoRelayRan(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)

	a, b := e.createService(t, ctx, "a"), e.createService(t, ctx, "b")
	for range 5 {
		e.mustWrite(t, ctx, a, 1)
		e.mustWrite(t, ctx, b, 2)
	}
	if got := e.streamRevisions(t, ctx); len(got) != 0 {
		t.Fatalf("stream holds %v before any relay ran", got)
	}

	runRelay(t, ctx, e.newPool(t, ctx), e.js, "late")
	e.waitPublished(t, ctx, 15)
	want := map[string][]int64{a: consecutive(5), b: consecutive(10)}
	if diff := cmp.Diff(want, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions per service (-want +got):\n%s", diff)
	}
}

func TestRelayWakesOnNotify(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)
	svc := e.createService(t, ctx, "a")

	// With an hour between polls only the notification can wake the leader.
	var l lags
	runRelay(t, ctx, e.newPool(t, ctx), e.js, "listener", WithPollInterval(time.Hour), WithObserver(&l))
	// Its first drain found nothing: from here only a notification makes it look again.
	eventually(t, ctx, func() bool { return l.drained.Load() > 0 }, func() string { return "first drain never ended" })

	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	e.mustWrite(t, ctx, svc, 3)
	e.waitPublished(t, wctx, 3)
	if diff := cmp.Diff(map[string][]int64{svc: consecutive(3)}, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions (-want +got):\n%s", diff)
	}
}

func TestRelayCrashBetweenPublishAndMark(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)
	svc := e.createService(t, ctx, "a")
	e.mustWrite(t, ctx, svc, 3)
	var lastID int64
	if err := e.writer.QueryRow(ctx, "SELECT max(id) FROM outbox").Scan(&lastID); err != nil {
		t.Fatal(err)
	}

	// The first relay "crashes" after JetStream acknowledged the last row, before marking the batch.
	crashed := make(chan struct{})
	var once sync.Once
	_, stopFirst := runRelay(t, ctx, e.newPool(t, ctx), e.js, "crashing", withAfterPublish(func(id int64) error {
		if id != lastID {
			return nil
		}
		once.Do(func() { close(crashed) })
		return errors.New("simulated crash")
	}))
	select {
	case <-crashed:
	case <-ctx.Done():
		t.Fatal("first relay never published the last row")
	}
	stopFirst()
	// Rows are marked once per batch: the whole batch is published but none is marked.
	if got := e.pending(t, ctx); got != 3 {
		t.Fatalf("after the crash %d rows are pending, want 3 (published, not marked)", got)
	}

	var second recorder
	runRelay(t, ctx, e.newPool(t, ctx), e.js, "next", withAfterPublish(second.hook))
	e.waitPublished(t, ctx, 3)
	if diff := cmp.Diff([]int64{lastID - 2, lastID - 1, lastID}, second.published()); diff != "" {
		t.Errorf("rows re-published by the next relay (-want +got):\n%s", diff)
	}
	// JetStream dropped the second copy: each revision is in the stream once.
	if diff := cmp.Diff(map[string][]int64{svc: consecutive(3)}, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions (-want +got):\n%s", diff)
	}
}

// terminateLeader kills the database session holding the leader lock, as if its connection or
// host died, and reports whether there was one.
func terminateLeader(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var killed bool
	err := pool.QueryRow(ctx, `
		SELECT coalesce(bool_or(pg_terminate_backend(pid)), false)
		FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1`,
		lockKey).Scan(&killed)
	return killed, err
}

func TestTwoRelaysPublishEveryRevisionOnceInOrder(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)
	services := []string{e.createService(t, ctx, "a"), e.createService(t, ctx, "b"), e.createService(t, ctx, "c")}

	// Two replicas: each its own pool and NATS connection.
	var recA, recB recorder
	relayA, stopA := runRelay(t, ctx, e.newPool(t, ctx), connectJS(t, e.nats), "a", withAfterPublish(recA.hook))
	relayB, stopB := runRelay(t, ctx, e.newPool(t, ctx), connectJS(t, e.nats), "b", withAfterPublish(recB.hook))

	// Four writers commit 200 revisions across the services; midway the leader's database
	// session is killed.
	const writers, perWriter = 4, 50
	var committed atomic.Int64
	counts := make([][]int, writers)
	var wg sync.WaitGroup
	for w := range writers {
		counts[w] = make([]int, len(services))
		wg.Go(func() {
			for i := range perWriter {
				s := (w + i) % len(services)
				if _, err := e.write(ctx, services[s]); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				counts[w][s]++
				committed.Add(1)
			}
		})
	}
	eventually(t, ctx, func() bool { return committed.Load() >= writers*perWriter/2 }, func() string { return "writers stalled" })
	killed, err := terminateLeader(ctx, e.writer)
	if err != nil {
		t.Fatal(err)
	}
	if !killed {
		t.Error("no relay held the leader lock midway through the writes")
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	want := map[string][]int64{}
	perService := make([]int, len(services))
	for _, c := range counts {
		for s, n := range c {
			perService[s] += n
		}
	}
	for s, n := range perService {
		want[services[s]] = consecutive(n)
	}
	e.waitPublished(t, ctx, writers*perWriter)
	if diff := cmp.Diff(want, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions per service (-want +got):\n%s", diff)
	}

	// Exactly one relay leads; stop it and the other takes over.
	eventually(t, ctx, func() bool { return relayA.Leading() != relayB.Leading() }, func() string {
		return fmt.Sprintf("leading: a=%v b=%v, want exactly one", relayA.Leading(), relayB.Leading())
	})
	stopLeader, other, otherRec := stopA, relayB, &recB
	if relayB.Leading() {
		stopLeader, other, otherRec = stopB, relayA, &recA
	}
	stopLeader()
	eventually(t, ctx, other.Leading, func() string { return "the other relay never took over" })
	before := len(otherRec.published())
	for range 10 {
		for _, svc := range services {
			e.mustWrite(t, ctx, svc, 1)
		}
	}
	for s := range services {
		want[services[s]] = consecutive(perService[s] + 10)
	}
	e.waitPublished(t, ctx, writers*perWriter+30)
	if diff := cmp.Diff(want, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions per service after take-over (-want +got):\n%s", diff)
	}
	if got := len(otherRec.published()) - before; got != 30 {
		t.Errorf("the relay that took over published %d rows, want 30", got)
	}
}

func TestRelaySurvivesNATSOutage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)
	// Replace the env's server by one with a store that survives a restart on the same port.
	e.nats.Shutdown()
	dir := t.TempDir()
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	e.js = connectJS(t, ns)
	if err := EnsureStream(ctx, e.js, 1); err != nil {
		t.Fatal(err)
	}
	svc := e.createService(t, ctx, "a")

	var l lags
	runRelay(t, ctx, e.newPool(t, ctx), e.js, "outage", WithObserver(&l))
	e.mustWrite(t, ctx, svc, 2)
	e.waitPublished(t, ctx, 2)

	_, port, err := net.SplitHostPort(ns.ClientURL()[len("nats://"):])
	if err != nil {
		t.Fatal(err)
	}
	ns.Shutdown()
	before := l.pending.Load()
	e.mustWrite(t, ctx, svc, 3)
	// Two failed attempts: each drain tells the lag when it finds the rows and when it fails.
	eventually(t, ctx, func() bool { return l.pending.Load() >= before+4 },
		func() string { return fmt.Sprintf("%d lags told with rows pending", l.pending.Load()-before) })
	if got := e.pending(t, ctx); got != 3 {
		t.Errorf("with NATS down %d rows are pending, want 3 (none marked)", got)
	}

	auth := ns.Auth() // the client reconnects with management's credentials
	ns, err = natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:" + port, StoreDir: dir, Auth: &auth})
	if err != nil {
		t.Fatalf("restart NATS on port %s: %v", port, err)
	}
	t.Cleanup(ns.Shutdown)
	e.waitPublished(t, ctx, 5)
	if diff := cmp.Diff(map[string][]int64{svc: consecutive(5)}, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions (-want +got):\n%s", diff)
	}
}

func TestRelayRecreatesMissingStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)
	if err := e.js.DeleteStream(ctx, bus.ConfigStream); err != nil {
		t.Fatal(err)
	}
	svc := e.createService(t, ctx, "a")
	e.mustWrite(t, ctx, svc, 2)

	runRelay(t, ctx, e.newPool(t, ctx), e.js, "recreate")
	e.waitPublished(t, ctx, 2)
	if diff := cmp.Diff(map[string][]int64{svc: consecutive(2)}, e.streamRevisions(t, ctx)); diff != "" {
		t.Errorf("stream revisions (-want +got):\n%s", diff)
	}
}

func TestCleanupDeletesOnlyOldPublishedRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	e := newEnv(t, ctx)
	svc := e.createService(t, ctx, "a")

	rows := []struct {
		name      string
		published string // SQL for published_at
		kept      bool
	}{
		{name: "published two days ago", published: "now() - interval '2 days'", kept: false},
		{name: "published 25 hours ago", published: "now() - interval '25 hours'", kept: false},
		{name: "published an hour ago", published: "now() - interval '1 hour'", kept: true},
		{name: "never published", published: "NULL", kept: true},
	}
	var want []int64
	for _, r := range rows {
		rev, err := e.write(ctx, svc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.writer.Exec(ctx, "UPDATE outbox SET published_at = "+r.published+" WHERE revision = $1", rev); err != nil {
			t.Fatal(err)
		}
		if r.kept {
			want = append(want, rev)
		}
	}

	r := NewRelay(e.writer, e.js, testSigner, nil, WithRetention(24*time.Hour, time.Minute))
	conn, err := e.writer.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if err := r.cleanup(ctx, conn.Conn()); err != nil {
		t.Fatal(err)
	}
	q, _ := e.writer.Query(ctx, "SELECT revision FROM outbox ORDER BY revision")
	got, err := pgx.CollectRows(q, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		for i, r := range rows {
			t.Logf("revision %d: %s (kept: %v)", i+1, r.name, r.kept)
		}
		t.Errorf("revisions left after cleanup (-want +got):\n%s", diff)
	}
}

func TestEnsureStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	js := connectJS(t, ns)

	// A stream left with another duplicate window is brought back to the contract; calling
	// twice is fine.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: bus.ConfigStream, Subjects: []string{bus.ConfigSubjects}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := EnsureStream(ctx, js, 1); err != nil {
			t.Fatalf("EnsureStream #%d: %v", i+1, err)
		}
	}
	s, err := js.Stream(ctx, bus.ConfigStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	got := struct {
		Subjects   []string
		Duplicates time.Duration
		MaxAge     time.Duration
		Storage    string
	}{cfg.Subjects, cfg.Duplicates, cfg.MaxAge, cfg.Storage.String()}
	want := got
	want.Subjects, want.Duplicates, want.MaxAge, want.Storage = []string{bus.ConfigSubjects}, bus.ConfigDuplicateWindow, StreamMaxAge, jetstream.FileStorage.String()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stream config (-want +got):\n%s", diff)
	}

	// A duplicate message id inside the window is dropped.
	for i := range 2 {
		msg := &nats.Msg{Subject: bus.ConfigSubject("svc"), Data: []byte("{}")}
		ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(bus.ConfigMsgID("svc", 1, "d")))
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate != (i == 1) {
			t.Errorf("publish #%d: Duplicate = %v, want %v", i+1, ack.Duplicate, i == 1)
		}
	}
}

// testKey signs the relays' changes; testVerifier checks them.
var (
	testKey      = configwire.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	testVerifier = func() *configwire.Verifier {
		v, err := configwire.NewVerifier([]configwire.VerifyKey{testKey.VerifyKey()})
		if err != nil {
			panic(err)
		}
		return v
	}()
)

func testSigner() *configwire.Signer { return testKey }
