//go:build linux

package wsproxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// recordingHandler answers every request with 401 (a refused upgrade) and says who served
// it and what it saw.
func recordingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		by := "net/http"
		if strings.HasSuffix(fmt.Sprintf("%T", w), "frontWriter") {
			by = "front"
		}
		w.Header().Set("X-Served-By", by)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Header-Host", fmt.Sprint(len(r.Header["Host"])))
		w.WriteHeader(http.StatusUnauthorized)
	})
}

// TestFrontBareLF: line ends of a bare LF are read by http.ReadRequest (and net/http) as
// line ends, which the front's framing (the first CRLFCRLF) and its count of Host lines must
// agree with: a second Host after a bare LF is net/http's 400, not a request served with the
// first Host; a request ended by LF LF is followed by the next one, which must be answered.
func TestFrontBareLF(t *testing.T) {
	_, addr := startFront(t, recordingHandler())
	t.Run("two Host headers, one after a bare LF", func(t *testing.T) {
		resp, err := http.ReadResponse(sendRaw(t, addr, "GET /ws HTTP/1.1\r\nHost: a\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d (served by %q, host %q), want net/http's 400", resp.StatusCode, resp.Header.Get("X-Served-By"), resp.Header.Get("X-Host"))
		}
	})
	t.Run("pipelined after an LF-ended upgrade request", func(t *testing.T) {
		br := sendRaw(t, addr, "GET /ws HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n\nGET /next HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
		for _, path := range []string{"/ws", "/next"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("response for %s: %v", path, err)
			}
			io.Copy(io.Discard, resp.Body)
			if got := resp.Header.Get("X-Path"); got != path {
				t.Fatalf("response for %s answers %q", path, got)
			}
		}
	})
}

// TestFrontRequestHostHeader: as net/http's server, the front moves Host out of the
// request's Header (the handler copies Header to the backend and to policies).
func TestFrontRequestHostHeader(t *testing.T) {
	_, addr := startFront(t, recordingHandler())
	resp, err := http.ReadResponse(sendRaw(t, addr, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Served-By") != "front" || resp.Header.Get("X-Header-Host") != "0" || resp.Header.Get("X-Host") != "a" {
		t.Errorf("served by %q: Host %q, %s Host values in Header; want the front's, \"a\", 0",
			resp.Header.Get("X-Served-By"), resp.Header.Get("X-Host"), resp.Header.Get("X-Header-Host"))
	}
}
