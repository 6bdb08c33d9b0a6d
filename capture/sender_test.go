package capture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// startCapture starts the sender of a Capture of cfg with one tap; the
// test closes it.
func startCapture(t *testing.T, cfg Config) (*Capture, *tap) {
	t.Helper()
	c, tp, _ := newTestCapture(t, cfg)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, tp
}

func TestSenderUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// Room for every frame even if the reader is slow (the default
	// receive buffer holds about 170 of them).
	if err := pc.(*net.UDPConn).SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	cfg := hepConfig()
	cfg.HEP.Address = pc.LocalAddr().String()
	c, tp := startCapture(t, cfg)
	const calls = 150 // 300 frames: several sendmmsg batches
	frames := make(chan []byte, 2*calls)
	go func() { // read while the sender sends: the socket's buffer is small
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				close(frames)
				return
			}
			frames <- bytes.Clone(buf[:n])
		}
	}()
	for i := range calls {
		pass(tp, invite(fmt.Sprintf("udp-%d", i), "a"), transport.UDP)
	}
	timeout := time.After(10 * time.Second)
	for i := range 2 * calls {
		var b []byte
		select {
		case b = <-frames:
		case <-timeout:
			t.Fatalf("frame %d: timed out (stats %+v)", i, c.Stats())
		}
		var f Frame
		if m, err := Decode(b, &f); err != nil || m != len(b) {
			t.Fatalf("frame %d: %d of %d bytes, %v", i, m, len(b), err)
		}
		if want := fmt.Sprintf("udp-%d", i/2); string(f.CallID) != want {
			t.Fatalf("frame %d: Call-ID %q, want %q (in order)", i, f.CallID, want)
		}
	}
	testenv.WaitFor(t, "the sent counter", 10*time.Second, func() bool { return c.Stats().Sent == 2*calls })
	if s := c.Stats(); s.SentBytes == 0 || s.CollectorErrors != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestSenderTCP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := hepConfig()
	cfg.HEP.Address, cfg.HEP.Transport = ln.Addr().String(), "tcp"
	_, tp := startCapture(t, cfg)
	const calls = 50
	for i := range calls {
		pass(tp, invite(fmt.Sprintf("tcp-%d", i), "a"), transport.UDP)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var stream []byte
	buf := make([]byte, 65536)
	for got := 0; got < 2*calls; {
		n, err := conn.Read(buf)
		if err != nil && err != io.EOF {
			t.Fatalf("after %d frames: %v", got, err)
		}
		stream = append(stream, buf[:n]...)
		for {
			var f Frame
			m, err := Decode(stream, &f)
			if err != nil {
				break // a frame's rest is still to come
			}
			if want := fmt.Sprintf("tcp-%d", got/2); string(f.CallID) != want {
				t.Fatalf("frame %d: Call-ID %q, want %q", got, f.CallID, want)
			}
			stream, got = stream[m:], got+1
		}
	}
	if len(stream) != 0 {
		t.Errorf("%d bytes after the last frame", len(stream))
	}
}

// A collector that is down costs the forwarding nothing: every message is
// forwarded, the frames that cannot be delivered are counted.
func TestSenderCollectorDown(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := hepConfig()
	cfg.HEP.Address, cfg.HEP.Transport = addr, "tcp"
	c, tp := startCapture(t, cfg)
	fw := tp.next.(*forwarder)
	const n = 2000
	for i := range n {
		pass(tp, invite(fmt.Sprintf("down-%d", i), "a"), transport.UDP)
	}
	if fw.sent != n {
		t.Fatalf("forwarded %d of %d", fw.sent, n)
	}
	testenv.WaitFor(t, "every frame accounted for", 10*time.Second, func() bool {
		s := c.Stats()
		return s.Captured+s.Dropped["ring_full"] == 2*n && s.Dropped["collector"] == s.Captured
	})
	if s := c.Stats(); s.CollectorErrors == 0 || s.Sent != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	neg, two := -0.1, 2.0
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{HEP: HEPConfig{Address: "collector:9060"}}, "capture.hep.address"},
		{Config{HEP: HEPConfig{Address: "0.0.0.0:9060"}}, "capture.hep.address"},
		{Config{HEP: HEPConfig{Address: "10.0.0.5:9060", Transport: "sctp"}}, "capture.hep.transport"},
		{Config{HEP: HEPConfig{Address: "10.0.0.5:9060", AuthKeyFile: "/nonexistent/key"}}, "capture.hep.auth_key_file"},
		{Config{Methods: []string{"INVITE", "invite"}}, "capture.methods[1]"},
		{Config{Direction: "sideways"}, "capture.direction"},
		{Config{SampleRate: &neg}, "capture.sample_rate"},
		{Config{SampleRate: &two}, "capture.sample_rate"},
		{Config{RingSize: 1000}, "capture.ring_size"},
		{Config{Traces: TraceLimits{MaxActive: 1000}}, "capture.traces.max_active"},
		{Config{Traces: TraceLimits{MaxMessages: -1}}, "capture.traces.max_messages"},
		{Config{Traces: TraceLimits{MaxDuration: time.Millisecond}}, "capture.traces.max_duration"},
	} {
		_, err := New(tc.cfg, nil)
		if err == nil || !bytes.HasPrefix([]byte(err.Error()), []byte(tc.field+": ")) {
			t.Errorf("%+v: %v, want an error about %s", tc.cfg, err, tc.field)
		}
	}
	c, err := New(Config{RingSize: 100000}, nil)
	if err != nil || c.ringSize != 131072 {
		t.Errorf("ring_size 100000: %v, ring %d", err, c.ringSize)
	}
	if _, hep := c.HEP(); hep {
		t.Error("HEP on without an address")
	}
}

// A collector that accepts the connection and never reads: once the TCP
// buffers are full the sender waits, the ring fills, and the tap drops
// and counts while every message is still forwarded.
func TestSenderCollectorStuck(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the kernel accepts; nobody reads
	cfg := hepConfig()
	cfg.HEP.Address, cfg.HEP.Transport, cfg.RingSize = ln.Addr().String(), "tcp", MinRingSize
	c, tp := startCapture(t, cfg)
	fw := tp.next.(*forwarder)
	msg := bytes.Repeat([]byte("x"), 4000) // ~4 KB frames: 64 MB in all, more than loopback TCP buffers hold
	msg = append(invite("stuck", "a"), msg...)
	const n = 8000
	for range n {
		pass(tp, msg, transport.UDP)
	}
	if fw.sent != n {
		t.Fatalf("forwarded %d of %d", fw.sent, n)
	}
	if s := c.Stats(); s.Dropped["ring_full"] == 0 {
		t.Errorf("no ring_full drops with a stuck collector: %+v", s)
	}
}

// An IPv6 collector gets frames from an IPv6 socket.
func TestSenderUDPIPv6(t *testing.T) {
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer pc.Close()
	cfg := hepConfig()
	cfg.HEP.Address = pc.LocalAddr().String()
	_, tp := startCapture(t, cfg)
	pass(tp, invite("v6", "a"), transport.UDP)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if _, err := Decode(buf[:n], &f); err != nil || string(f.CallID) != "v6" {
		t.Errorf("frame: %v %q", err, f.CallID)
	}
}

// Messages captured by several workers leave in the order they were
// captured, not ring by ring.
func TestSenderMergesRingsByTime(t *testing.T) {
	pc, cfg := udpCollector(t)
	c, a, _ := newTestCapture(t, cfg)
	b := c.Stage(&forwarder{}, transport.Position{Kind: transport.UDP, Worker: 1}).(*tap)
	order := []*tap{a, b, a, b, a}
	for i, tp := range order {
		tp.capture(invite(fmt.Sprintf("order-%d", i), "a"), clientAddr, listenAddr, transport.UDP, dirIn)
		time.Sleep(2 * time.Microsecond) // distinct capture times
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	for i := range order {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		var f Frame
		if _, err := Decode(buf[:n], &f); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("order-%d", i); string(f.CallID) != want {
			t.Errorf("frame %d: %s, want %s", i, f.CallID, want)
		}
	}
}

// udpCollector is a UDP socket standing for a HEP collector (the test
// closes it) and the capture config that sends to it.
func udpCollector(t *testing.T) (net.PacketConn, Config) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	cfg := hepConfig()
	cfg.HEP.Address = pc.LocalAddr().String()
	return pc, cfg
}

// With nothing to send and no trace armed the sender stops ticking (an
// idle Viaduct wakes for nothing); a captured frame wakes it and reaches
// the collector, and a trace armed meanwhile still ends on time.
func TestSenderIdlesUntilNeeded(t *testing.T) {
	pc, cfg := udpCollector(t)
	c, tp := startCapture(t, cfg)
	idle := func() bool { return c.idle.Load() }
	testenv.WaitFor(t, "the sender to idle", 10*time.Second, idle)

	pass(tp, invite("after-idle", "a"), transport.UDP)
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	var f Frame
	if n, _, err := pc.ReadFrom(buf); err != nil {
		t.Fatalf("no frame after the idle spell: %v", err)
	} else if _, err := Decode(buf[:n], &f); err != nil || string(f.CallID) != "after-idle" {
		t.Fatalf("frame %q (%v)", f.CallID, err)
	}
	testenv.WaitFor(t, "the sender to idle again", 10*time.Second, idle)

	if _, err := c.Traces().Arm(TraceSpec{CallID: "x@y", Duration: time.Second}, time.Now()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the trace to end", 10*time.Second, func() bool { return c.traces.armed.Load() == nil })
	testenv.WaitFor(t, "the sender to idle after the trace", 10*time.Second, idle)
}
