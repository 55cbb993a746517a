// Command wsload is the load generator of the WebSocket benchmark (make bench, scripts/bench):
//
//	wsload echo      -url ws://… [-conns 1000] [-size 256] [-warmup 2s] [-duration 10s]
//	wsload handshake -url ws://… [-workers 16] [-warmup 1s] [-duration 10s]
//	wsload idle      -url ws://… -pid PID [-conns 8000] [-settle 5s]
//	wsload hold      -url ws://… [-conns 5000]   (open, report, hold until SIGTERM, check)
//	wsload propagate -management-url URL -token T -subscription PATH -nodes ws://…,ws://… [-n 20] [-hold 0]
//	wsload rest      -url http://… [-conns 64] [-threads 2] [-warmup 2s] [-duration 10s]   (runs wrk)
//	wsload certs     -dir DIR [-hosts 127.0.0.1,localhost]
//	wsload report    [-in samples.tsv]
//
// Every mode that connects takes -header "Name: value" (repeatable) and -jwt-key (a base64
// HMAC key: each upgrade then carries "Authorization: Bearer" and an HS256 token signed with
// it), and for wss:// URLs -ca (the PEM CA to trust: TLS 1.3, X25519, no session resumption;
// wsbench.TLSConfig). A measuring mode prints one line of name=value figures on stdout; report
// prints the markdown tables of a run's samples (internal/wsbench).
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"gatehouse.dev/gateway/internal/wsbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: wsload echo|handshake|idle|hold|propagate|rest|certs|report [flags]")
	}
	mode, args := args[0], args[1:]
	switch mode {
	case "echo":
		return runEcho(ctx, args, out)
	case "handshake":
		return runHandshake(ctx, args, out)
	case "idle":
		return runIdle(ctx, args, out)
	case "hold":
		return runHold(ctx, args, out)
	case "propagate":
		return runPropagate(ctx, args, out)
	case "rest":
		return runREST(ctx, args, out)
	case "certs":
		return runCerts(args, out)
	case "report":
		return runReport(args, out)
	}
	return fmt.Errorf("unknown mode %q: want echo, handshake, idle, hold, propagate, rest, certs or report", mode)
}

// headers is a repeatable -header flag.
type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

// targetFlags are the flags that say where to connect and with what.
type targetFlags struct {
	url     string
	headers headers
	jwtKey  string
	ca      string
}

func (t *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.url, "url", "", "ws:// or wss:// URL to connect to")
	fs.Var(&t.headers, "header", `"Name: value" added to each upgrade (repeatable)`)
	fs.StringVar(&t.jwtKey, "jwt-key", "", "base64 HMAC key: send an HS256 bearer token signed with it")
	fs.StringVar(&t.ca, "ca", "", "PEM file of the CA trusted for wss:// (required for one)")
}

func (t *targetFlags) target(rawURL string) (wsbench.Target, error) {
	hs := t.headers
	if t.jwtKey != "" {
		tok, err := mintJWT(t.jwtKey)
		if err != nil {
			return wsbench.Target{}, err
		}
		hs = append(hs[:len(hs):len(hs)], "Authorization: Bearer "+tok)
	}
	tg, err := wsbench.ParseTarget(rawURL, hs)
	if err != nil || tg.URL.Scheme != "wss" {
		return tg, err
	}
	if t.ca == "" {
		return tg, errors.New("a wss:// URL needs -ca")
	}
	pem, err := os.ReadFile(t.ca)
	if err != nil {
		return tg, err
	}
	tg.TLS, err = wsbench.TLSConfig(pem)
	return tg, err
}

// describeTLS connects to a wss:// target once and returns what it negotiated as name=value
// fields (" tls=1.3 cipher=… curve=… resumed=false"), or "" for ws://.
func describeTLS(ctx context.Context, t wsbench.Target) (string, error) {
	if t.URL.Scheme != "wss" {
		return "", nil
	}
	c, err := wsbench.Dial(ctx, t)
	if err != nil {
		return "", err
	}
	defer c.Close()
	st, _ := c.TLS()
	return fmt.Sprintf(" tls=%s cipher=%s curve=%s resumed=%t", strings.TrimPrefix(tls.VersionName(st.Version), "TLS "),
		tls.CipherSuiteName(st.CipherSuite), st.CurveID, st.DidResume), nil
}

// mintJWT signs a token valid for a day with the base64 key.
func mintJWT(b64 string) (string, error) {
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("-jwt-key: %w", err)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "wsload", "aud": "bench",
		"exp": time.Now().Add(24 * time.Hour).Unix()}).SignedString(key)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }

// windowFlags registers the flags of a measuring window.
func windowFlags(fs *flag.FlagSet, w *wsbench.Window, warmup time.Duration) {
	fs.DurationVar(&w.Warmup, "warmup", warmup, "unmeasured time before the measurement")
	fs.DurationVar(&w.Duration, "duration", 10*time.Second, "measured time")
	fs.IntVar(&w.PID, "pid", 0, "process (with descendants) whose CPU time over the window is reported: the proxy")
}

// report prints the figures common to every measurement, then fails if operations failed.
func report(out io.Writer, head string, m wsbench.Measured, pid int, what string) error {
	fmt.Fprintf(out, "%s total=%d p50_ms=%s p99_ms=%s max_ms=%s errors=%d", head, m.Total, ms(m.P50), ms(m.P99), ms(m.Max), m.Errors)
	if pid > 0 && m.Count > 0 {
		fmt.Fprintf(out, " cpu_s=%.2f cpu_us_per_op=%.1f", m.CPU.Seconds(), float64(m.CPU.Microseconds())/float64(m.Count))
	}
	fmt.Fprintln(out)
	if m.Errors > 0 {
		return fmt.Errorf("%d %s failed; first: %w", m.Errors, what, m.FirstErr)
	}
	return nil
}

func runEcho(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload echo", flag.ContinueOnError)
	var tf targetFlags
	tf.register(fs)
	o := wsbench.EchoOptions{}
	fs.IntVar(&o.Conns, "conns", 1000, "connections, each with one message in flight")
	fs.IntVar(&o.Size, "size", 256, "payload bytes per message")
	windowFlags(fs, &o.Window, 2*time.Second)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Target, err = tf.target(tf.url); err != nil {
		return err
	}
	sec, err := describeTLS(ctx, o.Target)
	if err != nil {
		return err
	}
	res, err := wsbench.RunEcho(ctx, o)
	if err != nil {
		return err
	}
	return report(out, fmt.Sprintf("conns=%d size=%d messages=%d msgs_per_s=%.0f mb_per_s=%.1f%s",
		res.Conns, o.Size, res.Count, res.PerSecond, res.MBps, sec), res.Measured, o.PID, "connections")
}

func runHandshake(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload handshake", flag.ContinueOnError)
	var tf targetFlags
	tf.register(fs)
	o := wsbench.HandshakeOptions{}
	fs.IntVar(&o.Workers, "workers", 16, "concurrent workers, each upgrading one connection at a time")
	windowFlags(fs, &o.Window, time.Second)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Target, err = tf.target(tf.url); err != nil {
		return err
	}
	sec, err := describeTLS(ctx, o.Target)
	if err != nil {
		return err
	}
	res, err := wsbench.RunHandshakes(ctx, o)
	if err != nil {
		return err
	}
	return report(out, fmt.Sprintf("workers=%d upgrades=%d per_s=%.0f%s", o.Workers, res.Count, res.PerSecond, sec), res, o.PID, "handshakes")
}

func runIdle(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload idle", flag.ContinueOnError)
	var tf targetFlags
	tf.register(fs)
	conns := fs.Int("conns", 8000, "idle connections to open")
	warm := fs.Int("warmup-conns", 200, "connections opened and closed first, before the baseline")
	pid := fs.Int("pid", 0, "process whose memory is measured, with its descendants (required)")
	settle := fs.Duration("settle", 5*time.Second, "wait after the baseline and after opening, before reading memory")
	parallel := fs.Int("parallel", 32, "concurrent dials")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pid <= 0 {
		return errors.New("idle: -pid is required")
	}
	t, err := tf.target(tf.url)
	if err != nil {
		return err
	}
	if *warm > 0 {
		w, err := wsbench.OpenIdle(ctx, t, *warm, *parallel)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		w.Close()
	}
	if err := sleep(ctx, *settle); err != nil {
		return err
	}
	before, _, err := wsbench.TreeRSS(*pid)
	if err != nil {
		return err
	}
	idle, err := wsbench.OpenIdle(ctx, t, *conns, *parallel)
	if err != nil {
		return err
	}
	defer idle.Close()
	if err := sleep(ctx, *settle); err != nil {
		return err
	}
	after, procs, err := wsbench.TreeRSS(*pid)
	if err != nil {
		return err
	}
	alive := idle.Alive(ctx, 30*time.Second)
	perConn := float64(after-before) / float64(*conns) / 1024
	fmt.Fprintf(out, "conns=%d alive=%d procs=%d rss_before_kib=%d rss_after_kib=%d kib_per_conn=%.2f\n",
		*conns, alive, procs, before>>10, after>>10, perConn)
	if alive != *conns {
		return fmt.Errorf("only %d of %d idle connections still echoed after the measurement", alive, *conns)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func runReport(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload report", flag.ContinueOnError)
	in := fs.String("in", "-", "samples file (tab-separated: scenario figure label target run value); - is stdin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r := io.Reader(os.Stdin)
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	samples, err := wsbench.ReadSamples(r)
	if err != nil {
		return err
	}
	return wsbench.WriteReport(out, samples)
}
