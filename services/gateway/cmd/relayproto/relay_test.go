package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse.dev/gateway/internal/wsbench"
	"gatehouse.dev/gateway/internal/wsproxy/frame"
)

// proxy is a relay under test with the events it reports.
type proxy struct {
	r       *relay
	addr    string
	ended   chan struct{}
	stalled chan struct{}
}

// startRelay runs a relay with two loops in front of backend until the test ends.
func startRelay(t *testing.T, backend string, cfg Config) *proxy {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", backend)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Backend = a
	if cfg.Queue == 0 {
		cfg.Queue = 64 << 10
	}
	if cfg.Hold == 0 {
		cfg.Hold = 4 << 20
	}
	cfg.Loops = 2
	p := &proxy{ended: make(chan struct{}, 16), stalled: make(chan struct{}, 1)}
	up := make(chan struct{})
	h := hooks{
		ready: func(r *relay, addr string) { p.r, p.addr = r, addr; close(up) },
		ended: func() { p.ended <- struct{}{} },
		stalled: func() {
			select {
			case p.stalled <- struct{}{}:
			default:
			}
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", cfg, slog.New(slog.NewTextHandler(t.Output(), nil)), h, io.Discard)
	}()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return p
}

func (p *proxy) target(t *testing.T) wsbench.Target {
	t.Helper()
	tg, err := wsbench.ParseTarget("ws://"+p.addr+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestRelayEcho(t *testing.T) {
	t.Parallel()
	echo := httptest.NewServer(&wsbench.Echo{})
	defer echo.Close()
	p := startRelay(t, echo.Listener.Addr().String(), Config{})

	c, err := wsbench.Dial(t.Context(), p.target(t))
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 125, 126, 256, 65535, 65536, 1 << 20, 3 << 20}
	var sent int64
	for _, n := range sizes {
		m := c.NewMessage(bytes.Repeat([]byte{byte(n)}, n))
		if err := c.RoundTrip(m); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		sent += int64(frame.Header{Masked: true, Length: int64(n)}.Len() + n)
	}
	c.Close()
	<-p.ended
	got := p.r.Totals()
	want := Totals{
		Sessions: 1,
		Messages: [2]int64{int64(len(sizes)), int64(len(sizes))},
		Bytes:    [2]int64{sent, sent - 4*int64(len(sizes))}, // echoes come back unmasked
		Stalls:   got.Stalls,                                 // however the scheduling went
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
}

// rawUpgrade opens a connection to addr and sends an upgrade request; it returns the
// connection and the response.
func rawUpgrade(t *testing.T, addr string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, res
}

func TestRelayRefusals(t *testing.T) {
	t.Parallel()
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close) // after the parallel subtests

	for _, tc := range []struct {
		name    string
		backend string
		status  int
		json    bool
	}{
		{"backend unreachable", goneAddr, http.StatusBadGateway, true},
		{"backend answers 404", notFound.Listener.Addr().String(), http.StatusNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startRelay(t, tc.backend, Config{})
			conn, _, res := rawUpgrade(t, p.addr)
			body, err := io.ReadAll(io.LimitReader(res.Body, 1<<10))
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", res.StatusCode, tc.status, body)
			}
			if tc.json {
				var e struct {
					StatusCode int    `json:"statusCode"`
					Message    string `json:"message"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.StatusCode != tc.status || e.Message == "" {
					t.Errorf("body %q: want {statusCode,message} JSON (%v)", body, err)
				}
			}
			conn.Close()
			<-p.ended
			if got := p.r.Totals(); got.Sessions != 1 || got.Refused != 1 {
				t.Errorf("totals %+v: want one session, refused", got)
			}
		})
	}
}

func TestRelayClosesOnUnmaskedClientFrame(t *testing.T) {
	t.Parallel()
	echo := httptest.NewServer(&wsbench.Echo{})
	defer echo.Close()
	p := startRelay(t, echo.Listener.Addr().String(), Config{})
	conn, br, res := rawUpgrade(t, p.addr)
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	unmasked, _ := frame.AppendFrame(nil, frame.Header{Fin: true, Opcode: frame.OpText}, []byte("hello"))
	if _, err := conn.Write(unmasked); err != nil {
		t.Fatal(err)
	}
	if n, err := br.Read(make([]byte, 64)); err == nil {
		t.Fatalf("read %d bytes after an unmasked frame, want the connection closed", n)
	}
	<-p.ended
}

// stubbornBackend answers every upgrade with 101 and reads nothing more until release is
// closed; then it reads one frame of size payload bytes and reports it on got.
func stubbornBackend(t *testing.T, release <-chan struct{}, got chan<- error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- err
			return
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		if _, err := conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")); err != nil {
			got <- err
			return
		}
		<-release
		hb := make([]byte, frame.MaxHeaderLen)
		if _, err := io.ReadFull(br, hb[:2]); err != nil {
			got <- err
			return
		}
		hl := frame.HeaderLen(hb[0], hb[1])
		if _, err := io.ReadFull(br, hb[2:hl]); err != nil {
			got <- err
			return
		}
		h, _, err := frame.Parse(hb[:hl])
		if err != nil {
			got <- err
			return
		}
		_, err = io.CopyN(io.Discard, br, h.Length)
		got <- err
	}()
	return ln.Addr().String()
}

func TestRelayStallsAndResumes(t *testing.T) {
	t.Parallel()
	release, got := make(chan struct{}), make(chan error, 1)
	p := startRelay(t, stubbornBackend(t, release, got), Config{Queue: 16 << 10, Hold: 64 << 20})
	c, err := wsbench.Dial(t.Context(), p.target(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := c.NewMessage(make([]byte, 16<<20)) // more than the loopback buffers take
	sent := make(chan error, 1)
	go func() { sent <- c.Send(m) }()
	<-p.stalled
	close(release)
	if err := <-got; err != nil {
		t.Fatalf("the backend did not get the whole frame: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

func TestRelayDropsWhenAStalledSideHoldsTooMuch(t *testing.T) {
	t.Parallel()
	release, got := make(chan struct{}), make(chan error, 1)
	defer close(release)
	p := startRelay(t, stubbornBackend(t, release, got), Config{Queue: 16 << 10, Hold: 1 << 20})
	conn, _, res := rawUpgrade(t, p.addr)
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	// One endless frame, written until the relay gives up on it.
	head, _ := frame.AppendHeader(nil, frame.Header{Opcode: frame.OpBinary, Masked: true, Length: 1 << 40})
	chunk := make([]byte, 64<<10)
	_, err := conn.Write(head)
	for sent := 0; err == nil; sent += len(chunk) {
		if sent > 1<<30 {
			t.Fatal("sent 1 GiB to a backend that reads nothing, want the relay to close the session")
		}
		_, err = conn.Write(chunk)
	}
	<-p.ended
	if got := p.r.Totals(); got.Dropped != 1 {
		t.Errorf("totals %+v: want one session dropped", got)
	}
}
