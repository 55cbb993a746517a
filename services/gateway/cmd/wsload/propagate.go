package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"gatehouse.dev/gateway/internal/wsbench"
)

// runPropagate measures scenario (e): it suspends and reactivates a subscription through
// management's ARM API, and after each write's 2xx probes every node with upgrades carrying
// the subscription's key until all of them enforce the new state (401 once suspended, 101
// once active again). The time from the 2xx to the last node enforcing is one sample.
//
// With -hold N (scenarios (h) and (i)) it also opens N sessions with the key on every node
// before each suspension; the time from the 2xx to the last of them closed with 1008 is a
// sample of the revocation's latency (revoke_p50_ms, revoke_p99_ms).
func runPropagate(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload propagate", flag.ContinueOnError)
	var tf targetFlags
	tf.register(fs)
	mgmt := fs.String("management-url", "http://127.0.0.1:8080", "management base URL")
	token := fs.String("token", "", "management admin bearer token")
	sub := fs.String("subscription", "", "ARM path of the subscription to toggle (…/service/{name}/subscriptions/{sid})")
	nodes := fs.String("nodes", "", "comma-separated ws:// URLs of the API on each gateway node")
	n := fs.Int("n", 20, "writes to time")
	timeout := fs.Duration("timeout", 10*time.Second, "longest wait for a write to be enforced everywhere")
	hold := fs.Int("hold", 0, "sessions per node opened with the key before each suspension, to time their revocation")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" || *nodes == "" || *token == "" || *n <= 0 {
		return errors.New("propagate: -token, -subscription, -nodes and -n > 0 are required")
	}
	var targets []wsbench.Target
	for u := range strings.SplitSeq(*nodes, ",") {
		t, err := tf.target(strings.TrimSpace(u))
		if err != nil {
			return err
		}
		targets = append(targets, t)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	setState := func(state string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, *mgmt+*sub+"?api-version=2024-05-01",
			strings.NewReader(`{"properties":{"state":"`+state+`"}}`))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+*token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("If-Match", "*")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("PATCH state=%s answered %d: %s", state, resp.StatusCode, body)
		}
		return nil
	}

	var lat, revoked wsbench.Latencies
	for i := range *n {
		state, want := "suspended", http.StatusUnauthorized
		if i%2 == 1 {
			state, want = "active", http.StatusSwitchingProtocols
		}
		var closed func() (time.Time, error)
		if want == http.StatusUnauthorized && *hold > 0 {
			var err error
			if closed, err = holdSessions(ctx, targets, *hold, *timeout); err != nil {
				return fmt.Errorf("write %d: opening the sessions to revoke: %w", i+1, err)
			}
		}
		if err := setState(state); err != nil {
			return err
		}
		acked := time.Now()
		d, err := enforced(ctx, targets, want, acked.Add(*timeout))
		if err != nil {
			return fmt.Errorf("write %d (state %s): %w", i+1, state, err)
		}
		lat = append(lat, d.Sub(acked))
		if closed != nil {
			last, err := closed()
			if err != nil {
				return fmt.Errorf("write %d (state %s): %w", i+1, state, err)
			}
			revoked = append(revoked, max(last.Sub(acked), 0)) // a close may beat the 2xx to us
		}
	}
	if *n%2 == 1 {
		if err := setState("active"); err != nil {
			return err
		}
	}
	lat.Sort()
	fmt.Fprintf(out, "writes=%d nodes=%d p50_ms=%s p99_ms=%s max_ms=%s", len(lat), len(targets),
		ms(lat.Quantile(0.5)), ms(lat.Quantile(0.99)), ms(lat.Quantile(1)))
	if len(revoked) > 0 {
		revoked.Sort()
		fmt.Fprintf(out, " revocations=%d sessions=%d revoke_p50_ms=%s revoke_p99_ms=%s revoke_max_ms=%s", len(revoked),
			*hold*len(targets), ms(revoked.Quantile(0.5)), ms(revoked.Quantile(0.99)), ms(revoked.Quantile(1)))
	}
	fmt.Fprintln(out)
	return nil
}

// holdSessions opens n sessions on every target and starts waiting for each to be closed. The
// function it returns waits until all are closed and returns when the last was; it fails if one
// ends without a close frame with code 1008 (traffic.CloseRevoked) or is still open after
// timeout from then.
func holdSessions(ctx context.Context, targets []wsbench.Target, n int, timeout time.Duration) (func() (time.Time, error), error) {
	var conns []*wsbench.Conn
	for _, t := range targets {
		for range n {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c, err := wsbench.Dial(dctx, t)
			cancel()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return nil, fmt.Errorf("%s: %w", t.URL.Host, err)
			}
			conns = append(conns, c)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	at := make([]time.Time, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			defer c.Close()
			code, err := c.AwaitClose(wctx)
			at[i] = time.Now()
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("a session to revoke ended without a close frame: %w", err)
			case code != closeRevoked:
				errs[i] = fmt.Errorf("a session to revoke was closed with %d, want %d", code, closeRevoked)
			}
		})
	}
	return func() (time.Time, error) {
		timer := time.AfterFunc(timeout, cancel)
		defer timer.Stop()
		wg.Wait()
		cancel()
		var last time.Time
		for i := range conns {
			if errs[i] != nil {
				return time.Time{}, errs[i]
			}
			if at[i].After(last) {
				last = at[i]
			}
		}
		return last, nil
	}, nil
}

// closeRevoked is the close code of a revoked session (traffic.CloseRevoked: the load
// generator does not import the gateway's packages beyond the frame codec).
const closeRevoked = 1008

// enforced probes every target until each answers an upgrade with status want and returns
// when the last one did.
func enforced(ctx context.Context, targets []wsbench.Target, want int, deadline time.Time) (time.Time, error) {
	seen := make([]time.Time, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			for {
				got, err := probe(ctx, t)
				if err == nil && got == want {
					seen[i] = time.Now()
					return
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					errs[i] = fmt.Errorf("%s answered %d (%v), want %d", t.URL.Host, got, err, want)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	var last time.Time
	for i := range targets {
		if errs[i] != nil {
			return time.Time{}, errs[i]
		}
		if seen[i].After(last) {
			last = seen[i]
		}
	}
	return last, nil
}

// probe upgrades once and returns the status: 101 (the connection is closed at once) or the
// refusal's.
func probe(ctx context.Context, t wsbench.Target) (int, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := wsbench.Dial(pctx, t)
	if err == nil {
		c.Close()
		return http.StatusSwitchingProtocols, nil
	}
	if se, ok := errors.AsType[*wsbench.StatusError](err); ok {
		return se.Status, nil
	}
	return 0, err
}
