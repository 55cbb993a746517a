// Command relayproto is a benchmark-only prototype of the data plane on an event-loop library
// (issue 16, item 4): a minimal WebSocket reverse proxy on gnet v2 with one event loop per
// core. It reads a client's upgrade request, connects to one fixed backend through gnet, passes
// the request on unchecked, relays the backend's answer, then relays frames verbatim both ways,
// parsing their headers to count messages and check masks, and stops relaying a side while its
// peer's outbound buffer is over -queue. It is a measurement, not a gateway: no policy, no TLS,
// no timers, no drain (docs/performance.md, "Event-loop library prototype (gnet v2)").
//
//	relayproto -listen 127.0.0.1:9400 -backend 127.0.0.1:9300
//
// On SIGTERM it stops and prints one line of totals on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9400", "listen address")
	backend := flag.String("backend", "127.0.0.1:9300", "backend address (host:port)")
	queue := flag.Int("queue", 64<<10, "bytes a connection's outbound buffer may hold before its peer stops being relayed")
	hold := flag.Int("hold", 4<<20, "bytes a stalled side may hold unread before its session is closed")
	loops := flag.Int("loops", 0, "event loops (0: one per core)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	addr, err := net.ResolveTCPAddr("tcp", *backend)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayproto:", err)
		os.Exit(2)
	}
	cfg := Config{Backend: addr, Queue: *queue, Hold: *hold, Loops: *loops}
	if err := run(ctx, *listen, cfg, log, hooks{}, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "relayproto:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then writes the totals on out. A listen address with port 0 gets one listener shared by the
// loops; any other, one SO_REUSEPORT listener per loop.
func run(ctx context.Context, listen string, cfg Config, log *slog.Logger, h hooks, out io.Writer) error {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	r := newRelay(ctx, cfg, log, h)
	opts := []gnet.Option{
		gnet.WithMulticore(cfg.Loops == 0),
		gnet.WithNumEventLoop(cfg.Loops),
		gnet.WithReusePort(port != "0"),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{log}),
	}
	done := make(chan error, 1)
	go func() { done <- gnet.Run(r, "tcp://"+listen, opts...) }()
	var eng gnet.Engine
	select {
	case err := <-done:
		return err
	case eng = <-r.booted:
	}
	var bound string
	if h.ready != nil {
		bound, err = boundAddr(eng)
	}
	if err == nil {
		if h.ready != nil {
			h.ready(r, bound)
		}
		<-ctx.Done()
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := eng.Stop(stopCtx); err != nil {
		log.Warn("stopping", "err", err)
	}
	if runErr := <-done; err == nil {
		err = runErr
	}
	if err != nil {
		return err
	}
	t := r.Totals()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(out, "relayproto: sessions=%d refused=%d dropped=%d stalls=%d messages_in=%d messages_out=%d bytes_in=%d bytes_out=%d mallocs=%d\n",
		t.Sessions, t.Refused, t.Dropped, t.Stalls, t.Messages[fromClient], t.Messages[fromBackend], t.Bytes[fromClient], t.Bytes[fromBackend], ms.Mallocs)
	return nil
}

// boundAddr returns the address the engine's listener is bound to.
func boundAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", err
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	case *unix.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port)), nil
	}
	return "", fmt.Errorf("listener bound to %T", sa)
}
