package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// reqState is what the phases of one request share: the request and where
// it came from, what route preprocessing found, and the destination chosen.
// It lives in its Worker and is overwritten by the next request.
type reqState struct {
	in   []byte
	from netip.AddrPort
	out  *Output
	meth parser.Method
	to   parser.NameAddr
	top  *parser.Via

	fromTag []byte // the From tag, read for RFC 2543 requests only

	// Route preprocessing (route.go).
	ru, u                     parser.URI // the effective Request-URI; the Route value at hand
	effRURI                   []byte     // the effective Request-URI as written
	ruriRestored              bool       // a strict router's Request-URI was replaced by the last Route
	ruriSelf                  bool       // it names Viaduct (no user part)
	rs                        routes
	remaining                 int // Route values left once Viaduct's own are removed
	removedFirst, removedLast bool
	removedSecond             bool // the second Route was Viaduct's too (double Record-Route)
	fromUpstream              bool
	flow                      netip.AddrPort // the client a Path entry of Viaduct's recorded
	conn                      flowRef        // and its connection, from a flow token
	connListener              int            // the listener of conn

	// Choosing and rewriting (destination.go, rewrite.go).
	loop       uint64
	dest       netip.AddrPort
	picked     uint64 // ID hash of the pool target chosen
	counted    bool   // whether picked is set
	sendListen int
	sendKind   transport.Kind // the transport to dest
	sendFlow   uint64         // the connection to dest, 0 for any
	acceptsTCP bool           // dest is a UDP upstream that also takes TCP (Target.AcceptsTCP)
	key        uint64         // transaction key (txkey.go)
}

// continueRequest is the Action a phase of request returns when the request
// goes on to the following phase; it never leaves Handle.
const continueRequest Action = 255

// request forwards or answers a parsed request, one phase at a time: check
// what it carries, preprocess its routes (RFC 3261 16.4), answer what is
// Viaduct's to answer, detect loops, choose the destination, derive the
// transaction key, rewrite and send on.
func (w *Worker) request(in []byte, from netip.AddrPort, tooBig bool, out *Output) Action {
	w.rt = w.e.route.Load() // one reload generation for the whole request
	r := &w.req
	r.in, r.from, r.out = in, from, out
	r.meth = w.m.MethodID()
	w.c.method(r.meth)
	if tooBig {
		return w.reject(r, Local513, "Message Too Large", DropTooBig)
	}
	if a := w.checkRequest(r); a != continueRequest {
		return a
	}
	if a := w.preprocessRoutes(r); a != continueRequest {
		return a
	}
	if a := w.answerOrStop(r); a != continueRequest {
		return a
	}
	if a := w.chooseDestination(r); a != continueRequest {
		return a
	}
	if a := w.transactionKey(r); a != continueRequest {
		return a
	}
	return w.forward(r)
}

// checkRequest reads what every request must carry well formed: To, From
// and the Request-URI (see "What Viaduct refuses" in the README).
func (w *Worker) checkRequest(r *reqState) Action {
	m := &w.m
	var err error
	if _, ok := m.ContentLength(); !ok && w.src.Kind.NeedsLength() {
		return w.refuseErr(r.in, r.from, parser.ErrNoContentLength, r.out)
	}
	if r.to, err = m.To(); err != nil {
		return w.refuseErr(r.in, r.from, err, r.out)
	}
	r.top = m.TopVia()
	// The From tag is read only for an RFC 2543 transaction key.
	r.fromTag = nil
	if r.top.HasCookie() {
		err = m.CheckFrom()
	} else {
		var f parser.NameAddr
		f, err = m.From()
		r.fromTag = f.Tag
	}
	if err != nil {
		return w.refuseErr(r.in, r.from, err, r.out)
	}
	if err := m.ParseRequestURI(&r.ru); err != nil {
		return w.refuseErr(r.in, r.from, err, r.out)
	}
	return continueRequest
}

// answerOrStop answers OPTIONS addressed to Viaduct itself (a keepalive,
// also with Max-Forwards 0, RFC 3261 16.3 item 3) and stops a request whose
// Max-Forwards ran out (483) or that looped (482, 16.3 item 4: a Via of
// ours whose loop hash equals this request's means nothing that routes it
// has changed).
func (w *Worker) answerOrStop(r *reqState) Action {
	if r.meth == parser.MethodOPTIONS && r.ruriSelf && r.remaining == 0 {
		return w.reject(r, Local200, "OK", DropNone)
	}
	if mf, ok := w.m.MaxForwards(); ok && mf <= 0 {
		return w.reject(r, Local483, "Too Many Hops", DropTooManyHops)
	}
	r.loop = w.loopHash(r)
	if w.looped(r.loop) {
		return w.reject(r, Local482, "Loop Detected", DropLoop)
	}
	return continueRequest
}

// transactionKey derives the transaction key (16.11): the client's branch
// and sent-by for RFC 3261 clients, the 2543 transaction identity otherwise.
func (w *Worker) transactionKey(r *reqState) Action {
	if r.top.HasCookie() {
		r.key = w.txKey3261(r.top)
		return continueRequest
	}
	r.key = w.txKey2543(r.in, r.top, r.to.Tag, r.fromTag)
	return continueRequest
}

// receivedRURI returns the Request-URI as received, parsed, or nil when
// route preprocessing replaced it (a strict router's request) and it must
// be parsed again.
func (r *reqState) receivedRURI() *parser.URI {
	if r.ruriRestored {
		return nil
	}
	return &r.ru
}

// reject answers the request of r with a local reply.
func (w *Worker) reject(r *reqState, code LocalCode, reason string, drop DropReason) Action {
	return w.refuse(r.in, r.from, code, reason, drop, r.out)
}
