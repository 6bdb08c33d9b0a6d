package load

import (
	"bytes"
	"math"
	"net/netip"
	"strconv"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// callState is where a call is in its scenario.
type callState uint8

const (
	stFree          callState = iota
	stInviting                // INVITE sent, no response yet (Timer A running)
	stProceeding              // provisional response to the INVITE received
	stHolding                 // 200 received and acknowledged; waiting for the hold time
	stByeing                  // BYE sent, no response yet (Timer E)
	stByeProceeding           // provisional response to the BYE received
	stRequesting              // non-INVITE scenario: request sent, no response yet
	stReqProceeding           // non-INVITE scenario: provisional response received
	stConnecting              // its own connection being opened (tcp, tls per call)
)

// dlgSize is the per-call room for what the UAS tells us about the dialog:
// the To tag, the remote target (Contact) and the route set.
const dlgSize = 200

// call is one slot of a source's call table. Slots are reused; gen tells
// one use from the next and is part of the Call-ID and branches, so a late
// response to an earlier call in the same slot is recognised.
type call struct {
	gen      uint32
	state    callState
	retrans  uint8 // retransmissions of the current request
	gotResp  bool  // first response of the current transaction recorded
	tagLen   uint8
	uriLen   uint8
	routeLen uint8
	user     uint64 // user number for the templates
	start    int64  // first INVITE (or request) sent
	txStart  int64  // current transaction's first transmission
	txEnd    int64  // current transaction's timeout (Timer B/F)
	nextRT   int64  // next retransmission
	rtIntv   int64  // current retransmission interval
	dlg      [dlgSize]byte
}

func (c *call) toTag() []byte  { return c.dlg[:c.tagLen] }
func (c *call) target() []byte { return c.dlg[c.tagLen : int(c.tagLen)+int(c.uriLen)] }
func (c *call) routes() []byte {
	o := int(c.tagLen) + int(c.uriLen)
	return c.dlg[o : o+int(c.routeLen)]
}

// reqKind is a request the UAC builds.
type reqKind uint8

const (
	rkInvite reqKind = iota
	rkAck2xx
	rkAckErr // ACK for a 3xx-6xx final response: same branch as the INVITE
	rkBye
	rkRegister
	rkOptions
	rkMessage
)

// uacSource is one local socket of the UAC with the calls it drives. It is
// owned by a single goroutine (run); everything on the message path
// (building requests, parsing responses, timers) allocates nothing.
type uacSource struct {
	u     *UAC // nil in unit tests
	cfg   *UACConfig
	idx   int
	st    *sourceStats
	conn  *udp.Conn
	in    *udp.Batch
	out   *udp.Batch
	nOut  int
	slab  []byte // output buffers, one slotSize region per out message
	slotN int
	sink  func(b []byte) // tests: receives sent messages instead of conn

	target   netip.AddrPort
	hostport []byte // our sent-by, e.g. "127.0.0.1:40001"
	cidTail  []byte // "-<src>-<run>@vl": the Call-ID after "<slot>-<gen>"
	brPrefix []byte // "z9hG4bK-<run>-<src>-"
	sdp      []byte
	body     []byte
	scratch  []byte

	calls  []call
	free   []int32
	wheel  *wheel
	fireFn func(int32)
	pacer  Pacer
	quota  uint64 // calls this source may still start in the current phase
	end    int64  // when the current phase stops sending (0: no end)
	seq    uint64 // calls started by this source (for user numbers)
	now    int64
	msg    parser.Message

	t1, t2, timeout, hold int64
	retrans               bool
	quantum, phase        int64 // pacing quantum and this source's offset in it

	stream   *uacStream // connections on tcp and tls; nil on udp
	viaProto string     // "SIP/2.0/UDP " (or TCP, TLS)
	uriParam string     // ";transport=tcp" or tls for our Contact; "" on udp
}

// gridFloor returns the latest instant of this source's pacing grid at or
// before t (t itself without a quantum).
func (s *uacSource) gridFloor(t int64) int64 {
	q := s.quantum
	if q <= 0 {
		return t
	}
	k := (t - s.phase) / q
	if t-s.phase < 0 && (t-s.phase)%q != 0 {
		k--
	}
	return k*q + s.phase
}

// quantize rounds a pacer deadline up to the next instant of this source's
// pacing grid (multiples of the quantum, shifted by the source's phase so
// that sources do not all wake together). Calls due in between then start
// together: a burst of rate*quantum calls, one sendmmsg instead of many,
// and on the receiving side one wake-up instead of many.
func (s *uacSource) quantize(t int64) int64 {
	q := s.quantum
	if q <= 0 || t == math.MaxInt64 {
		return t
	}
	k := (t - s.phase + q - 1) / q
	return k*q + s.phase
}

// newSource builds the per-source state; conn may be nil (tests set sink).
func newSource(u *UAC, cfg *UACConfig, idx int, local netip.AddrPort, run string, maxCalls int, now int64) *uacSource {
	s := &uacSource{
		u:       u,
		cfg:     cfg,
		idx:     idx,
		st:      new(sourceStats),
		target:  cfg.Target,
		t1:      int64(cfg.T1),
		t2:      int64(cfg.T2),
		timeout: int64(cfg.Timeout),
		hold:    int64(cfg.CallHold),
		retrans: !cfg.NoRetrans && !cfg.Transport.Reliable(),
		quantum: int64(cfg.PaceQuantum),
		calls:   make([]call, maxCalls),
		free:    make([]int32, maxCalls),
		now:     now,
	}
	if n := cfg.Sources; n > 0 {
		s.phase = s.quantum * int64(idx%n) / int64(n)
	}
	s.hostport = []byte(local.String())
	s.viaProto = "SIP/2.0/" + cfg.Transport.ViaToken() + " "
	if cfg.Transport.Reliable() {
		s.uriParam = ";transport=" + cfg.Transport.String()
	}
	s.cidTail = []byte("-" + strconv.Itoa(idx) + "-" + run + "@vl")
	s.brPrefix = []byte("z9hG4bK-" + run + "-" + strconv.Itoa(idx) + "-")
	s.sdp = buildSDP(local.Addr(), cfg.SDPSize)
	s.body = bytes.Repeat([]byte("x"), cfg.BodySize)
	for i := range s.free {
		s.free[i] = int32(maxCalls - 1 - i)
	}
	s.wheel = newWheel(maxCalls, now)
	s.fireFn = s.onTimer
	bodyMax := max(len(s.sdp), len(s.body))
	s.slotN = 1536 + bodyMax + dlgSize + len(cfg.Domain)*3
	s.out = udp.NewBatch(cfg.BatchSize, 0)
	s.slab = make([]byte, cfg.BatchSize*s.slotN)
	s.scratch = make([]byte, 0, 128)
	return s
}

// buildSDP returns an SDP offer for addr, padded to size bytes when size
// exceeds its natural length: attribute lines of up to 80 bytes, and a
// remainder too short for a line lengthens the session name.
func buildSDP(addr netip.Addr, size int) []byte {
	ipv := "IP4"
	if addr.Is6() && !addr.Is4In6() {
		ipv = "IP6"
	}
	a := addr.Unmap().String()
	head := "v=0\r\no=viaduct-load 1 1 IN " + ipv + " " + a + "\r\ns=-"
	tail := "\r\nc=IN " + ipv + " " + a + "\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	gap := size - len(head) - len(tail)
	var pad []byte
	const line = len("a=x-pad:\r\n")
	for gap > line {
		n := min(70, gap-line)
		pad = append(pad, "a=x-pad:"...)
		pad = append(pad, bytes.Repeat([]byte("p"), n)...)
		pad = append(pad, "\r\n"...)
		gap -= n + line
	}
	b := []byte(head)
	if gap > 0 {
		b = append(b, bytes.Repeat([]byte("p"), gap)...)
	}
	b = append(b, tail...)
	return append(b, pad...)
}

// ---- output ----

// next returns an empty buffer for the next outgoing message, flushing the
// batch first if it is full.
func (s *uacSource) next() []byte {
	if s.stream != nil {
		return s.stream.next(s)
	}
	if s.nOut == len(s.out.Msgs) {
		s.flush()
	}
	o := s.nOut * s.slotN
	return s.slab[o : o : o+s.slotN]
}

// send queues b (built in the buffer from next) for the target, on call
// slot's connection on a stream transport.
func (s *uacSource) send(slot int32, b []byte) {
	if s.stream != nil {
		s.stream.send(s, slot, b)
		return
	}
	s.out.Msgs[s.nOut].SetData(b, s.target)
	s.nOut++
	s.st.inc(cSent)
}

// flush sends the queued messages.
func (s *uacSource) flush() {
	if s.stream != nil {
		s.stream.flush(s)
		return
	}
	if s.nOut == 0 {
		return
	}
	if s.sink != nil {
		for i := 0; i < s.nOut; i++ {
			m := &s.out.Msgs[i]
			s.sink(m.Buf[:m.N])
		}
	} else if s.conn != nil {
		s.st.inc(cWriteCalls)
		sent, _ := s.conn.WriteBatch(s.out, s.nOut)
		if sent < s.nOut {
			s.st.add(cSendErr, uint64(s.nOut-sent))
		}
	}
	s.nOut = 0
}

// ---- identifiers ----

func (s *uacSource) appendCallID(b []byte, slot int32, c *call) []byte {
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(c.gen), 10)
	return append(b, s.cidTail...)
}

func (s *uacSource) appendBranch(b []byte, slot int32, c *call, kind byte) []byte {
	b = append(b, s.brPrefix...)
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(c.gen), 10)
	return append(b, kind)
}

// parseCallID returns the slot and generation encoded in one of our
// Call-IDs, or ok=false for a Call-ID that is not from this source.
func (s *uacSource) parseCallID(id []byte) (slot int32, gen uint32, ok bool) {
	var v uint64
	i := 0
	for ; i < len(id) && id[i] >= '0' && id[i] <= '9'; i++ {
		v = v*10 + uint64(id[i]-'0')
		if v >= uint64(len(s.calls)) {
			return 0, 0, false
		}
	}
	if i == 0 || i >= len(id) || id[i] != '-' {
		return 0, 0, false
	}
	slot = int32(v)
	i++
	j := i
	v = 0
	for ; i < len(id) && id[i] >= '0' && id[i] <= '9'; i++ {
		v = v*10 + uint64(id[i]-'0')
		if v > 0xffffffff {
			return 0, 0, false
		}
	}
	if i == j || !bytes.Equal(id[i:], s.cidTail) {
		return 0, 0, false
	}
	return slot, uint32(v), true
}

// ---- requests ----

func branchKind(k reqKind) byte {
	switch k {
	case rkInvite, rkAckErr:
		return 'i'
	case rkAck2xx:
		return 'a'
	case rkBye:
		return 'b'
	case rkRegister:
		return 'r'
	case rkOptions:
		return 'o'
	default:
		return 'm'
	}
}

func (s *uacSource) appendAOR(b []byte, t Template, c *call) []byte {
	b = append(b, "sip:"...)
	b = t.Append(b, c.user)
	b = append(b, '@')
	return append(b, s.cfg.Domain...)
}

// build appends request k of call slot to b.
func (s *uacSource) build(b []byte, slot int32, c *call, k reqKind) []byte {
	var method string
	cseq := 1
	switch k {
	case rkInvite:
		method = "INVITE"
	case rkAck2xx, rkAckErr:
		method = "ACK"
	case rkBye:
		method, cseq = "BYE", 2
	case rkRegister:
		method = "REGISTER"
	case rkOptions:
		method = "OPTIONS"
	default:
		method = "MESSAGE"
	}
	fromT := s.cfg.FromUser
	if k == rkRegister {
		fromT = s.cfg.User
	}
	// Request line.
	b = append(b, method...)
	b = append(b, ' ')
	inDialog := k == rkAck2xx || k == rkBye
	switch {
	case inDialog && c.uriLen > 0:
		b = append(b, c.target()...)
	case k == rkRegister:
		b = append(b, "sip:"...)
		b = append(b, s.cfg.Domain...)
	default:
		b = s.appendAOR(b, s.cfg.User, c)
	}
	b = append(b, " SIP/2.0\r\nVia: "...)
	b = append(b, s.viaProto...)
	sentBy := s.sentBy(slot)
	b = append(b, sentBy...)
	b = append(b, ";branch="...)
	b = s.appendBranch(b, slot, c, branchKind(k))
	b = append(b, ";rport\r\n"...)
	if inDialog && c.routeLen > 0 {
		b = append(b, "Route: "...)
		b = append(b, c.routes()...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Max-Forwards: 70\r\nFrom: <"...)
	b = s.appendAOR(b, fromT, c)
	b = append(b, ">;tag=vl"...)
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, 'x')
	b = strconv.AppendUint(b, uint64(c.gen), 10)
	b = append(b, "\r\nTo: <"...)
	b = s.appendAOR(b, s.cfg.User, c)
	b = append(b, '>')
	if (k == rkAck2xx || k == rkAckErr || k == rkBye) && c.tagLen > 0 {
		b = append(b, ";tag="...)
		b = append(b, c.toTag()...)
	}
	b = append(b, "\r\nCall-ID: "...)
	b = s.appendCallID(b, slot, c)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendInt(b, int64(cseq), 10)
	b = append(b, ' ')
	b = append(b, method...)
	b = append(b, "\r\n"...)
	if k == rkInvite || k == rkRegister {
		b = append(b, "Contact: <sip:"...)
		b = fromT.Append(b, c.user)
		b = append(b, '@')
		b = append(b, sentBy...)
		b = append(b, s.uriParam...)
		b = append(b, ">\r\n"...)
	}
	var body []byte
	switch k {
	case rkInvite:
		body = s.sdp
		b = append(b, "Content-Type: application/sdp\r\n"...)
	case rkRegister:
		b = append(b, "Expires: 3600\r\n"...)
	case rkOptions:
		b = append(b, "Accept: application/sdp\r\n"...)
	case rkMessage:
		body = s.body
		b = append(b, "Content-Type: text/plain\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// emit builds request k for call slot and queues it.
func (s *uacSource) emit(slot int32, c *call, k reqKind) {
	s.send(slot, s.build(s.next(), slot, c, k))
}

// ---- call life cycle ----

// initialKind is the request that starts a call in the configured scenario.
func (s *uacSource) initialKind() reqKind {
	switch s.cfg.Scenario {
	case ScenarioRegister:
		return rkRegister
	case ScenarioOptions:
		return rkOptions
	case ScenarioMessage:
		return rkMessage
	}
	return rkInvite
}

// startCall starts one call; it returns false if the call table is full.
func (s *uacSource) startCall() bool {
	if len(s.free) == 0 {
		return false
	}
	if s.stream != nil && !s.stream.canStart(s) {
		return false
	}
	slot := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	c := &s.calls[slot]
	c.gen++
	c.tagLen, c.uriLen, c.routeLen = 0, 0, 0
	n := s.seq*uint64(s.srcCount()) + uint64(s.idx)
	s.seq++
	c.user = s.cfg.UserStart + n%s.cfg.UserCount
	c.start = s.now
	s.st.inc(cStarted)
	if s.stream != nil && s.stream.perCall {
		c.state = stConnecting // the request leaves once it is open
		s.stream.openFor(slot)
		return true
	}
	s.sendInitial(slot, c)
	return true
}

// sendInitial sends the request that starts call slot's scenario.
func (s *uacSource) sendInitial(slot int32, c *call) {
	k := s.initialKind()
	if k == rkInvite {
		c.state = stInviting
	} else {
		c.state = stRequesting
	}
	s.beginTx(slot, c)
	s.emit(slot, c, k)
}

func (s *uacSource) srcCount() int {
	if s.u == nil {
		return 1
	}
	return len(s.u.sources)
}

// beginTx starts a client transaction for call slot: retransmission and
// timeout timers.
func (s *uacSource) beginTx(slot int32, c *call) {
	c.txStart = s.now
	c.txEnd = s.now + s.timeout
	c.retrans = 0
	c.gotResp = false
	c.rtIntv = s.t1
	c.nextRT = s.now + s.t1
	s.armTx(slot, c)
}

// armTx arms the call's timer for its next retransmission or timeout.
func (s *uacSource) armTx(slot int32, c *call) {
	d := c.txEnd
	if s.retrans && c.nextRT < d {
		d = c.nextRT
	}
	s.wheel.set(slot, d)
}

// finish ends call slot: successfully (reason < 0) or counted as failed
// under reason with status code code.
func (s *uacSource) finish(slot int32, c *call, ok bool, reason counter, code int) {
	s.wheel.stop(slot)
	c.state = stFree
	s.free = append(s.free, slot)
	if s.stream != nil {
		s.stream.callEnded(slot)
	}
	if ok {
		s.st.inc(cCompleted)
		return
	}
	s.st.inc(cFailed)
	s.st.inc(reason)
	switch reason {
	case cRejected:
		incCode(&s.st.codes, code)
	case cByeRejected:
		incCode(&s.st.byeCodes, code)
	}
}

// onTimer handles the expiry of call slot's timer.
func (s *uacSource) onTimer(slot int32) {
	c := &s.calls[slot]
	now := s.now
	switch c.state {
	case stInviting, stByeing, stRequesting, stByeProceeding, stReqProceeding:
		if now >= c.txEnd {
			if c.state == stByeing || c.state == stByeProceeding {
				s.finish(slot, c, false, cByeTimeout, 0)
			} else {
				s.finish(slot, c, false, cTimeout, 0)
			}
			return
		}
		if !s.retrans || now < c.nextRT {
			s.armTx(slot, c)
			return
		}
		k := s.initialKind()
		switch c.state {
		case stByeing, stByeProceeding:
			k = rkBye
		}
		s.emit(slot, c, k)
		s.st.inc(cRetrans)
		if c.retrans < 255 {
			c.retrans++
		}
		switch c.state {
		case stInviting:
			c.rtIntv *= 2 // Timer A doubles without bound
		case stByeProceeding, stReqProceeding:
			c.rtIntv = s.t2 // Timer E after a provisional response
		default:
			c.rtIntv = min(2*c.rtIntv, s.t2)
		}
		c.nextRT = now + c.rtIntv
		s.armTx(slot, c)
	case stProceeding:
		s.finish(slot, c, false, cTimeout, 0)
	case stHolding:
		s.sendBye(slot, c)
	}
}

func (s *uacSource) sendBye(slot int32, c *call) {
	c.state = stByeing
	s.beginTx(slot, c)
	s.emit(slot, c, rkBye)
}

// onDatagram handles one received datagram.
func (s *uacSource) onDatagram(b []byte) {
	s.st.inc(cRecv)
	m := &s.msg
	if err := parser.Parse(b, m); err != nil {
		s.st.inc(cParseErr)
		return
	}
	if m.IsRequest() {
		s.st.inc(cUnexpected)
		return
	}
	slot, gen, ok := s.parseCallID(m.CallID())
	if !ok {
		s.st.inc(cStray)
		return
	}
	c := &s.calls[slot]
	if c.gen != gen || c.state == stFree {
		s.st.inc(cLate)
		return
	}
	code := m.StatusCode()
	_, cseqMethod := m.CSeq()
	var k reqKind
	switch parser.MethodOf(cseqMethod) {
	case parser.MethodINVITE:
		k = rkInvite
	case parser.MethodBYE:
		k = rkBye
	case parser.MethodREGISTER:
		k = rkRegister
	case parser.MethodOPTIONS:
		k = rkOptions
	case parser.MethodMESSAGE:
		k = rkMessage
	default:
		s.st.inc(cUnexpected)
		return
	}
	// The top Via must be ours, with the branch of that transaction.
	s.scratch = s.appendBranch(s.scratch[:0], slot, c, branchKind(k))
	if v := m.TopVia(); !bytes.Equal(v.Branch, s.scratch) {
		s.st.inc(cUnexpected)
		return
	}
	switch k {
	case rkInvite:
		s.onInviteResponse(slot, c, code)
	case rkBye:
		s.onByeResponse(slot, c, code)
	default:
		s.onRequestResponse(slot, c, k, code)
	}
}

// recordFirst records the request-to-first-response latency once per
// transaction.
func (s *uacSource) recordFirst(c *call) {
	if !c.gotResp {
		c.gotResp = true
		s.st.resp.Record(s.now - c.txStart)
	}
}

func (s *uacSource) onInviteResponse(slot int32, c *call, code int) {
	switch c.state {
	case stInviting, stProceeding:
		s.recordFirst(c)
		switch {
		case code < 200:
			if c.state == stInviting {
				c.state = stProceeding
				s.wheel.set(slot, c.txEnd) // no more retransmissions
			}
		case code < 300:
			s.st.setup.Record(s.now - c.start)
			s.saveDialog(c, true)
			s.emit(slot, c, rkAck2xx)
			if s.hold <= 0 {
				s.sendBye(slot, c)
			} else {
				c.state = stHolding
				s.wheel.set(slot, s.now+s.hold)
			}
		default:
			s.saveDialog(c, false)
			s.emit(slot, c, rkAckErr)
			s.finish(slot, c, false, cRejected, code)
		}
	case stHolding, stByeing, stByeProceeding:
		// A retransmitted 2xx: the UAS did not see our ACK; send it again.
		s.st.inc(cDup)
		if code >= 200 && code < 300 {
			s.emit(slot, c, rkAck2xx)
		}
	default:
		s.st.inc(cUnexpected)
	}
}

func (s *uacSource) onByeResponse(slot int32, c *call, code int) {
	s.nonInviteResponse(slot, c, code, stByeing, stByeProceeding, cByeRejected)
}

func (s *uacSource) onRequestResponse(slot int32, c *call, k reqKind, code int) {
	if k != s.initialKind() {
		s.st.inc(cUnexpected)
		return
	}
	s.nonInviteResponse(slot, c, code, stRequesting, stReqProceeding, cRejected)
}

// nonInviteResponse advances a non-INVITE client transaction (RFC 3261
// 17.1.2) that is in state trying or proceeding: a provisional response
// moves it to proceeding, where the request is retransmitted every T2; a
// final response ends the call, counting a non-2xx as rejected.
func (s *uacSource) nonInviteResponse(slot int32, c *call, code int, trying, proceeding callState, rejected counter) {
	if c.state != trying && c.state != proceeding {
		s.st.inc(cUnexpected)
		return
	}
	s.recordFirst(c)
	switch {
	case code < 200:
		if c.state == trying {
			c.state = proceeding
			c.rtIntv = s.t2
			c.nextRT = s.now + s.t2
			s.armTx(slot, c)
		}
	case code < 300:
		s.finish(slot, c, true, 0, code)
	default:
		s.finish(slot, c, false, rejected, code)
	}
}

// saveDialog stores the To tag and, for a 2xx, the remote target (first
// Contact URI) and the route set (Record-Route URIs in reverse order) of
// the response in s.msg into the call's fixed dialog buffer. What does not
// fit is left out: the target then defaults to the Request-URI.
func (s *uacSource) saveDialog(c *call, success bool) {
	m := &s.msg
	c.tagLen, c.uriLen, c.routeLen = 0, 0, 0
	to, err := m.To()
	if err != nil || len(to.Tag) > 64 {
		return
	}
	n := copy(c.dlg[:], to.Tag)
	c.tagLen = uint8(n)
	if !success {
		return
	}
	var a parser.NameAddr
	it := m.Contacts()
	if it.Next(&a) && len(a.URI) <= dlgSize-n && len(a.URI) < 256 && !(len(a.URI) == 1 && a.URI[0] == '*') {
		c.uriLen = uint8(copy(c.dlg[n:], a.URI))
		n += int(c.uriLen)
	}
	// Route set: Record-Route entries reversed, each as <uri>.
	var offs [8][2]int
	cnt := 0
	rr := m.RecordRoutes()
	for rr.Next(&a) {
		if cnt == len(offs) {
			return // too many to keep; send without a route set
		}
		o := m.Offset(a.URI)
		offs[cnt] = [2]int{o, o + len(a.URI)}
		cnt++
	}
	need := 0
	for i := 0; i < cnt; i++ {
		need += offs[i][1] - offs[i][0] + 3
	}
	if cnt == 0 || n+need > dlgSize || need > 255 {
		return
	}
	buf := m.Bytes()
	start := n
	for i := cnt - 1; i >= 0; i-- {
		if i != cnt-1 {
			c.dlg[n] = ','
			n++
		}
		c.dlg[n] = '<'
		n++
		n += copy(c.dlg[n:], buf[offs[i][0]:offs[i][1]])
		c.dlg[n] = '>'
		n++
	}
	c.routeLen = uint8(n - start)
}

// abortAll ends every call in progress, counting it as unfinished.
func (s *uacSource) abortAll() {
	for i := range s.calls {
		c := &s.calls[i]
		if c.state != stFree {
			s.finish(int32(i), c, false, cUnfinished, 0)
		}
	}
}

// outstanding returns the number of calls in progress.
func (s *uacSource) outstanding() int { return len(s.calls) - len(s.free) }
