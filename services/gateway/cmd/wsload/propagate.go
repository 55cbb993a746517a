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

	var lat wsbench.Latencies
	for i := range *n {
		state, want := "suspended", http.StatusUnauthorized
		if i%2 == 1 {
			state, want = "active", http.StatusSwitchingProtocols
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
	}
	if *n%2 == 1 {
		if err := setState("active"); err != nil {
			return err
		}
	}
	lat.Sort()
	fmt.Fprintf(out, "writes=%d nodes=%d p50_ms=%s p99_ms=%s max_ms=%s\n", len(lat), len(targets),
		ms(lat.Quantile(0.5)), ms(lat.Quantile(0.99)), ms(lat.Quantile(1)))
	return nil
}

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
