package health

import "time"

// NumRTTBuckets is the number of finite upper bounds of an RTTHistogram.
const NumRTTBuckets = 14

// RTTBucketBounds returns the upper bounds of an RTTHistogram's buckets, in
// increasing order: 0.25 ms to 5 s, about three per decade, from a LAN
// neighbour to a slow server across the world (a probe's timeout is 2 s by
// default).
func RTTBucketBounds() [NumRTTBuckets]time.Duration {
	return [NumRTTBuckets]time.Duration{
		250 * time.Microsecond,
		500 * time.Microsecond,
		time.Millisecond,
		2500 * time.Microsecond,
		5 * time.Millisecond,
		10 * time.Millisecond,
		25 * time.Millisecond,
		50 * time.Millisecond,
		100 * time.Millisecond,
		250 * time.Millisecond,
		500 * time.Millisecond,
		time.Second,
		2500 * time.Millisecond,
		5 * time.Second,
	}
}

// RTTHistogram counts probe round-trip times in the fixed buckets of
// RTTBucketBounds, for metrics (a Prometheus histogram is built from it at
// scrape time). The zero value is empty and ready to use.
type RTTHistogram struct {
	// Counts[i] is the number of samples greater than bound i-1 and at most
	// bound i (not cumulative); Counts[NumRTTBuckets] counts the samples
	// above the last bound.
	Counts [NumRTTBuckets + 1]uint64
	// Count is the number of samples and Sum their total.
	Count uint64
	Sum   time.Duration
}

// Observe adds one sample.
func (h *RTTHistogram) Observe(d time.Duration) {
	bounds := RTTBucketBounds()
	i := 0
	for i < NumRTTBuckets && d > bounds[i] {
		i++
	}
	h.Counts[i]++
	h.Count++
	h.Sum += d
}

// Cumulative returns the number of samples at most bound i, for each
// finite bound, as Prometheus histograms count them.
func (h *RTTHistogram) Cumulative() [NumRTTBuckets]uint64 {
	var out [NumRTTBuckets]uint64
	var n uint64
	for i := range out {
		n += h.Counts[i]
		out[i] = n
	}
	return out
}
