package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gatehouse.dev/gateway/internal/configsync"
	"gatehouse.dev/gateway/internal/node"
	"gatehouse.dev/pkg/bus"
	"gatehouse.dev/pkg/configwire"
)

const (
	serviceID = "5e2c7a10-svc"
	token     = "gw1&202601010000&sig"
	// gatewayPolicy makes the backend see the node's context.Deployment.GatewayId.
	gatewayPolicy = `<policies><inbound><set-header name="X-Gw" exists-action="override"><value>@(context.Deployment.GatewayId)</value></set-header></inbound></policies>`
)

// startNATS runs a NATS server with JetStream on a random port, with the configuration and
// usage streams management creates.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatalf("NATS server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("NATS connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: bus.ConfigStream, Subjects: []string{bus.ConfigSubjects},
		Duplicates: bus.ConfigDuplicateWindow}); err != nil {
		t.Fatalf("creating the stream: %v", err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: bus.UsageStream, Subjects: []string{bus.UsageSubjects},
		Retention: jetstream.WorkQueuePolicy, Duplicates: bus.UsageDuplicateWindow}); err != nil {
		t.Fatalf("creating the usage stream: %v", err)
	}
	return nc
}

func raw(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// startManagement is a double of management's snapshot endpoint (as configsync's tests use):
// it serves, as JSON, a configuration of gateway gw1 with one open WebSocket API, chat, whose
// handshake policy is gatewayPolicy. The real endpoint is exercised by the end-to-end tests.
func startManagement(t *testing.T, natsURL, backendURL string) string {
	t.Helper()
	return startManagementWith(t, natsURL, backendURL, gatewayPolicy)
}

// startManagementWith is startManagement with chat's handshake policy handshakePolicy.
func startManagementWith(t *testing.T, natsURL, backendURL, handshakePolicy string) string {
	t.Helper()
	snap := configwire.Snapshot{ServiceID: serviceID, Service: "svc", Gateway: "gw1", Revision: 1,
		NATS: configwire.NATSInfo{URLs: []string{natsURL}, Stream: bus.ConfigStream, Subject: bus.ConfigSubject(serviceID)},
		Entities: []configwire.Entity{
			{Kind: configwire.KindGateway, Name: "gw1", Properties: raw(map[string]any{"description": "test"})},
			{Kind: configwire.KindAPI, Name: "chat", Properties: raw(map[string]any{"path": "chat", "type": "websocket",
				"serviceUrl": backendURL, "protocols": []string{"ws", "wss"}, "subscriptionRequired": false})},
			{Kind: configwire.KindOperation, Parent: "apis/chat", Name: "onHandshake", Properties: raw(map[string]any{"method": "GET", "urlTemplate": "/"})},
			{Kind: configwire.KindPolicy, Parent: "apis/chat/operations/onHandshake", Name: "policy",
				Properties: raw(map[string]any{"format": "xml", "value": handshakePolicy})},
			{Kind: configwire.KindGatewayAPI, Parent: "gateways/gw1", Name: "chat"},
		}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path != configwire.SnapshotPath:
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "GatewayKey "+token:
			w.WriteHeader(http.StatusUnauthorized)
		default:
			w.Header().Set("Content-Type", "application/json")
			// The node key, which heartbeats need, comes with the snapshot.
			w.Header().Set(configwire.NodeKeyHeader, testNodeKey.String())
			_ = json.NewEncoder(w).Encode(snap)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// startBackend is a WebSocket backend that sends the X-Gw header of the upgrade it got as its
// first message, then echoes until the connection ends.
func startBackend(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if err := c.WriteMessage(websocket.TextMessage, []byte(r.Header.Get("X-Gw"))); err != nil {
			return
		}
		for {
			mt, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, data); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// listen subscribes to the JSON messages on subject, as heartbeats and usage batches are.
func listen[T any](t *testing.T, nc *nats.Conn, subject string) <-chan T {
	t.Helper()
	ch := make(chan T, 64)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var v T
		if err := json.Unmarshal(m.Data, &v); err == nil {
			ch <- v
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// readyz returns the status and body of the node's /readyz.
func readyz(t *testing.T, n *node.Node) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr().String() + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// next returns the next message from ch, failing the test if none comes within a minute: a
// node beats at once on every change and every few seconds besides.
func next[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %T in a minute", *new(T))
		return *new(T)
	}
}

// TestNodeLifecycle runs a node built by New: it turns ready once configured and counting with
// the fleet, says so in a heartbeat, relays a session whose handshake policy sees the node's
// gateway resource as context.Deployment.GatewayId, and on the end of Run's ctx turns unready,
// sends its last heartbeat, drains the session with 1001, returns as soon as the session has
// closed (long before its drain timeout) having published the session's usage, with both
// listeners closed.
func TestNodeLifecycle(t *testing.T) {
	t.Parallel()
	nc := startNATS(t)
	beats := listen[configwire.Heartbeat](t, nc, bus.HeartbeatSubjects)
	usage := listen[configwire.UsageBatch](t, nc, bus.UsageSubjects)
	mgmt := startManagement(t, nc.ConnectedUrl(), startBackend(t))
	const drainTimeout = 10 * time.Minute
	n, err := node.New(node.Config{Token: token, ManagementURL: mgmt, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		CacheDir: t.TempDir(), DrainTimeout: drainTimeout}, slog.New(slog.NewJSONHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- n.Run(ctx) }()

	// Ready: the heartbeat sent when the gate opens is the last one to wait for.
	for {
		hb := next(t, beats)
		if hb.NodeID != n.ID() || !hb.Healthy {
			continue
		}
		if hb.Gateway != "gw1" || hb.ServiceID != serviceID || hb.Revision != 1 {
			t.Fatalf("heartbeat %+v, want gateway gw1 of service %s at revision 1", hb, serviceID)
		}
		if st, body := readyz(t, n); st == http.StatusOK {
			if body != "ready" {
				t.Errorf("readyz %q, want ready (counting with the fleet)", body)
			}
			break
		}
	}

	c, _, err := websocket.DefaultDialer.Dial("ws://"+n.TrafficAddr().String()+"/chat", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	// The client answers the node's close frame only when the test says.
	c.SetCloseHandler(func(int, string) error { return nil })
	if _, gw, err := c.ReadMessage(); err != nil || string(gw) != "gw1" {
		t.Fatalf("the backend saw X-Gw %q (%v), want the gateway resource gw1", gw, err)
	}

	stop()
	// The session is asked to close at once: it is the only one, so there is no pause to
	// spread reconnects over.
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != "gateway shutting down" {
		t.Fatalf("client read %v, want close 1001 \"gateway shutting down\"", err)
	}
	// While the session is open, the node drains: unready, new upgrades refused.
	if st, _ := readyz(t, n); st != http.StatusServiceUnavailable {
		t.Errorf("readyz while draining: %d, want 503", st)
	}
	if _, _, err := websocket.DefaultDialer.Dial("ws://"+n.TrafficAddr().String()+"/chat", nil); err == nil {
		t.Error("a new upgrade while draining got 101")
	}
	for {
		if hb := next(t, beats); hb.NodeID == n.ID() && hb.Stopping {
			break
		}
	}
	closed := time.Now()
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(drainTimeout / 10):
		t.Fatalf("Run still draining %v after its only session closed", drainTimeout/10)
	}
	t.Logf("Run returned %v after the session closed", time.Since(closed))
	// The usage of the last minute was published after the drain, before the NATS
	// connection closed.
	if b := next(t, usage); b.NodeID != n.ID() || len(b.Records) != 1 || b.Records[0].API != "chat" || b.Records[0].HandshakesSuccess != 1 {
		t.Errorf("usage batch %+v, want this node's one handshake to chat", b)
	}
	for _, addr := range []net.Addr{n.TrafficAddr(), n.AdminAddr()} {
		if c, err := net.Dial("tcp", addr.String()); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Run", addr)
		}
	}
}

// TestNodeRefusedToken checks that Run ends with configsync.ErrUnauthorized, and the
// listeners closed, when management refuses the token.
func TestNodeRefusedToken(t *testing.T) {
	t.Parallel()
	mgmt := startManagement(t, "nats://127.0.0.1:1", "ws://127.0.0.1:1/")
	n, err := node.New(node.Config{Token: "someone-else&202601010000&sig", ManagementURL: mgmt, Listen: "127.0.0.1:0",
		AdminListen: "127.0.0.1:0", CacheDir: t.TempDir()}, slog.New(slog.NewJSONHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(t.Context()); !errors.Is(err, configsync.ErrUnauthorized) {
		t.Fatalf("Run: %v, want %v", err, configsync.ErrUnauthorized)
	}
	for _, addr := range []net.Addr{n.TrafficAddr(), n.AdminAddr()} {
		if c, err := net.Dial("tcp", addr.String()); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Run", addr)
		}
	}
}

// TestNewValidates checks that New refuses a configuration that cannot work, naming the
// variable at fault, before it opens a listener.
func TestNewValidates(t *testing.T) {
	t.Parallel()
	ok := node.Config{Token: "t", ManagementURL: "http://127.0.0.1:1", Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0"}
	for _, tc := range []struct {
		name    string
		edit    func(*node.Config)
		wantErr string
	}{
		{"no token", func(c *node.Config) { c.Token = "" }, "GATEWAY_TOKEN is required"},
		{"no management", func(c *node.Config) { c.ManagementURL = "" }, "MANAGEMENT_URL is required"},
		{"cert without key", func(c *node.Config) { c.TLSCert = "cert.pem" }, "GATEWAY_TLS_CERT and GATEWAY_TLS_KEY go together"},
		{"public URL of https", func(c *node.Config) { c.PublicURL = "https://gw.example.com" }, "scheme must be ws or wss"},
		{"public URL with a query", func(c *node.Config) { c.PublicURL = "ws://gw.example.com/?k=v" }, "a query"},
		{"CA bundle missing", func(c *node.Config) { c.BackendCABundle = t.TempDir() + "/none.pem" }, "GATEWAY_BACKEND_CA_BUNDLE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			cfg.CacheDir = t.TempDir()
			tc.edit(&cfg)
			if _, err := node.New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	for _, url := range []string{"wss://gw.example.com", "wss://gw.example.com/edge"} {
		cfg := ok
		cfg.CacheDir, cfg.PublicURL = t.TempDir(), url
		n, err := node.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Errorf("New with public URL %s: %v", url, err)
			continue
		}
		// Run closes the listeners: management refuses nothing but is not there either, so
		// Run serves until its ctx ends.
		ctx, stop := context.WithCancel(t.Context())
		stop()
		if err := n.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// testNodeKey is the node key the management double hands out.
var testNodeKey = configwire.DeriveNodeKey("ktest", []byte("root"), serviceID, "gw1", []byte("gateway key"))
