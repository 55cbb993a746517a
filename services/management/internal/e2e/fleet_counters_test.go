package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
)

// The limits TestFleetCounters sets.
const (
	fleetRateCalls  = 30
	fleetRateWindow = 10 * time.Second
	fleetQuotaCalls = 5
	fleetConnMax    = 2
)

// Client addresses. Every address of 127.0.0.0/8 is this host's loopback, so a client that binds
// one of them is a context.Request.IpAddress of its own to the gateway, and the by-key counters
// of one subtest are not another's.
const (
	ipRateByKey  = "127.0.0.2"
	ipConnKey    = "127.0.0.3"
	ipConnOther  = "127.0.0.4"
	ipQuotaByKey = "127.0.0.5"
	ipProbe      = "127.0.0.6"
)

// What a node logs when it counts rate limits and quotas, or connections, on its own.
var fallbackLogs = []string{"cluster counters unavailable", "fleet connection counts unavailable"}

// msgConnectionLimit is the message of the 429 a full <limit-connections> answers.
const msgConnectionLimit = "Too many concurrent connections. Close a connection and try again."

// TestFleetCounters checks that limits hold for a fleet of three gateway nodes rather than per
// node (docs/policies.md): rate-limit and rate-limit-by-key admit the limit within 10 % while
// handshakes go round-robin to the three nodes as fast as they can; quota and quota-by-key
// keep their count through a restart of every node; <limit-connections> refuses the newest
// session or evicts the oldest one, on whichever node it is.
//
// It does not run in parallel with other tests: the rate limits are measured while the
// machine is busy with this test only.
func TestFleetCounters(t *testing.T) {
	t.Run("three nodes", func(t *testing.T) {
		t.Parallel()
		testFleetLimits(t)
	})
	t.Run("quotas survive a restart of every node", func(t *testing.T) {
		t.Parallel()
		testFleetQuotas(t)
	})
}

// testFleetLimits runs the connection-limit and rate-limit checks on one fleet of three nodes.
func testFleetLimits(t *testing.T) {
	s := newStack(t)
	be := newBackend(t, "main", "")
	policy := func(api, inbound string) {
		s.wsAPI(t, api, api, be.wsURL("/"+api), nil)
		s.handshakePolicy(t, api, "<policies><inbound><base/>"+inbound+"</inbound></policies>")
	}
	// rate-limit on a product, rate-limit-by-key on an API.
	s.wsAPI(t, "rate", "rate", be.wsURL("/rate"), nil)
	s.put(t, "/products/limited", map[string]any{"displayName": "Limited", "subscriptionRequired": true, "state": "published"})
	s.must(t, []int{200, 201}, http.MethodPut, "/products/limited/apis/rate", nil)
	s.put(t, "/products/limited/policies/policy", map[string]any{"format": "xml", "value": fmt.Sprintf(
		`<policies><inbound><base/><rate-limit calls="%d" renewal-period="%d"/></inbound></policies>`,
		fleetRateCalls, int(fleetRateWindow/time.Second))})
	policy("ratekey", fmt.Sprintf(`<rate-limit-by-key calls="%d" renewal-period="%d" counter-key="@(context.Request.IpAddress)"/>`,
		fleetRateCalls, int(fleetRateWindow/time.Second)))
	policy("conn", fmt.Sprintf(`<limit-connections max="%d"/>`, fleetConnMax))
	policy("evict", fmt.Sprintf(`<limit-connections max="%d" per="subscription" action="evict-oldest"/>`, fleetConnMax))
	policy("connkey", fmt.Sprintf(`<limit-connections max="%d" per="key" counter-key="@(context.Request.IpAddress)"/>`, fleetConnMax))
	policy("probe", `<limit-connections max="1" per="key" counter-key="probe"/>`)
	keys := map[string]string{
		"rate":  s.subscription(t, "rate", "/products/limited", "active"),
		"conn":  s.subscription(t, "conn", "/apis/conn", "active"),
		"evict": s.subscription(t, "evict", "/apis/evict", "active"),
		"all":   s.subscription(t, "all", "/apis", "active"),
	}
	nodes := s.startNodes(t, "gw", 3, nodeOptions{env: counterEnv()})
	ready := time.Now()
	waitConnectionsShared(t, nodes, keys["all"])
	t.Logf("every node shares connection counts %v after the last one was ready", time.Since(ready).Round(time.Millisecond))

	t.Run("limit-connections", func(t *testing.T) {
		t.Run("reject the newest", func(t *testing.T) {
			t.Parallel()
			testRejectNewest(t, nodes, "/conn", keyHeader(keys["conn"]), "127.0.0.1", "")
		})
		t.Run("evict the oldest", func(t *testing.T) {
			t.Parallel()
			testEvictOldest(t, be, nodes, keyHeader(keys["evict"]))
		})
		t.Run("per key", func(t *testing.T) {
			t.Parallel()
			testRejectNewest(t, nodes, "/connkey", keyHeader(keys["all"]), ipConnKey, ipConnOther)
		})
	})

	t.Run("rate limits", func(t *testing.T) {
		// Both series fire in the same whole window: from a window boundary (the gateway's
		// windows are aligned to multiples of the renewal period since the Unix epoch) to just
		// before the next.
		w := int64(fleetRateWindow)
		start := time.Unix(0, (time.Now().UnixNano()/w+1)*w)
		stop := start.Add(fleetRateWindow - 500*time.Millisecond)
		t.Logf("waiting %v for the next window", time.Until(start).Round(time.Millisecond))
		for _, tc := range []struct {
			name, path, ip string
			header         http.Header
		}{
			{"rate-limit", "/rate", "127.0.0.1", keyHeader(keys["rate"])},
			{"rate-limit-by-key", "/ratekey", ipRateByKey, keyHeader(keys["all"])},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				u := newUpgrader(t, tc.ip)
				// This sleep stays: the windows are the wall clock's, and both subtests start at
				// the same boundary so that every window they count is whole.
				time.Sleep(time.Until(start))
				r := fire(nodes, u, tc.path, tc.header, stop)
				t.Logf("%s: %d handshakes in %v (%.0f/s), %d admitted %v, %d refused with 429; last admitted %v into the window; latency %v",
					tc.name, r.sent, stop.Sub(start).Round(time.Millisecond), float64(r.sent)/stop.Sub(start).Seconds(), len(r.admitted),
					r.perNode, r.limited, r.lastAdmitted().Round(time.Millisecond), r.latency)
				if n := len(r.admitted); n < fleetRateCalls*9/10 || n > fleetRateCalls*11/10 {
					t.Errorf("the fleet admitted %d handshakes in one window, want %d ± 10 %%", n, fleetRateCalls)
				}
				for _, n := range nodes {
					if r.perNode[n.name] == 0 {
						t.Errorf("node %s admitted no handshake: the calls did not go round-robin", n.name)
					}
				}
				if len(r.other) > 0 {
					t.Errorf("%d answers neither 101 nor 429, e.g. %s", len(r.other), r.other[0])
				}
				if r.limited == 0 {
					t.Fatal("no handshake was refused")
				}
				retry, err := strconv.Atoi(r.sample.hdr.Get("Retry-After"))
				if err != nil || retry < 1 || retry > 2*int(fleetRateWindow/time.Second) {
					t.Errorf("Retry-After %q, want 1..%d seconds", r.sample.hdr.Get("Retry-After"), 2*int(fleetRateWindow/time.Second))
				}
				wantGatewayError(t, r.sample.status, r.sample.hdr, r.sample.body, http.StatusTooManyRequests,
					"Rate limit is exceeded. Try again in "+strconv.Itoa(retry)+" seconds.")
			})
		}
	})
	t.Run("no node counted on its own", func(t *testing.T) { noCounterFallback(t, nodes) })
}

// testRejectNewest fills a connection limit of fleetConnMax with sessions from ip on two nodes
// and checks that the third node refuses one more with 429, until one of them closes. A
// client from otherIP, if given, has a counter of its own.
func testRejectNewest(t *testing.T, nodes []*node, path string, header http.Header, ip, otherIP string) {
	first := openFrom(t, nodes[0], ip, "first", path, header)
	openFrom(t, nodes[1], ip, "second", path, header)
	status, hdr, body := handshakeFrom(t, nodes[2], ip, path, header)
	wantGatewayError(t, status, hdr, body, http.StatusTooManyRequests, msgConnectionLimit)
	if otherIP != "" {
		openFrom(t, nodes[2], otherIP, "another key", path, header)
	}
	// The first session closes; its place is free for a handshake on the third node.
	closed := first.closeNormally(t)
	eventually(t, 5*time.Second, func() string {
		status, _, body := handshakeFrom(t, nodes[2], ip, path, header)
		if status != http.StatusSwitchingProtocols {
			return fmt.Sprintf("a handshake on %s after a session closed on %s: %d %s, want 101", nodes[2].name, nodes[0].name, status, body)
		}
		return ""
	})
	t.Logf("a place freed on %s was taken on %s %v after the close", nodes[0].name, nodes[2].name, time.Since(closed).Round(time.Millisecond))
}

// testEvictOldest fills a connection limit of fleetConnMax (action evict-oldest) on two nodes;
// a session on the third node then closes the oldest, on the first node, with 1008, and one
// more on the first node closes the one on the second.
func testEvictOldest(t *testing.T, be *backend, nodes []*node, header http.Header) {
	a := openFrom(t, nodes[0], "127.0.0.1", "oldest", "/evict?conn=evict-a", header)
	b := openFrom(t, nodes[1], "127.0.0.1", "second", "/evict?conn=evict-b", header)
	asked := time.Now()
	c := openFrom(t, nodes[2], "127.0.0.1", "newest", "/evict?conn=evict-c", header)
	opened := time.Since(asked)
	if !a.wait(5 * time.Second) {
		t.Fatalf("the oldest session, on %s, is still open after a newer one opened on %s", nodes[0].name, nodes[2].name)
	}
	t.Logf("evict-oldest: the session on %s closed %v after the handshake on %s began (which took %v)",
		nodes[0].name, a.closedAt.Sub(asked).Round(time.Millisecond), nodes[2].name, opened.Round(time.Millisecond))
	wantEvicted(t, a)
	if ce := be.closeReceived(t, "evict-a"); ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("the backend of the evicted session received close %d %q, want 1008", ce.Code, ce.Text)
	}
	for _, w := range []*watched{b, c} {
		if err := w.echo("still here", 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	// The oldest now is the session on the second node.
	openFrom(t, nodes[0], "127.0.0.1", "newer still", "/evict?conn=evict-d", header)
	if !b.wait(5 * time.Second) {
		t.Fatalf("the session on %s, now the oldest, is still open after a newer one opened on %s", nodes[1].name, nodes[0].name)
	}
	wantEvicted(t, b)
	if err := c.echo("still here", 5*time.Second); err != nil {
		t.Error(err)
	}
}

// wantEvicted fails t unless w ended with the close of a session evicted by a newer one.
func wantEvicted(t *testing.T, w *watched) {
	t.Helper()
	if w.code != websocket.ClosePolicyViolation || w.reason != "connection limit: evicted by a newer session" {
		t.Errorf("%s on %s: %s, want close 1008 \"connection limit: evicted by a newer session\"", w.label, w.node, w.describeClose())
	}
}

// testFleetQuotas spends 3 calls of quota and quota-by-key limits of fleetQuotaCalls through
// three nodes, replaces every node, and checks that the new nodes admit only the 2 left.
func testFleetQuotas(t *testing.T) {
	s := newStack(t)
	be := newBackend(t, "main", "")
	policy := func(api, inbound string) {
		s.wsAPI(t, api, api, be.wsURL("/"+api), nil)
		s.handshakePolicy(t, api, "<policies><inbound><base/>"+inbound+"</inbound></policies>")
	}
	policy("quota", fmt.Sprintf(`<quota calls="%d" renewal-period="3600"/>`, fleetQuotaCalls))
	// Periods of quota-by-key count from first-period-start (default 0001-01-01, so on the
	// hour): one that began a minute ago does not end during the test.
	policy("quotakey", fmt.Sprintf(`<quota-by-key calls="%d" renewal-period="3600" counter-key="@(context.Request.IpAddress)" first-period-start="%s"/>`,
		fleetQuotaCalls, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)))
	quotaKey := s.subscription(t, "quota", "/apis/quota", "active")
	allKey := s.subscription(t, "all", "/apis", "active")
	series := []struct {
		name, path, ip string
		header         http.Header
	}{
		{"quota", "/quota", "127.0.0.1", keyHeader(quotaKey)},
		{"quota-by-key", "/quotakey", ipQuotaByKey, keyHeader(allKey)},
	}
	tok := s.token(t, "primary")
	old := s.startNodes(t, "old", 3, nodeOptions{token: tok, env: counterEnv()})
	s.converge(t, 3)
	for _, sr := range series {
		for _, n := range old {
			if status, _, body := handshakeFrom(t, n, sr.ip, sr.path, sr.header); status != http.StatusSwitchingProtocols {
				t.Fatalf("%s: a handshake within the quota on %s: %d %s", sr.name, n.name, status, body)
			}
		}
	}
	noCounterFallback(t, old)
	oldIDs := map[string]bool{}
	for _, n := range s.fleet(t, "").live() {
		oldIDs[n.Name] = true
	}

	restart := time.Now()
	var wg sync.WaitGroup
	for _, n := range old {
		wg.Go(func() { n.stop(t) })
	}
	wg.Wait()
	fresh := s.startNodes(t, "new", 3, nodeOptions{token: tok, env: counterEnv()})
	// The new nodes have joined the fleet once their heartbeats, sent over NATS, are listed.
	eventually(t, 15*time.Second, func() string {
		n := 0
		for _, fn := range s.fleet(t, "").live() {
			if !oldIDs[fn.Name] {
				n++
			}
		}
		if n != 3 {
			return fmt.Sprintf("%d new nodes live, want 3", n)
		}
		return ""
	})
	t.Logf("three nodes stopped and three new ones live in %v", time.Since(restart).Round(time.Millisecond))

	for _, sr := range series {
		t.Run(sr.name, func(t *testing.T) {
			var got []int
			var refusal struct {
				hdr  http.Header
				body string
			}
			for i := range 6 {
				status, hdr, body := handshakeFrom(t, fresh[i%3], sr.ip, sr.path, sr.header)
				got = append(got, status)
				if status == http.StatusForbidden {
					refusal.hdr, refusal.body = hdr, body
				}
			}
			want := []int{101, 101, 403, 403, 403, 403}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("handshakes round-robin on the new nodes after %d of %d calls were spent (-want +got):\n%s", 3, fleetQuotaCalls, diff)
			}
			var e gatewayError
			if err := json.Unmarshal([]byte(refusal.body), &e); err != nil || e.StatusCode != http.StatusForbidden ||
				!regexp.MustCompile(`^Out of call volume quota\. Quota will be replenished in (00:5\d:\d\d|01:00:00)\.$`).MatchString(e.Message) {
				t.Errorf("refusal body %q, want APIM's quota message with about an hour to go", refusal.body)
			}
			if ra, err := strconv.Atoi(refusal.hdr.Get("Retry-After")); err != nil || ra < 3000 || ra > 3600 {
				t.Errorf("Retry-After %q, want about 3600 seconds", refusal.hdr.Get("Retry-After"))
			}
		})
	}
	t.Run("no node counted on its own", func(t *testing.T) { noCounterFallback(t, fresh) })
}

// counterEnv is the environment the nodes of TestFleetCounters get. A rate-limit or quota call
// that waits longer than GATEWAY_COUNTER_TIMEOUT (default 50 ms) for NATS is counted on its
// node alone, and the node keeps counting alone for a second; with every process under the
// race detector on two cores, a KV round trip takes longer than 50 ms often enough to spoil
// the count (docs/fleet.md).
func counterEnv() []string { return []string{"GATEWAY_COUNTER_TIMEOUT=1s"} }

// noCounterFallback fails t for every node that logged counting rate limits and quotas, or
// connections, on its own: the fleet would then admit up to three times a limit.
func noCounterFallback(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		sc := bufio.NewScanner(strings.NewReader(n.log.String()))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			for _, msg := range fallbackLogs {
				if strings.Contains(sc.Text(), msg) {
					t.Errorf("gateway %s counted on its own: %s", n.name, sc.Text())
				}
			}
		}
	}
}

// waitConnectionsShared waits until every node counts connections with the fleet: a session
// held under a limit of 1 on one node makes the others refuse the next. A node answers on its
// own until its watch of the fleet's counts is current, which it starts once it knows NATS.
func waitConnectionsShared(t *testing.T, nodes []*node, key string) {
	t.Helper()
	header := keyHeader(key)
	for i, holder := range nodes {
		var hold *websocket.Conn
		eventually(t, 15*time.Second, func() string {
			c, resp, err := dialerFrom(ipProbe).Dial(holder.ws("/probe"), header)
			if err != nil {
				return fmt.Sprintf("holding the probe on %s: %v (%s)", holder.name, err, describe(resp))
			}
			hold = c
			return ""
		})
		for j, n := range nodes {
			if j == i {
				continue
			}
			eventually(t, 15*time.Second, func() string {
				status, _, body := handshakeFrom(t, n, ipProbe, "/probe", header)
				if status != http.StatusTooManyRequests {
					return fmt.Sprintf("a probe on %s while %s holds the only place: %d %s, want 429", n.name, holder.name, status, body)
				}
				return ""
			})
		}
		_ = hold.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		hold.Close()
	}
}

// dialerFrom is a WebSocket dialer whose connections come from the loopback address ip.
func dialerFrom(ip string) *websocket.Dialer {
	d := dialer
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	d.NetDialContext = nd.DialContext
	return &d
}

// openFrom opens a session through n from ip, failing t unless the handshake succeeds at
// once, and starts watching it; it is closed when t ends.
func openFrom(t *testing.T, n *node, ip, label, path string, header http.Header) *watched {
	t.Helper()
	c, err := dialFrom(n.ws(path), ip, header)
	if err != nil {
		t.Fatalf("%s on %s: %v", label, n.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return watch(c, n.name, label)
}

// dialFrom is dialSession from ip.
func dialFrom(rawURL, ip string, header http.Header) (*websocket.Conn, error) {
	c, resp, err := dialerFrom(ip).Dial(rawURL, header)
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

// handshakeFrom is handshake from ip.
func handshakeFrom(t testing.TB, n *node, ip, path string, header http.Header) (int, http.Header, string) {
	t.Helper()
	c, resp, err := dialerFrom(ip).Dial(n.ws(path), header)
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols, resp.Header, ""
	}
	if resp == nil {
		t.Fatalf("handshake %s on %s: %v", path, n.name, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// closeNormally closes the session with 1000 and waits for the gateway's answer; it returns
// when the answer came.
func (w *watched) closeNormally(t *testing.T) time.Time {
	t.Helper()
	if err := w.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"),
		time.Now().Add(time.Second)); err != nil {
		t.Fatalf("closing %s on %s: %v", w.label, w.node, err)
	}
	if !w.wait(5 * time.Second) {
		t.Fatalf("%s on %s: no answer to the close within 5 s", w.label, w.node)
	}
	return w.closedAt
}

// upgrader sends WebSocket upgrade requests as plain HTTP requests from one loopback address,
// over kept-alive connections: a refusal costs a request rather than a TCP handshake, and a
// 101 takes its connection, which is closed at once.
type upgrader struct {
	client *http.Client
}

func newUpgrader(t *testing.T, ip string) *upgrader {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: nd.DialContext, MaxIdleConnsPerHost: 16, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &upgrader{client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// answer is a response to an upgrade request.
type answer struct {
	status int
	hdr    http.Header
	body   string
}

func (u *upgrader) upgrade(ctx context.Context, n *node, path string, header http.Header) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.http(path), nil)
	if err != nil {
		return answer{}, err
	}
	req.Header = header.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-Websocket-Version", "13")
	req.Header.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := u.client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, hdr: resp.Header}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		a.body = string(b)
	}
	return a, nil
}

// rateRun is what a series of handshakes fired at a rate limit got.
type rateRun struct {
	sent     int
	admitted []time.Duration // when each 101 came, from the start of the series
	perNode  map[string]int  // 101s by node
	limited  int             // 429s
	sample   answer          // a 429
	other    []string        // anything else
	latency  latencies
}

func (r *rateRun) lastAdmitted() time.Duration {
	if len(r.admitted) == 0 {
		return 0
	}
	return slices.Max(r.admitted)
}

// fire sends upgrade requests for path round-robin to nodes, from 3 goroutines per node
// without pause, until stop.
func fire(nodes []*node, u *upgrader, path string, header http.Header, stop time.Time) *rateRun {
	r := &rateRun{perNode: map[string]int{}}
	start := time.Now()
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithDeadline(context.Background(), stop.Add(10*time.Second))
	defer cancel()
	for range 3 * len(nodes) {
		wg.Go(func() {
			for time.Now().Before(stop) {
				n := nodes[int(next.Add(1)-1)%len(nodes)]
				sent := time.Now()
				a, err := u.upgrade(ctx, n, path, header)
				took := time.Since(sent)
				mu.Lock()
				r.sent++
				r.latency = append(r.latency, took)
				switch {
				case err != nil:
					r.other = append(r.other, fmt.Sprintf("%s: %v", n.name, err))
				case a.status == http.StatusSwitchingProtocols:
					r.admitted = append(r.admitted, time.Since(start))
					r.perNode[n.name]++
				case a.status == http.StatusTooManyRequests:
					r.limited++
					r.sample = a
				default:
					r.other = append(r.other, fmt.Sprintf("%s: %d %s", n.name, a.status, a.body))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return r
}
