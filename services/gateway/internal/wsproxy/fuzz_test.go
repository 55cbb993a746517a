package wsproxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// FuzzRelayFrames sends arbitrary bytes as a client's frames through a session between two
// in-memory connections and checks what the backend receives: only whole frames that keep
// RFC 6455's rules the relay enforces (masking, fragmentation, RSV bits only with
// permessage-deflate and only on a message's first frame, close codes and reasons, UTF-8
// text when checked), with at most the last one cut short as the connection ends. The
// relay must never panic nor hang.
func FuzzRelayFrames(f *testing.F) {
	m := [4]byte{1, 2, 3, 4}
	add := func(deflate, validate bool, frames ...[]byte) {
		var b []byte
		for _, x := range frames {
			b = append(b, x...)
		}
		f.Add(b, deflate, validate)
	}
	fr := func(fin bool, rsv uint8, op frame.Opcode, p string) []byte {
		b, _ := frame.AppendFrame(nil, frame.Header{Fin: fin, Rsv: rsv, Opcode: op, Masked: true, Mask: m}, []byte(p))
		return b
	}
	add(false, false, fr(true, 0, frame.OpText, "hello"), fr(true, 0, frame.OpClose, "\x03\xe8bye"))
	add(false, false, fr(true, frame.Rsv1, frame.OpBinary, "x"))
	add(true, false, fr(false, frame.Rsv1, frame.OpText, "x"), fr(true, frame.Rsv1, frame.OpContinuation, "y"))
	add(false, true, fr(false, 0, frame.OpText, "\xc3"), fr(true, 0, frame.OpPing, ""), fr(true, 0, frame.OpContinuation, "\xa9"))
	add(false, true, fr(true, 0, frame.OpText, "\xff"))
	add(false, false, fr(true, 0, frame.OpClose, "\x13\x88"))
	add(false, false, fr(true, 0, frame.OpClose, "\x03"))
	add(false, false, []byte{0x83, 0x80, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte, deflate, validate bool) {
		clientEnd, gwClient := net.Pipe()
		backendEnd, gwBackend := net.Pipe()
		resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, Header: http.Header{}}
		if deflate {
			resp.Header.Set("Sec-WebSocket-Extensions", "permessage-deflate")
		}
		sess := wsproxy.NewSession(gwClient, nil, &wsproxy.Backend{Conn: gwBackend, Response: resp},
			wsproxy.Limits{CloseTimeout: 50 * time.Millisecond, ValidateUTF8: validate}, wsproxy.Hooks{})
		ended := make(chan wsproxy.Stats, 1)
		sess.Start(context.Background(), func(st wsproxy.Stats) { ended <- st })

		go func() { // the client: send in, read whatever comes back, then leave
			go io.Copy(io.Discard, clientEnd)
			clientEnd.Write(in)
			clientEnd.Close()
		}()
		err := checkRelayed(backendEnd, deflate, validate)
		backendEnd.Close()
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		if err != nil {
			t.Fatalf("backend received a frame the relay must not pass: %v", err)
		}
	})
}

// checkRelayed reads what the relay sends a backend until the connection ends and returns
// the first rule broken. It answers a close frame with one of its own.
func checkRelayed(c net.Conn, deflate, validate bool) error {
	r := bufio.NewReader(c)
	inMessage, text := false, false
	var v frame.UTF8
	for {
		p, err := r.Peek(2)
		if err != nil {
			return nil // the end, possibly inside a header
		}
		hl := frame.HeaderLen(p[0], p[1])
		if p, err = r.Peek(hl); err != nil {
			return nil
		}
		h, _, err := frame.Parse(p)
		if err != nil {
			return err
		}
		if err := h.CheckMask(true); err != nil {
			return err
		}
		r.Discard(hl)
		if h.Length > frame.MaxControlPayload {
			// A large data frame: only its first bytes matter to the rules checked here.
			if h.Rsv != 0 && !(deflate && h.Rsv == frame.Rsv1 && h.Opcode != frame.OpContinuation) {
				return errors.New("reserved bits relayed")
			}
			if (h.Opcode == frame.OpContinuation) != inMessage {
				return errors.New("fragmentation broken")
			}
			if h.Opcode != frame.OpContinuation {
				text = validate && h.Opcode == frame.OpText && h.Rsv == 0
				v.Reset()
			}
			inMessage = !h.Fin
			buf := make([]byte, 4096)
			for pos, left := 0, h.Length; left > 0; {
				n, err := r.Read(buf[:min(int64(len(buf)), left)])
				if err != nil {
					return nil // the last frame, cut short as the connection ended
				}
				frame.MaskBytes(h.Mask, pos, buf[:n])
				pos += n
				left -= int64(n)
				if text && (!v.Write(buf[:n]) || left == 0 && h.Fin && !v.Done()) {
					return errors.New("text not UTF-8")
				}
			}
			continue
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			return nil // the last frame, cut short as the connection ended
		}
		frame.MaskBytes(h.Mask, 0, payload)
		switch {
		case h.Rsv != 0 && !(deflate && h.Rsv == frame.Rsv1 && (h.Opcode == frame.OpText || h.Opcode == frame.OpBinary)):
			return errors.New("reserved bits relayed")
		case !h.Opcode.Control() && (h.Opcode == frame.OpContinuation) != inMessage:
			return errors.New("fragmentation broken")
		}
		switch {
		case h.Opcode == frame.OpClose:
			if err := frame.CheckClose(payload); err != nil {
				return err
			}
			c.Write(frame.AppendClose(nil, frame.CloseNormal, "", nil))
		case !h.Opcode.Control():
			if h.Opcode != frame.OpContinuation {
				text = validate && h.Opcode == frame.OpText && h.Rsv == 0
				v.Reset()
			}
			inMessage = !h.Fin
			if text && (!v.Write(payload) || h.Fin && !v.Done()) {
				return errors.New("text not UTF-8: " + string(payload))
			}
		}
	}
}
