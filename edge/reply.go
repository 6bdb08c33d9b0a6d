package edge

import (
	"bytes"
	"strconv"

	"github.com/viaduct-sip/viaduct/transport"
)

// appendRetryLater fills out with "503 Service Unavailable" and
// "Retry-After: retryAfter" for the request msg, to go back to src: the
// Via headers, From, To (with a tag when it has none), Call-ID and CSeq
// copied from the request (RFC 3261 8.2.6). It reports false, and out is
// not to be sent, for an ACK (never answered) or a request without those
// headers or that does not fit out.
func appendRetryLater(out *transport.Outbound, msg []byte, src transport.Peer, retryAfter uint32) bool {
	if bytes.HasPrefix(msg, []byte("ACK ")) {
		return false
	}
	b := append(out.Buf[:0], "SIP/2.0 503 Service Unavailable\r\n"...)
	var seen uint8
	lines := msg
	if i := bytes.IndexByte(lines, '\n'); i >= 0 {
		lines = lines[i+1:]
	}
	for len(lines) > 0 {
		end := bytes.IndexByte(lines, '\n')
		if end < 0 {
			end = len(lines) - 1
		}
		line := bytes.TrimRight(lines[:end+1], "\r\n")
		lines = lines[end+1:]
		if len(line) == 0 {
			break
		}
		bit := copiedHeader(line)
		if bit == 0 {
			continue
		}
		seen |= bit
		b = append(b, line...)
		if bit == hdrTo && !hasTag(line) {
			b = append(b, ";tag=edge503"...)
		}
		b = append(b, "\r\n"...)
	}
	if seen != hdrVia|hdrFrom|hdrTo|hdrCallID|hdrCSeq {
		return false
	}
	b = append(b, "Retry-After: "...)
	b = strconv.AppendUint(b, uint64(retryAfter), 10)
	b = append(b, "\r\nContent-Length: 0\r\n\r\n"...)
	if len(b) > cap(out.Buf) {
		return false
	}
	out.Buf = b
	out.To = src
	return true
}

// The headers a stateless response copies.
const (
	hdrVia uint8 = 1 << iota
	hdrFrom
	hdrTo
	hdrCallID
	hdrCSeq
)

// copiedHeader returns the bit of the header line's name among those a
// response copies (long or compact form), or 0.
func copiedHeader(line []byte) uint8 {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return 0
	}
	name := bytes.TrimRight(line[:colon], " \t")
	for _, h := range [...]struct {
		long, compact string
		bit           uint8
	}{{"via", "v", hdrVia}, {"from", "f", hdrFrom}, {"to", "t", hdrTo}, {"call-id", "i", hdrCallID}, {"cseq", "", hdrCSeq}} {
		if (len(name) == len(h.long) && asciiEqualFold(name, h.long)) || (h.compact != "" && len(name) == 1 && name[0]|0x20 == h.compact[0]) {
			return h.bit
		}
	}
	return 0
}

// hasTag reports whether a To header line carries a tag parameter.
func hasTag(line []byte) bool {
	for i := 0; i+4 <= len(line); i++ {
		if line[i] == ';' {
			p := bytes.TrimLeft(line[i+1:], " \t")
			if len(p) >= 4 && asciiEqualFold(p[:3], "tag") && bytes.HasPrefix(bytes.TrimLeft(p[3:], " \t"), []byte("=")) {
				return true
			}
		}
	}
	return false
}
