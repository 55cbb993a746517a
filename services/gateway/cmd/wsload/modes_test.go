package main

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/wsbench"

	"gatehouse.dev/pkg/syncbuf"
	"gatehouse.dev/pkg/testwait"
)

// TestWSS writes certificates with the certs mode, serves an echo over TLS with them, and runs
// echo and handshake over wss://, checking what they report about the TLS they negotiated.
func TestWSS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := run(context.Background(), []string{"certs", "-dir", dir}, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert+key.pem"), filepath.Join(dir, "cert+key.pem")); err != nil {
		t.Errorf("cert+key.pem: %v", err)
	}
	srv := httptest.NewUnstartedServer(&wsbench.Echo{})
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()
	url := "wss" + strings.TrimPrefix(srv.URL, "https") + "/echo"
	ca := filepath.Join(dir, "ca.pem")

	for _, args := range [][]string{
		{"echo", "-conns", "2", "-warmup", "0s", "-duration", "100ms"},
		{"handshake", "-workers", "2", "-warmup", "0s", "-duration", "100ms"},
	} {
		var out strings.Builder
		if err := run(context.Background(), append(args, "-url", url, "-ca", ca), &out); err != nil {
			t.Fatalf("wsload %v: %v", args, err)
		}
		for name, want := range map[string]string{"tls": "1.3", "curve": "X25519", "resumed": "false"} {
			if got := field(out.String(), name); got != want {
				t.Errorf("wsload %s: %s=%s, want %s (%q)", args[0], name, got, want, out.String())
			}
		}
	}
	if err := run(context.Background(), []string{"handshake", "-url", url, "-duration", "100ms"}, &strings.Builder{}); err == nil {
		t.Error("a wss:// URL without -ca was accepted")
	}
}

// TestHold checks that hold reports once its connections are open, holds them, and checks
// every one when told to stop.
func TestHold(t *testing.T) {
	t.Parallel()
	echo := &wsbench.Echo{BufSize: 4096}
	srv := httptest.NewServer(echo)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"hold", "-url", "ws" + strings.TrimPrefix(srv.URL, "http"), "-conns", "5"}, &out)
	}()
	testwait.For(t, 10*time.Second, func() string {
		if !strings.Contains(out.String(), "opened=5 ") {
			return "no opened=5 line yet: " + out.String()
		}
		return ""
	})
	if got := echo.Open(); got != 5 {
		t.Errorf("echo holds %d connections, want 5", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "alive=5 of=5") || echo.Messages() != 5 {
		t.Errorf("hold printed %q and the echo saw %d messages; want alive=5 of=5 and 5", out.String(), echo.Messages())
	}
}

// fakeWrk writes a stand-in for wrk that records its arguments in dir/args and prints a
// recorded report with extra lines before Requests/sec.
func fakeWrk(t *testing.T, dir, extra string) string {
	t.Helper()
	wrk := filepath.Join(dir, "wrk")
	script := `#!/bin/sh
echo "$@" >>"` + filepath.Join(dir, "args") + `"
cat <<'OUT'
Running 1s test @ http://127.0.0.1:1/items/42
  2 threads and 64 connections
  Latency Distribution
     50%    1.50ms
     99%    4.00ms
  30000 requests in 1.00s, 6.00MB read
` + extra + `
Requests/sec:  30000.00
OUT
`
	if err := os.WriteFile(wrk, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrk
}

// TestREST runs the rest mode with a stand-in for wrk.
func TestREST(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out strings.Builder
	args := []string{"rest", "-url", "http://127.0.0.1:1/items/42", "-header", "Ocp-Apim-Subscription-Key: k1",
		"-warmup", "1s", "-duration", "1s", "-pid", strconv.Itoa(os.Getpid())}
	if err := run(context.Background(), append(args, "-wrk", fakeWrk(t, dir, "")), &out); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"requests": "30000", "per_s": "30000", "p50_ms": "1.500", "p99_ms": "4.000"} {
		if got := field(out.String(), name); got != want {
			t.Errorf("%s=%s, want %s (%q)", name, got, want, out.String())
		}
	}
	if _, err := strconv.ParseFloat(field(out.String(), "cpu_us_per_op"), 64); err != nil {
		t.Errorf("no CPU per request in %q", out.String())
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "args"))
	if lines := strings.Split(strings.TrimSpace(string(calls)), "\n"); len(lines) != 2 || strings.Contains(lines[0], "--latency") ||
		!strings.Contains(lines[1], "-t 2 -c 64 -d 1s --latency -H Ocp-Apim-Subscription-Key: k1 http://127.0.0.1:1/items/42") {
		t.Errorf("wrk was called with %q, want a warm-up, then a measured run with --latency and the header", calls)
	}

	refused := fakeWrk(t, t.TempDir(), "  Non-2xx or 3xx responses: 30000")
	if err := run(context.Background(), append(args, "-wrk", refused), &strings.Builder{}); err == nil {
		t.Error("a run of 401s was accepted")
	}
}
