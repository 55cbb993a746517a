//go:build linux

package wsproxy

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// netHTTPChunkedEnd is where net/http's reader of a chunked response body ends in body, or
// -1 when it refuses it.
func netHTTPChunkedEnd(body []byte) int {
	br := bufio.NewReader(io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), bytes.NewReader(body)))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return -1
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return -1
	}
	return len(body) - br.Buffered()
}

// scanChunked feeds body to a chunkScanner in pieces cut at cuts, and returns where it found
// the end (-1: not found, -2: refused).
func scanChunked(body []byte, cuts []int) int {
	var s chunkScanner
	at := 0
	for _, end := range append(cuts, len(body)) {
		if end <= at || end > len(body) {
			continue
		}
		n, done, err := s.scan(body[at:end])
		if err != nil {
			return -2
		}
		if done {
			return at + n
		}
		at = end
	}
	return -1
}

// TestChunkScanner: over bodies net/http reads, cut anywhere, the scanner finds the end
// net/http's reader does.
func TestChunkScanner(t *testing.T) {
	bodies := []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\n",
		"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 15\r\nX-Other: a\r\n\r\n",
		"1\r\na\r\n1\r\nb\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n", // the next response follows
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ { // and random ones
		var b strings.Builder
		for range r.IntN(5) {
			n := r.IntN(300) + 1
			b.WriteString(strings.ToUpper(strconvHex(n)) + "\r\n" + strings.Repeat("x", n) + "\r\n")
		}
		b.WriteString("0\r\n")
		for range r.IntN(3) {
			b.WriteString("X-T: v\r\n")
		}
		b.WriteString("\r\n")
		bodies = append(bodies, b.String())
	}
	for _, body := range bodies {
		want := netHTTPChunkedEnd([]byte(body))
		if want < 0 {
			t.Fatalf("net/http refuses %q", body)
		}
		for range 20 {
			cuts := []int{r.IntN(len(body) + 1), r.IntN(len(body) + 1), r.IntN(len(body) + 1)}
			sortInts(cuts)
			if got := scanChunked([]byte(body), cuts); got != want {
				t.Fatalf("%q cut at %v: end %d, net/http's %d", body, cuts, got, want)
			}
		}
	}
}

// FuzzChunkScanner: where the scanner finds the end of a body, net/http's reader finds the
// same end: the loop never frames a backend's answer otherwise than net/http would.
func FuzzChunkScanner(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"), uint16(3))
	f.Add([]byte("5;x\r\nhello\r\n0\r\nA: b\r\n\r\nrest"), uint16(9))
	f.Add([]byte("0\r\n\r\n"), uint16(0))
	f.Add([]byte("fffffffffffffff\r\n"), uint16(1))
	f.Fuzz(func(t *testing.T, body []byte, cut uint16) {
		got := scanChunked(body, []int{int(cut) % (len(body) + 1)})
		if got < 0 {
			return // not framed (yet): the loop waits for more, or cuts the connection
		}
		if want := netHTTPChunkedEnd(body); want != got {
			t.Fatalf("%q: the scanner ends at %d, net/http at %d", body, got, want)
		}
	})
}

func strconvHex(n int) string {
	const digits = "0123456789abcdef"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 16 {
		b = append([]byte{digits[n%16]}, b...)
	}
	return string(b)
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}
