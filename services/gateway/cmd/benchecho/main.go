// Command benchecho is the fixed backend of the WebSocket benchmark (make bench): it accepts
// every upgrade on any path and echoes each frame back as soon as it has read it
// (internal/wsbench.Echo). GET /healthz answers 200, and GET /stats the counters as
// "upgrades=… messages=… bytes=… open=…". -buf sets each connection's buffers (64 KiB; the
// scale scenarios hold many idle connections with less).
//
// With -rest-listen it also serves the REST scenario's backend (make bench (g)) on a listener
// of its own: every GET answers 200 with the same 100-byte JSON object over HTTP/1.1
// keep-alive. With -tls-listen it serves the echo over TLS (wss) too, for make bench (j).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"gatehouse.dev/gateway/internal/wsbench"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9300", "WebSocket echo listen address")
	restListen := flag.String("rest-listen", "", "REST backend listen address; empty for none")
	buf := flag.Int("buf", 0, "read and write buffer of each echo connection, bytes (0: 64 KiB)")
	tlsListen := flag.String("tls-listen", "", "the WebSocket echo over TLS (wss) on this address too; empty for none")
	tlsCert := flag.String("tls-cert", "", "PEM certificate of -tls-listen")
	tlsKey := flag.String("tls-key", "", "PEM key of -tls-listen")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var tlsConf *tls.Config
	if *tlsListen != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchecho: -tls-cert, -tls-key:", err)
			os.Exit(2)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	}
	if err := run(ctx, *listen, *restListen, *buf, *tlsListen, tlsConf); err != nil {
		fmt.Fprintln(os.Stderr, "benchecho:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, listen, restListen string, buf int, tlsListen string, tlsConf *tls.Config) error {
	echo := &wsbench.Echo{BufSize: buf}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upgrades=%d messages=%d bytes=%d open=%d\n", echo.Upgrades(), echo.Messages(), echo.Bytes(), echo.Open())
	})
	mux.Handle("/", echo)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(ctx, listen, mux, nil) })
	if tlsListen != "" {
		g.Go(func() error { return serve(ctx, tlsListen, mux, tlsConf) })
	}
	if restListen != "" {
		g.Go(func() error { return serve(ctx, restListen, http.HandlerFunc(item), nil) })
	}
	return g.Wait()
}

// itemJSON is the REST backend's answer: 100 bytes, the size of a small API resource.
var (
	itemJSON   = []byte(`{"id":"42","name":"bench item","price":12.55,"tags":["a","b","c"],"updated":"2026-01-01T00:00:00Z"}` + "\n")
	itemLength = []string{strconv.Itoa(len(itemJSON))}
)

// item answers every GET with itemJSON.
func item(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = itemLength
	_, _ = w.Write(itemJSON)
}

// serve serves h on listen, over TLS with tlsConf if not nil, until ctx ends.
func serve(ctx context.Context, listen string, h http.Handler, tlsConf *tls.Config) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return err
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close() // hijacked connections are closed by the process exiting
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
