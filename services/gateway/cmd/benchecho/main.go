// Command benchecho is the fixed backend of the WebSocket benchmark (make bench): it accepts
// every upgrade on any path and echoes each frame back as soon as it has read it
// (internal/wsbench.Echo). GET /healthz answers 200, and GET /stats the counters as
// "upgrades=… messages=… bytes=… open=…".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gatehouse.dev/gateway/internal/wsbench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9300", "listen address")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *listen); err != nil {
		fmt.Fprintln(os.Stderr, "benchecho:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen string) error {
	echo := &wsbench.Echo{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upgrades=%d messages=%d bytes=%d open=%d\n", echo.Upgrades(), echo.Messages(), echo.Bytes(), echo.Open())
	})
	mux.Handle("/", echo)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close() // hijacked connections are closed by the process exiting
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
