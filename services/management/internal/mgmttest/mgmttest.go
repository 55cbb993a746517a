// Package mgmttest starts a complete management service for tests, through app.New as command
// management does: a database of its own with the real migrations, the embedded NATS server with
// JetStream, the outbox relay, the usage ingester, and the ARM API over a real socket (HTTP or
// HTTPS).
package mgmttest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/app"
	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/management/internal/signing"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/syncbuf"
	"gatehouse.dev/pkg/testwait"
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
	// EgressAllow and EgressDeny are management's egress policy (app.Config); empty deny
	// means app.DefaultEgressDeny.
	EgressAllow, EgressDeny string
}

// Env is a running management service, built by app.New as command management builds it.
type Env struct {
	URL     string
	Client  *http.Client
	Pool    *pgxpool.Pool
	DBURL   string
	NATS    *natsembed.Server
	NC      *nats.Conn // management's own connection
	JS      jetstream.JetStream
	Catalog *catalog.Catalog
	Fleet   *fleet.Registry
	Keys    *signing.Keyring
	Metrics *prometheus.Registry // also served at AdminURL + "/metrics"
	// AdminURL is the admin listener's base URL (/metrics, /healthz, /readyz), always plain HTTP.
	AdminURL string
	Server   *api.Server
	Token    string
	Log      *syncbuf.Buffer
	App      *app.App
}

// Start starts an Env and registers its teardown with t.Cleanup. It returns once management
// serves and its NATS streams are set up.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// app.New applies the migrations, as it does for command management.
	url, drop, err := dbtest.Setup(ctx, "gh_"+t.Name(), func(context.Context, string) error { return nil })
	if err != nil {
		t.Fatalf("database: %v", err)
	}
	t.Cleanup(drop)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	client := &http.Client{}
	cfg := app.Config{
		AdminListener:      adminLn,
		EgressAllow:        opts.EgressAllow,
		EgressDeny:         opts.EgressDeny,
		DatabaseURL:        url,
		NATSEmbeddedListen: "127.0.0.1:0",
		Listener:           ln,
		EncryptionKey:      EncryptionKey,
		Auth:               opts.Auth,
		Fleet:              opts.Fleet,
		NoRelay:            opts.NoRelay,
		Relay:              []outbox.Option{outbox.WithLockRetry(50 * time.Millisecond), outbox.WithPollInterval(100 * time.Millisecond)},
	}
	if cfg.Auth.AdminToken == "" {
		cfg.Auth.AdminToken = AdminToken
	}
	if opts.TLS {
		cfg.TLS, client = selfSigned(t)
	}
	logBuf := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		ln.Close()
		adminLn.Close()
		t.Fatalf("management: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("management stopped: %v", err)
		}
		client.CloseIdleConnections()
	})
	select {
	case <-a.StreamsUp():
	case err := <-done:
		t.Fatalf("management stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("management's NATS streams not set up within 30 s")
	}
	return &Env{URL: a.URL(), AdminURL: a.AdminURL(), Client: client, Pool: a.Pool(), DBURL: url, NATS: a.EmbeddedNATS(), NC: a.NATS(), JS: a.JetStream(),
		Catalog: a.Catalog(), Fleet: a.Fleet(), Keys: a.Keys(), Metrics: a.Metrics(), Server: a.API(), Token: cfg.Auth.AdminToken, Log: logBuf, App: a}
}

// selfSigned returns a server TLS configuration with a new self-signed certificate for
// 127.0.0.1, and a client that trusts it.
func selfSigned(t testing.TB) (*tls.Config, *http.Client) {
	t.Helper()
	c := NewCert(t, "mgmttest", []string{"127.0.0.1", "localhost"}, nil)
	roots := x509.NewCertPool()
	roots.AddCert(c.Cert)
	srv := &tls.Config{Certificates: []tls.Certificate{c.TLS()}, MinVersion: tls.VersionTLS12}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}}
	return srv, client
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

// NodeKey returns the node key management hands the nodes of gateway, in the service with
// internal id serviceID, that present a token signed with the gateway's primary key (as the
// snapshot call does), once management verifies messages authenticated with it: a gateway
// just written reaches management's cache of gateway keys through a Postgres notification.
func (e *Env) NodeKey(t testing.TB, serviceID, gateway string) configwire.NodeKey {
	t.Helper()
	var key configwire.NodeKey
	testwait.Until(t, 10*time.Second, "management knowing the keys of gateway "+gateway, func() bool {
		all, err := e.Catalog.GatewayKeyBindings(context.Background(), serviceID)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range all {
			if strings.EqualFold(g.Gateway, gateway) && len(g.Bindings) > 0 {
				key = e.Keys.NodeKey(serviceID, gateway, g.Bindings[0])
				const probe = "mgmttest.probe"
				return e.App.NodeAuth().Verify(probe, nil, key.Sign(probe, nil), serviceID, gateway) == nil
			}
		}
		return false
	})
	return key
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
