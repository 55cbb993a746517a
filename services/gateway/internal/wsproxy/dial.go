package wsproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"gatehouse.dev/gateway/internal/upstream"
)

// MaxRefusalBody is how much of a refusing backend's response body Dial keeps.
const MaxRefusalBody = 64 << 10

// ErrBadHandshake means the backend answered the upgrade with something that is not a valid
// WebSocket handshake response: unparseable, or a 101 with wrong Upgrade, Connection or
// Sec-WebSocket-Accept headers.
var ErrBadHandshake = errors.New("wsproxy: bad handshake response from backend")

// DialRequest says how to open the backend side of a session.
type DialRequest struct {
	// URL is the backend URL with its final path and query (ws, wss; http and https are
	// read as ws and wss). The subscription key must already be gone from the query.
	URL *url.URL
	// Host, if set, is sent as the Host header instead of URL.Host. TLS still verifies the
	// URL's host name.
	Host string
	// Header is sent with the upgrade request: the client's end-to-end headers after
	// policies (Origin, Sec-WebSocket-Protocol, Sec-WebSocket-Extensions, X-Forwarded-*,
	// traceparent, ...). Dial writes Host, Upgrade, Connection, Sec-WebSocket-Version and
	// Sec-WebSocket-Key itself and ignores those, and other hop-by-hop headers, in Header.
	Header http.Header
	// Key is the client's Sec-WebSocket-Key, forwarded so that the backend's
	// Sec-WebSocket-Accept is also the right answer for the client. Empty means generate one.
	Key string
	// TLS configures wss. nil means system roots. ServerName defaults to the URL's host
	// name, which is always verified (APIM checks the subject name of WebSocket backends,
	// reference/apim.md §1.5); InsecureSkipVerify is refused unless VerifyConnection does
	// the checks a backend entity's tls flags leave on (docs/backends.md). Only http/1.1 is offered by
	// ALPN and at least TLS 1.2 is required.
	TLS *tls.Config
	// Timeout bounds the whole dial: TCP, TLS and the handshake response. Zero means only
	// ctx bounds it.
	Timeout time.Duration
	// Dial opens the TCP connection to addr ("host:port"); nil means a net.Dialer. The node
	// passes its egress dialer (pkg/egress), which refuses denied addresses after resolution.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Engine, if set, dials ws (not wss) backends from its event loops: the socket never
	// enters the runtime's poller, its waits are the loop's events, and the session later
	// takes it over with its registration (docs/design.md §3). It does so only where Dial is
	// nil or Allow is set: Allow then decides each address the engine resolves, as Dial's
	// own checks would (the node passes its egress policy, egress.Dialer.Allow), and a
	// name, before it is looked up, with an invalid address (netip.AddrPort{} but the port).
	// A wss backend is dialed as usual, its TLS layered so that the loops can take the
	// connection over after the upgrade and run crypto/tls there, as for TLS clients; one
	// whose TLS allows renegotiation stays on the goroutine engine.
	Engine *Engine
	Allow  func(host string, addr netip.AddrPort) error
}

// Backend is an upgraded backend connection, ready to relay frames.
type Backend struct {
	Conn net.Conn
	// Reader, if not nil, holds frames the backend sent right after its 101, to be read
	// before Conn; nil means none came. NewSession takes them over.
	Reader *bufio.Reader
	// Response is the backend's 101 response (its Body is empty).
	Response *http.Response
}

// Close closes the backend connection. Use it when the session is never run.
func (b *Backend) Close() error { return b.Conn.Close() }

// Refused is a backend's non-101 answer to the upgrade, to be passed on to the client.
type Refused struct {
	Status int
	// Header is the backend's response header minus hop-by-hop headers and Content-Length
	// (Body may be cut short).
	Header http.Header
	// Body is at most MaxRefusalBody bytes of the response body.
	Body []byte
}

// Dial opens a WebSocket connection to the backend: TCP, TLS for wss, then the upgrade
// request. It returns the upgraded Backend on a 101 with a correct Sec-WebSocket-Accept, a
// Refused with the backend's status, headers and body on any other final status, and an
// error when the backend cannot be reached, TLS fails, the response is malformed
// (ErrBadHandshake) or ctx or Timeout ends first.
func Dial(ctx context.Context, req DialRequest) (*Backend, *Refused, error) {
	if req.URL == nil {
		return nil, nil, errors.New("wsproxy: dial: no URL")
	}
	secure, addr, err := target(req.URL)
	if err != nil {
		return nil, nil, err
	}
	key := req.Key
	if key == "" {
		key = newKey()
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	var wire bytes.Buffer
	if err := writeUpgrade(&wire, req.URL.RequestURI(), host, key, req.Header); err != nil {
		return nil, nil, err
	}
	var tlsConf *tls.Config
	if secure {
		if tlsConf, err = clientTLS(req.TLS, req.URL.Hostname()); err != nil {
			return nil, nil, err
		}
	}

	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	var conn net.Conn
	if loopDial := !secure && req.Engine != nil && (req.Dial == nil || req.Allow != nil); loopDial {
		conn, err = req.Engine.dialAddr(ctx, addr, req.Allow)
	}
	if conn == nil && (err == nil || errors.Is(err, errors.ErrUnsupported)) {
		dial := req.Dial
		if dial == nil {
			dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
		}
		conn, err = dial(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("wsproxy: dial %s: %w", addr, err)
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// The deadline and the AfterFunc make every blocking step below end with ctx.
	if dl, has := ctx.Deadline(); has {
		conn.SetDeadline(dl)
	}
	tcp := conn // the closure's own: conn becomes the TLS connection below
	stop := context.AfterFunc(ctx, func() { tcp.SetDeadline(time.Unix(1, 0)) })
	// Report ctx's error with a deadline or cancellation, even if the connection's own
	// deadline fired a moment before ctx's timer.
	ctxErr := func(err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%w (%w)", err, cerr)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
		}
		return err
	}
	defer stop()

	if tlsConf != nil {
		transport := conn
		// For the loops to take over after the upgrade; not where the backend may
		// renegotiate: crypto/tls runs that handshake inside Read, which the loops' reads
		// ("would block" when no more has come) would fail for good.
		if req.Engine != nil && tlsConf.Renegotiation == tls.RenegotiateNever {
			transport = loopTransport(conn)
		}
		tc := tls.Client(transport, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, ctxErr(fmt.Errorf("wsproxy: tls handshake with %s: %w", addr, err))
		}
		conn = tc
	}
	if _, err := conn.Write(wire.Bytes()); err != nil {
		return nil, nil, ctxErr(fmt.Errorf("wsproxy: write upgrade request to %s: %w", addr, err))
	}
	br := respReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	resp, err := readResponse(br)
	if err != nil {
		return nil, nil, ctxErr(fmt.Errorf("wsproxy: read upgrade response from %s: %w", addr, err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// A body cut short by the backend or the deadline is passed on as far as it got.
		body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxRefusalBody))
		h := resp.Header.Clone()
		upstream.RemoveHopByHop(h)
		h.Del("Content-Length")
		return nil, &Refused{Status: resp.StatusCode, Header: h, Body: body}, nil
	}
	if err := checkAccept(resp.Header, key); err != nil {
		return nil, nil, err
	}
	if !stop() {
		return nil, nil, ctx.Err() // ctx ended just now and has already broken the deadline
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, nil, fmt.Errorf("wsproxy: %s: %w", addr, err)
	}
	ok = true
	be := &Backend{Conn: conn, Response: resp}
	if br.Buffered() > 0 {
		be.Reader = br // frames the backend sent right after its 101
	} else {
		br.Reset(nil)
		respReaders.Put(br)
	}
	return be, nil, nil
}

// respReaders are the buffered readers upgrade responses are read through; one that holds
// no bytes past the response goes back once the 101 is read.
var respReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func target(u *url.URL) (secure bool, addr string, err error) {
	var port string
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		port = "80"
	case "wss", "https":
		secure, port = true, "443"
	default:
		return false, "", fmt.Errorf("wsproxy: dial: unsupported scheme %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return false, "", fmt.Errorf("wsproxy: dial: no host in %q", u.Redacted())
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return secure, net.JoinHostPort(u.Hostname(), port), nil
}

func clientTLS(base *tls.Config, host string) (*tls.Config, error) {
	var c *tls.Config
	if base != nil {
		if base.InsecureSkipVerify && base.VerifyConnection == nil {
			return nil, errors.New("wsproxy: dial: InsecureSkipVerify is not allowed for backends")
		}
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	c.NextProtos = []string{"http/1.1"}
	return c, nil
}

// skipRequestHeader lists headers Dial writes itself or that must not cross a proxy
// (RFC 9110 §7.6.1), in canonical form.
var skipRequestHeader = map[string]bool{
	"Host": true, "Upgrade": true, "Connection": true, "Sec-Websocket-Key": true,
	"Sec-Websocket-Version": true, "Content-Length": true, "Transfer-Encoding": true,
	"Keep-Alive": true, "Te": true, "Trailer": true, "Proxy-Connection": true,
	"Proxy-Authorization": true, "Proxy-Authenticate": true,
}

func writeUpgrade(w *bytes.Buffer, uri, host, key string, h http.Header) error {
	if !validValue(uri) || strings.ContainsAny(uri, " \t") || !validValue(host) {
		return errors.New("wsproxy: dial: invalid request URI or host")
	}
	w.Grow(512)
	for _, s := range [...]string{"GET ", uri, " HTTP/1.1\r\nHost: ", host,
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key, "\r\nSec-WebSocket-Version: 13\r\n"} {
		w.WriteString(s)
	}
	for name, values := range h {
		if skipRequestHeader[http.CanonicalHeaderKey(name)] {
			continue
		}
		if !validName(name) {
			return fmt.Errorf("wsproxy: dial: invalid header name %q", name)
		}
		for _, v := range values {
			if !validValue(v) {
				return fmt.Errorf("wsproxy: dial: invalid value for header %s", name)
			}
			w.WriteString(name)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	return nil
}

// validName reports whether s is an RFC 9110 token.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue rejects the bytes that would split or corrupt a header line.
func validValue(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00")
}

// readResponse reads the backend's final response, skipping 1xx responses other than 101.
func readResponse(br *bufio.Reader) (*http.Response, error) {
	get := &http.Request{Method: http.MethodGet}
	for range 5 {
		resp, err := http.ReadResponse(br, get)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadHandshake, err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("%w: too many informational responses", ErrBadHandshake)
}

func checkAccept(h http.Header, key string) error {
	switch {
	case !headerHasToken(h, "Upgrade", "websocket"):
		return fmt.Errorf("%w: Upgrade is %q", ErrBadHandshake, h.Get("Upgrade"))
	case !headerHasToken(h, "Connection", "upgrade"):
		return fmt.Errorf("%w: Connection is %q", ErrBadHandshake, h.Get("Connection"))
	case h.Get("Sec-WebSocket-Accept") != acceptKey(key):
		return fmt.Errorf("%w: wrong Sec-WebSocket-Accept", ErrBadHandshake)
	}
	return nil
}

// headerHasToken reports whether the comma-separated header name contains token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// acceptKey computes Sec-WebSocket-Accept for key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}
