package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"gatehouse.dev/management/internal/mgmttest"
)

// tlsClient dials a node's TLS listener as a client of one hostname would: SNI serverName,
// trusting roots, presenting cert (when not nil). It remembers the subject of the
// certificate the node served.
type tlsClient struct {
	node       *node
	serverName string
	roots      *x509.CertPool
	cert       *mgmttest.Cert

	mu      sync.Mutex
	subject string
}

// dial opens a wss session to path with key and reads the backend's hello.
func (c *tlsClient) dial(path, key string) (*websocket.Conn, error) {
	conn, _, err := c.dialWith(path, key)
	return conn, err
}

// dialWith is dial with the extra request headers of kv (name, value, ...), returning the
// backend's hello too.
func (c *tlsClient) dialWith(path, key string, kv ...string) (*websocket.Conn, hello, error) {
	conf := &tls.Config{ServerName: c.serverName, RootCAs: c.roots, MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			c.mu.Lock()
			c.subject = cs.PeerCertificates[0].Subject.CommonName
			c.mu.Unlock()
			return nil
		}}
	if c.cert != nil {
		conf.Certificates = []tls.Certificate{c.cert.TLS()}
	}
	d := websocket.Dialer{HandshakeTimeout: dialer.HandshakeTimeout, TLSClientConfig: conf,
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, c.node.tls)
		}}
	header := http.Header{"Ocp-Apim-Subscription-Key": {key}}
	for i := 0; i+1 < len(kv); i += 2 {
		header.Set(kv[i], kv[i+1])
	}
	var h hello
	conn, resp, err := d.Dial("wss://"+c.serverName+path, header)
	if err != nil {
		return nil, h, fmt.Errorf("handshake with %s: %v (%s)", c.serverName, err, describe(resp))
	}
	if err := conn.ReadJSON(&h); err != nil {
		conn.Close()
		return nil, h, fmt.Errorf("reading the backend's hello through %s: %v", c.serverName, err)
	}
	return conn, h, nil
}

// served is the common name of the certificate the node served on the last dial.
func (c *tlsClient) served() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subject
}

// TestGatewayHostnames serves two hostnames by SNI with certificates uploaded to management,
// rotates one while a session is open, and requires client certificates on a third (issue 14).
func TestGatewayHostnames(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	be := newBackend(t, "tls", "")
	s.wsAPI(t, "echo", "echo", be.wsURL("/"), nil)
	key := s.subscription(t, "tls", "/apis/echo", "active")

	ca := mgmttest.NewCert(t, "E2E server CA", nil, nil)
	clientCA := mgmttest.NewCert(t, "E2E client CA", nil, nil)
	certA := mgmttest.NewCert(t, "a.example.test", []string{"a.example.test", "mtls.example.test"}, ca)
	certB := mgmttest.NewCert(t, "b.example.test", []string{"*.b.example.test"}, ca)
	upload := func(name string, c *mgmttest.Cert) {
		password := "pfx-password-of-" + name
		s.secret(password, "the PFX password of "+name)
		s.put(t, "/certificates/"+name, map[string]any{"data": c.PFX(t, password), "password": password})
	}
	upload("a", certA)
	upload("b", certB)
	upload("client-ca", clientCA)
	certID := func(name string) string { return s.svc + "/certificates/" + name }
	s.put(t, "/gateways/gw/hostnameConfigurations/a", map[string]any{"hostname": "a.example.test", "certificateId": certID("a")})
	s.put(t, "/gateways/gw/hostnameConfigurations/b", map[string]any{"hostname": "*.b.example.test", "certificateId": certID("b")})
	s.put(t, "/gateways/gw/hostnameConfigurations/mtls", map[string]any{"hostname": "mtls.example.test", "certificateId": certID("a"),
		"negotiateClientCertificate": true})
	s.put(t, "/gateways/gw/certificateAuthorities/client-ca", map[string]any{"isTrusted": true})

	n := s.startNode(t, "tls", nodeOptions{env: []string{"GATEWAY_TLS_LISTEN=127.0.0.1:0"}})
	if n.tls == "" {
		t.Fatalf("the node reported no TLS listener:\n%s", n.log)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := func(serverName string, cert *mgmttest.Cert) *tlsClient {
		return &tlsClient{node: n, serverName: serverName, roots: roots, cert: cert}
	}
	// open dials until the node serves want on c (the configuration may still be on its way)
	// and returns the session, watched.
	open := func(c *tlsClient, want string) *watched {
		t.Helper()
		var conn *websocket.Conn
		eventually(t, propagation, func() string {
			var err error
			if conn, err = c.dial("/echo", key); err != nil {
				return err.Error()
			}
			if got := c.served(); got != want {
				conn.Close()
				return fmt.Sprintf("%s served the certificate of %q, want %q", c.serverName, got, want)
			}
			return ""
		})
		w := watch(conn, n.name, c.serverName)
		t.Cleanup(func() { conn.Close() })
		if err := w.echo("hello over "+c.serverName, propagation); err != nil {
			t.Fatal(err)
		}
		return w
	}

	sessionA := open(client("a.example.test", nil), "a.example.test")
	open(client("x.b.example.test", nil), "b.example.test")

	t.Run("no hostname matches", func(t *testing.T) {
		if conn, err := client("other.example.test", nil).dial("/echo", key); err == nil {
			conn.Close()
			t.Fatal("a server name no hostname configures was served, with no default hostname and no GATEWAY_TLS_CERT")
		}
	})

	t.Run("rotation keeps open sessions", func(t *testing.T) {
		rotated := mgmttest.NewCert(t, "a.example.test rotated", []string{"a.example.test", "mtls.example.test"}, ca)
		upload("a", rotated)
		open(client("a.example.test", nil), "a.example.test rotated")
		if sessionA.closed() {
			t.Fatalf("the session opened before the rotation ended: %s", sessionA.describeClose())
		}
		if err := sessionA.echo("still here after the rotation", propagation); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("client certificates", func(t *testing.T) {
		open(client("mtls.example.test", mgmttest.NewCert(t, "trusted client", nil, clientCA)), "a.example.test rotated")
		for name, cert := range map[string]*mgmttest.Cert{"none": nil, "untrusted": mgmttest.NewCert(t, "stranger", nil, mgmttest.NewCert(t, "Other CA", nil, nil))} {
			conn, err := client("mtls.example.test", cert).dial("/echo", key)
			if err == nil {
				conn.Close()
				t.Errorf("client certificate %s: the node upgraded the connection", name)
				continue
			}
			if !strings.Contains(err.Error(), "certificate") && !strings.Contains(err.Error(), "tls") {
				t.Errorf("client certificate %s: %v, want a TLS refusal", name, err)
			}
		}
	})
}
