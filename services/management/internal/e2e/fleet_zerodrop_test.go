package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Sizes of TestFleetZeroDrop.
const (
	zeroDropSessions = 1000
	zeroDropChanges  = 1000
)

// TestFleetZeroDrop opens 1,000 WebSocket sessions across three nodes, makes 1,000
// configuration changes that do not concern them (other APIs, products, named values,
// subscriptions and policies created, changed and deleted), and checks that every session
// survives: none is closed, and each still echoes afterwards.
//
// File descriptors: this process holds the client end and the backend's end of every session
// (2,000) besides management's; each node holds two per session.
//
// It does not run in parallel with other tests: it is the heaviest of the suite.
func TestFleetZeroDrop(t *testing.T) {
	raiseFileLimit(t, 2*zeroDropSessions+2048)
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "live1", "live1", be.wsURL("/live1"), nil)
	s.wsAPI(t, "live2", "live2", be.wsURL("/live2"), nil)
	s.put(t, "/products/liveprod", map[string]any{"displayName": "Live", "subscriptionRequired": true, "state": "published"})
	s.must(t, []int{200, 201}, http.MethodPut, "/products/liveprod/apis/live2", nil)
	// The sessions use keys of three subscriptions of different scopes.
	keys := []string{
		s.subscription(t, "live-all", "/apis", "active"),
		s.subscription(t, "live-api", "/apis/live1", "active"),
		s.subscription(t, "live-product", "/products/liveprod", "active"),
	}
	paths := []string{"/live1", "/live1", "/live2"}
	nodes := s.startNodes(t, "gw", 3, nodeOptions{})
	s.converge(t, len(nodes))

	start := time.Now()
	conns := make([]*websocket.Conn, zeroDropSessions)
	where := make([]string, zeroDropSessions)
	forEach(t, zeroDropSessions, func(i int) error {
		n := nodes[i%len(nodes)]
		where[i] = n.name
		c, err := dialSession(n.ws(paths[i%len(keys)]+fmt.Sprint("?conn=", i)), keyHeader(keys[i%len(keys)]))
		conns[i] = c
		return err
	})
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d sessions open across %d nodes in %v", zeroDropSessions, len(nodes), time.Since(start).Round(time.Millisecond))
	fds := fmt.Sprintf("open files: this process (clients, backend, management) %d", openFiles(0))
	for _, n := range nodes {
		fds += fmt.Sprintf(", %s %d", n.name, openFiles(n.cmd.Process.Pid))
	}
	t.Log(fds)

	start = time.Now()
	changes := unrelatedChanges(be)
	for i := range zeroDropChanges {
		ch := changes[i%len(changes)]
		cycle := i / len(changes)
		var hdr []string
		if ch.method == http.MethodPatch || ch.method == http.MethodDelete {
			hdr = []string{"If-Match", "*"}
		}
		s.must(t, []int{200, 201, 202, 204}, ch.method, ch.rel(cycle), ch.body(cycle), hdr...)
	}
	s.converge(t, len(nodes))
	took := time.Since(start)
	t.Logf("%d unrelated configuration changes written and applied by every node in %v (%.0f changes/s)",
		zeroDropChanges, took.Round(time.Millisecond), float64(zeroDropChanges)/took.Seconds())

	// Every session is still open and relays both ways.
	forEach(t, zeroDropSessions, func(i int) error {
		c := conns[i]
		msg := fmt.Sprint("after the changes ", i)
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			return fmt.Errorf("session %d on %s: writing: %v", i, where[i], err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != msg {
			return fmt.Errorf("session %d on %s: %q, %v; want the echo of %q", i, where[i], got, err, msg)
		}
		return nil
	})
	// The heartbeats after the last change report every session still registered.
	wantConnections(t, s, zeroDropSessions)
}

// forEach runs f for 0…n-1 on 16 goroutines and reports every error f returns (at most 10).
func forEach(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if i == 10 {
			t.Errorf("… and %d more", len(errs)-10)
			break
		}
		t.Error(err)
	}
}

// wantConnections checks that the nodes report want open sessions in all, by their heartbeats.
func wantConnections(t *testing.T, s *stack, want int) {
	t.Helper()
	eventually(t, 15*time.Second, func() string {
		total := 0
		for _, n := range s.fleet(t, "").live() {
			total += n.Properties.Connections
		}
		if total != want {
			return fmt.Sprintf("nodes report %d open sessions, want %d", total, want)
		}
		return ""
	})
}

// change is one write of a cycle of configuration changes; rel and body depend on the cycle.
type change struct {
	method string
	rel    func(cycle int) string
	body   func(cycle int) any
}

// unrelatedChanges is a cycle of writes that touch neither the APIs live1 and live2, nor the
// product liveprod, nor the subscriptions live-*.
func unrelatedChanges(be *backend) []change {
	name := func(prefix string) func(int) string { return func(c int) string { return fmt.Sprint(prefix, c) } }
	props := func(p map[string]any) func(int) any { return func(int) any { return map[string]any{"properties": p} } }
	none := func(int) any { return nil }
	return []change{
		{http.MethodPut, name("/apis/other-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"displayName": fmt.Sprint("Other ", c), "type": "websocket",
				"serviceUrl": be.wsURL(fmt.Sprint("/other-", c)), "path": fmt.Sprint("other-", c), "protocols": []string{"ws"}}}
		}},
		{http.MethodPut, name("/gateways/gw/apis/other-"), none},
		{http.MethodPut, name("/namedValues/nv-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"displayName": fmt.Sprint("nv-", c), "value": "one"}}
		}},
		{http.MethodPut, name("/products/otherprod-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"displayName": fmt.Sprint("Other product ", c), "subscriptionRequired": true, "state": "published"}}
		}},
		{http.MethodPut, func(c int) string { return fmt.Sprintf("/products/otherprod-%d/apis/other-%d", c, c) }, none},
		{http.MethodPut, name("/subscriptions/other-sub-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"scope": fmt.Sprint("/products/otherprod-", c), "displayName": "other", "state": "active"}}
		}},
		{http.MethodPatch, name("/subscriptions/other-sub-"), props(map[string]any{"state": "suspended"})},
		{http.MethodPut, func(c int) string { return fmt.Sprintf("/apis/other-%d/operations/onHandshake/policies/policy", c) }, func(c int) any {
			return map[string]any{"properties": map[string]any{"format": "xml", "value": `<policies><inbound><base/>
				<set-header name="X-Other" exists-action="override"><value>{{nv-` + fmt.Sprint(c) + `}}</value></set-header></inbound></policies>`}}
		}},
		{http.MethodPut, name("/namedValues/nv-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"displayName": fmt.Sprint("nv-", c), "value": "two"}}
		}},
		{http.MethodPatch, name("/apis/other-"), props(map[string]any{"displayName": "Other, renamed"})},
		{http.MethodPut, name("/subscriptions/side-sub-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"scope": fmt.Sprint("/apis/other-", c), "displayName": "side", "state": "active"}}
		}},
		{http.MethodPost, func(c int) string { return fmt.Sprintf("/subscriptions/side-sub-%d/regeneratePrimaryKey", c) }, none},
		{http.MethodDelete, name("/subscriptions/other-sub-"), none},
		{http.MethodDelete, func(c int) string { return fmt.Sprintf("/products/otherprod-%d/apis/other-%d", c, c) }, none},
		{http.MethodDelete, name("/gateways/gw/apis/other-"), none},
		{http.MethodPut, name("/gateways/gw/apis/other-"), none},
		{http.MethodPut, name("/products/otherprod-"), func(c int) any {
			return map[string]any{"properties": map[string]any{"displayName": fmt.Sprint("Other product ", c, ", v2"), "subscriptionRequired": true, "state": "published"}}
		}},
		{http.MethodDelete, name("/subscriptions/side-sub-"), none},
		{http.MethodDelete, name("/apis/other-"), none},
		{http.MethodDelete, name("/products/otherprod-"), none},
	}
}
