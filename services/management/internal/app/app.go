// Package app assembles the management service from its parts and owns their start and stop
// order: the database (migrations first), NATS (embedded or remote, connected in the
// background), the JetStream streams, the outbox relay, the usage ingester, the gateway
// heartbeats and the ARM API's HTTP server. Command management and the tests (mgmttest) build
// management through New alone.
package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/busauth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/connlog"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/gatewaykeys"
	"gatehouse.dev/management/internal/metrics"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/signing"
	"gatehouse.dev/management/internal/store"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/egress"
	"gatehouse.dev/pkg/promreg"
)

// Timings of the assembly.
const (
	// shutdownTimeout bounds the wait for in-flight HTTP requests at shutdown.
	shutdownTimeout = 10 * time.Second
	// retryWait is how long stream set-up and the usage ingester wait before trying again
	// after a failure while NATS is connected.
	retryWait = 2 * time.Second
)

// DefaultEgressDeny is management's default egress deny list: the link-local ranges
// (egress.DefaultDeny) and the gateway node's default traffic and admin listeners
// (GATEWAY_LISTEN 127.0.0.1:8081, GATEWAY_ADMIN_LISTEN 127.0.0.1:9091) on loopback, where a
// serviceUrl would reach the node itself. The nodes refuse their own listeners at dial time
// whatever their ports.
const DefaultEgressDeny = egress.DefaultDeny + ",127.0.0.0/8:8081,[::1]:8081,127.0.0.0/8:9091,[::1]:9091"

// Config is management's static configuration (docs/design.md §5): command management fills it from
// flags and environment variables, tests from their options. The zero value of a field means
// what its comment says.
type Config struct {
	// DatabaseURL is the Postgres URL; New applies the migrations to it.
	DatabaseURL string
	// NATSURL lists the NATS servers, comma separated. Empty starts an embedded NATS server
	// with JetStream on NATSEmbeddedListen (empty: natsembed.DefaultListen) that keeps its
	// streams in NATSStoreDir (empty: a temporary directory).
	NATSURL            string
	NATSEmbeddedListen string
	NATSStoreDir       string
	// NATSReconnectWait is how long the NATS connection waits between attempts to reach a
	// server; zero means nats.go's default (2 s).
	NATSReconnectWait time.Duration
	// NATSUser and NATSPassword are management's user on a remote NATS, in busauth.Account
	// and among the callout's auth users. With an embedded server, New generates them.
	NATSUser, NATSPassword string
	// NATSSystemUser and NATSSystemPassword are management's user in the system account, with
	// which it disconnects the nodes of a gateway whose keys are regenerated or that is
	// deleted; without them those nodes keep the bus until their credentials expire.
	NATSSystemUser, NATSSystemPassword string
	// NATSCalloutIssuerSeed and NATSCalloutXKeySeed are the auth callout's keys
	// (busauth.Options); without the issuer seed management authorizes no gateway node, and
	// nodes reach the bus only if it is open.
	NATSCalloutIssuerSeed, NATSCalloutXKeySeed string
	// NATSCredentialTTL is the life of a node's bus credentials (busauth.DefaultTTL when zero).
	NATSCredentialTTL time.Duration
	// NATSCAFile is the PEM file of the CAs that sign the NATS servers' certificates; empty
	// uses the system's (for tls:// URLs).
	NATSCAFile string
	// StreamReplicas is the replication factor of the streams on a NATS cluster; below 1 means 1.
	StreamReplicas int
	// Listen is the address of the ARM API. Listener, if set, is used instead (tests listen on
	// a port the kernel picks); App closes it.
	Listen   string
	Listener net.Listener
	// TLSCert and TLSKey are the files of the API's TLS certificate and key; TLS, if set, is a
	// TLS configuration used instead. Neither serves plain HTTP.
	TLSCert, TLSKey string
	TLS             *tls.Config
	// AdminListen is the address of the admin listener: /metrics, /healthz and /readyz, plain
	// HTTP without authentication, for operators and Prometheus only. AdminListener, if set,
	// is used instead; App closes it. With neither, there is no admin listener and /metrics is
	// served nowhere.
	AdminListen   string
	AdminListener net.Listener
	// EgressAllow and EgressDeny are the egress policy API serviceUrls must pass when written
	// (pkg/egress.Parse). An empty EgressDeny means DefaultEgressDeny; "none" denies nothing.
	EgressAllow, EgressDeny string
	// EncryptionKey seals secrets at rest; empty uses secretbox.DevKey and logs a warning.
	EncryptionKey string
	// Auth configures the bearer tokens the API accepts.
	Auth auth.Config
	// Fleet configures the registry of gateway nodes fed by their heartbeats.
	Fleet fleet.Options
	// ConnectionLogRetention and ConnectionLogMaxRows bound the connection log: records
	// older than the retention, and a service's records beyond its newest MaxRows, are
	// pruned. Zero means connlog's defaults (7 days, 100,000 rows); negative keeps all.
	ConnectionLogRetention time.Duration
	ConnectionLogMaxRows   int
	// Relay adjusts the outbox relay. NoRelay runs none: the outbox only fills (for tests
	// that read it).
	Relay   []outbox.Option
	NoRelay bool
}

// App is an assembled management service. New builds it; Run runs it until its context ends
// and then releases everything New acquired. The accessors are safe for concurrent use and
// meant for tests and the command.
type App struct {
	cfg Config
	log *slog.Logger

	pool     *pgxpool.Pool
	embedded *natsembed.Server // nil when NATS is remote
	natsURLs string
	nc       *nats.Conn
	sys      *nats.Conn // the system account's; nil without its credentials
	js       jetstream.JetStream
	busAuth  *busauth.Authorizer // nil without the callout's keys
	authSub  *nats.Subscription
	// connected receives a token whenever the NATS connection is (re)established; it holds
	// at most one, so a connect is never lost and never blocks nats.go's callback goroutine.
	connected chan struct{}
	// streamsUp is closed once the streams were first set up; streamsOK tells whether they
	// were set up since the last (re)connect.
	streamsUp     chan struct{}
	streamsUpOnce sync.Once
	streamsOK     atomic.Bool

	keys     *signing.Keyring
	nodeAuth *gatewaykeys.Cache
	fleet    *fleet.Registry
	hbSub    *nats.Subscription
	connLog  *connlog.Log
	metrics  *prometheus.Registry
	mm       *metrics.Management
	catalog  *catalog.Catalog
	api      *api.Server
	listener net.Listener
	tls      bool // the API serves HTTPS
	http     *http.Server
	// adminLn and admin serve the admin listener; nil without one.
	adminLn net.Listener
	admin   *http.Server

	closeOnce sync.Once
}

// New builds management from cfg: it applies the database migrations, opens the database
// pool, starts the embedded NATS server if there is one, starts connecting to NATS (without
// waiting: management takes ARM writes while NATS is away, and the outbox keeps them), and
// binds the API's listener. It serves nothing until Run. On error it releases what it acquired.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: log, connected: make(chan struct{}, 1), streamsUp: make(chan struct{})}
	if err := a.build(ctx); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *App) build(ctx context.Context) error {
	cfg, log := a.cfg, a.log
	if err := migrate.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	box, err := sealBox(cfg, log)
	if err != nil {
		return err
	}
	if cfg.Auth.AdminToken == "" && cfg.Auth.Issuer == "" {
		log.Warn("neither MANAGEMENT_ADMIN_TOKEN nor MANAGEMENT_JWT_ISSUER is set: every ARM call will be refused")
	}
	verifier, err := auth.New(ctx, cfg.Auth)
	if err != nil {
		return err
	}
	tlsConfig, err := a.tlsConfig()
	if err != nil {
		return err
	}

	if a.pool, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := a.connectNATS(ctx); err != nil {
		return err
	}

	if a.keys, err = signing.Open(ctx, a.pool, box, log); err != nil {
		return err
	}
	if a.metrics, err = promreg.New(); err != nil {
		return err
	}
	if a.mm, err = metrics.NewManagement(a.metrics); err != nil {
		return err
	}
	deny := cfg.EgressDeny
	if strings.TrimSpace(deny) == "" {
		deny = DefaultEgressDeny
	}
	policy, err := egress.Parse(cfg.EgressAllow, deny)
	if err != nil {
		return fmt.Errorf("MANAGEMENT_EGRESS_ALLOW/MANAGEMENT_EGRESS_DENY: %w", err)
	}
	a.catalog = catalog.New(store.New(a.pool, box), log, catalog.WithEgress(policy))
	if a.nodeAuth, err = gatewaykeys.Open(ctx, a.pool, a.catalog, a.keys, log); err != nil {
		return err
	}
	if cfg.Fleet.Log == nil {
		cfg.Fleet.Log = log
	}
	cfg.Fleet.Keys = a.nodeAuth
	cfg.Fleet.Rejected = a.mm.NodeMessageRejected
	a.fleet = fleet.New(cfg.Fleet)
	if a.hbSub, err = a.fleet.Subscribe(a.nc); err != nil {
		return fmt.Errorf("subscribing to gateway heartbeats: %w", err)
	}
	a.connLog = connlog.New(a.pool, connlog.Options{Keys: a.nodeAuth, Rejected: a.mm.NodeMessageRejected, Log: log,
		MaxAge: cfg.ConnectionLogRetention, MaxRows: cfg.ConnectionLogMaxRows})
	if err := a.serveBusAuth(ctx); err != nil {
		return err
	}
	var bus api.BusRevoker
	if a.busAuth != nil {
		bus = a.busAuth
	}
	a.api = api.New(api.Config{
		Bus:            bus,
		NATSURLs:       strings.Split(a.natsURLs, ","),
		Fleet:          a.fleet,
		Connections:    fleet.NewConnections(a.nc, a.fleet, a.keys.Signer, log),
		Metrics:        a.mm,
		MetricsHandler: promreg.Handler(a.metrics),
		Reports:        reports.NewStore(a.pool),
		ConnectionLog:  a.connLog,
		Ready:          a.readiness,
		Keys:           a.keys,
	}, a.catalog, verifier, log)

	a.listener = cfg.Listener
	if a.listener == nil {
		if a.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
			return err
		}
	}
	a.tls = tlsConfig != nil
	a.http = &http.Server{Handler: a.api.Handler(), TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: time.Minute, WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute}
	a.adminLn = cfg.AdminListener
	if a.adminLn == nil && cfg.AdminListen != "" {
		if a.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("MANAGEMENT_ADMIN_LISTEN: %w", err)
		}
	}
	a.catalog.RefuseOwn(a.listener.Addr())
	if a.adminLn != nil {
		a.catalog.RefuseOwn(a.adminLn.Addr())
		a.admin = &http.Server{Handler: a.api.AdminHandler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute}
	}
	return nil
}

// sealBox returns the secretbox of cfg.EncryptionKey, or of secretbox.DevKey with a warning
// when it is empty.
func sealBox(cfg Config, log *slog.Logger) (*secretbox.Box, error) {
	key := cfg.EncryptionKey
	if key == "" {
		log.Warn("MANAGEMENT_ENCRYPTION_KEY is not set: secrets are sealed with the public development key; set it in production")
		key = secretbox.DevKey
	}
	return secretbox.New(key)
}

// RotateSigningKey retires the configuration signing key of the installation whose database
// cfg.DatabaseURL names and makes a new one active (signing.Keyring.Rotate), returning the new
// key's id; cfg.EncryptionKey must be the running management's. It is command management's
// "rotate-signing-key": running replicas sign with the new key within signing.RefreshEvery,
// gateway nodes fetch a snapshot when they meet it, and the retired key keeps verifying for
// signing.RetiredVerifyFor. The database must be migrated already.
func RotateSigningKey(ctx context.Context, cfg Config, log *slog.Logger) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	box, err := sealBox(cfg, log)
	if err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	keys, err := signing.Open(ctx, pool, box, log)
	if err != nil {
		return "", err
	}
	return keys.Rotate(ctx)
}

// tlsConfig returns the API's TLS configuration, nil for plain HTTP.
func (a *App) tlsConfig() (*tls.Config, error) {
	switch {
	case a.cfg.TLS != nil:
		return a.cfg.TLS.Clone(), nil
	case a.cfg.TLSCert == "" && a.cfg.TLSKey == "":
		return nil, nil
	case a.cfg.TLSCert == "" || a.cfg.TLSKey == "":
		return nil, errors.New("MANAGEMENT_TLS_CERT and MANAGEMENT_TLS_KEY go together")
	}
	cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// connectNATS starts the embedded NATS server if there is one and starts connecting. The
// connection retries for ever, in the background, from the first attempt on
// (RetryOnFailedConnect): a management process started or restarted during a NATS outage comes
// up, takes ARM writes into the outbox, and publishes them once NATS answers. While it is
// disconnected, publishing fails at once instead of filling a reconnect buffer
// (ReconnectBufSize -1): the outbox is the buffer, and the relay retries from it.
func (a *App) connectNATS(ctx context.Context) error {
	a.natsURLs = a.cfg.NATSURL
	if a.natsURLs == "" {
		ns, err := natsembed.Start(ctx, natsembed.Options{Listen: a.cfg.NATSEmbeddedListen, StoreDir: a.cfg.NATSStoreDir, Log: a.log})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		a.embedded = ns
		a.natsURLs = ns.ClientURL()
		a.log.Info("embedded NATS started", "url", a.natsURLs)
		auth := ns.Auth()
		a.cfg.NATSUser, a.cfg.NATSPassword = auth.User, auth.Password
		a.cfg.NATSSystemUser, a.cfg.NATSSystemPassword = auth.SystemUser, auth.SystemPassword
		a.cfg.NATSCalloutIssuerSeed, a.cfg.NATSCalloutXKeySeed = auth.IssuerSeed, auth.XKeySeed
	}
	secure, err := a.natsSecurity()
	if err != nil {
		return err
	}
	opts := []nats.Option{
		nats.Name("gatehouse-management"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1),
		nats.ConnectHandler(func(*nats.Conn) {
			a.log.Info("NATS connected", "url", a.natsURLs)
			a.poke()
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			a.log.Info("NATS reconnected; configuration changes waiting in the outbox will be published", "url", a.natsURLs)
			a.poke()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			a.streamsOK.Store(false)
			a.log.Warn("NATS disconnected; ARM writes still succeed and their changes wait in the outbox", "err", err)
		}),
	}
	if a.cfg.NATSReconnectWait > 0 {
		opts = append(opts, nats.ReconnectWait(a.cfg.NATSReconnectWait))
	}
	opts = append(opts, secure...)
	if a.cfg.NATSUser != "" {
		opts = append(opts, nats.UserInfo(a.cfg.NATSUser, a.cfg.NATSPassword))
	}
	nc, err := nats.Connect(a.natsURLs, opts...)
	if err != nil {
		return fmt.Errorf("NATS %s: %w", a.natsURLs, err)
	}
	a.nc = nc
	if !nc.IsConnected() {
		a.log.Warn("NATS unreachable; management starts anyway and keeps trying", "url", a.natsURLs)
	}
	if a.js, err = jetstream.New(nc); err != nil {
		return err
	}
	return nil
}

// natsSecurity returns the TLS options of management's NATS connections.
func (a *App) natsSecurity() ([]nats.Option, error) {
	if a.cfg.NATSCAFile == "" {
		return nil, nil
	}
	return []nats.Option{nats.RootCAs(a.cfg.NATSCAFile)}, nil
}

// serveBusAuth answers the auth callout for gateway nodes (busauth), with a connection to the
// system account to disconnect revoked ones, when management has the callout's keys.
func (a *App) serveBusAuth(ctx context.Context) error {
	if a.cfg.NATSCalloutIssuerSeed == "" {
		a.log.Warn("no NATS auth callout keys (MANAGEMENT_NATS_CALLOUT_ISSUER_SEED): management authorizes no gateway node; the bus must be closed some other way")
		return nil
	}
	if a.cfg.NATSSystemUser != "" {
		secure, err := a.natsSecurity()
		if err != nil {
			return err
		}
		opts := append([]nats.Option{nats.Name("gatehouse-management-system"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
			nats.UserInfo(a.cfg.NATSSystemUser, a.cfg.NATSSystemPassword)}, secure...)
		if a.sys, err = nats.Connect(a.natsURLs, opts...); err != nil {
			return fmt.Errorf("NATS system account %s: %w", a.natsURLs, err)
		}
	} else {
		a.log.Warn("no NATS system account user (MANAGEMENT_NATS_SYSTEM_USER): a gateway whose keys are regenerated keeps the bus until its nodes' credentials expire",
			"ttl", cmp.Or(a.cfg.NATSCredentialTTL, busauth.DefaultTTL))
	}
	var err error
	a.busAuth, err = busauth.New(busauth.Options{
		IssuerSeed: a.cfg.NATSCalloutIssuerSeed,
		XKeySeed:   a.cfg.NATSCalloutXKeySeed,
		TTL:        a.cfg.NATSCredentialTTL,
		System:     a.sys,
		Log:        a.log,
		Verify: func(ctx context.Context, token string) (busauth.Identity, error) {
			node, err := a.catalog.VerifyGatewayToken(ctx, token)
			if err != nil {
				return busauth.Identity{}, err
			}
			return busauth.Identity{ServiceID: node.Service.ID, Gateway: node.Gateway.Name, Expiry: node.Expiry}, nil
		},
	})
	if err != nil {
		return err
	}
	// The subscription outlives reconnections; ctx bounds each answer's checks, so it must be
	// the process's, not New's.
	if a.authSub, err = a.busAuth.Serve(context.WithoutCancel(ctx), a.nc); err != nil {
		return fmt.Errorf("serving the NATS auth callout: %w", err)
	}
	return nil
}

// poke notes a (re)connect for keepStreams.
func (a *App) poke() {
	select {
	case a.connected <- struct{}{}:
	default:
	}
}

// Run serves until ctx ends, then shuts down in order and releases everything New acquired.
// It returns nil after a clean shutdown, or the error that stopped a part that must not stop
// (the HTTP server). Run must be called once.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	a.log.Info("management listening", "url", a.URL(), "admin_url", a.AdminURL())
	a.http.BaseContext = func(net.Listener) context.Context { return ctx }

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.keepStreams(gctx) })
	g.Go(func() error { return a.ingestUsage(gctx) })
	g.Go(func() error { return a.connLog.Run(gctx, a.nc) })
	g.Go(func() error { return a.keys.Run(gctx) })
	g.Go(func() error { return a.restarting(gctx, "following gateway key changes", a.nodeAuth.Follow) })
	if !a.cfg.NoRelay {
		opts := append([]outbox.Option{outbox.WithObserver(a.mm), outbox.WithStreamReplicas(a.cfg.StreamReplicas)}, a.cfg.Relay...)
		relay := outbox.NewRelay(a.pool, a.js, a.keys.Signer, a.log, opts...)
		g.Go(func() error { return relay.Run(gctx) })
	}
	g.Go(func() error {
		var err error
		if a.tls {
			err = a.http.ServeTLS(a.listener, "", "")
		} else {
			err = a.http.Serve(a.listener)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	if a.admin != nil {
		g.Go(func() error {
			if err := a.admin.Serve(a.adminLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), shutdownTimeout)
		defer cancel()
		err := a.http.Shutdown(shutCtx)
		if a.admin != nil {
			err = errors.Join(err, a.admin.Shutdown(shutCtx))
		}
		return err
	})
	return g.Wait()
}

// close releases what New acquired, in the reverse order: NATS before the embedded server it
// talks to, the database last. Safe to call more than once.
func (a *App) close() {
	a.closeOnce.Do(func() {
		if a.listener != nil {
			_ = a.listener.Close() // already closed by the HTTP server if Run served
		}
		if a.adminLn != nil {
			_ = a.adminLn.Close()
		}
		if a.hbSub != nil {
			_ = a.hbSub.Unsubscribe()
		}
		if a.authSub != nil {
			_ = a.authSub.Unsubscribe()
		}
		if a.sys != nil {
			a.sys.Close()
		}
		if a.nc != nil {
			a.nc.Close()
		}
		if a.embedded != nil {
			a.embedded.Shutdown()
		}
		if a.pool != nil {
			a.pool.Close()
		}
	})
}

// keepStreams sets up the JetStream streams once NATS answers, and again after every
// reconnect: a NATS server that lost its store (an embedded one without NATS_STORE_DIR, a
// fresh cluster) comes back without them. It returns nil when ctx ends.
func (a *App) keepStreams(ctx context.Context) error {
	for {
		var retry *time.Timer
		if a.nc.IsConnected() && !a.streamsOK.Load() {
			if err := a.ensureStreams(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.log.WarnContext(ctx, "setting up the NATS streams failed; retrying", "retry_in", retryWait, "err", err)
				retry = time.NewTimer(retryWait)
			} else {
				a.streamsOK.Store(true)
				a.streamsUpOnce.Do(func() { close(a.streamsUp) })
			}
		}
		var retryC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.connected:
			a.streamsOK.Store(false)
		case <-retryC:
		}
		if retry != nil {
			retry.Stop()
		}
	}
}

func (a *App) ensureStreams(ctx context.Context) error {
	if err := outbox.EnsureStream(ctx, a.js, a.cfg.StreamReplicas); err != nil {
		return err
	}
	return reports.EnsureStream(ctx, a.js, a.cfg.StreamReplicas)
}

// ingestUsage stores the usage batches of the gateway nodes once the streams are set up,
// starting again if it cannot start consuming. It returns nil when ctx ends.
func (a *App) ingestUsage(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-a.streamsUp:
	}
	in := reports.NewIngester(a.pool, a.js, reports.IngesterOptions{Auth: a.nodeAuth, Rejected: a.mm.NodeMessageRejected, Log: a.log})
	return a.restarting(ctx, "usage ingester", in.Run)
}

// restarting runs run until ctx ends, starting it again retryWait after it returns early (what
// names it in the log); it returns nil.
func (a *App) restarting(ctx context.Context, what string, run func(context.Context) error) error {
	for {
		err := run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		a.log.WarnContext(ctx, what+" stopped; restarting", "retry_in", retryWait, "err", err)
		t := time.NewTimer(retryWait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// readiness answers /readyz. Management is ready while its database answers: that is all an
// ARM write needs, since a change is committed to the outbox with the resource and published
// by the relay whenever NATS answers. So a NATS outage keeps management in the load balancer
// (200) and shows in the detail instead ("nats": "disconnected, 3 changes waiting in the
// outbox"), where an operator and an alert on the outbox lag see it (docs/running.md).
func (a *App) readiness(ctx context.Context) api.Readiness {
	r := api.Readiness{Ready: true, Checks: map[string]string{"database": "ok"}}
	if err := a.pool.Ping(ctx); err != nil {
		a.log.WarnContext(ctx, "not ready: the database does not answer", "err", err)
		r.Ready = false
		r.Checks["database"] = "unreachable"
	}
	state := "connected"
	switch {
	case !a.nc.IsConnected():
		state = "disconnected"
	case !a.streamsOK.Load():
		state = "connected, setting up streams"
	}
	if r.Ready {
		if n, err := outbox.Pending(ctx, a.pool); err == nil {
			state += fmt.Sprintf(", %d changes waiting in the outbox", n)
		}
	}
	r.Checks["nats"] = state
	return r
}

// URL is the API's base URL, such as "http://127.0.0.1:8080".
func (a *App) URL() string {
	scheme := "http"
	if a.tls {
		scheme = "https"
	}
	return scheme + "://" + a.listener.Addr().String()
}

// AdminURL is the admin listener's base URL, such as "http://127.0.0.1:9090"; "" without one.
func (a *App) AdminURL() string {
	if a.adminLn == nil {
		return ""
	}
	return "http://" + a.adminLn.Addr().String()
}

// StreamsUp is closed once the JetStream streams were first set up: from then on changes
// flow to the gateway nodes and usage batches are stored.
func (a *App) StreamsUp() <-chan struct{} { return a.streamsUp }

// Pool is the database pool.
func (a *App) Pool() *pgxpool.Pool { return a.pool }

// NATS is management's NATS connection; it may be disconnected.
func (a *App) NATS() *nats.Conn { return a.nc }

// JetStream is the JetStream context of NATS.
func (a *App) JetStream() jetstream.JetStream { return a.js }

// EmbeddedNATS is the embedded NATS server, nil when NATS is remote.
func (a *App) EmbeddedNATS() *natsembed.Server { return a.embedded }

// Catalog is the domain layer over the database.
func (a *App) Catalog() *catalog.Catalog { return a.catalog }

// NodeAuth checks the node authentication of the messages gateway nodes send.
func (a *App) NodeAuth() *gatewaykeys.Cache { return a.nodeAuth }

// Fleet is the registry of gateway nodes.
func (a *App) Fleet() *fleet.Registry { return a.fleet }

// Keys returns the configuration signing keys.
func (a *App) Keys() *signing.Keyring { return a.keys }

// Metrics is the Prometheus registry served at /metrics on the admin listener.
func (a *App) Metrics() *prometheus.Registry { return a.metrics }

// API is the HTTP API.
func (a *App) API() *api.Server { return a.api }
