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
// or for a connection) itself, with Server.Send: a message may then cross
// transports, and the messages of one flow still leave in the order they
// came. Outputs for connections are held until the transport's batch ends
// (Flush), and those for one connection leave in one write. When the
// connection an output names is gone, the core decides what happens
// instead (Worker.flowGone).
type dispatcher struct {
	e       *Engine
	server  int
	globals []int             // the engine's index of each of the server's listeners
	next    transport.Handler // the stages, then the core
	core    *socketHandler
	held    held
}

// held is what a dispatcher holds until Flush: the messages back to back
// in buf, each with where it goes, in the order they were handled.
type held struct {
	buf  []byte
	msgs []heldMsg
	ends []int              // the ends of one run of messages for one peer, for SendAll
	out  transport.Outbound // one held message, as Handler.Sent reports it
}

// heldMsg is one held message: it ends at end in held.buf and goes to
// `to` (the engine's listener numbering).
type heldMsg struct {
	end int
	to  transport.Peer
}

// maxHeld is how many bytes of messages a dispatcher holds (at least one
// output): past it, what it holds is sent before the next is held.
const maxHeld = 64 << 10

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
	if d.batched(out) {
		return true
	}
	if !d.hold(out) {
		return d.sendNow(out)
	}
	return false
}

// batched reports whether out is a datagram of this transport's, which
// the transport sends in its batch, and numbers its listener as the
// transport does.
func (d *dispatcher) batched(out *transport.Outbound) bool {
	site := d.e.where[out.To.Listener]
	if site.server != d.server || out.To.Kind.Reliable() {
		return false
	}
	out.To.Listener = site.local
	return true
}

// hold keeps a copy of out, for a connection of a transport that sends
// several messages in one write, until Flush; it reports false for an
// output to send at once. One for a closed connection, or for a
// WebSocket client by address (it cannot be dialled), is sent at once, so
// that the core, still holding its message, decides what happens instead.
func (d *dispatcher) hold(out *transport.Outbound) bool {
	to := &out.To
	if !to.Kind.Reliable() || (to.Flow == 0 && (to.Kind == transport.WS || to.Kind == transport.WSS)) {
		return false
	}
	co := d.e.servers[d.e.where[to.Listener].server].coalescer
	if co == nil || (to.Flow != 0 && !co.FlowOpen(to.Flow)) {
		return false
	}
	h := &d.held
	if h.buf == nil {
		h.buf = make([]byte, 0, max(maxHeld, cap(out.Buf)))
	}
	if len(h.buf)+len(out.Buf) > cap(h.buf) {
		d.Flush()
		if len(out.Buf) > cap(h.buf) {
			return false
		}
	}
	h.buf = append(h.buf, out.Buf...)
	h.msgs = append(h.msgs, heldMsg{end: len(h.buf), to: out.To})
	return true
}

// Flush implements transport.Flusher: it sends what it holds, each run
// of messages for one peer in one write.
func (d *dispatcher) Flush() {
	h := &d.held
	start := 0
	for i := 0; i < len(h.msgs); {
		j := i + 1
		for j < len(h.msgs) && h.msgs[j].to == h.msgs[i].to {
			j++
		}
		d.sendRun(start, h.msgs[i:j])
		start, i = h.msgs[j-1].end, j
	}
	h.buf, h.msgs = h.buf[:0], h.msgs[:0]
}

// sendRun sends run, held messages for one peer that lie from start on
// in held.buf, in one write, and reports each. If their connection closed
// since they were held, they are lost, counted as flow_gone: the core has
// moved on to other messages and can no longer answer for them.
func (d *dispatcher) sendRun(start int, run []heldMsg) {
	h := &d.held
	h.ends = h.ends[:0]
	for _, m := range run {
		h.ends = append(h.ends, m.end-start)
	}
	to := run[0].to
	site := d.e.where[to.Listener]
	local := to
	local.Listener = site.local
	err := d.e.servers[site.server].coalescer.SendAll(h.buf[start:run[len(run)-1].end], h.ends, local)
	gone := errors.Is(err, transport.ErrFlowGone)
	for _, m := range run {
		h.out.Buf, h.out.To = h.buf[start:m.end], to
		start = m.end
		d.next.Sent(&h.out, err)
		if gone {
			d.core.w.c.drops[DropFlowGone].inc()
		}
	}
	h.out.Buf = nil
}

// sendNow sends out with Server.Send at once, and reports it. When the
// connection it names is gone, the core may readdress it, and it goes
// once more: back to the transport's batch (true returned) if it is now
// a datagram of this transport.
func (d *dispatcher) sendNow(out *transport.Outbound) bool {
	err := d.send(out)
	if !errors.Is(err, transport.ErrFlowGone) || !d.core.flowGone(out) {
		return false
	}
	if d.batched(out) {
		return true
	}
	d.send(out)
	return false
}

// send sends out with its server's Send and reports it.
func (d *dispatcher) send(out *transport.Outbound) error {
	site := d.e.where[out.To.Listener]
	to := out.To
	to.Listener = site.local
	err := d.e.servers[site.server].srv.Send(out.Buf, to)
	d.next.Sent(out, err)
	return err
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
