package fastpath

import (
	"bytes"

	"github.com/viaduct-sip/viaduct/parser"
)

// loopHash hashes what routes the request (16.6 item 8): the Request-URI
// after strict-route restoration, the Route values left after removing
// Viaduct's own, Proxy-Require and Proxy-Authorization.
func (w *Worker) loopHash(r *reqState) uint64 {
	m := &w.m
	d := w.xx
	d.Reset()
	d.Write(r.effRURI)
	d.Write(sep)
	_, hasRoute := m.Find(parser.KindRoute)
	_, hasPR := m.Find(parser.KindProxyRequire)
	_, hasPA := m.Find(parser.KindProxyAuthorization)
	for i := 0; (hasRoute || hasPR || hasPA) && i < m.NumHeaders(); i++ {
		h := m.Header(i)
		switch h.Kind {
		case parser.KindRoute:
			base := m.Offset(h.Value)
			pos := 0
			for {
				s, e, after, ok := parser.NextListValue(h.Value, pos)
				if !ok {
					break
				}
				abs := base + s
				if !(r.removedFirst && abs == r.rs.first.start) && !(r.removedLast && abs == r.rs.last.start) {
					d.Write(h.Value[s:e])
					d.Write(sep)
				}
				pos = after
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
