package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// chooseDestination picks where the request goes. A request through the
// Path Viaduct added to a client's REGISTER goes back to where the REGISTER
// came from; any other request from an upstream goes to its next hop; a
// request of an existing dialog goes to the upstream its next hop names, if
// any; every other request to the upstream balancing picks. Clients can
// therefore make Viaduct send nowhere but to an upstream, and nothing is
// sent to an address Viaduct never sends to (unsafeDestination).
func (w *Worker) chooseDestination(r *reqState) Action {
	r.dest, r.picked, r.counted, r.sendKind, r.sendFlow, r.acceptsTCP = netip.AddrPort{}, 0, false, transport.UDP, 0, false
	dialog := inDialog(r.meth, r.to.Tag, r.rs.n)
	switch {
	case r.conn.flow != 0:
		return w.toFlow(r)
	case r.flow.IsValid():
		r.dest = r.flow
	case r.fromUpstream:
		if a := w.upstreamNextHop(r); a != continueRequest {
			return a
		}
	case dialog && w.e.picker == nil:
		if t, ok := w.dialogUpstream(w.nextHopURI(r)); ok {
			r.dest, r.picked, r.counted, r.sendKind = t.Addr, t.IDHash(), true, targetKind(t.Transport)
			r.acceptsTCP = t.AcceptsTCP
			w.c.dialogRouted.inc()
		}
	}
	if !r.dest.IsValid() {
		if !w.pick(r, dialog) {
			return w.reject(r, Local503, "No Upstream Available", DropNoUpstream)
		}
		if a := w.admitCall(r, dialog); a != continueRequest {
			return a
		}
	}
	if reason := unsafeDestination(r.dest.Addr()); reason != "" {
		return w.reject(r, Local403, reason, DropUnsafeDestination)
	}
	w.largeOverTCP(r)
	if r.sendListen = w.e.listenForKind(r.sendKind, w.src.Listener, r.dest.Addr()); r.sendListen < 0 {
		return w.reject(r, Local503, "No Socket For Address Family", DropNoUpstream)
	}
	return continueRequest
}

// largeOverTCP sends a request for a UDP upstream over TCP when it would
// leave larger than Config.UDPMTU, the upstream accepts TCP
// (Target.AcceptsTCP) and a TCP listener of its family exists (RFC 3261
// 18.1.1); else it counts it as going over UDP anyway.
func (w *Worker) largeOverTCP(r *reqState) {
	mtu := w.e.cfg.UDPMTU
	if r.sendKind != transport.UDP || mtu < 0 || len(r.in)+w.e.growth <= mtu {
		return
	}
	if !r.acceptsTCP || w.e.listenForKind(transport.TCP, -1, r.dest.Addr()) < 0 {
		w.c.largeOverUDP.inc()
		return
	}
	r.sendKind = transport.TCP
	w.c.largeToTCP.inc()
}

// boundGrowth bounds what forward adds to a request, for largeOverTCP:
// Viaduct's Via (with the longer branch), two Record-Route entries and a
// Path entry with flow tokens, received and rport, Max-Forwards and
// Content-Length. It is derived once from the rendered lines.
func (e *Engine) boundGrowth() {
	const entry = len(";lr;received=[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535>\r\n") + len(flowTokenParam) + flowTokenLen
	g := len(e.viaPrefix[0]) + flowBranchLen + 2 + 96
	if e.cfg.RecordRoute {
		g += 2 * (len(e.rrStart[0]) + entry)
	}
	if e.cfg.Path {
		g += len(e.pathStart[0]) + entry
	}
	e.growth = g
}

// toFlow sends the request over the client connection a flow token named
// (the registrar's INVITE through a Path entry, the callee's BYE through a
// Record-Route entry): 430 Flow Failed when this process does not hold it.
// Whether it is still open the transport tells when sending (flowGone).
func (w *Worker) toFlow(r *reqState) Action {
	if r.conn.boot != w.e.boot || !r.flow.IsValid() {
		return w.reject(r, Local430, "Flow Failed", DropFlowGone)
	}
	r.dest, r.sendListen = r.flow, r.connListener
	r.sendKind, r.sendFlow = w.e.kinds[r.connListener], r.conn.flow
	return continueRequest
}

// targetKind returns the transport a target's Transport names (the ones
// Config.Targets accepts).
func targetKind(tr string) transport.Kind {
	switch tr {
	case "tcp":
		return transport.TCP
	case "tls":
		return transport.TLS
	}
	return transport.UDP
}

// uriKind returns the transport a next hop's URI asks for (RFC 3263 4.1
// with the URI's own parameters only: no NAPTR lookup on the fast path):
// its transport parameter, TLS for a sips URI, else UDP.
func uriKind(u *parser.URI) transport.Kind {
	if tp, ok := u.Param("transport"); ok {
		switch {
		case parser.EqualFold(tp, "tcp"):
			if parser.EqualFold(u.Scheme, "sips") {
				return transport.TLS
			}
			return transport.TCP
		case parser.EqualFold(tp, "tls"):
			return transport.TLS
		}
	}
	if parser.EqualFold(u.Scheme, "sips") {
		return transport.TLS
	}
	return transport.UDP
}

// admitCall asks the CallAdmitter, if any, whether a new call balancing
// sent to r.dest may go there, and answers 503 with Retry-After when not.
func (w *Worker) admitCall(r *reqState, dialog bool) Action {
	if dialog || r.meth != parser.MethodINVITE || r.to.Tag != nil {
		return continueRequest
	}
	admit := w.e.callAdmitter.Load()
	if admit == nil {
		return continueRequest
	}
	retry, ok := (*admit)(r.dest)
	if ok {
		return continueRequest
	}
	w.retryAfter = retry
	a := w.reject(r, Local503, "Call Rate Limit Exceeded", DropCallRate)
	w.retryAfter = 0
	return a
}

// upstreamNextHop sets the destination of a request from an upstream: its
// next hop (next Route, else Request-URI), an IP address or a host name the
// NextHopResolver knows. A next hop that is Viaduct itself leaves it unset
// (the request is balanced).
func (w *Worker) upstreamNextHop(r *reqState) Action {
	nh, ok := w.nextHopURI(r)
	if !ok {
		return w.reject(r, Local400, "Malformed Request-URI", DropParseError)
	}
	if isSIPScheme(nh.Scheme) && len(nh.User) == 0 && w.e.isSelf(nh.Host, nh.Port) {
		return continueRequest
	}
	d, isIP := uriDest(nh)
	if !isIP {
		resolver := w.e.cfg.NextHops
		if resolver == nil {
			return w.reject(r, Local503, "Next Hop Not An IP Address", DropNoUpstream)
		}
		var st NextHopState
		d, st = resolver.LookupNextHop(uriHost(nh), nh.Port)
		switch {
		case st == NextHopPending:
			return w.drop(DropNextHopPending, r.out)
		case st != NextHopFound || !d.IsValid():
			return w.reject(r, Local503, "Next Hop Does Not Resolve", DropNoUpstream)
		}
	}
	r.dest, r.sendKind = d, uriKind(nh)
	return continueRequest
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

// unsafeDestination returns why a message must not be sent to a, or ""
// when it may: an unspecified address (0.0.0.0 and :: reach the local host
// on Linux), a multicast address (RFC 2543's multicast maddr included) or
// the IPv4 limited broadcast address. Subnet broadcast addresses cannot be
// told apart statelessly; the sockets have no SO_BROADCAST, so the kernel
// refuses them.
func unsafeDestination(a netip.Addr) string {
	if a.Is4() { // the usual case, decided on the four bytes
		switch b := a.As4(); {
		case b[0] >= 224 && b[0] < 240:
			return "Next Hop Is A Multicast Address"
		case b == [4]byte{}:
			return "Next Hop Is An Unspecified Address"
		case b == [4]byte{255, 255, 255, 255}:
			return "Next Hop Is The Broadcast Address"
		}
		return ""
	}
	switch {
	case a.IsUnspecified():
		return "Next Hop Is An Unspecified Address"
	case a.IsMulticast():
		return "Next Hop Is A Multicast Address"
	}
	return ""
}
