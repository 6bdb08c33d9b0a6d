package capture

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// The cost of capture per forwarded message: a fastpath Worker forwards
// SIPp's INVITE through the capture's Stage, as a transport worker drives
// it, and sends the output with sendmmsg; with capture off, and with
// every message received and sent going to a HEP collector, the sender's
// work done on the same thread. cpu-ns/op is that thread's CPU time (user
// and system) per forwarded message.

var sippInvite = strings.ReplaceAll(`INVITE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1234-1-0
From: sipp <sip:sipp@127.0.0.1:5070>;tag=1234SIPpTag001
To: service <sip:service@127.0.0.1:5060>
Call-ID: 1-1234@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5070
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
Content-Length:   129

v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`, "\n", "\r\n")

var (
	proxyAddr = netip.MustParseAddrPort("127.0.0.1:5060")
	sippAddr  = netip.MustParseAddrPort("127.0.0.1:5070")
)

// core is a fastpath Worker as a transport drives it.
type core struct {
	w   *fastpath.Worker
	out fastpath.Output
}

func (h *core) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	h.out.Buf = out.Buf
	a := h.w.Handle(msg, src, &h.out)
	out.Buf, out.To = h.out.Buf, h.out.Peer()
	return a == fastpath.ActionForward || a == fastpath.ActionReply
}

func (h *core) Sent(*transport.Outbound, error) {}

// forwarding is one worker's Handler (the core, or the core behind the
// capture's Stage) and its buffers.
type forwarding struct {
	h   transport.Handler
	in  []byte
	out transport.Outbound
	buf []byte
	src transport.Peer
}

func newForwarding(t testing.TB, cp *Capture) *forwarding {
	e, err := fastpath.New(fastpath.Config{Listen: []netip.AddrPort{proxyAddr},
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5071")}, Secret: []byte("capture-bench-secret-0123456789")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var h transport.Handler = &core{w: e.NewWorker()}
	if cp != nil {
		h = cp.Stage(h, transport.Position{Kind: transport.UDP})
		cp.SetListenAddrs([]netip.AddrPort{proxyAddr})
	}
	f := &forwarding{h: h, in: []byte(sippInvite), buf: make([]byte, 0, e.OutputBufferSize()), src: transport.Peer{Addr: sippAddr, Kind: transport.UDP}}
	if !f.forward() {
		t.Fatal("the INVITE is not forwarded")
	}
	return f
}

// forward handles the INVITE and reports the send, as a transport worker.
func (f *forwarding) forward() bool {
	f.out.Buf = f.buf
	if !f.h.Handle(f.in, f.src, &f.out) {
		return false
	}
	f.h.Sent(&f.out, nil)
	return true
}

// hepCapture starts a capture sending every message to a UDP collector
// that reads nothing (the kernel drops what overflows its buffer; the
// sends succeed).
func hepCapture(t testing.TB) *Capture {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	cp, err := New(Config{HEP: HEPConfig{Address: pc.LocalAddr().String(), AgentID: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Close)
	return cp
}

// upstreamSink is where the benchmarks send the forwarded messages, with
// sendmmsg in batches of 32 as a transport worker does.
type upstreamSink struct {
	conn  *udp.Conn
	batch *udp.Batch
	bufs  [][]byte
	n     int
	to    netip.AddrPort
}

func newUpstreamSink(t testing.TB) *upstreamSink {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	conn, err := udp.ListenAddrPort(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), udp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s := &upstreamSink{conn: conn, batch: udp.NewBatch(32, 0), to: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	for range 32 {
		s.bufs = append(s.bufs, make([]byte, 0, 20000))
	}
	return s
}

// send queues a copy of b and sends the batch when it is full.
func (s *upstreamSink) send(b []byte) {
	s.bufs[s.n] = append(s.bufs[s.n][:0], b...)
	s.batch.Msgs[s.n].SetData(s.bufs[s.n], s.to)
	if s.n++; s.n == 32 {
		s.conn.WriteBatch(s.batch, s.n)
		s.n = 0
	}
}

// benchForward measures forwarding the INVITE (the core, and a sendmmsg
// of the output in batches of 32) through cp's Stage, with the sender's
// work done on the same thread every 32 messages when out is set: no
// ring overflows, and cpu-ns/op (the thread's CPU per forwarded message,
// the kernel's included) is the whole cost of full capture.
func benchForward(b *testing.B, cp *Capture, out output) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f := newForwarding(b, cp)
	sink := newUpstreamSink(b)
	var d *drainer
	if out != nil {
		d = &drainer{c: cp, out: out, frames: make([][]byte, 0, sendBatch)}
	}
	b.ReportAllocs()
	i := 0
	cpu := testenv.ThreadCPU(b)
	for b.Loop() {
		f.forward()
		sink.send(f.out.Buf)
		if i++; d != nil && i%128 == 0 {
			d.drainAll()
		}
	}
	b.ReportMetric(float64(testenv.ThreadCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
	if cp != nil {
		s := cp.Stats()
		b.ReportMetric(float64(s.Dropped["ring_full"]), "ring-drops")
		if d != nil && s.Sent == 0 {
			b.Fatal("nothing sent to the collector")
		}
	}
}

// BenchmarkForwardNoCapture: the core alone.
func BenchmarkForwardNoCapture(b *testing.B) { benchForward(b, nil, nil) }

// BenchmarkForwardCaptureOff: the capture's Stage with no collector and no
// trace (what every Viaduct runs).
func BenchmarkForwardCaptureOff(b *testing.B) {
	cp, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchForward(b, cp, nil)
}

// BenchmarkForwardCaptureUDP: every message received and sent captured
// and sent to a UDP collector on loopback (the kernel's delivery to the
// collector's socket is charged to this thread too; a remote collector
// costs less).
func BenchmarkForwardCaptureUDP(b *testing.B) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pc.Close() })
	benchForwardHEP(b, Config{HEP: HEPConfig{Address: pc.LocalAddr().String()}})
}

// BenchmarkForwardCaptureTCP: the same to a TCP collector on loopback,
// read and discarded by another goroutine (on another thread: not
// counted).
func BenchmarkForwardCaptureTCP(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 1<<20)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	benchForwardHEP(b, Config{HEP: HEPConfig{Address: ln.Addr().String(), Transport: "tcp"}})
}

// BenchmarkForwardCaptureNoSend: full capture with the sender draining
// the rings but handing the frames to no socket: what capture costs
// besides the kernel's work of sending to the collector.
func BenchmarkForwardCaptureNoSend(b *testing.B) {
	cp, err := New(Config{HEP: HEPConfig{Address: "127.0.0.1:9"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchForward(b, cp, discard{})
}

// discard is an output that sends nothing.
type discard struct{}

func (discard) send(frames [][]byte) (int, error) { return len(frames), nil }
func (discard) close()                            {}

// benchForwardHEP is benchForward with full capture to cfg's collector.
func benchForwardHEP(b *testing.B, cfg Config) {
	cp, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	out, err := cp.openOutput(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer out.close()
	benchForward(b, cp, out)
}

// Forwarding with full capture allocates nothing per message in steady
// state, the sender's work included.
func TestForwardWithCaptureAllocatesNothing(t *testing.T) {
	cp := hepCapture(t)
	f := newForwarding(t, cp)
	for range 1000 { // warm up: the sender's first batches
		f.forward()
	}
	allocs := testing.AllocsPerRun(2000, func() { f.forward() })
	// The sender runs meanwhile on its own goroutine; AllocsPerRun counts
	// every goroutine's allocations.
	if allocs != 0 {
		t.Errorf("%v allocations per forwarded message with capture on", allocs)
	}
	if cp.Stats().Captured == 0 {
		t.Error("nothing captured")
	}
}

// The core's local replies are outputs like any other: a 483 for an
// INVITE with Max-Forwards 0 is captured as sent from the listener to the
// client, after the INVITE received.
func TestLocalReplyCaptured(t *testing.T) {
	cp, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarding(t, cp)
	info, err := cp.Traces().Arm(TraceSpec{CallID: "1-1234@127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.in = []byte(strings.Replace(sippInvite, "Max-Forwards: 70", "Max-Forwards: 0", 1))
	if !f.forward() {
		t.Fatal("no reply to Max-Forwards 0")
	}
	cp.Close()
	_, msgs, _ := cp.Traces().Get(info.ID)
	if len(msgs) != 2 {
		t.Fatalf("%d messages traced, want the INVITE and its 483", len(msgs))
	}
	r := msgs[1]
	if !r.Out || r.Src != proxyAddr || r.Dst != sippAddr || !strings.HasPrefix(string(r.Payload), "SIP/2.0 483 ") {
		t.Errorf("reply traced as %v -> %v out=%v: %.40q", r.Src, r.Dst, r.Out, r.Payload)
	}
}
