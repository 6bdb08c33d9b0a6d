//go:build !purego

package parser

import (
	"math/rand/v2"
	"testing"
)

// TestStopMaskAssemblyVersions checks both amd64 versions, and stopMask
// with its choice between them and the short-buffer case, against the
// portable loop for every length up to a few windows and many start
// offsets, so the partial-block and window-end cases are all covered.
func TestStopMaskAssemblyVersions(t *testing.T) {
	versions := map[string]func([]byte, int, *[stopWindow]uint64) int{
		"SSE2":     func(b []byte, from int, dst *[stopWindow]uint64) int { return stopMaskAsm(b, from, dst, false) },
		"stopMask": stopMask,
	}
	if hasAVX2 {
		versions["AVX2"] = func(b []byte, from int, dst *[stopWindow]uint64) int { return stopMaskAsm(b, from, dst, true) }
	} else {
		t.Log("this CPU has no AVX2: checking SSE2 only")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for name, f := range versions {
		shortest := 64
		if name == "stopMask" {
			shortest = 1
		}
		for n := shortest; n <= 3*stopWindow*64+70; n += 1 + n/50 {
			b := randomLines(r, n)
			for from := 0; from < n; from += 1 + r.IntN(7) {
				var got, want [stopWindow]uint64
				gn := f(b, from, &got)
				wn := stopMaskGeneric(b, from, &want)
				if gn != wn || got != want {
					t.Fatalf("%s: len %d from %d: %d %x, generic %d %x", name, n, from, gn, got[:gn], wn, want[:wn])
				}
			}
		}
	}
}
