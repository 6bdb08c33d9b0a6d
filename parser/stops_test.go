package parser

import (
	"math/rand/v2"
	"testing"
)

// naiveStops lists the offsets of every LF and NUL at or after p.
func naiveStops(b []byte, p int) []int {
	var out []int
	for i := p; i < len(b); i++ {
		if b[i] == '\n' || b[i] == 0 {
			out = append(out, i)
		}
	}
	return out
}

// randomLines returns n bytes of printable text sprinkled with LFs, CRs
// and the occasional NUL.
func randomLines(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		switch x := r.IntN(40); {
		case x == 0:
			b[i] = 0
		case x < 4:
			b[i] = '\n'
		case x < 6:
			b[i] = '\r'
		default:
			b[i] = byte(' ' + r.IntN(95))
		}
	}
	return b
}

// TestLineStopsYieldsEveryStop checks that lineStops hands out exactly the
// LFs and NULs after its start, in order, then len(b) for good.
func TestLineStopsYieldsEveryStop(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 63, 64, 65, 127, 128, 511, 512, 513, 1000, 1500, 4000} {
		b := randomLines(r, n)
		for _, p := range []int{0, 1, 37, 64, 500, 513} {
			if p > n {
				continue
			}
			var s lineStops
			s.start(b, p)
			want := naiveStops(b, p)
			for k, w := range want {
				if got := s.pop(); got != w {
					t.Fatalf("len %d start %d: stop %d = %d, want %d", n, p, k, got, w)
				}
			}
			for range 2 {
				if got := s.pop(); got != n {
					t.Fatalf("len %d start %d: after the last stop pop = %d, want %d", n, p, got, n)
				}
			}
		}
	}
}
