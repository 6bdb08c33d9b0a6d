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

// userAgent returns the value of msg's first User-Agent header (the name
// in any case; it has no compact form), without surrounding white space,
// or nil. The canonical spelling, which nearly every agent sends, is found
// by a vectorized search (for its 'U', rare in SIP headers); other
// spellings by a walk over the header lines, taken only when the message
// holds "gent" in some case at all. The fast search may find a line of
// the body: inHeaders tells, for the rare value that matters.
func userAgent(msg []byte) []byte {
	const name = "User-Agent"
	for off := 0; ; {
		i := bytes.Index(msg[off:], []byte(name))
		if i < 0 {
			break
		}
		i += off
		if i > 0 && msg[i-1] == '\n' {
			if v, ok := headerValue(msg[i+len(name):]); ok {
				return v
			}
		}
		off = i + len(name)
	}
	if !bytes.Contains(msg, []byte("gent")) && !bytes.Contains(msg, []byte("GENT")) {
		return nil
	}
	return userAgentAnyCase(msg)
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

// userAgentAnyCase is userAgent, line by line.
func userAgentAnyCase(msg []byte) []byte {
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

// scannerMatcher finds scanner names in User-Agent values,
// case-insensitively: a table by first byte (in both cases) names the
// patterns worth comparing at a position, so that a phone's User-Agent
// costs about one pass over its bytes.
type scannerMatcher struct {
	patterns []string // lower case
	names    []string // as configured, the metric's rule label
	byFirst  [256][]uint8
}

func newScannerMatcher(uas []string) *scannerMatcher {
	m := &scannerMatcher{}
	for i, ua := range uas {
		p := strings.ToLower(ua)
		m.patterns = append(m.patterns, p)
		m.names = append(m.names, ua)
		lo, up := p[0], strings.ToUpper(p[:1])[0]
		m.byFirst[lo] = append(m.byFirst[lo], uint8(i))
		if up != lo {
			m.byFirst[up] = append(m.byFirst[up], uint8(i))
		}
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
	for i, c := range ua {
		for _, j := range m.byFirst[c] {
			p := m.patterns[j]
			if len(ua)-i >= len(p) && asciiEqualFold(ua[i:i+len(p)], p) && (found < 0 || int(j) < found) {
				found = int(j)
			}
		}
		if found >= 0 {
			return found
		}
	}
	return -1
}
