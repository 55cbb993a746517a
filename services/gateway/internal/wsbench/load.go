package wsbench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Latencies are samples of one measurement.
type Latencies []time.Duration

// Sort sorts the samples, as Quantile needs.
func (l Latencies) Sort() { slices.Sort(l) }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted samples by the nearest-rank method,
// or 0 when there are none.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(q*float64(len(l))+0.5) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// dialAll opens n connections to t, at most parallel at a time. It fails, closing what it
// opened, unless every one opens.
func dialAll(ctx context.Context, t Target, n, parallel int) ([]*Conn, error) {
	conns := make([]*Conn, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				c, err := Dial(dctx, t)
				cancel()
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("connection %d of %d: %w", i+1, n, err) })
					next.Store(int64(n)) // stop the others
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

func closeAll(conns []*Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// Window is when a run measures: after Warmup, for Duration; and, with a PID, whose CPU time
// (the process and its descendants': the proxy under test).
type Window struct {
	Warmup, Duration time.Duration
	PID              int
}

// Measured is what a run measured. Count and the latencies cover the operations that started
// and ended inside the window; Total counts every operation that succeeded.
type Measured struct {
	Count, Total  int64
	PerSecond     float64 // Count per second of the window
	P50, P99, Max time.Duration
	Errors        int64 // failed operations
	FirstErr      error
	CPU           time.Duration // of Window.PID over the window (zero without one)
}

// measure has n workers each call op over and over, from now until the window ends, and
// times every call. A worker whose op fails stops if stopOnErr, else goes on.
func measure(ctx context.Context, w Window, n int, stopOnErr bool, op func(worker int) error) (Measured, error) {
	base := time.Now()
	from, to := int64(w.Warmup), int64(w.Warmup+w.Duration)
	cpu := measureCPU(ctx, w.PID, base, w.Warmup, w.Duration)
	samples := make([]Latencies, n)
	totals := make([]int64, n)
	var errCount atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var mine Latencies
			for ctx.Err() == nil {
				t0 := int64(time.Since(base))
				if t0 >= to {
					break
				}
				err := op(i)
				t1 := int64(time.Since(base))
				if err != nil {
					errCount.Add(1)
					once.Do(func() { firstErr = err })
					if stopOnErr {
						break
					}
					continue
				}
				totals[i]++
				if t0 >= from && t1 <= to {
					mine = append(mine, time.Duration(t1-t0))
				}
			}
			samples[i] = mine
		})
	}
	wg.Wait()
	var all Latencies
	var total int64
	for i := range samples {
		all = append(all, samples[i]...)
		total += totals[i]
	}
	all.Sort()
	m := Measured{Count: int64(len(all)), Total: total, P50: all.Quantile(0.50), P99: all.Quantile(0.99), Max: all.Quantile(1),
		Errors: errCount.Load(), FirstErr: firstErr}
	m.PerSecond = float64(m.Count) / w.Duration.Seconds()
	var err error
	if m.CPU, err = cpu(); err != nil {
		return m, err
	}
	return m, ctx.Err()
}

// EchoOptions configure RunEcho.
type EchoOptions struct {
	Target Target
	Window
	// Conns is the number of connections, each with one message in flight at a time.
	Conns int
	// Size is the payload size of each binary message.
	Size int
	// DialParallel bounds concurrent dials while connecting (default 64).
	DialParallel int
}

// EchoResult is what RunEcho measured: Count is round trips, Errors connections that failed.
type EchoResult struct {
	Measured
	Conns int
	MBps  float64 // payload megabytes (10^6) echoed per second of the window
}

// RunEcho opens Conns connections and has each send Size-byte messages one after the other,
// each as soon as the previous one has come back, for Warmup then Duration. Every echo is
// compared with what was sent. It fails if a connection cannot be opened; connections that
// fail later stop and are counted in Errors.
func RunEcho(ctx context.Context, o EchoOptions) (EchoResult, error) {
	if o.Conns <= 0 || o.Size < 0 || o.Duration <= 0 {
		return EchoResult{}, errors.New("echo: want conns > 0, size ≥ 0 and a duration")
	}
	if o.DialParallel <= 0 {
		o.DialParallel = 64
	}
	conns, err := dialAll(ctx, o.Target, o.Conns, o.DialParallel)
	if err != nil {
		return EchoResult{}, err
	}
	defer closeAll(conns)

	payload := make([]byte, o.Size)
	rand.Read(payload)
	msgs := make([]*Message, len(conns))
	for i, c := range conns {
		msgs[i] = c.NewMessage(payload)
	}
	m, err := measure(ctx, o.Window, len(conns), true, func(i int) error {
		if err := conns[i].RoundTrip(msgs[i]); err != nil {
			conns[i].Close()
			return err
		}
		return nil
	})
	return EchoResult{Measured: m, Conns: len(conns), MBps: m.PerSecond * float64(o.Size) / 1e6}, err
}

// HandshakeOptions configure RunHandshakes.
type HandshakeOptions struct {
	Target Target
	Window
	Workers int
}

// RunHandshakes has Workers goroutines each open a connection, complete the upgrade and close
// the TCP connection at once, over and over, for Warmup then Duration. Count is upgrades
// answered 101 with the right Sec-WebSocket-Accept; Errors counts the others, refusals
// included.
func RunHandshakes(ctx context.Context, o HandshakeOptions) (Measured, error) {
	if o.Workers <= 0 || o.Duration <= 0 {
		return Measured{}, errors.New("handshake: want workers > 0 and a duration")
	}
	return measure(ctx, o.Window, o.Workers, false, func(int) error {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := Dial(dctx, o.Target)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// measureCPU reads pid's CPU time at base+warmup and at base+warmup+d, and returns a function
// that waits for the second reading and returns the difference. Without a pid it measures
// nothing and returns zero.
func measureCPU(ctx context.Context, pid int, base time.Time, warmup, d time.Duration) func() (time.Duration, error) {
	if pid <= 0 {
		return func() (time.Duration, error) { return 0, nil }
	}
	type result struct {
		d   time.Duration
		err error
	}
	done := make(chan result, 1)
	go func() {
		at := func(t time.Time) (time.Duration, error) {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(time.Until(t)):
			}
			return TreeCPU(pid)
		}
		start, err := at(base.Add(warmup))
		if err != nil {
			done <- result{err: err}
			return
		}
		end, err := at(base.Add(warmup + d))
		done <- result{end - start, err}
	}()
	return func() (time.Duration, error) { r := <-done; return r.d, r.err }
}

// Idle is a set of open, quiet connections.
type Idle struct {
	conns []*Conn
}

// OpenIdle opens n connections to t, at most parallel at a time, and sends nothing on them.
func OpenIdle(ctx context.Context, t Target, n, parallel int) (*Idle, error) {
	conns, err := dialAll(ctx, t, n, parallel)
	if err != nil {
		return nil, err
	}
	return &Idle{conns: conns}, nil
}

// Alive sends one small message on every connection and returns how many echoed it within
// timeout.
func (s *Idle) Alive(ctx context.Context, timeout time.Duration) int {
	var alive atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(timeout)
	for range min(64, len(s.conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(s.conns) || ctx.Err() != nil {
					return
				}
				c := s.conns[i]
				c.conn.SetDeadline(deadline)
				if c.RoundTrip(c.NewMessage([]byte("still there?"))) == nil {
					alive.Add(1)
				}
				c.conn.SetDeadline(time.Time{})
			}
		})
	}
	wg.Wait()
	return int(alive.Load())
}

// Close closes every connection.
func (s *Idle) Close() { closeAll(s.conns) }
