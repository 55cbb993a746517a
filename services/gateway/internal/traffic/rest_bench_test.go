package traffic_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/metrics"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/tcptest"
)

// BenchmarkREST is one REST call through the handler as make bench's REST scenario makes it
// (docs/performance.md, "REST requests"): subscription key checked, operation matched,
// proxied to a kept-alive backend answering a small JSON body. The backend is a bare loop on
// a socket, so that allocs/op are the gateway's own; ns/op includes both ends' system calls.
func BenchmarkREST(b *testing.B) {
	h, req := benchRESTHandler(b)
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.status = 0
		h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// BenchmarkServeLoop is the part of BenchmarkREST's call an event loop runs before it
// sends the request (wsproxy.RESTHandler): the checks and policies, up to the call to make.
func BenchmarkServeLoop(b *testing.B) {
	h, req := benchRESTHandler(b)
	w := &discardWriter{}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		call, ok := h.ServeLoop(w, req)
		if !ok || call == nil {
			b.Fatalf("declined (%v) or answered %d", !ok, w.status)
		}
	}
}

// benchRESTHandler is a handler of make bench's REST scenario and a request of it.
func benchRESTHandler(b *testing.B) (*traffic.Handler, *http.Request) {
	backend := rawJSONBackend(b)
	sub := ent(b, configwire.KindSubscription, "", "alice", obj{"scope": svcARM + "/apis", "state": "active", "displayName": "alice"})
	sub.KeyHashes = []string{configwire.KeyHash(goodKey)}
	snap := configwire.Snapshot{ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 7, Entities: []configwire.Entity{
		ent(b, configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}}), sub,
		ent(b, configwire.KindAPI, "", "items", obj{"displayName": "items", "path": "items", "type": "http",
			"serviceUrl": "http://" + backend + "/v1", "protocols": []string{"http"}}),
		ent(b, configwire.KindOperation, "apis/items", "get", obj{"displayName": "get", "method": "GET", "urlTemplate": "/widgets/{id}"}),
		{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "items", Revision: 1}}}
	var cfg atomic.Pointer[compiled.Config]
	cfg.Store(build(b, snap))
	m, err := metrics.NewGateway(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	h := traffic.New(&cfg, traffic.Options{Metrics: m})
	ctx, cancel := context.WithCancel(b.Context())
	b.Cleanup(cancel)
	req := httptest.NewRequestWithContext(ctx, "GET", "http://gw.example/items/widgets/7", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Ocp-Apim-Subscription-Key", goodKey)
	req.Header.Set("User-Agent", "wrk")
	return h, req
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}

// rawJSONBackend answers every request on a kept-alive connection with the same small JSON
// response, allocating nothing per request; it returns its address.
func rawJSONBackend(b *testing.B) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n" + `{"id":42,"name":"widget","ok":true}`)
	return tcptest.Serve(b, func(c net.Conn, _ int) {
		br := bufio.NewReader(c)
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(bytes.TrimSpace(line)) == 0 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}
