package parser

import (
	"bytes"
	"net/netip"
)

// ParseIP parses an IPv4 or IPv6 literal (without brackets or zone) without
// allocating, also when b is not an address (netip.ParseAddr allocates its
// error, and host names are common here).
func ParseIP(b []byte) (netip.Addr, bool) {
	if a, ok := parseIPv4(b); ok {
		return netip.AddrFrom4(a), true
	}
	var a [16]byte
	if !parseIPv6(b, &a) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom16(a).Unmap(), true
}

// ParseAddrPort parses "IPv4:port" or "[IPv6]:port" without allocating;
// the port must be 1-65535.
func ParseAddrPort(b []byte) (netip.AddrPort, bool) {
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

// parseIPv4 parses dotted-quad decimal (no leading zeros beyond "0") in one
// pass over the bytes.
func parseIPv4(b []byte) (a [4]byte, ok bool) {
	if len(b) < 7 || len(b) > 15 {
		return a, false
	}
	k, n, digits := 0, 0, 0
	for _, c := range b {
		if c == '.' {
			if digits == 0 || k == 3 || n > 255 {
				return a, false
			}
			a[k] = byte(n)
			k, n, digits = k+1, 0, 0
			continue
		}
		d := int(c) - '0'
		if uint(d) > 9 || (digits > 0 && n == 0) || digits == 3 {
			return a, false // not a digit, a leading zero, or too long
		}
		n = n*10 + d
		digits++
	}
	if digits == 0 || k != 3 || n > 255 {
		return a, false
	}
	a[3] = byte(n)
	return a, true
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
	} else if ellipsis >= 0 {
		return false // "::" must stand for at least one group
	}
	return true
}
