package capture_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/capture"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/transport"
)

// The cost of capture per forwarded message: a fastpath Worker forwards
// SIPp's INVITE through the capture's Stage, as a transport worker drives
// it, with capture off and with every message sent to a HEP collector.
// cpu-ns/op is the process's CPU time (user and system, every goroutine:
// the sender's sendmmsg included) per forwarded message.

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

func newForwarding(t testing.TB, cp *capture.Capture) *forwarding {
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
func hepCapture(t testing.TB) *capture.Capture {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	cp, err := capture.New(capture.Config{HEP: capture.HEPConfig{Address: pc.LocalAddr().String(), AgentID: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Close)
	return cp
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchForward(b *testing.B, cp *capture.Capture) {
	f := newForwarding(b, cp)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		f.forward()
	}
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	if cp != nil {
		cp.Close() // the last frames out, for the counters
		s := cp.Stats()
		b.ReportMetric(float64(s.Sent)/float64(2*b.N), "sent/msg")
		b.ReportMetric(float64(s.Dropped["ring_full"])/float64(2*b.N), "dropped/msg")
	}
}

// BenchmarkForwardNoCapture: the core alone.
func BenchmarkForwardNoCapture(b *testing.B) { benchForward(b, nil) }

// BenchmarkForwardCaptureOff: the capture's Stage with no collector and no
// trace (what every Viaduct runs).
func BenchmarkForwardCaptureOff(b *testing.B) {
	cp, err := capture.New(capture.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	benchForward(b, cp)
}

// BenchmarkForwardCaptureHEP: every message received and sent captured
// and sent to the collector.
func BenchmarkForwardCaptureHEP(b *testing.B) { benchForward(b, hepCapture(b)) }

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

// BenchmarkForwardCaptureHEPTCP: as BenchmarkForwardCaptureHEP, to a TCP
// collector (a goroutine of this process that reads and discards: its CPU
// is counted too).
func BenchmarkForwardCaptureHEPTCP(b *testing.B) {
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
	cp, err := capture.New(capture.Config{HEP: capture.HEPConfig{Address: ln.Addr().String(), Transport: "tcp"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := cp.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	benchForward(b, cp)
}
