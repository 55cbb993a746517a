// Command gateway is a Gatehouse gateway node: it fetches its configuration from management
// with a gateway token, follows changes over NATS, and serves WebSocket and REST API traffic.
// Every flag has an environment variable (docs/design.md §5). It parses them into a node.Config and
// runs the node until SIGINT or SIGTERM, which drain it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"gatehouse.dev/gateway/internal/clustercount"
	"gatehouse.dev/gateway/internal/gcpace"
	"gatehouse.dev/gateway/internal/node"
	"gatehouse.dev/pkg/egress"
	"gatehouse.dev/pkg/envflag"
)

// flags are the command's settings: the node's, and the log level main builds the logger
// with.
type flags struct {
	node     node.Config
	logLevel string
	// gcHeadroom is how far the heap may grow between collections (gcpace), in MiB.
	gcHeadroom int64
}

// usageError is a malformed command line; the flag package has printed it and the usage.
type usageError struct{ error }

// parseFlags parses args, with defaults from the environment; usage goes to out. Its errors
// are flag.ErrHelp for -h and -help, a usageError for a malformed flag, and that of a
// malformed variable.
func parseFlags(args []string, out io.Writer) (flags, error) {
	var f flags
	c := &f.node
	var e envflag.Env
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Token, "token", e.String("GATEWAY_TOKEN", ""), "gateway token from generateToken (GATEWAY_TOKEN)")
	fs.StringVar(&c.ManagementURL, "management-url", e.String("MANAGEMENT_URL", "http://127.0.0.1:8080"), "management URL (MANAGEMENT_URL)")
	fs.StringVar(&c.NATSURL, "nats-url", e.String("NATS_URL", ""), "NATS servers; empty = as management advertises (NATS_URL)")
	fs.StringVar(&c.NATSCAFile, "nats-ca-file", e.String("NATS_CA_FILE", ""), "PEM file of the CAs of the NATS servers' certificates; empty = the system's (NATS_CA_FILE)")
	fs.StringVar(&c.Listen, "listen", e.String("GATEWAY_LISTEN", "127.0.0.1:8081"), "API traffic listener (GATEWAY_LISTEN)")
	fs.StringVar(&c.PublicURL, "public-url", e.String("GATEWAY_PUBLIC_URL", ""), "ws:// or wss:// URL clients reach this node at, reported to management for its test console; empty = the traffic listener's (GATEWAY_PUBLIC_URL)")
	fs.StringVar(&c.TLSCert, "tls-cert", e.String("GATEWAY_TLS_CERT", ""), "TLS certificate for wss/https (GATEWAY_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", e.String("GATEWAY_TLS_KEY", ""), "TLS key (GATEWAY_TLS_KEY)")
	fs.StringVar(&c.TLSListen, "tls-listen", e.String("GATEWAY_TLS_LISTEN", ""), "TLS listener serving the gateway's hostnames by SNI with certificates from management; empty for none (GATEWAY_TLS_LISTEN)")
	fs.StringVar(&c.AdminListen, "admin-listen", e.String("GATEWAY_ADMIN_LISTEN", "127.0.0.1:9091"), "admin listener: /healthz /readyz /metrics (GATEWAY_ADMIN_LISTEN)")
	fs.BoolVar(&c.Pprof, "pprof", e.Bool("GATEWAY_PPROF", false), "serve Go's profiles under /debug/pprof/ on the admin listener (GATEWAY_PPROF)")
	fs.StringVar(&c.CacheDir, "cache-dir", e.String("GATEWAY_CACHE_DIR", ""), "directory of the last good configuration; empty = a temp dir (GATEWAY_CACHE_DIR)")
	fs.StringVar(&c.BackendCABundle, "backend-ca-bundle", e.String("GATEWAY_BACKEND_CA_BUNDLE", ""), "PEM CA bundle trusted for wss/https backends, added to the system roots (GATEWAY_BACKEND_CA_BUNDLE)")
	fs.StringVar(&c.EgressAllow, "egress-allow", e.String("GATEWAY_EGRESS_ALLOW", ""), "networks and host names backends may be at, comma separated (10.0.0.0/8, *.svc.cluster.local, api.example.com:443); empty = anywhere the deny list allows (GATEWAY_EGRESS_ALLOW)")
	fs.StringVar(&c.EgressDeny, "egress-deny", e.String("GATEWAY_EGRESS_DENY", egress.DefaultDeny), "networks and host names backends may not be at, checked on the address a dial resolves to; none = no rule; the node's own listeners are always refused (GATEWAY_EGRESS_DENY)")
	fs.DurationVar(&c.ConnectTimeout, "backend-connect-timeout", e.Duration("GATEWAY_BACKEND_CONNECT_TIMEOUT", 10*time.Second), "backend dial and handshake timeout (GATEWAY_BACKEND_CONNECT_TIMEOUT)")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", e.Int("GATEWAY_MAX_MESSAGE_BYTES", 16<<20), "default maximum WebSocket message size; larger ones close with 1009 (GATEWAY_MAX_MESSAGE_BYTES)")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", int(e.Int("GATEWAY_MAX_HEADER_BYTES", node.DefaultMaxHeaderBytes)), "largest request line and headers; larger requests get 431 (GATEWAY_MAX_HEADER_BYTES)")
	trusted := fs.String("trusted-proxies", e.String("GATEWAY_TRUSTED_PROXIES", ""), "comma-separated CIDRs or addresses of proxies whose Forwarded/X-Forwarded-For are believed for the client address; empty = none (GATEWAY_TRUSTED_PROXIES)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", e.Duration("GATEWAY_IDLE_TIMEOUT", time.Hour), "default WebSocket idle timeout, 0 = none (GATEWAY_IDLE_TIMEOUT)")
	fs.DurationVar(&c.PingInterval, "ping-interval", e.Duration("GATEWAY_PING_INTERVAL", 0), "default keepalive ping interval toward both sides, 0 = none; <websocket-limits ping-interval> overrides per API (GATEWAY_PING_INTERVAL)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", e.Duration("GATEWAY_DRAIN_TIMEOUT", node.DefaultDrainTimeout), "time to drain connections on SIGTERM (GATEWAY_DRAIN_TIMEOUT)")
	fs.DurationVar(&c.CounterTimeout, "counter-timeout", e.Duration("GATEWAY_COUNTER_TIMEOUT", clustercount.DefaultTimeout), "longest wait of a rate-limit or quota call for the fleet's counter in NATS; a slower one is counted on this node alone (GATEWAY_COUNTER_TIMEOUT)")
	fs.DurationVar(&c.NATSReadyTimeout, "nats-ready-timeout", e.Duration("GATEWAY_NATS_READY_TIMEOUT", node.DefaultNATSReadyTimeout), "longest wait after the first configuration for the fleet's counters in NATS before the node turns ready and counts limits on its own (GATEWAY_NATS_READY_TIMEOUT)")
	fs.StringVar(&c.Engine, "engine", e.String("GATEWAY_ENGINE", node.EngineLoop), "WebSocket relay: loop (event loops for every session, TLS sides included) or goroutine (goroutines for every session) (GATEWAY_ENGINE)")
	ring := fs.Bool("io-uring", e.Bool("GATEWAY_IO_URING", true), "event loops batch reads and writes through io_uring where the kernel allows it; false: one read and one write per socket (GATEWAY_IO_URING)")
	restLoops := fs.Bool("rest-loops", e.Bool("GATEWAY_REST_LOOPS", true), "event loops serve the REST requests whose policies do not wait and whose backends are plain http:// URLs; false: net/http serves every REST request (GATEWAY_REST_LOOPS)")
	fs.StringVar(&c.Region, "region", e.String("GATEWAY_REGION", ""), "region reported as context.Deployment.Region (GATEWAY_REGION)")
	fs.Int64Var(&f.gcHeadroom, "gc-headroom-mib", e.Int("GATEWAY_GC_HEADROOM_MIB", 64), "MiB the heap may grow between garbage collections while the live heap is small; GOGC raises it further, GOGC=off or 0 leaves the collector alone (GATEWAY_GC_HEADROOM_MIB)")
	fs.StringVar(&f.logLevel, "log-level", e.String("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", e.String("OTEL_EXPORTER_OTLP_ENDPOINT", ""), "OTLP/HTTP collector base URL for trace export, e.g. http://collector:4318; empty = no tracing (OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.StringVar(&c.OTLPTracesEndpoint, "otlp-traces-endpoint", e.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""), "OTLP/HTTP URL spans are posted to, overriding the base URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return f, err
	} else if err != nil {
		return f, usageError{err}
	}
	var err error
	c.NoIOURing = !*ring
	c.NoRESTLoops = !*restLoops
	if c.TrustedProxies, err = parsePrefixes(*trusted); err != nil {
		fmt.Fprintln(out, "gateway: -trusted-proxies:", err)
		return f, usageError{err}
	}
	return f, e.Err()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := command(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// command runs the gateway with args until ctx ends and returns its exit code: 0 after a
// drain and for -h, 2 for a malformed flag (with the usage), 1 for every other failure, which
// it prints to stderr.
func command(ctx context.Context, args []string, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		return 2
	case err == nil:
		err = run(ctx, f, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 1
	}
	return 0
}

// run builds the logger and runs the node.
func run(ctx context.Context, f flags, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	// Every request gets a random correlation id: draw their randomness many ids at a time
	// rather than with one getrandom call each. The gateway's UUIDs are ids, never secrets,
	// so a pool on the heap is fine. Set once, before any goroutine uses uuid.
	uuid.EnableRandPool()
	if f.gcHeadroom > 0 {
		defer gcpace.Start(uint64(f.gcHeadroom) << 20)()
	}
	n, err := node.New(f.node, log)
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// parsePrefixes reads a comma-separated list of CIDRs and addresses (an address is its own
// /32 or /128).
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
