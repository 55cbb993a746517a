package wsproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"gatehouse.dev/gateway/internal/upstream"
)

// acceptWriteTimeout bounds writing the 101 to the client.
const acceptWriteTimeout = 10 * time.Second

// Accept upgrades the client (see Upgrade) and returns a session between it and be, ready
// to Run, with no hooks. On failure be is closed.
func Accept(w http.ResponseWriter, r *http.Request, be *Backend, limits Limits) (*Session, error) {
	conn, br, err := Upgrade(w, r, be)
	if err != nil {
		return nil, err
	}
	return NewSession(conn, br, be, limits, Hooks{}), nil
}

// Upgrade completes the client's upgrade once the backend has upgraded: it takes over the
// client connection from net/http and writes a 101 carrying the backend's handshake answer
// (Sec-WebSocket-Accept, -Protocol, -Extensions and its other end-to-end headers, as
// httputil.ReverseProxy does for upgrades), plus any headers the caller set on w.Header().
// Subprotocol and extensions are thus negotiated end to end; the relay never terminates
// WebSocket. It returns the client connection, with deadlines cleared, and a reader that
// may hold bytes the client already sent; read the client only through it, or pass both
// to NewSession.
//
// Upgrade fails without answering the client if be's Sec-WebSocket-Accept does not answer
// r's Sec-WebSocket-Key (a gateway bug; answer 502) or the connection cannot be hijacked
// (HTTP/2); after a hijack it closes the client connection on failure. On failure be is
// closed.
func Upgrade(w http.ResponseWriter, r *http.Request, be *Backend) (_ net.Conn, _ *bufio.Reader, err error) {
	if be == nil || be.Response == nil {
		return nil, nil, errors.New("wsproxy: upgrade: no backend")
	}
	defer func() {
		if err != nil {
			be.Close()
		}
	}()
	if got, want := be.Response.Header.Get("Sec-WebSocket-Accept"), acceptKey(r.Header.Get("Sec-WebSocket-Key")); got != want {
		return nil, nil, fmt.Errorf("%w: Sec-WebSocket-Accept does not match the client's key", ErrBadHandshake)
	}
	h := be.Response.Header.Clone()
	upstream.RemoveHopByHop(h)
	h.Del("Content-Length")
	extra := w.Header().Clone()
	upstream.RemoveHopByHop(extra)
	extra.Del("Content-Length")
	for name, values := range extra {
		h[name] = append(h[name], values...)
	}
	var resp bytes.Buffer
	resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	if err := h.Write(&resp); err != nil {
		return nil, nil, fmt.Errorf("wsproxy: upgrade: %w", err)
	}
	resp.WriteString("\r\n")

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("wsproxy: upgrade: hijack: %w", err)
	}
	// net/http may leave its read or write deadlines on a hijacked connection.
	err = conn.SetDeadline(time.Now().Add(acceptWriteTimeout))
	if err == nil {
		_, err = conn.Write(resp.Bytes())
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("wsproxy: upgrade: write 101: %w", err)
	}
	br := brw.Reader
	if br.Buffered() == 0 {
		// Read the socket directly rather than through net/http's locking connReader,
		// keeping the buffer.
		br.Reset(conn)
	}
	return conn, br, nil
}
