package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse.dev/management/internal/mgmttest"

	"gatehouse.dev/pkg/syncbuf"
	"gatehouse.dev/pkg/testwait"
)

// stack is one management service (its own database and NATS) with an APIM service "svc" and a
// gateway resource "gw", plus the gateway nodes a test starts for it. When the test ends it
// checks that no node logged a secret the test registered, a data race, or a permissions
// violation of the bus.
type stack struct {
	env *mgmttest.Env
	svc string // ARM path of the service

	mu      sync.Mutex
	nodes   []*node
	secrets map[string]string // secret value → what it is
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackIn(t, "sub-e2e")
}

// newStackIn is newStack with the service in the ARM subscription sub (the JavaScript SDK
// insists on a UUID).
func newStackIn(t *testing.T, sub string) *stack {
	t.Helper()
	env := mgmttest.Start(t, mgmttest.Options{})
	s := &stack{env: env, secrets: map[string]string{}}
	s.svc = env.CreateService(t, sub, "rg-e2e", "svc")
	s.put(t, "/gateways/gw", map[string]any{"locationData": map[string]any{"name": "e2e"}})
	// Registered first, so it runs after every node's own cleanup has stopped it.
	t.Cleanup(func() { s.checkLogs(t) })
	return s
}

// secret registers a value that must never appear in a gateway's log.
func (s *stack) secret(value, what string) {
	s.mu.Lock()
	s.secrets[value] = what
	s.mu.Unlock()
}

func (s *stack) checkLogs(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.nodes {
		log := n.log.String()
		for v, what := range s.secrets {
			if strings.Contains(log, v) {
				t.Errorf("gateway node %s logged %s", n.name, what)
			}
		}
		if i := strings.Index(log, "WARNING: DATA RACE"); i >= 0 {
			t.Errorf("gateway node %s reported a data race:\n%s", n.name, log[i:min(len(log), i+4000)])
		}
		// The bus refused something the node does: its permissions (busauth.NodePermissions)
		// and its flows disagree.
		if i := strings.Index(log, "Permissions Violation"); i >= 0 {
			t.Errorf("gateway node %s was refused by the bus:\n%s", n.name, log[max(0, i-200):min(len(log), i+400)])
		}
	}
}

// do sends an ARM request to rel below the service.
func (s *stack) do(t testing.TB, method, rel string, body any, headers ...string) mgmttest.Response {
	t.Helper()
	return s.env.Do(t, method, s.svc+rel, body, headers...)
}

// must sends an ARM request and stops the test unless the status is one of want.
func (s *stack) must(t testing.TB, want []int, method, rel string, body any, headers ...string) mgmttest.Response {
	t.Helper()
	return s.env.Must(t, want, method, s.svc+rel, body, headers...)
}

// put creates or replaces rel with properties props.
func (s *stack) put(t testing.TB, rel string, props map[string]any) mgmttest.Response {
	t.Helper()
	return s.must(t, []int{200, 201}, http.MethodPut, rel, map[string]any{"properties": props})
}

// wsAPI creates a WebSocket API at path with backend serviceURL (plus extra properties) and
// links it to the gateway.
func (s *stack) wsAPI(t testing.TB, name, path, serviceURL string, extra map[string]any) {
	t.Helper()
	props := map[string]any{"displayName": "WS " + name, "type": "websocket", "serviceUrl": serviceURL, "path": path,
		"protocols": []string{"ws", "wss"}}
	for k, v := range extra {
		props[k] = v
	}
	s.put(t, "/apis/"+name, props)
	s.must(t, []int{200, 201}, http.MethodPut, "/gateways/gw/apis/"+name, nil)
}

// handshakePolicy sets the onHandshake policy of a WebSocket API.
func (s *stack) handshakePolicy(t testing.TB, api, xml string) {
	t.Helper()
	s.put(t, "/apis/"+api+"/operations/onHandshake/policies/policy", map[string]any{"value": xml, "format": "xml"})
}

// subscription creates a subscription and returns its primary key, read back with
// listSecrets as a user would.
func (s *stack) subscription(t testing.TB, name, scope, state string) string {
	t.Helper()
	s.put(t, "/subscriptions/"+name, map[string]any{"scope": scope, "displayName": name, "state": state})
	return s.primaryKey(t, name)
}

// ownedSubscription creates an active subscription to all APIs owned by user and returns its
// primary key.
func (s *stack) ownedSubscription(t testing.TB, name, user string) string {
	t.Helper()
	s.put(t, "/subscriptions/"+name, map[string]any{"scope": "/apis", "displayName": name, "state": "active", "ownerId": "/users/" + user})
	return s.primaryKey(t, name)
}

// primaryKey reads the keys of subscription name with listSecrets, as a user would, registers
// both as secrets and returns the primary.
func (s *stack) primaryKey(t testing.TB, name string) string {
	t.Helper()
	var keys struct{ PrimaryKey, SecondaryKey string }
	if err := json.Unmarshal(s.must(t, []int{200}, http.MethodPost, "/subscriptions/"+name+"/listSecrets", nil).Body, &keys); err != nil || keys.PrimaryKey == "" {
		t.Fatalf("listSecrets %s: %v", name, err)
	}
	s.secret(keys.PrimaryKey, "the primary key of subscription "+name)
	s.secret(keys.SecondaryKey, "the secondary key of subscription "+name)
	return keys.PrimaryKey
}

// token generates a gateway token for gw signed with keyType's key.
func (s *stack) token(t testing.TB, keyType string) string {
	t.Helper()
	r := s.must(t, []int{200}, http.MethodPost, "/gateways/gw/generateToken",
		map[string]any{"keyType": keyType, "expiry": time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339)})
	tok, _ := r.JSON()["value"].(string)
	if tok == "" {
		t.Fatalf("generateToken: %s", r.Body)
	}
	s.secret(tok[strings.LastIndexByte(tok, '&')+1:], "the signature of a gateway token")
	return tok
}

// nodeOptions say how to start a gateway node. Zero values: a fresh token, this stack's
// management, a fresh cache directory, and wait until /readyz answers 200.
type nodeOptions struct {
	token         string
	managementURL string
	cacheDir      string
	// noWait returns as soon as the node listens; noListen returns at once (the node is
	// expected to exit).
	noWait, noListen bool
	// env adds settings, e.g. "NATS_URL=...".
	env []string
	// owner is the test whose end stops the node; nil means the t given to startNode. A
	// subtest that restarts a node the rest of the test needs passes its parent.
	owner *testing.T
}

// node is a gateway process.
type node struct {
	name     string
	traffic  string // host:port of the API traffic listener
	tls      string // host:port of the GATEWAY_TLS_LISTEN listener, "" without one
	admin    string // host:port of /healthz, /readyz
	cacheDir string
	log      *syncbuf.Buffer // stdout and stderr

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// startNode starts a gateway process with the environment of docs/design.md §5; its cleanup stops it.
func (s *stack) startNode(t *testing.T, name string, o nodeOptions) *node {
	t.Helper()
	if o.token == "" {
		o.token = s.token(t, "primary")
	}
	if o.managementURL == "" {
		o.managementURL = s.env.URL
	}
	if o.cacheDir == "" {
		o.cacheDir = t.TempDir()
	}
	n := &node{name: name, cacheDir: o.cacheDir, log: &syncbuf.Buffer{}, exited: make(chan struct{})}
	n.cmd = exec.Command(gatewayBinary)
	n.cmd.Env = append(cleanEnviron(),
		"GATEWAY_TOKEN="+o.token,
		"MANAGEMENT_URL="+o.managementURL,
		"GATEWAY_LISTEN=127.0.0.1:0",
		"GATEWAY_ADMIN_LISTEN=127.0.0.1:0",
		"GATEWAY_CACHE_DIR="+o.cacheDir,
		"GATEWAY_DRAIN_TIMEOUT=2s",
		"LOG_LEVEL=debug")
	n.cmd.Env = append(n.cmd.Env, o.env...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting gateway %s: %v", name, err)
	}
	go func() { n.err = n.cmd.Wait(); close(n.exited) }()
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	if o.owner == nil {
		o.owner = t
	}
	o.owner.Cleanup(func() { n.stop(o.owner) })
	if o.noListen {
		return n
	}
	n.waitListening(t)
	if !o.noWait {
		n.waitReady(t)
	}
	return n
}

// cleanEnviron is this process's environment without the gateway's own settings.
func cleanEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GATEWAY_") || k == "MANAGEMENT_URL" || k == "NATS_URL" || k == "LOG_LEVEL" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// waitListening reads the listener addresses from the node's "gateway listening" log record
// (the node listens on port 0, so no free-port guessing can race).
func (n *node) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(n.log.String()))
		for sc.Scan() {
			var rec struct{ Msg, Traffic, Admin, TLS string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "gateway listening" {
				n.traffic, n.admin, n.tls = rec.Traffic, rec.Admin, rec.TLS
				return
			}
		}
		select {
		case <-n.exited:
			t.Fatalf("gateway %s exited before listening: %v\n%s", n.name, n.err, n.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("gateway %s did not start listening\n%s", n.name, n.log)
}

// readyz is the status of GET /readyz.
func (n *node) readyz(t testing.TB) int {
	t.Helper()
	resp, err := http.Get("http://" + n.admin + "/readyz")
	if err != nil {
		t.Fatalf("readyz of %s: %v", n.name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (n *node) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if n.readyz(t) == http.StatusOK {
			return
		}
		select {
		case <-n.exited:
			t.Fatalf("gateway %s exited before ready: %v\n%s", n.name, n.err, n.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("gateway %s not ready within 15 s\n%s", n.name, n.log)
}

// stopWait is how long stop waits for a node to exit: its whole shutdown budget (the default
// 30 s drain, then up to 5 s for the last usage batch and 5 s for traces, each only when
// needed), so that only a node that hangs fails, not one on a loaded machine.
const stopWait = 45 * time.Second

// stop ends the node with SIGTERM, as an orchestrator would, and checks it exits cleanly.
func (n *node) stop(t *testing.T) {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		if n.err != nil {
			t.Errorf("gateway %s exited with %v after SIGTERM\n%s", n.name, n.err, n.log)
		}
	case <-time.After(stopWait):
		_ = n.cmd.Process.Kill()
		<-n.exited
		t.Errorf("gateway %s did not exit within %v of SIGTERM\n%s", n.name, stopWait, n.log)
	}
}

// waitExit waits up to d for the node to exit on its own and returns its exit code.
func (n *node) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-n.exited:
	case <-time.After(d):
		t.Fatalf("gateway %s still running after %v\n%s", n.name, d, n.log)
	}
	var ee *exec.ExitError
	if errors.As(n.err, &ee) {
		return ee.ExitCode()
	}
	if n.err != nil {
		t.Fatalf("gateway %s: %v", n.name, n.err)
	}
	return 0
}

// ws is the WebSocket URL of path (with query) on the node.
func (n *node) ws(pathAndQuery string) string { return "ws://" + n.traffic + pathAndQuery }

// http is the HTTP URL of path (with query) on the node.
func (n *node) http(pathAndQuery string) string { return "http://" + n.traffic + pathAndQuery }

// closedAddr returns a 127.0.0.1 address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	// A socket bound to a port but not listening: connections are refused, and nothing else
	// can take the port while the test lasts (a listener closed at once would free it for the
	// next one). The port is below the ephemeral range, so the ":0" listeners other tests
	// pick their ports with never collide with it either.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	for port := 20000 + rand.IntN(5000); port < 32000; port++ {
		if syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}) == nil {
			return fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// eventually polls check (testwait.For) until it returns "" or timeout passes, and returns how
// long it took; on timeout it fails t with check's last answer.
func eventually(t *testing.T, timeout time.Duration, check func() string) time.Duration {
	t.Helper()
	return testwait.For(t, timeout, check)
}

// runGateway runs the gateway with env added to a clean environment, expecting it to exit
// within 10 s, and returns its output and exit code.
func runGateway(t *testing.T, env ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gatewayBinary)
	cmd.Env = append(cleanEnviron(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("running the gateway: %v\n%s", err, out)
	}
	return string(out), 0
}

// tcpProxy forwards TCP connections to target while up; taking it down cuts every open
// connection and refuses new ones, as a network partition would.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	up    bool
	conns map[net.Conn]bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, up: true, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setUp(false) })
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if !p.up {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) { _, _ = io.Copy(dst, src); done <- struct{}{} }
	go cp(up, c)
	go cp(c, up)
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// setUp brings the link up or takes it down.
func (p *tcpProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
	}
}
