package tcptest_test

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"gatehouse.dev/pkg/tcptest"
)

// TestServe: each connection gets its own number and handle's bytes, and is closed when
// handle returns.
func TestServe(t *testing.T) {
	addr := tcptest.Serve(t, func(c net.Conn, n int) { io.WriteString(c, strconv.Itoa(n)) })
	seen := map[string]bool{}
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c) // ends only when the server closed the connection
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen[string(b)] = true
	}
	if !seen["0"] || !seen["1"] || !seen["2"] || len(seen) != 3 {
		t.Errorf("connections were numbered %v, want 0, 1 and 2", seen)
	}
}
