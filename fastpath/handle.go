package fastpath

import (
	"bytes"
	"net/netip"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
)

// Action tells the caller of Worker.Handle what to do with its Output.
type Action uint8

// The actions.
const (
	// ActionDrop: send nothing. Output.Drop says why.
	ActionDrop Action = iota
	// ActionForward: send Output.Buf to Output.To (a forwarded request or
	// response).
	ActionForward
	// ActionReply: send Output.Buf to Output.To, a response Viaduct
	// generated itself (Output.Drop says why the request was refused, or
	// is DropNone for a 200 to OPTIONS).
	ActionReply
	// ActionLocal: the message was a response addressed to Viaduct itself
	// and was given to the local response handler; send nothing.
	ActionLocal
)

var actionNames = [...]string{"drop", "forward", "reply", "local"}

// String returns the action's name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Output receives the result of Worker.Handle.
type Output struct {
	// Buf holds the datagram to send. Handle appends to Buf[:0], so a
	// caller that wants no allocation gives it a capacity of at least
	// MaxMessageSize+1024 bytes.
	Buf []byte
	// To is the destination.
	To netip.AddrPort
	// Listen is the index (into Config.Listen) of the listen address whose
	// socket the datagram must be sent from.
	Listen int
	// Drop is the reason the message was not forwarded, or DropNone.
	Drop DropReason
}

// Handle processes one datagram received from `from` on the worker's listen
// address and writes what to send into out. It is the whole per-message path
// of Viaduct minus the socket I/O: parse, validate, choose, rewrite, and
// allocates nothing. The returned Action says whether out is to be sent.
//
// Handle keeps no reference to in or out after it returns, but out.Buf may
// alias nothing else: in and out.Buf must not overlap.
func (w *Worker) Handle(in []byte, from netip.AddrPort, out *Output) Action {
	out.Buf = out.Buf[:0]
	out.To = netip.AddrPort{}
	out.Listen = w.listen
	out.Drop = DropNone
	w.c.dgIn.inc()
	w.c.bytesIn.add(uint64(len(in)))
	from = netip.AddrPortFrom(from.Addr().Unmap().WithZone(""), from.Port())
	tooBig := len(in) > w.e.cfg.MaxMessageSize
	m := &w.m
	if err := parser.Parse(in, m); err != nil {
		return w.parseFailed(in, from, err, tooBig, out)
	}
	if !m.IsRequest() {
		return w.response(in, from, tooBig, out)
	}
	return w.request(in, from, tooBig, out)
}

// parseFailed answers a request the parser refused with 400 (or 505), when
// there is a Via to answer to, and drops anything else.
func (w *Worker) parseFailed(in []byte, from netip.AddrPort, err error, tooBig bool, out *Output) Action {
	if err == parser.ErrEmpty && len(in) > 0 {
		// Nothing but CR LF: a keepalive (RFC 5626 4.4.1 sends CRLFCRLF).
		return w.drop(DropKeepalive, out)
	}
	reason := DropParseError
	if tooBig {
		reason = DropTooBig
	}
	// The parser's index must not be read after an error; judge from the
	// raw start line: never answer a response or an ACK.
	if looksLikeResponse(in) || isACK(in) {
		return w.drop(reason, out)
	}
	if tooBig {
		return w.refuse(in, from, Local513, "Message Too Large", reason, out)
	}
	pe, _ := err.(*parser.Error)
	if pe == nil {
		return w.drop(reason, out)
	}
	code := Local400
	if pe.Status == 505 {
		code = Local505
	}
	return w.refuse(in, from, code, pe.Reason, reason, out)
}

// looksLikeResponse reports whether a datagram starts (after keep-alive CR
// LF) like a status line.
func looksLikeResponse(b []byte) bool {
	b = trimLeadingCRLF(b)
	return len(b) >= 4 && b[0] == 'S' && b[1] == 'I' && b[2] == 'P' && b[3] == '/'
}

// isACK reports whether a datagram's start line names the ACK method.
func isACK(b []byte) bool {
	b = trimLeadingCRLF(b)
	return len(b) >= 4 && b[0] == 'A' && b[1] == 'C' && b[2] == 'K' && (b[3] == ' ' || b[3] == '\t')
}

func trimLeadingCRLF(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

func (w *Worker) drop(r DropReason, out *Output) Action {
	w.c.drops[r].inc()
	out.Drop = r
	return ActionDrop
}

// refuse answers the current request with a local reply (never an ACK) and
// counts the drop reason (DropNone for a 200 to OPTIONS).
func (w *Worker) refuse(in []byte, from netip.AddrPort, code LocalCode, reason string, drop DropReason, out *Output) Action {
	if drop != DropNone {
		w.c.drops[drop].inc()
		out.Drop = drop
	}
	if w.m.MethodID() == parser.MethodACK {
		return ActionDrop
	}
	if !w.buildReply(in, from, code, reason, out) {
		return ActionDrop
	}
	w.c.local[code].inc()
	return ActionReply
}

// routeInfo describes one Route value found by scanRoutes.
type routeInfo struct {
	start, end  int // the value, absolute offsets
	line        int // header index
	lineStart   int // the whole header line
	lineEnd     int
	first, last bool // first / last value on its line
	prevEnd     int  // end of the previous value on the line (when !first)
	nextStart   int  // start of the next value on the line (when !last)
	count       int  // values on its line
}

// routes is what the request path needs to know about the Route header.
type routes struct {
	n           int // values in all Route lines
	first, last routeInfo
}

// scanRoutes walks every Route header line once and records the first and
// the last Route value.
func (w *Worker) scanRoutes(in []byte, r *routes) {
	m := &w.m
	*r = routes{}
	if _, ok := m.Find(parser.KindRoute); !ok {
		return
	}
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.Kind != parser.KindRoute {
			continue
		}
		base := m.Offset(h.Value)
		pos, idx, prevEnd := 0, 0, 0
		for {
			s, e, next, ok := nextListValue(h.Value, pos)
			if !ok {
				break
			}
			if r.n == 0 {
				r.first = routeInfo{start: base + s, end: base + e, line: i, lineStart: h.Start, lineEnd: h.End, first: true}
			} else if r.first.line == i && idx == 1 {
				r.first.nextStart = base + s
			}
			if idx > 0 && r.last.line == i {
				r.last.nextStart = base + s
			}
			r.last = routeInfo{start: base + s, end: base + e, line: i, lineStart: h.Start, lineEnd: h.End, first: idx == 0, prevEnd: prevEnd}
			prevEnd = base + e
			r.n++
			idx++
			pos = next
		}
		if idx > 0 {
			if r.first.line == i {
				r.first.count = idx
				r.first.last = idx == 1
			}
			r.last.count = idx
			r.last.last = true
		}
	}
}

// routeURI parses a Route value and returns its URI.
func routeURI(v []byte, u *parser.URI) ([]byte, bool) {
	var na parser.NameAddr
	if parser.ParseNameAddr(v, &na) != nil {
		return nil, false
	}
	if parser.ParseURI(na.URI, u) != nil {
		return nil, false
	}
	return na.URI, true
}

// removeRoute adds the edit that deletes one Route value (the whole line when
// it is the only value on it).
func (w *Worker) removeRoute(r *routeInfo) {
	switch {
	case r.first && r.last:
		w.edits.add(r.lineStart, r.lineEnd, nil)
	case !r.last:
		w.edits.add(r.start, r.nextStart, nil)
	default:
		w.edits.add(r.prevEnd, r.end, nil)
	}
}

// request forwards or answers a parsed request.
func (w *Worker) request(in []byte, from netip.AddrPort, tooBig bool, out *Output) Action {
	m := &w.m
	e := w.e
	w.rt = e.route.Load() // one reload generation for the whole request
	meth := m.MethodID()
	w.c.method(meth)
	if tooBig {
		return w.refuse(in, from, Local513, "Message Too Large", DropTooBig, out)
	}
	to, err := m.To()
	if err != nil {
		return w.refuseErr(in, from, err, out)
	}
	if err := m.CheckFrom(); err != nil {
		return w.refuseErr(in, from, err, out)
	}
	top := m.TopVia()
	w.edits.reset()
	w.scratch = w.scratch[:0]

	// Route information preprocessing (RFC 3261 16.4).
	ruri := m.RequestURI()
	// ru is the effective Request-URI parsed; u holds the Route value at
	// hand.
	var ru, u parser.URI
	if err := m.ParseRequestURI(&ru); err != nil {
		return w.refuseErr(in, from, err, out)
	}
	ruriSelf, ruriLR := false, false
	if isSIPScheme(ru.Scheme) && len(ru.User) == 0 && e.isSelf(ru.Host, ru.Port) {
		ruriSelf = true
		_, ruriLR = ru.Param("lr")
	}
	var rs routes
	w.scanRoutes(in, &rs)
	remaining := rs.n
	removedFirst, removedLast := false, false
	effRURI := ruri
	if ruriSelf && ruriLR && rs.n > 0 {
		// Sent by a strict router: our Record-Route URI is in the
		// Request-URI and the real one is the last Route value.
		lastURI, ok := routeURI(in[rs.last.start:rs.last.end], &u)
		if !ok || hasWS(lastURI) {
			// (white space would break the start line it moves to)
			return w.refuse(in, from, Local400, "Malformed Route", DropParseError, out)
		}
		effRURI, ru = lastURI, u
		ruriSelf = false
		w.edits.add(m.Offset(ruri), m.Offset(ruri)+len(ruri), lastURI)
		removedLast = true
		remaining--
	}
	// flow is the client address that Viaduct's Path entry recorded, when
	// the Route taken off is one and the request comes from an upstream,
	// the only requests it routes (see Config.Path).
	fromUpstream := w.rt.isUpstream(from)
	var flow netip.AddrPort
	if remaining > 0 {
		if _, ok := routeURI(in[rs.first.start:rs.first.end], &u); ok && isSIPScheme(u.Scheme) && len(u.User) == 0 && e.isSelf(u.Host, u.Port) {
			removedFirst = true
			remaining--
			if fromUpstream {
				if v, ok := u.Param("received"); ok {
					flow, _ = parser.ParseAddrPort(v)
				}
			}
		}
	}
	if removedFirst && removedLast && rs.first.line == rs.last.line && rs.first.count == 2 {
		w.edits.add(rs.first.lineStart, rs.first.lineEnd, nil)
	} else {
		if removedFirst {
			w.removeRoute(&rs.first)
		}
		if removedLast {
			w.removeRoute(&rs.last)
		}
	}

	// OPTIONS addressed to Viaduct itself: a keepalive, answered here
	// (also with Max-Forwards 0, RFC 3261 16.3 item 3).
	if meth == parser.MethodOPTIONS && ruriSelf && remaining == 0 {
		return w.refuse(in, from, Local200, "OK", DropNone, out)
	}
	mf, hasMF := m.MaxForwards()
	if hasMF && mf <= 0 {
		return w.refuse(in, from, Local483, "Too Many Hops", DropTooManyHops, out)
	}

	// Loop detection (16.3 item 4): a Via of ours whose loop hash equals
	// this request's means nothing that routes it has changed.
	loop := w.loopHash(in, effRURI, &rs, removedFirst, removedLast)
	if w.looped(loop) {
		return w.refuse(in, from, Local482, "Loop Detected", DropLoop, out)
	}

	// Destination: a request from an upstream goes to its next hop; a
	// request of an existing dialog goes to the upstream its next hop
	// names, if any; every other request to the upstream balancing picks.
	dest, ok := netip.AddrPort{}, false
	var picked uint64 // ID hash of the pool target chosen
	counted := false  // whether picked is set
	dialog := inDialog(meth, to.Tag, rs.n)
	if flow.IsValid() {
		// Through the Path Viaduct added to the client's REGISTER: back
		// to where the REGISTER came from.
		dest = flow
	} else if fromUpstream {
		next, ok := w.nextHopURI(in, &rs, removedFirst, remaining, &ru, &u)
		if !ok {
			return w.refuse(in, from, Local400, "Malformed Request-URI", DropParseError, out)
		}
		if !(isSIPScheme(next.Scheme) && len(next.User) == 0 && e.isSelf(next.Host, next.Port)) {
			d, isIP := uriDest(next)
			if !isIP {
				if e.cfg.NextHops == nil {
					return w.refuse(in, from, Local503, "Next Hop Not An IP Address", DropNoUpstream, out)
				}
				var st NextHopState
				d, st = e.cfg.NextHops.LookupNextHop(uriHost(next), next.Port)
				switch {
				case st == NextHopPending:
					return w.drop(DropNextHopPending, out)
				case st != NextHopFound || !d.IsValid():
					return w.refuse(in, from, Local503, "Next Hop Does Not Resolve", DropNoUpstream, out)
				}
			}
			dest = d
		}
	} else if dialog && e.picker == nil {
		if t, ok := w.dialogUpstream(w.nextHopURI(in, &rs, removedFirst, remaining, &ru, &u)); ok {
			dest, picked, counted = t.Addr, t.IDHash(), true
			w.c.dialogRouted.inc()
		}
	}
	if !dest.IsValid() {
		dest, picked, counted, ok = w.pick(&to, dialog)
		if !ok {
			return w.refuse(in, from, Local503, "No Upstream Available", DropNoUpstream, out)
		}
	}
	if reason := unsafeDestination(dest.Addr()); reason != "" {
		return w.refuse(in, from, Local403, reason, DropUnsafeDestination, out)
	}
	sendListen := e.listenFor(w.listen, dest.Addr())
	if sendListen < 0 {
		return w.refuse(in, from, Local503, "No Socket For Address Family", DropNoUpstream, out)
	}

	// Transaction key (16.11): the client's branch and sent-by for
	// RFC 3261 clients, the 2543 transaction identity otherwise.
	var key uint64
	if top.HasCookie() {
		key = w.txKey3261(top)
	} else {
		key, err = w.txKey2543(in, top, to.Tag)
		if err != nil {
			return w.refuseErr(in, from, err, out)
		}
	}

	// Our Via, with the branch's MAC filled in once the output exists.
	viaLine, _ := m.Find(parser.KindVia)
	viaAt := viaLine.Start
	sp := len(w.scratch)
	w.scratch = append(w.scratch, e.viaPrefix[sendListen]...)
	w.scratch = w.mac.appendBranchNoMAC(w.scratch, w.listen, key, loop)
	w.scratch = append(w.scratch, "\r\n"...)
	ourVia := w.scratch[sp:]
	w.edits.add(viaAt, viaAt, ourVia)

	// Record-Route for dialog-forming requests.
	if e.cfg.RecordRoute && len(to.Tag) == 0 && (meth == parser.MethodINVITE || meth == parser.MethodSUBSCRIBE || meth == parser.MethodREFER) {
		at := viaAt
		if h, ok := m.Find(parser.KindRecordRoute); ok {
			at = h.Start
		}
		w.edits.add(at, at, e.rrLine[sendListen])
	}

	// Path for the REGISTER of a client (RFC 3327 section 5.2): first.
	if e.cfg.Path && meth == parser.MethodREGISTER && !fromUpstream {
		at := viaAt
		if h, ok := m.Find(parser.KindPath); ok {
			at = h.Start
		}
		sp := len(w.scratch)
		w.scratch = append(w.scratch, e.pathStart[sendListen]...)
		w.scratch = from.AppendTo(w.scratch)
		w.scratch = append(w.scratch, ">\r\n"...)
		w.edits.add(at, at, w.scratch[sp:])
	}

	// received / rport on the previous hop's Via (RFC 3261 18.2.1, RFC 3581).
	w.topViaEdits(&w.m, in, top, from, &w.edits)

	// Max-Forwards (16.6 item 3).
	if hasMF {
		h, _ := m.Find(parser.KindMaxForwards)
		vs := m.Offset(h.Value)
		sp := len(w.scratch)
		w.scratch = strconv.AppendUint(w.scratch, uint64(mf-1), 10)
		w.edits.add(vs, vs+len(h.Value), w.scratch[sp:])
	} else {
		he := m.HeadersEnd()
		switch {
		case he > 0 && in[he-1] == '\r':
			// the datagram ends after the CR of the last line's CRLF
			w.edits.add(he, he, maxForwardsAfterCR)
		case he > 0 && in[he-1] != '\n':
			// the last header line has no line ending (the datagram
			// ends there): end it first, and end the headers
			w.edits.add(he, he, maxForwardsAfterUnterminated)
		case he == len(in):
			w.edits.add(he, he, maxForwardsLineEnd)
		default:
			w.edits.add(he, he, maxForwardsLine)
		}
	}

	out.Buf = w.edits.apply(out.Buf[:0], in)
	// MAC over the previous hop's via-parm exactly as forwarded.
	a, b := w.edits.outPos(top.Start), w.edits.outPos(top.End)
	branchAt := w.edits.outPosStrict(viaAt) + len(e.viaPrefix[sendListen])
	sum := w.mac.mac(out.Buf[branchAt:branchAt+offMAC], out.Buf[a:b])
	appendB32(out.Buf[branchAt+offMAC:branchAt+offMAC], sum, macDigits)

	out.To = dest
	out.Listen = sendListen
	w.c.reqFwd.inc()
	if counted {
		w.up.inc(picked)
	}
	return ActionForward
}

// refuseErr answers 400 (or 505) naming a parser error found after Parse.
func (w *Worker) refuseErr(in []byte, from netip.AddrPort, err error, out *Output) Action {
	reason := "Bad Request"
	code := Local400
	if pe, ok := err.(*parser.Error); ok {
		reason = pe.Reason
		if pe.Status == 505 {
			code = Local505
		}
	}
	return w.refuse(in, from, code, reason, DropParseError, out)
}

// nextHopURI returns the URI of the request's next hop once Viaduct's own
// Route entries are gone (RFC 3261 16.6 items 6 and 7): the next Route
// value, parsed into u, or, when no Route is left, the effective
// Request-URI ru, already parsed. It reports false when that URI does not
// parse.
func (w *Worker) nextHopURI(in []byte, rs *routes, removedFirst bool, remaining int, ru *parser.URI, u *parser.URI) (*parser.URI, bool) {
	if remaining == 0 {
		return ru, true
	}
	next := rs.first
	if removedFirst {
		next = w.routeAfterFirst(in, rs)
	}
	_, ok := routeURI(in[next.start:next.end], u)
	return u, ok
}

// dialogUpstream returns the upstream that the next hop u of an in-dialog
// request (ok: u parsed) names by its IP address and port, when that
// upstream still takes in-dialog requests (up, enabled or draining). Such a
// request follows its dialog's route set or remote target to the server
// that holds the dialog, wherever hashing its key would go now: a dialog
// created while its key's upstream drained or was down stays with the
// upstream that took it.
func (w *Worker) dialogUpstream(u *parser.URI, ok bool) (*balancer.Target, bool) {
	if !ok || !isSIPScheme(u.Scheme) {
		return nil, false
	}
	d, isIP := uriDest(u)
	if !isIP {
		return nil, false
	}
	t, ok := w.e.pool.Table().ByAddr(d)
	if !ok || !t.Selectable(true) {
		return nil, false
	}
	return t, true
}

// routeAfterFirst returns the Route value that follows the first one.
func (w *Worker) routeAfterFirst(in []byte, rs *routes) routeInfo {
	if !rs.first.last {
		s, e, _, _ := nextListValue(in[:rs.first.lineEnd], rs.first.nextStart)
		return routeInfo{start: s, end: e}
	}
	m := &w.m
	for i := rs.first.line + 1; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.Kind != parser.KindRoute {
			continue
		}
		s, e, _, ok := nextListValue(h.Value, 0)
		if ok {
			base := m.Offset(h.Value)
			return routeInfo{start: base + s, end: base + e}
		}
	}
	return rs.last
}

var (
	maxForwardsLine              = []byte("Max-Forwards: 70\r\n")
	maxForwardsLineEnd           = []byte("Max-Forwards: 70\r\n\r\n")
	maxForwardsAfterUnterminated = []byte("\r\nMax-Forwards: 70\r\n\r\n")
	maxForwardsAfterCR           = []byte("\nMax-Forwards: 70\r\n\r\n")
)

func isSIPScheme(s []byte) bool { return equalFold(s, "sip") || equalFold(s, "sips") }

// uriHost returns the host a SIP URI designates: its maddr parameter when
// present, else its host.
func uriHost(u *parser.URI) []byte {
	if maddr, ok := u.Param("maddr"); ok && len(maddr) > 0 {
		return maddr
	}
	return u.Host
}

// uriDest returns the address a SIP URI designates when its host (or maddr)
// is an IP literal; the port defaults to 5060.
func uriDest(u *parser.URI) (netip.AddrPort, bool) {
	ip, ok := parser.ParseIP(uriHost(u))
	if !ok {
		return netip.AddrPort{}, false
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// topViaEdits adds received and rport to the request's top Via (RFC 3261
// 18.2.1, RFC 3581 section 4) as edits in l.
func (w *Worker) topViaEdits(m *parser.Message, in []byte, top *parser.Via, from netip.AddrPort, l *editList) {
	src := from.Addr()
	// Where parameters end (new ones are appended there).
	var at int
	if top.Params != nil {
		at = m.Offset(top.Params) + len(top.Params)
	} else {
		at = sentByEnd(in, m, top)
	}
	if top.HasRPort {
		po := m.Offset(top.Params)
		ne, vs, ve, ok := paramSpan(top.Params, "rport")
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
		po := m.Offset(top.Params)
		_, vs, ve, ok := paramSpan(top.Params, "received")
		if ok {
			if old, ok2 := parser.ParseIP(top.Received); !ok2 || old != src || vs == ve {
				sp := len(w.scratch)
				if vs == ve {
					w.scratch = append(w.scratch, '=')
				}
				w.scratch = appendAddr(w.scratch, src)
				l.add(po+vs, po+ve, w.scratch[sp:])
			}
		}
		return
	}
	hostIP, isIP := parser.ParseIP(top.Host)
	if top.HasRPort || !isIP || hostIP != src {
		sp := len(w.scratch)
		w.scratch = append(w.scratch, ";received="...)
		w.scratch = appendAddr(w.scratch, src)
		l.add(at, at, w.scratch[sp:])
	}
}

// sentByEnd returns the offset just after a via-parm's sent-by (host and
// optional port).
func sentByEnd(in []byte, m *parser.Message, v *parser.Via) int {
	i := m.Offset(v.Host) + len(v.Host)
	if v.IPv6 && i < len(in) && in[i] == ']' {
		i++
	}
	// A port may be there even when v.Port is 0 (written "0"), and SWS
	// may stand around its colon.
	j := skipWS(in[:v.End], i)
	if j < v.End && in[j] == ':' {
		j = skipWS(in[:v.End], j+1)
		for j < v.End && in[j] >= '0' && in[j] <= '9' {
			j++
		}
		return j
	}
	return i
}

// txKey3261 derives the transaction key of an RFC 3261 request from the
// client's branch and sent-by (17.2.3 items 1 and 2), without the method.
//
// The usual branch and host fit a stack buffer and are hashed in one call;
// the streaming digest takes longer ones. Both hash the same bytes.
func (w *Worker) txKey3261(v *parser.Via) uint64 {
	var buf [160]byte
	if len(v.Branch)+len(v.Host)+7 > len(buf) {
		return w.txKey3261Long(v)
	}
	b := append(buf[:0], v.Branch...)
	b = append(b, 0)
	for _, c := range v.Host {
		b = append(b, lowerASCII(c))
	}
	b = strconv.AppendUint(b, uint64(v.Port), 10)
	return xxhash.Sum64(b)
}

// txKey3261Long is txKey3261 for a branch and host too long for its buffer.
func (w *Worker) txKey3261Long(v *parser.Via) uint64 {
	d := w.xx
	d.Reset()
	d.Write(v.Branch)
	d.Write(sep)
	writeLower(d, v.Host)
	var p [8]byte
	d.Write(strconv.AppendUint(p[:0], uint64(v.Port), 10))
	return d.Sum64()
}

// txKey2543 derives the transaction key of an RFC 2543 request (no magic
// cookie) as RFC 3261 16.11 recommends: Request-URI, To tag, From tag,
// Call-ID, CSeq number and the top Via, never the method. The To tag is left
// out for ACK: the ACK of a non-2xx response carries the response's To tag,
// which the INVITE had not, and must still get the INVITE's branch (17.2.3
// matches it against the INVITE without the To tag). A re-INVITE rejected
// with a non-2xx response therefore gets an ACK branch different from its
// own; the downstream server retransmits its response until timer H, as
// with any lost ACK.
func (w *Worker) txKey2543(in []byte, top *parser.Via, toTag []byte) (uint64, error) {
	m := &w.m
	from, err := m.From()
	if err != nil {
		return 0, err
	}
	d := w.xx
	d.Reset()
	d.Write(m.RequestURI())
	d.Write(sep)
	if m.MethodID() != parser.MethodACK {
		d.Write(toTag)
	}
	d.Write(sep)
	d.Write(from.Tag)
	d.Write(sep)
	d.Write(m.CallID())
	d.Write(sep)
	num, _ := m.CSeq()
	var p [12]byte
	d.Write(strconv.AppendUint(p[:0], uint64(num), 10))
	d.Write(sep)
	d.Write(in[top.Start:top.End])
	return d.Sum64(), nil
}

var (
	sep               = []byte{0}
	branchPrefixBytes = []byte(branchPrefix)
)

func writeLower(d *xxhash.Digest, b []byte) {
	var buf [64]byte
	for len(b) > 0 {
		n := len(b)
		if n > len(buf) {
			n = len(buf)
		}
		for i := 0; i < n; i++ {
			buf[i] = lowerASCII(b[i])
		}
		d.Write(buf[:n])
		b = b[n:]
	}
}

// loopHash hashes what routes the request (16.6 item 8): the Request-URI
// after strict-route restoration, the Route values left after removing
// Viaduct's own, Proxy-Require and Proxy-Authorization.
func (w *Worker) loopHash(in []byte, ruri []byte, rs *routes, removedFirst, removedLast bool) uint64 {
	m := &w.m
	d := w.xx
	d.Reset()
	d.Write(ruri)
	d.Write(sep)
	_, r := m.Find(parser.KindRoute)
	_, pr := m.Find(parser.KindProxyRequire)
	_, pa := m.Find(parser.KindProxyAuthorization)
	for i := 0; (r || pr || pa) && i < m.NumHeaders(); i++ {
		h := m.Header(i)
		switch h.Kind {
		case parser.KindRoute:
			base := m.Offset(h.Value)
			pos := 0
			for {
				s, e, next, ok := nextListValue(h.Value, pos)
				if !ok {
					break
				}
				abs := base + s
				if !(removedFirst && abs == rs.first.start) && !(removedLast && abs == rs.last.start) {
					d.Write(h.Value[s:e])
					d.Write(sep)
				}
				pos = next
			}
		case parser.KindProxyRequire, parser.KindProxyAuthorization:
			d.Write(h.Name)
			d.Write(sep)
			d.Write(h.Value)
			d.Write(sep)
		}
	}
	return d.Sum64() & loopMask
}

// looped reports whether a Via of Viaduct's carries this loop hash.
func (w *Worker) looped(loop uint64) bool {
	m := &w.m
	// Cheap necessary condition first: our branch prefix somewhere in the
	// Via lines.
	start, end, _ := m.Span(parser.KindVia)
	if !bytes.Contains(m.Bytes()[start:end], branchPrefixBytes) {
		return false
	}
	it := m.Vias()
	var v parser.Via
	for it.Next(&v) {
		if isOurBranch(v.Branch) && w.e.isSelf(v.Host, v.Port) && branchLoop(v.Branch) == loop {
			return true
		}
	}
	return false
}

// response relays a response whose top Via is provably Viaduct's.
func (w *Worker) response(in []byte, from netip.AddrPort, tooBig bool, out *Output) Action {
	m := &w.m
	w.c.respIn.inc()
	if tooBig {
		return w.drop(DropTooBig, out)
	}
	it := m.Vias()
	var top, next parser.Via
	if !it.Next(&top) {
		return w.drop(DropParseError, out)
	}
	if !w.e.isSelf(top.Host, top.Port) {
		return w.drop(DropForgedResponse, out)
	}
	hasNext := it.Next(&next)
	if !hasNext && it.Err() != nil {
		return w.drop(DropParseError, out)
	}
	var nb []byte
	if hasNext {
		nb = in[next.Start:next.End]
	}
	listen, ok := w.mac.verify(top.Branch, nb)
	if !ok && w.prevMac != nil {
		listen, ok = w.prevMac.verify(top.Branch, nb)
	}
	if !ok {
		return w.drop(DropForgedResponse, out)
	}
	if !hasNext {
		w.c.localResp.inc()
		if h := w.e.localHandler.Load(); h != nil {
			(*h)(m, from)
		}
		return ActionLocal
	}
	if o := w.e.respObserver.Load(); o != nil {
		(*o)(from, m.StatusCode())
	}
	dest, ok := viaDest(&next)
	if !ok {
		return w.drop(DropUnroutable, out)
	}
	if unsafeDestination(dest.Addr()) != "" {
		return w.drop(DropUnsafeDestination, out)
	}
	if listen >= len(w.e.cfg.Listen) {
		listen = w.listen
	}
	sendListen := w.e.listenFor(listen, dest.Addr())
	if sendListen < 0 {
		return w.drop(DropUnroutable, out)
	}
	// Remove our via-parm: the whole line when alone on it.
	w.edits.reset()
	if top.First && top.Last {
		h := m.Header(top.Header)
		w.edits.add(h.Start, h.End, nil)
	} else {
		w.edits.add(top.Start, top.NextStart, nil)
	}
	out.Buf = w.edits.apply(out.Buf[:0], in)
	out.To = dest
	out.Listen = sendListen
	w.c.respClass(m.StatusCode())
	w.countUpstreamResponse(from, m.StatusCode())
	return ActionForward
}

// unsafeDestination returns why a message must not be sent to a, or ""
// when it may: an unspecified address (0.0.0.0 and :: reach the local host
// on Linux), a multicast address (RFC 2543's multicast maddr included) or
// the IPv4 limited broadcast address. Subnet broadcast addresses cannot be
// told apart statelessly; the sockets have no SO_BROADCAST, so the kernel
// refuses them.
func unsafeDestination(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "Next Hop Is An Unspecified Address"
	case a.IsMulticast():
		return "Next Hop Is A Multicast Address"
	case a == limitedBroadcast:
		return "Next Hop Is The Broadcast Address"
	}
	return ""
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// viaDest is where a response goes according to a via-parm (RFC 3261
// 18.2.2, RFC 3581 section 4): maddr, else received (with rport's port when
// present), else sent-by; the port defaults to 5060.
func viaDest(v *parser.Via) (netip.AddrPort, bool) {
	port := v.Port
	if port == 0 {
		port = 5060
	}
	if len(v.Maddr) > 0 {
		ip, ok := parser.ParseIP(v.Maddr)
		if !ok {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ip, uint16(port)), true
	}
	if len(v.Received) > 0 {
		ip, ok := parser.ParseIP(v.Received)
		if !ok {
			return netip.AddrPort{}, false
		}
		if rp, ok := parsePort(v.RPort); ok {
			port = rp
		}
		return netip.AddrPortFrom(ip, uint16(port)), true
	}
	ip, ok := parser.ParseIP(v.Host)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// parsePort parses 1-65535.
func parsePort(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0 && n <= 65535
}
