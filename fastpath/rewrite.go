package fastpath

import (
	"net/netip"
	"strconv"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// forward rewrites the request into r.out as RFC 3261 16.6 and 16.11 say,
// as edits applied in one copy: Viaduct's Via on top, Record-Route and Path
// where configured, received and rport on the previous hop's Via, and
// Max-Forwards decremented; then it fills in the branch's MAC over the
// previous hop's via-parm exactly as forwarded.
func (w *Worker) forward(r *reqState) Action {
	viaLine, _ := w.m.Find(parser.KindVia)
	viaAt := viaLine.Start
	w.addOurVia(r, viaAt)
	w.addRecordRoute(r, viaAt)
	w.addPath(r, viaAt)
	w.topViaEdits(r.in, r.top, r.from, &w.edits)
	w.maxForwardsEdit(r.in)
	in := w.framed(r.in, r.sendKind, &w.edits)

	out := r.out
	out.Buf = w.edits.apply(out.Buf[:0], in)
	a, b := w.edits.outPos(r.top.Start), w.edits.outPos(r.top.End)
	branchAt := w.edits.outPosStrict(viaAt) + len(w.e.viaPrefix[r.sendListen])
	at := offMAC
	if w.src.Flow != 0 {
		at = offFlowMAC
	}
	sum := w.mac.mac(out.Buf[branchAt:branchAt+at], out.Buf[a:b])
	appendB32(out.Buf[branchAt+at:branchAt+at], sum, macDigits)

	w.setDest(out, r.dest, r.sendListen)
	out.Flow = r.sendFlow
	w.c.reqFwd.inc()
	if r.counted {
		w.up.inc(r.picked)
	}
	return ActionForward
}

// addOurVia inserts Viaduct's Via above the first Via line, with the
// branch's MAC left to fill in once the output exists.
func (w *Worker) addOurVia(r *reqState, viaAt int) {
	sp := len(w.scratch)
	w.scratch = append(w.scratch, w.e.viaPrefix[r.sendListen]...)
	w.scratch = w.mac.appendBranchNoMAC(w.scratch, w.src.Listener, r.key, r.loop, w.srcConn())
	w.scratch = append(w.scratch, "\r\n"...)
	w.edits.add(viaAt, viaAt, w.scratch[sp:])
}

// addRecordRoute puts Viaduct's Record-Route first on a request that starts
// a dialog (INVITE, SUBSCRIBE, REFER without a To tag), when configured:
// one entry, or two when the request crosses transports or either side is
// a connection (RFC 5658: the top one faces the next hop, the other the
// previous hop); an entry facing a connection names it with a flow token.
func (w *Worker) addRecordRoute(r *reqState, viaAt int) {
	if !w.e.cfg.RecordRoute || len(r.to.Tag) != 0 {
		return
	}
	if r.meth != parser.MethodINVITE && r.meth != parser.MethodSUBSCRIBE && r.meth != parser.MethodREFER {
		return
	}
	at := viaAt
	if h, ok := w.m.Find(parser.KindRecordRoute); ok {
		at = h.Start
	}
	in, out := w.src.Listener, r.sendListen
	e := w.e
	if e.kinds[in] == e.kinds[out] && w.src.Flow == 0 && r.sendFlow == 0 {
		w.edits.add(at, at, e.rrLine[out])
		return
	}
	sp := len(w.scratch)
	w.scratch = w.appendRREntry(w.scratch, out, r.dest, r.sendFlow)
	w.scratch = w.appendRREntry(w.scratch, in, r.from, w.src.Flow)
	w.edits.add(at, at, w.scratch[sp:])
}

// appendRREntry appends the Record-Route line of listener l facing peer:
// with the peer's address and flow token when it is a connection.
func (w *Worker) appendRREntry(dst []byte, l int, peer netip.AddrPort, flow uint64) []byte {
	if flow == 0 {
		return append(dst, w.e.rrLine[l]...)
	}
	dst = append(dst, w.e.rrStart[l]...)
	dst = peer.AppendTo(dst)
	dst = w.mac.appendFlowToken(dst, l, flowRef{boot: w.e.boot, flow: flow})
	return append(dst, ">\r\n"...)
}

// addPath puts Viaduct's Path first on a client's REGISTER (RFC 3327 section
// 5.2), with the address the REGISTER came from and, when it came over a
// connection, that connection's flow token, when configured.
func (w *Worker) addPath(r *reqState, viaAt int) {
	if !w.e.cfg.Path || r.meth != parser.MethodREGISTER || r.fromUpstream {
		return
	}
	at := viaAt
	if h, ok := w.m.Find(parser.KindPath); ok {
		at = h.Start
	}
	sp := len(w.scratch)
	w.scratch = append(w.scratch, w.e.pathStart[r.sendListen]...)
	w.scratch = r.from.AppendTo(w.scratch)
	if w.src.Flow != 0 {
		w.scratch = w.mac.appendFlowToken(w.scratch, w.src.Listener, w.srcConn())
	}
	w.scratch = append(w.scratch, ">\r\n"...)
	w.edits.add(at, at, w.scratch[sp:])
}

// framed returns the message in ready to go over kind: as it is for a
// datagram; for a stream (RFC 3261 18.3) cut after the body that its
// Content-Length gives, with a Content-Length added (as an edit in l) when
// a datagram had none.
func (w *Worker) framed(in []byte, kind transport.Kind, l *editList) []byte {
	if !kind.Reliable() {
		return in
	}
	m := &w.m
	body := m.Body()
	end := m.Offset(body) + len(body)
	if _, ok := m.ContentLength(); !ok {
		sp := len(w.scratch)
		w.scratch = append(w.scratch, "Content-Length: "...)
		w.scratch = strconv.AppendUint(w.scratch, uint64(len(body)), 10)
		w.scratch = append(w.scratch, "\r\n"...)
		w.addAtHeadersEnd(in, l, w.scratch[sp:])
	}
	return in[:end]
}

// addAtHeadersEnd adds the header line `line` (with its CR LF) after the
// last header line, as an edit in l.
func (w *Worker) addAtHeadersEnd(in []byte, l *editList, line []byte) {
	he := w.m.HeadersEnd()
	if he > 0 && he <= len(in) && in[he-1] == '\n' && he < len(in) {
		l.add(he, he, line)
		return
	}
	// No blank line ends the headers (a datagram may end after its last
	// header line): end the headers too.
	sp := len(w.scratch)
	switch {
	case he > 0 && in[he-1] == '\r':
		w.scratch = append(w.scratch, '\n')
	case he > 0 && in[he-1] != '\n':
		w.scratch = append(w.scratch, "\r\n"...)
	}
	w.scratch = append(w.scratch, line...)
	w.scratch = append(w.scratch, "\r\n"...)
	l.add(he, he, w.scratch[sp:])
}

// maxForwardsEdit decrements Max-Forwards (16.6 item 3), or adds it as 70
// where an RFC 2543 request has none, ending the header block as the
// datagram had (or had not) ended it.
func (w *Worker) maxForwardsEdit(in []byte) {
	m := &w.m
	if mf, ok := m.MaxForwards(); ok {
		h, _ := m.Find(parser.KindMaxForwards)
		vs := m.Offset(h.Value)
		sp := len(w.scratch)
		w.scratch = strconv.AppendUint(w.scratch, uint64(mf-1), 10)
		w.edits.add(vs, vs+len(h.Value), w.scratch[sp:])
		return
	}
	he := m.HeadersEnd()
	switch {
	case he > 0 && in[he-1] == '\r':
		// the datagram ends after the CR of the last line's CRLF
		w.edits.add(he, he, maxForwardsAfterCR)
	case he > 0 && in[he-1] != '\n':
		// the last header line has no line ending (the datagram ends
		// there): end it first, and end the headers
		w.edits.add(he, he, maxForwardsAfterUnterminated)
	case he == len(in):
		w.edits.add(he, he, maxForwardsLineEnd)
	default:
		w.edits.add(he, he, maxForwardsLine)
	}
}

var (
	maxForwardsLine              = []byte("Max-Forwards: 70\r\n")
	maxForwardsLineEnd           = []byte("Max-Forwards: 70\r\n\r\n")
	maxForwardsAfterUnterminated = []byte("\r\nMax-Forwards: 70\r\n\r\n")
	maxForwardsAfterCR           = []byte("\nMax-Forwards: 70\r\n\r\n")
)

// topViaEdits adds received and rport to the request's top Via (RFC 3261
// 18.2.1, RFC 3581 section 4) as edits in l; top's slices point into in.
func (w *Worker) topViaEdits(in []byte, top *parser.Via, from netip.AddrPort, l *editList) {
	src := from.Addr()
	// Where parameters end (new ones are appended there).
	var at int
	if top.Params != nil {
		at = offsetIn(in, top.Params) + len(top.Params)
	} else {
		at = sentByEnd(in, top)
	}
	if top.HasRPort {
		po := offsetIn(in, top.Params)
		ne, vs, ve, ok := parser.ParamSpan(top.Params, "rport")
		if ok {
			sp := len(w.scratch)
			if vs == ve {
				w.scratch = append(w.scratch, '=')
				w.scratch = strconv.AppendUint(w.scratch, uint64(from.Port()), 10)
				l.add(po+ne, po+ne, w.scratch[sp:])
			} else {
				w.scratch = strconv.AppendUint(w.scratch, uint64(from.Port()), 10)
				l.add(po+vs, po+ve, w.scratch[sp:])
			}
		}
	}
	if top.Received != nil {
		po := offsetIn(in, top.Params)
		_, vs, ve, ok := parser.ParamSpan(top.Params, "received")
		if ok {
			if old, ok2 := parser.ParseIP(top.Received); !ok2 || old != src || vs == ve {
				sp := len(w.scratch)
				if vs == ve {
					w.scratch = append(w.scratch, '=')
				}
				w.scratch = src.AppendTo(w.scratch)
				l.add(po+vs, po+ve, w.scratch[sp:])
			}
		}
		return
	}
	hostIP, isIP := parser.ParseIP(top.Host)
	if top.HasRPort || !isIP || hostIP != src {
		sp := len(w.scratch)
		w.scratch = append(w.scratch, ";received="...)
		w.scratch = src.AppendTo(w.scratch)
		l.add(at, at, w.scratch[sp:])
	}
}

// sentByEnd returns the offset just after a via-parm's sent-by (host and
// optional port).
func sentByEnd(in []byte, v *parser.Via) int {
	i := offsetIn(in, v.Host) + len(v.Host)
	if v.IPv6 && i < len(in) && in[i] == ']' {
		i++
	}
	// A port may be there even when v.Port is 0 (written "0"), and SWS
	// may stand around its colon.
	j := parser.SkipWS(in[:v.End], i)
	if j < v.End && in[j] == ':' {
		j = parser.SkipWS(in[:v.End], j+1)
		for j < v.End && in[j] >= '0' && in[j] <= '9' {
			j++
		}
		return j
	}
	return i
}

// offsetIn returns the position in b of sub, a slice of b (or re-sliced from
// one without a capacity limit), as parser.Message.Offset does.
func offsetIn(b, sub []byte) int { return cap(b) - cap(sub) }
