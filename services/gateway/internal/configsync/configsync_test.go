package configsync_test

import (
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/configsync"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
)

func TestColdStartThenChanges(t *testing.T) {
	t.Parallel()
	natsURL, js := startJetStream(t)
	m := newManagement(t)
	cache := t.TempDir()
	// The stream already holds the revisions up to the snapshot's.
	publish(t, js, change(4, put(greeting("hello"))))
	publish(t, js, change(5, put(sub("a", "active", "key-a"))))
	m.set(snapshot(natsURL, 5, sub("a", "active", "key-a")))

	n := startNode(t, m, cache)
	cfg := n.waitRevision(t, 5)
	if got := keyState(cfg, "key-a"); got != "a active" {
		t.Errorf("revision 5: key-a = %s", got)
	}
	waitConsumers(t, js, 0)

	publish(t, js, change(6, put(sub("b", "active", "key-b"))))
	m.set(snapshot(natsURL, 6, sub("a", "active", "key-a"), sub("b", "active", "key-b")))
	publish(t, js, change(7, put(sub("a", "suspended", "key-a"))))
	m.set(snapshot(natsURL, 7, sub("a", "suspended", "key-a"), sub("b", "active", "key-b")))
	cfg = n.waitRevision(t, 7)

	for key, want := range map[string]string{"key-a": "a suspended", "key-b": "b active"} {
		if got := keyState(cfg, key); got != want {
			t.Errorf("revision 7: %s = %s, want %s", key, got, want)
		}
	}
	if diff := cmp.Diff([]int64{5, 6, 7}, n.installed()); diff != "" {
		t.Errorf("installed revisions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{6, 7}, n.appliedRevisions()); diff != "" {
		t.Errorf("Applied revisions (-want +got):\n%s", diff)
	}
	if got := m.fetches.Load(); got != 1 {
		t.Errorf("snapshot fetched %d times, want once: changes apply incrementally", got)
	}
	if err := n.syncer.LastError(); err != nil {
		t.Errorf("LastError = %v", err)
	}

	// The cache follows incremental changes too, and is private.
	var cached configwire.Snapshot
	waitFor(t, "the cache at revision 7", func() bool {
		cached = readCache(t, cache)
		return cached.Revision == 7
	})
	fi, err := os.Stat(filepath.Join(cache, cacheFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("cache file mode = %v, want 0600 (it holds secret named values)", mode)
	}
	got, err := compiled.NewBuilder(pipeline.Env{}).Load(cached)
	if err != nil {
		t.Fatalf("loading the cache: %v", err)
	}
	for _, key := range []string{"key-a", "key-b", "key-c"} {
		if keyState(got, key) != keyState(cfg, key) {
			t.Errorf("cached config: %s = %s, want %s", key, keyState(got, key), keyState(cfg, key))
		}
	}
	if got.LookupWebSocket(request("/chat")) == nil {
		t.Errorf("cached config does not serve /chat")
	}
}

// cacheFile is where a node keeps its cache in its cache folder.
const cacheFile = "config.snapshot"

// readCache returns the cached snapshot, its subscriptions as entities, or a zero one while
// there is none.
func readCache(t *testing.T, dir string) configwire.Snapshot {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, cacheFile))
	if errors.Is(err, os.ErrNotExist) {
		return configwire.Snapshot{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	snap, err := configwire.DecodeSnapshot(f)
	if err != nil {
		t.Fatalf("cache file: %v", err)
	}
	return snap
}

func TestResync(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// step publishes what follows revision 6 and sets management's snapshot.
		step         func(t *testing.T, p publisher)
		wantRevision int64
		wantInstalls []int64
		wantKey      string // state of key-new at the end
		wantFetches  int64
	}{
		{
			name: "gap",
			step: func(t *testing.T, p publisher) {
				p.snapshot(8, sub("new", "active", "key-new"))
				p.publish(change(8, put(sub("new", "active", "key-new")))) // 7 was lost
			},
			wantRevision: 8, wantInstalls: []int64{5, 6, 8}, wantKey: "new active", wantFetches: 2,
		},
		{
			name: "undecodable change",
			step: func(t *testing.T, p publisher) {
				p.snapshot(7, sub("new", "active", "key-new"))
				publishRaw(t, p.js, 7, []byte(`{"serviceId": 7`))
			},
			wantRevision: 7, wantInstalls: []int64{5, 6, 7}, wantKey: "new active", wantFetches: 2,
		},
		{
			name: "change too large to send",
			step: func(t *testing.T, p publisher) {
				p.snapshot(7, sub("new", "active", "key-new"))
				p.publish(change(7, configwire.Item{Op: configwire.OpResync}))
			},
			wantRevision: 7, wantInstalls: []int64{5, 6, 7}, wantKey: "new active", wantFetches: 2,
		},
		{
			name: "API linked to this gateway",
			step: func(t *testing.T, p publisher) {
				p.snapshot(7, sub("new", "active", "key-new"))
				p.publish(change(7, put(linkHere("other"))))
			},
			wantRevision: 7, wantInstalls: []int64{5, 6, 7}, wantKey: "new active", wantFetches: 2,
		},
		{
			name: "re-delivered old revisions",
			step: func(t *testing.T, p publisher) {
				p.publish(change(3, put(sub("new", "active", "key-new"))))
				p.publish(change(6, put(sub("new", "active", "key-new"))))
				p.snapshot(7, sub("b", "suspended"))
				p.publish(change(7, put(sub("b", "suspended"))))
			},
			wantRevision: 7, wantInstalls: []int64{5, 6, 7}, wantKey: "none", wantFetches: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			natsURL, js := startJetStream(t)
			m := newManagement(t)
			p := publisher{t: t, js: js, m: m, natsURL: natsURL}
			p.snapshot(5)
			n := startNode(t, m, "")
			n.waitRevision(t, 5)
			waitConsumers(t, js, 0)
			p.snapshot(6, sub("b", "active", "key-b"))
			p.publish(change(6, put(sub("b", "active", "key-b"))))
			n.waitRevision(t, 6)

			tc.step(t, p)
			cfg := n.waitRevision(t, tc.wantRevision)
			if got := keyState(cfg, "key-new"); got != tc.wantKey {
				t.Errorf("key-new = %s, want %s", got, tc.wantKey)
			}
			if diff := cmp.Diff(tc.wantInstalls, n.installed()); diff != "" {
				t.Errorf("installed revisions (-want +got):\n%s", diff)
			}
			if got := m.fetches.Load(); got != tc.wantFetches {
				t.Errorf("snapshot fetched %d times, want %d", got, tc.wantFetches)
			}
		})
	}
}

// publisher moves management's state forward: its snapshot and its change stream.
type publisher struct {
	t       *testing.T
	js      jetstream.JetStream
	m       *management
	natsURL string
}

func (p publisher) snapshot(rev int64, extra ...configwire.Entity) {
	p.m.set(snapshot(p.natsURL, rev, extra...))
}

func (p publisher) publish(ch configwire.Change) { publish(p.t, p.js, ch) }

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// downFor is how long management is unreachable before it refuses the token.
		downFor time.Duration
	}{
		{"refused at once", 0},
		{"refused once management answers", 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			natsURL, _ := startJetStream(t)
			m := newManagement(t)
			m.set(snapshot(natsURL, 5))
			m.token = "a-regenerated-key's-token"
			if tc.downFor > 0 {
				m.setDown(true)
				time.AfterFunc(tc.downFor, func() { m.setDown(false) })
			}
			n := startNode(t, m, "")
			select {
			case err := <-n.done:
				n.done <- nil // for the cleanup
				if !errors.Is(err, configsync.ErrUnauthorized) {
					t.Fatalf("Run = %v, want ErrUnauthorized", err)
				}
				if !strings.Contains(err.Error(), "token") {
					t.Errorf("the message does not say what is wrong: %v", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("Run did not return on a refused token")
			}
			if got := n.installed(); len(got) != 0 {
				t.Errorf("installed %v with a refused token", got)
			}
		})
	}
}

// TestFailStatic runs against a management that serves snapshot streams and against one of
// an earlier version that serves JSON only, whose cache file is JSON.
func TestFailStatic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		jsonOnly bool
	}{{"stream", false}, {"JSON", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			failStatic(t, tc.jsonOnly)
		})
	}
}

func failStatic(t *testing.T, jsonOnly bool) {
	natsURL, js := startJetStream(t)
	m := newManagement(t)
	m.setJSONOnly(jsonOnly)
	cache := t.TempDir()
	m.set(snapshot(natsURL, 5, sub("a", "active", "key-a")))

	first := startNode(t, m, cache)
	first.waitRevision(t, 5)
	first.shutdown(t)
	if got := readCache(t, cache).Revision; got != 5 {
		t.Fatalf("cache holds revision %d, want 5", got)
	}
	if streams := m.streams.Load(); jsonOnly != (streams == 0) {
		t.Errorf("%d snapshots served as streams", streams)
	}

	// Management is down: a new node starts from the cache, then converges once it is back.
	m.setDown(true)
	m.set(snapshot(natsURL, 6, sub("a", "suspended", "key-a")))
	fetches := m.fetches.Load()
	second := startNode(t, m, cache)
	cfg := second.waitRevision(t, 5)
	if got := keyState(cfg, "key-a"); got != "a active" {
		t.Errorf("from the cache: key-a = %s, want a active", got)
	}
	if cfg.LookupWebSocket(request("/chat")) == nil {
		t.Errorf("from the cache: /chat not served")
	}
	waitFor(t, "LastError to report management unreachable", func() bool { return second.syncer.LastError() != nil })
	if got := m.fetches.Load(); got != fetches {
		t.Errorf("fetched %d snapshots while management was down", got-fetches)
	}

	m.setDown(false)
	cfg = second.waitRevision(t, 6)
	if got := keyState(cfg, "key-a"); got != "a suspended" {
		t.Errorf("after management is back: key-a = %s, want a suspended", got)
	}
	if err := second.syncer.LastError(); err != nil {
		t.Errorf("LastError = %v after converging", err)
	}
	if diff := cmp.Diff([]int64{5, 6}, second.installed()); diff != "" {
		t.Errorf("installed revisions (-want +got):\n%s", diff)
	}
	// And it follows the stream from there.
	waitConsumers(t, js, 0)
	publish(t, js, change(7, put(sub("a", "active", "key-a"))))
	if got := keyState(second.waitRevision(t, 7), "key-a"); got != "a active" {
		t.Errorf("revision 7: key-a = %s", got)
	}
}

func TestNoCacheWaitsForManagement(t *testing.T) {
	t.Parallel()
	natsURL, _ := startJetStream(t)
	m := newManagement(t)
	m.set(snapshot(natsURL, 5, sub("a", "active", "key-a")))
	m.setDown(true)
	cache := t.TempDir()
	n := startNode(t, m, cache)
	waitFor(t, "LastError to report management unreachable", func() bool { return n.syncer.LastError() != nil })
	waitFor(t, "ten attempts refused", func() bool { return m.refused.Load() >= 10 })
	if got := n.installed(); len(got) != 0 {
		t.Fatalf("installed %v with neither management nor a cache", got)
	}
	m.setDown(false)
	if got := keyState(n.waitRevision(t, 5), "key-a"); got != "a active" {
		t.Errorf("key-a = %s", got)
	}
	if err := n.syncer.LastError(); err != nil {
		t.Errorf("LastError = %v", err)
	}
}

func TestDeleteService(t *testing.T) {
	t.Parallel()
	natsURL, js := startJetStream(t)
	m := newManagement(t)
	cache := t.TempDir()
	m.set(snapshot(natsURL, 5, sub("a", "active", "key-a")))
	n := startNode(t, m, cache)
	n.waitRevision(t, 5)
	waitConsumers(t, js, 0)
	m.token = "the service and its gateways are gone"

	publish(t, js, change(6, configwire.Item{Op: configwire.OpDeleteService}))
	cfg := n.waitRevision(t, 6)
	if cfg.APIs() != 0 || cfg.LookupWebSocket(request("/chat")) != nil || keyState(cfg, "key-a") != "none" {
		t.Errorf("after deleteService: %d APIs, key-a %s", cfg.APIs(), keyState(cfg, "key-a"))
	}
	if _, err := os.Stat(filepath.Join(cache, cacheFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cache of a deleted service remains: %v", err)
	}
}

// failedAPIs lists the APIs of cfg that fail closed, and whether every failure names want.
func failedAPIs(cfg *compiled.Config, want string) ([]string, bool) {
	var apis []string
	named := true
	for _, f := range cfg.Failures() {
		if !slices.Contains(apis, f.API) {
			apis = append(apis, f.API)
		}
		named = named && strings.Contains(f.Error, want)
	}
	return apis, named
}

// TestSnapshotThatDoesNotCompile checks that a snapshot with a policy the node cannot compile
// is installed and cached: the API it belongs to fails closed, the rest is served (issue 11).
func TestSnapshotThatDoesNotCompile(t *testing.T) {
	t.Parallel()
	natsURL, js := startJetStream(t)
	m := newManagement(t)
	cache := t.TempDir()
	m.set(withoutGreeting(snapshot(natsURL, 5, sub("a", "active", "key-a"))))
	n := startNode(t, m, cache)
	cfg := n.waitRevision(t, 5)
	if apis, named := failedAPIs(cfg, "greeting"); len(apis) != 1 || !named {
		t.Errorf("failed APIs %v (each naming the missing named value: %v), want one", apis, named)
	}
	if got := keyState(cfg, "key-a"); got != "a active" {
		t.Errorf("key-a = %s", got)
	}
	if err := n.syncer.LastError(); err != nil {
		t.Errorf("LastError = %v: the snapshot was installed", err)
	}
	if got := readCache(t, cache).Revision; got != 5 {
		t.Errorf("cached revision %d, want 5", got)
	}
	waitConsumers(t, js, 0)

	// Management fixes it: the change applies and the failure ends.
	publish(t, js, change(6, put(greeting("hello"))))
	if apis, _ := failedAPIs(n.waitRevision(t, 6), ""); len(apis) != 0 {
		t.Errorf("failed APIs %v after the fix", apis)
	}
}

// TestChangeThatDoesNotCompile checks that a change that breaks a policy still applies whole:
// its other items (here a suspension) take effect at once, and later changes apply after it.
func TestChangeThatDoesNotCompile(t *testing.T) {
	t.Parallel()
	natsURL, js := startJetStream(t)
	m := newManagement(t)
	cache := t.TempDir()
	m.set(snapshot(natsURL, 5, sub("a", "active", "key-a")))
	n := startNode(t, m, cache)
	n.waitRevision(t, 5)
	waitConsumers(t, js, 0)

	// Revision 6 deletes a named value in use and suspends a.
	publish(t, js, change(6, put(sub("a", "suspended", "key-a")),
		configwire.Item{Op: configwire.OpDelete, Entity: configwire.Entity{Kind: configwire.KindNamedValue, Name: "greeting"}}))
	cfg := n.waitRevision(t, 6)
	if got := keyState(cfg, "key-a"); got != "a suspended" {
		t.Errorf("key-a = %s: the suspension in the change that broke a policy was not applied", got)
	}
	if apis, named := failedAPIs(cfg, "greeting"); len(apis) != 1 || !named {
		t.Errorf("failed APIs %v (naming greeting: %v), want one", apis, named)
	}

	// Revision 7 restores it; revision 8, a plain data change, applies after it.
	publish(t, js, change(7, put(greeting("hello again"))))
	publish(t, js, change(8, put(sub("a", "active", "key-a"))))
	cfg = n.waitRevision(t, 8)
	if got := keyState(cfg, "key-a"); got != "a active" {
		t.Errorf("key-a = %s", got)
	}
	if apis, _ := failedAPIs(cfg, ""); len(apis) != 0 {
		t.Errorf("failed APIs %v after the fix", apis)
	}
	if diff := cmp.Diff([]int64{5, 6, 7, 8}, n.installed()); diff != "" {
		t.Errorf("installed revisions (-want +got):\n%s", diff)
	}
	if err := n.syncer.LastError(); err != nil {
		t.Errorf("LastError = %v", err)
	}
}

// request is a request for path, with no header nor query.
func request(path string) *http.Request {
	return &http.Request{URL: &url.URL{Path: path}, Header: http.Header{}}
}
