package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/parser"
)

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
	n                   int // values in all Route lines
	first, second, last routeInfo
}

// scanRoutes walks every Route header line once and records the first, the
// second and the last Route value.
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
			s, e, next, ok := parser.NextListValue(h.Value, pos)
			if !ok {
				break
			}
			v := routeInfo{start: base + s, end: base + e, line: i, lineStart: h.Start, lineEnd: h.End, first: idx == 0, prevEnd: prevEnd}
			r.noteNext(v)
			switch r.n {
			case 0:
				r.first = v
			case 1:
				r.second = v
			}
			r.last = v
			prevEnd = base + e
			r.n++
			idx++
			pos = next
		}
		r.endLine(i, idx)
	}
}

// noteNext records v as the value that follows, on the same line, those of
// first, second and last that are on v's line.
func (r *routes) noteNext(v routeInfo) {
	for _, p := range []*routeInfo{&r.first, &r.second, &r.last} {
		if r.n > 0 && p.end > 0 && p.line == v.line && p.nextStart == 0 && p.end < v.start {
			p.nextStart = v.start
		}
	}
}

// endLine records, for the values on line i (count of them), how many the
// line holds and which is its last.
func (r *routes) endLine(i, count int) {
	if count == 0 {
		return
	}
	for _, p := range []*routeInfo{&r.first, &r.second, &r.last} {
		if p.line == i && p.end > 0 {
			p.count = count
			p.last = p.nextStart == 0
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

// preprocessRoutes does the route information preprocessing of RFC 3261
// 16.4: a Request-URI that is Viaduct's own Record-Route URI was put there by
// a strict router, and the real one is the last Route value, moved back; a
// top Route naming Viaduct is removed, and when it is a Path entry of
// Viaduct's on a request from an upstream, the client address it recorded
// becomes the request's flow (see Config.Path).
func (w *Worker) preprocessRoutes(r *reqState) Action {
	m, e := &w.m, w.e
	w.edits.reset()
	w.scratch = w.scratch[:0]
	ruri := m.RequestURI()
	ruriLR := false
	r.ruriSelf = isSIPScheme(r.ru.Scheme) && len(r.ru.User) == 0 && e.isSelf(r.ru.Host, r.ru.Port)
	if r.ruriSelf {
		_, ruriLR = r.ru.Param("lr")
	}
	w.scanRoutes(r.in, &r.rs)
	r.remaining = r.rs.n
	r.removedFirst, r.removedLast = false, false
	r.effRURI, r.ruriRestored = ruri, false
	if r.ruriSelf && ruriLR && r.rs.n > 0 {
		lastURI, ok := routeURI(r.in[r.rs.last.start:r.rs.last.end], &r.u)
		if !ok { // (a URI that parses holds no white space to break the start line)
			return w.reject(r, Local400, "Malformed Route", DropParseError)
		}
		r.effRURI, r.ru, r.ruriRestored = lastURI, r.u, true
		r.ruriSelf = false
		w.edits.add(m.Offset(ruri), m.Offset(ruri)+len(ruri), lastURI)
		r.removedLast = true
		r.remaining--
	}
	r.fromUpstream = w.rt.isUpstream(r.from, w.src.Kind)
	r.flow, r.conn, r.removedSecond = netip.AddrPort{}, flowRef{}, false
	if r.remaining > 0 {
		w.removeOwnTopRoute(r)
	}
	if r.removedFirst && r.remaining > 0 && !r.removedLast {
		w.removeOwnSecondRoute(r)
	}
	switch {
	case r.removedSecond:
		w.removeFirstTwoRoutes(&r.rs)
	case r.removedFirst && r.removedLast && r.rs.first.line == r.rs.last.line && r.rs.first.count == 2:
		w.edits.add(r.rs.first.lineStart, r.rs.first.lineEnd, nil)
	default:
		if r.removedFirst {
			w.removeRoute(&r.rs.first)
		}
		if r.removedLast {
			w.removeRoute(&r.rs.last)
		}
	}
	return continueRequest
}

// removeOwnTopRoute marks the top Route removed when it names Viaduct, and
// takes the flow from it on a request from an upstream (the only requests
// it routes).
func (w *Worker) removeOwnTopRoute(r *reqState) {
	u := &r.u
	if _, ok := routeURI(r.in[r.rs.first.start:r.rs.first.end], u); !ok || !isSIPScheme(u.Scheme) || len(u.User) != 0 || !w.e.isSelf(u.Host, u.Port) {
		return
	}
	r.removedFirst = true
	r.remaining--
	if r.fromUpstream {
		w.takeFlow(r, u)
	}
}

// removeOwnSecondRoute marks the second Route removed when it names Viaduct
// too: the other half of a double Record-Route (RFC 5658), or a route set
// that names Viaduct twice. On a request from an upstream it takes the
// flow from it, unless the first had one.
func (w *Worker) removeOwnSecondRoute(r *reqState) {
	u := &r.u
	v := r.in[r.rs.second.start:r.rs.second.end]
	if _, ok := routeURI(v, u); !ok || !isSIPScheme(u.Scheme) || len(u.User) != 0 || !w.e.isSelf(u.Host, u.Port) {
		return
	}
	r.removedSecond = true
	r.remaining--
	if r.fromUpstream && !r.flow.IsValid() && r.conn.flow == 0 {
		w.takeFlow(r, u)
	}
}

// removeFirstTwoRoutes adds the edits that delete the first two Route
// values.
func (w *Worker) removeFirstTwoRoutes(rs *routes) {
	f, s := &rs.first, &rs.second
	switch {
	case f.line == s.line && f.count == 2:
		w.edits.add(f.lineStart, f.lineEnd, nil)
	case f.line == s.line:
		w.edits.add(f.start, s.nextStart, nil)
	default: // the first is alone on its line
		w.removeRoute(f)
		w.removeRoute(s)
	}
}

// takeFlow takes where a request from an upstream goes from a Route entry
// of Viaduct's (its URI u): the client address of its received parameter
// and, from a valid flow token, the client's connection.
func (w *Worker) takeFlow(r *reqState, u *parser.URI) {
	if v, ok := u.Param("received"); ok {
		r.flow, _ = parser.ParseAddrPort(v)
	}
	tok, ok := u.Param("vf")
	if !ok {
		return
	}
	l, conn, ok := w.mac.verifyFlowToken(tok)
	if !ok && w.prevMac != nil {
		l, conn, ok = w.prevMac.verifyFlowToken(tok)
	}
	if ok && l < len(w.e.listen) && w.e.kinds[l].Reliable() {
		r.conn, r.connListener = conn, l
	}
}

// nextHopURI returns the URI of the request's next hop once Viaduct's own
// Route entries are gone (RFC 3261 16.6 items 6 and 7): the next Route
// value, parsed into r.u, or, when no Route is left, the effective
// Request-URI r.ru, already parsed. It reports false when that URI does not
// parse.
func (w *Worker) nextHopURI(r *reqState) (*parser.URI, bool) {
	if r.remaining == 0 {
		return &r.ru, true
	}
	hop := r.rs.first
	switch {
	case r.removedSecond:
		hop = w.routeAfter(r.in, &r.rs.second, &r.rs)
	case r.removedFirst:
		hop = w.routeAfter(r.in, &r.rs.first, &r.rs)
	}
	_, ok := routeURI(r.in[hop.start:hop.end], &r.u)
	return &r.u, ok
}

// routeAfter returns the Route value that follows ri.
func (w *Worker) routeAfter(in []byte, ri *routeInfo, rs *routes) routeInfo {
	if !ri.last {
		s, e, _, _ := parser.NextListValue(in[:ri.lineEnd], ri.nextStart)
		return routeInfo{start: s, end: e}
	}
	m := &w.m
	for i := ri.line + 1; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		if h.Kind != parser.KindRoute {
			continue
		}
		s, e, _, ok := parser.NextListValue(h.Value, 0)
		if ok {
			base := m.Offset(h.Value)
			return routeInfo{start: base + s, end: base + e}
		}
	}
	return rs.last
}

// isSIPScheme reports whether a URI scheme is sip or sips.
func isSIPScheme(s []byte) bool { return parser.EqualFold(s, "sip") || parser.EqualFold(s, "sips") }
