// Package wsbench holds the tools of the WebSocket benchmark (make bench, docs/performance.md):
// a lean echo backend, a load generator that speaks just enough RFC 6455 to stay out of the
// way of what it measures, and the report that turns samples into a table.
package wsbench

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"sync/atomic"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// acceptGUID is RFC 6455 §1.3's constant for Sec-WebSocket-Accept.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey computes Sec-WebSocket-Accept for key.
func acceptKey(key string) string {
	sum := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// echoBufSize is the echo's default read buffer: frames that fit are answered with one write.
const echoBufSize = 64 << 10

// Echo is a WebSocket echo backend: it accepts every upgrade on any path and sends each data
// frame back unmasked, with its opcode and FIN bit, as soon as it has read it; a ping gets a
// pong and a close gets a close with the same code. It does no work beyond that, so that a
// benchmark measures what stands in front of it. Its counters are safe to read at any time.
type Echo struct {
	// BufSize is each connection's read buffer and write buffer, allocated when it opens;
	// zero means 64 KiB. Smaller buffers suit many idle connections (make bench-scale).
	BufSize int

	upgrades atomic.Int64
	messages atomic.Int64
	bytes    atomic.Int64
	open     atomic.Int64
}

// Upgrades returns the number of upgrades answered with 101 (counted as the 101 is sent).
func (e *Echo) Upgrades() int64 { return e.upgrades.Load() }

// Messages returns the number of data messages echoed whole.
func (e *Echo) Messages() int64 { return e.messages.Load() }

// Bytes returns the number of payload bytes echoed.
func (e *Echo) Bytes() int64 { return e.bytes.Load() }

// Open returns the number of WebSocket connections open now.
func (e *Echo) Open() int64 { return e.open.Load() }

// ServeHTTP upgrades the request and echoes frames until the connection ends.
func (e *Echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if r.Method != http.MethodGet || key == "" || r.Header.Get("Sec-WebSocket-Version") != "13" {
		http.Error(w, "not a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	// Counted before the 101 leaves, so that a client holding its 101 finds it counted.
	e.upgrades.Add(1)
	e.open.Add(1)
	defer e.open.Add(-1)
	if _, err := conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n")); err != nil {
		return
	}
	var src io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		src = io.MultiReader(bytesReader(early), conn)
	}
	size := e.BufSize
	if size <= 0 {
		size = echoBufSize
	}
	e.serve(conn, bufio.NewReaderSize(src, size), size)
}

// bytesReader copies b so that the hijacked reader can be dropped.
func bytesReader(b []byte) io.Reader {
	c := make([]byte, len(b))
	copy(c, b)
	return &sliceReader{b: c}
}

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// serve echoes frames read from r to conn until either ends or a close frame was answered.
func (e *Echo) serve(conn net.Conn, r *bufio.Reader, size int) {
	out := make([]byte, 0, size)
	for {
		p, err := r.Peek(2)
		if err != nil {
			return
		}
		hl := frame.HeaderLen(p[0], p[1])
		if p, err = r.Peek(hl); err != nil {
			return
		}
		h, _, err := frame.Parse(p)
		if err != nil || !h.Masked {
			return // a client that breaks the protocol is simply dropped
		}
		r.Discard(hl)
		reply := frame.Header{Fin: h.Fin, Rsv: h.Rsv, Opcode: h.Opcode, Length: h.Length}
		switch h.Opcode {
		case frame.OpPong:
			if _, err := r.Discard(int(h.Length)); err != nil {
				return
			}
			continue
		case frame.OpPing:
			reply.Opcode = frame.OpPong
		}
		out, _ = frame.AppendHeader(out[:0], reply)
		if int64(len(out))+h.Length <= int64(cap(out)) {
			// The common case: the whole frame in one write.
			n := int(h.Length)
			start := len(out)
			out = out[:start+n]
			if _, err := io.ReadFull(r, out[start:]); err != nil {
				return
			}
			frame.MaskBytes(h.Mask, 0, out[start:])
			if _, err := conn.Write(out); err != nil {
				return
			}
		} else if err := e.stream(conn, r, out, h); err != nil {
			return
		}
		if !h.Opcode.Control() {
			e.bytes.Add(h.Length)
			if h.Fin {
				e.messages.Add(1)
			}
		}
		if h.Opcode == frame.OpClose {
			return
		}
	}
}

// stream echoes a frame larger than the buffer: the header, then the payload chunk by chunk
// as it arrives.
func (e *Echo) stream(conn net.Conn, r *bufio.Reader, out []byte, h frame.Header) error {
	if _, err := conn.Write(out); err != nil {
		return err
	}
	buf := out[:cap(out)]
	pos := 0
	for left := h.Length; left > 0; {
		k := int(min(left, int64(len(buf))))
		n, err := r.Read(buf[:k])
		if n > 0 {
			pos = frame.MaskBytes(h.Mask, pos, buf[:n])
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return werr
			}
			left -= int64(n)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
