package edge

import (
	"bytes"
	"strings"
)

// Reading the raw datagram. The core parses each message after the edge
// admits it; the edge reads only what its rules need, with byte scans: the
// start line's first word and the User-Agent header.

// maxUserAgent is the longest User-Agent value (and scanner pattern) the
// scanner rule compares; a longer value is compared by its start.
const maxUserAgent = 128

// isResponse reports whether msg is a response (its start line is a
// status line).
func isResponse(msg []byte) bool { return bytes.HasPrefix(msg, []byte("SIP/")) }

// classOf returns the rate-limit class of a request by its method, the
// start line's first word.
func classOf(msg []byte) Class {
	switch {
	case bytes.HasPrefix(msg, []byte("INVITE ")):
		return ClassInvite
	case bytes.HasPrefix(msg, []byte("REGISTER ")):
		return ClassRegister
	}
	return ClassOther
}

// userAgent returns the value of msg's first User-Agent header, without
// surrounding white space, or nil. The header's name has no compact form
// and may come in any case; it is found by a vectorized search for its
// tail, "gent" and then "GENT" (so User-Agent, user-agent, USER-AGENT and
// the other spellings whose tail is all lower or all upper case), checked
// for "user-a" in any case at the start of a line. That is one pass over a
// message with the usual spelling, two over one without the header. It
// may find a line of the body: inHeaders tells, for the rare value that
// matters.
func userAgent(msg []byte) []byte {
	const head = "user-a"
	for _, tail := range [...]string{"gent", "GENT"} {
		for off := 0; ; {
			i := bytes.Index(msg[off:], []byte(tail))
			if i < 0 {
				break
			}
			i += off
			off = i + len(tail)
			start := i - len(head)
			if start < 1 || msg[start-1] != '\n' || !asciiEqualFold(msg[start:i], head) {
				continue
			}
			if v, ok := headerValue(msg[off:]); ok {
				return v
			}
		}
	}
	return nil
}

// inHeaders reports whether v, a slice of msg, lies in msg's header
// section.
func inHeaders(msg, v []byte) bool {
	start := cap(msg) - cap(v)
	if start < 0 || start > len(msg) {
		return false
	}
	head := msg[:start]
	return !bytes.Contains(head, []byte("\r\n\r\n")) && !bytes.Contains(head, []byte("\n\n"))
}

// headerValue returns the value after a header name: rest starts with
// optional white space and the colon. (Byte loops: bytes.TrimSpace and
// TrimLeft cost more than the search that found the name.)
func headerValue(rest []byte) ([]byte, bool) {
	i := 0
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
		i++
	}
	if i == len(rest) || rest[i] != ':' {
		return nil, false // another header whose name starts so
	}
	i++
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
		i++
	}
	end := bytes.IndexByte(rest[i:], '\n')
	if end < 0 {
		end = len(rest)
	} else {
		end += i
	}
	for end > i && (rest[end-1] == '\r' || rest[end-1] == ' ' || rest[end-1] == '\t') {
		end--
	}
	return rest[i:end], true
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, in any
// case.
func asciiEqualFold(b []byte, s string) bool {
	for i := range len(s) {
		if b[i]|0x20 != s[i] && b[i] != s[i] {
			return false
		}
	}
	return true
}

// scannerMatcher finds scanner names in User-Agent values,
// case-insensitively. A bitmap of the patterns' first two bytes (folded to
// lower case, hashed to 1024 bits) rejects nearly every position of a
// phone's User-Agent with one test; the patterns are compared only where
// it passes.
type scannerMatcher struct {
	patterns []string // lower case
	names    []string // as configured, the metric's rule label
	pairs    [1024 / 64]uint64
	short    bool // a pattern of one byte: no bitmap
}

// pairBit is the bitmap position of the two bytes a, b (either case).
func pairBit(a, b byte) uint { return (uint(a|0x20)<<5 ^ uint(b|0x20)) & 1023 }

func newScannerMatcher(uas []string) *scannerMatcher {
	m := &scannerMatcher{}
	for _, ua := range uas {
		p := strings.ToLower(ua)
		m.patterns = append(m.patterns, p)
		m.names = append(m.names, ua)
		if len(p) < 2 {
			m.short = true
			continue
		}
		bit := pairBit(p[0], p[1])
		m.pairs[bit/64] |= 1 << (bit % 64)
	}
	return m
}

// match returns the index of the first pattern ua contains
// (case-insensitive; only its first maxUserAgent bytes), or -1.
func (m *scannerMatcher) match(ua []byte) int {
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	found := -1
	for i := range ua {
		if i+1 < len(ua) && !m.short {
			if bit := pairBit(ua[i], ua[i+1]); m.pairs[bit/64]&(1<<(bit%64)) == 0 {
				continue
			}
		}
		for j, p := range m.patterns {
			if len(ua)-i >= len(p) && asciiEqualFold(ua[i:i+len(p)], p) && (found < 0 || j < found) {
				found = j
			}
		}
		if found >= 0 {
			return found
		}
	}
	return -1
}
