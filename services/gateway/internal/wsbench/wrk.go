package wsbench

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one run of wrk (the HTTP load generator of the REST scenario, make bench
// (g)) printed.
type WrkResult struct {
	Requests  int64   // completed requests
	PerSecond float64 // wrk's Requests/sec
	// P50 and P99 come from the latency distribution of wrk --latency; zero without it.
	P50, P99 time.Duration
	// Non2xx counts responses with a status of 400 or more ("Non-2xx or 3xx responses").
	Non2xx int64
	// SocketErrors sums connect, read, write and timeout errors.
	SocketErrors int64
}

var (
	wrkRequests  = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkPerSecond = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkNon2xx    = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	wrkSocket    = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkQuantile  = regexp.MustCompile(`(?m)^\s*(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m)\s*$`)
)

// ParseWrk reads wrk's report. The request count and rate are required; the rest is zero when
// absent (wrk prints error lines only when there were errors).
func ParseWrk(out string) (WrkResult, error) {
	var r WrkResult
	m := wrkRequests.FindStringSubmatch(out)
	p := wrkPerSecond.FindStringSubmatch(out)
	if m == nil || p == nil {
		return r, fmt.Errorf("no request count or rate in wrk's output %q", strings.TrimSpace(out))
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	r.PerSecond, _ = strconv.ParseFloat(p[1], 64)
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	for _, m := range wrkQuantile.FindAllStringSubmatch(out, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return r, fmt.Errorf("wrk latency %q: %w", m[0], err)
		}
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	return r, nil
}
