package parser

import "math/bits"

// stopWindow is how many 64-byte blocks one refill of a lineStops
// classifies: 1 KiB, the whole header block of nearly every SIP message.
// (stops_amd64.s has the same number as WINDOW.)
const stopWindow = 16

// lineStops yields, in order, the offsets of the bytes that end or poison a
// header line: every LF and every NUL. It classifies the buffer up to 1 KiB
// at a time into bit masks (one bit per byte) and then hands out
// one set bit per call, so Parse finds each line's end without a call to
// bytes.IndexByte per line and finds NULs in the same pass.
type lineStops struct {
	b    []byte
	next int    // offset of the first byte after the classified window
	at   int    // offset of the byte that bit 0 of cur stands for
	w, n int    // index of cur in mask; number of valid words in mask
	cur  uint64 // the current word with the stops already handed out cleared
	mask [stopWindow]uint64
}

// start prepares s to yield the stops of b at or after offset p.
func (s *lineStops) start(b []byte, p int) {
	s.b = b
	s.n, s.w, s.cur = 0, 0, 0
	s.next = p
	s.at = p
}

// pop returns the offset of the next LF or NUL, or len(b) when there is
// none left.
func (s *lineStops) pop() int {
	for s.cur == 0 {
		if !s.nextWord() && !s.refill() {
			return len(s.b)
		}
	}
	i := s.at + bits.TrailingZeros64(s.cur)
	s.cur &= s.cur - 1
	return i
}

// nextWord moves to the next word of the window and reports false when
// the window is used up. It is small enough to inline into Parse's loop.
func (s *lineStops) nextWord() bool {
	if s.w+1 >= s.n {
		return false
	}
	s.w++
	s.at += 64
	s.cur = s.mask[s.w&(stopWindow-1)]
	return true
}

// refill classifies the next window and reports false at the end of the
// buffer.
func (s *lineStops) refill() bool {
	if s.next >= len(s.b) {
		return false
	}
	s.at = s.next
	s.n = stopMask(s.b, s.next, &s.mask)
	s.next = min(s.next+stopWindow*64, len(s.b))
	s.w = 0
	s.cur = s.mask[0]
	return true
}

// stopMaskGeneric is the portable stopMask: it sets bit i%64 of dst[i/64]
// for every byte b[from+i] that is an LF or a NUL, for up to stopWindow
// blocks, and returns how many words it wrote. from must be less than
// len(b).
func stopMaskGeneric(b []byte, from int, dst *[stopWindow]uint64) int {
	rest := b[from:]
	n := min((len(rest)+63)>>6, stopWindow)
	for w := 0; w < n; w++ {
		var m uint64
		for i, c := range rest[w<<6 : min(w<<6+64, len(rest))] {
			if c == '\n' || c == 0 {
				m |= 1 << i
			}
		}
		dst[w] = m
	}
	return n
}
