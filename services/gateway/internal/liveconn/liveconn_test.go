package liveconn_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/liveconn"
	"gatehouse.dev/gateway/internal/traffic"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
	"gatehouse.dev/pkg/pipeline"
	"gatehouse.dev/pkg/testwait"
)

const (
	svcARM    = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ApiManagement/service/svc"
	serviceID = "svc-id"
	nodeID    = "node-1"
	aliceKey  = "alice-secret-key"
	bobKey    = "bob-secret-key"
)

type obj = map[string]any

func ent(t *testing.T, kind, parent, name string, props obj) configwire.Entity {
	t.Helper()
	raw, err := json.Marshal(props)
	if err != nil {
		t.Fatal(err)
	}
	return configwire.Entity{Kind: kind, Parent: parent, Name: name, Properties: raw, Revision: 1}
}

// snapshot is gateway gw1 serving WebSocket APIs chat and news, proxied to backend, with
// subscriptions alice and bob to every API.
func snapshot(t *testing.T, backend string) configwire.Snapshot {
	t.Helper()
	ents := []configwire.Entity{ent(t, configwire.KindGateway, "", "gw1", obj{"locationData": obj{"name": "here"}})}
	for _, name := range []string{"chat", "news"} {
		ents = append(ents,
			ent(t, configwire.KindAPI, "", name, obj{"displayName": name, "path": name, "type": "websocket",
				"serviceUrl": backend + "/" + name, "protocols": []string{"ws"}}),
			ent(t, configwire.KindOperation, "apis/"+name, "onHandshake", obj{"displayName": "onHandshake", "method": "GET", "urlTemplate": "/"}),
			configwire.Entity{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: name, Revision: 1})
	}
	for name, key := range map[string]string{"alice": aliceKey, "bob": bobKey} {
		sub := ent(t, configwire.KindSubscription, "", name, obj{"scope": svcARM + "/apis", "state": "active",
			"displayName": name, "ownerId": svcARM + "/users/u-" + name, "createdDate": "2024-01-02T03:04:05Z"})
		sub.KeyHashes = []string{configwire.KeyHash(key)}
		ents = append(ents, sub)
	}
	return configwire.Snapshot{ServiceID: serviceID, Service: "svc", Gateway: "gw1", Revision: 1, Entities: ents}
}

// echoBackend echoes every data message.
func echoBackend(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

type env struct {
	handler *traffic.Handler
	url     string // ws://host of the gateway
	nc      *nats.Conn

	mu      sync.Mutex
	dropped []string // reasons of the requests the Responder dropped
}

// newEnv starts a gateway handler, an in-process NATS server and a Responder subscribed on it.
func newEnv(t *testing.T) *env {
	t.Helper()
	var cfg atomic.Pointer[compiled.Config]
	c, err := compiled.NewBuilder(pipeline.Env{}).Load(snapshot(t, echoBackend(t)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store(c)
	h := traffic.New(&cfg, traffic.Options{Node: nodeID, Log: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("NATS not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := &env{handler: h, url: "ws" + strings.TrimPrefix(srv.URL, "http"), nc: nc}
	r := liveconn.New(h.Connections(), liveconn.Options{NodeID: nodeID, Gateway: func() string { return cfg.Load().Gateway },
		Verifier: func() *configwire.Verifier { return testVerifier }, Key: func() (configwire.NodeKey, bool) { return testNodeKey, true },
		Dropped: func(reason string) {
			e.mu.Lock()
			e.dropped = append(e.dropped, reason)
			e.mu.Unlock()
		}})
	if _, err := r.Subscribe(nc, serviceID); err != nil {
		t.Fatal(err)
	}
	return e
}

// session is a client session through the gateway.
type session struct {
	c  *websocket.Conn
	id string // correlation id
}

func (e *env) open(t *testing.T, api, key string) *session {
	t.Helper()
	before := e.handler.Connections().Len()
	c, resp, err := websocket.DefaultDialer.Dial(e.url+"/"+api, http.Header{"Ocp-Apim-Subscription-Key": {key}})
	if err != nil {
		t.Fatalf("dial %s: %v", api, err)
	}
	t.Cleanup(func() { c.Close() })
	// The client may see the 101 before the gateway registers the session.
	testwait.Until(t, 5*time.Second, "the session registered", func() bool { return e.handler.Connections().Len() > before })
	return &session{c: c, id: resp.Header.Get(traffic.HeaderCorrelationID)}
}

// echo sends msg and reads it back.
func (s *session) echo(t *testing.T, msg string) {
	t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := s.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := s.c.ReadMessage(); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// readClose reads until the close frame and returns its code and text.
func (s *session) readClose(t *testing.T) (int, string) {
	t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := s.c.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code, ce.Text
			}
			t.Fatalf("read: %v", err)
		}
	}
}

// ask sends req as management does, signed, and returns the raw reply, whose node
// authentication it checks.
func (e *env) ask(t *testing.T, req configwire.ConnectionsRequest) (configwire.ConnectionsReply, string) {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.request(t, body, func(subject, inbox string) string { return testSigner.SignRequest(subject, inbox, body) }, 5*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if err := testNodeKey.Verify(m.Subject, m.Data, m.Header.Get(bus.HeaderNodeAuth)); err != nil {
		t.Errorf("reply authentication: %v", err)
	}
	var rep configwire.ConnectionsReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		t.Fatalf("reply %s: %v", m.Data, err)
	}
	return rep, string(m.Data)
}

func ids(rep configwire.ConnectionsReply) []string {
	var out []string
	for _, c := range rep.Connections {
		out = append(out, c.ID)
	}
	return out
}

func TestListAndClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := time.Now().UTC()
	a1 := e.open(t, "chat", aliceKey)
	a2 := e.open(t, "news", aliceKey)
	b1 := e.open(t, "chat", bobKey)
	a1.echo(t, "hello")

	list := func(f configwire.ConnectionFilter) configwire.ConnectionsReply {
		t.Helper()
		rep, raw := e.ask(t, configwire.ConnectionsRequest{Op: configwire.ConnectionsList, Filter: f})
		for _, secret := range []string{aliceKey, bobKey} {
			if strings.Contains(raw, secret) {
				t.Fatalf("the reply holds a subscription key: %s", raw)
			}
		}
		return rep
	}

	all := list(configwire.ConnectionFilter{})
	want := configwire.ConnectionsReply{Node: nodeID, Gateway: "gw1", Connections: []configwire.Connection{
		{ID: a1.id, API: "chat", Subscription: "alice", ClientIP: "127.0.0.1", MessagesIn: 1, MessagesOut: 1,
			BytesIn: int64(len("hello")), BytesOut: int64(len("hello"))}, // payload bytes: one echo
		{ID: a2.id, API: "news", Subscription: "alice", ClientIP: "127.0.0.1"},
		{ID: b1.id, API: "chat", Subscription: "bob", ClientIP: "127.0.0.1"},
	}}
	opts := cmp.Options{cmpopts.IgnoreFields(configwire.Connection{}, "Since")}
	if diff := cmp.Diff(want, all, opts); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	for _, c := range all.Connections {
		if c.Since.Before(start.Add(-time.Second)) || c.Since.After(time.Now()) {
			t.Errorf("%s: since %v, want after %v", c.ID, c.Since, start)
		}
	}

	for _, tc := range []struct {
		name   string
		filter configwire.ConnectionFilter
		want   []string
	}{
		{"by api, any case", configwire.ConnectionFilter{API: "CHAT"}, []string{a1.id, b1.id}},
		{"by subscription", configwire.ConnectionFilter{Subscription: "alice"}, []string{a1.id, a2.id}},
		{"by api and subscription", configwire.ConnectionFilter{API: "chat", Subscription: "Bob"}, []string{b1.id}},
		{"by id", configwire.ConnectionFilter{ID: a2.id}, []string{a2.id}},
		{"by this node", configwire.ConnectionFilter{Node: nodeID}, []string{a1.id, a2.id, b1.id}},
		{"by another node", configwire.ConnectionFilter{Node: "node-2"}, nil},
	} {
		if got := ids(list(tc.filter)); !cmp.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}

	// A close that names no session or subscription is refused and closes nothing.
	if rep, _ := e.ask(t, configwire.ConnectionsRequest{Op: configwire.ConnectionsClose, Code: 1008}); rep.Error == "" || rep.Closed != 0 {
		t.Errorf("close of everything: %+v, want refused", rep)
	}

	closeReq := func(f configwire.ConnectionFilter) configwire.ConnectionsReply {
		t.Helper()
		rep, _ := e.ask(t, configwire.ConnectionsRequest{Op: configwire.ConnectionsClose, Filter: f,
			Code: configwire.AdminCloseCode, Reason: configwire.AdminCloseReason})
		return rep
	}
	if rep := closeReq(configwire.ConnectionFilter{ID: a1.id}); rep.Closed != 1 || !cmp.Equal(ids(rep), []string{a1.id}) {
		t.Errorf("close %s: %+v", a1.id, rep)
	}
	if code, reason := a1.readClose(t); code != 1008 || reason != configwire.AdminCloseReason {
		t.Errorf("closed session got %d %q, want 1008 %q", code, reason, configwire.AdminCloseReason)
	}
	b1.echo(t, "still here")
	a2.echo(t, "still here")

	if rep := closeReq(configwire.ConnectionFilter{Subscription: "ALICE"}); rep.Closed != 1 || !cmp.Equal(ids(rep), []string{a2.id}) {
		t.Errorf("close alice's: %+v", rep)
	}
	if code, _ := a2.readClose(t); code != 1008 {
		t.Errorf("alice's session got %d, want 1008", code)
	}
	b1.echo(t, "still here")
	if rep := closeReq(configwire.ConnectionFilter{ID: "no-such-id"}); rep.Closed != 0 {
		t.Errorf("close of an unknown id closed %d", rep.Closed)
	}
}

// Keys of the tests: management's signer, and the node key of the node under test.
var (
	testSigner   = configwire.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	testVerifier = func() *configwire.Verifier {
		v, err := configwire.NewVerifier([]configwire.VerifyKey{testSigner.VerifyKey()})
		if err != nil {
			panic(err)
		}
		return v
	}()
	testNodeKey = configwire.DeriveNodeKey(testSigner.KeyID(), []byte("root"), serviceID, "gw1", []byte("gateway key"))
)

// request sends body on the service's subject with a fresh reply inbox, its signature header
// made by sign (none when sign is nil), and waits up to d for the first reply.
func (e *env) request(t *testing.T, body []byte, sign func(subject, inbox string) string, d time.Duration) (*nats.Msg, error) {
	t.Helper()
	inbox := e.nc.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject := bus.ConnectionsSubject(serviceID)
	msg := &nats.Msg{Subject: subject, Reply: inbox, Data: body, Header: nats.Header{}}
	if sign != nil {
		msg.Header.Set(bus.HeaderSignature, sign(subject, inbox))
	}
	if err := e.nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	return sub.NextMsg(d)
}

func (e *env) droppedReasons() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.dropped)
}

// TestAttackForgedRequest: a request management did not sign (none, another key's, or a
// real signature made for another reply inbox) lists and closes nothing and gets no answer.
func TestAttackForgedRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.open(t, "chat", aliceKey)
	body, err := json.Marshal(configwire.ConnectionsRequest{Op: configwire.ConnectionsClose,
		Filter: configwire.ConnectionFilter{ID: s.id}, Code: configwire.AdminCloseCode, Reason: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	other := configwire.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	for _, tc := range []struct {
		name   string
		sign   func(subject, inbox string) string
		reason string
	}{
		{"unsigned", nil, "unsigned"},
		{"another key", func(subject, inbox string) string { return other.SignRequest(subject, inbox, body) }, "forged"},
		{"management's signature for another inbox", func(subject, _ string) string {
			return testSigner.SignRequest(subject, "_INBOX.captured", body)
		}, "forged"},
		{"another key posing under management's key id", func(subject, inbox string) string {
			sig := other.SignRequest(subject, inbox, body)
			return testSigner.KeyID() + sig[strings.Index(sig, "."):]
		}, "forged"},
	} {
		before := len(e.droppedReasons())
		if m, err := e.request(t, body, tc.sign, 300*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
			t.Errorf("%s: answered %v, %v; want no answer", tc.name, m, err)
		}
		testwait.Until(t, 5*time.Second, tc.name+": the request counted as dropped", func() bool { return len(e.droppedReasons()) > before })
		if got := e.droppedReasons()[before]; got != tc.reason {
			t.Errorf("%s: dropped as %q, want %q", tc.name, got, tc.reason)
		}
	}
	s.echo(t, "still open")
}
