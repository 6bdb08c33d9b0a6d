package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
)

// Requests Viaduct originates itself (health probes): their Via, whose
// responses come back to the LocalResponseHandler, and their sending.

// AppendVia appends a complete Via header line ("Via: ...\r\n") for a
// request Viaduct originates itself (a health probe) to `to`, sent with
// SendTo: the response to such a request carries this Via alone, passes the
// MAC check and goes to the LocalResponseHandler. key distinguishes
// transactions (a probe counter, say) and ends up in the branch.
func (e *Engine) AppendVia(dst []byte, to netip.AddrPort, key uint64) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	listen := max(e.listenFor(0, to.Addr().Unmap()), 0)
	dst = append(dst, e.viaPrefix[listen]...)
	dst = e.viaMac.appendBranch(dst, listen, key, 0, nil)
	return append(dst, "\r\n"...)
}

// SendTo sends a request built with AppendVia to `to`, outside the workers'
// batches, from the listen address AppendVia chose (the first one of to's
// address family). The engine must be started.
func (e *Engine) SendTo(b []byte, to netip.AddrPort) error {
	e.mu.Lock()
	if e.state != 1 {
		e.mu.Unlock()
		return errors.New("fastpath: SendTo: engine not running")
	}
	listen := e.listenFor(0, to.Addr().Unmap())
	if listen < 0 {
		e.mu.Unlock()
		return fmt.Errorf("fastpath: SendTo %s: no listen address of its family", to)
	}
	c := e.conns[listen][0]
	e.mu.Unlock()
	if err := c.WriteTo(b, to); err != nil {
		return fmt.Errorf("fastpath: send to %s: %w", to, err)
	}
	return nil
}
