package fastpath

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
)

// msg builds a message from header lines (LF separated) and a body, adding
// Content-Length and converting line ends to CRLF.
func msg(head, body string) []byte {
	body = strings.ReplaceAll(body, "\n", "\r\n")
	head = strings.TrimRight(head, "\n")
	return append(sip(fmt.Sprintf("%s\nContent-Length: %d\n\n", head, len(body))), body...)
}

const sdp = `v=0
o=alice 2890844526 2890844526 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 49172 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`

// An RFC 3261 INVITE from alice (sent-by equals the source: no received).
var invite3261 = msg(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@198.51.100.7>
Content-Type: application/sdp`, sdp)

var cancel3261 = msg(`CANCEL sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 CANCEL`, "")

// The ACK of a non-2xx final response: same branch as the INVITE, the To tag
// of the response.
var ack3261 = msg(`ACK sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 ACK`, "")

// routedByeFromUpstream is a BYE from an upstream (192.0.2.21) routed by
// its Route header: the proxy's own entry (192.0.2.10) first, then the
// caller.
var routedByeFromUpstream = msg(`BYE sip:192.0.2.10:5060;lr SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKstrict1;rport
Route: <sip:192.0.2.10;lr>, <sip:alice@198.51.100.7>
To: Alice <sip:alice@atlanta.example.com>;tag=1928301774
From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 1 BYE`, "")

// An RFC 2543 INVITE: no branch, compact headers, no Max-Forwards, a host
// name in sent-by and a Via comment.
var invite2543 = msg(`INVITE sip:carol@chicago.example.com SIP/2.0
v: SIP/2.0/UDP oldphone.example.com:5060 (old stack 1.0)
f: "Old Phone" <sip:old@example.com>;tag=55
t: <sip:carol@chicago.example.com>
i: 2543-call-1@oldphone.example.com
CSeq: 1 INVITE`, "")

var ack2543 = msg(`ACK sip:carol@chicago.example.com SIP/2.0
v: SIP/2.0/UDP oldphone.example.com:5060 (old stack 1.0)
f: "Old Phone" <sip:old@example.com>;tag=55
t: <sip:carol@chicago.example.com>;tag=486x
i: 2543-call-1@oldphone.example.com
CSeq: 1 ACK`, "")

var cancel2543 = msg(`CANCEL sip:carol@chicago.example.com SIP/2.0
v: SIP/2.0/UDP oldphone.example.com:5060 (old stack 1.0)
f: "Old Phone" <sip:old@example.com>;tag=55
t: <sip:carol@chicago.example.com>
i: 2543-call-1@oldphone.example.com
CSeq: 1 CANCEL`, "")

var oldPhone = netip.MustParseAddrPort("198.51.100.9:5060")

func TestGolden3261Invite(t *testing.T) {
	_, w := newTestWorker(t, nil)
	a, o := handle(t, w, invite3261, alice)
	checkGolden(t, "invite3261", a, o)
	if a != ActionForward || (o.To != up1 && o.To != up2) {
		t.Fatalf("INVITE: %v to %v, want forward to an upstream", a, o.To)
	}
	v := vias(t, o.Buf)
	if len(v) != 2 || !strings.HasPrefix(v[0], "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKvd1") ||
		v[1] != "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds" {
		t.Errorf("Vias = %q", v)
	}
	if mf := header(t, o.Buf, parser.KindMaxForwards); len(mf) != 1 || mf[0] != "69" {
		t.Errorf("Max-Forwards = %q, want 69", mf)
	}
	if got := mustParse(t, o.Buf).Body(); string(got) != strings.ReplaceAll(sdp, "\n", "\r\n") {
		t.Errorf("body changed: %q", got)
	}
}

func TestGoldenRetransmissionSameBranch(t *testing.T) {
	_, w := newTestWorker(t, nil)
	a1, o1 := handle(t, w, invite3261, alice)
	a2, o2 := handle(t, w, invite3261, alice)
	if a1 != ActionForward || a2 != ActionForward || o1.To != o2.To || string(o1.Buf) != string(o2.Buf) {
		t.Fatalf("retransmission forwarded differently:\n%s\n%s", o1.Buf, o2.Buf)
	}
	// A second worker (another goroutine, same secret) gives the same bytes.
	_, w2 := newTestWorker(t, nil)
	_, o3 := handle(t, w2, invite3261, alice)
	if string(o3.Buf) != string(o1.Buf) {
		t.Fatalf("another worker built a different request")
	}
}

func TestGoldenCancelAndAckGetInviteBranch(t *testing.T) {
	_, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	ac, can := handle(t, w, cancel3261, alice)
	checkGolden(t, "cancel3261", ac, can)
	aa, ack := handle(t, w, ack3261, alice)
	checkGolden(t, "ack3261", aa, ack)
	bi := topBranch(t, inv.Buf)
	if b := topBranch(t, can.Buf); b != bi {
		t.Errorf("CANCEL branch %s, INVITE branch %s", b, bi)
	}
	if b := topBranch(t, ack.Buf); b != bi {
		t.Errorf("ACK branch %s, INVITE branch %s", b, bi)
	}
	if can.To != inv.To || ack.To != inv.To {
		t.Errorf("CANCEL to %v, ACK to %v, INVITE to %v: must be the same upstream", can.To, ack.To, inv.To)
	}
	// A different transaction of the same call (BYE) gets another branch
	// but the same upstream.
	bye := []byte(strings.NewReplacer("ACK sip", "BYE sip", "z9hG4bK776asdhds", "z9hG4bKbye1", "314159 ACK", "314160 BYE").Replace(string(ack3261)))
	_, b := handle(t, w, bye, alice)
	if topBranch(t, b.Buf) == bi || b.To != inv.To {
		t.Errorf("BYE: branch %s to %v (INVITE %s to %v)", topBranch(t, b.Buf), b.To, bi, inv.To)
	}
}

func TestGolden2543Invite(t *testing.T) {
	_, w := newTestWorker(t, nil)
	a, inv := handle(t, w, invite2543, oldPhone)
	checkGolden(t, "invite2543", a, inv)
	v := vias(t, inv.Buf)
	if len(v) != 2 || v[1] != "SIP/2.0/UDP oldphone.example.com:5060;received=198.51.100.9 (old stack 1.0)" {
		t.Errorf("Vias = %q", v)
	}
	if mf := header(t, inv.Buf, parser.KindMaxForwards); len(mf) != 1 || mf[0] != "70" {
		t.Errorf("Max-Forwards = %q, want an inserted 70", mf)
	}
	bi := topBranch(t, inv.Buf)
	_, re := handle(t, w, invite2543, oldPhone)
	_, ack := handle(t, w, ack2543, oldPhone)
	_, can := handle(t, w, cancel2543, oldPhone)
	for name, o := range map[string]Output{"retransmission": re, "ACK": ack, "CANCEL": can} {
		if b := topBranch(t, o.Buf); b != bi || o.To != inv.To {
			t.Errorf("2543 %s: branch %s to %v, INVITE branch %s to %v", name, b, o.To, bi, inv.To)
		}
	}
	// Another CSeq is another transaction.
	inv2 := []byte(strings.Replace(string(invite2543), "CSeq: 1 INVITE", "CSeq: 2 INVITE", 1))
	if _, o := handle(t, w, inv2, oldPhone); topBranch(t, o.Buf) == bi {
		t.Errorf("2543 INVITE with another CSeq got the same branch")
	}
}

func TestGoldenMaxForwards(t *testing.T) {
	_, w := newTestWorker(t, nil)
	mf1 := []byte(strings.Replace(string(invite3261), "Max-Forwards: 70", "Max-Forwards: 1", 1))
	a, o := handle(t, w, mf1, alice)
	checkGolden(t, "maxforwards1", a, o)
	if mf := header(t, o.Buf, parser.KindMaxForwards); a != ActionForward || len(mf) != 1 || mf[0] != "0" {
		t.Errorf("Max-Forwards 1: %v, %q", a, mf)
	}
	mf10 := []byte(strings.Replace(string(invite3261), "Max-Forwards: 70", "Max-Forwards: 10", 1))
	if _, o := handle(t, w, mf10, alice); header(t, o.Buf, parser.KindMaxForwards)[0] != "9" {
		t.Errorf("Max-Forwards 10 not decremented to 9:\n%s", o.Buf)
	}
	mf0 := []byte(strings.Replace(string(invite3261), "Max-Forwards: 70", "Max-Forwards: 0", 1))
	a, o = handle(t, w, mf0, alice)
	checkGolden(t, "maxforwards0", a, o)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 483 Too Many Hops\r\n") || o.To != alice {
		t.Errorf("Max-Forwards 0: %v to %v\n%s", a, o.To, o.Buf)
	}
	// Never answer an ACK.
	ack0 := []byte(strings.Replace(string(ack3261), "Max-Forwards: 70", "Max-Forwards: 0", 1))
	if a, _ := handle(t, w, ack0, alice); a != ActionDrop {
		t.Errorf("ACK with Max-Forwards 0: %v, want drop", a)
	}
	s := w.Stats()
	if s.Drops[DropTooManyHops] != 2 || s.LocalReplies[Local483] != 1 {
		t.Errorf("counters: too_many_hops=%d local483=%d", s.Drops[DropTooManyHops], s.LocalReplies[Local483])
	}
}

func TestGoldenOurRouteRemoved(t *testing.T) {
	_, w := newTestWorker(t, nil)
	bye := msg(`BYE sip:bob@192.0.2.99 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKnashds10
Max-Forwards: 70
Route: <sip:192.0.2.10:5060;lr>, <sip:ss2.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314160 BYE`, "")
	a, o := handle(t, w, bye, alice)
	checkGolden(t, "route_ours_first", a, o)
	if r := header(t, o.Buf, parser.KindRoute); len(r) != 1 || r[0] != "<sip:ss2.example.com;lr>" {
		t.Errorf("Route = %q", r)
	}
	// Our Route alone on its line (default port): the line goes.
	bye2 := []byte(strings.Replace(string(bye), "Route: <sip:192.0.2.10:5060;lr>, <sip:ss2.example.com;lr>", "Route: <sip:192.0.2.10;lr>\r\nRoute: <sip:ss2.example.com;lr>", 1))
	_, o2 := handle(t, w, bye2, alice)
	if r := header(t, o2.Buf, parser.KindRoute); len(r) != 1 || r[0] != "<sip:ss2.example.com;lr>" {
		t.Errorf("Route = %q", r)
	}
	// Someone else's Route on top stays.
	bye3 := []byte(strings.Replace(string(bye), "Route: <sip:192.0.2.10:5060;lr>, <sip:ss2.example.com;lr>", "Route: <sip:ss2.example.com;lr>, <sip:192.0.2.10;lr>", 1))
	_, o3 := handle(t, w, bye3, alice)
	if r := header(t, o3.Buf, parser.KindRoute); len(r) != 1 || r[0] != "<sip:ss2.example.com;lr>, <sip:192.0.2.10;lr>" {
		t.Errorf("Route = %q", r)
	}
}

func TestGoldenStrictRouteRestored(t *testing.T) {
	_, w := newTestWorker(t, nil)
	// A strict router put our Record-Route URI into the Request-URI and
	// moved the real one to the end of Route (RFC 3261 16.4).
	bye := msg(`BYE sip:192.0.2.10:5060;lr SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKstrict1
Max-Forwards: 70
Route: <sip:alice@198.51.100.7>
To: Alice <sip:alice@atlanta.example.com>;tag=1928301774
From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 1 BYE`, "")
	a, o := handle(t, w, bye, up1)
	checkGolden(t, "strict_route", a, o)
	m := mustParse(t, o.Buf)
	if string(m.RequestURI()) != "sip:alice@198.51.100.7" || len(header(t, o.Buf, parser.KindRoute)) != 0 {
		t.Errorf("strict route not restored:\n%s", o.Buf)
	}
	// From an upstream, the restored Request-URI (an IP literal) is the
	// destination.
	if a != ActionForward || o.To != alice {
		t.Errorf("%v to %v, want forward to %v", a, o.To, alice)
	}
}

func TestGoldenResponseThrough(t *testing.T) {
	_, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	ringing := respond(t, inv.Buf, "180 Ringing", "a6c85cf")
	a, o := handle(t, w, ringing, inv.To)
	checkGolden(t, "response_180", a, o)
	if a != ActionForward || o.To != alice {
		t.Fatalf("180: %v to %v, want forward to %v", a, o.To, alice)
	}
	if v := vias(t, o.Buf); len(v) != 1 || v[0] != "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds" {
		t.Errorf("Vias = %q", v)
	}
	ok := respond(t, inv.Buf, "200 OK", "a6c85cf", "Contact: <sip:bob@192.0.2.99>")
	if a, o := handle(t, w, ok, inv.To); a != ActionForward || o.To != alice {
		t.Errorf("200: %v to %v", a, o.To)
	}
	s := w.Stats()
	if s.ResponsesForwarded[1] != 1 || s.ResponsesForwarded[2] != 1 {
		t.Errorf("responses by class: %v", s.ResponsesForwarded)
	}
}

func TestGoldenForgedResponseDropped(t *testing.T) {
	_, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	good := string(respond(t, inv.Buf, "200 OK", "x"))
	br := topBranch(t, inv.Buf)
	forged := map[string]string{
		// one MAC digit changed
		"mac": strings.Replace(good, br, br[:len(br)-1]+string("01"[(strings.IndexByte(b32, br[len(br)-1])+1)%2]), 1),
		// the next Via redirected to a victim
		"redirect": strings.Replace(good, "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", "SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK776asdhds", 1),
		// a branch of the right shape from nowhere
		"branch": strings.Replace(good, br, "z9hG4bKvd10"+strings.Repeat("a", branchLen-11), 1),
		// top Via not ours at all
		"notours": strings.Replace(good, "192.0.2.10:5060", "192.0.2.11:5060", 1),
	}
	for name, f := range forged {
		if f == good {
			t.Fatalf("%s: forging did not change the response", name)
		}
		a, o := handle(t, w, []byte(f), inv.To)
		if name == "mac" {
			checkGolden(t, "response_forged", a, o)
		}
		if a != ActionDrop || o.Drop != DropForgedResponse {
			t.Errorf("%s: %v (%v), want drop forged_response", name, a, o.Drop)
		}
	}
	if n := w.Stats().Drops[DropForgedResponse]; n != uint64(len(forged)) {
		t.Errorf("forged_response drops = %d, want %d", n, len(forged))
	}
	if a, _ := handle(t, w, []byte(good), inv.To); a != ActionForward {
		t.Errorf("the genuine response was not forwarded")
	}
}

func TestGoldenResponseMaddr(t *testing.T) {
	_, w := newTestWorker(t, nil)
	req := []byte(strings.Replace(string(invite3261), "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds",
		"Via: SIP/2.0/UDP 198.51.100.7:5062;maddr=198.51.100.99;ttl=1;branch=z9hG4bKmaddr1", 1))
	_, inv := handle(t, w, req, netip.MustParseAddrPort("198.51.100.7:5062"))
	a, o := handle(t, w, respond(t, inv.Buf, "200 OK", "m1"), inv.To)
	checkGolden(t, "response_maddr", a, o)
	if want := netip.MustParseAddrPort("198.51.100.99:5062"); a != ActionForward || o.To != want {
		t.Errorf("maddr response: %v to %v, want %v", a, o.To, want)
	}
}

func TestGoldenReceivedRport(t *testing.T) {
	_, w := newTestWorker(t, nil)
	nat := netip.MustParseAddrPort("203.0.113.5:40001")
	cases := []struct {
		name, via       string
		from            netip.AddrPort
		wantVia         string
		wantRespondedTo netip.AddrPort
	}{
		{"same_address", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKr1", alice,
			"SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKr1", alice},
		{"received", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr2", netip.MustParseAddrPort("203.0.113.5:5060"),
			"SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr2;received=203.0.113.5", netip.MustParseAddrPort("203.0.113.5:5060")},
		{"rport", "SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKr3", nat,
			"SIP/2.0/UDP 10.0.0.5:5060;rport=40001;branch=z9hG4bKr3;received=203.0.113.5", nat},
		{"rport_last_same_ip", "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKr4;rport", nat,
			"SIP/2.0/UDP 203.0.113.5;branch=z9hG4bKr4;rport=40001;received=203.0.113.5", nat},
		{"hostname", "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKr5", netip.MustParseAddrPort("203.0.113.5:5060"),
			"SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKr5;received=203.0.113.5", netip.MustParseAddrPort("203.0.113.5:5060")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := []byte(strings.Replace(string(invite3261), "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", c.via, 1))
			a, o := handle(t, w, req, c.from)
			if c.name == "rport" {
				checkGolden(t, "received_rport", a, o)
			}
			if v := vias(t, o.Buf); a != ActionForward || len(v) != 2 || v[1] != c.wantVia {
				t.Fatalf("%v: Vias %q, want second %q", a, v, c.wantVia)
			}
			ra, ro := handle(t, w, respond(t, o.Buf, "200 OK", "t"), o.To)
			if ra != ActionForward || ro.To != c.wantRespondedTo {
				t.Errorf("response: %v to %v, want %v", ra, ro.To, c.wantRespondedTo)
			}
			if v := vias(t, ro.Buf); len(v) != 1 || v[0] != c.wantVia {
				t.Errorf("response Vias %q", v)
			}
		})
	}
}

// With Config.Path a client's REGISTER gets Viaduct's Path, with the
// address it came from, as its first Path value (RFC 3327 section 5.2).
func TestGoldenRegisterPath(t *testing.T) {
	_, w := newTestWorker(t, func(c *Config) { c.Path = true })
	reg := msg(`REGISTER sip:registrar.example.com SIP/2.0
Via: SIP/2.0/UDP 10.1.1.5:5060;branch=z9hG4bKnashd7;rport
Max-Forwards: 70
To: Alice <sip:alice@example.com>
From: Alice <sip:alice@example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:alice@10.1.1.5:5060>
Expires: 3600`, "")
	natted := netip.MustParseAddrPort("198.51.100.7:40112")
	a, o := handle(t, w, reg, natted)
	checkGolden(t, "register_path", a, o)
	if p := header(t, o.Buf, parser.KindPath); len(p) != 1 || p[0] != "<sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>" {
		t.Errorf("Path = %q", p)
	}

	// An existing Path (a proxy before Viaduct): Viaduct's goes first.
	_, o = handle(t, w, replace(reg, "Expires: 3600", "Path: <sip:edge.example.com;lr>\r\nExpires: 3600"), natted)
	if p := header(t, o.Buf, parser.KindPath); len(p) != 2 || p[0] != "<sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>" || p[1] != "<sip:edge.example.com;lr>" {
		t.Errorf("Path with a previous one = %q", p)
	}
	// IPv6 clients get a bracketed address.
	_, o = handle(t, w, reg, netip.MustParseAddrPort("[2001:db8::7]:40112"))
	if p := header(t, o.Buf, parser.KindPath); len(p) != 1 || !strings.Contains(p[0], ";received=[2001:db8::7]:40112>") {
		t.Errorf("Path for an IPv6 client = %q", p)
	}
	// Other methods, a REGISTER from an upstream, and Path off: no Path.
	for name, c := range map[string]struct {
		path bool
		in   []byte
		from netip.AddrPort
	}{
		"INVITE":                 {true, invite3261, alice},
		"REGISTER from upstream": {true, replace(reg, "sip:registrar.example.com", "sip:203.0.113.9"), up1},
		"Path off":               {false, reg, natted},
	} {
		_, w := newTestWorker(t, func(cfg *Config) { cfg.Path = c.path })
		if a, o := handle(t, w, c.in, c.from); a != ActionForward || len(header(t, o.Buf, parser.KindPath)) != 0 {
			t.Errorf("%s: %v with Path %q", name, a, header(t, o.Buf, parser.KindPath))
		}
	}
}

// A request a registrar routes back through Viaduct's Path goes to the
// address recorded in it, not to its Request-URI (a contact behind a NAT);
// the same Route from a client changes nothing (not an open relay).
func TestGoldenPathInbound(t *testing.T) {
	_, w := newTestWorker(t, nil) // Path need not be on to honour it
	inv := msg(`INVITE sip:alice@10.1.1.5:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKreg77
Max-Forwards: 69
Route: <sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>
To: <sip:alice@example.com>
From: <sip:carol@example.com>;tag=77
Call-ID: path-in-1@registrar
CSeq: 1 INVITE`, "")
	a, o := handle(t, w, inv, up1)
	checkGolden(t, "path_inbound", a, o)
	if want := netip.MustParseAddrPort("198.51.100.7:40112"); a != ActionForward || o.To != want {
		t.Errorf("%v to %v, want forward to %v", a, o.To, want)
	}
	if r := header(t, o.Buf, parser.KindRoute); len(r) != 0 {
		t.Errorf("our Route left in: %q", r)
	}
	for _, c := range []struct {
		name, route string
		from, want  netip.AddrPort
	}{
		{"more Routes after ours", "<sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>, <sip:203.0.113.9;lr>", up1, netip.MustParseAddrPort("198.51.100.7:40112")},
		{"no received: the Request-URI", "<sip:192.0.2.10:5060;lr>", up1, netip.MustParseAddrPort("10.1.1.5:5060")},
		{"received not an address: the Request-URI", "<sip:192.0.2.10:5060;lr;received=edge.example.com:5060>", up1, netip.MustParseAddrPort("10.1.1.5:5060")},
		{"received on someone else's Route: the Route", "<sip:203.0.113.9;lr;received=198.51.100.7:40112>", up1, netip.MustParseAddrPort("203.0.113.9:5060")},
	} {
		in := replace(inv, "<sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>", c.route)
		if a, o := handle(t, w, in, c.from); a != ActionForward || o.To != c.want {
			t.Errorf("%s: %v to %v, want %v", c.name, a, o.To, c.want)
		}
	}
	// An IPv6 client's flow, sent from the IPv6 listen address.
	w6 := newDualStackWorker(t)
	v6 := replace(inv, "<sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>", "<sip:192.0.2.10:5060;lr;received=[2001:db8::7]:40112>")
	if a, o := handle(t, w6, v6, up1); a != ActionForward || o.To != netip.MustParseAddrPort("[2001:db8::7]:40112") || o.Listener != 1 {
		t.Errorf("IPv6 flow: %v to %v from listen %d", a, o.To, o.Listener)
	}
	// From a client the request is balanced to an upstream as always.
	if a, o := handle(t, w, replace(inv, "192.0.2.21:5060;branch", "198.51.100.7:5060;branch"), alice); a != ActionForward || (o.To != up1 && o.To != up2) {
		t.Errorf("from a client: %v to %v, want an upstream", a, o.To)
	}
}

// newDualStackWorker returns the IPv4 socket's worker of an engine that
// listens on 192.0.2.10:5060 and [2001:db8::10]:5060 with up1 and up2.
func newDualStackWorker(t *testing.T) *Worker {
	t.Helper()
	_, w := newTestWorker(t, func(c *Config) {
		c.Listen = append(c.Listen, netip.MustParseAddrPort("[2001:db8::10]:5060"))
	})
	return w
}
