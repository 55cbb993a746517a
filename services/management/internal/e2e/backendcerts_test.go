package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/management/internal/mgmttest"
)

// mtlsBackend is a wss backend that requires a client certificate issued by its CA and
// answers each WebSocket with the serial number of the certificate the caller presented.
type mtlsBackend struct {
	srv      *httptest.Server
	upgrader websocket.Upgrader
}

// newMTLSBackend starts a backend serving server's certificate and trusting clientCA.
func newMTLSBackend(t *testing.T, server, clientCA *mgmttest.Cert) *mtlsBackend {
	t.Helper()
	b := &mtlsBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	pool := x509.NewCertPool()
	pool.AddCert(clientCA.Cert)
	b.srv.TLS = &tls.Config{Certificates: []tls.Certificate{server.TLS()}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *mtlsBackend) serve(w http.ResponseWriter, r *http.Request) {
	c, err := b.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte(r.TLS.PeerCertificates[0].SerialNumber.String()))
}

// wssURL is the backend's wss:// URL with path.
func (b *mtlsBackend) wssURL(path string) string {
	return "wss://" + b.srv.Listener.Addr().String() + path
}

// presented opens a WebSocket through the node at path and returns the serial number of the
// client certificate the backend saw, or an error.
func presented(n *node, path, key string) (string, error) {
	c, resp, err := dialer.Dial(n.ws(path), keyHeader(key))
	if err != nil {
		return "", fmt.Errorf("handshake: %v (%s)", err, describe(resp))
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := c.ReadMessage()
	return string(msg), err
}

// TestBackendClientCertificates runs a wss backend that requires client certificates behind a
// real node (issue 14): a backend with certificateIds gets through and presents the uploaded
// certificate, one without is refused, and a certificate replaced in management (same name,
// new PFX) is what new connections present, without restarting the node.
func TestBackendClientCertificates(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	serverCA := mgmttest.NewCert(t, "Backend server CA", nil, nil)
	clientCA := mgmttest.NewCert(t, "Backend client CA", nil, nil)
	be := newMTLSBackend(t, mgmttest.NewCert(t, "127.0.0.1", []string{"127.0.0.1"}, serverCA), clientCA)
	bundle := filepath.Join(t.TempDir(), "backend-ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverCA.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	first := mgmttest.NewCert(t, "gatehouse-client", nil, clientCA)
	const password = "client-pfx-password"
	s.secret(password, "the client certificate's PFX password")
	s.put(t, "/certificates/client", map[string]any{"data": first.PFX(t, password), "password": password})
	s.put(t, "/backends/mtls", map[string]any{"url": be.wssURL("/with"), "protocol": "http",
		"credentials": map[string]any{"certificateIds": []string{s.svc + "/certificates/client"}}})
	s.put(t, "/backends/plain", map[string]any{"url": be.wssURL("/without"), "protocol": "http"})
	for _, api := range []string{"mtls", "plain"} {
		s.wsAPI(t, api, api, be.wssURL("/not-used"), nil)
		s.handshakePolicy(t, api, `<policies><inbound><base /><set-backend-service backend-id="`+api+`" /></inbound></policies>`)
	}
	key := s.subscription(t, "mtls", "/apis", "active")
	n := s.startNode(t, "gw1", nodeOptions{env: []string{"GATEWAY_BACKEND_CA_BUNDLE=" + bundle}})
	s.converge(t, 1)

	serial, err := presented(n, "/mtls", key)
	if err != nil || serial != first.Cert.SerialNumber.String() {
		t.Fatalf("through the backend with certificateIds: serial %q, %v; want the uploaded certificate's %s", serial, err, first.Cert.SerialNumber)
	}
	if st, _, body := handshake(t, n.ws("/plain"), keyHeader(key)); st != http.StatusBadGateway {
		t.Errorf("through the backend without a client certificate: %d %s, want 502", st, body)
	}

	rotated := mgmttest.NewCert(t, "gatehouse-client-rotated", nil, clientCA)
	s.put(t, "/certificates/client", map[string]any{"data": rotated.PFX(t, password), "password": password})
	eventually(t, 30*time.Second, func() string {
		serial, err := presented(n, "/mtls", key)
		if err != nil || serial != rotated.Cert.SerialNumber.String() {
			return fmt.Sprintf("after the rotation the backend saw serial %q (%v), want the new certificate's %s", serial, err, rotated.Cert.SerialNumber)
		}
		return ""
	})
	wantFailures(t, s, 1, "")
}
