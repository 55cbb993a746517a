package traffic

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatehouse.dev/gateway/internal/breaker"
	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/pkg/pipeline"
)

// Backend entities (docs/backends.md): after the policies, the request's backend is resolved
// to the list of targets to try, in order: the API's serviceUrl or a base-url (one target, or
// the Single backend entity at that URL), a Single backend, or a pool's members by priority
// group, weighted at random within a group. Members whose circuit breaker is open are left
// out; a WebSocket handshake tries the others in turn when one cannot be dialled.

// target is one backend to try.
type target struct {
	url *url.URL
	// be is the backend entity (nil for a plain URL) and br its breaker (nil for none).
	be *compiled.Backend
	br *breaker.Breaker
}

// noTarget is why a request has no backend to try: the status, message and the Retry-After
// of an open circuit (0: none).
type noTarget struct {
	status     int
	reason     string
	msg        string
	retryAfter time.Duration
}

// Reasons for a request with no backend to try.
const (
	reasonCircuitOpen        = "BackendCircuitOpen"
	reasonBackendUnavailable = "BackendNotAvailable"
	msgCircuitOpen           = "Backend service is unavailable: its circuit breaker is open."
)

// targets resolves the backend of pr after its policies.
func (h *Handler) targets(cfg *compiled.Config, pr *pipeline.Request) ([]target, *noTarget) {
	var be *compiled.Backend
	switch {
	case pr.BackendID != "":
		if be = cfg.Backend(pr.BackendID); be == nil {
			return nil, &noTarget{status: http.StatusInternalServerError, reason: reasonBackendUnavailable, msg: "The backend '" + pr.BackendID + "' is not defined."}
		}
	case pr.Backend == nil:
		return nil, &noTarget{status: http.StatusInternalServerError, reason: reasonNoBackend, msg: "The API has no backend service URL"}
	default:
		if be = cfg.BackendAt(pr.Backend); be == nil {
			return []target{{url: pr.Backend}}, nil
		}
	}
	if be.Failure != nil {
		h.opt.Log.Error("backend does not compile on this node; its calls are refused with 500", "backend", be.Name, "err", be.Failure)
		return nil, &noTarget{status: http.StatusInternalServerError, reason: reasonBackendUnavailable, msg: "The backend is not available."}
	}
	var out []target
	var wait time.Duration
	for _, m := range members(be) {
		t := target{url: m.URL, be: m}
		if m.Breaker != nil {
			t.br = h.breakers.For(m.Name, m.Breaker)
			if ok, w := t.br.Allow(); !ok {
				if wait == 0 || w < wait {
					wait = w
				}
				continue
			}
		}
		if m.Failure == nil {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		if wait > 0 {
			return nil, &noTarget{status: http.StatusServiceUnavailable, reason: reasonCircuitOpen, msg: msgCircuitOpen, retryAfter: wait}
		}
		return nil, &noTarget{status: http.StatusInternalServerError, reason: reasonBackendUnavailable, msg: "The backend is not available."}
	}
	return out, nil
}

// writeNoTarget answers a request that has no backend to try.
func writeNoTarget(w http.ResponseWriter, nt *noTarget) {
	if nt.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((nt.retryAfter+time.Second-1)/time.Second)))
	}
	WriteError(w, nt.status, nt.msg)
}

// members returns the Single backends of be in the order to try them: be itself, or a pool's
// members by ascending priority, each priority group in a random order weighted by the
// members' weights.
func members(be *compiled.Backend) []*compiled.Backend {
	if be.Members == nil {
		return []*compiled.Backend{be}
	}
	out := make([]*compiled.Backend, 0, len(be.Members))
	for i := 0; i < len(be.Members); {
		j := i
		for j < len(be.Members) && be.Members[j].Priority == be.Members[i].Priority {
			j++
		}
		out = append(out, weightedOrder(be.Members[i:j])...)
		i = j
	}
	return out
}

// weightedOrder draws the members of one priority group without replacement, each draw with
// a probability in proportion to the weight of those left.
func weightedOrder(group []compiled.Member) []*compiled.Backend {
	left := append([]compiled.Member(nil), group...)
	out := make([]*compiled.Backend, 0, len(group))
	for len(left) > 0 {
		total := 0
		for _, m := range left {
			total += m.Weight
		}
		n := rand.IntN(total)
		k := 0
		for n >= left[k].Weight {
			n -= left[k].Weight
			k++
		}
		out = append(out, left[k].Backend)
		left = append(left[:k], left[k+1:]...)
	}
	return out
}

// allowed reports whether t's breaker, if it has one, lets a call through now.
func (t target) allowed() bool {
	if t.br == nil {
		return true
	}
	ok, _ := t.br.Allow()
	return ok
}

// request returns the header and query to send to t: pr's, with t's credentials set over them.
func (t target) request(pr *pipeline.Request) (http.Header, url.Values) {
	if t.be == nil || t.be.Header == nil && t.be.Query == nil {
		return pr.Header, pr.Query
	}
	hdr, q := pr.Header.Clone(), url.Values{}
	for k, vs := range pr.Query {
		q[k] = vs
	}
	for k, vs := range t.be.Header {
		hdr[k] = vs
	}
	for k, vs := range t.be.Query {
		q[k] = vs
	}
	return hdr, q
}

// record counts the outcome of a call to t in its breaker: status is the backend's answer (0
// when none came), retryAfter its Retry-After header.
func (t target) record(status int, retryAfter string) {
	if t.br == nil {
		return
	}
	rule := t.be.Breaker
	failed := status == 0 && rule.Errors || status != 0 && rule.FailedStatus(status)
	var wait time.Duration
	if s, err := strconv.Atoi(retryAfter); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	t.br.Record(failed, wait)
}

// backendTLS holds the TLS configurations of wss and https backends, each with the
// transport REST calls use it through: one for each combination of a backend entity's tls
// flags ([skipChain][skipName]), and, for backends presenting client certificates, one for
// each combination of flags and certificates, made when first needed. It is safe for
// concurrent use.
type backendTLS struct {
	variants     [2][2]*tlsVariant
	newTransport func(*tls.Config) http.RoundTripper

	mu sync.Mutex
	// withCerts holds the variants with client certificates by flags and the certificates'
	// digests, so that a configuration change keeps them and a rotated certificate makes a
	// new one; it is emptied when it reaches maxClientVariants.
	withCerts map[clientVariantKey]*tlsVariant
}

// tlsVariant is one TLS configuration for backends and the transport of REST calls using it.
type tlsVariant struct {
	conf *tls.Config
	rt   http.RoundTripper
}

// clientVariantKey names a variant with client certificates: the tls flags and the SHA-256
// digests of the certificates' leaves, in order.
type clientVariantKey struct {
	skipChain, skipName bool
	certs               string
}

// maxClientVariants bounds the variants with client certificates kept: a few per backend
// presenting certificates, and one more at each rotation.
const maxClientVariants = 64

// newBackendTLS derives the variants from the node's base configuration (nil: system roots);
// newTransport makes the transport of each.
func newBackendTLS(base *tls.Config, newTransport func(*tls.Config) http.RoundTripper) *backendTLS {
	if base == nil {
		base = &tls.Config{}
	}
	v := &backendTLS{newTransport: newTransport, withCerts: map[clientVariantKey]*tlsVariant{}}
	v.variants[0][0] = &tlsVariant{conf: base, rt: newTransport(base)}
	for _, skip := range [][2]bool{{true, true}, {true, false}, {false, true}} {
		c := base.Clone()
		c.InsecureSkipVerify = true // verification is VerifyConnection's, as the flags say
		c.VerifyConnection = verifyPart(base.RootCAs, skip[0], skip[1])
		v.variants[b2i(skip[0])][b2i(skip[1])] = &tlsVariant{conf: c, rt: newTransport(c)}
	}
	return v
}

// For returns the variant for t: the node's base one for a plain URL, else the one of the
// backend's tls flags, with its client certificates if it has any.
func (v *backendTLS) For(t target) *tlsVariant {
	if t.be == nil {
		return v.variants[0][0]
	}
	flags := v.variants[b2i(t.be.SkipChain)][b2i(t.be.SkipName)]
	if len(t.be.ClientCertificates) == 0 {
		return flags
	}
	k := clientVariantKey{skipChain: t.be.SkipChain, skipName: t.be.SkipName, certs: certificatesDigest(t.be.ClientCertificates)}
	v.mu.Lock()
	defer v.mu.Unlock()
	if cv := v.withCerts[k]; cv != nil {
		return cv
	}
	if len(v.withCerts) >= maxClientVariants {
		for _, old := range v.withCerts {
			if ci, ok := old.rt.(interface{ CloseIdleConnections() }); ok {
				ci.CloseIdleConnections()
			}
		}
		clear(v.withCerts)
	}
	c := flags.conf.Clone()
	c.GetClientCertificate = clientCertificate(t.be.ClientCertificates)
	cv := &tlsVariant{conf: c, rt: v.newTransport(c)}
	v.withCerts[k] = cv
	return cv
}

// certificatesDigest is the SHA-256 digests of the leaves of certs, in order.
func certificatesDigest(certs []tls.Certificate) string {
	var b strings.Builder
	for _, c := range certs {
		if len(c.Certificate) > 0 {
			sum := sha256.Sum256(c.Certificate[0])
			b.Write(sum[:])
		}
	}
	return b.String()
}

// clientCertificate answers a backend's certificate request with the first of certs the
// request accepts (its signature schemes and certificate authorities), or, when it accepts
// none, the first: the backend then decides.
func clientCertificate(certs []tls.Certificate) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		for i := range certs {
			if cri.SupportsCertificate(&certs[i]) == nil {
				return &certs[i], nil
			}
		}
		return &certs[0], nil
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// verifyPart checks what a backend's tls flags leave on: the chain against roots (nil: the
// system's) unless skipChain, the server name unless skipName.
func verifyPart(roots *x509.CertPool, skipChain, skipName bool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the backend sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		if !skipName {
			if err := leaf.VerifyHostname(cs.ServerName); err != nil {
				return err
			}
		}
		if skipChain {
			return nil
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		_, err := leaf.Verify(opts)
		return err
	}
}
