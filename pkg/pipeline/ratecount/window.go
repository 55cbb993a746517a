package ratecount

import (
	"math"
	"time"
)

// State is what a counter key holds, in memory (Memory) or in a shared store
// (gateway/internal/clustercount). For a sliding window Size is the window in nanoseconds, Idx
// the current bucket (now / window) and Prev and Curr the calls of the previous and current
// bucket. For a fixed window Size is the period in seconds (0: one period that never ends),
// Idx the period and Curr its calls. Until Expires (Unix nanoseconds, 0 = never) the state can
// affect a decision; after it, it may be dropped.
//
// The zero State is a key that has counted nothing. A State is a plain value: its owner
// serializes access.
type State struct {
	Size, Idx, Prev, Curr, Expires int64
}

// Result is the decision on one call.
type Result struct {
	// Allowed is false when the calls would exceed the limit; they were not counted.
	Allowed bool
	// Remaining is how many more calls fit now.
	Remaining int64
	// RetryAfter says, when Allowed is false, how long until the calls fit again.
	RetryAfter time.Duration
}

// Sliding counts n calls against limit in the sliding window ending at now (Unix nanoseconds)
// with the two-bucket approximation: the calls in the window are estimated as previous ×
// (the share of the previous bucket still inside the window) + current. Memory per key is
// constant whatever the limit; within one bucket the count is exact, and across the boundary
// it assumes the previous bucket's calls were spread evenly. With n = 0 nothing is counted and
// Allowed reports whether one more call would fit. A window of zero or less is one second.
// counted reports whether st changed in a way worth storing: a rollover alone is not, since
// the next call computes it again from the stored state.
func (st *State) Sliding(limit int64, window time.Duration, n, now int64) (r Result, counted bool) {
	if window <= 0 {
		window = time.Second
	}
	w := int64(window)
	idx := now / w
	if st.Size != w || idx-st.Idx > 1 || idx < st.Idx-1 {
		*st = State{Size: w, Idx: idx}
	} else if idx == st.Idx+1 {
		st.Idx, st.Prev, st.Curr = idx, st.Curr, 0
	}
	prev, curr := st.Prev, st.Curr
	elapsed := now - idx*w
	weight := float64(w-elapsed) / float64(w)
	est := float64(prev)*weight + float64(curr)
	// n = 0 asks whether one more call would fit. The tolerance absorbs rounding in the
	// weight, so that a call fits exactly when RetryAfter said it would.
	allowed := est+float64(max(n, 1)) <= float64(limit)+1e-9
	if allowed && n > 0 {
		st.Curr += n
		st.Expires = max(st.Expires, (idx+2)*w)
		est += float64(n)
		counted = true
	}
	remaining := max(limit-int64(math.Ceil(est-1e-9)), 0)
	if allowed {
		return Result{Allowed: true, Remaining: remaining}, counted
	}
	return Result{Remaining: remaining, RetryAfter: slidingRetry(prev, curr, max(n, 1), limit, w, elapsed)}, counted
}

// slidingRetry returns how long until need calls fit: first as the previous bucket's weight
// decays, else after the current bucket becomes the previous one.
func slidingRetry(prev, curr, need, limit, w, elapsed int64) time.Duration {
	rest := w - elapsed // until the bucket boundary
	if room := float64(limit - curr - need); room >= 0 && prev > 0 {
		// prev × (rest - t) / w ≤ room
		t := float64(rest) - room*float64(w)/float64(prev)
		return time.Duration(math.Ceil(max(t, 0)))
	}
	room := float64(limit - need)
	if room < 0 {
		return time.Duration(w)
	}
	if curr == 0 {
		return time.Duration(rest)
	}
	// After the boundary: curr × (w - t) / w ≤ room.
	t := float64(w) - room*float64(w)/float64(curr)
	return time.Duration(rest) + time.Duration(math.Ceil(max(t, 0)))
}

// Fixed counts n calls against limit in the fixed period containing t, periods starting at
// start; a zero period is one period that never ends. Periods are counted in whole seconds
// from start, so that starts centuries back (quota-by-key's default 0001-01-01) do not
// overflow. Results and counted are as Sliding's.
func (st *State) Fixed(limit int64, period time.Duration, start time.Time, n int64, t time.Time) (r Result, counted bool) {
	var p, idx, expires int64
	var retry time.Duration
	if period > 0 {
		p = max(int64(period/time.Second), 1)
		diff := t.Unix() - start.Unix()
		idx = diff / p
		if diff%p < 0 {
			idx--
		}
		into := time.Duration(diff-idx*p)*time.Second + time.Duration(t.Nanosecond()-start.Nanosecond())
		retry = time.Duration(p)*time.Second - into
		if retry <= 0 {
			retry = time.Nanosecond
		}
		expires = t.UnixNano() + int64(retry)
	}
	if st.Size != p || st.Idx != idx {
		*st = State{Size: p, Idx: idx}
	}
	count := st.Curr
	allowed := count+max(n, 1) <= limit // n = 0: would one more call fit?
	if allowed && n > 0 {
		st.Curr += n
		st.Expires = expires
		count += n
		counted = true
	}
	remaining := max(limit-count, 0)
	if allowed {
		return Result{Allowed: true, Remaining: remaining}, counted
	}
	return Result{Remaining: remaining, RetryAfter: retry}, counted
}
