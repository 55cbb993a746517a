package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"gatehouse.dev/management/internal/catalog"
	"gatehouse.dev/management/internal/secretbox"
	"gatehouse.dev/management/internal/store"
)

func main() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/scale_dev?sslmode=disable")
	if err != nil {
		panic(err)
	}
	box, _ := secretbox.New(secretbox.DevKey)
	cat := catalog.New(store.New(pool, box), slog.Default())
	tok, _ := os.ReadFile("/tmp/scale_dev.token")
	node, err := cat.VerifyGatewayToken(ctx, strings.TrimSpace(string(tok)))
	if err != nil {
		panic(err)
	}
	f, _ := os.Create("/tmp/snap.prof")
	pprof.StartCPUProfile(f)
	t := time.Now()
	snap, err := cat.Snapshot(ctx, node)
	pprof.StopCPUProfile()
	fmt.Println(len(snap.Entities), err, time.Since(t))
}
