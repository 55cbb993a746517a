package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"gatehouse.dev/gateway/internal/wsbench"
)

// TestModes runs each measuring mode briefly against a real echo backend and checks the
// name=value figures scripts/bench/run.sh reads from its output.
func TestModes(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	echo := &wsbench.Echo{}
	var badAuth, badKey atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every upgrade carries the header and a bearer token signed with -jwt-key.
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return key, nil }, jwt.WithAudience("bench")); !ok || err != nil {
			badAuth.Add(1)
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		if r.Header.Get("Ocp-Apim-Subscription-Key") != "k1" {
			badKey.Add(1)
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		echo.ServeHTTP(w, r)
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/echo"
	auth := []string{"-url", url, "-header", "Ocp-Apim-Subscription-Key: k1", "-jwt-key", base64.StdEncoding.EncodeToString(key)}

	for _, tc := range []struct {
		args   []string
		fields []string
	}{
		{[]string{"echo", "-conns", "3", "-warmup", "0s", "-duration", "150ms"}, []string{"msgs_per_s", "mb_per_s", "p50_ms", "p99_ms"}},
		{[]string{"echo", "-conns", "1", "-size", "2000000", "-warmup", "0s", "-duration", "150ms"}, []string{"mb_per_s"}},
		{[]string{"handshake", "-workers", "2", "-warmup", "0s", "-duration", "150ms"}, []string{"per_s", "p99_ms"}},
		{[]string{"idle", "-conns", "10", "-warmup-conns", "2", "-settle", "10ms", "-pid", strconv.Itoa(os.Getpid())}, []string{"kib_per_conn", "alive"}},
	} {
		if tc.args[0] == "idle" && runtime.GOOS != "linux" {
			continue // idle reads memory from /proc, which only Linux has
		}
		// A timed mode may measure nothing in 150 ms on a loaded machine (a 2 MB round trip
		// under -race): the window doubles until it measures something, up to 10 s.
		var out strings.Builder
		for d := 150 * time.Millisecond; ; d *= 2 {
			args := slices.Clone(tc.args)
			if i := slices.Index(args, "-duration"); i >= 0 {
				args[i+1] = d.String()
			}
			out.Reset()
			if err := run(context.Background(), append(args, auth...), &out); err != nil {
				t.Fatalf("wsload %v: %v", args, err)
			}
			if !slices.Contains(args, "-duration") || positive(out.String(), tc.fields) || d >= 10*time.Second {
				break
			}
		}
		if !positive(out.String(), tc.fields) {
			t.Errorf("wsload %s: %q, want %v positive numbers", tc.args[0], out.String(), tc.fields)
		}
	}
	if badAuth.Load()+badKey.Load() != 0 {
		t.Errorf("%d upgrades without a valid token, %d without the key", badAuth.Load(), badKey.Load())
	}
	if err := run(context.Background(), []string{"echo", "-url", "http://example.com"}, &strings.Builder{}); err == nil {
		t.Error("an http:// URL was accepted")
	}
}

// field returns the value of name=value in line.
func field(line, name string) string {
	for f := range strings.FieldsSeq(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	return fmt.Sprintf("<no %s>", name)
}

// positive reports whether every field of a wsload report is a positive number (kib_per_conn
// a number at all: idle memory may round to nothing).
func positive(report string, fields []string) bool {
	for _, f := range fields {
		n, err := strconv.ParseFloat(field(report, f), 64)
		if err != nil || (f != "kib_per_conn" && n <= 0) {
			return false
		}
	}
	return true
}
