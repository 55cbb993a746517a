package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

type propagateConfig struct {
	shape
	managementURL string
	adminToken    string
	gatewayURL    string
	n             int
	pause         time.Duration
	timeout       time.Duration
}

func parsePropagateConfig(args []string) (propagateConfig, error) {
	var c propagateConfig
	fs := flag.NewFlagSet("seedscale propagate", flag.ContinueOnError)
	c.flags(fs)
	fs.StringVar(&c.managementURL, "management-url", env("MANAGEMENT_URL", "http://127.0.0.1:8080"), "management URL (MANAGEMENT_URL)")
	fs.StringVar(&c.adminToken, "admin-token", env("MANAGEMENT_ADMIN_TOKEN", ""), "management's admin bearer token (MANAGEMENT_ADMIN_TOKEN)")
	fs.StringVar(&c.gatewayURL, "gateway-url", "", "the gateway's traffic URL")
	fs.IntVar(&c.n, "n", 20, "changes to time, one subscription each")
	fs.DurationVar(&c.pause, "pause", 500*time.Millisecond, "wait before each change")
	fs.DurationVar(&c.timeout, "timeout", time.Minute, "give up on a change after this long")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.gatewayURL == "" || c.adminToken == "" {
		return c, errors.New("-gateway-url and MANAGEMENT_ADMIN_TOKEN are required")
	}
	return c, c.check()
}

// propagate suspends c.n subscriptions of single-API scope, spread over the seeded ones, one at
// a time: for each it checks that the gateway accepts the key (any answer but 401), PATCHes
// the subscription's state to suspended through the ARM API, handshakes with the key until the
// gateway answers 401, and makes the subscription active again (untimed), so that a run can
// be repeated. It returns one line of results: the time from sending the PATCH to the first
// 401 (p50, p99, max), the PATCH's own latency (management's write), and the time from the
// PATCH's response to the first 401 (relay, NATS and the gateway).
func propagate(ctx context.Context, c propagateConfig, log *slog.Logger) (string, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	var total, write, after []time.Duration
	for k := range c.n {
		i := c.sample(k)
		key, err := c.primaryKey(ctx, client, subName(i))
		if err != nil {
			return "", err
		}
		path := "/" + apiPath(i%c.apis)
		code, err := handshake(ctx, client, c.gatewayURL+path, key)
		if err != nil {
			return "", err
		}
		if code == http.StatusUnauthorized {
			return "", fmt.Errorf("the gateway refuses %s before the change (401 on %s)", subName(i), path)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(c.pause):
		}
		start := time.Now()
		if err := c.setState(ctx, client, subName(i), "suspended"); err != nil {
			return "", err
		}
		wrote := time.Since(start)
		for {
			code, err := handshake(ctx, client, c.gatewayURL+path, key)
			if err != nil {
				return "", err
			}
			if code == http.StatusUnauthorized {
				break
			}
			if time.Since(start) > c.timeout {
				return "", fmt.Errorf("%s still accepted %s after suspending it", c.gatewayURL, subName(i))
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		log.Info("change enforced", "subscription", subName(i), "patch_ms", ms(wrote), "enforced_ms", ms(took))
		total, write, after = append(total, took), append(write, wrote), append(after, took-wrote)
		// Leave the database as seeded, so that a run can be repeated.
		if err := c.setState(ctx, client, subName(i), "active"); err != nil {
			return "", err
		}
	}
	for _, d := range [][]time.Duration{total, write, after} {
		slices.Sort(d)
	}
	return fmt.Sprintf("changes=%d enforced_p50_ms=%.1f enforced_p99_ms=%.1f enforced_max_ms=%.1f patch_p50_ms=%.1f patch_p99_ms=%.1f after_patch_p50_ms=%.1f after_patch_p99_ms=%.1f",
		len(total), ms(pct(total, 0.5)), ms(pct(total, 0.99)), ms(total[len(total)-1]), ms(pct(write, 0.5)), ms(pct(write, 0.99)),
		ms(pct(after, 0.5)), ms(pct(after, 0.99))), nil
}

// sample is the k-th subscription to suspend: spread over all of them, of single-API scope.
func (c *propagateConfig) sample(k int) int {
	i := (k*c.subscriptions/c.n)/10*10 + 4 + k%6
	return min(i, c.subscriptions-1)
}

func (c *propagateConfig) arm(ctx context.Context, client *http.Client, method, path, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.managementURL, "/")+c.armPath()+path+"?api-version=2024-05-01",
		bytes.NewBufferString(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("If-Match", "*")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode >= 300 {
		err = fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out, err
}

func (c *propagateConfig) primaryKey(ctx context.Context, client *http.Client, sub string) (string, error) {
	out, err := c.arm(ctx, client, http.MethodPost, "/subscriptions/"+sub+"/listSecrets", "")
	if err != nil {
		return "", err
	}
	var keys struct {
		PrimaryKey string `json:"primaryKey"`
	}
	if err := json.Unmarshal(out, &keys); err != nil || keys.PrimaryKey == "" {
		return "", fmt.Errorf("listSecrets of %s: %q", sub, out)
	}
	return keys.PrimaryKey, nil
}

func (c *propagateConfig) setState(ctx context.Context, client *http.Client, sub, state string) error {
	_, err := c.arm(ctx, client, http.MethodPatch, "/subscriptions/"+sub, `{"properties":{"state":"`+state+`"}}`)
	return err
}

// handshake sends a WebSocket upgrade request with key and returns the status. The seeded
// backend refuses connections, so an accepted key gets a 5xx rather than 101; a 101 is closed.
func handshake(ctx context.Context, client *http.Client, url, key string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails on supported platforms
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(nonce))
	req.Header.Set("Ocp-Apim-Subscription-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
