package logexport_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse.dev/gateway/internal/logexport"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/pkg/diagnostic"
)

// collector is an OTLP/HTTP receiver: it decodes each request's JSON and hands it over.
func collector(t *testing.T) (*httptest.Server, chan map[string]any, chan http.Header) {
	t.Helper()
	bodies, headers := make(chan map[string]any, 16), make(chan http.Header, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/otel/v1/logs" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("collector got %s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("collector: %v", err)
		}
		headers <- r.Header.Clone()
		bodies <- body
	}))
	t.Cleanup(srv.Close)
	return srv, bodies, headers
}

func TestExportOTLPJSON(t *testing.T) {
	t.Parallel()
	srv, bodies, headers := collector(t)
	target, err := diagnostic.OTLPOf(map[string]string{"endpoint": srv.URL + "/otel/", "headers": "Authorization=Bearer t"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := metrics.NewGateway(reg)
	if err != nil {
		t.Fatal(err)
	}
	exp := logexport.New(logexport.Options{Metrics: m, Batch: 2, Interval: time.Hour,
		Resource: []logexport.Attr{logexport.String("service.name", "gatehouse-gateway")}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- exp.Run(ctx) }()

	closed := time.Unix(1700000000, 5).UTC()
	exp.Add(logexport.Record{Target: &target, Time: closed, Body: "websocket closed", Attributes: []logexport.Attr{
		logexport.String("gatehouse.api", "chat"), logexport.Int("websocket.close_code", 1000),
		logexport.Strings("http.request.header.user-agent", []string{"ua/1"})}})
	exp.Add(logexport.Record{Target: &target, Time: closed, Body: "websocket closed"})
	// A batch of two goes at once, long before the hour's interval.
	body := <-bodies
	if got := (<-headers).Get("Authorization"); got != "Bearer t" {
		t.Errorf("Authorization = %q", got)
	}
	rl := body["resourceLogs"].([]any)[0].(map[string]any)
	if got := attr(rl["resource"].(map[string]any)["attributes"], "service.name"); got != "gatehouse-gateway" {
		t.Errorf("service.name = %v", got)
	}
	sl := rl["scopeLogs"].([]any)[0].(map[string]any)
	if name := sl["scope"].(map[string]any)["name"]; name != logexport.Scope {
		t.Errorf("scope = %v", name)
	}
	recs := sl["logRecords"].([]any)
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	rec := recs[0].(map[string]any)
	if rec["timeUnixNano"] != "1700000000000000005" || rec["severityText"] != "INFO" || rec["body"].(map[string]any)["stringValue"] != "websocket closed" {
		t.Errorf("record = %v", rec)
	}
	if got := attr(rec["attributes"], "websocket.close_code"); got != "1000" {
		t.Errorf("close code = %v, want the int 1000 as the string OTLP JSON writes", got)
	}
	if got := attr(rec["attributes"], "http.request.header.user-agent"); got != "ua/1" {
		t.Errorf("header = %v", got)
	}

	// Records still queued when the node stops are sent.
	exp.Add(logexport.Record{Target: &target, Time: closed, Body: "last"})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len((<-bodies)["resourceLogs"].([]any)[0].(map[string]any)["scopeLogs"].([]any)[0].(map[string]any)["logRecords"].([]any)); n != 1 {
		t.Errorf("the last batch has %d records", n)
	}
	if got := counter(t, reg, "exported"); got != 3 {
		t.Errorf("exported = %v, want 3", got)
	}
}

func TestExportQueueFullDrops(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewGateway(reg)
	if err != nil {
		t.Fatal(err)
	}
	target := diagnostic.OTLP{URL: "http://127.0.0.1:1/v1/logs"}
	exp := logexport.New(logexport.Options{Metrics: m, Queue: 2}) // never run: nothing leaves the queue
	for range 5 {
		exp.Add(logexport.Record{Target: &target, Body: "x"})
	}
	if got := counter(t, reg, "dropped"); got != 3 {
		t.Errorf("dropped = %v, want 3", got)
	}
}

// counter returns gatehouse_gateway_log_export_records_total{result}.
func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "gatehouse_gateway_log_export_records_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// attr returns the value of the OTLP JSON attribute key in attrs: a string, or an int as its string.
func attr(attrs any, key string) any {
	for _, a := range attrs.([]any) {
		kv := a.(map[string]any)
		if kv["key"] != key {
			continue
		}
		v := kv["value"].(map[string]any)
		if s, ok := v["stringValue"]; ok {
			return s
		}
		if s, ok := v["intValue"]; ok {
			return s
		}
		var vals []string
		for _, e := range v["arrayValue"].(map[string]any)["values"].([]any) {
			vals = append(vals, e.(map[string]any)["stringValue"].(string))
		}
		return strings.Join(vals, ",")
	}
	return nil
}
