package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/gateway/internal/metrics"

	"gatehouse.dev/pkg/promreg"
)

// scrape returns the series of the named metric families, "name{labels}" → value.
func scrape(t *testing.T, h http.Handler, prefixes ...string) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				i := strings.LastIndexByte(line, ' ')
				v, err := strconv.ParseFloat(line[i+1:], 64)
				if err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				out[line[:i]] = v
			}
		}
	}
	return out
}

// TestSessionTraffic checks that open sessions' traffic counts at each scrape and that a
// session ending moves its traffic to the totals without a counter going back.
func TestSessionTraffic(t *testing.T) {
	t.Parallel()
	reg, err := promreg.New()
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.NewGateway(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := promreg.Handler(reg)
	var in1, in2 atomic.Int64
	s1 := m.Open("chat", func() metrics.Traffic { return metrics.Traffic{MessagesIn: in1.Load(), BytesIn: 10 * in1.Load()} })
	s2 := m.Open("chat", func() metrics.Traffic { return metrics.Traffic{MessagesIn: in2.Load(), MessagesOut: 1} })
	in1.Store(2)
	in2.Store(5)

	families := []string{"gatehouse_gateway_connections_active", "gatehouse_gateway_messages_total",
		"gatehouse_gateway_bytes_total", "gatehouse_gateway_closes_total"}
	want := map[string]float64{
		`gatehouse_gateway_connections_active{api="chat"}`:             2,
		`gatehouse_gateway_messages_total{api="chat",direction="in"}`:  7,
		`gatehouse_gateway_messages_total{api="chat",direction="out"}`: 1,
		`gatehouse_gateway_bytes_total{api="chat",direction="in"}`:     20,
		`gatehouse_gateway_bytes_total{api="chat",direction="out"}`:    0,
	}
	if diff := cmp.Diff(want, scrape(t, h, families...)); diff != "" {
		t.Errorf("two open (-want +got):\n%s", diff)
	}

	in1.Store(3)
	s1.End(metrics.ReasonIdle)
	s1.End(metrics.ReasonIdle) // a second End changes nothing
	in1.Store(100)             // no longer read
	want[`gatehouse_gateway_connections_active{api="chat"}`] = 1
	want[`gatehouse_gateway_messages_total{api="chat",direction="in"}`] = 8
	want[`gatehouse_gateway_bytes_total{api="chat",direction="in"}`] = 30
	want[`gatehouse_gateway_closes_total{api="chat",reason="idle"}`] = 2
	if diff := cmp.Diff(want, scrape(t, h, families...)); diff != "" {
		t.Errorf("one ended (-want +got):\n%s", diff)
	}

	s2.End(metrics.ReasonNormal)
	want[`gatehouse_gateway_connections_active{api="chat"}`] = 0
	want[`gatehouse_gateway_closes_total{api="chat",reason="normal"}`] = 1
	if diff := cmp.Diff(want, scrape(t, h, families...)); diff != "" {
		t.Errorf("both ended (-want +got):\n%s", diff)
	}
}

// TestNilGateway checks that a nil *Gateway records nothing and does not panic.
func TestNilGateway(t *testing.T) {
	t.Parallel()
	var m *metrics.Gateway
	m.Handshake("a", 101, "", time.Millisecond)
	m.Policy("a", time.Millisecond)
	m.BackendDial("a", metrics.DialUpgraded, time.Millisecond)
	m.Revoked(1)
	m.ConfigInstalled(3, 0, 0)
	m.ConfigApplied(time.Millisecond)
	m.Open("a", func() metrics.Traffic { return metrics.Traffic{} }).End(metrics.ReasonNormal)
}

// TestConfig checks the configuration series.
func TestConfig(t *testing.T) {
	t.Parallel()
	reg, err := promreg.New()
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.NewGateway(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.ConfigInstalled(41, 0, 0)
	m.ConfigInstalled(42, 2, 1)
	m.ConfigApplied(3 * time.Millisecond)
	m.Revoked(2)
	m.Revoked(0)
	want := map[string]float64{
		"gatehouse_gateway_config_revision":                                   42,
		"gatehouse_gateway_config_policy_failures":                            2,
		"gatehouse_gateway_config_failed_apis":                                1,
		"gatehouse_gateway_config_apply_duration_seconds_count":               1,
		"gatehouse_gateway_config_apply_duration_seconds_sum":                 0.003,
		`gatehouse_gateway_config_apply_duration_seconds_bucket{le="0.0025"}`: 0,
		`gatehouse_gateway_config_apply_duration_seconds_bucket{le="0.005"}`:  1,
		"gatehouse_gateway_revocations_total":                                 2,
	}
	got := scrape(t, promreg.Handler(reg), "gatehouse_gateway_config", "gatehouse_gateway_revocations")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got := scrape(t, promreg.Handler(reg), "go_goroutines", "process_"); got["go_goroutines"] == 0 {
		t.Errorf("no Go runtime metrics in %v", got)
	}
}
