package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

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
		var out strings.Builder
		if err := run(context.Background(), append(tc.args, auth...), &out); err != nil {
			t.Fatalf("wsload %v: %v", tc.args, err)
		}
		for _, f := range tc.fields {
			v := field(out.String(), f)
			if n, err := strconv.ParseFloat(v, 64); err != nil || (f != "kib_per_conn" && n <= 0) {
				t.Errorf("wsload %s: %s=%q in %q, want a positive number", tc.args[0], f, v, out.String())
			}
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
