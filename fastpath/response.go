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
		listen = w.src.Listener
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
	w.setDest(out, dest, sendListen)
	w.c.respClass(m.StatusCode())
	w.countUpstreamResponse(from, m.StatusCode())
	return ActionForward
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
