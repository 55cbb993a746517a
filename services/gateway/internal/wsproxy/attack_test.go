package wsproxy_test

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// attackPair is a raw client and a raw backend joined by the gateway, offering ext.
func attackPair(t *testing.T, ext string, opts ...gatewayOption) (client, back rawConn, gw *gateway) {
	t.Helper()
	srv, conns := startRawBackend(t)
	gw = startGateway(t, "ws"+strings.TrimPrefix(srv.URL, "http"), opts...)
	client = rawDialExt(t, gw.url("/"), ext)
	return client, takeRaw(t, conns), gw
}

// firstFrameIsClose reads c's next frame and fails unless it is a close with code want:
// nothing the attacker sent reached c before it.
func firstFrameIsClose(t *testing.T, who string, c rawConn, want uint16) {
	t.Helper()
	h, p := c.readFrame(t)
	if h.Opcode != frame.OpClose {
		t.Fatalf("%s got a %v frame (%d bytes), want close %d first", who, h.Opcode, len(p), want)
	}
	code, _, err := frame.ParseClose(p)
	if err != nil || code != want {
		t.Fatalf("%s got close %d (%v), want %d", who, code, err, want)
	}
}

// TestAttackFrameRules sends frames that break RFC 6455 from either side and checks that
// the sender gets 1002 (1007 for text that is not UTF-8 when the check is on), the other
// side 1001, and that the frame at fault never reaches it.
func TestAttackFrameRules(t *testing.T) {
	t.Parallel()
	closeWith := func(code uint16, reason string) []byte {
		return append([]byte{byte(code >> 8), byte(code)}, reason...)
	}
	for _, tc := range []struct {
		name        string
		ext         string
		validate    bool
		fromBackend bool
		frames      [][]byte // masked as a client's unless fromBackend
		relayed     int      // frames that are relayed before the one at fault
		cut         bool     // the frame at fault is cut short: the other side is disconnected
		want        uint16
	}{
		{name: "RSV1 without an extension", frames: [][]byte{mustFrame(t, true, frame.Rsv1, frame.OpBinary, true, []byte("x"))}, want: 1002},
		{name: "RSV2 without an extension", frames: [][]byte{mustFrame(t, true, frame.Rsv2, frame.OpText, true, []byte("x"))}, want: 1002},
		{name: "RSV3 without an extension", frames: [][]byte{mustFrame(t, true, frame.Rsv3, frame.OpText, true, []byte("x"))}, want: 1002},
		{name: "RSV1 from the backend without an extension", fromBackend: true, frames: [][]byte{mustFrame(t, true, frame.Rsv1, frame.OpText, false, []byte("x"))}, want: 1002},
		{name: "RSV2 with permessage-deflate", ext: "permessage-deflate", frames: [][]byte{mustFrame(t, true, frame.Rsv2, frame.OpBinary, true, []byte("x"))}, want: 1002},
		{name: "RSV1 on a continuation with permessage-deflate", ext: "permessage-deflate", frames: [][]byte{
			mustFrame(t, false, frame.Rsv1, frame.OpBinary, true, []byte("x")), mustFrame(t, true, frame.Rsv1, frame.OpContinuation, true, []byte("y"))}, relayed: 1, want: 1002},
		{name: "RSV1 on a ping with permessage-deflate", ext: "permessage-deflate", frames: [][]byte{mustFrame(t, true, frame.Rsv1, frame.OpPing, true, nil)}, want: 1002},
		{name: "reserved data opcode 0x3", frames: [][]byte{{0x83, 0x80, 0, 0, 0, 0}}, want: 1002},
		{name: "reserved control opcode 0xB", frames: [][]byte{{0x8B, 0x80, 0, 0, 0, 0}}, want: 1002},
		{name: "close code 999", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(999, ""))}, want: 1002},
		{name: "close code 1004", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(1004, ""))}, want: 1002},
		{name: "close code 1005", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(1005, ""))}, want: 1002},
		{name: "close code 1006", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(1006, ""))}, want: 1002},
		{name: "close code 1015", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(1015, ""))}, want: 1002},
		{name: "close code 1016", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(1016, ""))}, want: 1002},
		{name: "close code 2999", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(2999, ""))}, want: 1002},
		{name: "close code 5000", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(5000, ""))}, want: 1002},
		{name: "close code 5000 from the backend", fromBackend: true, frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, false, closeWith(5000, ""))}, want: 1002},
		{name: "close payload of one byte", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, []byte{3})}, want: 1002},
		{name: "close reason not UTF-8", frames: [][]byte{mustFrame(t, true, 0, frame.OpClose, true, closeWith(1000, "\xff\xfe"))}, want: 1002},
		{name: "text not UTF-8", validate: true, frames: [][]byte{mustFrame(t, true, 0, frame.OpText, true, []byte("ok \xc3\x28"))}, want: 1007},
		{name: "text not UTF-8 from the backend", validate: true, fromBackend: true, frames: [][]byte{mustFrame(t, true, 0, frame.OpText, false, []byte("\xed\xa0\x80"))}, want: 1007},
		{name: "text ending inside a character", validate: true, frames: [][]byte{
			mustFrame(t, false, 0, frame.OpText, true, []byte("a")), mustFrame(t, true, 0, frame.OpContinuation, true, []byte("\xe2\x82"))}, relayed: 1, want: 1007},
		{name: "large text frame not UTF-8", validate: true, frames: [][]byte{
			mustFrame(t, true, 0, frame.OpText, true, append(bytes.Repeat([]byte("é"), 40000), 0xff))}, cut: true, want: 1007}, // longer than either engine's read buffer
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, back, gw := attackPair(t, tc.ext, withLimits(wsproxy.Limits{CloseTimeout: waitFor, ValidateUTF8: tc.validate}))
			from, to, fromName, toName := client, back, "client", "backend"
			if tc.fromBackend {
				from, to, fromName, toName = back, client, "backend", "client"
			}
			for _, f := range tc.frames {
				if _, err := from.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			firstFrameIsClose(t, fromName, from, tc.want)
			for range tc.relayed {
				to.readFrame(t)
			}
			if tc.cut {
				// Part of the frame, never all of it, then the end of the connection.
				to.SetReadDeadline(time.Now().Add(waitFor))
				got, err := io.ReadAll(to.r)
				if err != nil || len(got) >= len(tc.frames[len(tc.frames)-1]) {
					t.Fatalf("%s got %d bytes (%v), want part of the %d-byte frame and the end", toName, len(got), err, len(tc.frames[0]))
				}
			} else {
				firstFrameIsClose(t, toName, to, frame.CloseGoingAway)
			}
			from.Close()
			to.Close()
			if st := gw.result(t); st.ClosedBy != wsproxy.ByGateway || st.CloseCode != tc.want {
				t.Errorf("stats = %+v, want closed by the gateway with %d", st, tc.want)
			}
		})
	}
}

// TestAttackUTF8Valid checks that the UTF-8 check passes valid text, with characters split
// across frames and across the relay's buffer, unchanged.
func TestAttackUTF8Valid(t *testing.T) {
	t.Parallel()
	client, back, _ := attackPair(t, "", withLimits(wsproxy.Limits{CloseTimeout: waitFor, ValidateUTF8: true}))
	big := bytes.Repeat([]byte("€"), 40000) // 120 000 bytes: streamed through the 32 KiB buffer
	var in bytes.Buffer
	in.Write(mustFrame(t, false, 0, frame.OpText, true, []byte("h\xc3")))
	in.Write(mustFrame(t, true, 0, frame.OpPing, true, nil))
	in.Write(mustFrame(t, false, 0, frame.OpContinuation, true, []byte("\xa9\xf0\x9f")))
	in.Write(mustFrame(t, true, 0, frame.OpContinuation, true, []byte("\x98\x80")))
	in.Write(mustFrame(t, true, 0, frame.OpText, true, big))
	in.Write(mustFrame(t, true, 0, frame.OpBinary, true, []byte{0xff}))
	go client.Write(in.Bytes())
	got := make([]byte, in.Len())
	if _, err := ioReadFull(back, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in.Bytes()) {
		t.Error("valid text changed in transit")
	}
}

func ioReadFull(c rawConn, p []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(waitFor))
	return io.ReadFull(c.r, p)
}
