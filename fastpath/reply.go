package fastpath

import (
	"net/netip"
	"strconv"

	"github.com/viaduct-sip/viaduct/parser"
)

// Local replies must work for requests the parser refused (400 naming the
// fault), where the parser's index must not be read. So replies are built
// from a tolerant raw scan of the header lines, and the top Via line is
// parsed on its own (parser.ParseVia): an answer goes only to a top Via that
// the parser accepts.

// rawLine is one header line found by nextRawLine.
type rawLine struct {
	start, end int // the whole line with its line ending and folded lines
	vs, ve     int // the value, white space trimmed
	kind       parser.HeaderKind
}

// headerStart returns the offset of the first header line (after any leading
// CR LF and the start line).
func headerStart(b []byte) int {
	p := 0
	for p < len(b) && (b[p] == '\r' || b[p] == '\n') {
		p++
	}
	for p < len(b) && b[p] != '\n' {
		p++
	}
	if p < len(b) {
		p++
	}
	return p
}

// nextRawLine reads the header line at p. ok is false at the blank line that
// ends the headers or at the end of b. Only the kinds a reply copies are
// classified (Via, From, To, Call-ID, CSeq); every other line is KindOther.
func nextRawLine(b []byte, p int) (l rawLine, ok bool) {
	if p >= len(b) || b[p] == '\n' || (b[p] == '\r' && p+1 < len(b) && b[p+1] == '\n') {
		return l, false
	}
	l.start = p
	e := p
	for {
		for e < len(b) && b[e] != '\n' {
			e++
		}
		if e < len(b) {
			e++
		}
		if e < len(b) && (b[e] == ' ' || b[e] == '\t') {
			continue // folded continuation line
		}
		break
	}
	l.end = e
	colon := p
	for colon < e && b[colon] != ':' {
		colon++
	}
	if colon == e {
		l.vs, l.ve = e, e
		return l, true
	}
	ne := colon
	for ne > p && (b[ne-1] == ' ' || b[ne-1] == '\t') {
		ne--
	}
	l.kind = replyKind(b[p:ne])
	l.vs = parser.SkipWS(b[:e], colon+1)
	l.ve = e
	for l.ve > l.vs && parser.IsWS(b[l.ve-1]) {
		l.ve--
	}
	return l, true
}

// replyKind classifies a header name as one of the kinds a reply copies,
// or KindOther.
func replyKind(name []byte) parser.HeaderKind {
	switch k := parser.KindOf(name); k {
	case parser.KindVia, parser.KindFrom, parser.KindTo, parser.KindCallID, parser.KindCSeq:
		return k
	}
	return parser.KindOther
}

// replyLines are the header lines of a request that a reply copies or
// needs, found by one raw scan.
type replyLines struct {
	via, from, callID             rawLine
	haveVia, haveFrom, haveCallID bool
}

// find records the first Via, From and Call-ID lines of the headers at hs.
func (rl *replyLines) find(in []byte, hs int) {
	*rl = replyLines{}
	for p := hs; ; {
		l, ok := nextRawLine(in, p)
		if !ok {
			return
		}
		switch {
		case l.kind == parser.KindVia && !rl.haveVia:
			rl.via, rl.haveVia = l, true
		case l.kind == parser.KindFrom && !rl.haveFrom:
			rl.from, rl.haveFrom = l, true
		case l.kind == parser.KindCallID && !rl.haveCallID:
			rl.callID, rl.haveCallID = l, true
		}
		p = l.end
	}
}

// buildReply writes a stateless response to the request in `in` into out
// (RFC 3261 8.2.6, 16.11): every Via line (received and rport added to the
// top via-parm), From, To (with a To tag when missing), Call-ID, CSeq and
// Content-Length: 0. It goes back per RFC 3261 18.2.2 and RFC 3581 to the
// source address, at the rport (the source port) when the client asked for
// it, else at the top Via's sent-by port (default 5060). A maddr in the top
// Via is ignored: answering a multicast or third-party address named by an
// unauthenticated request would make Viaduct a reflector.
//
// It returns false when there is no valid top Via to answer to.
func (w *Worker) buildReply(in []byte, from netip.AddrPort, code LocalCode, reason string, out *Output) bool {
	hs := headerStart(in)
	rl := &w.replyLines
	rl.find(in, hs)
	top := &w.replyVia
	if !rl.haveVia || parser.ParseVia(in, rl.via.vs, rl.via.ve, top) != nil || len(top.Host) == 0 {
		return false
	}
	port := top.Port
	if port == 0 {
		port = 5060
	}
	if top.HasRPort {
		port = int(from.Port())
	}
	w.scratch = w.scratch[:0]
	w.redits.reset()
	w.topViaEdits(in, top, from, &w.redits)

	b := out.Buf[:0]
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendUint(b, uint64(code.Status()), 10)
	b = append(b, ' ')
	b = append(b, reason...)
	b = append(b, "\r\n"...)
	b = w.appendReplyHeaders(b, in, hs)
	if w.retryAfter > 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendUint(b, uint64(w.retryAfter), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	out.Buf = b
	w.setDest(out, netip.AddrPortFrom(from.Addr(), uint16(port)), w.src.Listener)
	out.Kind, out.Flow = w.src.Kind, w.src.Flow // back the way it came
	return true
}

// appendReplyHeaders appends the header lines a reply copies, in the
// request's order: the Via lines (the top one with received and rport), From,
// To (given a tag when it has none), Call-ID and CSeq.
func (w *Worker) appendReplyHeaders(b, in []byte, hs int) []byte {
	first := true
	for p := hs; ; {
		l, ok := nextRawLine(in, p)
		if !ok {
			return b
		}
		p = l.end
		switch l.kind {
		case parser.KindVia:
			if first {
				b = w.redits.applyRange(b, in, l.start, l.end)
				first = false
			} else {
				b = append(b, in[l.start:l.end]...)
			}
		case parser.KindTo:
			b = w.appendReplyTo(b, in, l)
		case parser.KindFrom, parser.KindCallID, parser.KindCSeq:
			b = append(b, in[l.start:l.end]...)
		default:
			continue
		}
		b = endLine(b)
	}
}

// appendReplyTo appends the To line l, with a tag added when it has none.
func (w *Worker) appendReplyTo(b, in []byte, l rawLine) []byte {
	var to parser.NameAddr
	if parser.ParseNameAddr(in[l.vs:l.ve], &to) != nil || to.Tag != nil {
		return append(b, in[l.start:l.end]...)
	}
	b = append(b, in[l.start:l.ve]...)
	b = append(b, ";tag="...)
	b = w.appendToTag(b, in)
	return append(b, in[l.ve:l.end]...)
}

// endLine completes the line at the end of b, copied from a datagram that
// ended inside it, with what it lacks of its CRLF.
func endLine(b []byte) []byte {
	switch {
	case len(b) > 0 && b[len(b)-1] == '\n':
		return b
	case len(b) > 0 && b[len(b)-1] == '\r':
		return append(b, '\n')
	}
	return append(b, "\r\n"...)
}

// appendToTag appends a To tag that is the same for every retransmission of
// the request: "vd" and a hash of Call-ID and From tag.
func (w *Worker) appendToTag(b, in []byte) []byte {
	rl := &w.replyLines
	d := w.xx
	d.Reset()
	if rl.haveCallID {
		d.Write(in[rl.callID.vs:rl.callID.ve])
	}
	d.Write(sep)
	if rl.haveFrom {
		var f parser.NameAddr
		if parser.ParseNameAddr(in[rl.from.vs:rl.from.ve], &f) == nil {
			d.Write(f.Tag)
		}
	}
	b = append(b, "vd"...)
	return appendB32(b, d.Sum64(), 13)
}
