package fastpath

import (
	"bytes"
	"net/netip"
)

// Small zero-allocation helpers over raw SIP text.

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// hasWS reports whether b holds white space (SP, HTAB, CR or LF).
func hasWS(b []byte) bool {
	for _, c := range b {
		if isWS(c) {
			return true
		}
	}
	return false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lowerASCII(b[i]) != lowerASCII(s[i]) {
			return false
		}
	}
	return true
}

// paramSpan looks for the parameter name (case-insensitive) in a raw
// ";a=b;c" list p (as Via.Params or URI params). It returns, relative to p,
// the end of the name, and the value's start and end (both equal to nameEnd
// when the parameter has no value).
func paramSpan(p []byte, name string) (nameEnd, vs, ve int, ok bool) {
	i := 0
	for i < len(p) {
		i = skipWS(p, i)
		if i >= len(p) || p[i] != ';' {
			return 0, 0, 0, false
		}
		i = skipWS(p, i+1)
		ns := i
		for i < len(p) && p[i] != '=' && p[i] != ';' && p[i] != ',' && !isWS(p[i]) && p[i] != '(' {
			i++
		}
		ne := i
		vs, ve := ne, ne
		j := skipWS(p, i)
		if j < len(p) && p[j] == '=' {
			j = skipWS(p, j+1)
			vs = j
			if j < len(p) && p[j] == '"' {
				j++
				for j < len(p) && p[j] != '"' {
					if p[j] == '\\' {
						j++
					}
					j++
				}
				if j < len(p) {
					j++
				}
			} else {
				for j < len(p) && p[j] != ';' && p[j] != ',' && !isWS(p[j]) && p[j] != '(' {
					j++
				}
			}
			if j > len(p) {
				j = len(p)
			}
			ve = j
			i = j
		}
		if equalFold(p[ns:ne], name) {
			return ne, vs, ve, true
		}
		if i < len(p) && (p[i] == ',' || p[i] == '(') {
			return 0, 0, 0, false
		}
	}
	return 0, 0, 0, false
}

// nextListValue returns the next comma-separated value of a header value b
// starting at i: its bounds (white space trimmed) and where the one after it
// starts (len(b) when none). Commas inside quotes and angle brackets do not
// split. ok is false when no value is left.
func nextListValue(b []byte, i int) (start, end, next int, ok bool) {
	i = skipWS(b, i)
	for i < len(b) && b[i] == ',' { // empty values
		i = skipWS(b, i+1)
	}
	if i >= len(b) {
		return 0, 0, len(b), false
	}
	start = i
	inQ, inA := false, false
	for i < len(b) {
		c := b[i]
		switch {
		case inQ:
			if c == '\\' {
				i++
			} else if c == '"' {
				inQ = false
			}
		case c == '"':
			inQ = true
		case c == '<':
			inA = true
		case c == '>':
			inA = false
		case c == ',' && !inA:
			end = i
			for end > start && isWS(b[end-1]) {
				end--
			}
			return start, end, skipWS(b, i+1), true
		}
		i++
	}
	if i > len(b) {
		i = len(b)
	}
	end = i
	for end > start && isWS(b[end-1]) {
		end--
	}
	return start, end, len(b), true
}

// parseIP parses an IPv4 or IPv6 literal (without brackets or zone) without
// allocating, also when b is not an address (netip.ParseAddr allocates its
// error, and host names are common here).
func parseIP(b []byte) (netip.Addr, bool) {
	if a, ok := parseIPv4(b); ok {
		return netip.AddrFrom4(a), true
	}
	var a [16]byte
	if !parseIPv6(b, &a) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16(a).Unmap(), true
}

// parseAddrPort parses "IPv4:port" or "[IPv6]:port" without allocating;
// the port must be 1-65535.
func parseAddrPort(b []byte) (netip.AddrPort, bool) {
	var ip netip.Addr
	var port []byte
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 0 || end+1 >= len(b) || b[end+1] != ':' {
			return netip.AddrPort{}, false
		}
		var a [16]byte
		if !parseIPv6(b[1:end], &a) {
			return netip.AddrPort{}, false
		}
		ip, port = netip.AddrFrom16(a).Unmap(), b[end+2:]
	} else {
		i := bytes.IndexByte(b, ':')
		if i < 0 {
			return netip.AddrPort{}, false
		}
		a, ok := parseIPv4(b[:i])
		if !ok {
			return netip.AddrPort{}, false
		}
		ip, port = netip.AddrFrom4(a), b[i+1:]
	}
	if len(port) == 0 || len(port) > 5 {
		return netip.AddrPort{}, false
	}
	n := 0
	for _, c := range port {
		if c < '0' || c > '9' {
			return netip.AddrPort{}, false
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 || n > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(n)), true
}

// parseIPv4 parses dotted-quad decimal (no leading zeros beyond "0").
func parseIPv4(b []byte) (a [4]byte, ok bool) {
	i := 0
	for k := 0; k < 4; k++ {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return a, false
			}
			i++
		}
		n, d := 0, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if d > 0 && n == 0 {
				return a, false // leading zero
			}
			n = n*10 + int(b[i]-'0')
			d++
			i++
			if n > 255 {
				return a, false
			}
		}
		if d == 0 {
			return a, false
		}
		a[k] = byte(n)
	}
	return a, i == len(b)
}

// parseIPv6 parses an RFC 4291 text address: eight groups of up to four hex
// digits, "::" once, optionally a dotted-quad IPv4 tail.
func parseIPv6(b []byte, a *[16]byte) bool {
	if len(b) < 2 || len(b) > 45 {
		return false
	}
	ellipsis := -1 // byte index in a where "::" stands
	i, j := 0, 0
	if b[0] == ':' {
		if b[1] != ':' {
			return false
		}
		ellipsis = 0
		i = 2
		if i == len(b) {
			*a = [16]byte{}
			return true
		}
	}
	for i < len(b) && j < 16 {
		// IPv4 tail?
		k := i
		for k < len(b) && b[k] != ':' && b[k] != '.' {
			k++
		}
		if k < len(b) && b[k] == '.' {
			if j > 12 {
				return false
			}
			v4, ok := parseIPv4(b[i:])
			if !ok {
				return false
			}
			copy(a[j:], v4[:])
			j += 4
			i = len(b)
			break
		}
		n, d := 0, 0
		for i < len(b) && d < 5 {
			c := b[i]
			var v int
			switch {
			case c >= '0' && c <= '9':
				v = int(c - '0')
			case c >= 'a' && c <= 'f':
				v = int(c-'a') + 10
			case c >= 'A' && c <= 'F':
				v = int(c-'A') + 10
			default:
				v = -1
			}
			if v < 0 {
				break
			}
			n = n<<4 | v
			d++
			i++
		}
		if d == 0 || d > 4 {
			return false
		}
		a[j], a[j+1] = byte(n>>8), byte(n)
		j += 2
		if i == len(b) {
			break
		}
		if b[i] != ':' || i+1 == len(b) {
			return false
		}
		i++
		if b[i] == ':' {
			if ellipsis >= 0 {
				return false
			}
			ellipsis = j
			i++
			if i == len(b) {
				break
			}
		}
	}
	if i != len(b) {
		return false
	}
	if j < 16 {
		if ellipsis < 0 {
			return false
		}
		n := 16 - j
		copy(a[ellipsis+n:], a[ellipsis:j])
		for k := ellipsis; k < ellipsis+n; k++ {
			a[k] = 0
		}
	} else if ellipsis >= 0 && ellipsis != 16 {
		return false // "::" must stand for at least one group
	}
	return true
}

// appendSentByAddr appends an address for a received parameter: IPv4 dotted,
// IPv6 without brackets.
func appendAddr(dst []byte, a netip.Addr) []byte {
	return a.AppendTo(dst)
}
