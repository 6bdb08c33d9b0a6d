package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Action tells the caller of Worker.Handle what to do with its Output.
type Action uint8

// The actions.
const (
	// ActionDrop: send nothing. Output.Drop says why.
	ActionDrop Action = iota
	// ActionForward: send Output.Buf to Output.To (a forwarded request or
	// response).
	ActionForward
	// ActionReply: send Output.Buf to Output.To, a response Viaduct
	// generated itself (Output.Drop says why the request was refused, or
	// is DropNone for a 200 to OPTIONS).
	ActionReply
	// ActionLocal: the message was a response addressed to Viaduct itself
	// and was given to the local response handler; send nothing.
	ActionLocal
)

var actionNames = [...]string{"drop", "forward", "reply", "local"}

// String returns the action's name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Output receives the result of Worker.Handle.
type Output struct {
	// Buf holds the datagram to send. Handle appends to Buf[:0], so a
	// caller that wants no allocation gives it a capacity of at least
	// MaxMessageSize+1024 bytes.
	Buf []byte
	// To is the destination's address.
	To netip.AddrPort
	// Kind is the transport to send over.
	Kind transport.Kind
	// Listener is the index (into Config.Listen) of the listener that
	// sends the message.
	Listener int
	// Flow is the connection to send on (0: the transport's choice).
	Flow uint64
	// Drop is the reason the message was not forwarded, or DropNone.
	Drop DropReason
}

// Peer returns where out goes, as its transport needs it.
func (o *Output) Peer() transport.Peer {
	return transport.Peer{Addr: o.To, Kind: o.Kind, Listener: o.Listener, Flow: o.Flow}
}

// Handle processes one message received from src (its address, transport,
// listener and connection) and writes what to send into out. It is the
// whole per-message path of Viaduct minus the I/O: parse, validate,
// choose, rewrite, and allocates nothing. The returned Action says whether
// out is to be sent.
//
// Handle keeps no reference to in or out after it returns, but out.Buf may
// alias nothing else: in and out.Buf must not overlap.
func (w *Worker) Handle(in []byte, src transport.Peer, out *Output) Action {
	if src.Listener < 0 || src.Listener >= len(w.e.listen) {
		src.Listener = 0
	}
	if !src.Kind.Valid() {
		src.Kind = w.e.listenKind(src.Listener)
	}
	w.src = src
	out.Buf = out.Buf[:0]
	out.Drop = DropNone
	w.setDest(out, netip.AddrPort{}, src.Listener)
	out.Flow = 0
	w.c.dgIn.inc()
	w.c.bytesIn.add(uint64(len(in)))
	from := netip.AddrPortFrom(src.Addr.Addr().Unmap().WithZone(""), src.Addr.Port())
	tooBig := len(in) > w.e.cfg.MaxMessageSize
	m := &w.m
	if err := parser.Parse(in, m); err != nil {
		return w.parseFailed(in, from, err, tooBig, out)
	}
	if !m.IsRequest() {
		return w.response(in, from, tooBig, out)
	}
	return w.request(in, from, tooBig, out)
}

// parseFailed answers a request the parser refused with 400 (or 505), when
// there is a Via to answer to, and drops anything else.
func (w *Worker) parseFailed(in []byte, from netip.AddrPort, err error, tooBig bool, out *Output) Action {
	if err == parser.ErrEmpty && len(in) > 0 {
		// Nothing but CR LF: a keepalive (RFC 5626 4.4.1 sends CRLFCRLF).
		return w.drop(DropKeepalive, out)
	}
	tooBig = tooBig || w.refusedAsTooLarge(in, err)
	reason := DropParseError
	if tooBig {
		reason = DropTooBig
	}
	// The parser's index must not be read after an error; judge from the
	// raw start line: never answer a response or an ACK.
	if looksLikeResponse(in) || isACK(in) {
		return w.drop(reason, out)
	}
	if tooBig {
		return w.refuse(in, from, Local513, "Message Too Large", reason, out)
	}
	pe, _ := err.(*parser.Error)
	if pe == nil {
		return w.drop(reason, out)
	}
	code := Local400
	if pe.Status == 505 {
		code = Local505
	}
	return w.refuse(in, from, code, pe.Reason, reason, out)
}

// refusedAsTooLarge reports whether in is the header block of a message a
// stream transport refused for its size: on a stream, a body shorter than
// its Content-Length means the transport handed over the headers alone
// (a complete frame always holds its body), and its Content-Length says
// whether the message was too large (513) rather than malformed (400).
func (w *Worker) refusedAsTooLarge(in []byte, err error) bool {
	if err != parser.ErrTruncatedBody || !w.src.Kind.NeedsLength() {
		return false
	}
	_, ferr := parser.FrameStream(in, w.e.cfg.MaxMessageSize)
	return ferr == parser.ErrFrameTooLarge
}

// looksLikeResponse reports whether a datagram starts (after keep-alive CR
// LF) like a status line.
func looksLikeResponse(b []byte) bool {
	b = trimLeadingCRLF(b)
	return len(b) >= 4 && b[0] == 'S' && b[1] == 'I' && b[2] == 'P' && b[3] == '/'
}

// isACK reports whether a datagram's start line names the ACK method.
func isACK(b []byte) bool {
	b = trimLeadingCRLF(b)
	return len(b) >= 4 && b[0] == 'A' && b[1] == 'C' && b[2] == 'K' && (b[3] == ' ' || b[3] == '\t')
}

func trimLeadingCRLF(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// setDest addresses out to `to` from listener.
func (w *Worker) setDest(out *Output, to netip.AddrPort, listener int) {
	out.To = to
	out.Listener = listener
	out.Kind = w.e.listenKind(listener)
}

func (w *Worker) drop(r DropReason, out *Output) Action {
	w.c.drops[r].inc()
	out.Drop = r
	return ActionDrop
}

// refuse answers the current request with a local reply (never an ACK) and
// counts the drop reason (DropNone for a 200 to OPTIONS).
func (w *Worker) refuse(in []byte, from netip.AddrPort, code LocalCode, reason string, drop DropReason, out *Output) Action {
	if drop != DropNone {
		w.c.drops[drop].inc()
		out.Drop = drop
	}
	if w.m.MethodID() == parser.MethodACK {
		return ActionDrop
	}
	if !w.buildReply(in, from, code, reason, out) {
		return ActionDrop
	}
	w.c.local[code].inc()
	return ActionReply
}

// refuseErr answers 400 (or 505) naming a parser error found after Parse.
func (w *Worker) refuseErr(in []byte, from netip.AddrPort, err error, out *Output) Action {
	reason := "Bad Request"
	code := Local400
	if pe, ok := err.(*parser.Error); ok {
		reason = pe.Reason
		if pe.Status == 505 {
			code = Local505
		}
	}
	return w.refuse(in, from, code, reason, DropParseError, out)
}
