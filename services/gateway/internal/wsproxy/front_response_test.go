//go:build linux

package wsproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFrontRefusalAsNetHTTP: a refused upgrade the front answers means what net/http's
// answer to the same handler means: status, headers, body, and the connection still
// framed for the next request.
func TestFrontRefusalAsNetHTTP(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "next")
			return
		}
		switch r.URL.Path {
		case "/599":
			w.WriteHeader(599)
			io.WriteString(w, "odd")
		case "/te":
			w.Header().Set("Transfer-Encoding", "chunked")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "hello")
		case "/204":
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNotModified)
		}
	})
	_, frontAddr := startFront(t, h)
	plain := httptest.NewServer(h)
	defer plain.Close()
	exchange := func(addr, path string) string {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", path)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "error: " + err.Error()
		}
		body, err := io.ReadAll(resp.Body)
		out := fmt.Sprintf("%s body=%q err=%v", resp.Status, body, err)
		if resp.Close || err != nil {
			return out + " closed"
		}
		fmt.Fprintf(conn, "GET /n HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			return out + " next: " + err.Error()
		}
		body, _ = io.ReadAll(resp.Body)
		return out + " next: " + strconv.Itoa(resp.StatusCode) + " " + string(body)
	}
	for _, path := range []string{"/599", "/te", "/204", "/304"} {
		want := exchange(strings.TrimPrefix(plain.URL, "http://"), path)
		got := exchange(frontAddr, path)
		if got != want {
			t.Errorf("%s: the front: %s; net/http: %s", path, got, want)
		}
	}
}
