package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Requests Viaduct originates itself (health probes): their Via, whose
// responses come back to the LocalResponseHandler, and their sending. They
// leave from the transport's origin address (transport.Server.Origin), a
// port of this process alone, and ask for rport: their responses come back
// to this process even when other instances share the listen address.

// AppendVia appends a complete Via header line ("Via: ...\r\n") for a
// request Viaduct originates itself (a health probe) to `to`, sent with
// SendTo: the response to such a request carries this Via alone, passes the
// MAC check and goes to the LocalResponseHandler. key distinguishes
// transactions (a probe counter, say) and ends up in the branch.
func (e *Engine) AppendVia(dst []byte, to netip.AddrPort, key uint64) []byte {
	return e.AppendViaOver(dst, to, transport.UDP, key)
}

// AppendViaOver is AppendVia for a request sent over kind with SendOver
// (a probe of a TCP or TLS upstream).
func (e *Engine) AppendViaOver(dst []byte, to netip.AddrPort, kind transport.Kind, key uint64) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	listen := max(e.listenForKind(kind, -1, to.Addr().Unmap()), 0)
	if e.originVia != nil {
		dst = append(dst, e.originVia[listen]...)
	} else {
		dst = append(dst, e.viaPrefix[listen]...)
	}
	dst = e.viaMac.appendBranch(dst, listen, key, 0, nil)
	return append(dst, "\r\n"...)
}

// SendTo sends a request built with AppendVia to `to`, outside the workers'
// batches, from the origin address of the listener AppendVia chose (the
// first one of to's address family). The engine must be started.
func (e *Engine) SendTo(b []byte, to netip.AddrPort) error {
	return e.SendOver(b, to, transport.UDP)
}

// SendOver is SendTo over kind, for a request built with AppendViaOver.
func (e *Engine) SendOver(b []byte, to netip.AddrPort, kind transport.Kind) error {
	e.mu.Lock()
	if e.state != 1 {
		e.mu.Unlock()
		return errors.New("fastpath: SendTo: engine not running")
	}
	listen := e.listenForKind(kind, -1, to.Addr().Unmap())
	if listen < 0 {
		e.mu.Unlock()
		return fmt.Errorf("fastpath: SendTo %s: no %s listen address of its family", to, kind)
	}
	site := e.where[listen]
	srv := e.servers[site.server].srv
	e.mu.Unlock()
	if err := srv.Originate(b, transport.Peer{Addr: to, Kind: kind, Listener: site.local}); err != nil {
		return fmt.Errorf("fastpath: %w", err)
	}
	return nil
}

// buildOriginVia renders the Via prefix of originated requests for each
// listener: its sent-by is the listen address (the advertised host for a
// wildcard one) with the origin socket's port, and it asks for rport, so
// the reply goes back to the source address the kernel chose for the
// probe. e.mu is held.
func (e *Engine) buildOriginVia() {
	e.originVia = make([][]byte, len(e.origin))
	e.originHost = make([]string, len(e.origin))
	for i, o := range e.origin {
		l := e.listen[i].Addr()
		host, is6 := l.String(), l.Is6()
		if l.IsUnspecified() {
			host, is6 = e.adv.host, e.adv.isIPv6
		}
		e.originHost[i] = strings.ToLower(host)
		if is6 {
			host = "[" + host + "]"
		}
		sentBy := host + ":" + strconv.Itoa(int(o.Port()))
		e.originVia[i] = []byte("Via: SIP/2.0/" + e.listenKind(i).ViaToken() + " " + sentBy + ";rport;branch=")
	}
}

// isOrigin reports whether host:port is the sent-by of an originated
// request's Via.
func (e *Engine) isOrigin(host []byte, port int) bool {
	for i, o := range e.origin {
		if int(o.Port()) == port && parser.EqualFold(host, e.originHost[i]) {
			return true
		}
	}
	return false
}
