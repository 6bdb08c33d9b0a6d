package health

import (
	"testing"
	"time"
)

func TestRTTHistogramBuckets(t *testing.T) {
	b := RTTBucketBounds()
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			t.Fatalf("bounds not increasing at %d: %v", i, b)
		}
	}
	var h RTTHistogram
	h.Observe(0)                      // bucket 0
	h.Observe(250 * time.Microsecond) // on bound 0: bucket 0 (le)
	h.Observe(251 * time.Microsecond) // bucket 1
	h.Observe(3 * time.Millisecond)   // (2.5 ms, 5 ms]: bucket 4
	h.Observe(5 * time.Second)        // last bound
	h.Observe(5*time.Second + 1)      // overflow
	h.Observe(time.Hour)              // overflow
	want := [NumRTTBuckets + 1]uint64{0: 2, 1: 1, 4: 1, NumRTTBuckets - 1: 1, NumRTTBuckets: 2}
	if h.Counts != want {
		t.Errorf("counts %v, want %v", h.Counts, want)
	}
	if h.Count != 7 {
		t.Errorf("count %d, want 7", h.Count)
	}
	if wantSum := 250*time.Microsecond + 251*time.Microsecond + 3*time.Millisecond + 10*time.Second + 1 + time.Hour; h.Sum != wantSum {
		t.Errorf("sum %v, want %v", h.Sum, wantSum)
	}
	cum := h.Cumulative()
	wantCum := [NumRTTBuckets]uint64{2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5}
	if cum != wantCum {
		t.Errorf("cumulative %v, want %v", cum, wantCum)
	}
}
