package console

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// dial connects to a gateway node. A refused handshake is no error: it returns a nil
// connection and the response, its body read in full up to maxBody.
func dial(ctx context.Context, rawURL string) (*websocket.Conn, handshake, error) {
	rec := &recordingDial{}
	d := websocket.Dialer{HandshakeTimeout: dialTimeout, NetDialContext: rec.dial, NetDialTLSContext: rec.dialTLS}
	conn, resp, err := d.DialContext(ctx, rawURL, nil)
	if rec.conn != nil {
		rec.conn.recording = false
	}
	if err == nil {
		rec.conn.rec = bytes.Buffer{}
		return conn, handshake{Type: "handshake", Status: resp.StatusCode, Headers: flatHeaders(resp.Header)}, nil
	}
	if rec.conn != nil {
		defer rec.conn.Conn.Close()
	}
	switch {
	case !errors.Is(err, websocket.ErrBadHandshake) || resp == nil:
		return nil, handshake{}, dialError(err)
	case resp.StatusCode == http.StatusSwitchingProtocols:
		return nil, handshake{}, errors.New("the node answered 101 without a valid WebSocket handshake")
	}
	if rec.conn != nil {
		if full, ok := rec.conn.response(); ok {
			resp = full
		}
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return nil, handshake{Type: "handshake", Status: resp.StatusCode, Headers: flatHeaders(resp.Header), Body: string(body)}, nil
}

// dialError describes a failed connection without detail a caller need not see.
func dialError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer within %v", dialTimeout)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe
	}
	return err
}

func flatHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, vs := range h {
		out[k] = strings.Join(vs, ", ")
	}
	return out
}

// recordingDial dials for a websocket.Dialer and keeps the connection it made, so that a
// refused handshake's response can be read in full: gorilla's client keeps 1 KiB of its body.
// The TLS dial is its own so that the recording holds plaintext.
type recordingDial struct {
	conn *recordingConn
}

func (r *recordingDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	r.conn = &recordingConn{Conn: c, recording: true}
	return r.conn, nil
}

func (r *recordingDial) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(c, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	r.conn = &recordingConn{Conn: tc, recording: true}
	return r.conn, nil
}

// recordingConn records what the handshake reads and ignores Close while recording: the client
// closes the connection of a refused handshake before its body is read. The dialer's caller
// stops the recording once the dial returns, before the connection is shared.
type recordingConn struct {
	net.Conn
	recording bool
	rec       bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.recording && c.rec.Len() < 2*maxBody {
		c.rec.Write(p[:n])
	}
	return n, err
}

func (c *recordingConn) Close() error {
	if c.recording {
		return nil
	}
	return c.Conn.Close()
}

// response parses the recorded response of a refused handshake, its body read on from the
// connection.
func (c *recordingConn) response() (*http.Response, bool) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(&c.rec, c.Conn)), nil)
	return resp, err == nil
}
