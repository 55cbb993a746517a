package node

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// errNoCertificate fails a TLS handshake for a server name that no hostname configuration
// of the gateway serves when the node has no certificate of its own.
var errNoCertificate = errors.New("no certificate for this server name: configure a hostname of the gateway, or GATEWAY_TLS_CERT")

// serverTLS is the TLS configuration of the node's TLS listeners. Each handshake reads the
// installed configuration (the atomic pointer the hot path reads), so a certificate rotated
// in management serves the next handshake while open connections keep theirs.
func (n *Node) serverTLS() (*tls.Config, error) {
	var fallback *tls.Certificate
	if n.cfg.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(n.cfg.TLSCert, n.cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_TLS_CERT/GATEWAY_TLS_KEY: %w", err)
		}
		fallback = &pair
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) { return n.tlsFor(hello, fallback) }}, nil
}

// tlsFor is the TLS configuration of one handshake: the certificate of the gateway's
// hostname configuration for the client's server name (exact, then wildcard, then "*"), else
// fallback; and, where the hostname negotiates client certificates, a required client
// certificate, verified against the gateway's trusted CAs when it has any.
func (n *Node) tlsFor(hello *tls.ClientHelloInfo, fallback *tls.Certificate) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if cfg := n.current.Load(); cfg != nil {
		if h := cfg.Hostname(hello.ServerName); h != nil {
			if h.Certificate == nil || h.Certificate.TLS == nil {
				return nil, fmt.Errorf("hostname configuration %s: its certificate is not loaded", h.Name)
			}
			c.Certificates = []tls.Certificate{*h.Certificate.TLS}
			if h.NegotiateClientCertificate {
				c.ClientAuth = tls.RequireAnyClientCert
				if trusted := cfg.ClientCAs(); trusted != nil {
					c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, trusted
				}
			}
			return c, nil
		}
	}
	if fallback == nil {
		return nil, errNoCertificate
	}
	c.Certificates = []tls.Certificate{*fallback}
	return c, nil
}
