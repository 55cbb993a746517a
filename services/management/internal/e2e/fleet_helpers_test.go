package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// watched is a client session through a gateway node whose messages a goroutine reads until
// the connection ends, recording when and with which close frame.
type watched struct {
	node  string
	label string
	c     *websocket.Conn
	data  chan []byte   // data messages after the backend's hello
	done  chan struct{} // closed once reading ended; the fields below are set by then

	closedAt time.Time
	code     int // close code received; 1006 when the connection ended without a close frame
	reason   string
	err      error
}

// dialSession opens a WebSocket through a node and reads the backend's hello. It does not
// touch a testing.T, so goroutines may call it.
func dialSession(rawURL string, header http.Header) (*websocket.Conn, error) {
	c, resp, err := dialer.Dial(rawURL, header)
	if err != nil {
		return nil, fmt.Errorf("handshake %s: %v (%s)", redact(rawURL), err, describe(resp))
	}
	var h hello
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&h); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the backend's hello: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// watchSession dials rawURL (retrying for up to propagation while the node answers anything but
// 101, since the configuration may still be on its way) and starts watching the session. The
// connection is closed when t ends.
func watchSession(t *testing.T, n *node, label, path string, header http.Header) *watched {
	t.Helper()
	var c *websocket.Conn
	eventually(t, propagation, func() string {
		var err error
		if c, err = dialSession(n.ws(path), header); err != nil {
			return fmt.Sprintf("%s on %s: %v", label, n.name, err)
		}
		return ""
	})
	w := watch(c, n.name, label)
	t.Cleanup(func() { c.Close() })
	return w
}

// watch starts reading c.
func watch(c *websocket.Conn, nodeName, label string) *watched {
	w := &watched{node: nodeName, label: label, c: c, data: make(chan []byte, 16), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				w.closedAt, w.err = time.Now(), err
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					w.code, w.reason = ce.Code, ce.Text
				}
				return
			}
			select {
			case w.data <- msg:
			default:
			}
		}
	}()
	return w
}

// closed reports whether the session has ended.
func (w *watched) closed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the session to end and reports whether it did.
func (w *watched) wait(d time.Duration) bool {
	select {
	case <-w.done:
		return true
	case <-time.After(d):
		return false
	}
}

// echo sends msg and waits up to d for the backend's echo; the session is the watcher's, so
// the echo arrives on w.data.
func (w *watched) echo(msg string, d time.Duration) error {
	_ = w.c.SetWriteDeadline(time.Now().Add(d))
	if err := w.c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		return fmt.Errorf("%s on %s: writing: %v", w.label, w.node, err)
	}
	timeout := time.After(d)
	for {
		select {
		case got := <-w.data:
			if string(got) == msg {
				return nil
			}
		case <-w.done:
			return fmt.Errorf("%s on %s: closed (%d %q, %v) instead of echoing", w.label, w.node, w.code, w.reason, w.err)
		case <-timeout:
			return fmt.Errorf("%s on %s: no echo within %v", w.label, w.node, d)
		}
	}
}

// describeClose says how the session ended, for failure messages.
func (w *watched) describeClose() string {
	if !w.closed() {
		return "still open"
	}
	if w.code == 0 || w.code == websocket.CloseAbnormalClosure {
		return fmt.Sprintf("ended without a close frame (%v)", w.err)
	}
	return fmt.Sprintf("close %d %q", w.code, w.reason)
}

// latencies summarises measured durations.
type latencies []time.Duration

// quantile is the nearest-rank q-quantile (0 < q ≤ 1) of l.
func (l latencies) quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (l latencies) String() string {
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v", len(l), l.quantile(0.5).Round(time.Microsecond*100),
		l.quantile(0.99).Round(time.Microsecond*100), l.quantile(1).Round(time.Microsecond*100))
}

// latencyBound is the p99 bound a test asserts: the target, or twice it when the race
// detector slows every process down (the measurement is logged either way).
func latencyBound(target time.Duration) time.Duration {
	if raceEnabled {
		return 2 * target
	}
	return target
}

// raiseFileLimit makes sure this process may hold need open files, raising the soft limit
// toward the hard one (the gateway processes it starts inherit it); it skips the test when
// the hard limit is too low.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		skipOutsideCI(t, "needs %d open files; the hard limit (ulimit -Hn) is %d", need, lim.Max)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit to %d: %v", need, err)
	}
}

// fleetNode is one entry of management's gateway nodes list.
type fleetNode struct {
	Name       string `json:"name"`
	Properties struct {
		Revision    int64  `json:"revision"`
		Connections int    `json:"connections"`
		Healthy     bool   `json:"healthy"`
		LastError   string `json:"lastError"`
		Status      string `json:"status"`
	} `json:"properties"`
}

// fleetView is an answer of GET .../gateways/gw/nodes.
type fleetView struct {
	revision  int64  // Gatehouse-Revision: the service's current revision
	converged string // Gatehouse-Converged: "true", "false", or "" without waitForRevision
	nodes     []fleetNode
}

// live is the nodes management counts as live.
func (v fleetView) live() []fleetNode {
	var out []fleetNode
	for _, n := range v.nodes {
		if n.Properties.Status == "live" {
			out = append(out, n)
		}
	}
	return out
}

// fleet lists the nodes of gateway gw; query adds e.g. "waitForRevision=latest&timeout=10s".
func (s *stack) fleet(t testing.TB, query string) fleetView {
	t.Helper()
	rel := "/gateways/gw/nodes"
	if query != "" {
		rel += "?" + query
	}
	r := s.must(t, []int{200}, http.MethodGet, rel, nil)
	var body struct{ Value []fleetNode }
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("nodes list: %v: %s", err, r.Body)
	}
	rev, err := strconv.ParseInt(r.Header.Get("Gatehouse-Revision"), 10, 64)
	if err != nil {
		t.Fatalf("Gatehouse-Revision %q: %v", r.Header.Get("Gatehouse-Revision"), err)
	}
	return fleetView{revision: rev, converged: r.Header.Get("Gatehouse-Converged"), nodes: body.Value}
}

// converge waits until every live node of gw serves the service's latest revision and n of
// them are live, failing t otherwise.
func (s *stack) converge(t *testing.T, n int) {
	t.Helper()
	eventually(t, 15*time.Second, func() string {
		v := s.fleet(t, "waitForRevision=latest&timeout=5s")
		if v.converged != "true" || len(v.live()) != n {
			return fmt.Sprintf("Gatehouse-Converged %q with %d live nodes, want true with %d", v.converged, len(v.live()), n)
		}
		return ""
	})
}

// startNodes starts n gateway nodes named prefix1…prefixN (all processes first, then it waits
// for each to be ready, so they start side by side).
func (s *stack) startNodes(t *testing.T, prefix string, n int, o nodeOptions) []*node {
	t.Helper()
	if o.token == "" {
		o.token = s.token(t, "primary")
	}
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = s.startNode(t, fmt.Sprintf("%s%d", prefix, i+1), nodeOptions{token: o.token, noListen: true, env: o.env})
	}
	for _, nd := range nodes {
		nd.waitListening(t)
		nd.waitReady(t)
	}
	return nodes
}

// idleProxy forwards TCP connections to target and cuts any that carried no byte either way
// for idle, as a load balancer or NAT with an idle timeout does.
type idleProxy struct {
	ln     net.Listener
	target string
	idle   time.Duration
}

func newIdleProxy(t *testing.T, target string, idle time.Duration) *idleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &idleProxy{ln: ln, target: target, idle: idle}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.forward(c, stop) })
		}
	})
	return p
}

func (p *idleProxy) addr() string { return p.ln.Addr().String() }

func (p *idleProxy) forward(c net.Conn, stop chan struct{}) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				last.Store(time.Now().UnixNano())
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-stop:
			return
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > p.idle {
				return
			}
		}
	}
}

// openFiles is how many file descriptors process pid holds (0 is this process), or -1 where
// /proc cannot tell.
func openFiles(pid int) int {
	dir := "/proc/self/fd"
	if pid != 0 {
		dir = fmt.Sprintf("/proc/%d/fd", pid)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	return len(entries)
}

// skipOutsideCI skips a test that this machine cannot run, except under CI=true, where a
// skipped drill would be counted as a pass: there it fails.
func skipOutsideCI(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("cannot run under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}
