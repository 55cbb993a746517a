package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"gatehouse.dev/gateway/internal/wsbench"
)

// runHold is one load process of the scale scenarios (make bench-scale (h), (i)): it opens
// -conns idle connections, prints "opened=N open_ms=… done_unix_ms=…" as soon as the last one
// is open, and holds them until SIGTERM or SIGINT. Then it sends one message on each and prints
// "alive=N of=N", failing unless every connection echoed it: a revocation that closed more than
// the sessions it was meant for shows there.
func runHold(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("wsload hold", flag.ContinueOnError)
	var tf targetFlags
	tf.register(fs)
	conns := fs.Int("conns", 5000, "idle connections to open and hold")
	parallel := fs.Int("parallel", 32, "concurrent dials")
	check := fs.Duration("check-timeout", time.Minute, "longest wait for the final echo on every connection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conns <= 0 {
		return errors.New("hold: want -conns > 0")
	}
	t, err := tf.target(tf.url)
	if err != nil {
		return err
	}
	start := time.Now()
	idle, err := wsbench.OpenIdle(ctx, t, *conns, *parallel)
	if err != nil {
		return err
	}
	defer idle.Close()
	done := time.Now()
	fmt.Fprintf(out, "opened=%d open_ms=%d done_unix_ms=%d\n", *conns, done.Sub(start).Milliseconds(), done.UnixMilli())

	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *check)
	defer cancel()
	alive := idle.Alive(cctx, *check)
	fmt.Fprintf(out, "alive=%d of=%d\n", alive, *conns)
	if alive != *conns {
		return fmt.Errorf("only %d of %d held connections still echoed", alive, *conns)
	}
	return nil
}
