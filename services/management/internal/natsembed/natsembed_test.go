package natsembed

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/pkg/syncbuf"
)

// publishOne creates stream "T" on s if needed and publishes one message to it.
func publishOne(t *testing.T, ctx context.Context, s *Server) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), s.UserInfo())
	if err != nil {
		t.Fatalf("connect %s: %v", s.ClientURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("hello")); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// streamMsgs returns how many messages stream "T" holds on s.
func streamMsgs(t *testing.T, ctx context.Context, s *Server) uint64 {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), s.UserInfo())
	if err != nil {
		t.Fatalf("connect %s: %v", s.ClientURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream T: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestStartRandomPortWithJetStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	s, err := Start(ctx, Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	url := s.ClientURL()
	if !regexp.MustCompile(`^nats://127\.0\.0\.1:\d+$`).MatchString(url) || strings.HasSuffix(url, ":4222") || strings.HasSuffix(url, ":0") {
		t.Errorf("ClientURL = %q, want nats://127.0.0.1:<random port>", url)
	}
	storeDir := s.tempDir
	if _, err := os.Stat(storeDir); err != nil {
		t.Fatalf("temporary store dir: %v", err)
	}

	publishOne(t, ctx, s)
	if got := streamMsgs(t, ctx, s); got != 1 {
		t.Errorf("stream holds %d messages, want 1", got)
	}

	nc, err := nats.Connect(url, s.UserInfo(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s.Shutdown()
	s.Shutdown() // harmless twice
	if err := nc.Flush(); err == nil {
		t.Errorf("client still connected after Shutdown")
	}
	if _, err := os.Stat(storeDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary store dir after Shutdown: stat err = %v, want not exist", err)
	}
}

func TestStoreDirOutlivesServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()

	s, err := Start(ctx, Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	publishOne(t, ctx, s)
	s.Shutdown()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("caller's store dir after Shutdown: %v", err)
	}

	s, err = Start(ctx, Options{Listen: "127.0.0.1:0", StoreDir: dir})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s.Shutdown()
	if got := streamMsgs(t, ctx, s); got != 1 {
		t.Errorf("after restart the stream holds %d messages, want 1", got)
	}
}

func TestStartFailsFastOnBusyPort(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	var logs syncbuf.Buffer
	start := time.Now()
	s, err := Start(ctx, Options{Listen: l.Addr().String(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err == nil {
		s.Shutdown()
		t.Fatalf("Start on busy %s succeeded", l.Addr())
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Start took %v to fail, want well under its 10s start timeout", elapsed)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("no error logged; logs:\n%s", logs.String())
	}
}

func TestStartRejectsBadListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		listen string
	}{
		{name: "no port", listen: "127.0.0.1"},
		{name: "port not a number", listen: "127.0.0.1:nats"},
		{name: "port out of range", listen: "127.0.0.1:70000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := Start(t.Context(), Options{Listen: tc.listen})
			if err == nil {
				s.Shutdown()
				t.Fatalf("Start(%q) succeeded, want error", tc.listen)
			}
		})
	}
}
