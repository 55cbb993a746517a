package traffic_test

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/pkg/configwire"
)

// FuzzUpgradeRequest writes arbitrary bytes as a request to the traffic handler, served by
// net/http over a real loopback connection, in front of a backend that upgrades anything.
// The handler must never panic, and must answer 101 only to a request that is a valid
// WebSocket upgrade as the gateway defines it: read back with net/http, an HTTP/1.1 GET
// with a Host, no body, and the upgrade headers.
func FuzzUpgradeRequest(f *testing.F) {
	for _, s := range []string{
		"GET /open HTTP/1.1\r\nHost: gw\r\n" + upgradeHeaders + "\r\n",
		"GET /open HTTP/1.0\r\n" + upgradeHeaders + "\r\n",
		"GET /open HTTP/1.1\r\nHost: gw\r\n" + upgradeHeaders + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /open HTTP/1.1\r\nHost: gw\r\n" + upgradeHeaders + "Content-Length: 1\r\n\r\nx",
		"GET /open HTTP/1.1\r\nHost: gw\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
		"POST /open HTTP/1.1\r\nHost: gw\r\n" + upgradeHeaders + "\r\n",
	} {
		f.Add([]byte(s))
	}
	backend := startAttackBackend(f)
	go func() { // the backend records every request; nobody here reads them
		for range backend.requests {
		}
	}()
	ents := []configwire.Entity{ent(f, configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}}),
		ent(f, configwire.KindAPI, "", "open", obj{"displayName": "open", "path": "open", "type": "websocket",
			"serviceUrl": "ws" + strings.TrimPrefix(backend.URL, "http"), "protocols": []string{"ws"}, "subscriptionRequired": false}),
		ent(f, configwire.KindOperation, "apis/open", "onHandshake", obj{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
		{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "open", Revision: 1}}
	var cfg atomic.Pointer[compiled.Config]
	cfg.Store(build(f, configwire.Snapshot{ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 7, Entities: ents}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &http.Server{Handler: traffic.New(&cfg, traffic.Options{}), MaxHeaderBytes: traffic.DefaultMaxHeaderBytes,
		ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })

	f.Fuzz(func(t *testing.T, in []byte) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			conn.Write(in)
			conn.(*net.TCPConn).CloseWrite()
		}()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			return // no answer, or a refusal
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("101 to a request net/http cannot read: %q", in)
		}
		if !req.ProtoAtLeast(1, 1) || req.Host == "" || req.Method != http.MethodGet || req.ContentLength != 0 ||
			len(req.TransferEncoding) > 0 || req.Header.Get("Sec-WebSocket-Version") != "13" {
			t.Fatalf("101 to a request that is not a valid upgrade: %q", in)
		}
	})
}
