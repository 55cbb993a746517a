package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gatehouse.dev/gateway/internal/wsbench"
)

// runREST measures scenario (g) with wrk: -threads threads and -conns keep-alive connections
// send GET -url for -warmup (unmeasured), then again for -duration with --latency. With -pid it
// reads that process tree's CPU time before and after the measured run, as the other modes do.
// It prints "requests=… per_s=… p50_ms=… p99_ms=… non2xx=… socket_errors=…" and fails on any
// error response or socket error: a 401 is quick, and a run that counted them would flatter.
func runREST(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload rest", flag.ContinueOnError)
	url := fs.String("url", "", "http:// URL to GET")
	var hs headers
	fs.Var(&hs, "header", `"Name: value" added to each request (repeatable)`)
	conns := fs.Int("conns", 64, "keep-alive connections")
	threads := fs.Int("threads", 2, "wrk threads")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured run before the measured one (0: none)")
	duration := fs.Duration("duration", 10*time.Second, "measured run")
	pid := fs.Int("pid", 0, "process (with descendants) whose CPU time over the measured run is reported: the proxy")
	wrk := fs.String("wrk", "wrk", "the wrk binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !strings.HasPrefix(*url, "http://") || *conns <= 0 || *threads <= 0 || *duration < time.Second {
		return errors.New("rest: want an http:// -url, -conns and -threads > 0, and a -duration of at least 1s (wrk's unit)")
	}
	wrkArgs := func(d time.Duration, latency bool) []string {
		a := []string{"-t", strconv.Itoa(*threads), "-c", strconv.Itoa(*conns), "-d", strconv.Itoa(int(d.Seconds())) + "s"}
		if latency {
			a = append(a, "--latency")
		}
		for _, h := range hs {
			a = append(a, "-H", h)
		}
		return append(a, *url)
	}
	if *warmup >= time.Second {
		if _, err := runWrk(ctx, *wrk, wrkArgs(*warmup, false)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	var before time.Duration
	if *pid > 0 {
		var err error
		if before, err = wsbench.TreeCPU(*pid); err != nil {
			return err
		}
	}
	res, err := runWrk(ctx, *wrk, wrkArgs(*duration, true))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "conns=%d threads=%d requests=%d per_s=%.0f p50_ms=%s p99_ms=%s non2xx=%d socket_errors=%d",
		*conns, *threads, res.Requests, res.PerSecond, ms(res.P50), ms(res.P99), res.Non2xx, res.SocketErrors)
	if *pid > 0 && res.Requests > 0 {
		after, err := wsbench.TreeCPU(*pid)
		if err != nil {
			return err
		}
		cpu := after - before
		fmt.Fprintf(out, " cpu_s=%.2f cpu_us_per_op=%.1f", cpu.Seconds(), float64(cpu.Microseconds())/float64(res.Requests))
	}
	fmt.Fprintln(out)
	if res.Non2xx > 0 || res.SocketErrors > 0 {
		return fmt.Errorf("%d error responses and %d socket errors in %d requests", res.Non2xx, res.SocketErrors, res.Requests)
	}
	return nil
}

// runWrk runs wrk and parses its report.
func runWrk(ctx context.Context, wrk string, args []string) (wsbench.WrkResult, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, wrk, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return wsbench.WrkResult{}, fmt.Errorf("%s: %w: %s", wrk, err, strings.TrimSpace(stderr.String()))
	}
	return wsbench.ParseWrk(stdout.String())
}

// runCerts writes the certificates of the wss scenario (f) into -dir: ca.pem, cert.pem,
// key.pem, and cert+key.pem (both in one file, as HAProxy wants them).
func runCerts(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload certs", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write into (created if missing)")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "comma-separated IP addresses and names the server certificate is for")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("certs: -dir is required")
	}
	c, err := wsbench.GenerateCerts(strings.Split(*hosts, ","))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"ca.pem": c.CA, "cert.pem": c.Cert, "key.pem": c.Key,
		"cert+key.pem": append(append([]byte{}, c.Cert...), c.Key...)} {
		if err := os.WriteFile(filepath.Join(*dir, name), b, 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "dir=%s\n", *dir)
	return nil
}
