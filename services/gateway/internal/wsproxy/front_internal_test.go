//go:build linux

package wsproxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"testing"
)

// TestFrontSocketOptions checks that the connections a Front accepts carry the options set
// once on its listener (the runtime sets them on every connection it accepts itself).
func TestFrontSocketOptions(t *testing.T) {
	e, err := NewEngine(EngineOptions{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []int, 1)
	f, err := e.Front(ln, FrontOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fc, ok := conn.(*bareConn)
		if !ok {
			t.Errorf("hijacked a %T, not the front's connection", conn)
			got <- nil
			return
		}
		var opts []int
		for _, o := range [][2]int{{syscall.IPPROTO_TCP, syscall.TCP_NODELAY}, {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE}, {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL}, {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT}} {
			v, err := syscall.GetsockoptInt(fc.fd, o[0], o[1])
			if err != nil {
				t.Error(err)
			}
			opts = append(opts, v)
		}
		got <- opts
		fmt.Fprint(conn, "HTTP/1.1 204 No Content\r\n\r\n")
	})})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	opts := <-got
	want := []int{1, 1, frontKeepIdle, frontKeepInterval, frontKeepCount}
	if fmt.Sprint(opts) != fmt.Sprint(want) {
		t.Errorf("TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = %v, want %v", opts, want)
	}
	if a, s := f.Counts(); a != 1 || s != 1 {
		t.Errorf("accepted %d, served %d; want 1, 1", a, s)
	}
}
