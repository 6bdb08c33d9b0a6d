package parser

import "math/bits"

// lower returns c folded to lower case if it is an ASCII upper-case letter.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// equalFold reports whether b equals s, ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// isWS reports whether c is white space inside a header value. CR and LF
// count, because inside a value they can only be part of a folded line.
func isWS(c byte) bool { return c <= ' ' && wsMask>>c&1 != 0 }

// wsMask has bit c set for each white-space byte c: one shift and test
// instead of four compares.
const wsMask = 1<<' ' | 1<<'\t' | 1<<'\r' | 1<<'\n'

// trimWS returns b without leading and trailing white space.
func trimWS(b []byte) []byte {
	if len(b) == 0 || (!isWS(b[0]) && !isWS(b[len(b)-1])) {
		return b // the usual case: nothing to trim
	}
	return trimWSSlow(b)
}

// skipWS returns the first position at or after i that is not white space.
func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

func trimWSSlow(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isWS(b[i]) {
		i++
	}
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// isTokenChar reports whether c may appear in a token (RFC 3261 25.1).
func isTokenChar(c byte) bool { return tokenTable[c] }

// tokenTable is the token character class as a lookup table, written out
// like net/textproto's isTokenTable; it is never modified.
var tokenTable = [256]bool{
	'!': true, '%': true, '\'': true, '*': true, '+': true, '-': true, '.': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'_': true, '`': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
	'~': true,
}

// scanToken returns the end of the token starting at i.
func scanToken(b []byte, i int) int {
	for i < len(b) && isTokenChar(b[i]) {
		i++
	}
	return i
}

// scanQuoted returns the position just after the quoted string that starts
// with the double quote at b[i], honouring quoted-pairs, or -1 if the string
// is not terminated.
func scanQuoted(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// parseUint parses a non-empty run of ASCII digits that must fit in max.
// Up to 19 digits cannot overflow a uint64, so the bound is checked once,
// at the end; a longer run is refused.
func parseUint(b []byte, max uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		d := c - '0'
		if d > 9 {
			return 0, false
		}
		n = n*10 + uint64(d)
	}
	return n, n <= max
}

// nextValue splits a comma-separated list value at its first top-level
// comma: commas inside quoted strings, angle brackets and parenthesised
// comments do not count. It returns the end of the first value (excluding
// the comma) and the start of the rest (after the comma), or -1 for rest when
// the first value is the last one. An unterminated quote, bracket or comment
// is reported as an error.
func nextValue(b []byte, i int) (end, rest int, err error) {
	for i < len(b) {
		switch b[i] {
		case '"':
			j := scanQuoted(b, i)
			if j < 0 {
				return 0, 0, ErrUnterminatedQuote
			}
			i = j
			continue
		case '<':
			j := i + 1
			for j < len(b) && b[j] != '>' {
				j++
			}
			if j == len(b) {
				return 0, 0, ErrUnterminatedAngle
			}
			i = j + 1
			continue
		case '(':
			j, ok := skipComment(b, i)
			if !ok {
				return 0, 0, ErrBadHeader
			}
			i = j
			continue
		case ',':
			return i, i + 1, nil
		}
		i++
	}
	return len(b), -1, nil
}

// skipComment returns the position after the parenthesised comment starting
// at b[i] (comments nest, RFC 3261 25.1), and false if it is unterminated.
func skipComment(b []byte, i int) (int, bool) {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return i, false
}

// equalFoldLower reports whether the token b equals s, ignoring ASCII case.
// s must be lower case letters, digits and '-'; b must hold only token
// characters, for which b[i]|0x20 == s[i] is then an exact test. It compares
// eight or four bytes at a time (the last word overlapping the one before),
// because header and parameter names are its hot callers.
func equalFoldLower(b []byte, s string) bool {
	n := len(b)
	if n != len(s) {
		return false
	}
	switch {
	case n >= 8:
		for i := 0; i < n-8; i += 8 {
			if load64(b[i:])|fold64 != load64s(s[i:]) {
				return false
			}
		}
		return load64(b[n-8:])|fold64 == load64s(s[n-8:])
	case n >= 4:
		return load32(b)|fold32 == load32s(s) && load32(b[n-4:])|fold32 == load32s(s[n-4:])
	}
	for i := 0; i < n; i++ {
		if b[i]|0x20 != s[i] {
			return false
		}
	}
	return true
}

// fold64 and fold32 set the 0x20 bit of every byte of a word.
const (
	fold64 = 0x2020202020202020
	fold32 = 0x20202020
)

// load64 and load32 read the first eight or four bytes of b as a
// little-endian word; load64s and load32s do the same for a string. The
// compiler turns each into a single load.
func load64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func load64s(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func load32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func load32s(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

// hasSpaceOrCtl reports whether b holds a byte below 0x21: white space
// (SP, HTAB, CR, LF) or another control character, none of which a URI may
// hold.
func hasSpaceOrCtl(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if len(b) < 8 {
		for _, x := range b {
			if x < 0x21 {
				return true
			}
		}
		return false
	}
	last := load64(b[len(b)-8:]) // overlaps the words below; tests the tail
	for ; len(b) > 8; b = b[8:] {
		if x := load64(b); (x-0x21*ones)&^x&highs != 0 {
			return true
		}
	}
	return (last-0x21*ones)&^last&highs != 0
}

// hasSpaceCtlOr reports whether b holds a byte below 0x21 or the byte c. It
// tests eight bytes at a time (see belowSPOr); a slice shorter than a word
// is tested byte by byte.
func hasSpaceCtlOr(b []byte, c byte) bool {
	if len(b) < 8 {
		for _, x := range b {
			if x < 0x21 || x == c {
				return true
			}
		}
		return false
	}
	cs := uint64(c) * 0x0101010101010101
	last := load64(b[len(b)-8:]) // overlaps the words below; tests the tail
	for ; len(b) > 8; b = b[8:] {
		if belowSPOr(load64(b), cs) {
			return true
		}
	}
	return belowSPOr(last, cs)
}

// belowSPOr reports whether a byte of x is below 0x21 or equal to the byte
// repeated in cs: (v - 0x21...) &^ v sets the high bit of a byte of v below
// 0x21, and so finds a zero byte of x ^ cs (a borrow can mark bytes above
// such a byte wrongly, never when there is none).
func belowSPOr(x, cs uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	y := x ^ cs
	return ((x-0x21*ones)&^x|(y-ones)&^y)&highs != 0
}

// colonIn16 returns the offset of the first ':' in b[p:p+16], or -1 if
// there is none or b ends sooner. It tests eight bytes at a time: with
// y = word ^ ":::::::", (y - 0x01...) &^ y has the high bit set in the
// byte of the first colon (bytes above it may be marked wrongly, never
// one below).
func colonIn16(b []byte, p int) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	if p+16 > len(b) {
		return -1
	}
	for k := 0; k < 16; k += 8 {
		y := load64(b[p+k:]) ^ (':' * ones)
		if m := (y - ones) &^ y & high; m != 0 {
			return k + bits.TrailingZeros64(m)>>3
		}
	}
	return -1
}
