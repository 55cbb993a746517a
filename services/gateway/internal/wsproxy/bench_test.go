package wsproxy_test

import (
	"io"
	"strings"
	"testing"

	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// echoPair is a raw client connected through the gateway to a raw echo backend; neither
// end allocates per message, so allocations measured are the relay's.
type echoPair struct {
	client rawConn
	frame  []byte // one masked 256-byte binary message
	reply  []byte
}

func startEchoPair(tb testing.TB) *echoPair {
	tb.Helper()
	srv, conns := startRawBackend(tb)
	gw := startGateway(tb, "ws"+strings.TrimPrefix(srv.URL, "http"))
	client := rawDial(tb, gw.url("/"))
	back := takeRaw(tb, conns)
	go rawEcho(back)
	f := mustFrame(tb, true, 0, frame.OpBinary, true, make([]byte, 256))
	return &echoPair{client: client, frame: f, reply: make([]byte, 4+256)}
}

// rawEcho answers each frame with an unmasked copy until the connection ends.
func rawEcho(c rawConn) {
	in := make([]byte, 64<<10)
	out := make([]byte, 0, 64<<10)
	for {
		if _, err := io.ReadFull(c.r, in[:2]); err != nil {
			return
		}
		hl := frame.HeaderLen(in[0], in[1])
		if _, err := io.ReadFull(c.r, in[2:hl]); err != nil {
			return
		}
		h, _, err := frame.Parse(in[:hl])
		if err != nil || h.Opcode == frame.OpClose || h.Length > int64(len(in)) {
			return
		}
		p := in[:h.Length]
		if _, err := io.ReadFull(c.r, p); err != nil {
			return
		}
		frame.MaskBytes(h.Mask, 0, p)
		out, _ = frame.AppendHeader(out[:0], frame.Header{Fin: h.Fin, Opcode: h.Opcode, Length: h.Length})
		out = append(out, p...)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (e *echoPair) roundTrip(tb testing.TB) {
	if _, err := e.client.Write(e.frame); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(e.client.r, e.reply); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkRelay256 echoes 256-byte messages through the relay; one op is one message
// each way.
func BenchmarkRelay256(b *testing.B) {
	e := startEchoPair(b)
	for range 100 {
		e.roundTrip(b) // warm up pools and buffers
	}
	b.ReportAllocs()
	b.SetBytes(2 * 256)
	for b.Loop() {
		e.roundTrip(b)
	}
}

func TestRelayAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	e := startEchoPair(t)
	for range 100 {
		e.roundTrip(t)
	}
	if n := testing.AllocsPerRun(1000, func() { e.roundTrip(t) }); n > 0.05 {
		t.Errorf("%.2f allocations per echoed message, want none in steady state", n)
	}
}
