package parser

import "bytes"

// Via is one via-parm (RFC 3261 20.42, RFC 2543 6.40). Every slice points
// into the message buffer; a parameter that is absent is nil.
type Via struct {
	// ProtocolName, ProtocolVersion and Transport are the three parts of
	// sent-protocol, e.g. "SIP", "2.0" and "UDP".
	ProtocolName, ProtocolVersion, Transport []byte
	// Host is the sent-by host. An IPv6 reference comes without its
	// brackets and IPv6 is set.
	Host []byte
	IPv6 bool
	// Port is the sent-by port, 0 when absent (the transport's default
	// applies, 5060 for UDP).
	Port int
	// Params is the raw parameter list after sent-by, starting with its
	// first ';', or nil.
	Params []byte
	// Branch, Received, RPort, Maddr and TTL are the values of those
	// parameters. A parameter without a value ("rport") has an empty,
	// non-nil value; HasRPort tells rport's presence apart from its value.
	Branch, Received, RPort, Maddr, TTL []byte
	HasRPort                            bool
	// Hidden is set for RFC 2543's "hidden" parameter.
	Hidden bool
	// Start and End delimit the via-parm in the message, from the first
	// letter of the protocol name to the end of its last parameter (or
	// comment), without surrounding white space or comma.
	Start, End int
	// Header is the index (for Message.Header) of the line holding it.
	Header int
	// First and Last report whether the via-parm is the first and the last
	// value on its header line. When it is not the last one, NextStart is
	// the offset where the next via-parm on the line begins.
	First, Last bool
	NextStart   int
}

// HasCookie reports whether the branch carries RFC 3261's magic cookie
// z9hG4bK, the mark of a client that builds unique branches (RFC 3261
// 8.1.1.7). Without it the sender follows RFC 2543.
func (v *Via) HasCookie() bool {
	return len(v.Branch) >= 7 && string(v.Branch[:7]) == "z9hG4bK"
}

// ParseVia parses the first via-parm of the Via header value at
// b[start:end] into v, as Parse does for a message's top Via; v's slices and
// offsets point into b. It serves a caller that has only a raw header line,
// such as a proxy answering a request Parse refused.
func ParseVia(b []byte, start, end int, v *Via) error {
	_, err := parseVia(b, start, end, v)
	v.First = true
	return err
}

// parseVia parses the via-parm that starts at or after i in b[:end] into v
// and returns the offset after it: the start of the next via-parm on the
// line (after its comma), or -1 if this one is the last.
func parseVia(b []byte, i, end int, v *Via) (next int, err error) {
	*v = Via{}
	b = b[:end]
	i = skipWS(b, i)
	v.Start = i
	// sent-protocol = protocol-name SLASH protocol-version SLASH transport
	var ok bool
	if i+8 <= len(b) && b[i+3] == '/' && b[i+7] == '/' && equalFoldLower(b[i:i+3], "sip") && string(b[i+4:i+7]) == "2.0" {
		// The usual "SIP/2.0/" without white space around the slashes.
		v.ProtocolName, v.ProtocolVersion = b[i:i+3], b[i+4:i+7]
		i += 8
	} else {
		if v.ProtocolName, i, ok = viaToken(b, i); !ok {
			return 0, ErrBadVia
		}
		if i, ok = viaSlash(b, i); !ok {
			return 0, ErrBadVia
		}
		if v.ProtocolVersion, i, ok = viaToken(b, i); !ok {
			return 0, ErrBadVia
		}
		if i, ok = viaSlash(b, i); !ok {
			return 0, ErrBadVia
		}
	}
	if v.Transport, i, ok = viaToken(b, i); !ok {
		return 0, ErrBadVia
	}
	// LWS sent-by
	if i >= len(b) || !isWS(b[i]) {
		return 0, ErrBadVia
	}
	i = skipWS(b, i)
	if v.Host, v.IPv6, i, err = scanHost(b, i); err != nil {
		return 0, ErrBadVia
	}
	v.End = i
	j := skipWS(b, i)
	if j < len(b) && b[j] == ':' {
		j = skipWS(b, j+1)
		k := j
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			k++
		}
		port, ok := parseUint(b[j:k], 65535)
		if !ok {
			return 0, ErrBadPort
		}
		v.Port = int(port)
		i = k
		v.End = i
	}
	// *( SEMI via-params )
	paramsStart := -1
	for {
		j := skipWS(b, i)
		if j >= len(b) || b[j] != ';' {
			break
		}
		if paramsStart < 0 {
			paramsStart = j
		}
		j = skipWS(b, j+1)
		ne := scanToken(b, j)
		if ne == j {
			return 0, ErrBadVia
		}
		name := b[j:ne]
		val := b[ne:ne]
		i = ne
		if k := skipWS(b, ne); k < len(b) && b[k] == '=' {
			k = skipWS(b, k+1)
			ve := k
			if ve < len(b) && b[ve] == '"' {
				if ve = scanQuoted(b, ve); ve < 0 {
					return 0, ErrUnterminatedQuote
				}
			} else {
				ve = scanRun(b, ve, &viaValueTable)
			}
			if ve == k {
				return 0, ErrBadVia
			}
			val = b[k:ve]
			i = ve
		}
		v.setParam(name, val)
	}
	if paramsStart >= 0 {
		v.Params = b[paramsStart:i]
	}
	v.End = i
	// [ comment ] (RFC 2543 6.40)
	j = skipWS(b, i)
	if j < len(b) && b[j] == '(' {
		k, ok := skipComment(b, j)
		if !ok {
			return 0, ErrBadVia
		}
		v.End = k
		j = skipWS(b, k)
	}
	if j >= len(b) {
		v.Last = true
		return -1, nil
	}
	if b[j] != ',' {
		return 0, ErrBadVia
	}
	j = skipWS(b, j+1)
	if j >= len(b) {
		return 0, ErrBadVia // a trailing comma announces a value that is not there
	}
	v.NextStart = j
	return j, nil
}

// viaToken reads a token at i (after optional white space) and returns it
// with the position after it.
func viaToken(b []byte, i int) ([]byte, int, bool) {
	i = skipWS(b, i)
	e := scanToken(b, i)
	return b[i:e], e, e > i
}

// viaSlash reads SLASH = SWS "/" SWS.
func viaSlash(b []byte, i int) (int, bool) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '/' {
		return i, false
	}
	return skipWS(b, i+1), true
}

// isViaValueChar reports whether c may appear in an unquoted via parameter
// value: a token, a host, or an IPv6 address (received carries one without
// brackets, RFC 3261 20.42).
func isViaValueChar(c byte) bool { return isTokenChar(c) || c == ':' || c == '[' || c == ']' }

// setParam records the parameters a proxy reads.
func (v *Via) setParam(name, val []byte) {
	switch len(name) {
	case 3:
		if equalFoldLower(name, "ttl") {
			v.TTL = val
		}
	case 5:
		if equalFoldLower(name, "rport") {
			v.RPort, v.HasRPort = val, true
		} else if equalFoldLower(name, "maddr") {
			v.Maddr = val
		}
	case 6:
		if equalFoldLower(name, "branch") {
			v.Branch = val
		} else if equalFoldLower(name, "hidden") {
			v.Hidden = true
		}
	case 8:
		if equalFoldLower(name, "received") {
			v.Received = val
		}
	}
}

// scanHost reads a host (hostname, IPv4 address or bracketed IPv6
// reference) at i. The returned host excludes brackets.
func scanHost(b []byte, i int) (host []byte, ipv6 bool, next int, err error) {
	if i < len(b) && b[i] == '[' {
		j := bytes.IndexByte(b[i:], ']')
		if j < 0 {
			return nil, false, 0, ErrBadURI
		}
		j += i
		var a [16]byte
		if !parseIPv6(b[i+1:j], &a) {
			return nil, false, 0, ErrBadIPv6
		}
		return b[i+1 : j], true, j + 1, nil
	}
	j := scanRun(b, i, &hostTable)
	if j == i {
		return nil, false, 0, ErrBadURI
	}
	return b[i:j], false, j, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isHostChar reports whether c may appear in a hostname or IPv4 address.
// Underscores are accepted because real deployments use them.
func isHostChar(c byte) bool { return hostTable[c] != 0 }

// scanRun returns the end of the run of bytes at i that table t marks
// with 1: hosts and branches run to a few dozen bytes, so it tests four
// bytes per step, where the lookups are independent and one branch decides.
func scanRun(b []byte, i int, t *[256]uint8) int {
	for ; i+4 <= len(b); i += 4 {
		if t[b[i]]&t[b[i+1]]&t[b[i+2]]&t[b[i+3]] == 0 {
			break
		}
	}
	for i < len(b) && t[b[i]] != 0 {
		i++
	}
	return i
}

// viaValueTable marks the bytes of isViaValueChar; it is never modified.
var viaValueTable = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if isViaValueChar(byte(c)) {
			t[c] = 1
		}
	}
	return t
}()

// hostTable marks the bytes of isHostChar; it is never modified.
var hostTable = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' {
			t[c] = 1
		}
	}
	return t
}()

// ViaIter iterates over every via-parm of a message; see Message.Vias.
type ViaIter struct {
	m   *Message
	hdr int // current Via header index, -1 when done
	pos int // next via-parm offset in the current line, -1 = line start
	err error
}

// Next parses the next via-parm into v and reports whether there was one.
func (it *ViaIter) Next(v *Via) bool {
	if it.err != nil || it.hdr < 0 || it.m == nil {
		return false
	}
	h := &it.m.hdrs[it.hdr]
	first := it.pos < 0
	var next int
	if first && it.hdr == int(it.m.first[KindVia])-1 {
		// The top via-parm was parsed by Parse: reuse it.
		*v = it.m.topVia
		next = -1
		if !v.Last {
			next = v.NextStart
		}
	} else {
		if first {
			it.pos = int(h.value.off)
		}
		var err error
		next, err = parseVia(it.m.buf, it.pos, int(h.value.end), v)
		if err != nil {
			it.err = err
			return false
		}
	}
	v.Header, v.First = it.hdr, first
	if next >= 0 {
		it.pos = next
		return true
	}
	it.pos = -1
	it.hdr = -1
	for i := v.Header + 1; i < it.m.n; i++ {
		if it.m.hdrs[i].kind == KindVia {
			it.hdr = i
			break
		}
	}
	return true
}

// Err returns the error that stopped the iteration, if any.
func (it *ViaIter) Err() error { return it.err }

// Count returns the number of via-parms left, consuming the iterator.
func (it *ViaIter) Count() (int, error) {
	var v Via
	n := 0
	for it.Next(&v) {
		n++
	}
	return n, it.err
}

// ViaCount returns the number of via-parms in the message, across lines and
// comma-separated values, without parsing them.
func (m *Message) ViaCount() int {
	f := int(m.first[KindVia])
	if f == 0 {
		return 0
	}
	l := int(m.last[KindVia])
	if l == f && m.topVia.Last {
		return 1 // one line, which Parse has read: one via-parm
	}
	n := 0
	for i := f - 1; i < l; i++ {
		h := &m.hdrs[i]
		if h.kind != KindVia {
			continue
		}
		n++
		if i == f-1 && m.topVia.Last {
			continue // Parse has read this line: it holds one via-parm
		}
		v := m.buf[h.value.off:h.value.end]
		if bytes.IndexByte(v, ',') < 0 {
			continue
		}
		for p := 0; ; {
			_, rest, err := nextValue(v, p)
			if err != nil || rest < 0 {
				break
			}
			n++
			p = rest
		}
	}
	return n
}
