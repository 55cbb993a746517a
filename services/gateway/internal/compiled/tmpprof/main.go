package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"gatehouse.dev/gateway/internal/compiled"
	"gatehouse.dev/gateway/internal/pipeline"
	"gatehouse.dev/pkg/configwire"
)

func main() {
	runtime.MemProfileRate = 64 << 10
	f0, _ := os.Open("/tmp/snap.json")
	f, _ := os.Create("/tmp/gw.prof")
	pprof.StartCPUProfile(f)
	t := time.Now()
	var snap configwire.Snapshot
	if err := json.NewDecoder(f0).Decode(&snap); err != nil {
		panic(err)
	}
	fmt.Println("decode", time.Since(t), len(snap.Entities))
	t = time.Now()
	b := compiled.NewBuilder(pipeline.Env{Counters: pipeline.NewMemoryCounters()})
	cfg, err := b.Load(snap)
	fmt.Println("load", time.Since(t), err, cfg.APIs(), cfg.Keys())
	pprof.StopCPUProfile()
	snap = configwire.Snapshot{}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Println("heap after load MiB", ms.HeapAlloc>>20)
	hf, _ := os.Create("/tmp/gwheap.prof")
	pprof.WriteHeapProfile(hf)
	hf.Close()
	runtime.KeepAlive(b)
}
