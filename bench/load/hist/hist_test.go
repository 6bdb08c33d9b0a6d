package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsAreContiguous(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < NumBuckets; i++ {
		lo, hi := bucketRange(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d range [%d,%d] maps to %d,%d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= 1<<subBits && float64(hi-lo+1)/float64(lo) > 1.0/subHalf+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its value", i, lo, hi, subHalf)
		}
		prevHi = hi
	}
	if prevHi != MaxValue {
		t.Fatalf("last bucket ends at %d, want MaxValue %d", prevHi, uint64(MaxValue))
	}
}

func exactPercentile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func TestPercentileAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"uniform-us": func() int64 { return r.Int64N(1_000_000) },
		"lognormal":  func() int64 { return int64(math.Exp(r.NormFloat64()*1.5 + 11)) },
		"small":      func() int64 { return r.Int64N(300) },
		"bimodal": func() int64 {
			if r.IntN(100) < 3 {
				return 50_000_000 + r.Int64N(1_000_000)
			}
			return 80_000 + r.Int64N(20_000)
		},
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			vals := make([]int64, 200_000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			var s Snapshot
			h.Snapshot(&s)
			if s.N != uint64(len(vals)) {
				t.Fatalf("N = %d, want %d", s.N, len(vals))
			}
			if s.Max != uint64(vals[len(vals)-1]) || s.MinValue() != uint64(vals[0]) {
				t.Fatalf("min/max = %d/%d, want %d/%d", s.MinValue(), s.Max, vals[0], vals[len(vals)-1])
			}
			for _, q := range []float64{1, 10, 50, 90, 99, 99.9, 99.99} {
				got := float64(s.Percentile(q))
				want := float64(exactPercentile(vals, q))
				if math.Abs(got-want) > want/subHalf+1 {
					t.Errorf("p%v = %v, exact %v (error %.3f%%)", q, got, want, 100*math.Abs(got-want)/want)
				}
			}
			var sum float64
			for _, v := range vals {
				sum += float64(v)
			}
			if m := s.Mean(); math.Abs(m-sum/float64(len(vals))) > 1e-6*m {
				t.Errorf("mean %v, want %v", m, sum/float64(len(vals)))
			}
		})
	}
}

func TestClampAndEmpty(t *testing.T) {
	var h Histogram
	var s Snapshot
	h.Snapshot(&s)
	if s.Percentile(50) != 0 || s.Mean() != 0 || s.MinValue() != 0 {
		t.Fatal("empty snapshot should report zeros")
	}
	h.Record(-5)
	h.Record(math.MaxInt64)
	h.Snapshot(&s)
	if s.MinValue() != 0 || s.Max != MaxValue || s.N != 2 {
		t.Fatalf("min %d max %d n %d", s.MinValue(), s.Max, s.N)
	}
	h.Reset()
	if h.Count() != 0 {
		t.Fatal("Reset left values")
	}
}

func TestSubGivesIntervalDistribution(t *testing.T) {
	var h Histogram
	for i := 0; i < 1000; i++ {
		h.Record(1000)
	}
	var before, after, d Snapshot
	h.Snapshot(&before)
	for i := 0; i < 1000; i++ {
		h.Record(5_000_000)
	}
	h.Snapshot(&after)
	d.Sub(&after, &before)
	if d.N != 1000 {
		t.Fatalf("interval N = %d, want 1000", d.N)
	}
	if p := d.Percentile(50); p < 4_960_000 || p > 5_040_000 {
		t.Fatalf("interval p50 = %d, want about 5ms", p)
	}
	var m Snapshot
	m.Add(&before)
	m.Add(&d)
	if m.N != after.N || m.Percentile(25) != after.Percentile(25) {
		t.Fatalf("before+interval != after: %d/%d", m.N, after.N)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	v := int64(1)
	if a := testing.AllocsPerRun(1000, func() { h.Record(v); v = v*3 + 7 }); a != 0 {
		t.Fatalf("Record allocates %v times", a)
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	for i := 0; i < b.N; i++ {
		h.Record(int64(i) * 37)
	}
}
