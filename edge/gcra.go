package edge

import (
	"math"
	"sync/atomic"
)

// A rate is a Limit as the generic cell rate algorithm (GCRA) uses it: a
// token bucket kept in one number per source, its theoretical arrival time
// (TAT). A request at now is admitted when the TAT it would push out lies
// within tolerance of now.
type rate struct {
	interval  int64 // ns between requests at the sustained rate
	tolerance int64 // burst * interval
}

func newRate(l Limit) rate {
	iv := int64(math.Max(1, 1e9/l.Rate))
	return rate{interval: iv, tolerance: iv * int64(l.Burst)}
}

// admit charges one request at now to the bucket whose TAT is *tat and
// reports whether it fits; a refused request leaves *tat alone.
func (r rate) admit(tat *int64, now int64) bool {
	t := max(*tat, now) + r.interval
	if t-now > r.tolerance {
		return false
	}
	*tat = t
	return true
}

// retryIn is how long, in ns, until a request at now would fit.
func (r rate) retryIn(tat, now int64) int64 {
	return max(0, max(tat, now)+r.interval-r.tolerance-now)
}

// sharedBucket is a rate whose TAT is shared by goroutines (a gateway's
// calls per second, charged by every worker).
type sharedBucket struct {
	r   rate
	tat atomic.Int64
}

// admit is rate.admit with a compare-and-swap; the second result is the
// ns until a request would fit when the first is false.
func (b *sharedBucket) admit(now int64) (bool, int64) {
	for {
		old := b.tat.Load()
		t := old
		if !b.r.admit(&t, now) {
			return false, b.r.retryIn(old, now)
		}
		if b.tat.CompareAndSwap(old, t) {
			return true, 0
		}
	}
}
