package edge

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// blocklistGuard returns a Guard with a 20,000-prefix blocklist (the size
// of a VoIPBL export), trusted and deny lists and an upstream.
func blocklistGuard(t testing.TB) *Guard {
	var sb strings.Builder
	for i := range 20000 {
		a := netip.AddrFrom4([4]byte{byte(1 + i%200), byte(i / 200), byte(i * 7), 0})
		sb.WriteString(netip.PrefixFrom(a, 24+(i%9)).Masked().String() + "\n")
	}
	path := filepath.Join(t.TempDir(), "bl.txt")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Limits no benchmark loop reaches, so that every request takes the
	// admitted path through the rate check.
	high := Limit{Rate: 1e9, Burst: 1e9}
	g := newGuard(t, Config{Access: AccessConfig{BlocklistFile: path, Trusted: []string{"10.0.0.0/8"}, Deny: []string{"203.0.113.0/24"}},
		Limits: LimitsConfig{Register: high, Invite: high, Other: high, NewSources: high}})
	g.SetUpstreams([]Upstream{{Addr: netip.MustParseAddrPort("192.0.2.200:5060")}})
	return g
}

func BenchmarkAccessLookup(b *testing.B) {
	g := blocklistGuard(b)
	r := g.rules.Load()
	addrs := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("5.6.7.8"), netip.MustParseAddr("2001:db8::1")}
	var f uint8
	loopCPU(b, func(i int) { f |= r.access.lookup(addrs[i&3]) })
	_ = f
}

func BenchmarkRateCheck(b *testing.B) {
	tb := NewTable(DefaultTableSize, DefaultIPv6Prefix)
	tb.setLimits(Config{}.WithDefaults())
	keys := make([]srcKey, 1024)
	for i := range keys {
		keys[i] = tb.Key(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
	}
	now := int64(1)
	loopCPU(b, func(i int) {
		now += 1e6 // 1 ms: every source at about 1 request/s, within its limits
		tb.Admit(keys[i&1023], ClassInvite, now)
	})
}

// BenchmarkStage is the edge's cost per allowed INVITE: the stage in
// front of a core that does nothing (the whole path: access lookup, ban
// check, User-Agent scan, rate check).
func BenchmarkStage(b *testing.B) {
	g := blocklistGuard(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx) // the coarse clock, as in the running binary
	core := &sink{}
	h := g.Stage(core, transport.Position{})
	msg := CostInvite()
	out := transport.Outbound{Buf: make([]byte, 0, 4096)}
	srcs := make([]transport.Peer, 256)
	for i := range srcs {
		srcs[i] = transport.Peer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 5060)}
	}
	loopCPU(b, func(i int) { h.Handle(msg, srcs[i&255], &out) })
	if core.handled != b.N {
		b.Fatalf("%d of %d admitted", core.handled, b.N)
	}
}

// loopCPU runs f(i) in the benchmark loop, reporting allocations and the
// thread's CPU time per op (cpu-ns/op) beside the wall time.
func loopCPU(b *testing.B, f func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := testenv.ThreadCPU(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f(i)
	}
	b.ReportMetric(float64(testenv.ThreadCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// TestHotPathAllocatesNothing guards the benchmarks' 0 allocs: the access
// lookup, the rate check and the whole stage for an admitted request, a
// dropped one and a response.
func TestHotPathAllocatesNothing(t *testing.T) {
	g := blocklistGuard(t)
	if err := g.Bans().Add(netip.MustParsePrefix("192.0.2.0/28"), 3600e9, OriginManual, ""); err != nil {
		t.Fatal(err)
	}
	h := g.Stage(&sink{}, transport.Position{})
	out := transport.Outbound{Buf: make([]byte, 0, 4096)}
	inv := request("INVITE", "Yealink")
	cases := []struct {
		name string
		msg  []byte
		src  string
	}{{"admitted", inv, "198.51.100.1:5060"}, {"banned", inv, "192.0.2.1:5060"}, {"denied", inv, "203.0.113.1:5060"},
		{"response", response, "198.51.100.2:5060"}, {"upstream", inv, "192.0.2.200:5060"}, {"v6", inv, "[2001:db8::1]:5060"}}
	for _, c := range cases {
		src := transport.Peer{Addr: netip.MustParseAddrPort(c.src)}
		if n := testing.AllocsPerRun(200, func() { h.Handle(c.msg, src, &out) }); n != 0 {
			t.Errorf("%s: %v allocs per message", c.name, n)
		}
	}
}

// CostInvite is a phone's INVITE with its User-Agent and SDP, the
// message of the cost benchmarks.
func CostInvite() []byte {
	return []byte("INVITE sip:200@192.0.2.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: \"Alice\" <sip:100@example.com>;tag=1928301774\r\n" +
		"To: <sip:200@example.com>\r\n" +
		"Call-ID: a84b4c76e66710@198.51.100.7\r\n" +
		"CSeq: 314159 INVITE\r\n" +
		"Contact: <sip:100@198.51.100.7:5060>\r\n" +
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY\r\n" +
		"Supported: replaces, timer\r\n" +
		"User-Agent: Yealink SIP-T46U 108.86.0.20\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: 129\r\n\r\n" +
		"v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
}

// CostInviteDeskPhone is a desk phone's INVITE as it leaves the phone:
// more headers and an SDP offering six codecs (about 1,200 bytes).
func CostInviteDeskPhone() []byte {
	sdp := "v=0\r\no=- 20310 20310 IN IP4 198.51.100.7\r\ns=SDP data\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n" +
		"m=audio 11786 RTP/AVP 9 0 8 18 111 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
		"a=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n" +
		"a=ptime:20\r\na=sendrecv\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp:11787\r\n"
	return []byte("INVITE sip:200@192.0.2.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1541939468;rport\r\n" +
		"From: \"Alice\" <sip:100@example.com>;tag=2873947512\r\n" +
		"To: <sip:200@example.com>\r\n" +
		"Call-ID: 0_1306218823@198.51.100.7\r\n" +
		"CSeq: 2 INVITE\r\n" +
		"Contact: <sip:100@198.51.100.7:5060>\r\n" +
		"Authorization: Digest username=\"100\", realm=\"example.com\", nonce=\"Y2hhbGxlbmdlLTE3MzM0NDU2\", uri=\"sip:200@192.0.2.1:5060\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE\r\n" +
		"Max-Forwards: 70\r\n" +
		"User-Agent: Yealink SIP-T46U 108.86.0.20\r\n" +
		"Allow-Events: talk,hold,conference,refer,check-sync\r\n" +
		"Supported: replaces, timer\r\n" +
		"Session-Expires: 1800\r\n" +
		"Min-SE: 90\r\n" +
		"Content-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp)
}
