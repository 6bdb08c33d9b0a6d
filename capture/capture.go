// Package capture is Viaduct's capture room: a tap on every transport
// worker (a transport.Stage) copies each message received and each message
// sent, with its addresses and transport as they were on the wire, into a
// bounded ring of that worker's own; a sender goroutine drains the rings
// and sends the messages as HEPv3 frames to a collector (heplify-server,
// Homer) over UDP with sendmmsg, or over TCP. The admin API can arm a
// short-lived trace of one call (by Call-ID, or by a From/To user) whose
// messages it returns as text or as a pcap file.
//
// The tap never waits: when a ring is full the message is not captured
// and the drop is counted, and a collector that is down or slow costs the
// forwarding nothing but those drops. With no collector and no trace
// armed, the tap costs one atomic load per message.
package capture

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/transport"
)

// Record flags (the ring's flags byte).
const (
	flagHEP   = 1 << 0 // send to the collector
	flagTrace = 1 << 1 // belongs to an armed trace
	flagOut   = 1 << 2 // sent by Viaduct (else received)
)

// Directions of a captured message.
const (
	dirIn  = 0
	dirOut = 1
)

// allMethods is the method set of no methods filter.
const allMethods = ^uint64(0)

// flushInterval is how often the sender looks at the rings when no ring
// is a quarter full. It stops looking when a look finds nothing and no
// trace is armed (an idle Viaduct wakes for nothing): the next frame, or
// the next trace armed, wakes it.
const flushInterval = 5 * time.Millisecond

// Capture is the capture of one Viaduct: the taps of its transport
// workers, the sender to the HEP collector and the traces.
type Capture struct {
	log *slog.Logger

	// What goes to the collector, fixed at New.
	hep       bool
	collector netip.AddrPort
	tcp       bool
	agentID   uint32
	authKey   []byte
	methods   uint64 // bit per parser.Method
	dirs      uint8  // bit per direction
	sampleAll bool
	threshold uint64 // a Call-ID's hash below it is sampled
	ringSize  int

	listen atomic.Pointer[[]netip.AddrPort] // local address per listener
	taps   atomic.Pointer[[]*tap]           // copy on write, under mu
	mu     sync.Mutex

	traces *Traces
	sent   senderStats
	wake   chan struct{}
	idle   atomic.Bool // the sender waits for a wake, not ticking
	stop   chan struct{}
	done   chan struct{}
}

// New returns the Capture of cfg (defaults applied and validated here).
func New(cfg Config, logger *slog.Logger) (*Capture, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, config.Prefix("capture", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Capture{log: logger, tcp: cfg.HEP.Transport == "tcp", agentID: cfg.HEP.AgentID, ringSize: cfg.ringSize(),
		wake: make(chan struct{}, 1)}
	if cfg.HEP.Address != "" {
		c.hep = true
		c.collector, _ = cfg.collector()
	}
	c.authKey, _ = cfg.authKey()
	c.methods, _ = cfg.methodSet()
	c.dirs, _ = cfg.directions()
	c.threshold, c.sampleAll = sampleThreshold(*cfg.SampleRate)
	c.traces = newTraces(cfg.Traces)
	c.traces.onArm = c.nudge
	c.taps.Store(&[]*tap{})
	return c, nil
}

// Stage is the capture's transport.Stage: it wraps a transport worker's
// Handler in a tap with a ring of its own.
func (c *Capture) Stage(next transport.Handler, at transport.Position) transport.Handler {
	t := &tap{next: next, c: c, at: at, ring: newRing(c.ringSize), wakeAt: uint64(c.ringSize / 4)}
	c.mu.Lock()
	taps := append(append([]*tap(nil), *c.taps.Load()...), t)
	c.taps.Store(&taps)
	c.mu.Unlock()
	return t
}

// SetListenAddrs gives the local address of each listener (indexed by
// transport.Peer.Listener): fastpath.Engine.ListenAddrs after Start.
// Until it is called, the proxy's side of a captured message is shown as
// the unspecified address, port 0.
func (c *Capture) SetListenAddrs(addrs []netip.AddrPort) {
	a := append([]netip.AddrPort(nil), addrs...)
	c.listen.Store(&a)
}

// Traces returns the per-call traces (the admin API's).
func (c *Capture) Traces() *Traces { return c.traces }

// HEP reports whether messages are sent to a collector, and where.
func (c *Capture) HEP() (netip.AddrPort, bool) { return c.collector, c.hep }

// localAddr returns the address of listener i.
func (c *Capture) localAddr(i int) netip.AddrPort {
	if l := c.listen.Load(); l != nil && i >= 0 && i < len(*l) {
		return (*l)[i]
	}
	return netip.AddrPort{}
}

// wants reports whether a message of direction dir goes to the collector.
func (c *Capture) wants(dir uint8, info *msgInfo) bool {
	if c.dirs&(1<<dir) == 0 || c.methods&(1<<info.method) == 0 {
		return false
	}
	return c.sampleAll || xxhash.Sum64(info.callID) < c.threshold
}

// Sampled reports whether the call with this Call-ID is sent to the
// collector at the sample rate rate (the rule of capture.sample_rate).
func Sampled(callID []byte, rate float64) bool {
	threshold, all := sampleThreshold(rate)
	return all || xxhash.Sum64(callID) < threshold
}

// protoOf returns the IP protocol a transport runs over.
func protoOf(k transport.Kind) uint8 {
	if k == transport.UDP {
		return ProtoUDP
	}
	return ProtoTCP
}

// tap is the Stage of one transport worker. Like every Handler it is
// called by its worker's goroutine alone: it is its ring's only producer.
type tap struct {
	next   transport.Handler
	c      *Capture
	at     transport.Position
	ring   *ring
	wakeAt uint64 // ring fill at which the sender is woken early
	stats  tapStats
}

// Handle implements transport.Handler: it captures msg as received from
// src on its listener, then hands it on.
func (t *tap) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	t.capture(msg, src.Addr, t.c.localAddr(src.Listener), src.Kind, dirIn)
	return t.next.Handle(msg, src, out)
}

// Sent implements transport.Handler: a message the transport handed to
// the kernel (a forwarded message or a local reply) is captured as sent
// from its listener to out.To.
func (t *tap) Sent(out *transport.Outbound, err error) {
	if err == nil {
		t.capture(out.Buf, t.c.localAddr(out.To.Listener), out.To.Addr, out.To.Kind, dirOut)
	}
	t.next.Sent(out, err)
}

// capture puts msg into the ring if the collector or an armed trace wants
// it.
func (t *tap) capture(msg []byte, src, dst netip.AddrPort, kind transport.Kind, dir uint8) {
	c := t.c
	armed := c.traces.armed.Load()
	if !c.hep && armed == nil {
		return
	}
	var info msgInfo
	scanMessage(msg, &info, armed != nil || c.methods != allMethods)
	var flags uint8
	if c.hep && c.wants(dir, &info) {
		flags |= flagHEP
	}
	if armed != nil && armed.match(&info) {
		flags |= flagTrace
	}
	if flags == 0 {
		return
	}
	if dir == dirOut {
		flags |= flagOut
	}
	if !kind.Valid() {
		kind = t.at.Kind // the worker's own transport
	}
	now := time.Now()
	f := Frame{Src: src, Dst: dst, Proto: protoOf(kind), Sec: uint32(now.Unix()), Usec: uint32(now.Nanosecond() / 1000),
		AgentID: c.agentID, AuthKey: c.authKey, Payload: msg, CallID: info.callID}
	t.put(&f, flags)
}

// put encodes f into the ring, or counts why it cannot.
func (t *tap) put(f *Frame, flags uint8) {
	n := f.Size()
	if n > MaxFrame {
		t.stats.drop(dropTooLarge, len(f.Payload))
		return
	}
	b := t.ring.reserve(n)
	if b == nil {
		t.stats.drop(dropRingFull, len(f.Payload))
		return
	}
	f.Encode(b)
	t.ring.commit(n, flags)
	t.stats.capturedBytes.Add(uint64(len(f.Payload)))
	t.stats.captured.Add(1)
	if t.ring.used() >= t.wakeAt || t.c.idle.Load() {
		t.c.nudge()
	}
}

// nudge wakes the sender, unless it is awake already.
func (c *Capture) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
