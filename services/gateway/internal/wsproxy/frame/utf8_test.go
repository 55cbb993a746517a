package frame

import (
	"testing"
	"unicode/utf8"
)

// FuzzUTF8 checks that UTF8 agrees with utf8.Valid however the input is split.
func FuzzUTF8(f *testing.F) {
	for _, s := range []string{"", "hello", "wörld", "€uro", "😀", "\xff", "\xed\xa0\x80", "a\xc3", "\xf4\x90\x80\x80"} {
		f.Add([]byte(s), uint8(1), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut1, cut2 uint8) {
		i, j := min(int(cut1), len(b)), min(int(cut2), len(b))
		if i > j {
			i, j = j, i
		}
		var v UTF8
		ok := v.Write(b[:i]) && v.Write(b[i:j]) && v.Write(b[j:]) && v.Done()
		if want := utf8.Valid(b); ok != want {
			t.Fatalf("UTF8 over %q cut at %d, %d = %v, utf8.Valid = %v", b, i, j, ok, want)
		}
	})
}

func TestUTF8BytewiseSplits(t *testing.T) {
	for _, s := range []string{"hello, wörld €uro 😀", "\xc3\x28", "\xe2\x82", "ok\xf0\x9f\x98", "\xed\xa0\x80", "\xf8\x88\x80\x80\x80"} {
		var v UTF8
		ok := true
		for k := 0; k < len(s) && ok; k++ {
			ok = v.Write([]byte{s[k]})
		}
		ok = ok && v.Done()
		if want := utf8.ValidString(s); ok != want {
			t.Errorf("%q byte by byte: %v, want %v", s, ok, want)
		}
	}
}

func TestCheckClose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"empty", nil, nil},
		{"1000", []byte{0x03, 0xE8}, nil},
		{"4999 with reason", append([]byte{0x13, 0x87}, "bye"...), nil},
		{"one byte", []byte{0x03}, ErrClosePayload},
		{"999", []byte{0x03, 0xE7}, ErrCloseCode},
		{"1004", []byte{0x03, 0xEC}, ErrCloseCode},
		{"1005", []byte{0x03, 0xED}, ErrCloseCode},
		{"1006", []byte{0x03, 0xEE}, ErrCloseCode},
		{"1015", []byte{0x03, 0xF7}, ErrCloseCode},
		{"1016", []byte{0x03, 0xF8}, ErrCloseCode},
		{"2999", []byte{0x0B, 0xB7}, ErrCloseCode},
		{"5000", []byte{0x13, 0x88}, ErrCloseCode},
		{"invalid reason", []byte{0x03, 0xE8, 0xff}, ErrCloseReason},
	} {
		if got := CheckClose(tc.payload); got != tc.want {
			t.Errorf("%s: CheckClose = %v, want %v", tc.name, got, tc.want)
		}
	}
}
