//go:build linux

package wsproxy

import (
	"os"
	"runtime"
	"testing"
)

// TestSpareProcs: an engine started with SpareProcs raises GOMAXPROCS by its loops, unless
// the GOMAXPROCS variable chose it.
func TestSpareProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		t.Setenv("GOMAXPROCS", v)
		os.Unsetenv("GOMAXPROCS") // restored by Setenv's cleanup
	}
	if _, err := NewEngine(EngineOptions{Loops: 2, SpareProcs: true}); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != before+2 {
		t.Errorf("GOMAXPROCS %d after an engine of 2 loops with SpareProcs, want %d", got, before+2)
	}
	runtime.GOMAXPROCS(before)
	t.Setenv("GOMAXPROCS", "1")
	if _, err := NewEngine(EngineOptions{Loops: 1, SpareProcs: true}); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Errorf("GOMAXPROCS %d with the variable set, want it left at %d", got, before)
	}
}
