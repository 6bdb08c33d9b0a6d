//go:build !purego

package parser

import "golang.org/x/sys/cpu"

// hasAVX2 selects stopMaskAVX2; it is set once, from the CPU, and never
// changed.
var hasAVX2 = cpu.X86.HasAVX2

// stopMask sets bit i%64 of dst[i/64] for every byte b[from+i] that is an
// LF or a NUL, for up to stopWindow 64-byte blocks, and returns how many
// words it wrote; it agrees with stopMaskGeneric. from must be less than
// len(b). The assembly (AVX2 where the CPU has it, else SSE2, which every
// amd64 CPU has) needs at least 64 bytes of buffer for its last, partial
// block, which it reads as the buffer's last 64 bytes.
func stopMask(b []byte, from int, dst *[stopWindow]uint64) int {
	if len(b) < 64 {
		return stopMaskGeneric(b, from, dst)
	}
	return stopMaskAsm(b, from, dst, hasAVX2)
}

// stopMaskAsm is stopMask's assembly for buffers of at least 64 bytes,
// with 32-byte AVX2 vectors if avx2 is set and 16-byte SSE2 ones if not.
//
//go:noescape
func stopMaskAsm(b []byte, from int, dst *[stopWindow]uint64, avx2 bool) int
