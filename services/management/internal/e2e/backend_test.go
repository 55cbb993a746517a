package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
)

// webPubSubProtocol is the subprotocol the backends speak (Azure Web PubSub's JSON protocol).
const webPubSubProtocol = "json.webpubsub.azure.v1"

// hello is what a backend saw of a request. A WebSocket backend sends it as its first message;
// for a plain HTTP request it is the response body.
type hello struct {
	Backend     string      `json:"backend"`
	Method      string      `json:"method"`
	Path        string      `json:"path"`
	Query       url.Values  `json:"query"`
	Header      http.Header `json:"header"`
	Subprotocol string      `json:"subprotocol"`
	Body        string      `json:"body,omitempty"`
}

// backend is a WebSocket and HTTP backend. A plain HTTP request gets its hello as a JSON body,
// with the status the request's X-Want-Status asks for. Like Azure Web PubSub, it refuses the upgrade with
// 401 unless the query carries its access_token (when it has one). After the upgrade it sends
// a hello, then echoes every message; the text message "close:CODE:REASON" makes it close the
// connection with that code. It records the close frame each connection received, by the
// connection's "conn" query parameter.
type backend struct {
	name        string
	accessToken string
	srv         *httptest.Server
	upgrader    websocket.Upgrader

	mu     sync.Mutex
	closes map[string]chan *websocket.CloseError
}

func newBackend(t *testing.T, name, accessToken string) *backend {
	t.Helper()
	b := &backend{name: name, accessToken: accessToken, closes: map[string]chan *websocket.CloseError{},
		upgrader: websocket.Upgrader{Subprotocols: []string{webPubSubProtocol}, EnableCompression: true,
			CheckOrigin: func(*http.Request) bool { return true }}}
	b.srv = httptest.NewServer(b)
	t.Cleanup(b.srv.Close)
	return b
}

// wsURL is the backend's ws:// URL with path.
func (b *backend) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(b.srv.URL, "http") + path
}

func (b *backend) closeOf(conn string) chan *websocket.CloseError {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.closes[conn]
	if c == nil {
		c = make(chan *websocket.CloseError, 1)
		b.closes[conn] = c
	}
	return c
}

// closeReceived waits for the close frame the backend received on connection conn.
func (b *backend) closeReceived(t *testing.T, conn string) *websocket.CloseError {
	t.Helper()
	select {
	case ce := <-b.closeOf(conn):
		return ce
	case <-time.After(5 * time.Second):
		t.Fatalf("backend %s received no close frame on connection %q", b.name, conn)
		return nil
	}
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.accessToken != "" && r.URL.Query().Get("access_token") != b.accessToken {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"code":"Unauthorized","message":"Invalid access token"}`)
		return
	}
	h := hello{Backend: b.name, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header}
	if !websocket.IsWebSocketUpgrade(r) {
		body, _ := io.ReadAll(r.Body)
		h.Body = string(body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", b.name)
		status := http.StatusOK
		if s, err := strconv.Atoi(r.Header.Get("X-Want-Status")); err == nil {
			status = s
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(h)
		return
	}
	c, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	h.Subprotocol = c.Subprotocol()
	if err := c.WriteJSON(h); err != nil {
		return
	}
	conn := r.URL.Query().Get("conn")
	for {
		mt, data, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				b.closeOf(conn) <- ce
			}
			return
		}
		if cmd, ok := strings.CutPrefix(string(data), "close:"); ok && mt == websocket.TextMessage {
			codeText, reason, _ := strings.Cut(cmd, ":")
			code, _ := strconv.Atoi(codeText)
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
			// Wait for the client's answering close, relayed by the gateway.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}
		if err := c.WriteMessage(mt, data); err != nil {
			return
		}
	}
}

// dialer is how the test clients connect.
var dialer = websocket.Dialer{HandshakeTimeout: 10 * time.Second}

// connect opens a WebSocket through the gateway, failing t unless the handshake succeeds, and
// returns the connection and the backend's hello. The connection is closed when t ends.
func connect(t *testing.T, rawURL string, header http.Header, subprotocols ...string) (*websocket.Conn, hello) {
	t.Helper()
	d := dialer
	d.Subprotocols = subprotocols
	c, resp, err := d.Dial(rawURL, header)
	if err != nil {
		t.Fatalf("handshake %s: %v (%s)", redact(rawURL), err, describe(resp))
	}
	t.Cleanup(func() { c.Close() })
	var h hello
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.ReadJSON(&h); err != nil {
		t.Fatalf("reading the backend's hello: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, h
}

// handshake tries a WebSocket handshake and returns its status: 101 (the connection is
// closed at once) or the gateway's refusal, with the refusal's headers and body.
func handshake(t testing.TB, rawURL string, header http.Header) (int, http.Header, string) {
	t.Helper()
	c, resp, err := dialer.Dial(rawURL, header)
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols, resp.Header, ""
	}
	if resp == nil {
		t.Fatalf("handshake %s: %v", redact(rawURL), err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// gatewayError is APIM's gateway error body.
type gatewayError struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

// wantGatewayError fails t unless the response is status with APIM's JSON error body
// {"statusCode":status,"message":msg}.
func wantGatewayError(t testing.TB, status int, header http.Header, body string, wantStatus int, wantMsg string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d; body %s", status, wantStatus, body)
		return
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var got gatewayError
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Errorf("body is not a JSON object: %q", body)
		return
	}
	if diff := cmp.Diff(gatewayError{StatusCode: wantStatus, Message: wantMsg}, got); diff != "" {
		t.Errorf("error body (-want +got):\n%s", diff)
	}
}

func describe(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.Status + " " + string(body)
}

// redact hides query values (keys, tokens) in URLs that go into failure messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "?"
	}
	q := u.Query()
	for k := range q {
		q.Set(k, "…")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// keyHeader is a header carrying a subscription key in APIM's default header.
func keyHeader(key string) http.Header { return http.Header{"Ocp-Apim-Subscription-Key": {key}} }
