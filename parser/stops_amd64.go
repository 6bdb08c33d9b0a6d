//go:build !purego

package parser

import "golang.org/x/sys/cpu"

// hasAVX2 selects stopMaskAVX2; it is set once, from the CPU, and never
// changed.
var hasAVX2 = cpu.X86.HasAVX2

// stopMask sets bit i%64 of dst[i/64] for every byte b[from+i] that is an
// LF or a NUL, for up to stopWindow 64-byte blocks, and returns how many
// words it wrote; it agrees with stopMaskGeneric. from must be less than
// len(b). The assembly versions (AVX2 where the CPU has it, else SSE2,
// which every amd64 CPU has) need at least 64 bytes of buffer for their
// last, partial block, which they read as the buffer's last 64 bytes.
func stopMask(b []byte, from int, dst *[stopWindow]uint64) int {
	switch {
	case len(b) < 64:
		return stopMaskGeneric(b, from, dst)
	case hasAVX2:
		return stopMaskAVX2(b, from, dst)
	}
	return stopMaskSSE2(b, from, dst)
}

//go:noescape
func stopMaskSSE2(b []byte, from int, dst *[stopWindow]uint64) int

//go:noescape
func stopMaskAVX2(b []byte, from int, dst *[stopWindow]uint64) int
