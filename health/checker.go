package health

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Transport originates the probes: it sends them from Viaduct's own
// listener, so that the replies come back through the fast path, which hands
// them to Checker.HandleResponse. *fastpath.Engine satisfies it.
type Transport interface {
	// AppendViaOver appends a complete Via header line ("Via: ...\r\n")
	// for a request Viaduct originates to `to` over kind (the target's
	// transport); key distinguishes transactions and ends up in the
	// branch.
	AppendViaOver(dst []byte, to netip.AddrPort, kind transport.Kind, key uint64) []byte
	// SendOver sends one such request to `to` over kind, from the listener
	// AppendViaOver named.
	SendOver(b []byte, to netip.AddrPort, kind transport.Kind) error
}

// StateSink receives the health and admin state of every target, by ID.
// *balancer.Pool satisfies it: each call publishes a new table when the
// state changed and is a no-op otherwise. A sink that also has
// SetAllDown(balancer.AllDown) error is given Config.AllDown, and one that
// has Table() *balancer.Table is read after every change to log when
// every upstream is down (panic mode) and when that ends.
type StateSink interface {
	SetHealth(id string, h balancer.Health) error
	SetAdmin(id string, a balancer.AdminState) error
}

// Target is one upstream to watch.
type Target struct {
	// ID is the target's identity, as in the balancer. Empty means
	// balancer.DefaultID(Transport, Addr).
	ID string
	// Addr is where probes go, and the source address the passive 503
	// check recognises the target's responses by.
	Addr netip.AddrPort
	// Transport is the target's transport; probes are sent over UDP, so
	// anything but "" or "udp" requires NeverProbe.
	Transport string
	// Admin is the target's admin state when the Checker is created, or
	// when it first appears in an Update. Afterwards only SetAdmin changes
	// it: an Update keeps the admin state of a target that remains.
	Admin balancer.AdminState
	// Settings overrides the pool's settings for this target.
	Settings Settings
}

// Config is the health configuration of one pool: its default settings,
// its targets, and what the pool does when they are all down.
type Config struct {
	Settings Settings
	Targets  []Target
	// AllDown is handed to a sink that takes it (*balancer.Pool does,
	// with SetAllDown) at Start and at every Update. Default
	// balancer.AllDownForward: panic mode.
	AllDown balancer.AllDown
}

// T1 and T2 are RFC 3261's timer values for the retransmission of a probe
// over UDP (17.1.2.2): first after T1, then doubling up to T2.
const (
	T1 = 500 * time.Millisecond
	T2 = 4 * time.Second
)

// ewmaShift sets the weight of a new RTT sample in the average: 1/8, as
// TCP's smoothed RTT (RFC 6298).
const ewmaShift = 3

// Status is a snapshot of one target's state.
type Status struct {
	ID   string
	Addr netip.AddrPort
	// Probe is the target's effective configuration.
	Probe Probe
	// Health and HealthReason: the current health and why it is what it
	// is ("initial" until the first change), since HealthSince.
	Health       balancer.Health
	HealthReason string
	HealthSince  time.Time
	// Admin is the admin state, set since AdminSince (the Checker's
	// creation until the first change).
	Admin      balancer.AdminState
	AdminSince time.Time
	// ConsecutiveFailures and ConsecutiveSuccesses are the current runs of
	// probe results.
	ConsecutiveFailures  int
	ConsecutiveSuccesses int
	// LastProbe is when the last check round finished (zero before the
	// first), LastResult how ("reply 200 OK", "timeout", "traffic", ...),
	// LastCode the probe's response code (0 when there was none).
	LastProbe  time.Time
	LastResult string
	LastCode   int
	// RTT is the round-trip time of the last probe answered without
	// retransmission and RTTAvg an exponentially weighted average of those
	// (weight 1/8 for each new sample). Zero before the first sample.
	RTT    time.Duration
	RTTAvg time.Duration
	// RTTHist counts every RTT sample (the same samples as RTT) in fixed
	// buckets, for a metrics histogram.
	RTTHist RTTHistogram
	// Counters since the target was first configured.
	ProbesSent    uint64 // probes sent (retransmissions not counted)
	ProbesOK      uint64 // answered with an accepted code
	ProbeTimeouts uint64 // no final response within the timeout
	ProbeBadCode  uint64 // answered with a code not accepted
	SendErrors    uint64 // the transport refused to send
	Passive503    uint64 // passive 503 bursts detected
	// TrafficOK counts the check rounds passed by the target's own
	// responses to forwarded requests (evidence of life), whether a probe
	// was sent in the round or not.
	TrafficOK uint64
}

// Checker probes the targets of one pool, turns probe results and passive
// 503 bursts into health states, keeps the targets' admin states, and sends
// both to a StateSink. Create it with New, start it with Start after the
// transport is running, stop it with Close. All methods are safe for
// concurrent use; HandleResponse and ObserveResponse are meant for the fast
// path's workers and never block.
type Checker struct {
	tr     Transport
	sink   StateSink
	log    *slog.Logger
	prefix []byte // Call-ID prefix of this checker's probes, "vdp-<hex>-"
	tag    string // From tag prefix
	base   time.Time

	replies  chan reply
	trips    chan *passiveSlot
	wake     chan struct{}
	observed atomic.Pointer[addrIndex]
	// dropped counts replies HandleResponse could not queue.
	dropped atomic.Uint64

	// allDownMu serializes reportAllDown; allDownLast is the state it
	// last logged.
	allDownMu   sync.Mutex
	allDownLast allDownState

	// adminMu serializes SetAdmin, whose sink call is made without mu.
	adminMu sync.Mutex

	mu      sync.Mutex // guards what follows
	targets []*target
	allDown balancer.AllDown
	byID    map[string]*target
	queue   queue
	seq     uint64
	state   int // 0 new, 1 running, 2 closed
	cancel  context.CancelFunc
	done    chan struct{}
	// pending holds health changes decided but not yet given to the sink;
	// the publisher goroutine applies them (woken through pubWake), so a
	// table rebuild never delays the probes.
	pending map[string]balancer.Health
	pubWake chan struct{}
	pubDone chan struct{}
}

// batchSink is implemented by *balancer.Pool: several health changes are
// applied with one table rebuild.
type batchSink interface {
	Batch(fn func(b *balancer.Batch) error) error
}

// target is the Checker's state of one target. Only the checker's
// goroutine and methods holding Checker.mu touch it.
type target struct {
	id    string
	addr  netip.AddrPort
	kind  transport.Kind // the transport probes go over
	probe Probe
	idx   int // index in Checker.targets
	hidx  int // index in the queue, -1 when not queued

	health       balancer.Health
	healthReason string
	healthSince  time.Time
	admin        balancer.AdminState
	adminSince   time.Time
	fails, succs int

	due       time.Time // next event: round, probe, retransmission or timeout
	nextProbe time.Time
	// pending is the seq of the check round in progress (and of its
	// probe), 0 when none; deadline is when the round fails. A round
	// passes on an accepted reply to its probe or on a response to
	// traffic (ev.seen) arriving before the deadline. waitTraffic: the
	// target carried traffic in the previous round, so the probe waits
	// until due (half the timeout) for a response to that traffic, and is
	// sent only if none came.
	pending     uint64
	waitTraffic bool
	roundStart  time.Time
	sentAt      time.Time
	deadline    time.Time
	retransAt   time.Time
	retransGap  time.Duration
	retrans     int
	req         []byte // the outstanding probe, for retransmission

	lastProbe                                           time.Time
	lastResult                                          string
	lastCode                                            int
	rtt, rttAvg                                         time.Duration
	rttHist                                             RTTHistogram
	sent, ok, timeouts, badCode, sendErrs, passiveTrips uint64
	trafficOK                                           uint64
	// hinted: the "may not answer OPTIONS" hint was logged.
	hinted bool

	ev      *evidence    // nil until first probed
	passive *passiveSlot // nil when the passive check is off
}

// reply is what HandleResponse copies out of a response to a probe.
type reply struct {
	idx    uint32
	status uint16
	rlen   uint8
	seq    uint64
	at     time.Time
	reason [32]byte
}

// New validates cfg and returns a Checker that is not yet probing. Errors
// are *FieldError values naming the field ("targets[1].health.timeout")
// or, for duplicate IDs, plain errors. logger may be nil.
func New(cfg Config, tr Transport, sink StateSink, logger *slog.Logger) (*Checker, error) {
	if tr == nil || sink == nil {
		return nil, errors.New("health: New: transport and state sink are required")
	}
	ts, err := resolveTargets(cfg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("health: reading random bytes: %w", err)
	}
	h := hex.EncodeToString(tok[:])
	now := time.Now()
	c := &Checker{
		tr:      tr,
		sink:    sink,
		log:     logger,
		prefix:  []byte("vdp-" + h + "-"),
		tag:     h[:8],
		base:    now,
		replies: make(chan reply, 4096),
		trips:   make(chan *passiveSlot, 1024),
		wake:    make(chan struct{}, 1),
		byID:    make(map[string]*target, len(ts)),
		allDown: cfg.AllDown,
	}
	for i := range ts {
		t := ts[i]
		t.idx = i
		t.hidx = -1
		t.healthReason = "initial"
		t.healthSince = now
		t.adminSince = now
		c.targets = append(c.targets, t)
		c.byID[t.id] = t
	}
	c.publishObserved()
	return c, nil
}

// resolveTargets validates a Config into fresh target states.
func resolveTargets(cfg Config) ([]*target, error) {
	if cfg.AllDown > balancer.AllDownReject {
		return nil, fieldErr("all_down", "invalid %v", cfg.AllDown)
	}
	// The pool's settings must make sense on their own (timeout within
	// the interval), whatever the targets override.
	if _, err := cfg.Settings.Resolve(netip.MustParseAddrPort("192.0.2.1:5060")); err != nil {
		return nil, prefixErr("health", err)
	}
	out := make([]*target, 0, len(cfg.Targets))
	seen := make(map[string]int, len(cfg.Targets))
	for i, ct := range cfg.Targets {
		where := fmt.Sprintf("targets[%d]", i)
		if !ct.Addr.IsValid() || ct.Addr.Port() == 0 {
			return nil, fieldErr(where+".addr", "not a valid ip:port with a non-zero port")
		}
		addr := netip.AddrPortFrom(ct.Addr.Addr().Unmap(), ct.Addr.Port())
		tr := strings.ToLower(ct.Transport)
		if tr == "" {
			tr = transport.UDP.String()
		}
		id := ct.ID
		if id == "" {
			id = balancer.DefaultID(tr, addr)
		}
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("health: %s: duplicate id %q (also targets[%d])", where, id, j)
		}
		seen[id] = i
		if err := ct.Settings.Validate(); err != nil {
			return nil, prefixErr(where+".health", err)
		}
		p, err := cfg.Settings.Merge(ct.Settings).Resolve(addr)
		if err != nil {
			return nil, prefixErr(where+".health", err)
		}
		kind, _ := transport.ParseKind(tr)
		if kind != transport.UDP && kind != transport.TCP && kind != transport.TLS && !p.NeverProbe {
			return nil, fieldErr(where+".health.never_probe", "probes are sent over UDP, TCP or TLS; a %s target must set never_probe", tr)
		}
		if ct.Admin > balancer.Disabled {
			return nil, fieldErr(where+".admin", "invalid %v", ct.Admin)
		}
		out = append(out, &target{id: id, addr: addr, kind: kind, probe: p, admin: ct.Admin})
	}
	return out, nil
}

// Start pushes every target's state to the sink (a no-op for a sink that
// already has them, such as a balancer.Pool built from the same targets;
// an error here means the sink does not know a target) and starts probing.
// The transport must be running: probes sent before it is count as send
// errors.
func (c *Checker) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != 0 {
		return errors.New("health: Start: checker already started")
	}
	for _, t := range c.targets {
		if err := c.sink.SetHealth(t.id, t.health); err != nil {
			return fmt.Errorf("health: Start: %w", err)
		}
		if err := c.sink.SetAdmin(t.id, t.admin); err != nil {
			return fmt.Errorf("health: Start: %w", err)
		}
	}
	if err := c.pushAllDown(); err != nil {
		return fmt.Errorf("health: Start: %w", err)
	}
	defer c.reportAllDown()
	now := time.Now()
	c.scheduleNew(c.targets, now)
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	c.pubWake = make(chan struct{}, 1)
	c.pubDone = make(chan struct{})
	c.state = 1
	go c.loop(ctx)
	go c.publisher(ctx)
	return nil
}

// publisher applies the pending health changes to the sink, coalescing
// those that accumulate while a table is being built.
func (c *Checker) publisher(ctx context.Context) {
	defer close(c.pubDone)
	for {
		select {
		case <-ctx.Done():
			c.flush() // what was decided before Close
			return
		case <-c.pubWake:
			c.flush()
		}
	}
}

// flush gives the pending health changes to the sink: in one batch when it
// can take one, else (or when the batch fails) one by one.
func (c *Checker) flush() {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	c.mu.Unlock()
	if len(p) == 0 {
		return
	}
	defer c.reportAllDown()
	if bs, ok := c.sink.(batchSink); ok && len(p) > 1 {
		err := bs.Batch(func(b *balancer.Batch) error {
			for id, h := range p {
				if err := b.SetHealth(id, h); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			return
		}
	}
	for id, h := range p {
		if err := c.sink.SetHealth(id, h); err != nil {
			c.log.Error("upstream health not applied", "target", id, "health", h.String(), "err", err)
		}
	}
}

// Run starts the checker and blocks until ctx is done, then closes it.
func (c *Checker) Run(ctx context.Context) error {
	if err := c.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return c.Close()
}

// Close stops probing and waits for the checker's goroutine to end. States
// already sent to the sink stay as they are.
func (c *Checker) Close() error {
	c.mu.Lock()
	if c.state != 1 {
		c.state = 2
		c.mu.Unlock()
		return nil
	}
	c.state = 2
	c.cancel()
	done, pubDone := c.done, c.pubDone
	c.mu.Unlock()
	<-done
	<-pubDone
	return nil
}

// scheduleNew spreads the first probes of ts over their intervals: the
// k-th of n targets is first probed k/n of its interval from now.
func (c *Checker) scheduleNew(ts []*target, now time.Time) {
	n := len(ts)
	for k, t := range ts {
		if t.probe.NeverProbe {
			continue
		}
		t.nextProbe = now.Add(t.probe.Interval * time.Duration(k) / time.Duration(n))
		t.due = t.nextProbe
		heap.Push(&c.queue, t)
	}
}

// loop is the checker's goroutine.
func (c *Checker) loop(ctx context.Context) {
	defer close(c.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		now := time.Now()
		c.runDue(now)
		wait := time.Hour
		if len(c.queue) > 0 {
			wait = c.queue[0].due.Sub(now)
		}
		c.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.wake:
		case r := <-c.replies:
			c.mu.Lock()
			c.onReply(&r)
			c.mu.Unlock()
		case s := <-c.trips:
			c.mu.Lock()
			c.onTrip(s)
			c.mu.Unlock()
		}
	}
}

// runDue handles every target whose next event is due.
func (c *Checker) runDue(now time.Time) {
	for len(c.queue) > 0 && !c.queue[0].due.After(now) {
		t := c.queue[0]
		switch {
		case t.pending == 0:
			c.startRound(t, now)
		case t.ev.seen.Load():
			// Its traffic was answered since the round started.
			t.trafficOK++
			c.succeed(t, now, 0, "traffic (a response to a forwarded request)")
		case !now.Before(t.deadline):
			c.timeout(t, now)
		case t.waitTraffic:
			c.send(t, now)
		default:
			c.retransmit(t, now)
		}
		heap.Fix(&c.queue, t.hidx)
	}
}

// startRound starts a check round of t and schedules the next one. The
// round passes if an accepted reply to its probe, or any response (but a
// 503) to t's traffic, arrives within the timeout. A target that carried
// traffic in the previous round gets no probe at once: its traffic is
// likely to be answered first, and the probe goes out only if nothing came
// back within half the timeout. Otherwise the probe is sent now.
func (c *Checker) startRound(t *target, now time.Time) {
	// Keep the schedule's phase; after a long stall, restart from now.
	t.nextProbe = t.nextProbe.Add(t.probe.Interval)
	if t.nextProbe.Before(now) {
		t.nextProbe = now.Add(t.probe.Interval)
	}
	c.seq++
	t.pending = c.seq
	t.roundStart = now
	t.deadline = now.Add(t.probe.Timeout)
	t.waitTraffic = t.ev.seen.Swap(false)
	if t.waitTraffic {
		t.due = now.Add(t.probe.Timeout / 2)
		return
	}
	c.send(t, now)
}

// timeout fails t's round: neither its probe nor its traffic was answered
// within the timeout.
func (c *Checker) timeout(t *target, now time.Time) {
	reason := fmt.Sprintf("probe timeout (no final response within %v)", t.probe.Timeout)
	if t.sentAt.After(t.roundStart) {
		reason = fmt.Sprintf("probe timeout (no response to forwarded requests within %v, nor to the probe sent after half of it)", t.probe.Timeout)
	}
	c.fail(t, now, "timeout", 0, reason)
}

// send builds and sends the probe of t's round.
func (c *Checker) send(t *target, now time.Time) {
	t.waitTraffic = false
	seq := t.pending
	t.req = c.buildProbe(t.req[:0], t, seq)
	t.sent++
	t.sentAt = now
	t.retrans = 0
	t.retransGap = T1
	t.retransAt = now.Add(T1)
	if err := c.tr.SendOver(t.req, t.addr, t.kind); err != nil {
		t.sendErrs++
		c.fail(t, now, "send_error", 0, "probe send error: "+err.Error())
		return
	}
	t.due = earliest(t.retransAt, t.deadline)
}

// retransmit resends the outstanding probe (RFC 3261 17.1.2.2, timer E).
func (c *Checker) retransmit(t *target, now time.Time) {
	t.retrans++
	t.retransGap = min(2*t.retransGap, T2)
	t.retransAt = now.Add(t.retransGap)
	if err := c.tr.SendOver(t.req, t.addr, t.kind); err != nil {
		c.log.Debug("probe retransmission failed", "target", t.id, "addr", t.addr, "err", err)
	}
	t.due = earliest(t.retransAt, t.deadline)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// buildProbe appends the probe request with sequence number seq.
func (c *Checker) buildProbe(b []byte, t *target, seq uint64) []byte {
	p := &t.probe
	cseq := seq & 0x7fffffff
	if cseq == 0 {
		cseq = 1
	}
	b = append(b, p.Method...)
	b = append(b, ' ')
	b = append(b, p.RequestURI...)
	b = append(b, " SIP/2.0\r\n"...)
	b = c.tr.AppendViaOver(b, t.addr, t.kind, seq)
	b = append(b, "Max-Forwards: 70\r\nFrom: <"...)
	b = append(b, p.From...)
	b = append(b, ">;tag="...)
	b = append(b, c.tag...)
	b = appendHex(b, seq)
	b = append(b, "\r\nTo: <"...)
	b = append(b, p.RequestURI...)
	b = append(b, ">\r\nCall-ID: "...)
	b = appendCallID(b, c.prefix, t.idx, seq)
	b = append(b, "\r\nCSeq: "...)
	b = strconv.AppendUint(b, uint64(cseq), 10)
	b = append(b, ' ')
	b = append(b, p.Method...)
	b = append(b, "\r\nUser-Agent: Viaduct health check\r\nContent-Length: 0\r\n\r\n"...)
	return b
}

// appendCallID appends "<prefix><idx hex>-<seq hex>".
func appendCallID(b, prefix []byte, idx int, seq uint64) []byte {
	b = append(b, prefix...)
	b = appendHex(b, uint64(idx))
	b = append(b, '-')
	return appendHex(b, seq)
}

func appendHex(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[v&15]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// parseCallID extracts the target index and sequence number from the
// Call-ID of one of this checker's probes.
func parseCallID(id, prefix []byte) (idx uint64, seq uint64, ok bool) {
	if len(id) <= len(prefix) || string(id[:len(prefix)]) != string(prefix) {
		return 0, 0, false
	}
	rest := id[len(prefix):]
	idx, rest, ok = parseHex(rest)
	if !ok || len(rest) == 0 || rest[0] != '-' {
		return 0, 0, false
	}
	seq, rest, ok = parseHex(rest[1:])
	if !ok || len(rest) != 0 {
		return 0, 0, false
	}
	return idx, seq, true
}

// parseHex parses 1 to 16 lower-case hex digits at the start of b.
func parseHex(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for i < len(b) && i < 17 {
		c := b[i]
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return v, b[i:], i > 0
		}
		i++
	}
	if i > 16 {
		return 0, nil, false
	}
	return v, b[i:], i > 0
}

// HandleResponse takes a response addressed to Viaduct itself, as the fast
// path's local response hook delivers it, and reports whether it answers
// one of this checker's probes (by its Call-ID). It copies what it needs
// out of m (status, reason, arrival time), hands it to the checker's
// goroutine without blocking and retains nothing: m may be reused as soon
// as it returns. Provisional responses are ignored. It does not allocate.
//
// Wire it with:
//
//	engine.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) {
//		checker.HandleResponse(m, from)
//	})
func (c *Checker) HandleResponse(m *parser.Message, from netip.AddrPort) bool {
	if m.IsRequest() {
		return false
	}
	idx, seq, ok := parseCallID(m.CallID(), c.prefix)
	if !ok {
		return false
	}
	code := m.StatusCode()
	if code < 200 || code > 699 {
		return true
	}
	r := reply{idx: uint32(idx), seq: seq, status: uint16(code), at: time.Now()}
	r.rlen = uint8(copy(r.reason[:], m.Reason()))
	select {
	case c.replies <- r:
	default:
		c.dropped.Add(1)
	}
	return true
}

// onReply matches a reply with the outstanding probe of its target.
func (c *Checker) onReply(r *reply) {
	if int(r.idx) >= len(c.targets) {
		return
	}
	t := c.targets[r.idx]
	if t.pending == 0 || t.pending != r.seq || t.waitTraffic {
		return // late (after the timeout), duplicate, or from before a reload
	}
	if t.retrans == 0 {
		rtt := max(r.at.Sub(t.sentAt), 0)
		t.rtt = rtt
		t.rttHist.Observe(rtt)
		if t.rttAvg == 0 {
			t.rttAvg = rtt
		} else {
			t.rttAvg += (rtt - t.rttAvg) >> ewmaShift
		}
	}
	code := int(r.status)
	result := "reply " + fmt.Sprint(code)
	if r.rlen > 0 {
		result += " " + string(r.reason[:r.rlen])
	}
	now := time.Now()
	if t.probe.Accept.Has(code) {
		t.ok++
		c.succeed(t, now, code, result)
	} else {
		c.fail(t, now, "bad_code", code, "probe "+result)
	}
	if t.hidx >= 0 {
		heap.Fix(&c.queue, t.hidx)
	}
}

// finish ends t's round and schedules the next one.
func (c *Checker) finish(t *target, now time.Time, code int, result string) {
	t.pending = 0
	t.waitTraffic = false
	t.lastProbe = now
	t.lastCode = code
	t.lastResult = result
	t.due = t.nextProbe
}

// succeed records a round passed: an accepted reply, or traffic answered.
func (c *Checker) succeed(t *target, now time.Time, code int, result string) {
	c.finish(t, now, code, result)
	t.fails = 0
	t.succs++
	if t.health == balancer.Down && t.succs >= t.probe.Successes {
		c.setHealth(t, balancer.Up, fmt.Sprintf("probe %s (%d consecutive successes)", result, t.succs))
	}
}

// fail records a failed probe: cause is "timeout", "bad_code" or
// "send_error".
func (c *Checker) fail(t *target, now time.Time, cause string, code int, reason string) {
	c.finish(t, now, code, reason)
	switch cause {
	case "timeout":
		t.timeouts++
		c.hintNoOptions(t)
	case "bad_code":
		t.badCode++
	}
	t.succs = 0
	t.fails++
	c.log.Debug("probe failed", "target", t.id, "addr", t.addr, "reason", reason, "consecutive_failures", t.fails)
	if t.health == balancer.Up && t.fails >= t.probe.Failures {
		c.setHealth(t, balancer.Down, fmt.Sprintf("%s (%d consecutive failures)", reason, t.fails))
	}
}

// hintNoOptions logs, once per target, that a target whose probes have
// never been answered may not answer them at all: some servers (SIPp's
// built-in uas scenario, some gateway firmware) ignore OPTIONS. Its
// traffic keeps it up while it has some; never_probe stops the probes.
func (c *Checker) hintNoOptions(t *target) {
	if t.hinted || t.ok > 0 {
		return
	}
	t.hinted = true
	c.log.Warn("upstream did not answer a health probe: if it never answers "+t.probe.Method+
		" (SIPp's uas scenario and some gateways do not), set never_probe for it (upstream_health), or change health.method; its own responses to calls count as probes answered meanwhile",
		"target", t.id, "addr", t.addr, "method", t.probe.Method, "timeout", t.probe.Timeout)
}

// setHealth changes t's health, logs the change and queues it for the
// sink (the publisher applies it at once, off the checker's goroutine).
// Called with c.mu held.
func (c *Checker) setHealth(t *target, h balancer.Health, reason string) {
	prev := t.health
	t.health = h
	t.healthReason = reason
	t.healthSince = time.Now()
	if h == balancer.Up && t.passive != nil {
		t.passive.rearm()
	}
	if c.pending == nil {
		c.pending = make(map[string]balancer.Health)
	}
	c.pending[t.id] = h
	select {
	case c.pubWake <- struct{}{}:
	default: // a flush is already due
	}
	level := slog.LevelInfo
	if h == balancer.Down {
		level = slog.LevelWarn
	}
	c.log.Log(context.Background(), level, "upstream health changed", "target", t.id, "addr", t.addr,
		"health", h.String(), "previous", prev.String(), "reason", reason, "admin", t.admin.String())
}

// SetAdmin sets the admin state of target id, tells the sink and logs the
// change with reason "admin" and by (who asked: "admin API 127.0.0.1:4711",
// "config"). Health is untouched: probes go on whatever the admin state, so
// a target re-enabled after maintenance comes back with its current health.
// An unknown id is an error wrapping balancer.ErrUnknownTarget.
func (c *Checker) SetAdmin(id string, a balancer.AdminState, by string) error {
	if a > balancer.Disabled {
		return fmt.Errorf("set admin state of %q: invalid %v", id, a)
	}
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	c.mu.Lock()
	t, ok := c.byID[id]
	same := ok && t.admin == a
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("set admin state: %w %q", balancer.ErrUnknownTarget, id)
	}
	if same {
		return nil
	}
	// The sink rebuilds its table: not under c.mu, which would hold up
	// the probes.
	if err := c.sink.SetAdmin(id, a); err != nil {
		return fmt.Errorf("set admin state of %q: %w", id, err)
	}
	defer c.reportAllDown()
	c.mu.Lock()
	prev := t.admin
	t.admin = a
	t.adminSince = time.Now()
	h, addr := t.health, t.addr
	c.mu.Unlock()
	c.log.Info("upstream admin state changed", "target", id, "addr", addr, "admin", a.String(),
		"previous", prev.String(), "reason", "admin", "by", by, "health", h.String())
	return nil
}

// Status returns a snapshot of every target, in configuration order.
func (c *Checker) Status() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, len(c.targets))
	for i, t := range c.targets {
		out[i] = t.status()
	}
	return out
}

// StatusOf returns the snapshot of target id.
func (c *Checker) StatusOf(id string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.byID[id]
	if !ok {
		return Status{}, false
	}
	return t.status(), true
}

// AllDown returns the all-down policy in use (Config.AllDown).
func (c *Checker) AllDown() balancer.AllDown {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allDown
}

// DroppedReplies returns the number of probe replies HandleResponse could
// not queue because the checker's goroutine was behind (those probes then
// time out).
func (c *Checker) DroppedReplies() uint64 { return c.dropped.Load() }

func (t *target) status() Status {
	return Status{
		ID: t.id, Addr: t.addr, Probe: t.probe,
		Health: t.health, HealthReason: t.healthReason, HealthSince: t.healthSince,
		Admin: t.admin, AdminSince: t.adminSince,
		ConsecutiveFailures: t.fails, ConsecutiveSuccesses: t.succs,
		LastProbe: t.lastProbe, LastResult: t.lastResult, LastCode: t.lastCode,
		RTT: t.rtt, RTTAvg: t.rttAvg, RTTHist: t.rttHist,
		ProbesSent: t.sent, ProbesOK: t.ok, ProbeTimeouts: t.timeouts, ProbeBadCode: t.badCode,
		SendErrors: t.sendErrs, Passive503: t.passiveTrips, TrafficOK: t.trafficOK,
	}
}

// Update replaces the configuration (a reload). Targets that remain, by ID,
// keep their health, admin state, counters and RTT; their probe settings
// and address come from cfg (an outstanding probe to a changed address is
// abandoned). New targets start up, with the admin state cfg gives them,
// their first probes spread over their interval. Removed targets are no
// longer probed. Update the sink (balancer.Pool.Update) first, with the
// same targets: the states of new targets are pushed to it, and an Update
// naming a target the sink does not know fails. cfg.AllDown replaces the
// all-down policy, in the sink too. On a validation error nothing changes.
func (c *Checker) Update(cfg Config) error {
	ts, err := resolveTargets(cfg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.reportAllDown()
	if c.state == 1 {
		// New targets' states reach the sink now (Start does it for the
		// first configuration); a sink that lacks one refuses the update.
		for _, nt := range ts {
			if _, ok := c.byID[nt.id]; ok {
				continue
			}
			if err := c.sink.SetHealth(nt.id, nt.health); err != nil {
				return fmt.Errorf("health: Update: %w", err)
			}
			if err := c.sink.SetAdmin(nt.id, nt.admin); err != nil {
				return fmt.Errorf("health: Update: %w", err)
			}
		}
	}
	c.allDown = cfg.AllDown
	if c.state == 1 {
		if err := c.pushAllDown(); err != nil {
			return fmt.Errorf("health: Update: %w", err)
		}
	}
	now := time.Now()
	var fresh []*target
	next := make([]*target, len(ts))
	byID := make(map[string]*target, len(ts))
	for i, nt := range ts {
		old, ok := c.byID[nt.id]
		if !ok {
			nt.hidx = -1
			nt.healthReason = "initial"
			nt.healthSince = now
			nt.adminSince = now
			fresh = append(fresh, nt)
			old = nt
		} else {
			if old.addr != nt.addr {
				old.pending, old.waitTraffic = 0, false
			}
			old.addr, old.kind = nt.addr, nt.kind
			wasNever := old.probe.NeverProbe
			old.probe = nt.probe
			switch {
			case old.probe.NeverProbe:
				old.pending, old.waitTraffic = 0, false
				if old.health == balancer.Down {
					// Nothing would ever bring it back.
					c.setHealth(old, balancer.Up, "never_probe set by a reload")
				}
			case wasNever:
				fresh = append(fresh, old)
			case old.pending == 0:
				// Do not wait longer than the new interval.
				old.nextProbe = earliest(old.nextProbe, now.Add(old.probe.Interval))
				old.due = old.nextProbe
			}
		}
		old.idx = i
		next[i] = old
		byID[old.id] = old
	}
	// Rebuild the queue from the surviving probed targets, then add the
	// new ones with their first probes spread. Before Start nothing is
	// queued: Start schedules every target.
	for _, t := range c.targets {
		t.hidx = -1
	}
	c.queue = c.queue[:0]
	c.targets = next
	c.byID = byID
	if c.state == 1 {
		isFresh := make(map[*target]bool, len(fresh))
		for _, t := range fresh {
			isFresh[t] = true
		}
		for _, t := range next {
			t.hidx = -1
			if !t.probe.NeverProbe && !isFresh[t] {
				heap.Push(&c.queue, t)
			}
		}
		c.scheduleNew(fresh, now)
	}
	c.publishObserved()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// queue is a min-heap of targets by due time.
type queue []*target

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].hidx = i
	q[j].hidx = j
}
func (q *queue) Push(x any) {
	t := x.(*target)
	t.hidx = len(*q)
	*q = append(*q, t)
}
func (q *queue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.hidx = -1
	*q = old[:len(old)-1]
	return t
}
