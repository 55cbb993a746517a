// Package node assembles a Gatehouse gateway node: configuration sync, the fleet's counters,
// heartbeats, usage, live connections, the traffic handler and the admin listener, started and
// stopped in one order by Run.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"gatehouse.dev/gateway/internal/clustercount"
	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/configsync"
	"gatehouse.dev/gateway/internal/connlog"
	"gatehouse.dev/gateway/internal/heartbeat"
	"gatehouse.dev/gateway/internal/liveconn"
	"gatehouse.dev/gateway/internal/logexport"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/gateway/internal/tracing"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/gateway/internal/usage"
	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/egress"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/promreg"
)

// DefaultDrainTimeout is the default of GATEWAY_DRAIN_TIMEOUT.
const DefaultDrainTimeout = 30 * time.Second

// Config is a node's static configuration: the operator's flags and variables (docs/design.md §5),
// named after them in the comments.
type Config struct {
	Token         string // GATEWAY_TOKEN, from generateToken; required
	ManagementURL string // MANAGEMENT_URL; required
	// NATSURL overrides the NATS servers management advertises (NATS_URL).
	NATSURL string
	// NATSCAFile is the PEM file of the CAs of the NATS servers' certificates; empty uses the
	// system's (NATS_CA_FILE).
	NATSCAFile string
	// Listen and AdminListen are the traffic and admin (/healthz /readyz /metrics) listeners
	// (GATEWAY_LISTEN, GATEWAY_ADMIN_LISTEN); port 0 picks a free one.
	Listen, AdminListen string
	// PublicURL is the ws:// or wss:// URL clients reach the node at, reported to management;
	// empty means the traffic listener's (GATEWAY_PUBLIC_URL).
	PublicURL string
	// TLSCert and TLSKey serve wss and https on Listen; both or neither (GATEWAY_TLS_CERT,
	// GATEWAY_TLS_KEY). Their certificate is the default for server names no hostname
	// configuration of the gateway matches.
	TLSCert, TLSKey string
	// TLSListen is a second traffic listener serving wss and https with the certificates of
	// the gateway's hostname configurations, chosen by SNI, falling back to TLSCert; empty
	// means none (GATEWAY_TLS_LISTEN). Certificates come from management with the
	// configuration: the node needs no files for them.
	TLSListen string
	// Pprof serves Go's profiles under /debug/pprof/ on the admin listener (GATEWAY_PPROF).
	Pprof bool
	// CacheDir holds the last good configuration; empty means a new temporary directory
	// (GATEWAY_CACHE_DIR).
	CacheDir string
	// BackendCABundle is a PEM file of CAs trusted for wss/https backends besides the system
	// roots (GATEWAY_BACKEND_CA_BUNDLE).
	BackendCABundle string
	// EgressAllow and EgressDeny are the backend egress policy (pkg/egress.Parse): networks
	// and host names a backend may and may not be at, checked on each address a dial
	// resolves to. An empty EgressDeny means egress.DefaultDeny ("none" denies nothing); the
	// node's own listeners are always refused (GATEWAY_EGRESS_ALLOW, GATEWAY_EGRESS_DENY).
	EgressAllow, EgressDeny string
	// ConnectTimeout bounds the backend dial and handshake; 0 means 10 s
	// (GATEWAY_BACKEND_CONNECT_TIMEOUT).
	ConnectTimeout time.Duration
	// MaxMessageBytes, IdleTimeout and PingInterval are the WebSocket defaults an API's
	// policies override; 0 means none (GATEWAY_MAX_MESSAGE_BYTES, GATEWAY_IDLE_TIMEOUT,
	// GATEWAY_PING_INTERVAL).
	MaxMessageBytes int64
	IdleTimeout     time.Duration
	PingInterval    time.Duration
	// MaxHeaderBytes caps a request's line and headers on the traffic listener; 0 means
	// traffic.DefaultMaxHeaderBytes (GATEWAY_MAX_HEADER_BYTES). The handler answers 431
	// with APIM's body; net/http reads at most 4 KiB past the cap and answers a header
	// longer than that itself, with a plain-text 431, before any handler runs.
	MaxHeaderBytes int
	// TrustedProxies are the peers whose Forwarded and X-Forwarded-For are believed for the
	// client's address; empty trusts none (GATEWAY_TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// DrainTimeout bounds the drain when Run's ctx ends; 0 means DefaultDrainTimeout
	// (GATEWAY_DRAIN_TIMEOUT).
	DrainTimeout time.Duration
	// CounterTimeout is the longest wait of a limit for the fleet's counter; 0 means
	// clustercount.DefaultTimeout (GATEWAY_COUNTER_TIMEOUT).
	CounterTimeout time.Duration
	// NATSReadyTimeout is the longest wait after the first configuration for the fleet's
	// counters before the node turns ready counting on its own; 0 means
	// DefaultNATSReadyTimeout (GATEWAY_NATS_READY_TIMEOUT).
	NATSReadyTimeout time.Duration
	// Region is context.Deployment.Region (GATEWAY_REGION).
	Region string
	// Engine relays WebSocket sessions: EngineLoop (the default when empty) runs sessions
	// on event loops, one per GOMAXPROCS (wss clients too), and sessions to wss backends on
	// goroutines;
	// EngineGoroutine runs every session on goroutines (GATEWAY_ENGINE).
	Engine string
	// NoIOURing keeps the event loops from batching reads and writes through io_uring, which
	// they do where the kernel allows it (GATEWAY_IO_URING=false).
	NoIOURing bool
	// NoRESTLoops keeps REST requests off the event loops: net/http serves every one of them
	// (GATEWAY_REST_LOOPS=false). By default the loops serve those whose policies do not wait
	// and whose backends are plain http:// URLs.
	NoRESTLoops bool
	// OTLPEndpoint and OTLPTracesEndpoint are the standard OpenTelemetry variables
	// (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); with neither set the
	// node traces nothing.
	OTLPEndpoint, OTLPTracesEndpoint string
}

// Values of Config.Engine.
const (
	EngineLoop      = "loop"
	EngineGoroutine = "goroutine"
)

// validate reports the first setting that cannot work, named by its variable.
func (c *Config) validate() error {
	if c.Engine != "" && c.Engine != EngineLoop && c.Engine != EngineGoroutine {
		return fmt.Errorf("GATEWAY_ENGINE: %q is neither %s nor %s", c.Engine, EngineLoop, EngineGoroutine)
	}
	switch {
	case c.Token == "":
		return errors.New("GATEWAY_TOKEN is required: generate one with POST .../gateways/{id}/generateToken")
	case c.ManagementURL == "":
		return errors.New("MANAGEMENT_URL is required")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together")
	}
	if c.PublicURL != "" {
		if err := configwire.ValidNodeURL(c.PublicURL); err != nil {
			return fmt.Errorf("GATEWAY_PUBLIC_URL: %w", err)
		}
	}
	return nil
}

// Node is one gateway node. New builds every part and opens the listeners; Run starts the
// parts, serves, and on the end of its ctx drains and stops them in order. The parts talk to
// each other through the Node's methods (install, heartbeatState, ...), which run only once
// Run has started them, on a Node New completed.
type Node struct {
	cfg Config
	log *slog.Logger
	id  string // the node's id in heartbeats, counters, usage and logs
	url string // PublicURL, or the traffic listener's
	// engine relays WebSocket sessions on event loops; nil relays them on goroutines.
	engine *wsproxy.Engine
	// front serves the plain traffic listener from the engine's loops, once serving.
	front atomic.Pointer[wsproxy.Front]

	// current is the installed configuration, nil until the first; the hot path reads it.
	current    atomic.Pointer[compiled.Config]
	backendTLS *tls.Config
	egress     *egress.Policy
	dialer     *egress.Dialer // backends: the egress policy, and never the node's own listeners
	promReg    *prometheus.Registry
	metrics    *metrics.Gateway
	bus        *fleetBus
	conns      *traffic.Registry // open WebSocket sessions: drain, revocation, eviction, live connections
	counters   *clustercount.Counters
	sessions   *clustercount.Connections
	usage      *usage.Collector
	connLog    *connlog.Recorder
	logExport  *logexport.Exporter
	liveConns  *liveconn.Responder
	heartbeat  *heartbeat.Publisher
	gate       *fleetGate
	syncer     *configsync.Syncer
	admin      *http.ServeMux
	draining   atomic.Bool

	trafficLn, adminLn net.Listener
	// tlsLn is the TLSListen listener, nil without one; tlsConf serves every TLS listener.
	tlsLn   net.Listener
	tlsConf *tls.Config
}

// New validates cfg and builds a node that logs to log. It opens both listeners, so that an
// address in use fails here; Run closes them. A Node that is never Run holds them open.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.NATSReadyTimeout <= 0 {
		cfg.NATSReadyTimeout = DefaultNATSReadyTimeout
	}
	if cfg.CacheDir == "" {
		dir, err := os.MkdirTemp("", "gatehouse-gateway-")
		if err != nil {
			return nil, err
		}
		cfg.CacheDir = dir
	}
	n := &Node{cfg: cfg, log: log, id: uuid.NewString(), bus: &fleetBus{log: log}, conns: traffic.NewRegistry()}
	var err error
	if n.backendTLS, err = backendTLS(cfg.BackendCABundle); err != nil {
		return nil, err
	}
	if n.egress, err = egress.Parse(cfg.EgressAllow, egress.DenyList(cfg.EgressDeny)); err != nil {
		return nil, fmt.Errorf("GATEWAY_EGRESS_ALLOW/GATEWAY_EGRESS_DENY: %w", err)
	}
	if n.promReg, err = promreg.New(); err != nil {
		return nil, err
	}
	if n.metrics, err = metrics.NewGateway(n.promReg); err != nil {
		return nil, err
	}
	if cfg.Engine != EngineGoroutine {
		// Off Linux the engine is unsupported and every session runs on goroutines.
		if n.engine, err = wsproxy.DefaultEngine(wsproxy.EngineOptions{NoRing: cfg.NoIOURing, SpareProcs: true}); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			return nil, err
		}
	}

	// Rate-limit, quota and connection counters are shared by the fleet through NATS
	// JetStream once the node knows its NATS servers (from its first snapshot); until then,
	// and whenever NATS is unavailable, the node counts locally.
	// Their keys are the node's service's, which it learns from the same snapshot.
	n.counters = clustercount.NewCounters(clustercount.CountersOptions{JetStream: n.bus.JetStream, ServiceID: n.serviceID,
		Timeout: cfg.CounterTimeout, Log: log})
	n.sessions, err = clustercount.NewConnections(clustercount.ConnectionsOptions{NodeID: n.id, JetStream: n.bus.JetStream,
		ServiceID: n.serviceID, Log: log, OnEvict: n.conns.EvictOldest})
	if err != nil {
		return nil, err
	}
	// Usage is published to management per minute over JetStream, once the node has a NATS
	// connection; until then finished minutes wait.
	n.usage = usage.New(usage.Options{NodeID: n.id, JetStream: n.bus.JetStream, Log: log, ServiceID: n.serviceID,
		Gateway: n.gatewayName, Key: n.nodeKey})
	// Ended sessions are reported to management about once a second, authenticated like
	// heartbeats.
	n.connLog = connlog.New(connlog.Options{NodeID: n.id, Target: func() (string, string) { return n.serviceID(), n.gatewayName() },
		Key: n.nodeKey, Log: log})
	// Records the diagnostics keep go to otlp loggers' collectors, through the egress dialer.
	n.logExport = logexport.New(logexport.Options{Client: n.fetchClient(), Metrics: n.metrics, Log: log,
		Resource: []logexport.Attr{logexport.String("service.name", "gatehouse-gateway"), logexport.String("service.instance.id", n.id)}})
	// The syncer, made below, learns management's keys and this node's key with each snapshot.
	n.liveConns = liveconn.New(n.conns, liveconn.Options{NodeID: n.id, Log: log, Gateway: n.gatewayName,
		Verifier: func() *configwire.Verifier { return n.syncer.Verifier() }, Key: n.nodeKey,
		Dropped: func(reason string) { n.metrics.BusDropped("request", reason) }})
	n.heartbeat = heartbeat.New(nil, heartbeat.Options{NodeID: n.id, Log: log, State: n.heartbeatState, Key: n.nodeKey})
	n.gate = &fleetGate{timeout: cfg.NATSReadyTimeout, log: log, wake: make(chan struct{}, 1),
		configured: n.configured, shared: n.countsWithFleet, prepare: n.prepareCounters, changed: n.heartbeat.Notify}
	keys := pipeline.NewKeySource(n.fetchClient(), log)
	builder := compiled.NewBuilder(pipeline.Env{Counters: n.counters, Keys: keys, Log: log})
	n.syncer = configsync.New(configsync.Options{ManagementURL: cfg.ManagementURL, Token: cfg.Token, NATSURL: cfg.NATSURL, NATSCAFile: cfg.NATSCAFile,
		CacheDir: cfg.CacheDir, Log: log, Install: n.install, Connected: n.bus.connect,
		Applied: func(_ int64, took time.Duration) { n.metrics.ConfigApplied(took) },
		Dropped: func(reason string) { n.metrics.BusDropped("change", reason) }}, builder)
	// What a new NATS connection serves, in this order: heartbeats, the fleet's connection
	// counts, readiness, and management's live-connection requests.
	n.bus.OnConnect(n.heartbeat.UseConn)
	n.bus.OnConnect(n.connLog.UseConn)
	n.bus.OnConnect(func(*nats.Conn) { n.sessions.Prepare() })
	n.bus.OnConnect(func(*nats.Conn) { n.gate.poke() })
	n.bus.OnConnect(n.answerLiveConnections)
	n.admin = n.adminMux()
	if n.tlsConf, err = n.serverTLS(); err != nil {
		return nil, err
	}
	if err := n.listen(); err != nil {
		return nil, err
	}
	own := []net.Addr{n.trafficLn.Addr(), n.adminLn.Addr()}
	if n.tlsLn != nil {
		own = append(own, n.tlsLn.Addr())
	}
	n.dialer = egress.NewDialer(n.egress, own...)
	n.url = cfg.PublicURL
	if n.url == "" {
		n.url = listenerURL(n.trafficLn.Addr(), cfg.TLSCert != "")
	}
	return n, nil
}

// listen opens the traffic, admin and TLS listeners, or none of them.
func (n *Node) listen() error {
	var err error
	if n.trafficLn, err = net.Listen("tcp", n.cfg.Listen); err != nil {
		return err
	}
	if n.adminLn, err = net.Listen("tcp", n.cfg.AdminListen); err != nil {
		n.trafficLn.Close()
		return err
	}
	if n.cfg.TLSListen == "" {
		return nil
	}
	if n.tlsLn, err = net.Listen("tcp", n.cfg.TLSListen); err != nil {
		n.trafficLn.Close()
		n.adminLn.Close()
		return fmt.Errorf("GATEWAY_TLS_LISTEN: %w", err)
	}
	return nil
}

// fetchClient is the HTTP client of the URLs policies fetch by themselves (validate-jwt's
// OpenID metadata and JWKS): it dials through the node's egress dialer as backends do, so that
// a policy reaches neither an address the operator denies nor the node's own listeners (issue
// 12). It dials only once Run runs, by when New has made the dialer.
func (n *Node) fetchClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return n.dialer.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// backendTLS is the TLS configuration for wss/https backends: the system roots plus the
// CAs of the PEM file bundle, if any.
func backendTLS(bundle string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if bundle == "" {
		return c, nil
	}
	pem, err := os.ReadFile(bundle)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_BACKEND_CA_BUNDLE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("GATEWAY_BACKEND_CA_BUNDLE holds no PEM certificate")
	}
	c.RootCAs = pool
	return c, nil
}

// ID is the node's id, as in its heartbeats.
func (n *Node) ID() string { return n.id }

// TrafficAddr is the traffic listener's address.
func (n *Node) TrafficAddr() net.Addr { return n.trafficLn.Addr() }

// TLSAddr is the TLSListen listener's address, nil without one.
func (n *Node) TLSAddr() net.Addr {
	if n.tlsLn == nil {
		return nil
	}
	return n.tlsLn.Addr()
}

// AdminAddr is the admin listener's address.
func (n *Node) AdminAddr() net.Addr { return n.adminLn.Addr() }

// Run serves until ctx ends, then drains and stops; it runs once. It starts, in order: the
// configuration sync, the usage collector, heartbeats, the fleet's connection counts, the
// readiness gate, the traffic and the admin listeners. When ctx ends, the node turns unready
// and sends its last heartbeat; the traffic listener closes while open sessions are closed
// and requests in flight finish, within DrainTimeout; then the usage of the last minute is
// published, the sync stops (closing the NATS connection), the admin listener closes, and
// spans still batched are flushed. Run returns nil after a drain, configsync.ErrUnauthorized
// when management refuses the token, or the error of a listener.
func (n *Node) Run(ctx context.Context) error {
	tracer, stopTracing, err := tracing.Setup(ctx, tracing.Options{Endpoint: n.cfg.OTLPEndpoint,
		TracesEndpoint: n.cfg.OTLPTracesEndpoint, ServiceName: "gatehouse-gateway", InstanceID: n.id})
	if err != nil {
		n.trafficLn.Close()
		n.adminLn.Close()
		if n.tlsLn != nil {
			n.tlsLn.Close()
		}
		return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	defer func() {
		// Flush the spans still batched; a collector that is gone costs at most 5 s.
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			n.log.Warn("trace export shutdown", "err", err)
		}
	}()
	handler := traffic.New(&n.current, traffic.Options{BackendTLS: n.backendTLS, ConnectTimeout: n.cfg.ConnectTimeout, Dial: n.dialer.DialContext, DialAllow: n.dialer.Allow,
		MaxMessageBytes: n.cfg.MaxMessageBytes, IdleTimeout: n.cfg.IdleTimeout, PingInterval: n.cfg.PingInterval, Engine: n.engine,
		MaxHeaderBytes: n.maxHeaderBytes(), TrustedProxies: n.cfg.TrustedProxies,
		Region: n.cfg.Region, Log: n.log, Node: n.id, Metrics: n.metrics, Registry: n.conns, Connections: n.sessions,
		Tracer: tracer, Usage: n.usage, ConnectionLog: n.connLog, LogExport: n.logExport, Context: ctx})
	trafficSrv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: n.maxHeaderBytes(),
		// Requests in flight when ctx ends finish during the drain rather than failing.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	adminSrv := &http.Server{Handler: n.admin, ReadHeaderTimeout: 5 * time.Second}
	listening := []any{"traffic", n.trafficLn.Addr().String(), "admin", n.adminLn.Addr().String(), "cache_dir", n.cfg.CacheDir, "node", n.id}
	if n.tlsLn != nil {
		listening = append(listening, "tls", n.tlsLn.Addr().String())
	}
	n.log.Info("gateway listening", listening...)

	g, gctx := errgroup.WithContext(ctx)
	// The sync, the usage collector, the connection log and the log export outlive gctx: they
	// publish the last usage and records after the sessions drained.
	syncCtx, stopSync := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSync()
	usageCtx, stopUsage := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUsage()
	usageDone := make(chan struct{})
	g.Go(func() error { return n.sync(syncCtx) })
	g.Go(func() error { defer close(usageDone); return n.usage.Run(usageCtx) })
	connLogDone := make(chan struct{})
	g.Go(func() error { defer close(connLogDone); return n.connLog.Run(usageCtx) })
	logExportDone := make(chan struct{})
	g.Go(func() error { defer close(logExportDone); return n.logExport.Run(usageCtx) })
	g.Go(func() error { return n.heartbeat.Run(gctx) })
	g.Go(func() error { return n.sessions.Run(gctx) })
	g.Go(func() error { n.gate.run(gctx); return nil })
	g.Go(func() error { return n.serveTraffic(ctx, trafficSrv) })
	if n.tlsLn != nil {
		g.Go(func() error { return serve(trafficSrv, tls.NewListener(n.tlsTransport(n.tlsLn), n.tlsConf)) })
	}
	g.Go(func() error { return serve(adminSrv, n.adminLn) })
	g.Go(func() error {
		<-gctx.Done()
		n.draining.Store(true)
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), n.cfg.DrainTimeout)
		defer cancel()
		n.drain(shutCtx, trafficSrv)
		stopUsage()
		<-usageDone
		<-connLogDone
		<-logExportDone
		stopSync()
		return adminSrv.Shutdown(shutCtx)
	})
	return g.Wait()
}

// sync runs the configuration sync; only a refused token ends the node.
func (n *Node) sync(ctx context.Context) error {
	if err := n.syncer.Run(ctx); errors.Is(err, configsync.ErrUnauthorized) {
		return err
	}
	return nil
}

// serveTraffic serves API traffic on the traffic listener until srv shuts down: over TLS
// with GATEWAY_TLS_CERT, and then with the hostnames' certificates by SNI too. Plain, with
// the event-loop engine, the loops accept and serve WebSocket upgrades and the REST
// requests they can serve themselves (wsproxy.Front), and hand every other connection to
// srv.
func (n *Node) serveTraffic(ctx context.Context, srv *http.Server) error {
	if n.cfg.TLSCert != "" {
		return serve(srv, tls.NewListener(n.tlsTransport(n.trafficLn), n.tlsConf))
	}
	if n.engine != nil {
		opt := wsproxy.FrontOptions{Handler: srv.Handler, Context: context.WithoutCancel(ctx), MaxHeaderBytes: srv.MaxHeaderBytes,
			DialAllow: n.dialer.Allow, IdleTimeout: srv.IdleTimeout, ReadHeaderTimeout: srv.ReadHeaderTimeout}
		if rest, ok := srv.Handler.(wsproxy.RESTHandler); ok && !n.cfg.NoRESTLoops {
			opt.REST = rest
		}
		front, err := n.engine.Front(n.trafficLn, opt)
		if err == nil {
			n.front.Store(front)
			return serve(srv, front)
		}
		n.log.Warn("the event loops cannot serve the traffic listener; net/http serves it alone", "err", err)
	}
	return serve(srv, n.trafficLn)
}

// tlsTransport returns the listener TLS is layered on: with the event-loop engine, one whose
// connections the loops can take over once upgraded (wsproxy.TLSListener).
func (n *Node) tlsTransport(ln net.Listener) net.Listener {
	if n.engine == nil {
		return ln
	}
	return wsproxy.TLSListener(ln)
}

// serve serves srv on ln until it shuts down.
func serve(srv *http.Server, ln net.Listener) error {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// drain refuses new traffic and closes the open sessions, until they ended or ctx expires.
// Shutdown closes the traffic listener at once, so new upgrades are refused while the open
// sessions drain; hijacked WebSocket connections are not its to wait for, so it runs beside
// Drain and waits only for plain requests in flight.
func (n *Node) drain(ctx context.Context, trafficSrv *http.Server) {
	// Sessions are closed only once the listeners are: a client told to go away that comes
	// straight back must find the door shut, not a node still taking upgrades. Shutdown
	// runs its hooks after it closed them.
	closed := make(chan struct{})
	trafficSrv.RegisterOnShutdown(func() { close(closed) })
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		_ = trafficSrv.Shutdown(ctx)
		if front := n.front.Load(); front != nil {
			front.Wait(ctx) // handshakes the loops read, which net/http does not know of
		}
	}()
	select {
	case <-closed:
	case <-ctx.Done():
	}
	n.conns.Drain(ctx, 1001, "gateway shutting down")
	<-shut
}

// install publishes a configuration the sync compiled to the hot path
// (configsync.Options.Install).
func (n *Node) install(c *compiled.Config) {
	n.current.Store(c)
	n.metrics.ConfigInstalled(c.Revision, len(c.Failures()), c.FailedAPIs())
	// Live revocation: sessions the new configuration no longer allows end with 1008.
	n.metrics.Revoked(n.conns.Revoke(c, n.log))
	n.heartbeat.Notify()
}

// configured reports whether a configuration is installed.
func (n *Node) configured() bool { return n.current.Load() != nil }

// serviceID and gatewayName are the installed configuration's service and gateway resource,
// "" before the first.
func (n *Node) serviceID() string {
	if c := n.current.Load(); c != nil {
		return c.ServiceID
	}
	return ""
}

func (n *Node) gatewayName() string {
	if c := n.current.Load(); c != nil {
		return c.Gateway
	}
	return ""
}

// countsWithFleet reports whether rate limits, quotas and connections are all counted with
// the fleet now.
func (n *Node) countsWithFleet() bool { return n.counters.Shared() && n.sessions.Shared() }

// prepareCounters binds the counters to NATS if it is connected.
func (n *Node) prepareCounters(ctx context.Context) {
	n.counters.Prepare(ctx)
	n.sessions.Prepare()
}

// answerLiveConnections lets management list and close this node's sessions over nc. The
// first snapshot is installed by the time the sync connects, unless it did not compile.
func (n *Node) answerLiveConnections(nc *nats.Conn) {
	c := n.current.Load()
	if c == nil {
		n.log.Warn("no configuration installed: live-connection requests go unanswered")
		return
	}
	if _, err := n.liveConns.Subscribe(nc, c.ServiceID); err != nil {
		n.log.Warn("answering live-connection requests", "err", err)
	}
}

// nodeKey is the node key management handed out with the last snapshot (heartbeats and
// live-connection replies carry it).
func (n *Node) nodeKey() (configwire.NodeKey, bool) { return n.syncer.NodeKey() }

// heartbeatState is what the node's heartbeats report (heartbeat.Options.State).
func (n *Node) heartbeatState() heartbeat.State {
	st := heartbeat.State{Connections: n.conns.Len(), URL: n.url}
	c := n.current.Load()
	if c != nil {
		st.ServiceID, st.Gateway, st.Revision = c.ServiceID, c.Gateway, c.Revision
		st.PolicyFailures, st.FailedAPIs = c.Failures(), c.FailedAPIs()
	}
	err := n.syncer.LastError()
	st.Healthy = c != nil && err == nil
	if err != nil {
		st.LastError = err.Error()
	}
	n.gate.report(&st)
	return st
}

// adminMux serves /healthz, /readyz, /metrics and, with Pprof, Go's profiles.
func (n *Node) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", n.serveReady)
	mux.Handle("GET /metrics", promreg.Handler(n.promReg))
	if n.cfg.Pprof {
		// The admin listener is for operators only (loopback by default); profiles show no
		// secrets but cost CPU while taken.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveReady answers /readyz: 200 once the node has a configuration and passed the fleet
// gate, 503 before and while it drains.
func (n *Node) serveReady(w http.ResponseWriter, _ *http.Request) {
	if !n.configured() || !n.gate.Ready() || n.draining.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	if !n.gate.shared() {
		_, _ = w.Write([]byte("ready; " + countingAlone))
		return
	}
	_, _ = w.Write([]byte("ready"))
}

// DefaultMaxHeaderBytes is Config.MaxHeaderBytes when zero.
const DefaultMaxHeaderBytes = traffic.DefaultMaxHeaderBytes

// maxHeaderBytes is Config.MaxHeaderBytes or its default.
func (n *Node) maxHeaderBytes() int {
	if n.cfg.MaxHeaderBytes > 0 {
		return n.cfg.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}
