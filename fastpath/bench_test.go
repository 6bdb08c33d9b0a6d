package fastpath

import (
	"net/netip"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
)

// sippInvite is the INVITE of SIPp's built-in uac scenario (what peerbench
// sends), with its SDP.
var sippInvite = msg(`INVITE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1234-1-0
From: sipp <sip:sipp@127.0.0.1:5070>;tag=1234SIPpTag001
To: service <sip:service@127.0.0.1:5060>
Call-ID: 1-1234@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5070
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp`, `v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
`)

func benchHandle(b *testing.B, in []byte, from netip.AddrPort, want Action) {
	e, w := newTestWorker(b, nil)
	out := newOutput(e)
	if a := w.Handle(in, udpFrom(from), out); a != want {
		b.Fatalf("%v, want %v", a, want)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w.Handle(in, udpFrom(from), out)
	}
}

var sippClient = netip.MustParseAddrPort("127.0.0.1:5070")

// BenchmarkHandleInvite: parse, choose the upstream, rewrite and MAC the
// INVITE of SIPp's uac scenario.
func BenchmarkHandleInvite(b *testing.B) { benchHandle(b, sippInvite, sippClient, ActionForward) }

// BenchmarkHandleInviteSDP: the RFC 3261-style INVITE of the golden tests.
func BenchmarkHandleInviteSDP(b *testing.B) { benchHandle(b, invite3261, alice, ActionForward) }

// BenchmarkHandleResponse200: parse, verify the MAC, strip our Via and route
// the 200 OK to that INVITE.
func BenchmarkHandleResponse200(b *testing.B) {
	_, w := newTestWorker(b, nil)
	_, inv := handle(b, w, sippInvite, sippClient)
	resp := respond(b, inv.Buf, "200 OK", "5678SIPpTag011", "Contact: <sip:127.0.0.1:5071;transport=UDP>")
	benchHandle(b, resp, inv.To, ActionForward)
}

// sippBye is the BYE of SIPp's uac scenario: its Request-URI names the
// proxy (with a user part), so it is balanced on its Call-ID.
var sippBye = msg(`BYE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1234-1-7
From: sipp <sip:sipp@127.0.0.1:5070>;tag=1234SIPpTag001
To: service <sip:service@127.0.0.1:5060>;tag=5678SIPpTag011
Call-ID: 1-1234@127.0.0.1
CSeq: 2 BYE
Contact: sip:sipp@127.0.0.1:5070
Max-Forwards: 70
Subject: Performance Test`, "")

// BenchmarkHandleBye: an in-dialog request whose next hop is no upstream,
// balanced on its Call-ID.
func BenchmarkHandleBye(b *testing.B) { benchHandle(b, sippBye, sippClient, ActionForward) }

// BenchmarkHandleByeToUpstream: the same BYE addressed to an upstream's
// Contact, sent there by the dialog-routing lookup.
func BenchmarkHandleByeToUpstream(b *testing.B) {
	benchHandle(b, replace(sippBye, "BYE sip:service@127.0.0.1:5060", "BYE sip:service@192.0.2.22:5060"), sippClient, ActionForward)
}

// BenchmarkHandle2543Invite: the RFC 2543 branch derivation.
func BenchmarkHandle2543Invite(b *testing.B) { benchHandle(b, invite2543, oldPhone, ActionForward) }

// BenchmarkReply483: a stateless local reply.
func BenchmarkReply483(b *testing.B) {
	benchHandle(b, replace(sippInvite, "Max-Forwards: 70", "Max-Forwards: 0"), sippClient, ActionReply)
}

// BenchmarkMAC: the branch MAC alone (HMAC-SHA256 over prefix + a typical
// via-parm).
func BenchmarkMAC(b *testing.B) {
	m := newMacer(testKey)
	prefix := []byte("z9hG4bKvd10birphcbdi2f0bk8v64c9b")
	next := []byte("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1234-1-0;received=127.0.0.1;rport=5070")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.mac(prefix, next)
	}
}

// sippRegister is a REGISTER as SIPp sends it: hashed on its To AOR by the
// default policy.
var sippRegister = msg(`REGISTER sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1234-1-0
From: <sip:alice@Example.COM>;tag=1234SIPpTag001
To: <sip:alice@Example.COM>
Call-ID: 1-1234@127.0.0.1
CSeq: 1 REGISTER
Contact: <sip:alice@127.0.0.1:5070>
Expires: 3600
Max-Forwards: 70`, "")

// BenchmarkHandleRegisterToAOR: a REGISTER balanced by its To AOR (parse the
// To URI, hash user@lower(host)).
func BenchmarkHandleRegisterToAOR(b *testing.B) {
	benchHandle(b, sippRegister, sippClient, ActionForward)
}

// BenchmarkHandleRegisterCallID: the same REGISTER balanced by Call-ID, for
// the cost of the AOR key by difference.
func BenchmarkHandleRegisterCallID(b *testing.B) {
	benchHandleKey(b, "REGISTER", "call-id", sippRegister)
}

// BenchmarkHandleInviteRequestAOR: the INVITE of BenchmarkHandleInvite
// balanced by its Request-URI's AOR (ruri-aor: parse the Request-URI, hash
// user@lower(host)), for the cost of the key by difference.
func BenchmarkHandleInviteRequestAOR(b *testing.B) {
	benchHandleKey(b, "INVITE", "ruri-aor", sippInvite)
}

// benchHandleKey measures Handle of request in from sippClient with the
// requests of method balanced by key rule.
func benchHandleKey(b *testing.B, method, rule string, in []byte) {
	e, w := newTestWorker(b, func(c *Config) {
		c.Keys, _ = balancer.ParsePolicy(map[string]string{method: rule})
	})
	out := newOutput(e)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		w.Handle(in, udpFrom(sippClient), out)
	}
}

// BenchmarkKeyHash: extracting and hashing the balancing key of an INVITE
// already parsed, per key rule (the part of Handle a rule changes).
func BenchmarkKeyHash(b *testing.B) {
	for _, rule := range []string{"call-id", "to-aor", "ruri-user", "ruri-aor"} {
		b.Run(rule, func(b *testing.B) {
			_, w := newTestWorker(b, func(c *Config) {
				c.Keys, _ = balancer.ParsePolicy(map[string]string{"INVITE": rule})
			})
			if err := parser.Parse(sippInvite, &w.m); err != nil {
				b.Fatal(err)
			}
			to, err := w.m.To()
			if err != nil {
				b.Fatal(err)
			}
			w.rt = w.e.route.Load()
			b.ReportAllocs()
			for b.Loop() {
				w.keyHash(&to, nil)
			}
			if n := w.Stats().KeyFallbacks; n != 0 {
				b.Fatalf("%d key fallbacks", n)
			}
		})
	}
}
