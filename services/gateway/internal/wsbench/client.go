package wsbench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// Target is where the load generator connects and what it sends with each upgrade.
type Target struct {
	// URL is a ws:// or wss:// URL.
	URL *url.URL
	// Header is added to every upgrade request (a subscription key, an Authorization header).
	Header http.Header
	// TLS is the client configuration of a wss:// URL (see TLSConfig), required for one and
	// ignored for ws://. A ServerName left empty is taken from the URL.
	TLS *tls.Config
}

// ParseTarget parses rawURL and a list of "Name: value" headers. A wss:// target still needs
// its TLS configuration set.
func ParseTarget(rawURL string, headers []string) (Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Target{}, err
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return Target{}, fmt.Errorf("want a ws:// or wss://host:port/path URL, got %q", u.Redacted())
	}
	t := Target{URL: u, Header: http.Header{}}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return Target{}, fmt.Errorf("header %q: want Name: value", name)
		}
		t.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	return t, nil
}

// request returns the upgrade request for key, ready to write.
func (t Target) request(key string) []byte {
	var b bytes.Buffer
	host := t.URL.Host
	b.WriteString("GET " + t.URL.RequestURI() + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n")
	for name, values := range t.Header {
		for _, v := range values {
			b.WriteString(name + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// StatusError is a handshake answered with another status than 101.
type StatusError struct{ Status int }

func (e *StatusError) Error() string { return fmt.Sprintf("upgrade answered %d, want 101", e.Status) }

// Conn is a client WebSocket connection of the load generator.
type Conn struct {
	conn net.Conn
	r    *bufio.Reader
	mask [4]byte
}

// readBufSize is the client's read buffer.
const readBufSize = 16 << 10

// Dial opens a TCP connection to t, runs the TLS handshake for a wss:// target, and upgrades
// it. A handshake answered with another status than 101 returns a *StatusError; a 101 with a
// wrong Sec-WebSocket-Accept is an error too.
func Dial(ctx context.Context, t Target) (*Conn, error) {
	secure := t.URL.Scheme == "wss"
	if secure && t.TLS == nil {
		return nil, errors.New("a wss:// target needs a TLS configuration")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", t.URL.Host)
	if err != nil {
		return nil, err
	}
	if secure {
		cfg := t.TLS
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = t.URL.Hostname()
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		conn = tc
	}
	c, err := handshake(ctx, conn, t)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, conn net.Conn, t Target) (*Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var raw [16]byte
	rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	if _, err := conn.Write(t.request(key)); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn, readBufSize)
	status, accept, err := readResponse(r)
	if err != nil {
		return nil, err
	}
	if status != http.StatusSwitchingProtocols {
		return nil, &StatusError{Status: status}
	}
	if accept != acceptKey(key) {
		return nil, errors.New("101 with a wrong Sec-WebSocket-Accept")
	}
	if !stop() {
		return nil, ctx.Err()
	}
	conn.SetDeadline(time.Time{})
	c := &Conn{conn: conn, r: r}
	rand.Read(c.mask[:])
	return c, nil
}

// readResponse reads a response head and returns its status and Sec-WebSocket-Accept; the
// body of a refusal is read and dropped when it has a Content-Length.
func readResponse(r *bufio.Reader) (status int, accept string, err error) {
	line, err := readLine(r)
	if err != nil {
		return 0, "", err
	}
	proto, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(proto, "HTTP/1.") || len(code) != 3 {
		return 0, "", fmt.Errorf("malformed status line %q", line)
	}
	if status, err = strconv.Atoi(code); err != nil {
		return 0, "", fmt.Errorf("malformed status line %q", line)
	}
	length := int64(0)
	for {
		line, err := readLine(r)
		if err != nil {
			return 0, "", err
		}
		if line == "" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Sec-WebSocket-Accept"):
			accept = value
		case strings.EqualFold(name, "Content-Length"):
			length, _ = strconv.ParseInt(value, 10, 64)
		}
	}
	if status != http.StatusSwitchingProtocols && length > 0 {
		_, _ = io.CopyN(io.Discard, r, length)
	}
	return status, accept, nil
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// Close closes the TCP connection without a closing handshake.
func (c *Conn) Close() error { return c.conn.Close() }

// TLS returns the connection's TLS state, and false for a ws:// connection.
func (c *Conn) TLS() (tls.ConnectionState, bool) {
	if tc, ok := c.conn.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// AwaitClose reads until the server ends the connection and returns the close code of its
// close frame, or 0 and the error when it ended without one (a reset, EOF, ctx done). Data
// frames and pings on the way are dropped: call it on a connection that has nothing in flight.
func (c *Conn) AwaitClose(ctx context.Context) (int, error) {
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		p, err := c.r.Peek(2)
		if err != nil {
			return 0, err
		}
		hl := frame.HeaderLen(p[0], p[1])
		if p, err = c.r.Peek(hl); err != nil {
			return 0, err
		}
		h, _, err := frame.Parse(p)
		if err != nil {
			return 0, err
		}
		c.r.Discard(hl)
		if h.Opcode != frame.OpClose {
			if _, err := c.r.Discard(int(h.Length)); err != nil {
				return 0, err
			}
			continue
		}
		if h.Length < 2 {
			return 1005, nil // RFC 6455 §7.1.5: no status code present
		}
		p, err = c.r.Peek(2)
		if err != nil {
			return 0, err
		}
		return int(p[0])<<8 | int(p[1]), nil
	}
}

// Message is a binary message prepared once and sent many times: the frame is masked with
// the connection's key in advance, so sending it costs one write.
type Message struct {
	payload []byte // unmasked, to compare the echo with
	wire    []byte // the whole masked frame
}

// NewMessage prepares payload to be sent on c.
func (c *Conn) NewMessage(payload []byte) *Message {
	wire, _ := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpBinary, Masked: true, Mask: c.mask}, payload)
	return &Message{payload: payload, wire: wire}
}

// Send writes m.
func (c *Conn) Send(m *Message) error {
	_, err := c.conn.Write(m.wire)
	return err
}

// ErrEchoMismatch means a message came back different from the one sent.
var ErrEchoMismatch = errors.New("the echo differs from the message sent")

// ReceiveEcho reads one message, which must equal m's payload; pings from an intermediary
// are skipped and a close frame is an error.
func (c *Conn) ReceiveEcho(m *Message) error {
	got := 0
	for {
		p, err := c.r.Peek(2)
		if err != nil {
			return err
		}
		hl := frame.HeaderLen(p[0], p[1])
		if p, err = c.r.Peek(hl); err != nil {
			return err
		}
		h, _, err := frame.Parse(p)
		if err != nil {
			return err
		}
		c.r.Discard(hl)
		if h.Opcode.Control() {
			if _, err := c.r.Discard(int(h.Length)); err != nil {
				return err
			}
			if h.Opcode == frame.OpClose {
				return errors.New("connection closed by the server")
			}
			continue
		}
		if int64(got)+h.Length > int64(len(m.payload)) {
			return ErrEchoMismatch
		}
		for left := int(h.Length); left > 0; {
			chunk, err := c.r.Peek(min(left, c.r.Size()))
			if len(chunk) == 0 && err != nil {
				return err
			}
			if !bytes.Equal(chunk, m.payload[got:got+len(chunk)]) {
				return ErrEchoMismatch
			}
			c.r.Discard(len(chunk))
			got += len(chunk)
			left -= len(chunk)
		}
		if h.Fin {
			if got != len(m.payload) {
				return ErrEchoMismatch
			}
			return nil
		}
	}
}

// RoundTrip sends m and waits for its echo. Large messages are sent from a second goroutine,
// so that the echo coming back while m is still being written cannot fill every buffer on
// the way and stall both ends.
func (c *Conn) RoundTrip(m *Message) error {
	if len(m.wire) <= readBufSize {
		if err := c.Send(m); err != nil {
			return err
		}
		return c.ReceiveEcho(m)
	}
	sent := make(chan error, 1)
	go func() { sent <- c.Send(m) }()
	err := c.ReceiveEcho(m)
	if err != nil {
		c.conn.Close() // unblocks the writer
	}
	if serr := <-sent; serr != nil && err == nil {
		err = serr
	}
	return err
}
