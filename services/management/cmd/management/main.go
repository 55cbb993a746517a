// Command management serves Gatehouse's ARM-compatible management API, applies database
// migrations at start, and relays committed configuration changes to NATS JetStream.
//
// Usage: management [flags] [migrate | rotate-signing-key]. Every flag has an environment
// variable (docs/design.md §5); -h lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"gatehouse.dev/management/internal/app"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/store/migrate"
	"gatehouse.dev/pkg/envflag"
)

type config struct {
	app      app.Config
	logLevel string
}

// parseConfig reads flags, with defaults from the environment, from args. -h and -help print
// the usage to out and return flag.ErrHelp.
func parseConfig(args []string, out io.Writer) (config, []string, error) {
	var c config
	var e envflag.Env
	a := &c.app
	fs := flag.NewFlagSet("management", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "Usage: management [flags] [migrate | rotate-signing-key]")
		fmt.Fprintln(out, "Serves the ARM API. Commands, which run and exit:")
		fmt.Fprintln(out, "  migrate             apply the database migrations")
		fmt.Fprintln(out, "  rotate-signing-key  retire the configuration signing key and make a new one active (needs DATABASE_URL and MANAGEMENT_ENCRYPTION_KEY)")
		fmt.Fprintln(out, "Every flag has an environment variable.")
		fs.PrintDefaults()
	}
	fs.StringVar(&a.DatabaseURL, "database-url", e.String("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gatehouse?sslmode=disable"), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&a.NATSURL, "nats-url", e.String("NATS_URL", ""), "NATS server URLs, comma separated; empty starts an embedded server (NATS_URL)")
	fs.StringVar(&a.NATSEmbeddedListen, "nats-embedded-listen", e.String("NATS_EMBEDDED_LISTEN", natsembed.DefaultListen), "listen address of the embedded NATS server (NATS_EMBEDDED_LISTEN)")
	fs.StringVar(&a.NATSStoreDir, "nats-store-dir", e.String("NATS_STORE_DIR", ""), "JetStream directory of the embedded NATS server; empty = temporary (NATS_STORE_DIR)")
	fs.StringVar(&a.Listen, "listen", e.String("MANAGEMENT_LISTEN", "127.0.0.1:8080"), "address of the ARM API (MANAGEMENT_LISTEN)")
	fs.StringVar(&a.AdminListen, "admin-listen", e.String("MANAGEMENT_ADMIN_LISTEN", "127.0.0.1:9090"), "admin listener: /metrics /healthz /readyz without authentication, for operators and Prometheus only; empty = none (MANAGEMENT_ADMIN_LISTEN)")
	fs.StringVar(&a.EgressAllow, "egress-allow", e.String("MANAGEMENT_EGRESS_ALLOW", ""), "networks and host names API serviceUrls may name, comma separated (10.0.0.0/8, *.svc.cluster.local, api.example.com:443); empty = anywhere the deny list allows (MANAGEMENT_EGRESS_ALLOW)")
	fs.StringVar(&a.EgressDeny, "egress-deny", e.String("MANAGEMENT_EGRESS_DENY", app.DefaultEgressDeny), "networks and host names API serviceUrls may not name; none = no rule (MANAGEMENT_EGRESS_DENY)")
	fs.StringVar(&a.TLSCert, "tls-cert", e.String("MANAGEMENT_TLS_CERT", ""), "TLS certificate file (MANAGEMENT_TLS_CERT)")
	fs.StringVar(&a.TLSKey, "tls-key", e.String("MANAGEMENT_TLS_KEY", ""), "TLS key file (MANAGEMENT_TLS_KEY)")
	fs.StringVar(&a.Auth.AdminToken, "admin-token", e.String("MANAGEMENT_ADMIN_TOKEN", ""), "static bearer token with full access (MANAGEMENT_ADMIN_TOKEN)")
	fs.StringVar(&a.EncryptionKey, "encryption-key", e.String("MANAGEMENT_ENCRYPTION_KEY", ""), "key sealing secrets at rest (MANAGEMENT_ENCRYPTION_KEY)")
	fs.StringVar(&a.Auth.Issuer, "jwt-issuer", e.String("MANAGEMENT_JWT_ISSUER", ""), "issuer of bearer JWTs; empty turns JWT auth off (MANAGEMENT_JWT_ISSUER)")
	fs.StringVar(&a.Auth.Audience, "jwt-audience", e.String("MANAGEMENT_JWT_AUDIENCE", ""), "audience bearer JWTs must carry (MANAGEMENT_JWT_AUDIENCE)")
	fs.StringVar(&a.Auth.JWKSURL, "jwks-url", e.String("MANAGEMENT_JWKS_URL", ""), "JWKS URL of the JWT issuer (MANAGEMENT_JWKS_URL)")
	fs.StringVar(&a.Auth.Key, "jwt-key", e.String("MANAGEMENT_JWT_KEY", ""), "HMAC secret or PEM public key of the JWT issuer (MANAGEMENT_JWT_KEY)")
	fs.StringVar(&a.NATSUser, "nats-user", e.String("MANAGEMENT_NATS_USER", ""), "management's NATS user on a remote server (MANAGEMENT_NATS_USER)")
	a.NATSPassword = e.String("MANAGEMENT_NATS_PASSWORD", "")
	fs.StringVar(&a.NATSSystemUser, "nats-system-user", e.String("MANAGEMENT_NATS_SYSTEM_USER", ""), "management's NATS user in the system account, to disconnect revoked gateway nodes (MANAGEMENT_NATS_SYSTEM_USER)")
	a.NATSSystemPassword = e.String("MANAGEMENT_NATS_SYSTEM_PASSWORD", "")
	a.NATSCalloutIssuerSeed = e.String("MANAGEMENT_NATS_CALLOUT_ISSUER_SEED", "")
	a.NATSCalloutXKeySeed = e.String("MANAGEMENT_NATS_CALLOUT_XKEY_SEED", "")
	fs.DurationVar(&a.NATSCredentialTTL, "nats-credential-ttl", e.Duration("NATS_CREDENTIAL_TTL", 0), "life of a gateway node's NATS credentials; 0 = 10m (NATS_CREDENTIAL_TTL)")
	fs.StringVar(&a.NATSCAFile, "nats-ca-file", e.String("NATS_CA_FILE", ""), "PEM file of the CAs of the NATS servers' certificates (NATS_CA_FILE)")
	fs.IntVar(&a.StreamReplicas, "nats-stream-replicas", int(e.Int("NATS_STREAM_REPLICAS", 1)), "replicas of the configuration stream on a NATS cluster (NATS_STREAM_REPLICAS)")
	fs.DurationVar(&a.ConnectionLogRetention, "connection-log-retention", e.Duration("MANAGEMENT_CONNECTION_LOG_RETENTION", 0), "how long the connection log keeps a closed session's record; 0 = 168h, negative = for ever (MANAGEMENT_CONNECTION_LOG_RETENTION)")
	fs.IntVar(&a.ConnectionLogMaxRows, "connection-log-max-rows", int(e.Int("MANAGEMENT_CONNECTION_LOG_MAX_ROWS", 0)), "records the connection log keeps per service, the newest; 0 = 100000, negative = no bound (MANAGEMENT_CONNECTION_LOG_MAX_ROWS)")
	fs.StringVar(&c.logLevel, "log-level", e.String("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if err := e.Err(); err != nil {
		return c, nil, err
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return c, nil, errors.New("MANAGEMENT_TLS_CERT and MANAGEMENT_TLS_KEY go together")
	}
	return c, fs.Args(), nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "management:", err)
		os.Exit(1)
	}
}

// run parses args and runs management until ctx ends, or only one of its commands (migrate,
// rotate-signing-key). Asking for help (-h) is no error.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, rest, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	switch {
	case len(rest) == 0:
	case rest[0] == "migrate":
		if err := migrate.Migrate(ctx, cfg.app.DatabaseURL); err != nil {
			return err
		}
		log.Info("migrations applied")
		return nil
	case rest[0] == "rotate-signing-key":
		// Keyring.Rotate logs the new key's id.
		_, err := app.RotateSigningKey(ctx, cfg.app, log)
		return err
	default:
		return fmt.Errorf("unknown command %q", rest[0])
	}
	a, err := app.New(ctx, cfg.app, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
