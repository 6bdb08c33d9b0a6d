package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/parser"
)

// The hooks through which the rooms the core does not import (health, the
// resolver) take part: handlers and observers the engine calls on the
// worker goroutine.

// LocalResponseHandler receives responses addressed to Viaduct itself: those
// whose only Via is Viaduct's, with a valid MAC (replies to requests built
// with Engine.AppendVia, such as health probes). It is called synchronously
// on the worker goroutine that received the response, so it must be quick
// and must not block; m and its bytes are reused as soon as it returns and
// must not be retained (copy what is needed).
type LocalResponseHandler func(m *parser.Message, from netip.AddrPort)

// SetLocalResponseHandler sets the handler for responses addressed to Viaduct
// itself (see LocalResponseHandler); nil removes it, and such responses are
// then counted and dropped. It may be called at any time.
func (e *Engine) SetLocalResponseHandler(h LocalResponseHandler) {
	if h == nil {
		e.localHandler.Store(nil)
		return
	}
	e.localHandler.Store(&h)
}

// ResponseObserver is told the source address and status code of every
// response Viaduct relays (one whose top Via was provably Viaduct's and that
// goes on to a previous hop), on the worker goroutine, before the response
// is forwarded. It must be quick, must not block and should not allocate:
// the passive health check (health.Checker.ObserveResponse) is one.
type ResponseObserver = func(from netip.AddrPort, status int)

// SetResponseObserver sets the response observer; nil removes it. It may
// be called at any time.
func (e *Engine) SetResponseObserver(o ResponseObserver) {
	if o == nil {
		e.respObserver.Store(nil)
		return
	}
	e.respObserver.Store(&o)
}

// CallAdmitter decides whether a new call (an INVITE without To tag) that
// balancing sent to upstream may go there now: the edge's per-upstream
// call-rate caps. When it returns ok false the INVITE is answered 503
// Service Unavailable, with "Retry-After: retryAfter" when retryAfter is
// above 0, and counted as DropCallRate; it is not sent to another upstream
// instead, since its CANCEL and ACK, hashed alike, would follow it to the
// capped one. It is called on the worker goroutine, must be quick, must
// not block and should not allocate.
type CallAdmitter = func(upstream netip.AddrPort) (retryAfter uint32, ok bool)

// SetCallAdmitter sets the call admitter; nil removes it (every call is
// admitted). It may be called at any time.
func (e *Engine) SetCallAdmitter(a CallAdmitter) {
	if a == nil {
		e.callAdmitter.Store(nil)
		return
	}
	e.callAdmitter.Store(&a)
}
