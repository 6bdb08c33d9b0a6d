package capture

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

var (
	listenAddr = netip.MustParseAddrPort("192.0.2.10:5060")
	clientAddr = netip.MustParseAddrPort("198.51.100.7:5070")
	serverAddr = netip.MustParseAddrPort("192.0.2.21:5060")
)

// sipMsg turns LF line ends into CRLF and ends the header section.
func sipMsg(s string) []byte {
	return []byte(strings.ReplaceAll(strings.TrimSpace(s), "\n", "\r\n") + "\r\n\r\n")
}

func invite(callID, from string) []byte {
	return sipMsg(fmt.Sprintf(`INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK-1
From: <sip:%s@example.com>;tag=1
To: <sip:bob@example.com>
Call-ID: %s
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0`, from, callID))
}

// forwarder is the core as the tap sees it: it forwards every message to
// serverAddr unchanged and records what it was given.
type forwarder struct {
	handled, sent int
}

func (f *forwarder) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	f.handled++
	out.Buf = append(out.Buf[:0], msg...)
	out.To = transport.Peer{Addr: serverAddr, Kind: src.Kind, Listener: src.Listener}
	return true
}

func (f *forwarder) Sent(out *transport.Outbound, err error) { f.sent++ }

// newTestCapture returns a Capture of cfg with one tap over a forwarder,
// the listener's address set.
func newTestCapture(t testing.TB, cfg Config) (*Capture, *tap, *forwarder) {
	t.Helper()
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetListenAddrs([]netip.AddrPort{listenAddr})
	fw := &forwarder{}
	h := c.Stage(fw, transport.Position{Kind: transport.UDP})
	return c, h.(*tap), fw
}

// pass runs msg through the tap as a transport worker does: Handle, then
// Sent with a nil error.
func pass(tp *tap, msg []byte, kind transport.Kind) {
	out := transport.Outbound{Buf: make([]byte, 0, 2048)}
	if tp.Handle(msg, transport.Peer{Addr: clientAddr, Kind: kind}, &out) {
		tp.Sent(&out, nil)
	}
}

// drainFrames takes every record out of the tap's ring, decoded.
func drainFrames(t testing.TB, tp *tap) (frames []Frame, flags []uint8) {
	t.Helper()
	for {
		b, fl, ok := tp.ring.next()
		if !ok {
			break
		}
		var f Frame
		if _, err := Decode(b, &f); err != nil {
			t.Fatal(err)
		}
		f.Payload, f.CallID, f.AuthKey = bytes.Clone(f.Payload), bytes.Clone(f.CallID), bytes.Clone(f.AuthKey)
		frames, flags = append(frames, f), append(flags, fl)
	}
	tp.ring.release()
	return frames, flags
}

func hepConfig() Config {
	return Config{HEP: HEPConfig{Address: "127.0.0.1:9060", AgentID: 7}}
}

func TestTapCapturesBothDirectionsAsOnTheWire(t *testing.T) {
	c, tp, fw := newTestCapture(t, hepConfig())
	msg := invite("call-1@x", "alice")
	pass(tp, msg, transport.TLS)
	if fw.handled != 1 || fw.sent != 1 {
		t.Fatalf("the core saw %d messages and %d sends, want 1 and 1", fw.handled, fw.sent)
	}
	frames, flags := drainFrames(t, tp)
	if len(frames) != 2 {
		t.Fatalf("%d frames, want 2", len(frames))
	}
	in, out := frames[0], frames[1]
	if in.Src != clientAddr || in.Dst != listenAddr || in.Proto != ProtoTCP || flags[0] != flagHEP {
		t.Errorf("received: %v -> %v proto %d flags %b; want %v -> %v TCP (TLS runs over TCP), HEP", in.Src, in.Dst, in.Proto, flags[0], clientAddr, listenAddr)
	}
	if out.Src != listenAddr || out.Dst != serverAddr || out.Proto != ProtoTCP || flags[1] != flagHEP|flagOut {
		t.Errorf("sent: %v -> %v proto %d flags %b", out.Src, out.Dst, out.Proto, flags[1])
	}
	for _, f := range frames {
		if !bytes.Equal(f.Payload, msg) || string(f.CallID) != "call-1@x" || f.AgentID != 7 || f.Sec == 0 {
			t.Errorf("frame %+v", f)
		}
	}
	if s := c.Stats(); s.Captured != 2 || s.CapturedBytes != uint64(2*len(msg)) {
		t.Errorf("stats %+v", s)
	}
}

func TestTapSendErrorNotCaptured(t *testing.T) {
	_, tp, fw := newTestCapture(t, hepConfig())
	out := transport.Outbound{Buf: make([]byte, 0, 2048)}
	tp.Handle(invite("c", "a"), transport.Peer{Addr: clientAddr, Kind: transport.UDP}, &out)
	tp.Sent(&out, fmt.Errorf("EPERM"))
	if fw.sent != 1 {
		t.Fatal("Sent not passed on")
	}
	if frames, _ := drainFrames(t, tp); len(frames) != 1 {
		t.Errorf("%d frames, want only the received one", len(frames))
	}
}

func TestTapOffCapturesNothing(t *testing.T) {
	c, tp, fw := newTestCapture(t, Config{})
	pass(tp, invite("c", "a"), transport.UDP)
	if fw.sent != 1 {
		t.Fatal("not forwarded")
	}
	if frames, _ := drainFrames(t, tp); len(frames) != 0 || c.Stats().Captured != 0 {
		t.Errorf("%d frames captured without a collector or a trace", len(frames))
	}
}

func TestTapFilters(t *testing.T) {
	bye := bytes.Replace(invite("c1", "a"), []byte("INVITE sip"), []byte("BYE sip"), 1)
	bye = bytes.Replace(bye, []byte("CSeq: 1 INVITE"), []byte("CSeq: 2 BYE"), 1)
	ok := sipMsg("SIP/2.0 200 OK\nVia: SIP/2.0/UDP x;branch=z9hG4bK-1\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@x>;tag=2\ni: c1\nCSeq: 1 INVITE")
	for _, tc := range []struct {
		name    string
		methods []string
		dir     string
		want    int // frames of INVITE, BYE and the 200 to INVITE, in and out
	}{
		{"all", nil, "", 6},
		{"INVITE and its responses", []string{"INVITE"}, "", 4},
		{"BYE only, received", []string{"BYE"}, "in", 1},
		{"sent", nil, "out", 3},
	} {
		cfg := hepConfig()
		cfg.Methods, cfg.Direction = tc.methods, tc.dir
		_, tp, _ := newTestCapture(t, cfg)
		for _, m := range [][]byte{invite("c1", "a"), bye, ok} {
			pass(tp, m, transport.UDP)
		}
		if frames, _ := drainFrames(t, tp); len(frames) != tc.want {
			t.Errorf("%s: %d frames, want %d", tc.name, len(frames), tc.want)
		}
	}
}

// Sampling keeps every message of a sampled call and none of the others.
func TestTapSamplesWholeCalls(t *testing.T) {
	cfg := hepConfig()
	rate := 0.3
	cfg.SampleRate = &rate
	_, tp, _ := newTestCapture(t, cfg)
	const calls = 200
	for i := range calls {
		id := fmt.Sprintf("call-%d@host", i)
		for range 3 { // INVITE, and two more messages of the call
			pass(tp, invite(id, "a"), transport.UDP)
		}
	}
	frames, _ := drainFrames(t, tp)
	per := map[string]int{}
	for _, f := range frames {
		per[string(f.CallID)]++
	}
	for id, n := range per {
		if n != 6 {
			t.Errorf("call %s: %d of its 6 messages captured", id, n)
		}
		if !Sampled([]byte(id), rate) {
			t.Errorf("call %s captured but not sampled", id)
		}
	}
	if len(per) < calls/10 || len(per) > calls/2 {
		t.Errorf("%d of %d calls sampled at rate %v", len(per), calls, rate)
	}
}

func TestScanMessage(t *testing.T) {
	var info msgInfo
	scanMessage(sipMsg("SIP/2.0 180 Ringing\nv: SIP/2.0/UDP x\nf: \"A\" <sip:alice@x>;tag=1\nt: <sips:bob@y>\nCALL-ID:  abc@h \nCSeq: 7 SUBSCRIBE"), &info, true)
	if !info.response || info.method != parser.MethodSUBSCRIBE || string(info.callID) != "abc@h" ||
		string(uriUser(info.from)) != "alice" || string(uriUser(info.to)) != "bob" {
		t.Errorf("%+v", info)
	}
	for v, want := range map[string]string{
		"<tel:+15551234;phone-context=x>": "+15551234", "<sip:example.com>": "", "sip:carol@z;tag=1": "carol", "<http://x>": "",
	} {
		if got := string(uriUser([]byte(v))); got != want {
			t.Errorf("uriUser(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestTapRingFullDropsAndForwards(t *testing.T) {
	cfg := hepConfig()
	cfg.RingSize = MinRingSize
	c, tp, fw := newTestCapture(t, cfg)
	msg := invite("c", "a")
	const n = 1000 // far more than 64 KiB of frames
	for range n {
		pass(tp, msg, transport.UDP)
	}
	if fw.sent != n {
		t.Fatalf("forwarded %d of %d", fw.sent, n)
	}
	s := c.Stats()
	if s.Dropped["ring_full"] == 0 || s.Captured+s.Dropped["ring_full"] != 2*n || s.DroppedBytes["ring_full"] != s.Dropped["ring_full"]*uint64(len(msg)) {
		t.Errorf("captured %d, dropped %v (%v bytes); want %d in all", s.Captured, s.Dropped, s.DroppedBytes, 2*n)
	}
}

// The tap allocates nothing per message, with a collector and with a trace
// armed.
func TestTapAllocations(t *testing.T) {
	c, tp, _ := newTestCapture(t, hepConfig())
	if _, err := c.Traces().Arm(TraceSpec{User: "alice"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	msg := invite("c", "alice")
	out := transport.Outbound{Buf: make([]byte, 0, 2048)}
	src := transport.Peer{Addr: clientAddr, Kind: transport.UDP}
	allocs := testing.AllocsPerRun(200, func() {
		if tp.Handle(msg, src, &out) {
			tp.Sent(&out, nil)
		}
		drainRing(tp.ring)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message", allocs)
	}
}

// drainRing empties r without looking.
func drainRing(r *ring) {
	for {
		if _, _, ok := r.next(); !ok {
			break
		}
	}
	r.release()
}

// BenchmarkTap: what the fast path pays for full capture, the sender
// aside: scan the Call-ID, encode the HEP frame into the ring, for one
// message received and one sent (the ring is emptied now and then, out of
// the timing).
func BenchmarkTap(b *testing.B) {
	_, tp, _ := newTestCapture(b, hepConfig())
	msg := invite("1-1234@127.0.0.1", "sipp")
	out := transport.Outbound{Buf: make([]byte, 0, 2048)}
	src := transport.Peer{Addr: clientAddr, Kind: transport.UDP}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tp.capture(msg, src.Addr, listenAddr, transport.UDP, dirIn)
		tp.capture(msg, listenAddr, serverAddr, transport.UDP, dirOut)
		if i++; i%512 == 0 {
			b.StopTimer()
			drainRing(tp.ring)
			b.StartTimer()
		}
	}
	_ = out
}
