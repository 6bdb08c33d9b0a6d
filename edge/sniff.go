package edge

import "bytes"

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

// userAgent returns the value of msg's first User-Agent header (the name
// in any case; it has no compact form), without surrounding white space,
// or nil. It stops at the end of the header section.
func userAgent(msg []byte) []byte {
	const name = "user-agent"
	for i := bytes.IndexByte(msg, '\n'); i >= 0 && i+1 < len(msg); {
		line := msg[i+1:]
		if line[0] == '\r' || line[0] == '\n' {
			return nil // the blank line: end of the headers
		}
		if (line[0]|0x20) == 'u' && len(line) > len(name) && asciiEqualFold(line[:len(name)], name) {
			if v, ok := headerValue(line[len(name):]); ok {
				return v
			}
		}
		j := bytes.IndexByte(line, '\n')
		if j < 0 {
			return nil
		}
		i += 1 + j
	}
	return nil
}

// headerValue returns the value after a header name: rest starts with
// optional white space and the colon.
func headerValue(rest []byte) ([]byte, bool) {
	rest = bytes.TrimLeft(rest, " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return nil, false // another header whose name starts so
	}
	rest = rest[1:]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return bytes.TrimSpace(rest), true
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

// scannerMatcher finds scanner names in User-Agent values.
type scannerMatcher struct {
	patterns [][]byte // lower case
	names    []string // as configured, the metric's rule label
}

func newScannerMatcher(uas []string) *scannerMatcher {
	m := &scannerMatcher{}
	for _, ua := range uas {
		m.patterns = append(m.patterns, bytes.ToLower([]byte(ua)))
		m.names = append(m.names, ua)
	}
	return m
}

// match returns the index of the first pattern ua contains
// (case-insensitive), or -1.
func (m *scannerMatcher) match(ua []byte) int {
	var buf [maxUserAgent]byte
	n := copy(buf[:], ua)
	low := buf[:n]
	for i, c := range low {
		if 'A' <= c && c <= 'Z' {
			low[i] = c + 0x20
		}
	}
	for i, p := range m.patterns {
		if bytes.Contains(low, p) {
			return i
		}
	}
	return -1
}
