// Package mgmttest starts a complete management service for tests: a database of its own with
// the real migrations, an in-process NATS server with JetStream, the outbox relay, and the ARM
// API over a real socket (HTTP or HTTPS).
package mgmttest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/metrics"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/store"
	"gatehouse.dev/management/internal/store/migrate"
)

// AdminToken is the static admin token of every Env unless Options.Auth sets another.
const AdminToken = "test-admin-token"

// EncryptionKey seals the secrets of every Env.
const EncryptionKey = "mgmttest-encryption-key"

// APIVersion is the api-version the helpers send.
const APIVersion = "2024-05-01"

// Options configure Start. The zero value serves HTTP with the admin token and runs the relay.
type Options struct {
	TLS     bool
	Auth    auth.Config
	NoRelay bool
	// Fleet configures the registry of gateway nodes, fed by heartbeats published on Env.NC.
	Fleet fleet.Options
}

// Env is a running management service.
type Env struct {
	URL      string
	Client   *http.Client
	Pool     *pgxpool.Pool
	DBURL    string
	NATS     *natsembed.Server
	NC       *nats.Conn
	JS       jetstream.JetStream
	Catalog  *catalog.Catalog
	Fleet    *fleet.Registry
	Metrics  *prometheus.Registry // also served at URL + "/metrics"
	Server   *api.Server
	Token    string
	Log      *SafeBuffer
	HTTPTest *httptest.Server
}

// Start starts an Env and registers its teardown with t.Cleanup.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, drop, err := dbtest.Setup(ctx, "gh_"+t.Name(), migrate.Migrate)
	if err != nil {
		t.Fatalf("database: %v", err)
	}
	t.Cleanup(drop)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("nats: %v", err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	if err := reports.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	logBuf := &SafeBuffer{}
	log := slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	box, err := secretbox.New(EncryptionKey)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Auth.AdminToken == "" {
		opts.Auth.AdminToken = AdminToken
	}
	verifier, err := auth.New(ctx, opts.Auth)
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.New(store.New(pool, box), log)
	if opts.Fleet.Log == nil {
		opts.Fleet.Log = log
	}
	nodes := fleet.New(opts.Fleet)
	hbSub, err := nodes.Subscribe(nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hbSub.Unsubscribe() })
	reg, err := metrics.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	mm, err := metrics.NewManagement(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{NATSURLs: []string{ns.ClientURL()}, Fleet: nodes, Connections: fleet.NewConnections(nc, nodes, log), Metrics: mm, MetricsHandler: metrics.Handler(reg),
		Reports: reports.NewStore(pool)}, cat, verifier, log)
	// Usage batches published on NC are stored as a management process stores them.
	ingester := reports.NewIngester(pool, js, log)
	ictx, icancel := context.WithCancel(ctx)
	idone := make(chan struct{})
	go func() { defer close(idone); _ = ingester.Run(ictx) }()
	t.Cleanup(func() { icancel(); <-idone })
	hs := httptest.NewUnstartedServer(srv.Handler())
	if opts.TLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	if !opts.NoRelay {
		relay := outbox.NewRelay(pool, js, log, outbox.WithLockRetry(50*time.Millisecond), outbox.WithPollInterval(100*time.Millisecond),
			outbox.WithObserver(mm))
		done := make(chan struct{})
		rctx, rcancel := context.WithCancel(ctx)
		go func() { defer close(done); _ = relay.Run(rctx) }()
		t.Cleanup(func() { rcancel(); <-done })
	}
	return &Env{URL: hs.URL, Client: hs.Client(), Pool: pool, DBURL: url, NATS: ns, NC: nc, JS: js, Catalog: cat,
		Fleet: nodes, Metrics: reg, Server: srv, Token: opts.Auth.AdminToken, Log: logBuf, HTTPTest: hs}
}

// ServicePath is the ARM path of a service.
func ServicePath(sub, rg, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.ApiManagement/service/" + name
}

// Response is a finished request.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic map (nil when it is not an object).
func (r Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// ErrorCode is the ARM error code of the body, or "".
func (r Response) ErrorCode() string {
	if e, ok := r.JSON()["error"].(map[string]any); ok {
		s, _ := e["code"].(string)
		return s
	}
	return ""
}

// Do sends a request with the Env's token (unless headers set Authorization), adding
// api-version when the path has none. body may be nil, a string, []byte or a value to marshal.
func (e *Env) Do(t testing.TB, method, path string, body any, headers ...string) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	if !strings.Contains(path, "api-version=") && strings.HasPrefix(path, "/subscriptions/") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "api-version=" + APIVersion
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.Token)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// Must sends a request and fails the test unless the status is one of want.
func (e *Env) Must(t testing.TB, want []int, method, path string, body any, headers ...string) Response {
	t.Helper()
	r := e.Do(t, method, path, body, headers...)
	for _, w := range want {
		if r.Status == w {
			return r
		}
	}
	t.Fatalf("%s %s: status %d, want %v; body %s", method, path, r.Status, want, r.Body)
	return r
}

// CreateService creates a service and returns its ARM path.
func (e *Env) CreateService(t testing.TB, sub, rg, name string) string {
	t.Helper()
	p := ServicePath(sub, rg, name)
	e.Must(t, []int{200, 201}, "PUT", p, map[string]any{
		"location": "westeurope", "sku": map[string]any{"name": "Developer", "capacity": 1},
		"properties": map[string]any{"publisherEmail": "admin@example.com", "publisherName": "Example"},
	})
	return p
}

// SafeBuffer is a bytes.Buffer safe for concurrent writers: the service's log.
type SafeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SafeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SafeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
