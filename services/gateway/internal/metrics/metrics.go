// Package metrics defines the gateway's Prometheus metrics (docs/observability.md): their
// names, labels and buckets, on a registry of the process's own, never the global default one.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "gatehouse_gateway"

// CloseReason says why a WebSocket session ended; it is the reason label of
// gatehouse_gateway_closes_total and the reason of the "websocket closed" log record. The
// set is fixed, so the label's cardinality is bounded.
type CloseReason string

// Close reasons.
const (
	ReasonNormal  CloseReason = "normal"  // the client closed
	ReasonBackend CloseReason = "backend" // the backend closed or went away
	ReasonRevoked CloseReason = "revoked" // a configuration change withdrew the session's access
	ReasonExpired CloseReason = "expired" // max-lifetime reached, or the session's token expired
	ReasonIdle    CloseReason = "idle"    // no frame travelled for the idle timeout
	ReasonDrain   CloseReason = "drain"   // the gateway is shutting down
	ReasonLimit   CloseReason = "limit"   // a message rate or the message size limit was exceeded
	ReasonError   CloseReason = "error"   // a protocol error, or the client vanished without a close frame
)

// Results of a backend dial, the result label of gatehouse_gateway_backend_dial_duration_seconds.
const (
	DialUpgraded = "upgraded" // the backend answered 101
	DialRefused  = "refused"  // the backend answered another status, passed on to the client
	DialFailed   = "failed"   // the backend could not be reached or answered nonsense
)

// Latency buckets, in seconds.
var (
	handshakeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	policyBuckets    = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}
	applyBuckets     = []float64{.00001, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .1, .5, 1, 5}
	sessionBuckets   = []float64{1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 7 * 24 * 3600}
)

// Traffic is what a WebSocket session has relayed: data messages and their payload bytes each way
// (in: client → backend, out: backend → client).
type Traffic struct {
	MessagesIn, MessagesOut, BytesIn, BytesOut int64
}

func (t *Traffic) add(u Traffic) {
	t.MessagesIn += u.MessagesIn
	t.MessagesOut += u.MessagesOut
	t.BytesIn += u.BytesIn
	t.BytesOut += u.BytesOut
}

// Gateway records the gateway's metrics. Its methods are safe for concurrent use; a nil
// *Gateway records nothing.
type Gateway struct {
	handshakes   *prometheus.CounterVec
	handshakeDur *prometheus.HistogramVec
	policyDur    *prometheus.HistogramVec
	dialDur      *prometheus.HistogramVec
	closes       *prometheus.CounterVec
	sessionDur   *prometheus.HistogramVec
	revocations  prometheus.Counter
	revision     prometheus.Gauge
	failures     prometheus.Gauge
	failedAPIs   prometheus.Gauge
	applyDur     prometheus.Histogram
	busDropped   *prometheus.CounterVec
	circuit      *prometheus.GaugeVec
	trips        *prometheus.CounterVec
	logRecords   *prometheus.CounterVec

	sessions sessions
}

// NewGateway registers the gateway's metrics on reg.
func NewGateway(reg prometheus.Registerer) (*Gateway, error) {
	m := &Gateway{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "handshakes_total",
			Help: "WebSocket handshakes by API and result: the status code answered (0: none reached the client) and the reason (empty for 101)."},
			[]string{"api", "code", "reason"}),
		handshakeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "handshake_duration_seconds",
			Help:    "Time from a WebSocket upgrade request to the gateway's answer, by API and result (accepted or rejected).",
			Buckets: handshakeBuckets}, []string{"api", "result"}),
		policyDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "policy_duration_seconds",
			Help:    "Time the inbound policy pipeline took per request or handshake, by API.",
			Buckets: policyBuckets}, []string{"api"}),
		dialDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "backend_dial_duration_seconds",
			Help:    "Time to open the backend WebSocket (TCP, TLS and upgrade), by API and result (upgraded, refused, failed).",
			Buckets: handshakeBuckets}, []string{"api", "result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "closes_total",
			Help: "WebSocket sessions ended, by API and reason (normal, backend, revoked, expired, idle, drain, limit, error)."},
			[]string{"api", "reason"}),
		sessionDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "session_duration_seconds",
			Help:    "Lifetime of ended WebSocket sessions, from the client's 101 to the end of the relay, by API.",
			Buckets: sessionBuckets}, []string{"api"}),
		revocations: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "revocations_total",
			Help: "WebSocket sessions closed because a new configuration no longer allows them."}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_revision",
			Help: "Revision of the configuration being served (0 before the first one)."}),
		failures: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_policy_failures",
			Help: "Effective policies of the served configuration that this node could not compile; each fails closed (500)."}),
		failedAPIs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "config_failed_apis",
			Help: "APIs of the served configuration with at least one policy this node could not compile."}),
		applyDur: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "config_apply_duration_seconds",
			Help:    "Time to decode, compile and install one configuration change received from management.",
			Buckets: applyBuckets}),
		busDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "bus_messages_dropped_total",
			Help: "Messages from the bus dropped because management's signature was missing (unsigned), did not verify (forged), or the change was a copy of a revision already served (replayed), by kind (change, request) and reason."},
			[]string{"kind", "reason"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "backend_circuit_open",
			Help: "1 while the circuit breaker of a backend entity is open on this node (calls refused with 503), 0 when closed."},
			[]string{"backend"}),
		trips: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backend_circuit_trips_total",
			Help: "Times the circuit breaker of a backend entity opened on this node."},
			[]string{"backend"}),
		logRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "log_export_records_total",
			Help: "Connection records for otlp loggers, by result: exported (the collector accepted them), failed (it refused them or could not be reached) or dropped (the export queue was full)."},
			[]string{"result"}),
	}
	m.sessions.init()
	for _, c := range []prometheus.Collector{m.handshakes, m.handshakeDur, m.policyDur, m.dialDur, m.closes, m.sessionDur,
		m.revocations, m.revision, m.failures, m.failedAPIs, m.applyDur, m.busDropped, m.circuit, m.trips, m.logRecords, &m.sessions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Handshake counts a WebSocket handshake of api answered with status (101 when accepted, 0
// when no answer reached the client) for reason, a fixed gateway or policy reason such as
// "SubscriptionKeyInvalid" (empty for 101), after took.
func (m *Gateway) Handshake(api string, status int, reason string, took time.Duration) {
	if m == nil {
		return
	}
	m.handshakes.WithLabelValues(api, strconv.Itoa(status), reason).Inc()
	result := "rejected"
	if status == http.StatusSwitchingProtocols {
		result = "accepted"
	}
	m.handshakeDur.WithLabelValues(api, result).Observe(took.Seconds())
}

// Policy observes one run of api's inbound policy pipeline.
func (m *Gateway) Policy(api string, took time.Duration) {
	if m == nil {
		return
	}
	m.policyDur.WithLabelValues(api).Observe(took.Seconds())
}

// BackendDial observes one backend dial of api with result DialUpgraded, DialRefused or
// DialFailed.
func (m *Gateway) BackendDial(api, result string, took time.Duration) {
	if m == nil {
		return
	}
	m.dialDur.WithLabelValues(api, result).Observe(took.Seconds())
}

// Revoked counts n sessions closed by revocation.
func (m *Gateway) Revoked(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.revocations.Add(float64(n))
}

// ConfigInstalled records the revision now served, how many of its effective policies this
// node could not compile, and how many APIs those belong to.
func (m *Gateway) ConfigInstalled(revision int64, failures, failedAPIs int) {
	if m == nil {
		return
	}
	m.revision.Set(float64(revision))
	m.failures.Set(float64(failures))
	m.failedAPIs.Set(float64(failedAPIs))
}

// ConfigApplied observes the apply latency of one configuration change.
func (m *Gateway) ConfigApplied(took time.Duration) {
	if m == nil {
		return
	}
	m.applyDur.Observe(took.Seconds())
}

// BusDropped counts a message from the bus dropped for reason ("unsigned", "forged",
// "replayed"): kind "change" for the configuration stream, "request" for live-connection
// requests.
func (m *Gateway) BusDropped(kind, reason string) {
	if m == nil {
		return
	}
	m.busDropped.WithLabelValues(kind, reason).Inc()
}

// Results of a log export, the result label of gatehouse_gateway_log_export_records_total.
const (
	ExportExported = "exported"
	ExportFailed   = "failed"
	ExportDropped  = "dropped"
)

// LogExport counts n connection records of an otlp logger with result (Export*).
func (m *Gateway) LogExport(result string, n int) {
	if m == nil {
		return
	}
	m.logRecords.WithLabelValues(result).Add(float64(n))
}

// Session is an open WebSocket session being counted. End it once, when it has ended.
type Session struct {
	m      *Gateway
	api    string
	stats  func() Traffic
	opened time.Time
}

// Open counts an open session of api. stats reports what the session has relayed so far; it
// is called at every scrape while the session is open, so the message and byte counters
// move while long sessions run, and once more by End. It must be cheap, safe for concurrent
// use, and never decrease. On a nil *Gateway, Open returns a Session that records nothing.
func (m *Gateway) Open(api string, stats func() Traffic) *Session {
	s := &Session{m: m, api: api, stats: stats, opened: time.Now()}
	if m != nil {
		m.sessions.open(s)
	}
	return s
}

// End moves the session's traffic into its API's totals, counts the close with reason, and
// observes the session's lifetime. Call it after the session has stopped relaying.
func (s *Session) End(reason CloseReason) {
	if s.m == nil {
		return
	}
	s.m.sessions.end(s)
	s.m.closes.WithLabelValues(s.api, string(reason)).Inc()
	s.m.sessionDur.WithLabelValues(s.api).Observe(time.Since(s.opened).Seconds())
}

// sessions is the collector of gatehouse_gateway_connections_active, _messages_total and
// _bytes_total. Each scrape sums the ended sessions' totals and the open sessions' traffic so
// far under one lock, so that a session ending between scrapes moves its traffic from one
// to the other without a counter ever going back.
type sessions struct {
	active, messages, bytes *prometheus.Desc

	mu    sync.Mutex
	live  map[*Session]struct{}
	ended map[string]Traffic // by API
}

func (c *sessions) init() {
	c.active = prometheus.NewDesc(namespace+"_connections_active", "Open WebSocket sessions, by API.", []string{"api"}, nil)
	c.messages = prometheus.NewDesc(namespace+"_messages_total",
		"WebSocket data messages relayed, by API and direction (in: client to backend, out: backend to client).",
		[]string{"api", "direction"}, nil)
	c.bytes = prometheus.NewDesc(namespace+"_bytes_total",
		"WebSocket payload bytes of data messages relayed (no frame headers, no control frames), by API and direction (in: client to backend, out: backend to client).",
		[]string{"api", "direction"}, nil)
	c.live = map[*Session]struct{}{}
	c.ended = map[string]Traffic{}
}

func (c *sessions) open(s *Session) {
	c.mu.Lock()
	c.live[s] = struct{}{}
	c.mu.Unlock()
}

func (c *sessions) end(s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.live[s]; !ok {
		return
	}
	delete(c.live, s)
	t := c.ended[s.api]
	t.add(s.stats())
	c.ended[s.api] = t
}

// Describe implements prometheus.Collector.
func (c *sessions) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.messages
	ch <- c.bytes
}

// Collect implements prometheus.Collector.
func (c *sessions) Collect(ch chan<- prometheus.Metric) {
	type apiTotals struct {
		open int
		t    Traffic
	}
	c.mu.Lock()
	byAPI := make(map[string]*apiTotals, len(c.ended))
	for api, t := range c.ended {
		byAPI[api] = &apiTotals{t: t}
	}
	for s := range c.live {
		a := byAPI[s.api]
		if a == nil {
			a = &apiTotals{}
			byAPI[s.api] = a
		}
		a.open++
		a.t.add(s.stats())
	}
	c.mu.Unlock()
	for api, a := range byAPI {
		send(ch, c.active, prometheus.GaugeValue, a.open, api)
		send(ch, c.messages, prometheus.CounterValue, a.t.MessagesIn, api, "in")
		send(ch, c.messages, prometheus.CounterValue, a.t.MessagesOut, api, "out")
		send(ch, c.bytes, prometheus.CounterValue, a.t.BytesIn, api, "in")
		send(ch, c.bytes, prometheus.CounterValue, a.t.BytesOut, api, "out")
	}
}

// send sends a constant metric, skipping one whose label values are not valid UTF-8.
func send[N int | int64](ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v N, labels ...string) {
	if m, err := prometheus.NewConstMetric(d, t, float64(v), labels...); err == nil {
		ch <- m
	}
}

// Circuit records that the circuit breaker of backend opened (a trip) or closed.
func (m *Gateway) Circuit(backend string, open bool) {
	if m == nil {
		return
	}
	if open {
		m.circuit.WithLabelValues(backend).Set(1)
		m.trips.WithLabelValues(backend).Inc()
		return
	}
	m.circuit.WithLabelValues(backend).Set(0)
}
