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

// TestStopMaskAgreesWithGeneric checks the platform's stopMask (SSE2 on
// amd64) against the portable loop for every length up to a few windows
// and every start offset, so the partial-block and window-end cases are
// all covered.
func TestStopMaskAgreesWithGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 3*stopWindow*64+70; n += 1 + n/64 {
		b := randomLines(r, n)
		for from := 0; from < n; from += 1 + r.IntN(9) {
			var got, want [stopWindow]uint64
			gn := stopMask(b, from, &got)
			wn := stopMaskGeneric(b, from, &want)
			if gn != wn || got != want {
				t.Fatalf("len %d from %d: stopMask = %d %x, generic = %d %x", n, from, gn, got[:gn], wn, want[:wn])
			}
		}
	}
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
