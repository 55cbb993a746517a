package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// otlpCollector is an OTLP/HTTP logs receiver: it decodes each export's JSON and keeps its
// records, each as its attributes (ints as the strings OTLP JSON writes, lists joined).
type otlpCollector struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []map[string]string
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/logs" || r.Header.Get("X-Collector-Token") != "t0ken" {
			t.Errorf("collector: %s %s with token %q", r.Method, r.URL.Path, r.Header.Get("X-Collector-Token"))
		}
		var req struct {
			ResourceLogs []struct {
				ScopeLogs []struct {
					LogRecords []struct {
						Body       struct{ StringValue string }
						Attributes []struct {
							Key   string
							Value struct {
								StringValue *string
								IntValue    *string
								ArrayValue  *struct {
									Values []struct{ StringValue string }
								}
							}
						}
					}
				}
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			t.Errorf("collector: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				for _, lr := range sl.LogRecords {
					rec := map[string]string{"body": lr.Body.StringValue}
					for _, a := range lr.Attributes {
						switch v := a.Value; {
						case v.StringValue != nil:
							rec[a.Key] = *v.StringValue
						case v.IntValue != nil:
							rec[a.Key] = *v.IntValue
						case v.ArrayValue != nil:
							for _, e := range v.ArrayValue.Values {
								rec[a.Key] += e.StringValue
							}
						}
					}
					c.got = append(c.got, rec)
				}
			}
		}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// records returns the records of the API api received so far.
func (c *otlpCollector) records(api string) []map[string]string {
	return c.recordsWith("gatehouse.api", api)
}

// session returns the records of the session correlationID received so far.
func (c *otlpCollector) session(correlationID string) []map[string]string {
	return c.recordsWith("gatehouse.correlation_id", correlationID)
}

// recordsWith returns the records received so far whose attribute key is value.
func (c *otlpCollector) recordsWith(key, value string) []map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]string
	for _, r := range c.got {
		if r[key] == value {
			out = append(out, r)
		}
	}
	return out
}

// TestDiagnosticsOnANode exports connection records through a real node to an otlp logger's
// collector (issue 15): a session opened and closed produces one record with its attributes
// and the headers the diagnostic lists; an API diagnostic with sampling 0 overrides the
// service's and produces none; one with logClientIp false keeps the client's address out of
// the exported record and out of management's connection log.
func TestDiagnosticsOnANode(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	col := newOTLPCollector(t)
	be := newBackend(t, "diag", "")
	s.put(t, "/loggers/otel", map[string]any{"loggerType": "otlp", "credentials": map[string]any{
		"endpoint": col.srv.URL, "headers": "X-Collector-Token=t0ken"}})
	for _, api := range []string{"diag-all", "diag-none", "diag-noip"} {
		s.wsAPI(t, api, api, be.wsURL("/"+api), map[string]any{"subscriptionRequired": false})
	}
	s.put(t, "/diagnostics/applicationinsights", map[string]any{"loggerId": "/loggers/otel", "logClientIp": true,
		"sampling": map[string]any{"samplingType": "fixed", "percentage": 100},
		"frontend": map[string]any{"request": map[string]any{"headers": []string{"X-Trace-Me"}}}})
	s.put(t, "/apis/diag-none/diagnostics/applicationinsights", map[string]any{"loggerId": "/loggers/otel", "logClientIp": true,
		"sampling": map[string]any{"samplingType": "fixed", "percentage": 0}})
	s.put(t, "/apis/diag-noip/diagnostics/applicationinsights", map[string]any{"loggerId": "/loggers/otel", "logClientIp": false})
	n := s.startNode(t, "diagnostics", nodeOptions{})
	n.waitReady(t)

	// The sampled-out session first: once management has its connection log record, the node
	// has handled its end, so a record exported for it would reach the collector before the
	// later sessions' records.
	none := openAndClose(t, n, "/diag-none", nil)
	s.waitConnectionLog(t, none)
	noIP := openAndClose(t, n, "/diag-noip", nil)
	all := openAndClose(t, n, "/diag-all", http.Header{"X-Trace-Me": {"abc"}})

	eventually(t, 30*time.Second, func() string {
		if got := len(col.records("diag-all")) + len(col.records("diag-noip")); got < 2 {
			return fmt.Sprintf("%d of 2 records exported", got)
		}
		return ""
	})
	recs := col.records("diag-all")
	if len(recs) != 1 {
		t.Fatalf("diag-all: %d records, want 1: %v", len(recs), recs)
	}
	rec := recs[0]
	for k, want := range map[string]string{"body": "websocket closed", "gatehouse.correlation_id": all, "gatehouse.diagnostic": "applicationinsights",
		"gatehouse.operation": "onHandshake", "websocket.close_code": "1000", "gatehouse.closed_by": "client", "client.address": "127.0.0.1",
		"http.request.header.x-trace-me": "abc", "gatehouse.messages_out": "1"} {
		if rec[k] != want {
			t.Errorf("diag-all record %s = %q, want %q (record %v)", k, rec[k], want, rec)
		}
	}
	if recs := col.records("diag-noip"); len(recs) != 1 || recs[0]["gatehouse.correlation_id"] != noIP || recs[0]["client.address"] != "" {
		t.Errorf("diag-noip: records %v, want one without client.address", recs)
	}
	if recs := col.records("diag-none"); len(recs) != 0 {
		t.Errorf("diag-none (sampling 0): records %v, want none", recs)
	}
	if ip := s.waitConnectionLog(t, noIP); ip != "" {
		t.Errorf("the connection log holds the client's address %q for an API whose diagnostic says logClientIp false", ip)
	}
	if ip := s.waitConnectionLog(t, all); ip != "127.0.0.1" {
		t.Errorf("the connection log's client address = %q, want 127.0.0.1", ip)
	}
}

// openAndClose opens a WebSocket session at path through n, reads the backend's hello, closes
// it with 1000 and returns its correlation id.
func openAndClose(t *testing.T, n *node, path string, header http.Header) string {
	t.Helper()
	id, _ := openAndCloseHello(t, n, path, header)
	return id
}

// openAndCloseHello is openAndClose that also returns the backend's hello.
func openAndCloseHello(t *testing.T, n *node, path string, header http.Header) (string, hello) {
	t.Helper()
	c, resp, err := dialer.Dial(n.ws(path), header)
	if err != nil {
		t.Fatalf("handshake %s: %v (%s)", path, err, describe(resp))
	}
	id := resp.Header.Get("X-Correlation-ID")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h hello
	if err := c.ReadJSON(&h); err != nil {
		t.Fatalf("%s: the backend's hello: %v", path, err)
	}
	closeNormally(t, c)
	c.Close()
	return id, h
}

// waitConnectionLog waits for management's connection log to hold the session id and returns
// the client address it records.
func (s *stack) waitConnectionLog(t *testing.T, id string) string {
	t.Helper()
	var ip string
	eventually(t, 30*time.Second, func() string {
		r := s.do(t, http.MethodGet, "/connectionLogs", nil)
		var list struct {
			Value []struct {
				CorrelationID string `json:"correlationId"`
				ClientIP      string `json:"clientIp"`
			} `json:"value"`
		}
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &list) != nil {
			return fmt.Sprintf("connection log: %d %s", r.Status, r.Body)
		}
		for _, rec := range list.Value {
			if rec.CorrelationID == id {
				ip = rec.ClientIP
				return ""
			}
		}
		return fmt.Sprintf("session %s not in the connection log yet", id)
	})
	return ip
}
