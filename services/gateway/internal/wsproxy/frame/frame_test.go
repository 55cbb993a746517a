package frame

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantN   int
		wantErr error
	}{
		{"empty", nil, Header{}, 0, ErrShort},
		{"one byte", []byte{0x81}, Header{}, 0, ErrShort},
		{"text unmasked", []byte{0x81, 0x05}, Header{Fin: true, Opcode: OpText, Length: 5}, 2, nil},
		{"binary masked", []byte{0x82, 0x85, 1, 2, 3, 4}, Header{Fin: true, Opcode: OpBinary, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 5}, 6, nil},
		{"masked key incomplete", []byte{0x82, 0x85, 1, 2, 3}, Header{}, 0, ErrShort},
		{"continuation not final", []byte{0x00, 0x03}, Header{Opcode: OpContinuation, Length: 3}, 2, nil},
		{"rsv1 compressed", []byte{0xC1, 0x01}, Header{Fin: true, Rsv: Rsv1, Opcode: OpText, Length: 1}, 2, nil},
		{"all rsv bits", []byte{0xF2, 0x00}, Header{Fin: true, Rsv: Rsv1 | Rsv2 | Rsv3, Opcode: OpBinary}, 2, nil},
		{"16-bit length", []byte{0x82, 126, 0x01, 0x00}, Header{Fin: true, Opcode: OpBinary, Length: 256}, 4, nil},
		{"16-bit length short", []byte{0x82, 126, 0x01}, Header{}, 0, ErrShort},
		{"64-bit length", []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, Header{Fin: true, Opcode: OpBinary, Length: 65536}, 10, nil},
		{"64-bit length masked", []byte{0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9}, Header{Fin: true, Opcode: OpBinary, Masked: true, Mask: [4]byte{9, 9, 9, 9}, Length: 1 << 32}, 14, nil},
		{"64-bit length msb set", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, Header{}, 0, ErrLength},
		{"16-bit length not minimal", []byte{0x82, 126, 0x00, 0x7D}, Header{}, 0, ErrNonMinimalLength},
		{"64-bit length not minimal", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}, Header{}, 0, ErrNonMinimalLength},
		{"reserved data opcode", []byte{0x83, 0x00}, Header{}, 0, ErrReservedOpcode},
		{"reserved control opcode", []byte{0x8B, 0x00}, Header{}, 0, ErrReservedOpcode},
		{"close", []byte{0x88, 0x02}, Header{Fin: true, Opcode: OpClose, Length: 2}, 2, nil},
		{"ping 125 bytes", []byte{0x89, 125}, Header{Fin: true, Opcode: OpPing, Length: 125}, 2, nil},
		{"ping 126 bytes", []byte{0x89, 126, 0, 126}, Header{}, 0, ErrControlTooLong},
		{"fragmented pong", []byte{0x0A, 0x00}, Header{}, 0, ErrControlFragmented},
		{"trailing payload ignored", []byte{0x81, 0x02, 'h', 'i'}, Header{Fin: true, Opcode: OpText, Length: 2}, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, n, err := Parse(tc.in)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Parse(%x) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse(%x) header (-want +got):\n%s", tc.in, diff)
			}
			if n != tc.wantN {
				t.Errorf("Parse(%x) n = %d, want %d", tc.in, n, tc.wantN)
			}
			if err != nil {
				return
			}
			if hl := HeaderLen(tc.in[0], tc.in[1]); hl != n {
				t.Errorf("HeaderLen = %d, want %d", hl, n)
			}
			enc, err := AppendHeader(nil, got)
			if err != nil {
				t.Fatalf("AppendHeader: %v", err)
			}
			if !bytes.Equal(enc, tc.in[:n]) {
				t.Errorf("AppendHeader = %x, want %x", enc, tc.in[:n])
			}
		})
	}
}

func TestCheckMask(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		masked     bool
		fromClient bool
		want       error
	}{
		{"client masked", true, true, nil},
		{"client unmasked", false, true, ErrUnmasked},
		{"server unmasked", false, false, nil},
		{"server masked", true, false, ErrMasked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := (Header{Masked: tc.masked}).CheckMask(tc.fromClient); !errors.Is(err, tc.want) {
				t.Errorf("CheckMask = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAppendFrameMasksPayload(t *testing.T) {
	t.Parallel()
	payload := []byte("Hello")
	got, err := AppendFrame(nil, Header{Fin: true, Opcode: OpText, Masked: true, Mask: [4]byte{0x37, 0xfa, 0x21, 0x3d}}, payload)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 6455 §5.7: a single-frame masked text message containing "Hello".
	want := []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}
	if !bytes.Equal(got, want) {
		t.Errorf("AppendFrame = %x, want %x", got, want)
	}
	if string(payload) != "Hello" {
		t.Errorf("payload modified to %q", payload)
	}
}

func TestAppendHeaderRejectsInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    Header
		want error
	}{
		{"negative length", Header{Fin: true, Opcode: OpBinary, Length: -1}, ErrLength},
		{"reserved opcode", Header{Fin: true, Opcode: 0x7}, ErrReservedOpcode},
		{"long ping", Header{Fin: true, Opcode: OpPing, Length: 126}, ErrControlTooLong},
		{"fragmented close", Header{Opcode: OpClose}, ErrControlFragmented},
		{"rsv out of range", Header{Fin: true, Opcode: OpText, Rsv: 8}, ErrRsv},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := AppendHeader([]byte{1}, tc.h)
			if !errors.Is(err, tc.want) {
				t.Errorf("AppendHeader error = %v, want %v", err, tc.want)
			}
			if !bytes.Equal(b, []byte{1}) {
				t.Errorf("AppendHeader changed b to %x", b)
			}
		})
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 100) // 200 bytes; the cut must not split a rune
	tests := []struct {
		name       string
		code       uint16
		reason     string
		mask       *[4]byte
		wantReason string
	}{
		{"plain", 4000, "bye", nil, "bye"},
		{"masked", 1008, "subscription revoked", &[4]byte{1, 2, 3, 4}, "subscription revoked"},
		{"long reason cut at rune", 1001, long, nil, strings.Repeat("é", 61)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := AppendClose(nil, tc.code, tc.reason, tc.mask)
			h, n, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if h.Opcode != OpClose || !h.Fin || h.Masked != (tc.mask != nil) || int(h.Length) != len(b)-n {
				t.Fatalf("header = %+v for %d-byte frame", h, len(b))
			}
			p := b[n:]
			if h.Masked {
				MaskBytes(h.Mask, 0, p)
			}
			code, reason, err := ParseClose(p)
			if err != nil {
				t.Fatalf("ParseClose: %v", err)
			}
			if code != tc.code || string(reason) != tc.wantReason {
				t.Errorf("close = %d %q, want %d %q", code, reason, tc.code, tc.wantReason)
			}
			if !utf8.Valid(reason) {
				t.Errorf("reason %q is not valid UTF-8", reason)
			}
		})
	}
}

func TestParseClose(t *testing.T) {
	t.Parallel()
	if code, reason, err := ParseClose(nil); code != CloseNoStatus || reason != nil || err != nil {
		t.Errorf("ParseClose(empty) = %d %q %v, want 1005", code, reason, err)
	}
	if _, _, err := ParseClose([]byte{3}); !errors.Is(err, ErrClosePayload) {
		t.Errorf("ParseClose(1 byte) error = %v, want %v", err, ErrClosePayload)
	}
}

func TestSendableCloseCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code uint16
		want bool
	}{
		{0, false}, {999, false}, {1000, true}, {1001, true}, {1003, true}, {1004, false},
		{1005, false}, {1006, false}, {1007, true}, {1008, true}, {1009, true}, {1011, true},
		{1014, true}, {1015, false}, {2999, false}, {3000, true}, {4000, true}, {4999, true}, {5000, false},
	}
	for _, tc := range tests {
		if got := SendableCloseCode(tc.code); got != tc.want {
			t.Errorf("SendableCloseCode(%d) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range [][]byte{
		{0x81, 0x05},
		{0x82, 0x85, 1, 2, 3, 4},
		{0x82, 126, 0x01, 0x00},
		{0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 9, 9, 9, 9},
		{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0},
		{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8},
		{0x0A, 0x00},
		{0xC1, 0x01, 'x'},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("Parse(%x) = n %d with error %v", b, n, err)
			}
			return
		}
		if n < 2 || n > MaxHeaderLen || n > len(b) || n != h.Len() || n != HeaderLen(b[0], b[1]) {
			t.Fatalf("Parse(%x): n = %d, h.Len() = %d", b, n, h.Len())
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("Parse(%x) returned an invalid header %+v: %v", b, h, err)
		}
		enc, err := AppendHeader(nil, h)
		if err != nil {
			t.Fatalf("AppendHeader(%+v): %v", h, err)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("AppendHeader(Parse(%x)) = %x", b[:n], enc)
		}
	})
}

// TestMaskBytes checks the word-at-a-time masking against RFC 6455 §5.3's byte-by-byte
// definition at every start offset and a range of lengths, and that masking twice restores
// the payload.
func TestMaskBytes(t *testing.T) {
	t.Parallel()
	key := [4]byte{0x12, 0x9a, 0x07, 0xfe}
	for pos := range 8 {
		for n := range 40 {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i*31 + 7)
			}
			want := make([]byte, n)
			for i := range want {
				want[i] = b[i] ^ key[(pos+i)%4]
			}
			got := append([]byte(nil), b...)
			if end := MaskBytes(key, pos, got); end != pos+n {
				t.Fatalf("MaskBytes(pos %d, %d bytes) returned %d, want %d", pos, n, end, pos+n)
			}
			if string(got) != string(want) {
				t.Fatalf("MaskBytes(pos %d, %d bytes) = %x, want %x", pos, n, got, want)
			}
			MaskBytes(key, pos, got)
			if string(got) != string(b) {
				t.Fatalf("masking twice at pos %d, %d bytes did not restore the payload", pos, n)
			}
		}
	}
}
