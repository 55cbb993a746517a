package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"gatehouse.dev/management/internal/dbtest"
	"gatehouse.dev/management/internal/mgmttest"

	"gatehouse.dev/management/internal/natsembed"
	"gatehouse.dev/pkg/syncbuf"
)

// drillWrite is one ARM write of the drill writer.
type drillWrite struct {
	kind string // "subscription" or "namedValue"
	name string
}

// drillWriter issues ARM writes continuously against the live management processes and records
// every write answered 2xx.
type drillWriter struct {
	svc    string
	client *http.Client
	secret func(value, what string)

	mu      sync.Mutex
	targets []string // management URLs; "" once killed
	acked   []drillWrite
	failed  int
	lies    []string // writes answered 2xx while the database was down

	dbDown atomic.Bool
	stop   chan struct{}
	done   chan struct{}
}

func newDrillWriter(svc string, targets []string, secret func(value, what string)) *drillWriter {
	return &drillWriter{svc: svc, client: &http.Client{Timeout: 10 * time.Second}, secret: secret, targets: targets,
		stop: make(chan struct{}), done: make(chan struct{})}
}

// drop stops writing to management url.
func (w *drillWriter) drop(url string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, u := range w.targets {
		if u == url {
			w.targets[i] = ""
		}
	}
}

func (w *drillWriter) target(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.targets {
		if u := w.targets[(i+k)%len(w.targets)]; u != "" {
			return u
		}
	}
	return ""
}

// run writes until stop is closed: two subscriptions to the API "echo", then a secret named
// value, and again.
func (w *drillWriter) run() {
	defer close(w.done)
	for i := 1; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		wr := drillWrite{kind: "subscription", name: fmt.Sprint("drill-sub-", i)}
		props := map[string]any{"scope": "/apis/echo", "displayName": wr.name, "state": "active"}
		if i%3 == 0 {
			var b [16]byte
			_, _ = rand.Read(b[:])
			value := "nvsecret" + hex.EncodeToString(b[:])
			w.secret(value, "the value of secret named value drill-nv-"+strconv.Itoa(i))
			wr = drillWrite{kind: "namedValue", name: fmt.Sprint("drill-nv-", i)}
			props = map[string]any{"displayName": wr.name, "value": value, "secret": true}
		}
		wasDown := w.dbDown.Load()
		status, err := w.put(w.target(i), wr, props)
		down := wasDown && w.dbDown.Load()
		w.mu.Lock()
		switch {
		case err == nil && status/100 == 2:
			w.acked = append(w.acked, wr)
			if down {
				w.lies = append(w.lies, fmt.Sprintf("%s %s answered %d while the database was down", wr.kind, wr.name, status))
			}
		default:
			w.failed++
		}
		w.mu.Unlock()
	}
}

func (w *drillWriter) put(base string, wr drillWrite, props map[string]any) (int, error) {
	body, _ := json.Marshal(map[string]any{"properties": props})
	coll := "/subscriptions/"
	if wr.kind == "namedValue" {
		coll = "/namedValues/"
	}
	req, err := http.NewRequest(http.MethodPut, base+w.svc+coll+wr.name+"?api-version="+mgmttest.APIVersion, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+mgmttest.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// snapshot returns the writes acknowledged so far and how many failed.
func (w *drillWriter) snapshot() ([]drillWrite, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]drillWrite(nil), w.acked...), w.failed
}

// wireTap records the raw payloads and headers of every message on the NATS server.
type wireTap struct {
	buf      syncbuf.Buffer
	messages atomic.Int64
}

// TestFailureDrills streams ARM writes and WebSocket sessions through a fleet of two
// management processes and three gateway nodes while it kills NATS, a management process and a
// gateway node with SIGKILL and restarts Postgres. After each failure the fleet converges,
// every acknowledged write is readable from management and the newest subscription is
// enforced by every node, and the sessions on surviving nodes still echo. At the end no
// subscription key, gateway key or secret named value appears in any process's log or in any
// NATS message.
func TestFailureDrills(t *testing.T) {
	drills := t // owns what a drill restarts: the drills after it need it too
	bin := t.TempDir()
	natsBin := buildBinary(t, bin, "natsd", "./testdata/natsd")
	mgmtBin := buildBinary(t, bin, "management", "gatehouse.dev/management/cmd/management")

	pg, noPG := startPrivatePG(t)
	var dbURL string
	if pg != nil {
		dbURL = pg.url()
	} else {
		url, drop, err := dbtest.Setup(t.Context(), "gh_drill", nil)
		if err != nil {
			t.Fatalf("database: %v", err)
		}
		t.Cleanup(drop)
		dbURL = url
	}

	natsAddr := "127.0.0.1:" + freePort(t)
	natsURL := "nats://" + natsAddr
	natsStore := t.TempDir()
	auth, err := natsembed.NewAuth()
	if err != nil {
		t.Fatal(err)
	}
	natsProc := startNATS(t, t, natsBin, natsAddr, natsStore, auth)
	natsProcs := []*proc{natsProc}

	tap := &wireTap{}
	// The tap is management's user: it sees everything on the bus, as an insider would.
	tapConn, err := nats.Connect(natsURL, nats.UserInfo(auth.User, auth.Password), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tapConn.Close)
	if _, err := tapConn.Subscribe(">", func(m *nats.Msg) {
		tap.messages.Add(1)
		_, _ = tap.buf.Write(m.Data)
		for k, vs := range m.Header {
			_, _ = fmt.Fprintf(&tap.buf, "\n%s: %s\n", k, strings.Join(vs, ","))
		}
	}); err != nil {
		t.Fatal(err)
	}

	// m1 starts first and takes the relay's leader lock, so killing it moves the relay.
	m1 := startManagement(t, mgmtBin, "management-1", dbURL, natsURL, auth)
	m1.waitLog(t, 15*time.Second, "relay leadership", func(l string) bool { return strings.Contains(l, `"outbox relay leading"`) })
	m2 := startManagement(t, mgmtBin, "management-2", dbURL, natsURL, auth)
	mgmts := []*mgmtProc{m1, m2}

	// The stack's helpers talk to m2, which survives; the nodes fetch their configuration from it.
	env := &mgmttest.Env{URL: m2.url, Client: &http.Client{Timeout: 30 * time.Second}, Token: mgmttest.AdminToken}
	s := &stack{env: env, secrets: map[string]string{}}
	s.svc = env.CreateService(t, "sub-e2e", "rg-e2e", "svc")
	s.put(t, "/gateways/gw", map[string]any{"locationData": map[string]any{"name": "e2e"}})
	t.Cleanup(func() { s.checkLogs(t) })
	var gwKeys struct{ Primary, Secondary string }
	if err := json.Unmarshal(s.must(t, []int{200}, http.MethodPost, "/gateways/gw/listKeys", nil).Body, &gwKeys); err != nil || gwKeys.Primary == "" {
		t.Fatalf("gateway listKeys: %v", err)
	}
	s.secret(gwKeys.Primary, "the primary key of gateway gw")
	s.secret(gwKeys.Secondary, "the secondary key of gateway gw")

	be := newBackend(t, "main", "")
	s.wsAPI(t, "echo", "echo", be.wsURL("/echo"), nil)
	sessKey := s.subscription(t, "sessions", "/apis/echo", "active")
	tok := s.token(t, "primary")
	nodes := s.startNodes(t, "gw", 3, nodeOptions{token: tok})
	s.converge(t, 3)
	sessions := map[*node]*watched{}
	for _, n := range nodes {
		sessions[n] = keepSession(t, t, n, sessKey)
	}

	w := newDrillWriter(s.svc, []string{m1.url, m2.url}, s.secret)
	go w.run()
	stopWriter := sync.OnceFunc(func() { close(w.stop); <-w.done })
	t.Cleanup(stopWriter)
	// running checks that the fleet still has its three nodes: none of them may have exited
	// but the one the node drill kills, which it replaces.
	running := func(t *testing.T) {
		t.Helper()
		for _, n := range nodes {
			select {
			case <-n.exited:
				t.Fatalf("gateway node %s exited (%v):\n%s", n.name, n.err, n.log)
			default:
			}
		}
	}
	// echoAll checks that the session opened on each node is still up.
	echoAll := func(t *testing.T, when string) {
		t.Helper()
		for _, n := range nodes {
			if err := sessions[n].echo(when, 10*time.Second); err != nil {
				t.Error(err)
			}
		}
	}
	// recovered checks what a user checks after an incident.
	recovered := func(t *testing.T) {
		t.Helper()
		// A few writes acknowledged after the recovery.
		acked, _ := w.snapshot()
		eventually(t, 20*time.Second, func() string {
			if now, _ := w.snapshot(); len(now) < len(acked)+3 {
				return fmt.Sprintf("%d writes acknowledged since the recovery, want 3", len(now)-len(acked))
			}
			return ""
		})
		running(t)
		convergeAlive(t, s, len(nodes))
		checkAcked(t, s, w, nodes)
		echoAll(t, "after the drill "+t.Name())
		// Every node reports itself healthy again: it reaches management and counts limits
		// with the fleet through NATS.
		eventually(t, 15*time.Second, func() string {
			for _, nd := range s.fleet(t, "").live() {
				if !nd.Properties.Healthy {
					return fmt.Sprintf("node %s reports unhealthy: %s", nd.Name, nd.Properties.LastError)
				}
			}
			return ""
		})
	}

	t.Run("kill a management process", func(t *testing.T) {
		w.drop(m1.url)
		leading := m2.logCount(`"outbox relay leading"`)
		m1.kill()
		m2.waitLog(t, 20*time.Second, "relay leadership", func(string) bool { return m2.logCount(`"outbox relay leading"`) > leading })
		recovered(t)
	})
	t.Run("kill a gateway node", func(t *testing.T) {
		victim := nodes[2]
		_ = victim.cmd.Process.Kill()
		<-victim.exited
		// This sleep stays: the other nodes must serve through a while of the victim's absence.
		time.Sleep(time.Second)
		for _, n := range nodes[:2] {
			if err := sessions[n].echo("while "+victim.name+" is down", 10*time.Second); err != nil {
				t.Error(err)
			}
		}
		// The restarted node and its session serve the drills that follow.
		restarted := s.startNode(t, victim.name+"-restarted", nodeOptions{token: tok, cacheDir: victim.cacheDir, owner: drills})
		nodes[2] = restarted
		sessions[restarted] = keepSession(t, drills, restarted, sessKey)
		recovered(t)
	})
	t.Run("restart Postgres", func(t *testing.T) {
		if pg == nil {
			skipOutsideCI(t, "no private Postgres to restart: %s", noPG)
		}
		_, failedBefore := w.snapshot()
		if err := pg.stop(); err != nil {
			t.Fatal(err)
		}
		// Only now is the database down: a write that began while it was stopping may have
		// committed, and its 201 is the truth.
		w.dbDown.Store(true)
		// This sleep stays: the outage lasts a while. It ends no sooner than a write has failed.
		time.Sleep(2 * time.Second)
		eventually(t, 20*time.Second, func() string {
			if _, failed := w.snapshot(); failed == failedBefore {
				return "no write failed while the database was down"
			}
			return ""
		})
		w.dbDown.Store(false)
		if err := pg.start(); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		for _, l := range w.lies {
			t.Error(l)
		}
		w.mu.Unlock()
		// Management answers writes again.
		eventually(t, 20*time.Second, func() string {
			if r := s.do(t, http.MethodPut, "/namedValues/after-restart", map[string]any{"properties": map[string]any{
				"displayName": "after-restart", "value": "plain"}}); r.Status/100 != 2 {
				return fmt.Sprintf("PUT after the restart: %d %s", r.Status, r.Body)
			}
			return ""
		})
		recovered(t)
	})

	t.Run("kill NATS", func(t *testing.T) {
		// This sleep and the next stay: writes flow for a while before NATS goes, and the
		// sessions are checked a while into the outage.
		time.Sleep(time.Second)
		ackedBefore, _ := w.snapshot()
		natsProc.kill()
		// The data path does not need NATS: open sessions stay up and new ones open with a
		// key the nodes already know.
		time.Sleep(time.Second)
		echoAll(t, "while NATS is down")
		for _, n := range nodes {
			c, err := dialSession(n.ws("/echo?conn=nats-down-"+n.name), keyHeader(sessKey))
			if err != nil {
				t.Errorf("%s: a new session while NATS is down: %v", n.name, err)
				continue
			}
			c.Close()
		}
		// Management keeps accepting writes: they wait in the outbox until NATS is back.
		eventually(t, 20*time.Second, func() string {
			if acked, _ := w.snapshot(); len(acked) == len(ackedBefore) {
				return "no write was acknowledged while NATS was down"
			}
			return ""
		})
		// The new server is another process with the same store: streams and KV buckets
		// survive, core NATS subscriptions do not (the clients send them again).
		natsProc = startNATS(t, drills, natsBin, natsAddr, natsStore, auth)
		natsProcs = append(natsProcs, natsProc)
		recovered(t)
	})
	stopWriter()
	t.Run("final convergence", func(t *testing.T) {
		acked, failed := w.snapshot()
		t.Logf("%d writes acknowledged, %d failed", len(acked), failed)
		running(t)
		convergeAlive(t, s, len(nodes))
		checkAcked(t, s, w, nodes)
	})
	t.Run("no plaintext secrets", func(t *testing.T) {
		acked, _ := w.snapshot()
		for _, wr := range acked {
			if wr.kind == "subscription" {
				var keys struct{ PrimaryKey, SecondaryKey string }
				if err := json.Unmarshal(s.must(t, []int{200}, http.MethodPost, "/subscriptions/"+wr.name+"/listSecrets", nil).Body, &keys); err != nil {
					t.Fatal(err)
				}
				s.secret(keys.PrimaryKey, "the primary key of subscription "+wr.name)
				s.secret(keys.SecondaryKey, "the secondary key of subscription "+wr.name)
			}
		}
		if tap.messages.Load() == 0 {
			t.Fatal("the NATS tap captured no message")
		}
		wire := tap.buf.String()
		logs := map[string]string{}
		for _, m := range mgmts {
			logs[m.name] = m.log.String()
		}
		for i, p := range natsProcs {
			logs[fmt.Sprint("NATS server ", i+1)] = p.log.String()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Logf("scanning %d NATS messages (%d bytes) and %d management and NATS logs for %d secrets", tap.messages.Load(), len(wire), len(logs), len(s.secrets))
		for v, what := range s.secrets {
			if strings.Contains(wire, v) {
				t.Errorf("NATS traffic carried %s in plaintext", what)
			}
			for name, log := range logs {
				if strings.Contains(log, v) {
					t.Errorf("%s logged %s", name, what)
				}
			}
		}
		for name, log := range logs {
			if i := strings.Index(log, "WARNING: DATA RACE"); i >= 0 {
				t.Errorf("%s reported a data race:\n%s", name, log[i:min(len(log), i+4000)])
			}
		}
	})
}

// keepSession opens a session with key on n, retrying for the propagation window, and keeps it
// open until owner ends (t or a parent of t).
func keepSession(t, owner *testing.T, n *node, key string) *watched {
	t.Helper()
	var c *websocket.Conn
	eventually(t, propagation, func() string {
		var err error
		if c, err = dialSession(n.ws("/echo?conn="+n.name), keyHeader(key)); err != nil {
			return fmt.Sprintf("session on %s: %v", n.name, err)
		}
		return ""
	})
	owner.Cleanup(func() { c.Close() })
	return watch(c, n.name, "session on "+n.name)
}

// convergeAlive waits until n live nodes serve at least the service's revision as of the call.
// Unlike Gatehouse-Converged it ignores nodes that stopped heartbeating (a node killed with
// SIGKILL stays live in management's view for its liveness window).
func convergeAlive(t *testing.T, s *stack, n int) {
	t.Helper()
	rev := s.fleet(t, "").revision
	eventually(t, 30*time.Second, func() string {
		v := s.fleet(t, fmt.Sprintf("waitForRevision=%d&timeout=3s", rev))
		at := 0
		for _, nd := range v.live() {
			if nd.Properties.Revision >= rev {
				at++
			}
		}
		if at < n {
			return fmt.Sprintf("%d live nodes serve revision %d or later, want %d (Gatehouse-Converged %q, Gatehouse-Revision %d, nodes %+v)", at, rev, n, v.converged, v.revision, v.nodes)
		}
		return ""
	})
}

// checkAcked checks that every acknowledged write is readable from management and that every
// node admits a session with the key of the newest acknowledged subscription.
func checkAcked(t *testing.T, s *stack, w *drillWriter, nodes []*node) {
	t.Helper()
	acked, _ := w.snapshot()
	var last string
	for _, wr := range acked {
		coll := "/subscriptions/"
		if wr.kind == "namedValue" {
			coll = "/namedValues/"
		} else {
			last = wr.name
		}
		if r := s.do(t, http.MethodGet, coll+wr.name, nil); r.Status != http.StatusOK {
			t.Errorf("acknowledged %s %s: GET answered %d", wr.kind, wr.name, r.Status)
		}
	}
	if last == "" {
		t.Fatal("no subscription write was acknowledged")
	}
	var keys struct{ PrimaryKey, SecondaryKey string }
	if err := json.Unmarshal(s.must(t, []int{200}, http.MethodPost, "/subscriptions/"+last+"/listSecrets", nil).Body, &keys); err != nil {
		t.Fatal(err)
	}
	s.secret(keys.PrimaryKey, "the primary key of subscription "+last)
	s.secret(keys.SecondaryKey, "the secondary key of subscription "+last)
	for _, n := range nodes {
		eventually(t, propagation, func() string {
			c, err := dialSession(n.ws("/echo?conn=check-"+last), keyHeader(keys.PrimaryKey))
			if err != nil {
				return fmt.Sprintf("%s with the key of %s: %v", n.name, last, err)
			}
			c.Close()
			return ""
		})
	}
}
