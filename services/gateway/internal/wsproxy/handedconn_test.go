//go:build linux

package wsproxy_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestFrontHandedConnCopy: a connection handed to net/http replays what the front read
// however it is read, io.Copy (WriteTo) included, after a handler hijacked it with more
// bytes waiting than net/http's reader holds.
func TestFrontHandedConnCopy(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16000 bytes, beyond net/http's 4 KiB reader
	got := make(chan []byte, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(waitFor))
		var buf bytes.Buffer
		n := brw.Reader.Buffered()
		head, _ := brw.Reader.Peek(n)
		buf.Write(head)
		io.Copy(&buf, conn) // until the client closes its side
		got <- buf.Bytes()
	})
	_, addr := startFront(t, h)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST /raw HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), payload...)); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("the handler read %d bytes after the request, want the %d sent", len(b), len(payload))
		}
	case <-time.After(waitFor):
		t.Fatal("no handler")
	}
}
