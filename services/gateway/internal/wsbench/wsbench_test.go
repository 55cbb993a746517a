package wsbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"gatehouse.dev/gateway/internal/wsproxy/frame"

	"gatehouse.dev/pkg/testwait"
)

// startEcho serves an Echo on a real socket and returns it with its ws:// URL.
func startEcho(t *testing.T) (*Echo, Target) {
	t.Helper()
	e := &Echo{}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	tg, err := ParseTarget("ws"+strings.TrimPrefix(srv.URL, "http")+"/echo?x=1", []string{"X-Bench: yes"})
	if err != nil {
		t.Fatal(err)
	}
	return e, tg
}

// settled waits until no connection is open at the echo, so that its counters are final.
func settled(t *testing.T, e *Echo) {
	t.Helper()
	testwait.For(t, 10*time.Second, func() string {
		if n := e.Open(); n != 0 {
			return fmt.Sprintf("%d connections still open at the echo", n)
		}
		return ""
	})
}

// TestRunEchoCounts checks that the load generator's counts agree with what the echo backend
// saw, for small messages and for messages larger than every buffer on the way.
func TestRunEchoCounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		conns, size int
	}{
		{"small", 8, 256},
		{"large", 2, 300 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The window grows until it measures a round trip: a loaded machine may need more
			// than 300 ms for one of 300 KiB under -race. Each try has an echo of its own.
			var (
				e   *Echo
				res EchoResult
				win = 300 * time.Millisecond
			)
			for {
				var tg Target
				e, tg = startEcho(t)
				var err error
				res, err = RunEcho(context.Background(), EchoOptions{Target: tg, Conns: tc.conns, Size: tc.size,
					Window: Window{Warmup: 50 * time.Millisecond, Duration: win}})
				if err != nil {
					t.Fatal(err)
				}
				settled(t, e)
				if res.Count > 0 || win >= 10*time.Second {
					break
				}
				win *= 2
			}
			if res.Errors != 0 || res.Conns != tc.conns {
				t.Fatalf("errors %d (%v), conns %d; want 0 errors and %d conns", res.Errors, res.FirstErr, res.Conns, tc.conns)
			}
			if res.Total != e.Messages() || e.Bytes() != res.Total*int64(tc.size) {
				t.Errorf("client counted %d round trips of %d bytes; echo counted %d messages, %d bytes",
					res.Total, tc.size, e.Messages(), e.Bytes())
			}
			if e.Upgrades() != int64(tc.conns) {
				t.Errorf("echo answered %d upgrades, want %d", e.Upgrades(), tc.conns)
			}
			if res.Count == 0 || res.Count > res.Total {
				t.Errorf("measured %d of %d round trips, want some and at most all", res.Count, res.Total)
			}
			if want := float64(res.Count) / win.Seconds(); res.PerSecond != want {
				t.Errorf("PerSecond = %v, want %v", res.PerSecond, want)
			}
			if !(0 < res.P50 && res.P50 <= res.P99 && res.P99 <= res.Max) {
				t.Errorf("p50 %v, p99 %v, max %v: want 0 < p50 ≤ p99 ≤ max", res.P50, res.P99, res.Max)
			}
		})
	}
}

// TestRunHandshakesCounts checks that every upgrade the load generator counts was answered
// by the backend, and that refusals are errors, not upgrades.
func TestRunHandshakesCounts(t *testing.T) {
	t.Parallel()
	// The window grows until it measures an upgrade (a loaded machine may finish none in 200 ms
	// under -race); each try has an echo of its own.
	var (
		e   *Echo
		res Measured
		err error
	)
	for win := 200 * time.Millisecond; ; win *= 2 {
		var tg Target
		e, tg = startEcho(t)
		res, err = RunHandshakes(context.Background(), HandshakeOptions{Target: tg, Workers: 4, Window: Window{Duration: win}})
		if err != nil {
			t.Fatal(err)
		}
		settled(t, e)
		if res.Count > 0 || win >= 10*time.Second {
			break
		}
	}
	if res.Errors != 0 || res.Total == 0 || res.Total != e.Upgrades() || res.Count == 0 || res.Count > res.Total {
		t.Errorf("client: %d upgrades, %d measured, %d errors (%v); echo: %d upgrades", res.Total, res.Count, res.Errors, res.FirstErr, e.Upgrades())
	}

	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"statusCode":401}`, http.StatusUnauthorized)
	}))
	defer refusing.Close()
	rt, _ := ParseTarget("ws"+strings.TrimPrefix(refusing.URL, "http"), nil)
	res, err = RunHandshakes(context.Background(), HandshakeOptions{Target: rt, Workers: 2, Window: Window{Duration: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var se *StatusError
	if res.Total != 0 || res.Errors == 0 || !errors.As(res.FirstErr, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("against a 401: %d upgrades, %d errors, first %v; want none, some, a 401", res.Total, res.Errors, res.FirstErr)
	}
}

// TestIdle checks that idle connections are open at the backend until closed and answer the
// liveness check.
func TestIdle(t *testing.T) {
	t.Parallel()
	e, tg := startEcho(t)
	idle, err := OpenIdle(context.Background(), tg, 20, 4)
	if err != nil {
		t.Fatal(err)
	}
	// The echo counts a connection before its 101 leaves.
	if got := e.Open(); got != 20 {
		t.Errorf("echo holds %d connections, want 20", got)
	}
	if got := idle.Alive(context.Background(), 5*time.Second); got != 20 {
		t.Errorf("Alive = %d, want 20", got)
	}
	idle.Close()
	settled(t, e)
	if e.Messages() != 20 {
		t.Errorf("echo saw %d messages, want the 20 liveness checks", e.Messages())
	}
}

// TestReceiveEchoMismatch checks that an echo that differs from what was sent is an error.
func TestReceiveEchoMismatch(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"))
		// Answer the first frame with a payload of the same length and one byte changed.
		h, payload := readFrame(t, brw.Reader)
		payload[len(payload)-1] ^= 1
		out, _ := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: h.Opcode}, payload)
		_, _ = conn.Write(out)
		_, _ = brw.Reader.ReadByte() // until the client goes
	}))
	defer srv.Close()
	tg, _ := ParseTarget("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	c, err := Dial(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.RoundTrip(c.NewMessage([]byte("hello, echo"))); !errors.Is(err, ErrEchoMismatch) {
		t.Errorf("RoundTrip = %v, want ErrEchoMismatch", err)
	}
}

// readFrame reads one masked frame and returns its header and unmasked payload.
func readFrame(t *testing.T, r *bufio.Reader) (frame.Header, []byte) {
	p, err := r.Peek(2)
	if err != nil {
		t.Error(err)
		return frame.Header{}, nil
	}
	p, _ = r.Peek(frame.HeaderLen(p[0], p[1]))
	h, n, err := frame.Parse(p)
	if err != nil {
		t.Error(err)
		return frame.Header{}, nil
	}
	r.Discard(n)
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Error(err)
	}
	frame.MaskBytes(h.Mask, 0, payload)
	return h, payload
}

func TestReport(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		"a\tmsgs_per_s\t(a) messages/s\tdirect\t1\t40000",
		"a\tmsgs_per_s\t(a) messages/s\tnginx\t1\t20000",
		"a\tmsgs_per_s\t(a) messages/s\tnginx\t2\t10000",
		"a\tmsgs_per_s\t(a) messages/s\tnginx\t3\t30000",
		"a\tmsgs_per_s\t(a) messages/s\tgatehouse\t1\t25000",
		"a\tmsgs_per_s\t(a) messages/s\tgatehouse\t2\t11000",
		"a\tmsgs_per_s\t(a) messages/s\tgatehouse\t3\t39000",
		"a\tmsgs_per_s\t(a) messages/s\tgatehouse-goroutine\t1\t15000",
		"c\tkib_per_conn\t(c) KiB per connection\tgatehouse\t1\t6.5",
		"",
	}, "\n")
	samples, err := ReadSamples(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteReport(&b, samples); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// Gatehouse's median is 25,000 and nginx's 20,000, but within each run Gatehouse made
	// 1.25×, 1.10× and 1.30× nginx: the ratio quoted is the median of those, 1.25×.
	for _, want := range []string{
		"| direct (no proxy) | Gatehouse | Gatehouse (goroutine engine) | nginx |",
		"| (a) messages/s | 40,000 (2.00× nginx) | 25,000 (1.25× nginx, 0.62× direct) | 15,000 (0.75× nginx, 0.38× direct) | 20,000 (0.50× direct) |",
		"| (c) KiB per connection | — | 6.50 | — | — |",
		"| (a) messages/s ≥ 1.1× nginx | 25,000 (1.25× nginx) | yes |",
		"| (c) ≤ 6.5 KiB per idle proxied connection | 6.50 | yes |",
		"| (a) messages/s | nginx | 20,000, 10,000, 30,000 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "(e)") {
		t.Errorf("report has a goal for a figure that was not measured:\n%s", out)
	}
	if _, err := ReadSamples(strings.NewReader("a\tb\tc\n")); err == nil {
		t.Error("ReadSamples accepted a line of 3 fields")
	}
}

func TestTreeRSS(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("TreeRSS reads /proc, which only Linux has")
	}
	rss, procs, err := TreeRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || procs < 1 {
		t.Errorf("TreeRSS(self) = %d bytes in %d processes, want at least 1 MiB in 1", rss, procs)
	}
	if _, _, err := TreeRSS(1 << 30); err == nil {
		t.Error("TreeRSS of a process that does not exist did not fail")
	}
}

// TestAwaitClose checks that AwaitClose returns the code of the server's close frame, skipping
// what comes before it, and an error when the connection ends without one.
func TestAwaitClose(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"))
		if r.URL.Path == "/eof" {
			return
		}
		out, _ := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("before the close"))
		out, _ = frame.AppendFrame(out, frame.Header{Fin: true, Opcode: frame.OpClose}, []byte{0x03, 0xf0, 'r', 'e', 'v', 'o', 'k', 'e', 'd'})
		_, _ = conn.Write(out)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path    string
		code    int
		wantErr bool
	}{
		{"/close", 1008, false},
		{"/eof", 0, true},
	} {
		tg, _ := ParseTarget("ws"+strings.TrimPrefix(srv.URL, "http")+tc.path, nil)
		c, err := Dial(context.Background(), tg)
		if err != nil {
			t.Fatal(err)
		}
		code, err := c.AwaitClose(context.Background())
		c.Close()
		if code != tc.code || (err != nil) != tc.wantErr {
			t.Errorf("%s: AwaitClose = %d, %v; want %d, error %v", tc.path, code, err, tc.code, tc.wantErr)
		}
	}
}

// TestParseWrk reads wrk's report, with and without error lines.
func TestParseWrk(t *testing.T) {
	t.Parallel()
	const clean = `Running 2s test @ http://127.0.0.1:19301/items/42
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.81ms    5.36ms  59.76ms   94.46%
    Req/Sec    17.96k     5.76k   34.85k    75.00%
  Latency Distribution
     50%  910.00us
     75%    2.81ms
     90%    5.22ms
     99%   31.82ms
  72183 requests in 2.07s, 14.39MB read
Requests/sec:  34920.70
Transfer/sec:      6.96MB
`
	got, err := ParseWrk(clean)
	if err != nil {
		t.Fatal(err)
	}
	want := WrkResult{Requests: 72183, PerSecond: 34920.70, P50: 910 * time.Microsecond, P99: 31820 * time.Microsecond}
	if got != want {
		t.Errorf("ParseWrk = %+v, want %+v", got, want)
	}
	errs := strings.Replace(clean, "Requests/sec:", "  Socket errors: connect 1, read 2, write 0, timeout 3\n  Non-2xx or 3xx responses: 72183\nRequests/sec:", 1)
	if got, err = ParseWrk(errs); err != nil || got.Non2xx != 72183 || got.SocketErrors != 6 {
		t.Errorf("ParseWrk with errors = %+v, %v; want 72183 non-2xx and 6 socket errors", got, err)
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("ParseWrk accepted a report without a request count")
	}
}
