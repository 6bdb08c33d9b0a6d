package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/internal/enum"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// UASConfig configures a UAS (the responder). Listen is required; every
// other zero value means the default documented on the field.
type UASConfig struct {
	// Listen is the address to answer on, e.g. 127.0.0.1:5071.
	Listen netip.AddrPort
	// Transport is udp (the default), tcp or tls. On tcp and tls the UAS
	// accepts connections and answers each request on the connection it
	// came on, a goroutine per connection; Workers, ReusePort, Spread and
	// the socket buffer sizes are then unused.
	Transport transport.Kind
	// TLS is the server configuration for tls (see ServerTLSConfig).
	// Default: a self-signed certificate for Listen's address, localhost
	// and the loopback addresses, made in memory.
	TLS *tls.Config
	// Workers is the number of sockets (one goroutine each) in the
	// SO_REUSEPORT group on Listen. Default runtime.GOMAXPROCS(0).
	Workers int
	// ReusePort lets the workers' sockets share Listen with other
	// processes' SO_REUSEPORT sockets (other responders started with it).
	// False, the default: an address another socket holds is refused
	// (address already in use), see udp.ListenGroup.
	ReusePort bool
	// Advertise is the address put in Contact headers. Default: Listen
	// (with the port the kernel chose when Listen's port is 0).
	Advertise netip.AddrPort
	// Delay postpones the final responses: an INVITE gets 100 and 180 at
	// once and its 200 (or failure) after Delay; other requests get their
	// response after Delay. CANCEL is answered at once, and a CANCEL that
	// arrives while its INVITE waits gets the INVITE a 487.
	Delay time.Duration
	// FailRate is the fraction (0..1) of out-of-dialog requests answered
	// with FailCode (default 503) instead of success.
	FailRate float64
	FailCode int
	// DropRate is the fraction (0..1) of out-of-dialog requests not
	// answered at all. The choice (for FailRate too) depends only on the
	// Call-ID and CSeq, so retransmissions get the same treatment.
	DropRate float64
	// SDPSize is the size of the SDP answer in a 200 to INVITE (see
	// UACConfig.SDPSize). 0 means the default SDP.
	SDPSize int
	// RecvBuffer and SendBuffer are the socket buffer sizes. Default 16 MiB
	// receive (a burst or a scheduling hiccup then queues instead of being
	// dropped) and 4 MiB send; without CAP_NET_ADMIN the kernel caps them at
	// net.core.rmem_max and wmem_max.
	RecvBuffer, SendBuffer int
	// BatchSize is the number of datagrams per recvmmsg/sendmmsg. Default 64.
	BatchSize int
	// Spread is how incoming datagrams are spread over the workers'
	// sockets. Default SpreadRandom.
	Spread Spread
}

// Spread selects how the kernel spreads incoming datagrams over the UAS
// workers' SO_REUSEPORT sockets.
type Spread int

const (
	// SpreadRandom picks a random worker for every datagram (a classic BPF
	// program attached to the group), so a few busy sources cannot pile
	// onto one worker. Requests of one call may then be handled by
	// different workers, which a stateless responder does not mind.
	SpreadRandom Spread = iota
	// SpreadCPU picks the worker by the CPU that received the datagram
	// (on loopback, the CPU the sender ran on).
	SpreadCPU
	// SpreadHash is the kernel's default: a hash of the source and
	// destination addresses and ports, so each source sticks to one worker.
	SpreadHash
)

var spreadNames = [...]string{"random", "cpu", "hash"}

// String returns the name ParseSpread accepts.
func (s Spread) String() string { return enum.Name(spreadNames[:], s, "Spread") }

// ParseSpread returns the spread mode named s: "random", "cpu" or "hash".
func ParseSpread(s string) (Spread, error) {
	if sp, ok := enum.Parse[Spread](spreadNames[:], s); ok {
		return sp, nil
	}
	return 0, fmt.Errorf("unknown spread %q (want random, cpu or hash)", s)
}

func (c UASConfig) withDefaults() (UASConfig, error) {
	if !c.Listen.IsValid() {
		return c, errors.New("listen address is required")
	}
	if err := checkTransport(&c.Transport); err != nil {
		return c, err
	}
	if isWebSocket(c.Transport) {
		return c, fmt.Errorf("transport %v: the responder answers on udp, tcp or tls", c.Transport)
	}
	if c.Workers == 0 {
		c.Workers = gomaxprocs()
	}
	if c.Workers < 0 || c.Workers > 1024 {
		return c, fmt.Errorf("workers %d out of range 1..1024", c.Workers)
	}
	if c.Delay < 0 {
		return c, fmt.Errorf("delay %v must not be negative", c.Delay)
	}
	if c.FailRate < 0 || c.FailRate > 1 || c.DropRate < 0 || c.DropRate > 1 || c.FailRate+c.DropRate > 1 {
		return c, fmt.Errorf("fail rate %v and drop rate %v must be in 0..1 and add up to at most 1", c.FailRate, c.DropRate)
	}
	if c.FailCode == 0 {
		c.FailCode = 503
	}
	if c.FailCode < 300 || c.FailCode > 699 {
		return c, fmt.Errorf("fail code %d must be a final failure code (300..699)", c.FailCode)
	}
	if c.SDPSize < 0 || c.SDPSize > 60000 {
		return c, fmt.Errorf("SDP size %d out of range 0..60000", c.SDPSize)
	}
	if err := socketDefaults(&c.RecvBuffer, &c.SendBuffer, &c.BatchSize); err != nil {
		return c, err
	}
	if c.Spread < SpreadRandom || c.Spread > SpreadHash {
		return c, fmt.Errorf("invalid spread %d", c.Spread)
	}
	return c, nil
}

// uasCounter indexes the per-worker UAS counters.
type uasCounter int

const (
	uReceived  uasCounter = iota // datagrams received
	uRequests                    // valid requests
	uInvite                      // INVITE requests
	uAck                         // ACK requests
	uBye                         // BYE requests
	uCancel                      // CANCEL requests
	uOptions                     // OPTIONS requests
	uRegister                    // REGISTER requests
	uOtherReq                    // other methods
	uResponses                   // responses received (ignored)
	uParseErr                    // invalid datagrams
	uSent                        // responses sent
	uSendErr                     // responses the kernel refused
	uDropped                     // requests left unanswered by DropRate
	uFailed                      // requests answered with FailCode by FailRate
	uCanceled                    // INVITEs answered 487 after a CANCEL
	uDelayed                     // responses queued for Delay
	uAccepted                    // connections accepted (tcp, tls)
	uClosed                      // connections ended
	uFraming                     // connections closed for a framing error
	uTLSFail                     // TLS handshakes that failed
	numUASCounters
)

// uasStats are counters of one UDP worker (its goroutine the only writer)
// or, shared, of the connections of a stream UAS (atomic additions).
type uasStats struct {
	c      [numUASCounters]atomic.Uint64
	codes  [maxCode]atomic.Uint64 // responses sent by status code
	shared bool                   // several writers
	_      [64]byte
}

func (s *uasStats) inc(k uasCounter) { s.add(k, 1) }

func (s *uasStats) add(k uasCounter, n uint64) {
	if s.shared {
		s.c[k].Add(n)
		return
	}
	s.c[k].Store(s.c[k].Load() + n)
}

// code counts a response sent with status code.
func (s *uasStats) code(code int) {
	if s.shared {
		if code < 0 || code >= maxCode {
			code = 0
		}
		s.codes[code].Add(1)
		return
	}
	incCode(&s.codes, code)
}

// UASCounts is a snapshot of the UAS counters, summed over workers.
type UASCounts struct {
	Received, Requests, Invite, Ack, Bye, Cancel, Options, Register, OtherRequests uint64
	Responses, ParseErrors, Sent, SendErrors, Dropped, Failed, Canceled, Delayed   uint64
	// Accepted and Closed count connections (tcp, tls); FramingErrors the
	// connections closed because a message could not be framed (no or a
	// bad Content-Length, too long); HandshakeErrors failed TLS handshakes.
	Accepted, Closed, FramingErrors, HandshakeErrors uint64
	// KernelDrops counts datagrams the kernel dropped on the workers'
	// sockets because a receive buffer was full.
	KernelDrops uint64
	// Codes counts the responses sent by status code.
	Codes [maxCode]uint64
}

func (c *UASCounts) fields() [numUASCounters]*uint64 {
	return [numUASCounters]*uint64{
		uReceived: &c.Received, uRequests: &c.Requests, uInvite: &c.Invite, uAck: &c.Ack,
		uBye: &c.Bye, uCancel: &c.Cancel, uOptions: &c.Options, uRegister: &c.Register,
		uOtherReq: &c.OtherRequests, uResponses: &c.Responses, uParseErr: &c.ParseErrors,
		uSent: &c.Sent, uSendErr: &c.SendErrors, uDropped: &c.Dropped, uFailed: &c.Failed,
		uCanceled: &c.Canceled, uDelayed: &c.Delayed, uAccepted: &c.Accepted, uClosed: &c.Closed,
		uFraming: &c.FramingErrors, uTLSFail: &c.HandshakeErrors,
	}
}

// Sub sets c to cur - prev.
func (c *UASCounts) Sub(cur, prev *UASCounts) {
	f, fc, fp := c.fields(), cur.fields(), prev.fields()
	for k := range f {
		*f[k] = sub0(*fc[k], *fp[k])
	}
	for i := range c.Codes {
		c.Codes[i] = sub0(cur.Codes[i], prev.Codes[i])
	}
	c.KernelDrops = sub0(cur.KernelDrops, prev.KernelDrops)
}

// pending is a request whose final response waits for UASConfig.Delay.
type pending struct {
	due      int64
	from     netip.AddrPort
	buf      []byte // copy of the request
	key      uint64 // cancel-table key for INVITEs, 0 otherwise
	canceled bool   // set under the cancel-table shard lock
}

const cancelShards = 16

// cancelTable finds INVITEs waiting in any worker's delay queue by their
// transaction (Call-ID, CSeq number, top Via branch), so that a CANCEL
// handled by another worker can terminate them.
type cancelTable struct {
	shards [cancelShards]struct {
		mu sync.Mutex
		m  map[uint64]*pending
		_  [40]byte
	}
}

func (t *cancelTable) shard(key uint64) int { return int(key % cancelShards) }

// UAS is the responder: a stateless SIP server that answers every request
// from the request's own headers, with a few workers on one SO_REUSEPORT
// address. Create it with NewUAS and stop it with Close.
type UAS struct {
	cfg     UASConfig
	addr    netip.AddrPort
	epoch   time.Time
	workers []*uasWorker
	cancels cancelTable
	wg      sync.WaitGroup
	once    sync.Once
	stream  *uasStream // tcp and tls; nil on udp
}

// NewUAS opens the sockets and starts answering.
func NewUAS(cfg UASConfig) (*UAS, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("uas config: %w", err)
	}
	s := &UAS{cfg: cfg, epoch: time.Now()}
	for i := range s.cancels.shards {
		s.cancels.shards[i].m = make(map[uint64]*pending, 256)
	}
	if cfg.Transport.Reliable() {
		if err := s.listenStream(); err != nil {
			return nil, fmt.Errorf("uas: %w", err)
		}
		return s, nil
	}
	conns, err := udp.ListenGroup(context.Background(), cfg.Listen, cfg.Workers, udp.Config{
		ShareAddress: cfg.ReusePort, RecvBuffer: cfg.RecvBuffer, SendBuffer: cfg.SendBuffer, BatchSize: cfg.BatchSize,
	})
	if err != nil {
		return nil, fmt.Errorf("uas: %w", err)
	}
	s.addr = conns[0].LocalAddr() // with the port the kernel chose for port 0
	for i, conn := range conns {
		s.workers = append(s.workers, newUASWorker(s, i, conn))
	}
	if err := attachSpread(s.workers[0].conn, cfg.Spread, len(s.workers)); err != nil {
		s.closeAll()
		return nil, fmt.Errorf("uas: %w", err)
	}
	for _, w := range s.workers {
		s.wg.Go(w.run)
	}
	return s, nil
}

// Workers returns the number of workers (sockets) answering.
func (s *UAS) Workers() int { return len(s.workers) }

// Addr returns the address the UAS answers on.
func (s *UAS) Addr() netip.AddrPort { return s.addr }

// Counts stores the current totals over all workers in c.
func (s *UAS) Counts(c *UASCounts) {
	*c = UASCounts{}
	f := c.fields()
	for _, w := range s.workers {
		for k := range f {
			*f[k] += w.st.c[k].Load()
		}
		for i := range c.Codes {
			c.Codes[i] += w.st.codes[i].Load()
		}
		if w.conn != nil {
			c.KernelDrops += w.conn.Drops()
		}
	}
	if s.stream != nil {
		s.stream.counts(c)
	}
}

// Close stops the workers and closes the sockets. Responses still waiting
// for Delay are not sent.
func (s *UAS) Close() error {
	var err error
	s.once.Do(func() {
		err = s.closeAll()
		s.wg.Wait()
	})
	return err
}

func (s *UAS) closeAll() error {
	if s.stream != nil {
		return s.stream.close()
	}
	var errs []error
	for _, w := range s.workers {
		if e := w.conn.Close(); e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

func (s *UAS) nanotime() int64 { return int64(time.Since(s.epoch)) }

// uasWorker answers the datagrams of one socket.
type uasWorker struct {
	s     *UAS
	idx   int
	conn  *udp.Conn
	in    *udp.Batch
	out   *udp.Batch
	nOut  int
	slab  []byte
	slotN int
	sink  func(b []byte, to netip.AddrPort) // tests: receives responses

	// On tcp and tls, a worker serves one connection.
	sconn  net.Conn
	peer   netip.AddrPort
	fr     *frameReader
	wbuf   []byte
	broken bool // a write failed: the connection is done

	st      *uasStats
	msg     parser.Message
	dmsg    parser.Message // for delayed requests
	sdp     []byte
	contact []byte // "Contact: <sip:uas@host:port>\r\n"
	tag     []byte // the To tag for the request being answered
	now     int64

	// What parse learned about the request being answered (cur), so that
	// the To header is parsed and our tag computed once per request, not
	// once per response.
	cur      *parser.Message
	curHas   bool // its To already has a tag (in-dialog request)
	curTagOK bool // w.tag holds our tag for it

	// Delay queue: a FIFO ring (the delay is constant, so it is ordered
	// by due time), and a free list of pending entries for reuse.
	q     []*pending
	qHead int
	qLen  int
	pfree []*pending
}

func newUASWorker(s *UAS, idx int, conn *udp.Conn) *uasWorker {
	w := &uasWorker{s: s, idx: idx, conn: conn, st: new(uasStats), tag: make([]byte, 0, 24)}
	local := s.addr
	if conn != nil {
		local = conn.LocalAddr()
	}
	w.sdp, w.contact = s.answerParts(local)
	w.slotN = 4096 + len(w.sdp)
	bs := s.cfg.BatchSize
	w.out = udp.NewBatch(bs, 0)
	w.slab = make([]byte, bs*w.slotN)
	w.in = udp.NewBatch(bs, 65535)
	return w
}

// answerParts returns the SDP answer and the Contact header field of
// responses from the local address: the advertised one when set, with
// the transport parameter on tcp and tls.
func (s *UAS) answerParts(local netip.AddrPort) (sdp, contact []byte) {
	adv := s.cfg.Advertise
	if !adv.IsValid() {
		adv = local
	}
	if adv.Addr().IsUnspecified() {
		adv = netip.AddrPortFrom(netip.IPv6Loopback(), adv.Port())
		if s.cfg.Listen.Addr().Is4() {
			adv = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), adv.Port())
		}
	}
	param := ""
	if k := s.cfg.Transport; k.Reliable() {
		param = ";transport=" + k.String()
	}
	return buildSDP(adv.Addr(), s.cfg.SDPSize), []byte("Contact: <sip:uas@" + adv.String() + param + ">\r\n")
}

func (w *uasWorker) run() {
	var deadline int64
	for {
		if w.qLen > 0 {
			due := w.q[w.qHead].due
			if deadline != due {
				deadline = due
				w.conn.SetReadDeadline(w.s.epoch.Add(time.Duration(due)))
			}
		} else if deadline != 0 {
			deadline = 0
			w.conn.SetReadDeadline(time.Time{})
		}
		n, err := w.conn.ReadBatch(w.in)
		w.now = w.s.nanotime()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				deadline = -1 // force setting it again
			}
		}
		for i := 0; i < n; i++ {
			m := &w.in.Msgs[i]
			if m.Err != nil {
				w.st.inc(uReceived)
				w.st.inc(uParseErr)
				continue
			}
			w.handle(m.Buf[:m.N], m.Addr)
		}
		w.fireDue()
		w.flush()
	}
}

// ---- output ----

func (w *uasWorker) next() []byte {
	if w.sconn != nil {
		return w.nextStream()
	}
	if w.nOut == len(w.out.Msgs) {
		w.flush()
	}
	o := w.nOut * w.slotN
	return w.slab[o : o : o+w.slotN]
}

func (w *uasWorker) send(b []byte, to netip.AddrPort, code int) {
	if w.sconn != nil {
		w.queueStream(b)
	} else {
		w.out.Msgs[w.nOut].SetData(b, to)
		w.nOut++
	}
	w.st.inc(uSent)
	w.st.code(code)
}

func (w *uasWorker) flush() {
	if w.sconn != nil {
		w.flushStream()
		return
	}
	if w.nOut == 0 {
		return
	}
	if w.sink != nil {
		for i := 0; i < w.nOut; i++ {
			m := &w.out.Msgs[i]
			w.sink(m.Buf[:m.N], m.Addr)
		}
	} else {
		sent, _ := w.conn.WriteBatch(w.out, w.nOut)
		if sent < w.nOut {
			w.st.add(uSendErr, uint64(w.nOut-sent))
		}
	}
	w.nOut = 0
}

// ---- decisions ----

// fnv64 is FNV-1a, used to derive per-call decisions and tags.
func fnv64(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

const fnvOffset = 14695981039346656037

// mix finalizes a hash (splitmix64) so that its bits are uniform.
func mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// verdict is what the UAS does with an out-of-dialog request.
type verdict uint8

const (
	vAnswer verdict = iota
	vFail
	vDrop
)

func (w *uasWorker) verdict(m *parser.Message) verdict {
	cfg := &w.s.cfg
	if cfg.FailRate == 0 && cfg.DropRate == 0 {
		return vAnswer
	}
	num, _ := m.CSeq()
	h := mix(fnv64(fnvOffset, m.CallID()) ^ uint64(num))
	x := float64(h>>11) / (1 << 53)
	switch {
	case x < cfg.DropRate:
		return vDrop
	case x < cfg.DropRate+cfg.FailRate:
		return vFail
	}
	return vAnswer
}

// txKey identifies an INVITE transaction for CANCEL matching.
func txKey(m *parser.Message) uint64 {
	num, _ := m.CSeq()
	h := fnv64(fnvOffset, m.CallID())
	h = fnv64(h, m.TopVia().Branch)
	h = mix(h ^ uint64(num))
	if h == 0 {
		h = 1
	}
	return h
}

// toTag computes the To tag of our responses to m: a function of the
// Call-ID and From, so every response of a dialog carries the same tag
// without any state.
func (w *uasWorker) toTag(m *parser.Message) []byte {
	h := fnv64(fnvOffset, m.CallID())
	if f, ok := m.Find(parser.KindFrom); ok {
		h = fnv64(h, f.Value)
	}
	h = mix(h)
	w.tag = append(w.tag[:0], "vl"...)
	w.tag = strconv.AppendUint(w.tag, h&0xffffffffff, 36)
	return w.tag
}

// parse parses request b into m and makes it the current request.
func (w *uasWorker) parse(b []byte, m *parser.Message) error {
	w.cur = nil
	if err := parser.Parse(b, m); err != nil {
		return err
	}
	w.cur = m
	to, err := m.To()
	w.curHas = err == nil && to.Tag != nil
	w.curTagOK = false
	return nil
}

// ourTag returns the To tag for responses to the current request m.
func (w *uasWorker) ourTag(m *parser.Message) []byte {
	if w.cur != m || !w.curTagOK {
		w.toTag(m)
		w.curTagOK = w.cur == m
	}
	return w.tag
}

// ---- handling ----

// handle answers one datagram from the given address.
func (w *uasWorker) handle(b []byte, from netip.AddrPort) {
	w.st.inc(uReceived)
	m := &w.msg
	if err := w.parse(b, m); err != nil {
		w.st.inc(uParseErr)
		return
	}
	if !m.IsRequest() {
		w.st.inc(uResponses)
		return
	}
	w.st.inc(uRequests)
	method := m.MethodID()
	switch method {
	case parser.MethodINVITE:
		w.st.inc(uInvite)
	case parser.MethodACK:
		w.st.inc(uAck)
		return // never answered
	case parser.MethodBYE:
		w.st.inc(uBye)
	case parser.MethodCANCEL:
		w.st.inc(uCancel)
		w.onCancel(m, from)
		return
	case parser.MethodOPTIONS:
		w.st.inc(uOptions)
	case parser.MethodREGISTER:
		w.st.inc(uRegister)
	default:
		w.st.inc(uOtherReq)
	}
	v := vAnswer
	if !w.curHas {
		v = w.verdict(m)
	}
	if v == vDrop {
		w.st.inc(uDropped)
		return
	}
	delay := w.s.cfg.Delay > 0
	if method == parser.MethodINVITE {
		var key uint64
		if delay {
			key = txKey(m)
			sh := &w.s.cancels.shards[w.s.cancels.shard(key)]
			sh.mu.Lock()
			_, waiting := sh.m[key]
			sh.mu.Unlock()
			if waiting {
				// A retransmission of an INVITE we are holding: repeat
				// the provisional responses only.
				w.respond(m, from, 100)
				w.respond(m, from, 180)
				return
			}
		}
		w.respond(m, from, 100)
		if v == vAnswer {
			w.respond(m, from, 180)
		}
		if delay {
			w.enqueue(b, from, key)
			return
		}
	} else if delay {
		w.enqueue(b, from, 0)
		return
	}
	w.final(m, from, v)
}

// final sends the final response to request m.
func (w *uasWorker) final(m *parser.Message, from netip.AddrPort, v verdict) {
	if v == vFail {
		w.st.inc(uFailed)
		w.respond(m, from, w.s.cfg.FailCode)
		return
	}
	switch m.MethodID() {
	case parser.MethodOther:
		w.respond(m, from, 501)
	default:
		w.respond(m, from, 200)
	}
}

// onCancel answers a CANCEL: 200 for the CANCEL and, if its INVITE is
// still waiting in a delay queue, 487 for the INVITE.
func (w *uasWorker) onCancel(m *parser.Message, from netip.AddrPort) {
	w.respond(m, from, 200)
	if w.s.cfg.Delay <= 0 {
		return
	}
	key := txKey(m)
	sh := &w.s.cancels.shards[w.s.cancels.shard(key)]
	sh.mu.Lock()
	p, ok := sh.m[key]
	if ok {
		delete(sh.m, key)
		p.canceled = true
		// The owner cannot recycle p before taking this lock, so its
		// request bytes are stable while we build the 487.
		if w.parse(p.buf, &w.dmsg) == nil {
			w.st.inc(uCanceled)
			w.respond(&w.dmsg, p.from, 487)
		}
	}
	sh.mu.Unlock()
}

// enqueue keeps a copy of request b for its final response after Delay.
func (w *uasWorker) enqueue(b []byte, from netip.AddrPort, key uint64) {
	var p *pending
	if n := len(w.pfree); n > 0 {
		p = w.pfree[n-1]
		w.pfree = w.pfree[:n-1]
	} else {
		p = new(pending)
	}
	p.due = w.now + int64(w.s.cfg.Delay)
	p.from = from
	p.buf = append(p.buf[:0], b...)
	p.key = key
	p.canceled = false
	if w.qLen == len(w.q) {
		// Grow the ring (only while the queue is longer than ever).
		nq := make([]*pending, max(64, 2*len(w.q)))
		for i := 0; i < w.qLen; i++ {
			nq[i] = w.q[(w.qHead+i)%len(w.q)]
		}
		w.q, w.qHead = nq, 0
	}
	w.q[(w.qHead+w.qLen)%len(w.q)] = p
	w.qLen++
	w.st.inc(uDelayed)
	if key != 0 {
		sh := &w.s.cancels.shards[w.s.cancels.shard(key)]
		sh.mu.Lock()
		sh.m[key] = p
		sh.mu.Unlock()
	}
}

// fireDue sends the final responses whose delay has passed.
func (w *uasWorker) fireDue() {
	for w.qLen > 0 {
		p := w.q[w.qHead]
		if p.due > w.now {
			return
		}
		w.q[w.qHead] = nil
		w.qHead = (w.qHead + 1) % len(w.q)
		w.qLen--
		canceled := false
		if p.key != 0 {
			sh := &w.s.cancels.shards[w.s.cancels.shard(p.key)]
			sh.mu.Lock()
			canceled = p.canceled
			if !canceled {
				delete(sh.m, p.key)
			}
			sh.mu.Unlock()
		}
		if !canceled && w.parse(p.buf, &w.dmsg) == nil {
			v := vAnswer
			if !w.curHas {
				v = w.verdict(&w.dmsg)
			}
			w.final(&w.dmsg, p.from, v)
		}
		w.pfree = append(w.pfree, p)
	}
}

// reason returns the reason phrase for a status code.
func reason(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 183:
		return "Session Progress"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	}
	switch code / 100 {
	case 1:
		return "Progress"
	case 2:
		return "OK"
	case 3:
		return "Redirect"
	case 4:
		return "Client Error"
	case 5:
		return "Server Error"
	}
	return "Failure"
}

// respond builds and queues the response with the given code to request m.
func (w *uasWorker) respond(m *parser.Message, to netip.AddrPort, code int) {
	b := w.next()
	b = w.appendResponse(b, m, code)
	w.send(b, to, code)
}

// appendResponse builds the response with the given code to request m:
// Via, From, To (with our tag unless 100 or already tagged), Call-ID and
// CSeq copied from the request in their order, Record-Route too for
// INVITE responses that may create a dialog, plus what the method needs.
func (w *uasWorker) appendResponse(b []byte, m *parser.Message, code int) []byte {
	buf := m.Bytes()
	method := m.MethodID()
	b = append(b, "SIP/2.0 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, reason(code)...)
	b = append(b, "\r\n"...)
	copyRR := method == parser.MethodINVITE && code > 100 && code < 300
	for i, n := 0, m.NumHeaders(); i < n; i++ {
		h := m.Header(i)
		switch h.Kind {
		case parser.KindVia, parser.KindFrom, parser.KindCallID, parser.KindCSeq:
			b = append(b, buf[h.Start:h.End]...)
		case parser.KindRecordRoute:
			if copyRR {
				b = append(b, buf[h.Start:h.End]...)
			}
		case parser.KindTo:
			if code == 100 || (w.cur == m && w.curHas) || (w.cur != m && hasTagParam(h.Value)) {
				b = append(b, buf[h.Start:h.End]...)
				continue
			}
			b = append(b, "To: "...)
			b = append(b, h.Value...)
			b = append(b, ";tag="...)
			b = append(b, w.ourTag(m)...)
			b = append(b, "\r\n"...)
		case parser.KindContact, parser.KindExpires:
			if method == parser.MethodREGISTER && code >= 200 && code < 300 {
				b = append(b, buf[h.Start:h.End]...)
			}
		}
	}
	var body []byte
	switch {
	case method == parser.MethodINVITE && code > 100 && code < 300:
		b = append(b, w.contact...)
		if code >= 200 {
			body = w.sdp
			b = append(b, "Content-Type: application/sdp\r\n"...)
		}
	case method == parser.MethodOPTIONS && code >= 200 && code < 300:
		b = append(b, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE\r\nAccept: application/sdp\r\n"...)
	case code == 501:
		b = append(b, "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// hasTagParam reports whether a To value carries a tag parameter, without
// a full parse: the To of an out-of-dialog request rarely has parameters.
func hasTagParam(v []byte) bool {
	var a parser.NameAddr
	if parser.ParseNameAddr(v, &a) != nil {
		return false
	}
	return a.Tag != nil
}
