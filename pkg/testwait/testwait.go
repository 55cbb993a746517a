// Package testwait is the one way tests wait for something to happen: poll a condition until
// it holds, fail with what still does not after a generous deadline. Tests wait for events,
// never for a fixed time: a loaded two-core machine makes any sleep too short some day, and
// the deadline here only bounds how long a broken test hangs.
package testwait

import (
	"testing"
	"time"
)

// interval is how often a condition is polled: short enough not to slow a passing test down,
// long enough not to compete with what it waits for.
const interval = 10 * time.Millisecond

// For polls check until it returns "" and returns how long that took. After timeout it fails
// t with check's last answer, which should say what is still missing.
func For(t testing.TB, timeout time.Duration, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		msg := check()
		if msg == "" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("not within %v: %s", timeout, msg)
		}
		time.Sleep(interval)
	}
}

// Until polls cond until it holds; after timeout it fails t saying what was awaited.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return For(t, timeout, func() string {
		if cond() {
			return ""
		}
		return what
	})
}
