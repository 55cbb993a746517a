package traffic_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/apierror"
	"gatehouse.dev/pkg/configwire"
)

// attackBackend is a compressing echo backend that records the upgrade requests it gets.
type attackBackend struct {
	*httptest.Server
	requests chan http.Header
}

func startAttackBackend(t testing.TB) *attackBackend {
	t.Helper()
	b := &attackBackend{requests: make(chan http.Header, 16)}
	up := websocket.Upgrader{EnableCompression: true}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests <- r.Header.Clone()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(b.Close)
	return b
}

// attackGateway serves APIs named after their inbound policies (no subscription needed)
// in front of backend; the path of an API is its name.
func attackGateway(t *testing.T, backend string, opt traffic.Options, policies map[string]string) *httptest.Server {
	t.Helper()
	ents := []configwire.Entity{ent(t, configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}})}
	for name, policy := range policies {
		ents = append(ents,
			ent(t, configwire.KindAPI, "", name, obj{"displayName": name, "path": name, "type": "websocket",
				"serviceUrl": backend, "protocols": []string{"ws"}, "subscriptionRequired": false}),
			ent(t, configwire.KindOperation, "apis/"+name, "onHandshake", obj{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
			configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: name, Revision: 1})
		if policy != "" {
			ents = append(ents, ent(t, configwire.KindPolicy, "apis/"+name, "policy",
				obj{"value": "<policies><inbound><base />" + policy + "</inbound></policies>", "format": "xml"}))
		}
	}
	var cfg atomic.Pointer[compiled.Config]
	cfg.Store(build(t, configwire.Snapshot{ServiceID: "svc-id", Service: "svc", Gateway: "gw1", Revision: 7, Entities: ents}))
	if opt.Engine == nil {
		opt.Engine = loopEngine(t)
	}
	srv := httptest.NewUnstartedServer(traffic.New(&cfg, opt))
	srv.Config.MaxHeaderBytes = traffic.DefaultMaxHeaderBytes // as the node sets it
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

const upgradeHeaders = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// rawRequest writes req to srv and returns the response status and body.
func rawRequest(t *testing.T, srv *httptest.Server, req string) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(conn, req) // a server that answers early need not read it all
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// TestAttackUpgradeRequests sends malformed and oversized upgrade requests and checks the
// exact answer and that none reached the backend.
func TestAttackUpgradeRequests(t *testing.T) {
	t.Parallel()
	be := startAttackBackend(t)
	gw := attackGateway(t, "ws"+strings.TrimPrefix(be.URL, "http"), traffic.Options{}, map[string]string{"open": ""})
	host := "Host: " + gw.Listener.Addr().String() + "\r\n"
	apim := func(status int, msg string) string {
		b, _ := json.Marshal(apierror.GatewayBody{StatusCode: status, Message: msg})
		return string(b) + "\n"
	}
	for _, tc := range []struct {
		name     string
		req      string
		status   int
		body     string // exact, when set
		upgraded bool
	}{
		{name: "valid", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + "\r\n", status: 101, upgraded: true},
		{name: "HTTP/1.0", req: "GET /open HTTP/1.0\r\n" + host + upgradeHeaders + "\r\n", status: 400, body: apim(400, apierror.MsgInvalidUpgrade)},
		{name: "HTTP/1.0 without Host", req: "GET /open HTTP/1.0\r\n" + upgradeHeaders + "\r\n", status: 400, body: apim(400, apierror.MsgInvalidUpgrade)},
		{name: "Content-Length", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + "Content-Length: 5\r\n\r\nhello", status: 400, body: apim(400, apierror.MsgInvalidUpgrade)},
		{name: "Transfer-Encoding", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", status: 400, body: apim(400, apierror.MsgInvalidUpgrade)},
		{name: "Content-Length and Transfer-Encoding", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400},
		{name: "header of 34 KiB", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + "X-Big: " + strings.Repeat("a", 34<<10) + "\r\n\r\n", status: 431, body: apim(431, apierror.MsgHeaderTooLarge)},
		{name: "header of 900 KiB", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + "X-Big: " + strings.Repeat("a", 900<<10) + "\r\n\r\n", status: 431},
		{name: "many headers of 33 KiB", req: "GET /open HTTP/1.1\r\n" + host + upgradeHeaders + strings.Repeat("X-Many: "+strings.Repeat("b", 1000)+"\r\n", 33) + "\r\n", status: 431, body: apim(431, apierror.MsgHeaderTooLarge)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := rawRequest(t, gw, tc.req)
			if status != tc.status || tc.body != "" && string(body) != tc.body {
				t.Fatalf("answer %d %q, want %d %q", status, body, tc.status, tc.body)
			}
			select {
			case <-be.requests:
				if !tc.upgraded {
					t.Fatal("the request reached the backend")
				}
			default:
				if tc.upgraded {
					t.Fatal("the backend was not dialled")
				}
			}
		})
	}
}

// TestAttackCompression checks that permessage-deflate is negotiated only for an API that
// allows it and does not check UTF-8, and that an API checking UTF-8 closes 1007.
func TestAttackCompression(t *testing.T) {
	t.Parallel()
	be := startAttackBackend(t)
	gw := attackGateway(t, "ws"+strings.TrimPrefix(be.URL, "http"), traffic.Options{}, map[string]string{
		"default":  "",
		"deflate":  `<websocket-limits allow-compression="true" />`,
		"utf8":     `<websocket-limits validate-utf8="true" allow-compression="true" />`,
		"narrower": `<websocket-limits allow-compression="false" />`,
	})
	base := "ws" + strings.TrimPrefix(gw.URL, "http") + "/"
	for api, want := range map[string]bool{"default": false, "deflate": true, "utf8": false, "narrower": false} {
		d := websocket.Dialer{EnableCompression: true, HandshakeTimeout: 10 * time.Second}
		c, resp, err := d.Dial(base+api, nil)
		if err != nil {
			t.Fatalf("%s: %v", api, err)
		}
		offered := strings.Contains((<-be.requests).Get("Sec-WebSocket-Extensions"), "permessage-deflate")
		got := strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
		if got != want || offered != want {
			t.Errorf("%s: permessage-deflate offered to the backend %v, negotiated %v; want %v", api, offered, got, want)
		}
		c.Close()
	}

	c, _, err := websocket.DefaultDialer.Dial(base+"utf8", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-be.requests
	if err := c.WriteMessage(websocket.TextMessage, []byte("fine")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "fine" {
		t.Fatalf("valid text: %q, %v", msg, err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("bad \xc3\x28")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, 1007) {
		t.Fatalf("after invalid UTF-8: %v, want close 1007", err)
	}
}

// TestAttackForwardedHeaders checks that Forwarded and X-Forwarded-For are believed only
// from trusted proxies: for ip-filter and for what the backend is told.
func TestAttackForwardedHeaders(t *testing.T) {
	t.Parallel()
	be := startAttackBackend(t)
	policies := map[string]string{"guarded": `<ip-filter action="forbid"><address>203.0.113.9</address></ip-filter>`}
	backend := "ws" + strings.TrimPrefix(be.URL, "http")
	untrusting := attackGateway(t, backend, traffic.Options{}, policies)
	trusting := attackGateway(t, backend, traffic.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, policies)
	for _, tc := range []struct {
		name    string
		gw      *httptest.Server
		header  string
		status  int
		wantXFF string
	}{
		{"spoofed X-Forwarded-For from an untrusted peer", untrusting, "X-Forwarded-For: 203.0.113.9\r\n", 101, "127.0.0.1"},
		{"spoofed Forwarded from an untrusted peer", untrusting, "Forwarded: for=203.0.113.9\r\n", 101, "127.0.0.1"},
		{"X-Forwarded-For from a trusted proxy", trusting, "X-Forwarded-For: 203.0.113.9\r\n", 403, ""},
		{"Forwarded from a trusted proxy", trusting, "Forwarded: for=\"203.0.113.9:4711\"\r\n", 403, ""},
		{"a client's own X-Forwarded-For behind a trusted proxy", trusting, "X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n", 101, "203.0.113.9, 198.51.100.7, 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := fmt.Sprintf("GET /guarded HTTP/1.1\r\nHost: gw\r\n%s%s\r\n", upgradeHeaders, tc.header)
			status, _ := rawRequest(t, tc.gw, req)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.status != 101 {
				return
			}
			h := <-be.requests
			if got := h.Get("X-Forwarded-For"); got != tc.wantXFF || h.Get("Forwarded") != "" && tc.gw == untrusting {
				t.Errorf("backend got X-Forwarded-For %q, Forwarded %q; want %q and no Forwarded", got, h.Get("Forwarded"), tc.wantXFF)
			}
		})
	}
}

// loopEngine is the event-loop engine the node runs sessions on by default (nil, the
// goroutine engine, where it is unsupported).
func loopEngine(t testing.TB) *wsproxy.Engine {
	e, err := wsproxy.DefaultEngine(wsproxy.EngineOptions{})
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		t.Fatal(err)
	}
	return e
}
