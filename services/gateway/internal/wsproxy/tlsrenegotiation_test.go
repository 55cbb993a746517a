package wsproxy_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// TestTLSBackendRenegotiation: a TLS 1.2 backend renegotiates in the middle of a session whose
// DialRequest.TLS allows it (Renegotiation). crypto/tls runs the new handshake inside Read
// and keeps the first error it meets there for good, so it cannot run where reads return
// "would block" (on the event loops): the session must still relay both ways afterwards.
// Go's TLS server never renegotiates, so the backend is openssl s_server.
func TestTLSBackendRenegotiation(t *testing.T) {
	t.Parallel()
	ossl := startOpenSSL(t, "-tls1_2")
	gw := startGateway(t, "wss://"+ossl.addr, withTLS(&tls.Config{RootCAs: ossl.pool, Renegotiation: tls.RenegotiateOnceAsClient}))
	type dialed struct {
		c   *websocket.Conn
		err error
	}
	dials := make(chan dialed, 1)
	go func() {
		d := websocket.Dialer{HandshakeTimeout: waitFor}
		c, _, err := d.Dial(gw.url("/"), nil)
		dials <- dialed{c, err}
	}()
	// openssl prints the request and sends what it is given: the test upgrades by hand.
	req := ossl.waitFor(t, "upgrade request", regexp.MustCompile(`Sec-WebSocket-Key: (\S+)\r\n(?s:.*)\r\n\r\n`))
	fmt.Fprintf(ossl.in, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: %s\r\n\r\n", accept(req[1]))
	d := <-dials
	if d.err != nil {
		t.Fatal(d.err)
	}
	c := d.c
	t.Cleanup(func() { c.Close() })
	gw.session(t)

	io.WriteString(ossl.in, "r\n") // s_server: renegotiate, and wait for the handshake to end
	ossl.waitFor(t, "the renegotiation to complete", regexp.MustCompile(`SSL_do_handshake -> 1\n`))
	ossl.in.Write(mustFrame(t, true, 0, frame.OpText, false, []byte("renegotiated")))
	c.SetReadDeadline(time.Now().Add(waitFor))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "renegotiated" {
		t.Fatalf("client read %q, %v; want the backend's message", p, err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("and back")); err != nil {
		t.Fatal(err)
	}
	var got []byte
	ossl.waitUntil(t, "the client's message", func(out []byte) int {
		i := bytes.Index(out, []byte{0x81, 0x80 | 8}) // a masked text frame of 8 bytes
		if i < 0 || len(out) < i+2+4+8 {
			return -1
		}
		got = append(got, out[i+6:i+14]...)
		frame.MaskBytes([4]byte(out[i+2:i+6]), 0, got)
		return i + 14
	})
	if string(got) != "and back" {
		t.Errorf("backend got %q, want the client's message", got)
	}
}

// openssl is an openssl s_server serving one connection, whose standard input is sent to the
// peer and whose standard output shows what the peer sent.
type openssl struct {
	addr string
	pool *x509.CertPool // trusts its certificate
	in   io.Writer

	mu   sync.Mutex
	out  bytes.Buffer
	more chan struct{} // a value each time out grows
}

// startOpenSSL starts openssl s_server with a new certificate for 127.0.0.1 and the extra
// arguments. Without openssl the test fails under CI (make test installs it, scripts/deps.sh)
// and is skipped elsewhere.
func startOpenSSL(t *testing.T, args ...string) *openssl {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no openssl:", err)
		}
		t.Skip("no openssl:", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	o := &openssl{pool: x509.NewCertPool(), more: make(chan struct{}, 1)}
	o.pool.AddCert(cert)
	cmd := exec.Command(bin, append([]string{"s_server", "-accept", "127.0.0.1:0", "-naccept", "1",
		"-cert", certFile, "-key", keyFile}, args...)...)
	if o.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			o.mu.Lock()
			o.out.Write(buf[:n])
			o.mu.Unlock()
			select {
			case o.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	o.addr = o.waitFor(t, "openssl to listen", regexp.MustCompile(`ACCEPT (\S+)\n`))[1]
	return o
}

// waitFor waits until openssl's output matches re, and returns the match and its groups; what
// came up to the end of the match is not looked at again.
func (o *openssl) waitFor(t *testing.T, what string, re *regexp.Regexp) []string {
	t.Helper()
	var groups []string
	o.waitUntil(t, what, func(out []byte) int {
		m := re.FindSubmatchIndex(out)
		if m == nil {
			return -1
		}
		for i := 0; i < len(m); i += 2 {
			groups = append(groups, string(out[m[i]:m[i+1]]))
		}
		return m[1]
	})
	return groups
}

// waitUntil waits until seen finds what it looks for in openssl's output, and drops the
// output up to where seen says it ends (seen returns -1 while it is not there).
func (o *openssl) waitUntil(t *testing.T, what string, seen func(out []byte) int) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		o.mu.Lock()
		end := seen(o.out.Bytes())
		if end >= 0 {
			o.out.Next(end)
		}
		o.mu.Unlock()
		if end >= 0 {
			return
		}
		select {
		case <-o.more:
		case <-deadline:
			t.Fatalf("waited for %s", what)
		}
	}
}
