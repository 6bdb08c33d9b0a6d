// Package hist is a fixed-memory, allocation-free latency histogram with
// log-linear buckets, in the spirit of HdrHistogram.
//
// Values (typically nanoseconds) are counted in buckets whose width grows
// with the value: every power-of-two range is split into the same number of
// linear sub-buckets, so the relative error of a reported percentile is
// bounded (below 1/128, about 0.8%) whatever the magnitude, and the whole
// histogram is one fixed array of counters.
//
// A Histogram has a single writer and any number of readers: the goroutine
// that owns it calls Record on the hot path (no lock, no allocation, no
// atomic read-modify-write instruction), while other goroutines may take
// consistent-enough copies at any time with Snapshot or Merge for progress
// reports. Snapshots are plain values that can be merged, subtracted and
// queried for percentiles.
package hist

import (
	"math"
	"math/bits"
	"sync/atomic"
)

const (
	// subBits is log2 of the number of linear sub-buckets per power of two.
	subBits = 8
	subHalf = 1 << (subBits - 1)
	// maxBits bounds the largest distinct value: larger values are clamped
	// to MaxValue. 2^40 ns is a little over 18 minutes.
	maxBits = 40
	// NumBuckets is the number of counters in a histogram.
	NumBuckets = (maxBits-subBits)*subHalf + (1 << subBits)
)

// MaxValue is the largest value a histogram distinguishes; larger values
// are recorded as MaxValue.
const MaxValue = 1<<maxBits - 1

// bucketOf returns the bucket index of v (0 <= v <= MaxValue).
func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits // >= 1
	return e*subHalf + int(v>>uint(e))
}

// bucketRange returns the smallest and largest value counted in bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 1<<subBits {
		return uint64(i), uint64(i)
	}
	e := i/subHalf - 1
	m := uint64(i - e*subHalf)
	lo = m << uint(e)
	hi = lo + (1 << uint(e)) - 1
	return lo, hi
}

// Histogram counts values in log-linear buckets. The zero value is an empty
// histogram ready for use. It must not be copied after first use (it holds
// atomics); use Snapshot to take a copy.
type Histogram struct {
	counts [NumBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
	min    atomic.Uint64 // stored as value+1 so that 0 means "none"
}

// Record counts one value. Negative values count as 0 and values above
// MaxValue as MaxValue. Record must only be called by one goroutine at a
// time (the histogram's owner); it does not allocate.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u > MaxValue {
		u = MaxValue
	}
	c := &h.counts[bucketOf(u)]
	c.Store(c.Load() + 1)
	h.n.Store(h.n.Load() + 1)
	h.sum.Store(h.sum.Load() + u)
	if u > h.max.Load() {
		h.max.Store(u)
	}
	if m := h.min.Load(); m == 0 || u+1 < m {
		h.min.Store(u + 1)
	}
}

// Reset empties the histogram. Like Record, it is for the owner only.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.sum.Store(0)
	h.max.Store(0)
	h.min.Store(0)
}

// Count returns the number of values recorded so far.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Snapshot copies the current counts into s (replacing its contents). It
// may be called from any goroutine while the owner records; the copy is
// then approximately consistent (a value being recorded may be counted in
// its bucket but not yet in the total), which is fine for reporting.
func (h *Histogram) Snapshot(s *Snapshot) {
	s.Reset()
	h.Merge(s)
}

// Merge adds the current counts of h into s. It may be called from any
// goroutine, like Snapshot.
func (h *Histogram) Merge(s *Snapshot) {
	var n uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		s.Counts[i] += c
		n += c
	}
	s.N += n
	s.Sum += h.sum.Load()
	if m := h.max.Load(); m > s.Max {
		s.Max = m
	}
	if m := h.min.Load(); m != 0 && (s.Min == 0 || m < s.Min) {
		s.Min = m
	}
}

// Snapshot is a plain (non-atomic) copy of a histogram's counts. The zero
// value is empty. Min is stored as value+1 (0 when empty); use MinValue.
type Snapshot struct {
	Counts [NumBuckets]uint64
	N      uint64 // number of values (sum of Counts)
	Sum    uint64 // sum of the recorded values (after clamping)
	Max    uint64 // largest value recorded
	Min    uint64 // smallest value recorded plus one; 0 when empty
}

// Reset empties s.
func (s *Snapshot) Reset() { *s = Snapshot{} }

// Add adds the counts of o to s.
func (s *Snapshot) Add(o *Snapshot) {
	for i := range s.Counts {
		s.Counts[i] += o.Counts[i]
	}
	s.N += o.N
	s.Sum += o.Sum
	if o.Max > s.Max {
		s.Max = o.Max
	}
	if o.Min != 0 && (s.Min == 0 || o.Min < s.Min) {
		s.Min = o.Min
	}
}

// Sub sets s to the difference between a later snapshot cur and an earlier
// snapshot prev of the same histogram, which is the distribution of the
// values recorded in between. Max and Min of the difference are those of
// the non-empty buckets (bucket precision), as the exact extremes of the
// interval are not known (unless prev is empty: then s is a copy of cur).
func (s *Snapshot) Sub(cur, prev *Snapshot) {
	if prev.N == 0 {
		*s = *cur // nothing to subtract: keep the exact extremes
		return
	}
	s.N, s.Sum, s.Max, s.Min = 0, 0, 0, 0
	for i := range s.Counts {
		c := cur.Counts[i]
		if p := prev.Counts[i]; p <= c {
			c -= p
		} else {
			c = 0
		}
		s.Counts[i] = c
		if c != 0 {
			s.N += c
			lo, hi := bucketRange(i)
			if s.Min == 0 {
				s.Min = lo + 1
			}
			s.Max = hi
		}
	}
	if cur.Sum >= prev.Sum {
		s.Sum = cur.Sum - prev.Sum
	}
}

// MinValue returns the smallest value recorded, or 0 when s is empty.
func (s *Snapshot) MinValue() uint64 {
	if s.Min == 0 {
		return 0
	}
	return s.Min - 1
}

// Mean returns the arithmetic mean of the values, or 0 when s is empty.
func (s *Snapshot) Mean() float64 {
	if s.N == 0 {
		return 0
	}
	return float64(s.Sum) / float64(s.N)
}

// Percentile returns the value below or at which the fraction q (0..100) of
// the recorded values lie, to within the bucket precision: the reported
// value is the midpoint of the bucket holding that rank, clamped to the
// recorded maximum and minimum. It returns 0 for an empty snapshot.
func (s *Snapshot) Percentile(q float64) uint64 {
	if s.N == 0 {
		return 0
	}
	if q <= 0 {
		return s.MinValue()
	}
	if q >= 100 {
		return s.Max
	}
	rank := uint64(math.Ceil(q / 100 * float64(s.N)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range s.Counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			if v > s.Max {
				v = s.Max
			}
			if m := s.MinValue(); v < m {
				v = m
			}
			return v
		}
	}
	return s.Max
}
