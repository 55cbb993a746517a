package testwait

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	For(t, time.Minute, func() string {
		if n := calls.Add(1); n < 3 {
			return fmt.Sprintf("call %d", n)
		}
		return ""
	})
	if calls.Load() != 3 {
		t.Errorf("check called %d times, want 3", calls.Load())
	}
}

// recorder is a testing.TB that records a failure instead of ending the test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func TestUntilFailsWithWhatWasAwaited(t *testing.T) {
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		Until(r, time.Millisecond, "the answer", func() bool { return false })
	}()
	if r.failed != "not within 1ms: the answer" {
		t.Errorf("failure = %q", r.failed)
	}
}
