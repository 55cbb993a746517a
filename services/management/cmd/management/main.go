// Command management serves Gatehouse's ARM-compatible management API, applies database
// migrations at start, and relays committed configuration changes to NATS JetStream.
//
// Usage: management [migrate]. Every flag has an environment variable (DESIGN §6).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/fleet"
	"gatehouse.dev/management/internal/metrics"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/management/internal/reports"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/store"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/envflag"
)

type config struct {
	databaseURL    string
	natsURL        string
	natsEmbedded   string
	natsStoreDir   string
	listen         string
	tlsCert        string
	tlsKey         string
	adminToken     string
	encryptionKey  string
	jwtIssuer      string
	jwtAudience    string
	jwksURL        string
	jwtKey         string
	logLevel       string
	streamReplicas int
}

func parseConfig(args []string) (config, []string, error) {
	var c config
	var e envflag.Env
	fs := flag.NewFlagSet("management", flag.ContinueOnError)
	fs.StringVar(&c.databaseURL, "database-url", e.String("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gatehouse?sslmode=disable"), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&c.natsURL, "nats-url", e.String("NATS_URL", ""), "NATS server URLs, comma separated; empty starts an embedded server (NATS_URL)")
	fs.StringVar(&c.natsEmbedded, "nats-embedded-listen", e.String("NATS_EMBEDDED_LISTEN", natsembed.DefaultListen), "listen address of the embedded NATS server (NATS_EMBEDDED_LISTEN)")
	fs.StringVar(&c.natsStoreDir, "nats-store-dir", e.String("NATS_STORE_DIR", ""), "JetStream directory of the embedded NATS server; empty = temporary (NATS_STORE_DIR)")
	fs.StringVar(&c.listen, "listen", e.String("MANAGEMENT_LISTEN", "127.0.0.1:8080"), "address of the ARM API (MANAGEMENT_LISTEN)")
	fs.StringVar(&c.tlsCert, "tls-cert", e.String("MANAGEMENT_TLS_CERT", ""), "TLS certificate file (MANAGEMENT_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", e.String("MANAGEMENT_TLS_KEY", ""), "TLS key file (MANAGEMENT_TLS_KEY)")
	fs.StringVar(&c.adminToken, "admin-token", e.String("MANAGEMENT_ADMIN_TOKEN", ""), "static bearer token with full access (MANAGEMENT_ADMIN_TOKEN)")
	fs.StringVar(&c.encryptionKey, "encryption-key", e.String("MANAGEMENT_ENCRYPTION_KEY", ""), "key sealing secrets at rest (MANAGEMENT_ENCRYPTION_KEY)")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", e.String("MANAGEMENT_JWT_ISSUER", ""), "issuer of bearer JWTs; empty turns JWT auth off (MANAGEMENT_JWT_ISSUER)")
	fs.StringVar(&c.jwtAudience, "jwt-audience", e.String("MANAGEMENT_JWT_AUDIENCE", ""), "audience bearer JWTs must carry (MANAGEMENT_JWT_AUDIENCE)")
	fs.StringVar(&c.jwksURL, "jwks-url", e.String("MANAGEMENT_JWKS_URL", ""), "JWKS URL of the JWT issuer (MANAGEMENT_JWKS_URL)")
	fs.StringVar(&c.jwtKey, "jwt-key", e.String("MANAGEMENT_JWT_KEY", ""), "HMAC secret or PEM public key of the JWT issuer (MANAGEMENT_JWT_KEY)")
	fs.IntVar(&c.streamReplicas, "nats-stream-replicas", int(e.Int("NATS_STREAM_REPLICAS", 1)), "replicas of the configuration stream on a NATS cluster (NATS_STREAM_REPLICAS)")
	fs.StringVar(&c.logLevel, "log-level", e.String("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if err := e.Err(); err != nil {
		return c, nil, err
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, nil, errors.New("MANAGEMENT_TLS_CERT and MANAGEMENT_TLS_KEY go together")
	}
	return c, fs.Args(), nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "management:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg, rest, err := parseConfig(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if err := migrate.Migrate(ctx, cfg.databaseURL); err != nil {
		return err
	}
	if len(rest) > 0 && rest[0] == "migrate" {
		log.Info("migrations applied")
		return nil
	}
	if len(rest) > 0 {
		return fmt.Errorf("unknown command %q", rest[0])
	}

	if cfg.encryptionKey == "" {
		log.Warn("MANAGEMENT_ENCRYPTION_KEY is not set: secrets are sealed with the public development key; set it in production")
		cfg.encryptionKey = secretbox.DevKey
	}
	box, err := secretbox.New(cfg.encryptionKey)
	if err != nil {
		return err
	}
	if cfg.adminToken == "" && cfg.jwtIssuer == "" {
		log.Warn("neither MANAGEMENT_ADMIN_TOKEN nor MANAGEMENT_JWT_ISSUER is set: every ARM call will be refused")
	}
	verifier, err := auth.New(ctx, auth.Config{AdminToken: cfg.adminToken, Issuer: cfg.jwtIssuer, Audience: cfg.jwtAudience,
		JWKSURL: cfg.jwksURL, Key: cfg.jwtKey})
	if err != nil {
		return err
	}

	pool, err := pgxpool.New(ctx, cfg.databaseURL)
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	defer pool.Close()

	natsURLs := cfg.natsURL
	if natsURLs == "" {
		ns, err := natsembed.Start(ctx, natsembed.Options{Listen: cfg.natsEmbedded, StoreDir: cfg.natsStoreDir, Log: log})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		defer ns.Shutdown()
		natsURLs = ns.ClientURL()
		log.Info("embedded NATS started", "url", natsURLs)
	}
	nc, err := nats.Connect(natsURLs, nats.Name("gatehouse-management"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("NATS %s: %w", natsURLs, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := outbox.EnsureStream(ctx, js, cfg.streamReplicas); err != nil {
		return err
	}
	if err := reports.EnsureStream(ctx, js, cfg.streamReplicas); err != nil {
		return err
	}

	nodes := fleet.New(fleet.Options{Log: log})
	hbSub, err := nodes.Subscribe(nc)
	if err != nil {
		return fmt.Errorf("subscribing to gateway heartbeats: %w", err)
	}
	defer func() { _ = hbSub.Unsubscribe() }()

	reg, err := metrics.NewRegistry()
	if err != nil {
		return err
	}
	mm, err := metrics.NewManagement(reg)
	if err != nil {
		return err
	}

	cat := catalog.New(store.New(pool, box), log)
	srv := api.New(api.Config{
		NATSURLs:       strings.Split(natsURLs, ","),
		Fleet:          nodes,
		Connections:    fleet.NewConnections(nc, nodes, log),
		Metrics:        mm,
		MetricsHandler: metrics.Handler(reg),
		Reports:        reports.NewStore(pool),
		Ready: func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				return fmt.Errorf("database: %w", err)
			}
			if !nc.IsConnected() {
				return errors.New("NATS disconnected")
			}
			return nil
		},
	}, cat, verifier, log)

	httpSrv := &http.Server{Addr: cfg.listen, Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: time.Minute, WriteTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	scheme := "http"
	if cfg.tlsCert != "" {
		scheme = "https"
	}
	log.Info("management listening", "url", scheme+"://"+ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reports.NewIngester(pool, js, log).Run(gctx) })
	g.Go(func() error {
		return outbox.NewRelay(pool, js, log, outbox.WithObserver(mm), outbox.WithStreamReplicas(cfg.streamReplicas)).Run(gctx)
	})
	g.Go(func() error {
		var err error
		if cfg.tlsCert != "" {
			err = httpSrv.ServeTLS(ln, cfg.tlsCert, cfg.tlsKey)
		} else {
			err = httpSrv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
		defer cancel()
		return httpSrv.Shutdown(shutCtx)
	})
	return g.Wait()
}
