package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// revocationRounds is how many times each kind of revocation runs; with seven kinds that is
// 35 measured revocations.
const revocationRounds = 5

// TestFleetRevocation checks live revocation across three nodes (docs/design.md §4): with sessions of
// several subscriptions and APIs open on every node, each way of withdrawing access closes
// exactly the sessions it concerns, on every node, with 1008 and a reason naming the cause,
// while the others carry on. It measures the time from management's 2xx to the close seen on
// the last node.
//
// It does not run in parallel with other tests, so that the measurement is of this machine,
// not of the tests around it.
func TestFleetRevocation(t *testing.T) {
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "shared", "shared", be.wsURL("/shared"), nil)
	s.wsAPI(t, "keep", "keep", be.wsURL("/keep"), nil)
	keeperKey := s.subscription(t, "keeper", "/apis", "active")

	// A kind of revocation: how to prepare round r (returning the path and key of the sessions
	// it will revoke), how to revoke it, and the close reason the clients must get.
	type kind struct {
		name    string
		prepare func(r int) (path, key string)
		revoke  func(r int)
		reason  func(r int) string
	}
	patchState := func(sub, state string) {
		s.must(t, []int{200}, http.MethodPatch, "/subscriptions/"+sub, map[string]any{"properties": map[string]any{"state": state}}, "If-Match", "*")
	}
	fixed := func(reason string) func(int) string { return func(int) string { return reason } }
	kinds := []kind{
		{"key regenerated",
			func(r int) (string, string) {
				return "/shared", s.subscription(t, fmt.Sprint("regen-", r), "/apis/shared", "active")
			},
			func(r int) {
				s.must(t, []int{200, 204}, http.MethodPost, fmt.Sprint("/subscriptions/regen-", r, "/regeneratePrimaryKey"), nil)
			},
			fixed("subscription key revoked")},
		{"subscription suspended",
			func(r int) (string, string) {
				return "/shared", s.subscription(t, fmt.Sprint("susp-", r), "/apis/shared", "active")
			},
			func(r int) { patchState(fmt.Sprint("susp-", r), "suspended") },
			fixed("subscription suspended")},
		{"subscription cancelled",
			func(r int) (string, string) {
				return "/shared", s.subscription(t, fmt.Sprint("cancel-", r), "/apis", "active")
			},
			func(r int) { patchState(fmt.Sprint("cancel-", r), "cancelled") },
			fixed("subscription cancelled")},
		{"subscription deleted",
			func(r int) (string, string) {
				return "/shared", s.subscription(t, fmt.Sprint("del-", r), "/apis/shared", "active")
			},
			func(r int) {
				s.must(t, []int{200, 204}, http.MethodDelete, fmt.Sprint("/subscriptions/del-", r), nil, "If-Match", "*")
			},
			fixed("subscription key revoked")},
		{"API deleted",
			func(r int) (string, string) {
				name := fmt.Sprint("delapi-", r)
				s.wsAPI(t, name, name, be.wsURL("/"+name), nil)
				return "/" + name, keeperKey
			},
			func(r int) {
				s.must(t, []int{200, 204}, http.MethodDelete, fmt.Sprint("/apis/delapi-", r), nil, "If-Match", "*")
			},
			fixed("API removed from this gateway")},
		{"API unlinked from the gateway",
			func(r int) (string, string) {
				name := fmt.Sprint("unlink-", r)
				s.wsAPI(t, name, name, be.wsURL("/"+name), nil)
				return "/" + name, keeperKey
			},
			func(r int) {
				s.must(t, []int{200, 204}, http.MethodDelete, fmt.Sprint("/gateways/gw/apis/unlink-", r), nil)
			},
			fixed("API removed from this gateway")},
		{"API removed from the product",
			func(r int) (string, string) {
				prod := fmt.Sprint("prod-", r)
				s.put(t, "/products/"+prod, map[string]any{"displayName": prod, "subscriptionRequired": true, "state": "published"})
				s.must(t, []int{200, 201}, http.MethodPut, "/products/"+prod+"/apis/shared", nil)
				return "/shared", s.subscription(t, fmt.Sprint("prodsub-", r), "/products/"+prod, "active")
			},
			func(r int) {
				s.must(t, []int{200, 204}, http.MethodDelete, fmt.Sprint("/products/prod-", r, "/apis/shared"), nil)
			},
			func(r int) string { return fmt.Sprint("API removed from product prod-", r) }},
	}

	type round struct {
		kind     *kind
		r        int
		sessions []*watched // one per node
	}
	var rounds []*round
	for r := range revocationRounds {
		for i := range kinds {
			rounds = append(rounds, &round{kind: &kinds[i], r: r})
		}
	}
	paths, keys := make([]string, len(rounds)), make([]string, len(rounds))
	for i, rd := range rounds {
		paths[i], keys[i] = rd.kind.prepare(rd.r)
	}
	nodes := s.startNodes(t, "gw", 3, nodeOptions{})
	s.converge(t, len(nodes))

	var keepers []*watched
	for _, n := range nodes {
		keepers = append(keepers, watchSession(t, n, "keeper on /shared", "/shared", keyHeader(keeperKey)),
			watchSession(t, n, "keeper on /keep", "/keep", keyHeader(keeperKey)))
		for i, rd := range rounds {
			rd.sessions = append(rd.sessions, watchSession(t, n, fmt.Sprintf("%s #%d", rd.kind.name, rd.r), paths[i], keyHeader(keys[i])))
		}
	}

	var all latencies
	byKind := map[string]latencies{}
	for i, rd := range rounds {
		for _, w := range rd.sessions {
			if w.closed() {
				t.Fatalf("%s on %s ended before its revocation: %s", w.label, w.node, w.describeClose())
			}
		}
		rd.kind.revoke(rd.r)
		acked := time.Now()
		var last time.Time
		for _, w := range rd.sessions {
			if !w.wait(10 * time.Second) {
				t.Fatalf("%s on %s: still open 10 s after the revocation", w.label, w.node)
			}
			if want := rd.kind.reason(rd.r); w.code != websocket.ClosePolicyViolation || w.reason != want {
				t.Errorf("%s on %s: %s, want close %d %q", w.label, w.node, w.describeClose(), websocket.ClosePolicyViolation, want)
			}
			if w.closedAt.After(last) {
				last = w.closedAt
			}
		}
		lat := max(last.Sub(acked), 0)
		all = append(all, lat)
		byKind[rd.kind.name] = append(byKind[rd.kind.name], lat)
		// Nothing else was touched: the sessions of later rounds and the keepers are open.
		for _, later := range rounds[i+1:] {
			for _, w := range later.sessions {
				if w.closed() {
					t.Fatalf("after %s #%d: %s on %s ended too: %s", rd.kind.name, rd.r, w.label, w.node, w.describeClose())
				}
			}
		}
		// The keepers, on every node, still relay.
		for _, w := range keepers {
			if err := w.echo(fmt.Sprintf("after %s #%d", rd.kind.name, rd.r), 5*time.Second); err != nil {
				t.Fatalf("after %s #%d: %v", rd.kind.name, rd.r, err)
			}
		}
	}

	for _, k := range kinds {
		t.Logf("%-30s %v", k.name, byKind[k.name])
	}
	t.Logf("revocation, management's 2xx → close on the last of %d nodes: %v (race detector: %v)", len(nodes), all, raceEnabled)
	if bound := latencyBound(time.Second); all.quantile(0.99) >= bound {
		t.Errorf("p99 %v, want below %v", all.quantile(0.99), bound)
	}
}
