package fastpath

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// malformedClasses are requests that must never reach an upstream, each with
// the status line Viaduct answers (one per class of "What Viaduct refuses"
// in the README).
var malformedClasses = []struct {
	name, old, new, status string
}{
	{"multiple_callid", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\ni: other@x\r\n", "400 Multiple Call-ID"},
	{"callid_list", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com, other@x", "400 Multiple Call-ID"},
	{"callid_white_space", "Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: a84b4c76e66710 @pc33.atlanta.example.com", "400 Malformed Call-ID"},
	{"multiple_from", "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n", "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nf: <sip:eve@x>;tag=2\r\n", "400 Multiple From"},
	{"from_list", ";tag=1928301774", ";tag=1928301774, <sip:eve@x>", "400 Multiple From"},
	{"multiple_to", "To: Bob <sip:bob@biloxi.example.com>\r\n", "To: Bob <sip:bob@biloxi.example.com>\r\nt: <sip:eve@x>\r\n", "400 Multiple To"},
	{"multiple_cseq", "CSeq: 314159 INVITE\r\n", "CSeq: 314159 INVITE\r\nCSeq: 314160 INVITE\r\n", "400 Multiple CSeq"},
	{"cseq_list", "CSeq: 314159 INVITE", "CSeq: 314159 INVITE, 314160 INVITE", "400 Multiple CSeq"},
	{"multiple_max_forwards", "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nMax-Forwards: 69\r\n", "400 Multiple Max-Forwards"},
	{"content_length_twice", "Content-Type: application/sdp\r\n", "Content-Type: application/sdp\r\nl: 0\r\n", "400 Conflicting Content-Length"},
	{"content_length_twice_equal", "Content-Type: application/sdp\r\n", "Content-Type: application/sdp\r\nContent-Length: 138\r\n", "400 Multiple Content-Length"},
	{"ruri_angle", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE <sip:bob@biloxi.example.com> SIP/2.0", "400 Request-URI In Angle Brackets"},
	{"ruri_white_space", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob\t@biloxi.example.com SIP/2.0", "400 White Space In Request-URI"},
	{"ruri_bad_ipv6", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@[2001:db8::g] SIP/2.0", "400 Malformed IPv6 Reference"},
	{"ruri_ipv6_no_brackets", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:2001:db8::10 SIP/2.0", "400 IPv6 Address Without Brackets"},
	{"ruri_headers", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com?Subject=hi SIP/2.0", "400 Headers In Request-URI"},
	{"ruri_unparsable", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@biloxi.example.com:port SIP/2.0", "400 Malformed Port"},
	{"from_display_name", "From: Alice <", "From: Alice (Sales) <", "400 Malformed From Display Name"},
	{"to_display_name", "To: Bob <", "To: B\xc3\xb6b <", "400 Malformed To Display Name"},
	{"to_uri_white_space", "To: Bob <sip:bob@biloxi.example.com>", "To: Bob <sip:bob @biloxi.example.com>", "400 White Space In To URI"},
	{"from_uri_white_space", "From: Alice <sip:alice@atlanta.example.com>", "From: sip:alice smith@atlanta.example.com", "400 White Space In From URI"},
	{"nul_unescaped", "From: Alice <", "From: \"Al\x00ice\" <", "400 NUL In Header"},
}

// Each class of malformed request gets a 400 naming the fault, sent back to
// the client; nothing goes to an upstream. The replies are golden.
func TestMalformedClassesGet400(t *testing.T) {
	_, w := newTestWorker(t, nil)
	for _, c := range malformedClasses {
		a, o := handle(t, w, replace(invite3261, c.old, c.new), alice)
		checkGolden(t, "malformed_"+c.name, a, o)
		if a != ActionReply || o.To != alice || o.Drop != DropParseError ||
			!bytes.HasPrefix(o.Buf, []byte("SIP/2.0 "+c.status+"\r\n")) {
			t.Errorf("%s: %v to %v (%v), want %q to the client\n%s", c.name, a, o.To, o.Drop, c.status, o.Buf)
		}
	}
	s := w.Stats()
	if s.RequestsForwarded != 0 || s.LocalReplies[Local400] != uint64(len(malformedClasses)) {
		t.Errorf("forwarded %d, 400s %d; want 0 and %d", s.RequestsForwarded, s.LocalReplies[Local400], len(malformedClasses))
	}
}

// A response that repeats a singleton header is dropped and counted.
func TestMalformedResponseDropped(t *testing.T) {
	_, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	resp := respond(t, inv.Buf, "200 OK", "t1")
	if a, _ := handle(t, w, resp, up1); a != ActionForward {
		t.Fatalf("well-formed response: %v", a)
	}
	for _, bad := range [][]byte{
		replace(resp, "CSeq: 314159 INVITE\r\n", "CSeq: 314159 INVITE\r\nCSeq: 314159 INVITE\r\n"),
		replace(resp, "Content-Length: 0\r\n", "Content-Length: 0\r\nl: 0\r\n"),
		replace(resp, "Call-ID: a84b4c76e66710@pc33.atlanta.example.com", "Call-ID: a, b"),
	} {
		if a, o := handle(t, w, bad, up1); a != ActionDrop || o.Drop != DropParseError || len(o.Buf) != 0 {
			t.Errorf("%v (%v), want a silent parse_error drop\n%s", a, o.Drop, bad)
		}
	}
	if n := w.Stats().Drops[DropParseError]; n != 3 {
		t.Errorf("parse_error drops = %d, want 3", n)
	}
}

// withoutOurEdits undoes what forwarding does to a request from alice (our
// Via on top, Max-Forwards decremented), so that the rest can be compared
// with what alice sent.
func withoutOurEdits(t *testing.T, out []byte) []byte {
	t.Helper()
	m := mustParse(t, out)
	v := m.TopVia()
	h := m.Header(v.Header)
	rest := append(append([]byte(nil), out[:h.Start]...), out[h.End:]...)
	return bytes.Replace(rest, []byte("Max-Forwards: 69\r\n"), []byte("Max-Forwards: 70\r\n"), 1)
}

// Valid spellings the grammar allows are forwarded, byte for byte as they
// came apart from Viaduct's own edits.
func TestValidSpellingsForwardedUnchanged(t *testing.T) {
	_, w := newTestWorker(t, nil)
	const ext = "X-Custom.Method!%*_+`'~"
	for _, c := range []struct{ name, old, new string }{
		{"quoted-pair NUL in display name", "From: Alice <", "From: \"Al\\\x00ice\" <"},
		{"quoted comma in display name", "To: Bob <", "To: \"Builder, Bob\" <"},
		{"comma in bracketed URI", "To: Bob <sip:bob@biloxi.example.com>", "To: <sip:bob,jr@biloxi.example.com>"},
		{"folded display name", "To: Bob <", "To: Bob\r\n The Builder <"},
		{"compact singletons", "Call-ID: ", "i: "},
		{"IPv6 Request-URI", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:bob@[2001:db8::10]:5060 SIP/2.0"},
		{"tel Request-URI", "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE tel:+1-201-555-0123 SIP/2.0"},
		{"extension method", "INVITE sip:bob@biloxi.example.com SIP/2.0", ext + " sip:bob@biloxi.example.com SIP/2.0"},
	} {
		in := replace(invite3261, c.old, c.new)
		if c.name == "extension method" {
			in = replace(in, "CSeq: 314159 INVITE", "CSeq: 314159 "+ext)
		}
		a, o := handle(t, w, in, alice)
		if a != ActionForward {
			t.Errorf("%s: %v (%v), want forward\n%s", c.name, a, o.Drop, o.Buf)
			continue
		}
		if got := withoutOurEdits(t, o.Buf); !bytes.Equal(got, in) {
			t.Errorf("%s: forwarded request differs beyond Via and Max-Forwards:\n%q\nwant\n%q", c.name, got, in)
		}
	}
}

// Viaduct never sends to an unspecified, multicast or broadcast address: a
// request from an upstream naming one gets 403 naming the fault.
func TestUnsafeNextHopGets403(t *testing.T) {
	carrier := &fakeNextHops{answers: map[string]struct {
		addr  netip.AddrPort
		state NextHopState
	}{"zero.example.net:0": {netip.MustParseAddrPort("0.0.0.0:5060"), NextHopFound}}}
	_, w := newTestWorker(t, func(c *Config) { c.Path, c.NextHops = true, carrier })
	withRURI := func(ruri string) []byte {
		return replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE "+ruri)
	}
	withRoute := func(route string) []byte {
		return replace(withRURI("sip:bob@198.51.100.7"), "Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: "+route)
	}
	const unspecified, multicast, broadcast = "403 Next Hop Is An Unspecified Address", "403 Next Hop Is A Multicast Address", "403 Next Hop Is The Broadcast Address"
	for _, c := range []struct {
		name   string
		in     []byte
		status string
	}{
		{"0.0.0.0", withRURI("sip:bob@0.0.0.0"), unspecified},
		{"::", withRURI("sip:bob@[::]:5060"), unspecified},
		{"::ffff:0.0.0.0", withRURI("sip:bob@[::ffff:0.0.0.0]"), unspecified},
		{"IPv4 multicast", withRURI("sip:bob@224.0.0.1"), multicast},
		{"IPv6 multicast", withRURI("sip:bob@[ff02::1]"), multicast},
		{"maddr multicast", withRURI("sip:bob@198.51.100.7;maddr=239.1.2.3"), multicast},
		{"broadcast", withRURI("sip:bob@255.255.255.255"), broadcast},
		{"Route", withRoute("<sip:0.0.0.0;lr>"), unspecified},
		{"Path flow", withRoute("<sip:192.0.2.10:5060;lr;received=224.0.0.9:5060>"), multicast},
		{"host name resolving to 0.0.0.0", withRURI("sip:bob@zero.example.net"), unspecified},
	} {
		a, o := handle(t, w, c.in, up1)
		if a != ActionReply || o.To != up1 || o.Drop != DropUnsafeDestination || !bytes.HasPrefix(o.Buf, []byte("SIP/2.0 "+c.status+"\r\n")) {
			t.Errorf("%s: %v to %v (%v), want %q to the upstream\n%s", c.name, a, o.To, o.Drop, c.status, o.Buf)
		}
	}
	s := w.Stats()
	if s.RequestsForwarded != 0 || s.LocalReplies[Local403] != 10 || s.Drops[DropUnsafeDestination] != 10 {
		t.Errorf("forwarded %d, 403s %d, unsafe drops %d; want 0, 10, 10", s.RequestsForwarded, s.LocalReplies[Local403], s.Drops[DropUnsafeDestination])
	}
}

// A response whose next Via names such an address (a multicast maddr, as RFC
// 2543 allowed, or an unspecified one) is dropped under its own reason.
func TestUnsafeResponseDestinationDropped(t *testing.T) {
	_, w := newTestWorker(t, nil)
	for _, maddr := range []string{"239.255.255.1", "0.0.0.0", "255.255.255.255", "ff05::1"} {
		via := "SIP/2.0/UDP 198.51.100.7:5062;maddr=" + maddr + ";ttl=1;branch=z9hG4bKmaddr-" + strings.ReplaceAll(maddr, ":", "")
		req := replace(invite3261, "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", via)
		a, inv := handle(t, w, req, netip.MustParseAddrPort("198.51.100.7:5062"))
		if a != ActionForward {
			t.Fatalf("maddr %s: request %v (%v)", maddr, a, inv.Drop)
		}
		if a, o := handle(t, w, respond(t, inv.Buf, "200 OK", "m1"), inv.To); a != ActionDrop || o.Drop != DropUnsafeDestination {
			t.Errorf("maddr %s: %v to %v (%v), want an unsafe_destination drop", maddr, a, o.To, o.Drop)
		}
	}
	if n := w.Stats().Drops[DropUnsafeDestination]; n != 4 {
		t.Errorf("unsafe_destination drops = %d, want 4", n)
	}
}

// Refusing and forwarding the new classes allocates nothing.
func TestWellFormedChecksAllocateNothing(t *testing.T) {
	e, w := newTestWorker(t, nil)
	out := newOutput(e)
	for _, in := range [][]byte{
		replace(invite3261, "From: Alice <", "From: \"Al\\\x00ice\" <"),
		replace(invite3261, "CSeq: 314159 INVITE\r\n", "CSeq: 314159 INVITE\r\nCSeq: 314160 INVITE\r\n"),
		replace(invite3261, "INVITE sip:bob@biloxi.example.com SIP/2.0", "INVITE sip:2001:db8::10 SIP/2.0"),
		replace(invite3261, "To: Bob <", "To: B\xc3\xb6b <"),
		[]byte("\r\n\r\n"),
	} {
		if n := testing.AllocsPerRun(100, func() { w.Handle(in, udpFrom(alice), out) }); n != 0 {
			t.Errorf("%.1f allocations for\n%q", n, in)
		}
	}
	unsafe := replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@224.0.0.1")
	if n := testing.AllocsPerRun(100, func() { w.Handle(unsafe, udpFrom(up1), out) }); n != 0 {
		t.Errorf("%.1f allocations for a 403", n)
	}
}
