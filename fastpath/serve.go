package fastpath

import "github.com/viaduct-sip/viaduct/transport"

// socketHandler is a Worker as a transport drives it (transport.Handler):
// it hands each message to Worker.Handle, counts what the transport sent,
// and logs drops when the engine logs at debug level.
type socketHandler struct {
	w    *Worker
	out  Output
	dlog *dropLog // nil unless the logger is enabled at debug level
}

// Handle implements transport.Handler.
func (h *socketHandler) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	h.out.Buf = out.Buf
	a := h.w.Handle(msg, src, &h.out)
	out.Buf, out.To = h.out.Buf, h.out.Peer()
	if h.dlog != nil {
		h.dlog.record(msg, src.Addr, &h.out)
	}
	return a == ActionForward || a == ActionReply
}

// Sent implements transport.Handler.
func (h *socketHandler) Sent(out *transport.Outbound, err error) {
	c := h.w.c
	if err == nil {
		// Bytes first: a reader that sees the message counted sees its
		// bytes too.
		c.bytesOut.add(uint64(len(out.Buf)))
		c.dgOut.inc()
		return
	}
	c.drops[DropSendError].inc()
	if h.dlog != nil {
		h.dlog.logSendError(out.Buf, out.To.Addr, err)
	}
}
