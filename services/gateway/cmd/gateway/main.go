// Command gateway is a Gatehouse gateway node: it fetches its configuration from management
// with a gateway token, follows changes over NATS, and serves WebSocket and REST API traffic.
// Every flag has an environment variable (DESIGN §6).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"gatehouse.dev/gateway/internal/clustercount"
	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/configsync"
	"gatehouse.dev/gateway/internal/heartbeat"
	"gatehouse.dev/gateway/internal/liveconn"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/gateway/internal/usage"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/envflag"
	"gatehouse.dev/pkg/pipeline"
)

type config struct {
	token           string
	managementURL   string
	natsURL         string
	listen          string
	publicURL       string
	tlsCert, tlsKey string
	adminListen     string
	pprof           bool
	cacheDir        string
	backendCABundle string
	connectTimeout  time.Duration
	maxMessageBytes int64
	idleTimeout     time.Duration
	pingInterval    time.Duration
	drainTimeout    time.Duration
	counterTimeout  time.Duration
	natsReady       time.Duration
	region          string
	logLevel        string
	// otlpEndpoint and otlpTracesEndpoint are the standard OpenTelemetry variables; with
	// neither set the gateway traces nothing.
	otlpEndpoint, otlpTracesEndpoint string
}

func parseConfig(args []string) (config, error) {
	var c config
	var e envflag.Env
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.StringVar(&c.token, "token", e.String("GATEWAY_TOKEN", ""), "gateway token from generateToken (GATEWAY_TOKEN)")
	fs.StringVar(&c.managementURL, "management-url", e.String("MANAGEMENT_URL", "http://127.0.0.1:8080"), "management URL (MANAGEMENT_URL)")
	fs.StringVar(&c.natsURL, "nats-url", e.String("NATS_URL", ""), "NATS servers; empty = as management advertises (NATS_URL)")
	fs.StringVar(&c.listen, "listen", e.String("GATEWAY_LISTEN", "127.0.0.1:8081"), "API traffic listener (GATEWAY_LISTEN)")
	fs.StringVar(&c.publicURL, "public-url", e.String("GATEWAY_PUBLIC_URL", ""), "ws:// or wss:// URL clients reach this node at, reported to management for its test console; empty = the traffic listener's (GATEWAY_PUBLIC_URL)")
	fs.StringVar(&c.tlsCert, "tls-cert", e.String("GATEWAY_TLS_CERT", ""), "TLS certificate for wss/https (GATEWAY_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", e.String("GATEWAY_TLS_KEY", ""), "TLS key (GATEWAY_TLS_KEY)")
	fs.StringVar(&c.adminListen, "admin-listen", e.String("GATEWAY_ADMIN_LISTEN", "127.0.0.1:9091"), "admin listener: /healthz /readyz /metrics (GATEWAY_ADMIN_LISTEN)")
	fs.BoolVar(&c.pprof, "pprof", e.Bool("GATEWAY_PPROF", false), "serve Go's profiles under /debug/pprof/ on the admin listener (GATEWAY_PPROF)")
	fs.StringVar(&c.cacheDir, "cache-dir", e.String("GATEWAY_CACHE_DIR", ""), "directory of the last good configuration; empty = a temp dir (GATEWAY_CACHE_DIR)")
	fs.StringVar(&c.backendCABundle, "backend-ca-bundle", e.String("GATEWAY_BACKEND_CA_BUNDLE", ""), "PEM CA bundle trusted for wss/https backends, added to the system roots (GATEWAY_BACKEND_CA_BUNDLE)")
	fs.DurationVar(&c.connectTimeout, "backend-connect-timeout", e.Duration("GATEWAY_BACKEND_CONNECT_TIMEOUT", 10*time.Second), "backend dial and handshake timeout (GATEWAY_BACKEND_CONNECT_TIMEOUT)")
	fs.Int64Var(&c.maxMessageBytes, "max-message-bytes", e.Int("GATEWAY_MAX_MESSAGE_BYTES", 16<<20), "default maximum WebSocket message size; larger ones close with 1009 (GATEWAY_MAX_MESSAGE_BYTES)")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", e.Duration("GATEWAY_IDLE_TIMEOUT", time.Hour), "default WebSocket idle timeout, 0 = none (GATEWAY_IDLE_TIMEOUT)")
	fs.DurationVar(&c.pingInterval, "ping-interval", e.Duration("GATEWAY_PING_INTERVAL", 0), "default keepalive ping interval toward both sides, 0 = none; <websocket-limits ping-interval> overrides per API (GATEWAY_PING_INTERVAL)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", e.Duration("GATEWAY_DRAIN_TIMEOUT", 30*time.Second), "time to drain connections on SIGTERM (GATEWAY_DRAIN_TIMEOUT)")
	fs.DurationVar(&c.counterTimeout, "counter-timeout", e.Duration("GATEWAY_COUNTER_TIMEOUT", clustercount.DefaultTimeout), "longest wait of a rate-limit or quota call for the fleet's counter in NATS; a slower one is counted on this node alone (GATEWAY_COUNTER_TIMEOUT)")
	fs.DurationVar(&c.natsReady, "nats-ready-timeout", e.Duration("GATEWAY_NATS_READY_TIMEOUT", defaultNATSReadyTimeout), "longest wait after the first configuration for the fleet's counters in NATS before the node turns ready and counts limits on its own (GATEWAY_NATS_READY_TIMEOUT)")
	fs.StringVar(&c.region, "region", e.String("GATEWAY_REGION", ""), "region reported as context.Deployment.Region (GATEWAY_REGION)")
	fs.StringVar(&c.logLevel, "log-level", e.String("LOG_LEVEL", "info"), "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", e.String("OTEL_EXPORTER_OTLP_ENDPOINT", ""), "OTLP/HTTP collector base URL for trace export, e.g. http://collector:4318; empty = no tracing (OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.StringVar(&c.otlpTracesEndpoint, "otlp-traces-endpoint", e.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""), "OTLP/HTTP URL spans are posted to, overriding the base URL (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if err := e.Err(); err != nil {
		return c, err
	}
	if c.token == "" {
		return c, errors.New("GATEWAY_TOKEN is required: generate one with POST .../gateways/{id}/generateToken")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together")
	}
	if c.publicURL != "" {
		if err := configwire.ValidNodeURL(c.publicURL); err != nil {
			return c, fmt.Errorf("GATEWAY_PUBLIC_URL: %w", err)
		}
	}
	return c, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("LOG_LEVEL: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cfg.cacheDir == "" {
		dir, err := os.MkdirTemp("", "gatehouse-gateway-")
		if err != nil {
			return err
		}
		cfg.cacheDir = dir
	}
	backendTLS := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.backendCABundle != "" {
		pem, err := os.ReadFile(cfg.backendCABundle)
		if err != nil {
			return fmt.Errorf("GATEWAY_BACKEND_CA_BUNDLE: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return errors.New("GATEWAY_BACKEND_CA_BUNDLE holds no PEM certificate")
		}
		backendTLS.RootCAs = pool
	}

	reg, err := metrics.NewRegistry()
	if err != nil {
		return err
	}
	gm, err := metrics.NewGateway(reg)
	if err != nil {
		return err
	}
	// Every request gets a random correlation id: draw their randomness many ids at a time
	// rather than with one getrandom call each. The gateway's UUIDs are ids, never secrets,
	// so a pool on the heap is fine. Set once, before any goroutine uses uuid.
	uuid.EnableRandPool()
	node := uuid.NewString()
	tracer, stopTracing, err := tracing.Setup(ctx, tracing.Options{Endpoint: cfg.otlpEndpoint,
		TracesEndpoint: cfg.otlpTracesEndpoint, ServiceName: "gatehouse-gateway", InstanceID: node})
	if err != nil {
		return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	defer func() {
		// Flush the spans still batched; a collector that is gone costs at most 5 s.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			log.Warn("trace export shutdown", "err", err)
		}
	}()

	var current atomic.Pointer[compiled.Config]
	// Rate-limit, quota and connection counters are shared by the fleet through NATS JetStream
	// once the node knows its NATS servers (from its first snapshot); until then, and whenever
	// NATS is unavailable, the node counts locally.
	var js atomic.Pointer[jetstream.JetStream]
	jsFn := func() jetstream.JetStream {
		if p := js.Load(); p != nil {
			return *p
		}
		return nil
	}
	counters := clustercount.NewCounters(clustercount.CountersOptions{JetStream: jsFn, Timeout: cfg.counterTimeout, Log: log})
	var handler *traffic.Handler
	sessions, err := clustercount.NewConnections(clustercount.ConnectionsOptions{NodeID: node, JetStream: jsFn, Log: log,
		OnEvict: func(counter string) bool { return handler.Connections().EvictOldest(counter) }})
	if err != nil {
		return err
	}
	keys := pipeline.NewKeySource(&http.Client{Timeout: 10 * time.Second}, log)
	builder := compiled.NewBuilder(pipeline.Env{Counters: counters, Keys: keys, Log: log})
	// Usage is published to management per minute over JetStream, once the node has a NATS
	// connection; until then finished minutes wait.
	collector := usage.New(usage.Options{NodeID: node, JetStream: jsFn, Log: log, ServiceID: func() string {
		if c := current.Load(); c != nil {
			return c.ServiceID
		}
		return ""
	}})
	handler = traffic.New(&current, traffic.Options{BackendTLS: backendTLS, ConnectTimeout: cfg.connectTimeout,
		MaxMessageBytes: cfg.maxMessageBytes, IdleTimeout: cfg.idleTimeout, PingInterval: cfg.pingInterval, Region: cfg.region, Log: log,
		Node: node, Metrics: gm, Connections: sessions, Tracer: tracer, Usage: collector, Context: ctx})
	liveConns := liveconn.New(handler.Connections(), liveconn.Options{NodeID: node, Log: log, Gateway: func() string {
		if c := current.Load(); c != nil {
			return c.Gateway
		}
		return ""
	}})
	var syncer *configsync.Syncer
	var hb *heartbeat.Publisher
	gate := &fleetGate{timeout: cfg.natsReady, log: log,
		configured: func() bool { return current.Load() != nil },
		shared:     func() bool { return counters.Shared() && sessions.Shared() },
		prepare:    func() { counters.Prepare(ctx); sessions.Prepare() },
		changed:    func() { hb.Notify() }}
	publicURL := cfg.publicURL // set before hb.Run starts, from the listener when not configured
	hb = heartbeat.New(nil, heartbeat.Options{NodeID: node, Log: log, State: func() heartbeat.State {
		st := heartbeat.State{Connections: handler.Connections().Len(), URL: publicURL}
		c := current.Load()
		if c != nil {
			st.ServiceID, st.Gateway, st.Revision = c.ServiceID, c.Gateway, c.Revision
			st.PolicyFailures, st.FailedAPIs = c.Failures(), c.FailedAPIs()
		}
		err := syncer.LastError()
		st.Healthy = c != nil && err == nil
		if err != nil {
			st.LastError = err.Error()
		}
		gate.report(&st)
		return st
	}})
	install := func(c *compiled.Config) {
		current.Store(c)
		gm.ConfigInstalled(c.Revision, len(c.Failures()), c.FailedAPIs())
		gm.Revoked(handler.Revoke(c)) // live revocation: sessions the new configuration no longer allows end with 1008
		hb.Notify()
	}
	syncer = configsync.New(configsync.Options{ManagementURL: cfg.managementURL, Token: cfg.token, NATSURL: cfg.natsURL,
		CacheDir: cfg.cacheDir, Log: log, Install: install,
		Connected: func(nc *nats.Conn) {
			hb.UseConn(nc)
			if j, err := jetstream.New(nc); err == nil {
				js.Store(&j)
				counters.Prepare(ctx)
				sessions.Prepare()
			}
			// Live connections: management lists and closes this node's sessions over NATS.
			// The first snapshot is installed by now unless it did not compile.
			if c := current.Load(); c == nil {
				log.Warn("no configuration installed: live-connection requests go unanswered")
			} else if _, err := liveConns.Subscribe(nc, c.ServiceID); err != nil {
				log.Warn("answering live-connection requests", "err", err)
			}
		},
		Applied: func(_ int64, took time.Duration) { gm.ConfigApplied(took) }}, builder)

	var draining atomic.Bool
	admin := http.NewServeMux()
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if current.Load() == nil || !gate.Ready() || draining.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if !gate.shared() {
			_, _ = w.Write([]byte("ready; " + countingAlone))
			return
		}
		_, _ = w.Write([]byte("ready"))
	})
	admin.Handle("GET /metrics", metrics.Handler(reg))
	if cfg.pprof {
		// The admin listener is for operators only (loopback by default); profiles show no
		// secrets but cost CPU while taken.
		admin.HandleFunc("GET /debug/pprof/", pprof.Index)
		admin.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		admin.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}

	trafficLn, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	if publicURL == "" {
		publicURL = listenerURL(trafficLn.Addr(), cfg.tlsCert != "")
	}
	adminLn, err := net.Listen("tcp", cfg.adminListen)
	if err != nil {
		return err
	}
	trafficSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		// Requests in flight when SIGTERM arrives finish during the drain rather than failing.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 5 * time.Second}
	log.Info("gateway listening", "traffic", trafficLn.Addr().String(), "admin", adminLn.Addr().String(), "cache_dir", cfg.cacheDir)

	g, gctx := errgroup.WithContext(ctx)
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSync()
	g.Go(func() error {
		err := syncer.Run(syncCtx)
		if errors.Is(err, configsync.ErrUnauthorized) {
			return err
		}
		return nil
	})
	// The collector outlives gctx: it publishes the last usage after the sessions drained.
	usageCtx, stopUsage := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUsage()
	usageDone := make(chan struct{})
	g.Go(func() error { defer close(usageDone); return collector.Run(usageCtx) })
	g.Go(func() error { return hb.Run(gctx) })
	g.Go(func() error { return sessions.Run(gctx) })
	g.Go(func() error { gate.run(gctx); return nil })
	g.Go(func() error {
		var err error
		if cfg.tlsCert != "" {
			err = trafficSrv.ServeTLS(trafficLn, cfg.tlsCert, cfg.tlsKey)
		} else {
			err = trafficSrv.Serve(trafficLn)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	g.Go(func() error {
		if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		draining.Store(true)
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.drainTimeout)
		defer cancel()
		// Shutdown closes the traffic listener at once, so new upgrades are refused while the
		// open sessions drain; hijacked WebSocket connections are not its to wait for, so it
		// runs beside Drain and waits only for plain requests in flight.
		shut := make(chan struct{})
		go func() { _ = trafficSrv.Shutdown(shutCtx); close(shut) }()
		handler.Connections().Drain(shutCtx, 1001, "gateway shutting down")
		<-shut
		stopUsage()
		<-usageDone
		stopSync()
		return adminSrv.Shutdown(shutCtx)
	})
	return g.Wait()
}

// listenerURL is the ws:// (wss:// with TLS) URL of a listener's address, with an unspecified
// host (0.0.0.0, ::) replaced by 127.0.0.1: the default of GATEWAY_PUBLIC_URL.
// reachableHostname names this machine for a listener on every interface: its hostname when
// that resolves (a container's name in compose, a VM's name), else 127.0.0.1.
func reachableHostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if addrs, err := net.DefaultResolver.LookupHost(ctx, name); err != nil || len(addrs) == 0 {
		return "127.0.0.1"
	}
	return name
}

func listenerURL(addr net.Addr, tls bool) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = reachableHostname()
	}
	scheme := "ws"
	if tls {
		scheme = "wss"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
