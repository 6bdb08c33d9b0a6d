package fastpath

import (
	"errors"

	"github.com/viaduct-sip/viaduct/transport"
)

// socketHandler is a Worker as a transport drives it (transport.Handler):
// it hands each message to Worker.Handle, counts what the transport sent,
// and logs drops when the engine logs at debug level.
type socketHandler struct {
	w    *Worker
	at   transport.Position // the transport worker it serves
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
	if errors.Is(err, transport.ErrFlowGone) {
		return // counted by Worker.flowGone, which decides what happens instead
	}
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

// dispatcher is the outermost Handler of a transport worker. It turns the
// transport's listener numbers into the engine's and back, and sends an
// output that its own transport does not batch (one for another transport,
// or for a connection) itself, with Server.Send, before Handle returns: a
// message may then cross transports, and the messages of one flow still
// leave in the order they came. When the connection an output names is
// gone, the core decides what happens instead (Worker.flowGone).
type dispatcher struct {
	e       *Engine
	server  int
	globals []int             // the engine's index of each of the server's listeners
	next    transport.Handler // the stages, then the core
	core    *socketHandler
}

// Handle implements transport.Handler.
func (d *dispatcher) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	if src.Listener < 0 || src.Listener >= len(d.globals) {
		src.Listener = 0
	}
	src.Listener = d.globals[src.Listener]
	if !d.next.Handle(msg, src, out) {
		return false
	}
	return d.route(out)
}

// route sends out itself unless it is a datagram of this transport, which
// the transport batches: it reports whether the transport is to send it.
func (d *dispatcher) route(out *transport.Outbound) bool {
	for retried := false; ; retried = true {
		site := d.e.where[out.To.Listener]
		if site.server == d.server && !out.To.Kind.Reliable() {
			out.To.Listener = site.local
			return true
		}
		to := out.To
		to.Listener = site.local
		err := d.e.servers[site.server].srv.Send(out.Buf, to)
		d.next.Sent(out, err)
		if retried || !errors.Is(err, transport.ErrFlowGone) || !d.core.flowGone(out) {
			return false
		}
	}
}

// Sent implements transport.Handler.
func (d *dispatcher) Sent(out *transport.Outbound, err error) {
	if out.To.Listener >= 0 && out.To.Listener < len(d.globals) {
		out.To.Listener = d.globals[out.To.Listener]
	}
	d.next.Sent(out, err)
}

// flowGone lets the core readdress out, whose connection is gone; it
// reports whether out is to be sent again.
func (h *socketHandler) flowGone(out *transport.Outbound) bool {
	o := &h.out
	o.Buf, o.To, o.Kind, o.Listener, o.Flow = out.Buf, out.To.Addr, out.To.Kind, out.To.Listener, out.To.Flow
	if !h.w.flowGone(o) {
		return false
	}
	out.Buf, out.To = o.Buf, o.Peer()
	return true
}
