package configsync_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/configsync"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"

	"gatehouse.dev/pkg/testwait"
)

// testKey is the fake management's signing key; testNodeKey the node key it hands out.
var (
	testKey     = configwire.NewSigner(ed25519.NewKeyFromSeed(sha256.New().Sum(nil)))
	testNodeKey = configwire.DeriveNodeKey(testKey.KeyID(), []byte("root"), serviceID, "gw1", []byte("gateway key"))
)

const (
	serviceID = "5e2c7a10-svc"
	token     = "gw1&202601010000&sig"
	svcARM    = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc"
)

// startJetStream runs a NATS server with JetStream on a random port and creates the config
// stream as management does.
func startJetStream(t *testing.T) (url string, js jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("NATS server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("NATS connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: bus.ConfigStream, Subjects: []string{bus.ConfigSubjects},
		Duplicates: bus.ConfigDuplicateWindow}); err != nil {
		t.Fatalf("creating the stream: %v", err)
	}
	return srv.ClientURL(), js
}

// management is a double of management's snapshot endpoint: it serves the snapshot it was
// last given to callers presenting the gateway token, as a stream to those that accept one
// unless it is set to JSON only (a management of an earlier version). The real endpoint is
// exercised by the end-to-end tests.
type management struct {
	srv     *httptest.Server
	token   string
	fetches atomic.Int64
	// streams counts the snapshots served as streams.
	streams atomic.Int64
	// refused counts the requests dropped while down.
	refused atomic.Int64

	mu sync.Mutex
	// sealWith, if set, seals streams instead of the key the snapshot lists.
	sealWith *configwire.Signer
	snap     configwire.Snapshot
	down     bool
	jsonOnly bool
}

func newManagement(t *testing.T) *management {
	m := &management{token: token}
	m.srv = httptest.NewServer(m)
	t.Cleanup(m.srv.Close)
	return m
}

func (m *management) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	snap, down, jsonOnly := m.snap, m.down, m.jsonOnly
	m.mu.Unlock()
	switch {
	case down:
		m.refused.Add(1)
		panic(http.ErrAbortHandler) // the connection drops, as when management is unreachable
	case r.Method != http.MethodGet || r.URL.Path != configwire.SnapshotPath:
		http.NotFound(w, r)
	case r.Header.Get("Authorization") != "GatewayKey "+m.token:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"Unauthorized","message":"Invalid gateway token."}}`))
	case !jsonOnly && strings.Contains(r.Header.Get("Accept"), configwire.SnapshotStreamType):
		m.fetches.Add(1)
		m.streams.Add(1)
		w.Header().Set("Content-Type", configwire.SnapshotStreamType)
		w.Header().Set(configwire.NodeKeyHeader, testNodeKey.String())
		sw, err := configwire.NewSnapshotWriter(w, configwire.SnapshotStream, snap)
		if err != nil {
			panic(err)
		}
		sw.Sign(m.sealer())
		for _, e := range snap.Entities {
			if e.Kind == configwire.KindSubscription {
				s, err := configwire.SubscriptionOf(e)
				if err != nil {
					panic(err)
				}
				_ = sw.WriteSubscription(s)
				continue
			}
			_ = sw.WriteEntity(e)
		}
		_ = sw.Close()
	default:
		m.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(snap)
	}
}

func (m *management) sealer() *configwire.Signer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sealWith != nil {
		return m.sealWith
	}
	return testKey
}

// setJSONOnly makes m serve JSON whatever the client accepts.
func (m *management) setJSONOnly(jsonOnly bool) {
	m.mu.Lock()
	m.jsonOnly = jsonOnly
	m.mu.Unlock()
}

func (m *management) set(snap configwire.Snapshot) {
	m.mu.Lock()
	m.snap = snap
	m.mu.Unlock()
}

func (m *management) setDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

// node is a gateway node under test: a Syncer and what it installed.
type node struct {
	syncer *configsync.Syncer
	cur    atomic.Pointer[compiled.Config]
	done   chan error
	stop   context.CancelFunc
	once   sync.Once

	mu       sync.Mutex
	installs []int64
	applied  []int64
}

// startNode runs a Syncer against m until the test ends; it finds NATS through the snapshot,
// as in production.
func startNode(t *testing.T, m *management, cacheDir string) *node {
	t.Helper()
	return startNodeWith(t, m, cacheDir, func(*configsync.Options) {})
}

// startNodeWith is startNode with its Options adjusted by adjust.
func startNodeWith(t *testing.T, m *management, cacheDir string, adjust func(*configsync.Options)) *node {
	t.Helper()
	n := &node{done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	opt := configsync.Options{
		ManagementURL: m.srv.URL, Token: token, CacheDir: cacheDir,
		Log:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Retry: 10 * time.Millisecond, CacheWriteDelay: 10 * time.Millisecond,
		Install: func(c *compiled.Config) {
			n.mu.Lock()
			n.installs = append(n.installs, c.Revision)
			n.mu.Unlock()
			n.cur.Store(c)
		},
		Applied: func(rev int64, _ time.Duration) {
			n.mu.Lock()
			n.applied = append(n.applied, rev)
			n.mu.Unlock()
		},
	}
	adjust(&opt)
	n.syncer = configsync.New(opt, compiled.NewBuilder(pipeline.Env{}))
	go func() { n.done <- n.syncer.Run(ctx) }()
	t.Cleanup(func() { n.shutdown(t) })
	return n
}

// shutdown stops the node and waits for Run to return nil (once; later calls do nothing).
func (n *node) shutdown(t *testing.T) {
	t.Helper()
	n.once.Do(func() {
		n.stop()
		select {
		case err := <-n.done:
			if err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

func (n *node) installed() []int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.installs)
}

func (n *node) appliedRevisions() []int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.applied)
}

// waitRevision waits until the node serves revision rev.
func (n *node) waitRevision(t *testing.T, rev int64) *compiled.Config {
	t.Helper()
	waitFor(t, "revision "+strconv.FormatInt(rev, 10)+" installed", func() bool {
		c := n.cur.Load()
		return c != nil && c.Revision == rev
	})
	return n.cur.Load()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

// waitConsumers waits until the config stream has more than n consumers: a node that
// installed its snapshot is then following the stream.
func waitConsumers(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	waitFor(t, "a consumer on the config stream", func() bool { return consumers(t, js) > n })
}

func consumers(t *testing.T, js jetstream.JetStream) int {
	t.Helper()
	s, err := js.Stream(t.Context(), bus.ConfigStream)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Consumers
}

// publish sends a change as management's relay does.
func publish(t *testing.T, js jetstream.JetStream, ch configwire.Change) {
	t.Helper()
	data, err := json.Marshal(ch)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, ch.Revision, data)
}

func publishRaw(t *testing.T, js jetstream.JetStream, rev int64, data []byte) {
	t.Helper()
	publishSigned(t, js, testKey, rev, data)
}

// publishSigned sends a change as management's relay does, signed by key.
func publishSigned(t *testing.T, js jetstream.JetStream, key *configwire.Signer, rev int64, data []byte) {
	t.Helper()
	msg := nats.NewMsg(bus.ConfigSubject(serviceID))
	msg.Data = data
	msg.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev, 10))
	msg.Header.Set(bus.HeaderService, serviceID)
	sig := key.SignChange(serviceID, rev, data)
	msg.Header.Set(bus.HeaderSignature, sig)
	if _, err := js.PublishMsg(t.Context(), msg, jetstream.WithMsgID(bus.ConfigMsgID(serviceID, rev, configwire.SignatureDigest(sig)))); err != nil {
		t.Fatalf("publish revision %d: %v", rev, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Fixtures: a WebSocket API chat on gateway gw1 whose policy uses the named value greeting,
// and subscriptions to all APIs.

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func sub(name, state string, keys ...string) configwire.Entity {
	e := configwire.Entity{Kind: configwire.KindSubscription, Name: name,
		Properties: raw(map[string]any{"scope": svcARM + "/apis", "state": state, "displayName": name})}
	for _, k := range keys {
		e.KeyHashes = append(e.KeyHashes, configwire.KeyHash(k))
	}
	return e
}

func greeting(value string) configwire.Entity {
	return configwire.Entity{Kind: configwire.KindNamedValue, Name: "greeting",
		Properties: raw(map[string]any{"displayName": "greeting", "value": value})}
}

func linkHere(api string) configwire.Entity {
	return configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: api}
}

// snapshot is the configuration at rev, with extra entities (a later entity replaces an
// earlier one of the same kind, parent and name; nil removes the greeting named value).
func snapshot(natsURL string, rev int64, extra ...configwire.Entity) configwire.Snapshot {
	ents := []configwire.Entity{
		{Kind: configwire.KindGateway, Name: "gw1", Properties: raw(map[string]any{"description": "test"})},
		{Kind: configwire.KindAPI, Name: "chat", Properties: raw(map[string]any{"path": "chat", "type": "websocket",
			"serviceUrl": "ws://backend.internal/chat", "protocols": []string{"ws", "wss"}})},
		{Kind: configwire.KindOperation, Parent: "apis/chat", Name: "onHandshake", Properties: raw(map[string]any{"method": "GET", "urlTemplate": "/"})},
		{Kind: configwire.KindPolicy, Parent: "apis/chat", Name: "policy", Properties: raw(map[string]any{"format": "xml",
			"value": `<policies><inbound><set-header name="X-Greeting" exists-action="override"><value>{{greeting}}</value></set-header></inbound></policies>`})},
		linkHere("chat"),
		greeting("hello"),
	}
	for _, e := range extra {
		i := slices.IndexFunc(ents, func(o configwire.Entity) bool {
			return o.Kind == e.Kind && o.Parent == e.Parent && strings.EqualFold(o.Name, e.Name)
		})
		if i >= 0 {
			ents[i] = e
		} else {
			ents = append(ents, e)
		}
	}
	return configwire.Snapshot{ServiceID: serviceID, Service: "svc", Gateway: "gw1", Revision: rev, Entities: ents,
		SigningKeys: []configwire.VerifyKey{testKey.VerifyKey()},
		NATS:        configwire.NATSInfo{URLs: []string{natsURL}, Stream: bus.ConfigStream, Subject: bus.ConfigSubject(serviceID)}}
}

func withoutGreeting(s configwire.Snapshot) configwire.Snapshot {
	s.Entities = slices.DeleteFunc(slices.Clone(s.Entities), func(e configwire.Entity) bool { return e.Kind == configwire.KindNamedValue })
	return s
}

func put(e configwire.Entity) configwire.Item {
	return configwire.Item{Op: configwire.OpPut, Entity: e}
}

func change(rev int64, items ...configwire.Item) configwire.Change {
	return configwire.Change{ServiceID: serviceID, Revision: rev, Items: items}
}

// keyState is what a node answers for a key: "none" or the subscription's name and state.
func keyState(c *compiled.Config, key string) string {
	if c == nil {
		return "no config"
	}
	s := c.Subscription(sha256.Sum256([]byte(key)))
	if s == nil {
		return "none"
	}
	return s.Name + " " + s.State()
}
