package wsproxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/pkg/tcptest"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestDialRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Reason", "no-token")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "token required")
	}))
	t.Cleanup(srv.Close)

	be, refused, err := wsproxy.Dial(t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws"+strings.TrimPrefix(srv.URL, "http")+"/x"), Timeout: waitFor})
	if err != nil || be != nil {
		t.Fatalf("Dial = %v, %v; want a refusal", be, err)
	}
	want := &wsproxy.Refused{
		Status: http.StatusForbidden,
		Header: http.Header{"Content-Type": {"text/plain"}, "X-Reason": {"no-token"}, "Date": refused.Header["Date"]},
		Body:   []byte("token required"),
	}
	if diff := cmp.Diff(want, refused); diff != "" {
		t.Errorf("refusal (-want +got):\n%s", diff)
	}
}

func TestDialRefusedThroughGateway(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strings.Repeat("x", 100<<10), http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	gw := startGateway(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, gw.srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {rawKey}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || len(body) != wsproxy.MaxRefusalBody {
		t.Errorf("client got %d with %d body bytes, want 401 with the body cut to %d", resp.StatusCode, len(body), wsproxy.MaxRefusalBody)
	}
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	// A connected socket's local port has no listener, and nothing else can bind it while
	// the socket is open: connecting to it is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Close(); l.Close() })
	closedAddr := held.LocalAddr().String()

	silent, err := net.Listen("tcp", "127.0.0.1:0") // accepts and never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()

	const hold = 30 * time.Second
	answer := func(resp string) string {
		return tcptest.Serve(t, func(c net.Conn, _ int) {
			buf := make([]byte, 4096)
			c.Read(buf)
			fmt.Fprint(c, resp)
			// Hold the connection open until the dialer drops it (or far longer
			// than any test waits): a Dial that waited for more would be slow.
			c.SetReadDeadline(time.Now().Add(hold))
			io.Copy(io.Discard, c)
		})
	}
	wrongAccept := answer("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm9wZQ==\r\n\r\n")
	noUpgrade := answer("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
	garbage := answer("SSH-2.0-OpenSSH_9.6\r\n\r\n")
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		req     wsproxy.DialRequest
		wantErr error // nil: any error
	}{
		{"unreachable", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws://"+closedAddr+"/")}, nil},
		{"timeout", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws://"+silent.Addr().String()+"/"), Timeout: 200 * time.Millisecond}, context.DeadlineExceeded},
		{"context cancelled", cancelled, wsproxy.DialRequest{URL: mustURL(t, "ws://"+silent.Addr().String()+"/")}, context.Canceled},
		{"wrong accept", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws://"+wrongAccept+"/"), Key: "dGhlIHNhbXBsZSBub25jZQ=="}, wsproxy.ErrBadHandshake},
		{"no upgrade header", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws://"+noUpgrade+"/"), Key: "dGhlIHNhbXBsZSBub25jZQ=="}, wsproxy.ErrBadHandshake},
		{"not http", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws://"+garbage+"/")}, wsproxy.ErrBadHandshake},
		{"unsupported scheme", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ftp://"+garbage+"/")}, nil},
		{"header injection", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "ws://"+garbage+"/"), Header: http.Header{"X-A": {"1\r\nX-B: 2"}}}, nil},
		{"insecure TLS refused", t.Context(), wsproxy.DialRequest{URL: mustURL(t, "wss://"+garbage+"/"), TLS: &tls.Config{InsecureSkipVerify: true}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			be, refused, err := wsproxy.Dial(tc.ctx, tc.req)
			if err == nil || be != nil || refused != nil {
				t.Fatalf("Dial = %v, %v, %v; want an error", be, refused, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Dial error = %v, want %v", err, tc.wantErr)
			}
			// Far above what a loaded machine needs to fail a local dial, far below hold and
			// the test's own timeout: proves Dial did not wait for the peer to hang up.
			if d := time.Since(start); d > hold/3 {
				t.Errorf("Dial took %v, want a quick failure", d)
			}
		})
	}
}

func TestDialTLS(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{}, echo, nil, true)
	pool := x509.NewCertPool()
	pool.AddCert(be.srv.Certificate())
	port := be.srv.Listener.Addr().(*net.TCPAddr).Port

	t.Run("verified", func(t *testing.T) {
		t.Parallel()
		// The httptest certificate is for 127.0.0.1 and example.com.
		gw := startGateway(t, fmt.Sprintf("wss://127.0.0.1:%d", port), withTLS(&tls.Config{RootCAs: pool}))
		c, _ := dialGorilla(t, nil, gw.url("/"), nil)
		if err := c.WriteMessage(websocket.TextMessage, []byte("over tls")); err != nil {
			t.Fatal(err)
		}
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "over tls" {
			t.Errorf("echo = %q, %v", p, err)
		}
	})
	tests := []struct {
		name string
		url  string
		conf *tls.Config
		want string
	}{
		{"hostname mismatch", fmt.Sprintf("wss://localhost:%d/", port), &tls.Config{RootCAs: pool}, "localhost"},
		{"server name mismatch", fmt.Sprintf("wss://127.0.0.1:%d/", port), &tls.Config{RootCAs: pool, ServerName: "other.example"}, "other.example"},
		{"unknown authority", fmt.Sprintf("wss://127.0.0.1:%d/", port), nil, "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := wsproxy.Dial(t.Context(), wsproxy.DialRequest{URL: mustURL(t, tc.url), TLS: tc.conf, Timeout: waitFor})
			var verr *tls.CertificateVerificationError
			if !errors.As(err, &verr) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial error = %v, want a certificate verification error mentioning %q", err, tc.want)
			}
		})
	}
	t.Run("gateway answers 502", func(t *testing.T) {
		t.Parallel()
		gw := startGateway(t, fmt.Sprintf("wss://localhost:%d", port), withTLS(&tls.Config{RootCAs: pool}))
		_, resp, err := websocket.DefaultDialer.Dial(gw.url("/"), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Errorf("dial = %v, %v; want 502", resp, err)
		}
	})
}

func TestUpgradeFailureClosesBackend(t *testing.T) {
	t.Parallel()
	be := startBackend(t, websocket.Upgrader{}, nil, nil, false)
	tests := []struct {
		name      string
		clientKey string
		wantErr   error // nil: any error
	}{
		{"key mismatch", "b3RoZXIga2V5IDEyMzQ1Ng==", wsproxy.ErrBadHandshake},
		{"not hijackable", rawKey, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, _, err := wsproxy.Dial(t.Context(), wsproxy.DialRequest{URL: mustURL(t, be.url()), Key: rawKey, Timeout: waitFor})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Sec-WebSocket-Key", tc.clientKey)
			rec := httptest.NewRecorder() // cannot be hijacked
			s, err := wsproxy.Accept(rec, r, b, wsproxy.Limits{})
			if err == nil || s != nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Accept = %v, %v; want error %v", s, err, tc.wantErr)
			}
			if _, err := b.Conn.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("backend connection read: %v, want it closed", err)
			}
		})
	}
}
