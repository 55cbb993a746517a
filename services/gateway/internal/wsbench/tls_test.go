package wsbench

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"strings"
	"testing"
)

// startTLSEcho serves an Echo over TLS with certificates from GenerateCerts and returns a
// wss:// target trusting their CA.
func startTLSEcho(t *testing.T) (*Echo, Target) {
	t.Helper()
	certs, err := GenerateCerts([]string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	e := &Echo{}
	srv := httptest.NewUnstartedServer(e)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tg, err := ParseTarget("wss"+strings.TrimPrefix(srv.URL, "https")+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tg.TLS, err = TLSConfig(certs.CA); err != nil {
		t.Fatal(err)
	}
	return e, tg
}

// TestTLSEcho checks a wss round trip with the benchmark's certificates and client settings:
// TLS 1.3, X25519, a full handshake every time.
func TestTLSEcho(t *testing.T) {
	t.Parallel()
	e, tg := startTLSEcho(t)
	for range 2 {
		c, err := Dial(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RoundTrip(c.NewMessage([]byte("over TLS"))); err != nil {
			t.Fatal(err)
		}
		st, ok := c.TLS()
		if !ok || st.Version != tls.VersionTLS13 || st.CurveID != tls.X25519 || st.DidResume {
			t.Errorf("TLS state: ok %v, version %x, curve %v, resumed %v; want TLS 1.3, X25519, not resumed",
				ok, st.Version, st.CurveID, st.DidResume)
		}
		c.Close()
	}
	settled(t, e)
	if e.Messages() != 2 {
		t.Errorf("echo saw %d messages, want 2", e.Messages())
	}

	// Without the configuration, or trusting another CA, there is no connection.
	bare := tg
	bare.TLS = nil
	if _, err := Dial(context.Background(), bare); err == nil {
		t.Error("a wss target without a TLS configuration connected")
	}
	other, err := GenerateCerts([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	stranger := tg
	if stranger.TLS, err = TLSConfig(other.CA); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(context.Background(), stranger); err == nil {
		t.Error("a server certificate from another CA was trusted")
	}
	if _, err := TLSConfig([]byte("not PEM")); err == nil {
		t.Error("TLSConfig accepted a CA file without a certificate")
	}
}
