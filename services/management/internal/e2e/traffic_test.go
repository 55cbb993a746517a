package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
)

// hubToken is the access_token the Web PubSub-like backend requires.
const hubToken = "hub-access-token"

// trafficFixture is a stack with one node serving a Web PubSub-like WebSocket API "chat", an API
// with custom key names, an API whose backend is down, and a REST API.
type trafficFixture struct {
	*stack
	gw                       *node
	hub, rest                *backend
	allKey, chatKey, suspKey string
	customKey, restOnlyKey   string
	chatURL                  string // ws URL of /chat with the hub's access_token and foo=bar
}

func newTrafficFixture(t *testing.T) *trafficFixture {
	t.Helper()
	f := &trafficFixture{stack: newStack(t)}
	f.hub = newBackend(t, "hub", hubToken)
	f.rest = newBackend(t, "rest", "")
	f.wsAPI(t, "chat", "chat", f.hub.wsURL("/client/hubs/chat"), nil)
	// Compression is negotiated only where an API allows it (issue 12).
	f.handshakePolicy(t, "chat", `<policies><inbound><base/><websocket-limits allow-compression="true"/></inbound></policies>`)
	f.wsAPI(t, "custom", "tenants/custom", f.hub.wsURL("/client/hubs/custom"),
		map[string]any{"subscriptionKeyParameterNames": map[string]any{"header": "api-key", "query": "api-key"}})
	f.wsAPI(t, "down", "down", "ws://"+closedAddr(t)+"/nothing", nil)
	f.put(t, "/apis/rest", map[string]any{"displayName": "REST", "type": "http", "serviceUrl": f.rest.srv.URL + "/base",
		"path": "rest", "protocols": []string{"http", "https"}})
	f.put(t, "/apis/rest/operations/get-item", map[string]any{"displayName": "Get item", "method": "GET", "urlTemplate": "/items/{id}",
		"templateParameters": []map[string]any{{"name": "id", "type": "string", "required": true}}})
	f.put(t, "/apis/rest/operations/add-item", map[string]any{"displayName": "Add item", "method": "POST", "urlTemplate": "/items"})
	f.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/rest", nil)
	f.put(t, "/apis/restdown", map[string]any{"displayName": "REST down", "type": "http", "serviceUrl": "http://" + closedAddr(t) + "/base",
		"path": "restdown", "protocols": []string{"http"}})
	f.put(t, "/apis/restdown/operations/get", map[string]any{"displayName": "Get", "method": "GET", "urlTemplate": "/x"})
	f.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/restdown", nil)
	f.wsAPI(t, "realtime", "openai/realtime", f.rest.wsURL("/openai/realtime?api-version=2024-10-01-preview&deployment=gpt-4o"), nil)
	f.put(t, "/apis/fn", map[string]any{"displayName": "Function", "type": "http", "serviceUrl": f.rest.srv.URL + "/api?code=fn-key",
		"path": "fn", "protocols": []string{"http"}})
	f.put(t, "/apis/fn/operations/run", map[string]any{"displayName": "Run", "method": "GET", "urlTemplate": "/run"})
	f.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/fn", nil)
	f.wsAPI(t, "secure", "secure", f.hub.wsURL("/client/hubs/secure"), map[string]any{"protocols": []string{"wss"}})
	f.allKey = f.subscription(t, "all", "/apis", "active")
	f.chatKey = f.subscription(t, "chat-only", "/apis/chat", "active")
	f.suspKey = f.subscription(t, "suspended", "/apis", "suspended")
	f.customKey = f.subscription(t, "custom-only", "/apis/custom", "active")
	f.restOnlyKey = f.subscription(t, "rest-only", "/apis/rest", "active")
	f.gw = f.startNode(t, "gw1", nodeOptions{})
	f.chatURL = f.gw.ws("/chat?access_token=" + hubToken + "&foo=bar")
	return f
}

// TestTraffic is what clients of one node see: docs/design.md §3's handshake path (scenario 1), the
// frames after the 101 (scenario 3) and a REST API (scenario 8).
func TestTraffic(t *testing.T) {
	t.Parallel()
	f := newTrafficFixture(t)

	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		upgrade := func(extra ...string) http.Header {
			h := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
				"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Ocp-Apim-Subscription-Key": {f.allKey}}
			for i := 0; i+1 < len(extra); i += 2 {
				if extra[i+1] == "" {
					h.Del(extra[i])
				} else {
					h.Set(extra[i], extra[i+1])
				}
			}
			return h
		}
		for _, tc := range []struct {
			name       string
			method     string
			path       string
			header     http.Header
			wantStatus int
			wantMsg    string
		}{
			{"unknown path", "GET", "/nope", upgrade(), 404, "Resource not found"},
			{"extra segment after the API path", "GET", "/chat/extra", upgrade(), 404, "Resource not found"},
			{"API path prefix only", "GET", "/tenants", upgrade(), 404, "Resource not found"},
			{"ws on a wss-only API", "GET", "/secure", upgrade(), 404, "Resource not found"},
			{"POST", "POST", "/chat", upgrade(), 400, "Invalid websocket upgrade request"},
			{"no Upgrade header", "GET", "/chat", upgrade("Upgrade", ""), 400, "Invalid websocket upgrade request"},
			{"Connection: keep-alive", "GET", "/chat", upgrade("Connection", "keep-alive"), 400, "Invalid websocket upgrade request"},
			{"Sec-WebSocket-Version 12", "GET", "/chat", upgrade("Sec-Websocket-Version", "12"), 400, "Invalid websocket upgrade request"},
			{"Sec-WebSocket-Key not 16 bytes", "GET", "/chat", upgrade("Sec-Websocket-Key", "c2hvcnQ="), 400, "Invalid websocket upgrade request"},
			{"Sec-WebSocket-Key not Base64", "GET", "/chat", upgrade("Sec-Websocket-Key", "not base64!!"), 400, "Invalid websocket upgrade request"},
			{"no Sec-WebSocket-Key", "GET", "/chat", upgrade("Sec-Websocket-Key", ""), 400, "Invalid websocket upgrade request"},
			{"no subscription key", "GET", "/chat", upgrade("Ocp-Apim-Subscription-Key", ""), 401,
				"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."},
			{"invalid subscription key", "GET", "/chat", upgrade("Ocp-Apim-Subscription-Key", "0123456789abcdef0123456789abcdef"), 401,
				"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."},
			{"suspended subscription", "GET", "/chat", upgrade("Ocp-Apim-Subscription-Key", f.suspKey), 401,
				"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."},
			{"key of a subscription to another API", "GET", "/chat", upgrade("Ocp-Apim-Subscription-Key", f.customKey), 401,
				"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."},
			{"default header name on an API with custom names", "GET", "/tenants/custom", upgrade(), 401,
				"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."},
			{"empty key in the query", "GET", "/chat?subscription-key=", upgrade("Ocp-Apim-Subscription-Key", ""), 401,
				"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				req, err := http.NewRequest(tc.method, f.gw.http(tc.path), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header = tc.header
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				wantGatewayError(t, resp.StatusCode, resp.Header, string(body), tc.wantStatus, tc.wantMsg)
			})
		}
	})

	t.Run("browser upgrade variants accepted", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ name, connection, upgrade string }{
			{"Firefox's Connection: keep-alive, Upgrade", "keep-alive, Upgrade", "websocket"},
			{"mixed case", "upgrade", "WebSocket"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				const key = "dGhlIHNhbXBsZSBub25jZQ=="
				req, err := http.NewRequest(http.MethodGet, f.gw.http("/chat?access_token="+hubToken), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header = http.Header{"Connection": {tc.connection}, "Upgrade": {tc.upgrade}, "Sec-Websocket-Version": {"13"},
					"Sec-Websocket-Key": {key}, "Ocp-Apim-Subscription-Key": {f.allKey}}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				// RFC 6455 §1.3's example key and its accept value.
				if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
					t.Errorf("status %d, Sec-WebSocket-Accept %q; want 101 with the RFC's accept value", resp.StatusCode, resp.Header.Get("Sec-Websocket-Accept"))
				}
			})
		}
	})

	t.Run("keys accepted", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name   string
			url    string
			header http.Header
		}{
			{"header", f.chatURL, keyHeader(f.allKey)},
			{"query", f.chatURL + "&subscription-key=" + f.allKey, nil},
			{"API-scoped key", f.chatURL, keyHeader(f.chatKey)},
			{"header wins over an invalid query key", f.chatURL + "&subscription-key=wrong", keyHeader(f.allKey)},
			{"custom header name", f.gw.ws("/tenants/custom?access_token=" + hubToken), http.Header{"Api-Key": {f.customKey}}},
			{"custom query name", f.gw.ws("/tenants/custom?access_token=" + hubToken + "&api-key=" + f.customKey), nil},
			{"path is case-insensitive", f.gw.ws("/CHAT?access_token=" + hubToken), keyHeader(f.allKey)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				connect(t, tc.url, tc.header)
			})
		}
	})

	t.Run("what the backend sees", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name   string
			url    string
			header http.Header
			gone   string // a header the backend must not see
		}{
			{"key in header", f.chatURL, keyHeader(f.allKey), "Ocp-Apim-Subscription-Key"},
			{"key in query", f.chatURL + "&subscription-key=" + f.allKey, nil, ""},
			{"custom names", f.gw.ws("/tenants/custom?access_token=" + hubToken + "&foo=bar"), http.Header{"Api-Key": {f.customKey}}, "Api-Key"},
			{"custom query name", f.gw.ws("/tenants/custom?access_token=" + hubToken + "&foo=bar&api-key=" + f.customKey), nil, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				hdr := tc.header.Clone()
				if hdr == nil {
					hdr = http.Header{}
				}
				hdr.Set("X-Client-Trace", "trace-1")
				_, h := connect(t, tc.url, hdr)
				if diff := cmp.Diff(url.Values{"access_token": {hubToken}, "foo": {"bar"}}, h.Query); diff != "" {
					t.Errorf("backend query (-want +got):\n%s", diff)
				}
				if tc.gone != "" && h.Header.Get(tc.gone) != "" {
					t.Errorf("backend saw the subscription key header %s", tc.gone)
				}
				got := map[string]string{}
				for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Client-Trace"} {
					got[k] = h.Header.Get(k)
				}
				want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "ws",
					"X-Forwarded-Host": f.gw.traffic, "X-Client-Trace": "trace-1"}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("backend headers (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("backend path", func(t *testing.T) {
		t.Parallel()
		_, h := connect(t, f.chatURL, keyHeader(f.allKey))
		if h.Path != "/client/hubs/chat" {
			t.Errorf("backend path %q, want the serviceUrl's /client/hubs/chat", h.Path)
		}
	})

	t.Run("query of the serviceUrl kept", func(t *testing.T) {
		t.Parallel()
		_, h := connect(t, f.gw.ws("/openai/realtime?foo=bar"), keyHeader(f.allKey))
		want := url.Values{"api-version": {"2024-10-01-preview"}, "deployment": {"gpt-4o"}, "foo": {"bar"}}
		if diff := cmp.Diff(want, h.Query); diff != "" {
			t.Errorf("backend query (-want +got):\n%s", diff)
		}
	})

	t.Run("subprotocol negotiated end to end", func(t *testing.T) {
		t.Parallel()
		c, h := connect(t, f.chatURL, keyHeader(f.allKey), "unknown.v9", webPubSubProtocol)
		if c.Subprotocol() != webPubSubProtocol || h.Subprotocol != webPubSubProtocol {
			t.Errorf("client got subprotocol %q, backend chose %q; want %q on both", c.Subprotocol(), h.Subprotocol, webPubSubProtocol)
		}
		if got := h.Header.Get("Sec-Websocket-Protocol"); got != "unknown.v9, "+webPubSubProtocol {
			t.Errorf("backend saw Sec-WebSocket-Protocol %q, want the client's offer", got)
		}
	})

	t.Run("backend refusal reaches the client", func(t *testing.T) {
		t.Parallel()
		status, hdr, body := handshake(t, f.gw.ws("/chat?access_token=wrong"), keyHeader(f.allKey))
		if status != http.StatusUnauthorized || body != `{"code":"Unauthorized","message":"Invalid access token"}` ||
			hdr.Get("WWW-Authenticate") != `Bearer error="invalid_token"` {
			t.Errorf("got %d %q WWW-Authenticate %q; want the backend's 401, body and header", status, body, hdr.Get("WWW-Authenticate"))
		}
	})

	t.Run("unreachable backend", func(t *testing.T) {
		t.Parallel()
		status, hdr, body := handshake(t, f.gw.ws("/down"), keyHeader(f.allKey))
		wantGatewayError(t, status, hdr, body, http.StatusBadGateway, "Backend service unavailable")
	})

	t.Run("health probe", func(t *testing.T) {
		t.Parallel()
		resp, err := http.Get(f.gw.http("/status-0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d, want 200", resp.StatusCode)
		}
	})

	t.Run("frames", func(t *testing.T) { testFrames(t, f) })
	t.Run("rest", func(t *testing.T) { testREST(t, f) })
}

// testFrames checks what flows after the 101 (scenario 3).
func testFrames(t *testing.T, f *trafficFixture) {
	t.Parallel()
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	for _, tc := range []struct {
		name string
		typ  int
		data []byte
	}{
		{"text", websocket.TextMessage, []byte("hello, wörld")},
		{"binary", websocket.BinaryMessage, binary},
		{"1 MiB", websocket.BinaryMessage, big},
		{"empty text", websocket.TextMessage, []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, _ := connect(t, f.chatURL, keyHeader(f.allKey))
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := c.WriteMessage(tc.typ, tc.data); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			typ, data, err := c.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if typ != tc.typ || !bytes.Equal(data, tc.data) {
				t.Errorf("echo: type %d, %d bytes; want type %d, the %d bytes sent", typ, len(data), tc.typ, len(tc.data))
			}
		})
	}

	t.Run("permessage-deflate not negotiated where an API does not allow it", func(t *testing.T) {
		t.Parallel()
		d := dialer
		d.EnableCompression = true
		c, resp, err := d.Dial(f.gw.ws("/tenants/custom?access_token="+hubToken), http.Header{"api-key": {f.allKey}})
		if err != nil {
			t.Fatalf("handshake: %v (%s)", err, describe(resp))
		}
		defer c.Close()
		if ext := resp.Header.Get("Sec-Websocket-Extensions"); ext != "" {
			t.Fatalf("Sec-WebSocket-Extensions %q, want none: the custom API does not allow compression", ext)
		}
	})

	t.Run("permessage-deflate negotiated end to end", func(t *testing.T) {
		t.Parallel()
		d := dialer
		d.EnableCompression = true
		c, resp, err := d.Dial(f.chatURL, keyHeader(f.allKey))
		if err != nil {
			t.Fatalf("handshake: %v (%s)", err, describe(resp))
		}
		defer c.Close()
		if ext := resp.Header.Get("Sec-Websocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
			t.Fatalf("Sec-WebSocket-Extensions %q, want the backend's permessage-deflate", ext)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil { // the hello
			t.Fatal(err)
		}
		msg := bytes.Repeat([]byte("compressible "), 10000)
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, data, err := c.ReadMessage(); err != nil || !bytes.Equal(data, msg) {
			t.Errorf("compressed echo: %d bytes, %v; want the %d bytes sent", len(data), err, len(msg))
		}
	})

	t.Run("frames sent right behind the handshake", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", f.gw.traffic)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// One write: the upgrade request and a masked text frame "early" (RFC 6455 §5.2).
		mask := [4]byte{1, 2, 3, 4}
		frame := []byte{0x81, 0x80 | 5, mask[0], mask[1], mask[2], mask[3]}
		for i, b := range []byte("early") {
			frame = append(frame, b^mask[i%4])
		}
		req := "GET /chat?access_token=" + hubToken + " HTTP/1.1\r\nHost: " + f.gw.traffic +
			"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" +
			"\r\nOcp-Apim-Subscription-Key: " + f.allKey + "\r\n\r\n"
		if _, err := conn.Write(append([]byte(req), frame...)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("response %v, %v; want 101", resp, err)
		}
		var texts []string
		for range 2 { // the backend's hello, then the echo
			hdr := make([]byte, 2)
			if _, err := io.ReadFull(br, hdr); err != nil {
				t.Fatal(err)
			}
			n := int(hdr[1] & 0x7f)
			if n == 126 {
				ext := make([]byte, 2)
				if _, err := io.ReadFull(br, ext); err != nil {
					t.Fatal(err)
				}
				n = int(ext[0])<<8 | int(ext[1])
			}
			payload := make([]byte, n)
			if _, err := io.ReadFull(br, payload); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, string(payload))
		}
		if texts[1] != "early" {
			t.Errorf("second message %q, want the echo of \"early\"", texts[1])
		}
	})

	t.Run("ping pong", func(t *testing.T) {
		t.Parallel()
		c, _ := connect(t, f.chatURL, keyHeader(f.allKey))
		pongs := make(chan string, 1)
		c.SetPongHandler(func(data string) error { pongs <- data; return nil })
		if err := c.WriteControl(websocket.PingMessage, []byte("are-you-there"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		// The pong is handled while reading the echo of a message sent after the ping.
		if err := c.WriteMessage(websocket.TextMessage, []byte("after-ping")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, data, err := c.ReadMessage(); err != nil || string(data) != "after-ping" {
			t.Fatalf("echo after ping: %q, %v", data, err)
		}
		select {
		case got := <-pongs:
			if got != "are-you-there" {
				t.Errorf("pong payload %q, want the ping's", got)
			}
		default:
			t.Error("no pong before the echo of the next message")
		}
	})

	t.Run("client close reaches the backend", func(t *testing.T) {
		t.Parallel()
		c, _ := connect(t, f.chatURL+"&conn=client-close", keyHeader(f.allKey))
		if err := c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "bye")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, 4000) {
			t.Errorf("client read after its close: %v, want the echoed close 4000", err)
		}
		ce := f.hub.closeReceived(t, "client-close")
		if ce.Code != 4000 || ce.Text != "bye" {
			t.Errorf("backend received close %d %q, want 4000 \"bye\"", ce.Code, ce.Text)
		}
	})

	t.Run("backend close reaches the client", func(t *testing.T) {
		t.Parallel()
		c, _ := connect(t, f.chatURL, keyHeader(f.allKey))
		if err := c.WriteMessage(websocket.TextMessage, []byte("close:4001:done")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Text != "done" {
			t.Errorf("client read: %v, want close 4001 \"done\"", err)
		}
	})
}

// testREST checks a REST API with an operation GET /items/{id} (scenario 8).
func testREST(t *testing.T, f *trafficFixture) {
	t.Parallel()
	get := func(t *testing.T, method, path string, header http.Header) (int, http.Header, string) {
		t.Helper()
		var reqBody io.Reader
		if method == http.MethodPost {
			reqBody = strings.NewReader(`{"name":"widget"}`)
		}
		req, err := http.NewRequest(method, f.gw.http(path), reqBody)
		if err != nil {
			t.Fatal(err)
		}
		if header != nil {
			req.Header = header
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(body)
	}
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
	}{
		{"key in header", "/rest/items/42?x=1", keyHeader(f.restOnlyKey)},
		{"key in query", "/rest/items/42?subscription-key=" + f.restOnlyKey + "&x=1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, _, body := get(t, http.MethodGet, tc.path, tc.header)
			if status != http.StatusOK {
				t.Fatalf("status %d, body %s", status, body)
			}
			var h hello
			if err := json.Unmarshal([]byte(body), &h); err != nil {
				t.Fatalf("backend body %q: %v", body, err)
			}
			if h.Path != "/base/items/42" {
				t.Errorf("backend path %q, want serviceUrl + rest: /base/items/42", h.Path)
			}
			if diff := cmp.Diff(url.Values{"x": {"1"}}, h.Query); diff != "" {
				t.Errorf("backend query (-want +got):\n%s", diff)
			}
			if h.Header.Get("Ocp-Apim-Subscription-Key") != "" {
				t.Error("backend saw the subscription key header")
			}
		})
	}
	t.Run("POST with a body", func(t *testing.T) {
		t.Parallel()
		status, hdr, body := get(t, http.MethodPost, "/rest/items", http.Header{"Ocp-Apim-Subscription-Key": {f.restOnlyKey},
			"Content-Type": {"application/json"}, "X-Want-Status": {"201"}})
		var h hello
		if err := json.Unmarshal([]byte(body), &h); status != http.StatusCreated || err != nil {
			t.Fatalf("status %d, body %s; want the backend's 201", status, body)
		}
		got := []string{h.Method, h.Path, h.Body, h.Header.Get("Content-Type"), hdr.Get("X-Backend")}
		want := []string{"POST", "/base/items", `{"name":"widget"}`, "application/json", "rest"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("method, path, body, Content-Type, response header (-want +got):\n%s", diff)
		}
	})

	t.Run("query of the serviceUrl kept", func(t *testing.T) {
		t.Parallel()
		status, _, body := get(t, http.MethodGet, "/fn/run?x=1", keyHeader(f.allKey))
		var h hello
		if err := json.Unmarshal([]byte(body), &h); status != http.StatusOK || err != nil {
			t.Fatalf("status %d, body %s", status, body)
		}
		if diff := cmp.Diff(url.Values{"code": {"fn-key"}, "x": {"1"}}, h.Query); h.Path != "/api/run" || diff != "" {
			t.Errorf("backend path %q (want /api/run), query (-want +got):\n%s", h.Path, diff)
		}
	})
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		wantStatus         int
		wantMsg            string
	}{
		{"no key", "GET", "/rest/items/42", nil, 401,
			"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."},
		{"key of another API", "GET", "/rest/items/42", keyHeader(f.chatKey), 401,
			"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."},
		{"unmatched path", "GET", "/rest/orders/42", keyHeader(f.restOnlyKey), 404, "Resource not found"},
		{"unmatched method", "DELETE", "/rest/items/42", keyHeader(f.restOnlyKey), 404, "Resource not found"},
		{"extra segment", "GET", "/rest/items/42/extra", keyHeader(f.restOnlyKey), 404, "Resource not found"},
		{"API root", "GET", "/rest", keyHeader(f.restOnlyKey), 404, "Resource not found"},
		{"backend down", "GET", "/restdown/x?subscription-key=" + f.allKey, nil, 502, "Backend service unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, hdr, body := get(t, tc.method, tc.path, tc.header)
			wantGatewayError(t, status, hdr, body, tc.wantStatus, tc.wantMsg)
		})
	}
}
