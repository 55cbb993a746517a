package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// propagationWrites is how many enforcement-changing writes each measured series makes.
const propagationWrites = 60

// prober asks nodes whether they let a handshake through, over one kept-alive connection per
// node, so a probe costs a request and not a TCP handshake.
type prober struct {
	client *http.Client
}

func newProber(t *testing.T) *prober {
	tr := &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &prober{client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// status sends a WebSocket upgrade request for path to n with header and returns the status:
// the probe API's policy answers 200 instead of dialing the backend once the key and checks
// pass, so no session opens.
func (p *prober) status(n *node, path string, header http.Header) (int, error) {
	req, err := http.NewRequest(http.MethodGet, n.http(path), nil)
	if err != nil {
		return 0, err
	}
	req.Header = header.Clone()
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-Websocket-Version", "13")
	req.Header.Set("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestFleetPropagation measures how long a write that changes enforcement takes to be enforced
// by every one of five nodes, and checks that management's waitForRevision=latest answers
// Gatehouse-Converged: true only once every node applied the write.
//
// It does not run in parallel with other tests, so that the measurement is of this machine.
func TestFleetPropagation(t *testing.T) {
	s := newStack(t)
	be := newBackend(t, "main", "")
	s.wsAPI(t, "probe", "probe", be.wsURL("/probe"), nil)
	setHeaderCheck := func(t testing.TB, value string) {
		s.handshakePolicy(t, "probe", `<policies><inbound><base/>
			<check-header name="X-Probe" failed-check-httpcode="403" failed-check-error-message="wrong probe" ignore-case="false"><value>`+value+`</value></check-header>
			<return-response><set-status code="200" reason="OK"/></return-response></inbound></policies>`)
	}
	setHeaderCheck(t, "v0")
	key := s.subscription(t, "toggled", "/apis/probe", "active")
	nodes := s.startNodes(t, "gw", 5, nodeOptions{})
	s.converge(t, len(nodes))
	p := newProber(t)
	withProbe := func(v string) http.Header { return http.Header{"Ocp-Apim-Subscription-Key": {key}, "X-Probe": {v}} }

	// enforced waits until every node answers want to path with header and returns how long
	// after since the last node did.
	enforced := func(t *testing.T, since time.Time, header http.Header, want int) time.Duration {
		t.Helper()
		seen := make([]time.Time, len(nodes))
		errs := make([]string, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			wg.Go(func() {
				// A hand-rolled poll, not testwait: it runs off the test goroutine, which alone
				// may fail t, and times each node's propagation to the millisecond.
				deadline := time.Now().Add(propagation)
				for {
					got, err := p.status(n, "/probe", header)
					if err == nil && got == want {
						seen[i] = time.Now()
						return
					}
					if time.Now().After(deadline) {
						errs[i] = fmt.Sprintf("%s: answered %d (%v) %v after the write, want %d", n.name, got, err, propagation, want)
						return
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		wg.Wait()
		var last time.Time
		for i := range nodes {
			if errs[i] != "" {
				t.Fatal(errs[i])
			}
			if seen[i].After(last) {
				last = seen[i]
			}
		}
		return max(last.Sub(since), 0)
	}

	// The writes of a series alternate between two enforcement states.
	series := []struct {
		name  string
		write func(t *testing.T, i int)
		probe func(i int) (http.Header, int) // a request and what every node must answer after write i
	}{
		{"subscription suspended / reactivated",
			func(t *testing.T, i int) {
				state := map[bool]string{true: "suspended", false: "active"}[i%2 == 0]
				s.must(t, []int{200}, http.MethodPatch, "/subscriptions/toggled", map[string]any{"properties": map[string]any{"state": state}}, "If-Match", "*")
			},
			func(i int) (http.Header, int) {
				return withProbe("v0"), map[bool]int{true: http.StatusUnauthorized, false: http.StatusOK}[i%2 == 0]
			}},
		{"check-header value changed",
			func(t *testing.T, i int) { setHeaderCheck(t, fmt.Sprint("v", i+1)) },
			func(i int) (http.Header, int) { return withProbe(fmt.Sprint("v", i+1)), http.StatusOK }},
	}
	for _, sr := range series {
		t.Run(sr.name, func(t *testing.T) {
			var lat latencies
			for i := range propagationWrites {
				sr.write(t, i)
				acked := time.Now()
				hdr, want := sr.probe(i)
				lat = append(lat, enforced(t, acked, hdr, want))
			}
			t.Logf("%s: management's 2xx → enforced on all %d nodes: %v (race detector: %v)", sr.name, len(nodes), lat, raceEnabled)
			if bound := latencyBound(time.Second); lat.quantile(0.99) > bound {
				t.Errorf("p99 %v, want at most %v", lat.quantile(0.99), bound)
			}
		})
	}

	t.Run("waitForRevision=latest", func(t *testing.T) {
		// The probe stands at check-header value v60 and an active subscription.
		var lat latencies
		for i := range 20 {
			value := fmt.Sprint("w", i)
			setHeaderCheck(t, value)
			acked := time.Now()
			v := s.fleet(t, "waitForRevision=latest&timeout=10s")
			lat = append(lat, time.Since(acked))
			if v.converged != "true" || len(v.live()) != len(nodes) {
				t.Fatalf("write %d: Gatehouse-Converged %q with %d live nodes, want true with %d", i, v.converged, len(v.live()), len(nodes))
			}
			for _, fn := range v.nodes {
				if fn.Properties.Revision < v.revision {
					t.Errorf("write %d: converged, yet node %s reports revision %d < %d", i, fn.Name, fn.Properties.Revision, v.revision)
				}
			}
			// Converged means enforced: no node may still answer by the old value.
			for _, n := range nodes {
				if got, err := p.status(n, "/probe", withProbe(value)); err != nil || got != http.StatusOK {
					t.Errorf("write %d: converged, yet %s answered %d (%v) to the new value, want 200", i, n.name, got, err)
				}
			}
		}
		t.Logf("management's 2xx → waitForRevision=latest answered converged: %v", lat)

		// A node that cannot apply a write holds convergence up.
		frozen := nodes[len(nodes)-1]
		if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		thawed := false
		thaw := func() {
			if !thawed {
				thawed = true
				_ = frozen.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
		defer thaw()
		setHeaderCheck(t, "frozen")
		v := s.fleet(t, "waitForRevision=latest&timeout=1s")
		var behind []string
		for _, fn := range v.live() {
			if fn.Properties.Revision < v.revision {
				behind = append(behind, fn.Name)
			}
		}
		if v.converged != "false" || len(v.live()) != len(nodes) || len(behind) != 1 {
			t.Errorf("with %s stopped: Gatehouse-Converged %q, %d live nodes, %d behind revision %d; want false, %d live, 1 behind",
				frozen.name, v.converged, len(v.live()), len(behind), v.revision, len(nodes))
		}
		for _, n := range nodes[:len(nodes)-1] {
			if got, err := p.status(n, "/probe", withProbe("frozen")); err != nil || got != http.StatusOK {
				t.Errorf("%s answered %d (%v) to the new value, want 200", n.name, got, err)
			}
		}
		thaw()
		v = s.fleet(t, "waitForRevision=latest&timeout=10s")
		if v.converged != "true" {
			t.Errorf("after %s resumed: Gatehouse-Converged %q, want true", frozen.name, v.converged)
		}
		if got, err := p.status(frozen, "/probe", withProbe("frozen")); err != nil || got != http.StatusOK {
			t.Errorf("%s after it resumed and converged: %d (%v), want 200", frozen.name, got, err)
		}
	})
}
