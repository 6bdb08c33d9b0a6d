package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/parser"
)

// response relays a response whose top Via is provably Viaduct's.
func (w *Worker) response(in []byte, from netip.AddrPort, tooBig bool, out *Output) Action {
	m := &w.m
	w.c.respIn.inc()
	if tooBig {
		return w.drop(DropTooBig, out)
	}
	if _, ok := m.ContentLength(); !ok && w.src.Kind.NeedsLength() {
		return w.drop(DropParseError, out) // RFC 3261 18.3
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
	listen, conn, ok := w.mac.verify(top.Branch, nb)
	if !ok && w.prevMac != nil {
		listen, conn, ok = w.prevMac.verify(top.Branch, nb)
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
	if listen >= len(w.e.listen) {
		listen = w.src.Listener
	}
	sendListen, flow, a := w.responseRoute(listen, conn, dest, out)
	if a != continueRequest {
		return a
	}
	// Remove our via-parm: the whole line when alone on it.
	w.edits.reset()
	w.scratch = w.scratch[:0]
	if top.First && top.Last {
		h := m.Header(top.Header)
		w.edits.add(h.Start, h.End, nil)
	} else {
		w.edits.add(top.Start, top.NextStart, nil)
	}
	w.setDest(out, dest, sendListen)
	out.Flow = flow
	out.Buf = w.edits.apply(out.Buf[:0], w.framed(in, out.Kind, &w.edits))
	w.c.respClass(m.StatusCode())
	w.countUpstreamResponse(from, m.StatusCode())
	return ActionForward
}

// responseRoute chooses the listener, and the connection, a response
// leaves from: the connection its request came on when the branch names
// one of this engine's, else the listener the request came in on (or the
// first of dest's family). A branch naming another process's connection
// (another instance's, or this one's before a restart) is sent to the Via's
// address over a new connection, as RFC 3261 18.2.2 says, or dropped with
// Config.DropOrphanResponses.
func (w *Worker) responseRoute(listen int, conn flowRef, dest netip.AddrPort, out *Output) (int, uint64, Action) {
	if conn.flow != 0 && conn.boot == w.e.boot {
		return listen, conn.flow, continueRequest
	}
	if conn.flow != 0 && !w.e.reopensFor(listen) {
		return 0, 0, w.drop(DropFlowGone, out)
	}
	l := w.e.listenFor(listen, dest.Addr())
	if l < 0 {
		return 0, 0, w.drop(DropUnroutable, out)
	}
	return l, 0, continueRequest
}

// flowGone readdresses out, an output of the message just handled whose
// connection turned out to be closed, and reports whether it is to be
// sent: a response goes to its Via's address on a new connection where
// that is allowed (reopensFor); a request (for a flow of a Path or
// Record-Route entry) is answered 430 Flow Failed (RFC 5626 section 5.3).
func (w *Worker) flowGone(out *Output) bool {
	if !w.m.IsRequest() {
		if !w.e.reopensFor(out.Listener) {
			w.drop(DropFlowGone, out)
			return false
		}
		w.c.flowReopened.inc()
		out.Flow = 0
		return true
	}
	r := &w.req
	return w.reject(r, Local430, "Flow Failed", DropFlowGone) == ActionReply
}

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
