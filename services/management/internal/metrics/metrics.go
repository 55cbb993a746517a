// Package metrics defines management's Prometheus metrics (docs/observability.md): their
// names, labels and buckets, on a registry of the process's own, never the global default one.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "gatehouse_management"

// requestBuckets are the request latency buckets, in seconds.
var requestBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Management records management's metrics. Its methods are safe for concurrent use; a nil
// *Management records nothing. It is the outbox relay's Observer.
type Management struct {
	requests  *prometheus.HistogramVec
	leader    prometheus.Gauge
	lag       prometheus.Gauge
	published prometheus.Counter
	rejected  *prometheus.CounterVec
}

// NewManagement registers management's metrics on reg.
func NewManagement(reg prometheus.Registerer) (*Management, error) {
	m := &Management{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Management API requests by method, route template and status code, with their duration.",
			Buckets: requestBuckets}, []string{"method", "route", "code"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "outbox_leader",
			Help: "1 while this replica's outbox relay holds the leader lock and publishes, else 0."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "outbox_lag_seconds",
			Help: "Age of the oldest configuration change not yet published to NATS, as the leading relay last saw it; 0 on replicas not leading."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "outbox_published_total",
			Help: "Configuration changes this replica's relay published to NATS and marked published."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "node_messages_rejected_total",
			Help: "Heartbeats, live-connection replies, usage batches and connection log batches dropped because their node authentication was missing (unsigned) or did not verify (forged), and authenticated heartbeats dropped as replayed or stale."},
			[]string{"kind", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.leader, m.lag, m.published, m.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Request observes one API request. route is the route template that matched (such as
// "/subscriptions/:subscriptionId/..."), never the request path, so the label's values are
// bounded by the route table; an empty route (nothing matched) is recorded as "unmatched".
func (m *Management) Request(method, route string, status int, took time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Observe(took.Seconds())
}

// Leading records whether the relay leads; a relay that stops leading no longer knows the
// lag, which reads 0 from then on.
func (m *Management) Leading(leading bool) {
	if m == nil {
		return
	}
	if leading {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
	m.lag.Set(0)
}

// Lag records the age of the oldest unpublished change.
func (m *Management) Lag(age time.Duration) {
	if m == nil {
		return
	}
	m.lag.Set(max(age, 0).Seconds())
}

// Published counts rows published.
func (m *Management) Published(rows int) {
	if m == nil {
		return
	}
	m.published.Add(float64(rows))
}

// NodeMessageRejected counts a message claiming to come from a gateway node that was dropped:
// kind is "heartbeat", "reply", "usage" or "connlog", reason "unsigned", "forged", or for
// heartbeats "replayed" or "stale" (fleet.Options.Rejected, reports.IngesterOptions.Rejected,
// connlog.Options.Rejected).
func (m *Management) NodeMessageRejected(kind, reason string) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(kind, reason).Inc()
}
