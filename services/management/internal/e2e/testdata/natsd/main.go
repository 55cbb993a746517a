// Command natsd runs a NATS server with JetStream as its own process, so the failure drills
// can kill it with SIGKILL and restart it on the same port and store directory.
//
// Usage: natsd HOST:PORT STORE_DIR. It prints "ready URL" once it accepts clients. NATSD_AUTH
// holds its users and callout keys (natsembed.Auth as JSON), the same at every restart so that
// management and the nodes reconnect.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"gatehouse.dev/management/internal/natsembed"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: natsd HOST:PORT STORE_DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var auth natsembed.Auth
	if err := json.Unmarshal([]byte(os.Getenv("NATSD_AUTH")), &auth); err != nil {
		fmt.Fprintln(os.Stderr, "natsd: NATSD_AUTH:", err)
		os.Exit(2)
	}
	ns, err := natsembed.Start(ctx, natsembed.Options{Listen: os.Args[1], StoreDir: os.Args[2], Auth: &auth})
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsd:", err)
		os.Exit(1)
	}
	fmt.Println("ready", ns.ClientURL())
	<-ctx.Done()
	ns.Shutdown()
}
