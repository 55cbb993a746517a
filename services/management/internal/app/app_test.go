package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/management/internal/api"
	"gatehouse.dev/management/internal/app"
	"gatehouse.dev/management/internal/auth"
	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/mgmttest"
	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/management/internal/outbox"
	"gatehouse.dev/pkg/bus"
)

// freeAddr returns a local address nothing listens on (until someone takes it).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// readyz returns the status and body of management's /readyz.
func readyz(t *testing.T, env *mgmttest.Env) (int, api.Readiness) {
	t.Helper()
	resp, err := env.Client.Get(env.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r api.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("/readyz body: %v", err)
	}
	return resp.StatusCode, r
}

// TestNATSOutage starts management while NATS is unreachable: it comes up, takes an ARM
// write, says in /readyz that NATS is down and the change waits in the outbox while it stays
// ready, and publishes the change once a NATS server appears.
func TestNATSOutage(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dbURL, drop, err := dbtest.Setup(ctx, "app", func(context.Context, string) error { return nil }) // app.New migrates
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	natsAddr := freeAddr(t)
	natsAuth, err := natsembed.NewAuth()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(ctx, app.Config{
		DatabaseURL:       dbURL,
		NATSURL:           "nats://" + natsAddr,
		NATSReconnectWait: 50 * time.Millisecond,
		NATSUser:          natsAuth.User, NATSPassword: natsAuth.Password,
		NATSSystemUser: natsAuth.SystemUser, NATSSystemPassword: natsAuth.SystemPassword,
		NATSCalloutIssuerSeed: natsAuth.IssuerSeed, NATSCalloutXKeySeed: natsAuth.XKeySeed,
		Listener:      ln,
		EncryptionKey: mgmttest.EncryptionKey,
		Auth:          auth.Config{AdminToken: mgmttest.AdminToken},
		Relay:         []outbox.Option{outbox.WithRetryBackoff(10*time.Millisecond, 100*time.Millisecond)},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New with NATS unreachable: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	env := &mgmttest.Env{URL: a.URL(), Client: &http.Client{Timeout: 30 * time.Second}, Token: mgmttest.AdminToken}

	// Management takes the writes although NATS is away.
	svc := env.CreateService(t, "sub1", "rg1", "svc")
	env.Must(t, []int{201}, "PUT", svc+"/apis/chat", map[string]any{"properties": map[string]any{
		"displayName": "Chat", "type": "websocket", "serviceUrl": "wss://chat.example.com", "path": "chat"}})
	status, r := readyz(t, env)
	if status != http.StatusOK || !r.Ready {
		t.Errorf("/readyz during the outage: %d %+v, want 200 and ready (writes work)", status, r)
	}
	m := regexp.MustCompile(`^disconnected, (\d+) changes waiting in the outbox$`).FindStringSubmatch(r.Checks["nats"])
	if m == nil {
		t.Fatalf("/readyz nats check %q, want \"disconnected, N changes waiting in the outbox\"", r.Checks["nats"])
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("%d changes waiting in the outbox, want the API's", n)
	}
	if r.Checks["database"] != "ok" {
		t.Errorf("/readyz database check %q, want ok", r.Checks["database"])
	}
	select {
	case err := <-done:
		t.Fatalf("management stopped during the outage: %v", err)
	default:
	}

	// NATS appears where management looks for it; the change waiting in the outbox arrives.
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: natsAddr, Auth: &natsAuth})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	select {
	case <-a.StreamsUp():
	case <-time.After(30 * time.Second):
		t.Fatal("management did not set up its streams within 30 s of NATS starting")
	}
	nc, err := nats.Connect(ns.ClientURL(), ns.UserInfo())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, bus.ConfigStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{bus.ConfigSubjects}})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("no change on %s after NATS came back: %v", bus.ConfigStream, err)
	}
	rev, err := bus.ParseRevision(msg.Headers().Get(bus.HeaderRevision))
	if err != nil || rev < 1 || msg.Headers().Get(bus.HeaderService) == "" {
		t.Errorf("change headers %v: revision %d (%v), want a service and a revision", msg.Headers(), rev, err)
	}
	if want := bus.ConfigSubject(msg.Headers().Get(bus.HeaderService)); msg.Subject() != want {
		t.Errorf("change on %s, want %s", msg.Subject(), want)
	}
	if _, r := readyz(t, env); !regexp.MustCompile(`^connected`).MatchString(r.Checks["nats"]) {
		t.Errorf("/readyz nats check %q once NATS is back, want connected", r.Checks["nats"])
	}
}
