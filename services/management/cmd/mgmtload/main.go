// Command mgmtload measures management's API throughput and latency: concurrent workers GET or
// PUT APIs of one service for a while, then it prints requests per second and p50/p99/max
// latency. scripts/bench-management.sh runs it against a fresh management and database.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080", "management URL")
	token := flag.String("token", "dev-admin-token", "admin bearer token")
	mode := flag.String("mode", "get", "get or put")
	workers := flag.Int("workers", 16, "concurrent workers")
	dur := flag.Duration("duration", 10*time.Second, "how long to run")
	apis := flag.Int("apis", 100, "number of APIs to spread requests over")
	flag.Parse()
	if err := run(*base, *token, *mode, *workers, *dur, *apis); err != nil {
		fmt.Fprintln(os.Stderr, "mgmtload:", err)
		os.Exit(1)
	}
}

const svc = "/subscriptions/bench/resourceGroups/bench/providers/Microsoft.ApiManagement/service/bench"

func run(base, token, mode string, workers int, dur time.Duration, apis int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
	do := func(method, path, body string) (int, error) {
		req, err := http.NewRequest(method, base+svc+path+"?api-version=2024-05-01", bytes.NewBufferString(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	apiBody := func(i, n int) string {
		return fmt.Sprintf(`{"properties":{"displayName":"Bench %d rev %d","type":"websocket","path":"bench/%d","serviceUrl":"wss://backend.example.com/%d","protocols":["wss"]}}`, i, n, i, i)
	}
	if code, err := do("PUT", "", `{"location":"local","sku":{"name":"Developer","capacity":1},"properties":{"publisherEmail":"b@example.com","publisherName":"Bench"}}`); err != nil || code >= 300 {
		return fmt.Errorf("create service: %d %v", code, err)
	}
	for i := 0; i < apis; i++ {
		if code, err := do("PUT", fmt.Sprintf("/apis/api%d", i), apiBody(i, 0)); err != nil || code >= 300 {
			return fmt.Errorf("seed api %d: %d %v", i, code, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var mine []time.Duration
			for n := 0; ctx.Err() == nil; n++ {
				i := (w*7919 + n) % apis
				t := time.Now()
				var code int
				var err error
				if mode == "put" {
					code, err = do("PUT", fmt.Sprintf("/apis/api%d", i), apiBody(i, n+1))
				} else {
					code, err = do("GET", fmt.Sprintf("/apis/api%d", i), "")
				}
				if err != nil || code >= 300 {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return fmt.Errorf("no successful requests (%d errors)", errs.Load())
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(float64(len(lat))*p))] }
	fmt.Printf("%-4s workers=%d requests=%d errors=%d rate=%.0f/s p50=%.2fms p99=%.2fms max=%.2fms\n",
		mode, workers, len(lat), errs.Load(), float64(len(lat))/elapsed.Seconds(),
		ms(pct(0.50)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
