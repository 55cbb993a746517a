package metrics_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/metrics"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/pkg/promreg"
	"gatehouse.dev/pkg/testwait"
)

// scrape GETs /metrics of the admin listener without credentials and returns its gatehouse_management_ series,
// "name{labels}" → value, without histogram buckets and sums, which depend on timing.
func scrape(t *testing.T, env *mgmttest.Env) map[string]float64 {
	t.Helper()
	resp, err := http.Get(env.AdminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "gatehouse_management_") || strings.Contains(line, "_bucket{") || strings.Contains(line, "_sum{") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestScrape makes a few API calls, two of which publish a change (the service's creation,
// with its built-in groups, and the named value), and checks every management series scraped.
func TestScrape(t *testing.T) {
	t.Parallel()
	env := mgmttest.Start(t, mgmttest.Options{})
	svc := env.CreateService(t, "s1", "rg", "svc")
	nv := svc + "/namedValues/nv1"
	env.Must(t, []int{http.StatusCreated}, http.MethodPut, nv, map[string]any{"properties": map[string]any{"displayName": "nv1", "value": "v1"}})
	env.Must(t, []int{http.StatusOK}, http.MethodGet, nv, nil)
	env.Must(t, []int{http.StatusOK}, http.MethodGet, nv, nil)
	env.Must(t, []int{http.StatusUnauthorized}, http.MethodGet, nv, nil, "Authorization", "")
	env.Must(t, []int{http.StatusNotFound}, http.MethodGet, svc+"/namedValues/nv2", nil)
	env.Must(t, []int{http.StatusNotFound}, http.MethodGet, svc+"/nonsense/x", nil)
	env.Must(t, []int{http.StatusOK}, http.MethodGet, "/healthz", nil)

	svcRoute := api.ServicePrefix
	nvRoute := api.ServicePrefix + "/namedValues/:namedValueId"
	count := func(method, route, code string) string {
		return `gatehouse_management_http_request_duration_seconds_count{code="` + code + `",method="` + method + `",route="` + route + `"}`
	}
	want := map[string]float64{
		count("PUT", svcRoute, "201"):                 1,
		count("PUT", nvRoute, "201"):                  1,
		count("GET", nvRoute, "200"):                  2,
		count("GET", nvRoute, "401"):                  1,
		count("GET", nvRoute, "404"):                  1,
		count("GET", "/*", "404"):                     1,
		count("GET", "/healthz", "200"):               1,
		"gatehouse_management_outbox_published_total": 2,
		"gatehouse_management_outbox_lag_seconds":     0,
		"gatehouse_management_outbox_leader":          1,
	}
	// The relay publishes the changes shortly, and each request is recorded just
	// after its answer is written.
	testwait.For(t, 10*time.Second, func() string {
		if diff := cmp.Diff(want, scrape(t, env)); diff != "" {
			return "metrics (-want +got):\n" + diff
		}
		return ""
	})
}

// gather returns reg's gatehouse_ series, "name{label=value,...}" → value (a histogram's:
// its sample count).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "gatehouse_") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := mt.GetGauge().GetValue() + mt.GetCounter().GetValue() + float64(mt.GetHistogram().GetSampleCount())
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return got
}

// TestObservations checks what each method records, and that request labels stay within
// bounded sets.
func TestObservations(t *testing.T) {
	t.Parallel()
	reg, err := promreg.New()
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.NewManagement(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Request("BREW", "", 418, time.Millisecond)
	m.Request(http.MethodGet, "/healthz", 200, time.Millisecond)
	m.Lag(-time.Second) // a clock behind the database's
	m.Leading(true)
	m.Lag(3 * time.Second)
	m.Published(2)
	m.Published(1)
	want := map[string]float64{
		"gatehouse_management_http_request_duration_seconds{code=418,method=other,route=unmatched}": 1,
		"gatehouse_management_http_request_duration_seconds{code=200,method=GET,route=/healthz}":    1,
		"gatehouse_management_outbox_lag_seconds{}":                                                 3,
		"gatehouse_management_outbox_leader{}":                                                      1,
		"gatehouse_management_outbox_published_total{}":                                             3,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("leading (-want +got):\n%s", diff)
	}
	m.Leading(false)
	want["gatehouse_management_outbox_lag_seconds{}"] = 0
	want["gatehouse_management_outbox_leader{}"] = 0
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("no longer leading (-want +got):\n%s", diff)
	}
}
