//go:build !purego

package parser

// stopMask sets bit i%64 of dst[i/64] for every byte b[from+i] that is an
// LF or a NUL, for up to stopWindow 64-byte blocks, and returns how many
// words it wrote; it agrees with stopMaskGeneric. from must be less than
// len(b). The SSE2 version (part of every amd64 CPU) needs at least 64
// bytes of buffer for its last, partial block, which it reads as the
// buffer's last 64 bytes.
func stopMask(b []byte, from int, dst *[stopWindow]uint64) int {
	if len(b) < 64 {
		return stopMaskGeneric(b, from, dst)
	}
	return stopMaskSSE2(b, from, dst)
}

//go:noescape
func stopMaskSSE2(b []byte, from int, dst *[stopWindow]uint64) int
