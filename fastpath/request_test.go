package fastpath

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

func replace(b []byte, old, new string) []byte {
	s := string(b)
	if !strings.Contains(s, old) {
		panic("replace: " + old + " not found")
	}
	return []byte(strings.Replace(s, old, new, 1))
}

func TestOptionsToProxyAnsweredLocally(t *testing.T) {
	_, w := newTestWorker(t, nil)
	opt := msg(`OPTIONS sip:192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKka1;rport
Max-Forwards: 70
To: <sip:192.0.2.10:5060>
From: <sip:mon@198.51.100.7>;tag=k1
Call-ID: keepalive-1@198.51.100.7
CSeq: 7 OPTIONS`, "")
	a, o := handle(t, w, opt, alice)
	checkGolden(t, "options_local_200", a, o)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 200 OK\r\n") || o.To != alice || o.Drop != DropNone {
		t.Fatalf("%v to %v (%v)\n%s", a, o.To, o.Drop, o.Buf)
	}
	m := mustParse(t, o.Buf)
	to, _ := m.To()
	if len(to.Tag) == 0 || m.StatusCode() != 200 {
		t.Errorf("reply lacks a To tag:\n%s", o.Buf)
	}
	// Also with Max-Forwards 0 (RFC 3261 16.3 item 3 lets us answer).
	if a, o := handle(t, w, replace(opt, "Max-Forwards: 70", "Max-Forwards: 0"), alice); a != ActionReply || mustParse(t, o.Buf).StatusCode() != 200 {
		t.Errorf("OPTIONS with Max-Forwards 0: %v\n%s", a, o.Buf)
	}
	// The same To tag for a retransmission.
	_, o2 := handle(t, w, opt, alice)
	if string(o2.Buf) != string(o.Buf) {
		t.Errorf("retransmitted OPTIONS got another reply")
	}
	// OPTIONS to a user at our address, or to another host, is forwarded.
	for _, ruri := range []string{"sip:ping@192.0.2.10:5060", "sip:192.0.2.99"} {
		if a, _ := handle(t, w, replace(opt, "OPTIONS sip:192.0.2.10:5060", "OPTIONS "+ruri), alice); a != ActionForward {
			t.Errorf("OPTIONS %s: %v, want forward", ruri, a)
		}
	}
	if n := w.Stats().LocalReplies[Local200]; n != 3 {
		t.Errorf("local 200 count = %d, want 3", n)
	}
}

func TestMalformedRequestGets400(t *testing.T) {
	_, w := newTestWorker(t, nil)
	noCallID := replace(invite3261, "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", "")
	a, o := handle(t, w, noCallID, alice)
	checkGolden(t, "missing_callid_400", a, o)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 400 Missing Call-ID\r\n") || o.Drop != DropParseError {
		t.Fatalf("%v (%v)\n%s", a, o.Drop, o.Buf)
	}

	cases := map[string]struct {
		in   []byte
		want string // status line, "" for a silent drop
	}{
		"bad version":     {replace(invite3261, "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com SIP/3.0"), "SIP/2.0 505 Version Not Supported"},
		"cseq mismatch":   {replace(invite3261, "CSeq: 314159 INVITE", "CSeq: 314159 BYE"), "SIP/2.0 400 CSeq Method Mismatch"},
		"bad to":          {replace(invite3261, "To: Bob <sip:bob@biloxi.example.com>", "To: Bob <sip:bob@biloxi.example.com"), "SIP/2.0 400 Unterminated Angle Bracket"},
		"no via":          {replace(invite3261, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds\r\n", ""), ""},
		"garbage via":     {replace(invite3261, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", "Via: garbage"), ""},
		"malformed ack":   {replace(ack3261, "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", ""), ""},
		"bad response":    {sip("SIP/2.0 2000 OK\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx\n\n"), ""},
		"binary garbage":  {[]byte("\x00\x01\x02\xff"), ""},
		"empty":           {nil, ""},
		"proxycheck junk": {[]byte("INVITE sip:x SIP/2.0\r\nVia: garbage\r\n\r\n"), ""},
	}
	for name, c := range cases {
		a, o := handle(t, w, c.in, alice)
		if c.want == "" {
			if a != ActionDrop {
				t.Errorf("%s: %v, want drop\n%s", name, a, o.Buf)
			}
			continue
		}
		if a != ActionReply || !strings.HasPrefix(string(o.Buf), c.want+"\r\n") || o.To != alice {
			t.Errorf("%s: %v to %v, want %q\n%s", name, a, o.To, c.want, o.Buf)
		}
	}
	if n := w.Stats().Drops[DropParseError]; n != uint64(len(cases)+1) {
		t.Errorf("parse_error drops = %d, want %d", n, len(cases)+1)
	}
}

// A datagram of nothing but CR LF is a keepalive: dropped without a reply
// and counted apart from parse errors.
func TestCRLFKeepalive(t *testing.T) {
	_, w := newTestWorker(t, nil)
	for _, ka := range []string{"\r\n\r\n", "\r\n", "\n"} {
		if a, o := handle(t, w, []byte(ka), alice); a != ActionDrop || o.Drop != DropKeepalive || len(o.Buf) != 0 {
			t.Errorf("%q: %v (%v) %q, want a silent keepalive drop", ka, a, o.Drop, o.Buf)
		}
	}
	s := w.Stats()
	if s.Drops[DropKeepalive] != 3 || s.Drops[DropParseError] != 0 {
		t.Errorf("keepalive drops %d, parse errors %d; want 3 and 0", s.Drops[DropKeepalive], s.Drops[DropParseError])
	}
}

func TestTooBig(t *testing.T) {
	_, w := newTestWorker(t, func(c *Config) { c.MaxMessageSize = 600 })
	head := strings.ReplaceAll(strings.SplitN(string(invite3261), "\r\nContent-Length", 2)[0], "\r\n", "\n")
	big := msg(head, strings.Repeat("a=x\n", 150))
	if len(big) <= 600 {
		t.Fatal("test message too small")
	}
	a, o := handle(t, w, big, alice)
	checkGolden(t, "too_big_513", a, o)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 513 Message Too Large\r\n") || o.Drop != DropTooBig {
		t.Fatalf("%v (%v)\n%s", a, o.Drop, o.Buf)
	}
	// A truncated datagram (longer than the read slot) still gets its 513.
	if a, _ := handle(t, w, big[:601], alice); a != ActionReply {
		t.Errorf("truncated oversize request: %v, want 513 reply", a)
	}
	// Oversize responses are dropped.
	_, e2 := newTestWorker(t, nil)
	_, inv := handle(t, e2, invite3261, alice)
	resp := respond(t, inv.Buf, "200 OK", "t", "X-Pad: "+strings.Repeat("p", 700))
	if a, o := handle(t, w, resp, up1); a != ActionDrop || o.Drop != DropTooBig {
		t.Errorf("oversize response: %v (%v)", a, o.Drop)
	}
}

func TestLoopAndSpiral(t *testing.T) {
	_, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	// The upstream sends the request back to us unchanged: a loop.
	back := respondAsRequest(t, inv.Buf)
	a, o := handle(t, w, back, up1)
	checkGolden(t, "loop_482", a, o)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 482 Loop Detected\r\n") || o.To != up1 || o.Drop != DropLoop {
		t.Fatalf("loop: %v to %v (%v)\n%s", a, o.To, o.Drop, o.Buf)
	}
	// It retargeted the request (new Request-URI): a spiral, forwarded to
	// the new target since the request comes from an upstream.
	spiral := replace(back, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@192.0.2.99:5070")
	a, o = handle(t, w, spiral, up1)
	if a != ActionForward || o.To != netip.MustParseAddrPort("192.0.2.99:5070") {
		t.Fatalf("spiral: %v to %v\n%s", a, o.To, o.Buf)
	}
	if v := vias(t, o.Buf); len(v) != 4 {
		t.Errorf("spiral: %d Vias, want 4", len(v))
	}
	// A changed Route is a spiral too.
	routed := replace(back, "Max-Forwards: 69", "Max-Forwards: 69\r\nRoute: <sip:192.0.2.99;lr>")
	if a, _ := handle(t, w, routed, up1); a != ActionForward {
		t.Errorf("Route added: %v, want forward", a)
	}
}

// respondAsRequest returns a forwarded request as the next hop would send it
// back to us: its own Via on top, Max-Forwards decremented by the caller's
// choice (unchanged here).
func respondAsRequest(t testing.TB, fwd []byte) []byte {
	t.Helper()
	return replace(fwd, "\r\nVia: ", "\r\nVia: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKup1\r\nVia: ")
}

func TestNeverAnOpenRelay(t *testing.T) {
	_, w := newTestWorker(t, nil)
	// A client cannot steer a request: Request-URI and Route naming other
	// hosts are ignored for the choice of destination.
	req := replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:victim@203.0.113.66:5060")
	req = replace(req, "Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: <sip:203.0.113.67;lr>")
	a, o := handle(t, w, req, alice)
	if a != ActionForward || (o.To != up1 && o.To != up2) {
		t.Fatalf("client request went to %v", o.To)
	}
	// Upstreams can route out, to IP literals only.
	a, o = handle(t, w, req, up2)
	if a != ActionForward || o.To != netip.MustParseAddrPort("203.0.113.67:5060") {
		t.Fatalf("upstream request with Route: %v to %v", a, o.To)
	}
	host := replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@carrier.example.net")
	a, o = handle(t, w, host, up2)
	checkGolden(t, "upstream_hostname_503", a, o)
	if a != ActionReply || mustParse(t, o.Buf).StatusCode() != 503 || o.To != up2 {
		t.Fatalf("hostname target from upstream: %v\n%s", a, o.Buf)
	}
	// A source with an upstream's IP but another port is a client.
	if a, o := handle(t, w, req, netip.MustParseAddrPort("192.0.2.21:5999")); a != ActionForward || (o.To != up1 && o.To != up2) {
		t.Errorf("client on an upstream's host steered the request to %v", o.To)
	}
	// An upstream request for us (Request-URI = our address) is balanced.
	self := replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:192.0.2.10")
	if a, o := handle(t, w, self, up2); a != ActionForward || (o.To != up1 && o.To != up2) {
		t.Errorf("upstream request to us: %v to %v", a, o.To)
	}
}

type nobody struct{}

func (nobody) Pick(uint64, bool) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

func TestNoUpstream503(t *testing.T) {
	_, w := newTestWorker(t, func(c *Config) { c.Picker = nobody{} })
	a, o := handle(t, w, invite3261, alice)
	if a != ActionReply || mustParse(t, o.Buf).StatusCode() != 503 || o.Drop != DropNoUpstream {
		t.Fatalf("%v (%v)\n%s", a, o.Drop, o.Buf)
	}
	if a, _ := handle(t, w, ack3261, alice); a != ActionDrop {
		t.Errorf("ACK with no upstream: %v, want a silent drop", a)
	}
	if n := w.Stats().Drops[DropNoUpstream]; n != 2 {
		t.Errorf("no_upstream drops = %d", n)
	}
}

func TestCallAffinity(t *testing.T) {
	_, w := newTestWorker(t, nil)
	seen := map[netip.AddrPort]int{}
	for i := 0; i < 200; i++ {
		callID := "call-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "-" + itoa(i)
		inv := replace(invite3261, "a84b4c76e66710@pc33.atlanta.example.com", callID)
		_, o := handle(t, w, inv, alice)
		bye := replace(replace(ack3261, "a84b4c76e66710@pc33.atlanta.example.com", callID), "ACK sip", "BYE sip")
		bye = replace(bye, "314159 ACK", "314160 BYE")
		_, ob := handle(t, w, bye, alice)
		if o.To != ob.To {
			t.Fatalf("call %s: INVITE to %v, BYE to %v", callID, o.To, ob.To)
		}
		seen[o.To]++
	}
	if seen[up1] < 50 || seen[up2] < 50 {
		t.Errorf("200 calls spread %v", seen)
	}
}

func itoa(i int) string { return string(strconv.AppendUint(nil, uint64(i), 10)) }

func TestRecordRoute(t *testing.T) {
	_, w := newTestWorker(t, func(c *Config) { c.RecordRoute = true })
	_, o := handle(t, w, invite3261, alice)
	if rr := header(t, o.Buf, parser.KindRecordRoute); len(rr) != 1 || rr[0] != "<sip:192.0.2.10:5060;lr>" {
		t.Errorf("INVITE Record-Route = %q", rr)
	}
	// In-dialog requests and other methods get none.
	if _, o := handle(t, w, replace(ack3261, "ACK sip", "BYE sip"), alice); len(header(t, o.Buf, parser.KindRecordRoute)) != 0 {
		t.Errorf("in-dialog request was record-routed")
	}
	reg := replace(replace(cancel3261, "CANCEL sip", "REGISTER sip"), "314159 CANCEL", "314159 REGISTER")
	if _, o := handle(t, w, reg, alice); len(header(t, o.Buf, parser.KindRecordRoute)) != 0 {
		t.Errorf("REGISTER was record-routed")
	}
	// The dialog's in-dialog requests come back with our Route on top: the
	// Route is consumed.
	bye := replace(replace(ack3261, "ACK sip", "BYE sip"), "Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: <sip:192.0.2.10:5060;lr>")
	if _, o := handle(t, w, bye, alice); len(header(t, o.Buf, parser.KindRoute)) != 0 {
		t.Errorf("our Route not removed:\n%s", o.Buf)
	}
}

func TestLocalResponseHandler(t *testing.T) {
	e, w := newTestWorker(t, nil)
	var got []string
	e.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) {
		got = append(got, string(m.CallID())+" "+from.String())
	})
	via := e.AppendVia(nil, up1, 42)
	probe := append([]byte("OPTIONS sip:192.0.2.21:5060 SIP/2.0\r\n"), via...)
	probe = append(probe, "Max-Forwards: 70\r\nTo: <sip:192.0.2.21:5060>\r\nFrom: <sip:viaduct@192.0.2.10>;tag=p\r\nCall-ID: probe-42\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"...)
	resp := respond(t, probe, "200 OK", "u")
	a, _ := handle(t, w, resp, up1)
	if a != ActionLocal || len(got) != 1 || got[0] != "probe-42 192.0.2.21:5060" {
		t.Fatalf("%v, handler saw %q", a, got)
	}
	// A forged one (someone else's Via below ours, or another key) is not.
	forged := replace(resp, "Call-ID: probe-42", "Call-ID: probe-42\r\nVia: SIP/2.0/UDP 203.0.113.66")
	if a, _ := handle(t, w, forged, up1); a != ActionDrop {
		t.Errorf("forged local response: %v", a)
	}
	e.SetLocalResponseHandler(nil)
	if a, _ := handle(t, w, resp, up1); a != ActionLocal || len(got) != 1 {
		t.Errorf("without handler: %v", a)
	}
	if s := w.Stats(); s.LocalResponses != 2 || s.Drops[DropForgedResponse] != 1 {
		t.Errorf("local=%d forged=%d", s.LocalResponses, s.Drops[DropForgedResponse])
	}
}

func TestIPv6(t *testing.T) {
	v6proxy := netip.MustParseAddrPort("[2001:db8::10]:5060")
	v6up := netip.MustParseAddrPort("[2001:db8::21]:5060")
	v6client := netip.MustParseAddrPort("[2001:db8::7]:5062")
	e, err := New(Config{
		Listen:    []netip.AddrPort{proxyAddr, v6proxy},
		Upstreams: []netip.AddrPort{v6up},
		Secret:    testKey,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := e.NewWorker()
	req := replace(invite3261, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", "Via: SIP/2.0/UDP [2001:db8::7]:5060;rport;branch=z9hG4bK6")
	a, o := handle(t, w, req, v6client)
	checkGolden(t, "ipv6", a, o)
	if a != ActionForward || o.To != v6up || o.Listener != 1 {
		t.Fatalf("%v to %v from listen %d, want %v from listen 1", a, o.To, o.Listener, v6up)
	}
	if v := vias(t, o.Buf); v[1] != "SIP/2.0/UDP [2001:db8::7]:5060;rport=5062;branch=z9hG4bK6;received=2001:db8::7" {
		t.Errorf("Vias %q", v)
	}
	if v := vias(t, o.Buf); v[0][:34] != "SIP/2.0/UDP [2001:db8::10]:5060;br" {
		t.Errorf("our Via towards an IPv6 upstream must carry the IPv6 listen address: %q", v[0])
	}
	// The response arrives on the IPv6 socket's worker; the request came in
	// on listen 0 (IPv4), which cannot reach an IPv6 client: it leaves from
	// listen 1.
	ra, ro := handleFrom(t, w, respond(t, o.Buf, "200 OK", "t"), transport.Peer{Addr: v6up, Kind: transport.UDP, Listener: 1})
	if ra != ActionForward || ro.To != v6client || ro.Listener != 1 {
		t.Errorf("response: %v to %v from listen %d", ra, ro.To, ro.Listener)
	}
}

// A datagram whose last header line has no line ending (and no blank line)
// still gets a well-formed Max-Forwards (found by fuzzing).
func TestUnterminatedHeadersGetMaxForwards(t *testing.T) {
	_, w := newTestWorker(t, nil)
	for _, in := range []string{
		"INVITE sip:bob@192.0.2.99 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKu1\r\nTo: <sip:bob@192.0.2.99>\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: u1\r\nCSeq: 1 INVITE",
		"INVITE sip:bob@192.0.2.99 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKu1\r\nTo: <sip:bob@192.0.2.99>\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: u1\r\nCSeq: 1 INVITE\r\n",
	} {
		var m parser.Message
		if err := parser.Parse([]byte(in), &m); err != nil {
			t.Skipf("the parser refuses it (%v): nothing to forward", err)
		}
		a, o := handle(t, w, []byte(in), alice)
		if a != ActionForward {
			t.Fatalf("%v", a)
		}
		if mf := header(t, o.Buf, parser.KindMaxForwards); len(mf) != 1 || mf[0] != "70" {
			t.Errorf("Max-Forwards %q in\n%q", mf, o.Buf)
		}
		if cs := header(t, o.Buf, parser.KindCSeq); len(cs) != 1 || cs[0] != "1 INVITE" {
			t.Errorf("CSeq %q", cs)
		}
	}
}

// A datagram that ends inside its last header line, after the CR of its
// CRLF, still gets a reply (or a forwarded request) that parses: the line
// copied from it is completed, not given a second CR.
func TestDatagramEndingInCR(t *testing.T) {
	_, w := newTestWorker(t, nil)
	base := "INVITE sip:bob@192.0.2.99 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKcr1\r\nTo: <sip:bob@192.0.2.99>\r\nFrom: <sip:a@b>;tag=1\r\n"
	for _, c := range []struct {
		name, in, cseq string
		want           Action
	}{
		{"400, last line cut after its CR", base + "Call-ID: cr1\r\nCSeq: 1 BYE\r", "1 BYE", ActionReply},
		{"forwarded, last line cut after its CR", base + "Call-ID: cr1\r\nCSeq: 1 INVITE\r", "1 INVITE", ActionForward},
	} {
		var m parser.Message
		if err := parser.Parse([]byte(c.in), &m); err != nil && c.want == ActionForward {
			t.Errorf("%s: the parser refuses it (%v)", c.name, err)
			continue
		}
		a, o := handle(t, w, []byte(c.in), alice)
		if a != c.want {
			t.Fatalf("%s: %v, want %v\n%q", c.name, a, c.want, o.Buf)
		}
		if err := parser.Parse(o.Buf, &m); err != nil {
			t.Errorf("%s: output does not parse (%v):\n%q", c.name, err, o.Buf)
		}
		if cs := header(t, o.Buf, parser.KindCSeq); len(cs) != 1 || cs[0] != c.cseq {
			t.Errorf("%s: CSeq %q in\n%q", c.name, cs, o.Buf)
		}
	}
}

// received goes after the whole sent-by of a Via without parameters, also
// when its port is written 0 or with white space around the colon
// (RFC 3261 COLON is SWS ":" SWS).
func TestReceivedAfterPortZero(t *testing.T) {
	_, w := newTestWorker(t, nil)
	for _, sentBy := range []string{"10.1.1.5:0", "10.1.1.5 : 0", "10.1.1.5: 5060", "10.1.1.5"} {
		in := replace(invite3261, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", "Via: SIP/2.0/UDP "+sentBy)
		a, o := handle(t, w, in, alice)
		if a != ActionForward {
			t.Fatalf("%q: %v", sentBy, a)
		}
		if v := vias(t, o.Buf); len(v) != 2 || v[1] != "SIP/2.0/UDP "+sentBy+";received=198.51.100.7" {
			t.Errorf("%q: Vias %q", sentBy, v)
		}
	}
}

// A strict router's last Route moves into the Request-URI; one with white
// space in its URI cannot, and the request gets 400 instead of a start line
// that no longer parses.
func TestStrictRouteWithSpaceRefused(t *testing.T) {
	_, w := newTestWorker(t, nil)
	bye := msg(`BYE sip:192.0.2.10;lr SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKsp1
Route: <A: 0>
To: <sip:a@example.com>;tag=1
From: <sip:b@example.com>;tag=2
Call-ID: strict-space@test
CSeq: 2 BYE`, "")
	a, o := handle(t, w, bye, alice)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 400 Malformed Route\r\n") {
		t.Errorf("%v:\n%s", a, o.Buf)
	}
}

// fakeNextHops answers LookupNextHop from a table, recording what it was
// asked.
type fakeNextHops struct {
	answers map[string]struct {
		addr  netip.AddrPort
		state NextHopState
	}
	asked []string
}

func (f *fakeNextHops) LookupNextHop(host []byte, port int) (netip.AddrPort, NextHopState) {
	k := fmt.Sprintf("%s:%d", strings.ToLower(string(host)), port) // names are case-insensitive
	f.asked = append(f.asked, k)
	a, ok := f.answers[k]
	if !ok {
		return netip.AddrPort{}, NextHopPending
	}
	return a.addr, a.state
}

// With a NextHopResolver, a request from an upstream whose next hop is a
// host name goes to the address it resolves to; while the name is being
// resolved the request is dropped (the upstream retransmits), and a name
// that does not resolve gets 503. Clients still cannot use it.
func TestNextHopHostNames(t *testing.T) {
	carrier := netip.MustParseAddrPort("203.0.113.80:5070")
	f := &fakeNextHops{answers: map[string]struct {
		addr  netip.AddrPort
		state NextHopState
	}{
		"carrier.example.net:0":    {carrier, NextHopFound},
		"proxy.example.net:5080":   {netip.MustParseAddrPort("203.0.113.81:5080"), NextHopFound},
		"gone.example.net:0":       {netip.AddrPort{}, NextHopFailed},
		"v6only.example.net:0":     {netip.MustParseAddrPort("[2001:db8::81]:5060"), NextHopFound},
		"maddr-host.example.net:0": {netip.MustParseAddrPort("203.0.113.82:5060"), NextHopFound},
	}}
	_, w := newTestWorker(t, func(c *Config) { c.NextHops = f })
	withRURI := func(ruri string) []byte {
		return replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE "+ruri)
	}
	for _, c := range []struct {
		name   string
		in     []byte
		action Action
		to     netip.AddrPort
		status int
		drop   DropReason
	}{
		{"resolved, no port", withRURI("sip:bob@Carrier.Example.NET"), ActionForward, carrier, 0, DropNone},
		{"resolved, port", withRURI("sip:bob@proxy.example.net:5080"), ActionForward, netip.MustParseAddrPort("203.0.113.81:5080"), 0, DropNone},
		{"Route names the host", replace(withRURI("sip:bob@198.51.100.7"), "Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: <sip:carrier.example.net;lr>"), ActionForward, carrier, 0, DropNone},
		{"maddr names the host", withRURI("sip:bob@198.51.100.77;maddr=maddr-host.example.net"), ActionForward, netip.MustParseAddrPort("203.0.113.82:5060"), 0, DropNone},
		{"being resolved", withRURI("sip:bob@new.example.net"), ActionDrop, netip.AddrPort{}, 0, DropNextHopPending},
		{"does not resolve", withRURI("sip:bob@gone.example.net"), ActionReply, up2, 503, DropNoUpstream},
		{"resolves to a family without a socket", withRURI("sip:bob@v6only.example.net"), ActionReply, up2, 503, DropNoUpstream},
	} {
		a, o := handle(t, w, c.in, up2)
		if a != c.action || o.To != c.to || o.Drop != c.drop {
			t.Errorf("%s: %v to %v (drop %v), want %v to %v (drop %v)", c.name, a, o.To, o.Drop, c.action, c.to, c.drop)
		}
		if c.status != 0 && (a != ActionReply || mustParse(t, o.Buf).StatusCode() != c.status) {
			t.Errorf("%s: reply %q, want %d", c.name, o.Buf, c.status)
		}
	}
	if n := w.Stats().Drops[DropNextHopPending]; n != 1 {
		t.Errorf("next_hop_pending drops = %d, want 1", n)
	}
	// A client's request naming a host is balanced; the resolver is not
	// asked.
	f.asked = nil
	if a, o := handle(t, w, withRURI("sip:bob@carrier.example.net"), alice); a != ActionForward || (o.To != up1 && o.To != up2) || len(f.asked) != 0 {
		t.Errorf("client request: %v to %v, resolver asked %q", a, o.To, f.asked)
	}
	// Forwarding a resolved name allocates nothing (the fake's own
	// bookkeeping aside, measured without it).
	quiet := &staticNextHop{carrier}
	_, w2 := newTestWorker(t, func(c *Config) { c.NextHops = quiet })
	in, out := withRURI("sip:bob@carrier.example.net"), newOutput(w2.e)
	if n := testing.AllocsPerRun(200, func() { w2.Handle(in, udpFrom(up2), out) }); n != 0 || out.To != carrier {
		t.Errorf("%.1f allocations per message, sent to %v", n, out.To)
	}
}

// staticNextHop resolves every name to one address.
type staticNextHop struct{ addr netip.AddrPort }

func (s *staticNextHop) LookupNextHop([]byte, int) (netip.AddrPort, NextHopState) {
	return s.addr, NextHopFound
}

// Secret rotation: an engine started with a new Secret and the old one as
// PreviousSecret relays the responses to requests the old engine forwarded
// (forged ones still not), and makes its own branches with the new secret
// only.
func TestPreviousSecret(t *testing.T) {
	oldKey := testKey
	newKey := []byte("viaduct-rotated-test-secret-32by")
	_, before := newTestWorker(t, nil)
	_, inv := handle(t, before, invite3261, alice)
	ringing := respond(t, inv.Buf, "180 Ringing", "r")

	_, plain := newTestWorker(t, func(c *Config) { c.Secret = newKey })
	if a, o := handle(t, plain, ringing, inv.To); a != ActionDrop || o.Drop != DropForgedResponse {
		t.Fatalf("new secret alone: %v (%v), want drop forged_response", a, o.Drop)
	}
	_, rotated := newTestWorker(t, func(c *Config) { c.Secret, c.PreviousSecret = newKey, oldKey })
	if a, o := handle(t, rotated, ringing, inv.To); a != ActionForward || o.To != alice {
		t.Fatalf("new secret, old one previous: %v to %v, want forward to %v", a, o.To, alice)
	}
	// A forged response (the next Via redirected) fails both MACs.
	forged := replace(ringing, "198.51.100.7:5060;branch=z9hG4bK776asdhds", "203.0.113.66:5060;branch=z9hG4bK776asdhds")
	if a, o := handle(t, rotated, forged, inv.To); a != ActionDrop || o.Drop != DropForgedResponse {
		t.Errorf("forged response: %v (%v), want drop forged_response", a, o.Drop)
	}
	// New branches carry the new secret's MAC: an engine that knows only
	// the new secret relays their responses, one that knows only the old
	// one does not.
	_, inv2 := handle(t, rotated, invite3261, alice)
	if topBranch(t, inv2.Buf) == topBranch(t, inv.Buf) {
		t.Fatal("the rotated engine made the old engine's branch")
	}
	ok := respond(t, inv2.Buf, "200 OK", "r")
	if a, _ := handle(t, plain, ok, inv2.To); a != ActionForward {
		t.Errorf("response to the rotated engine's request, new secret: %v, want forward", a)
	}
	if a, _ := handle(t, before, ok, inv2.To); a != ActionDrop {
		t.Errorf("response to the rotated engine's request, old secret: %v, want drop", a)
	}
	// Too short a previous secret is refused by name.
	cfg := testConfig()
	cfg.PreviousSecret = []byte("short")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "previous_secret") {
		t.Errorf("short previous secret: %v, want a previous_secret error", err)
	}
}
