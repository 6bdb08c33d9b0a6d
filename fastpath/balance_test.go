package fastpath

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// mustPolicy parses config-style key rules.
func mustPolicy(t testing.TB, rules map[string]string) *balancer.Policy {
	t.Helper()
	p, err := balancer.ParsePolicy(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// keyOf parses req into the worker's message and returns its key hash and
// whether the worker fell back to the Call-ID.
func keyOf(t *testing.T, w *Worker, req []byte) (uint64, bool) {
	t.Helper()
	if err := parser.Parse(req, &w.m); err != nil {
		t.Fatalf("parse: %v\n%s", err, req)
	}
	to, err := w.m.To()
	if err != nil {
		t.Fatal(err)
	}
	before := w.Stats().KeyFallbacks
	h := w.keyHash(&to, nil)
	return h, w.Stats().KeyFallbacks != before
}

// request builds a request with the given start line target, To and From
// URIs and extra header lines.
func request(method, ruri, to, from, callID string, extra ...string) []byte {
	head := fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-%s\nMax-Forwards: 70\nTo: %s\nFrom: %s;tag=f1\nCall-ID: %s\nCSeq: 1 %s",
		method, ruri, strings.NewReplacer("@", "-", ".", "-").Replace(callID), to, from, callID, method)
	for _, x := range extra {
		head += "\n" + x
	}
	return msg(head, "")
}

func TestKeyExtraction(t *testing.T) {
	policy := mustPolicy(t, map[string]string{
		"REGISTER":  "to-aor",
		"MESSAGE":   "from-uri",
		"INVITE":    "ruri-user",
		"PUBLISH":   "header:X-Tenant",
		"SUBSCRIBE": "header:subject",  // compact form s, name case-insensitive
		"FOO":       "header:X-Tenant", // an extension method
		"*":         "call-id",
	})
	_, w := newTestWorker(t, func(c *Config) { c.Keys = policy })
	const cid = "cid-1@host"
	cases := []struct {
		name     string
		req      []byte
		key      string // the string whose HashKey is expected
		fallback bool
	}{
		{"to-aor", request("REGISTER", "sip:example.com", "\"Alice\" <sip:alice@example.com>", "<sip:alice@example.com>", cid), "alice@example.com", false},
		{"to-aor host lower-cased, no port or params", request("REGISTER", "sip:example.com",
			"<sip:alice@Example.COM:5061;transport=udp?x=y>;tag=zz", "<sip:alice@example.com>", cid), "alice@example.com", false},
		{"to-aor user case kept", request("REGISTER", "sip:example.com", "<sip:Alice@example.com>", "<sip:x@y>", cid), "Alice@example.com", false},
		{"to-aor sips and password", request("REGISTER", "sip:example.com", "<sips:alice:secret@example.com>", "<sip:x@y>", cid), "alice@example.com", false},
		{"to-aor escaped user", request("REGISTER", "sip:example.com", "sip:%61lice@example.com", "<sip:x@y>", cid), "alice@example.com", false},
		{"to-aor IPv6 host", request("REGISTER", "sip:example.com", "<sip:bob@[2001:DB8::1]:5060>", "<sip:x@y>", cid), "bob@2001:db8::1", false},
		{"to-aor without user", request("REGISTER", "sip:example.com", "<sip:Example.com>", "<sip:x@y>", cid), "example.com", false},
		{"to-aor longer than the worker's buffer", request("REGISTER", "sip:example.com", "<sip:"+strings.Repeat("u", 600)+"@Example.com>", "<sip:x@y>", cid), strings.Repeat("u", 600) + "@example.com", false},
		{"to-aor compact t", replace(request("REGISTER", "sip:example.com", "<sip:carol@example.com>", "<sip:x@y>", cid), "\r\nTo: ", "\r\nt: "), "carol@example.com", false},
		{"to-aor tel URI falls back", request("REGISTER", "sip:example.com", "<tel:+15551234>", "<sip:x@y>", cid), cid, true},
		{"from-uri", request("MESSAGE", "sip:bob@example.com", "<sip:bob@example.com>", "Carol <sip:carol@Chicago.example.com;user=phone>", cid), "carol@chicago.example.com", false},
		{"ruri-user", request("INVITE", "sip:+15551234@gw.example.com;user=phone", "<sip:x@y>", "<sip:a@b>", cid), "+15551234", false},
		{"ruri-user escaped", request("INVITE", "sip:b%6Fb@gw.example.com", "<sip:x@y>", "<sip:a@b>", cid), "bob", false},
		{"ruri-user tel", request("INVITE", "tel:+15551234;phone-context=example.com", "<sip:x@y>", "<sip:a@b>", cid), "+15551234", false},
		{"ruri-user without user falls back", request("INVITE", "sip:gw.example.com", "<sip:x@y>", "<sip:a@b>", cid), cid, true},
		{"header", request("PUBLISH", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "x-tenant:  acme "), "acme", false},
		{"header missing falls back", request("PUBLISH", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid), cid, true},
		{"header compact form", request("SUBSCRIBE", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "s: weather"), "weather", false},
		{"header long form", request("SUBSCRIBE", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "Subject: weather"), "weather", false},
		{"header, extension method", request("FOO", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "X-Tenant: acme"), "acme", false},
		{"call-id default", request("OPTIONS", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid), cid, false},
		// CANCEL and ACK hash INVITE's key, whatever "*" says.
		{"CANCEL follows INVITE", request("CANCEL", "sip:+15551234@gw.example.com", "<sip:x@y>", "<sip:a@b>", cid), "+15551234", false},
		{"ACK follows INVITE", request("ACK", "sip:+15551234@gw.example.com", "<sip:x@y>;tag=t", "<sip:a@b>", cid), "+15551234", false},
	}
	for _, c := range cases {
		h, fb := keyOf(t, w, c.req)
		if want := balancer.HashKeyString(c.key); h != want || fb != c.fallback {
			t.Errorf("%s: hash %x fallback %v, want HashKey(%q) = %x, fallback %v", c.name, h, fb, c.key, want, c.fallback)
		}
	}
}

// ruri-aor hashes the Request-URI's AOR exactly as to-aor hashes the To
// URI's: one AOR, however each header spells it, has one hash, so the
// INVITE (and its CANCEL and non-2xx ACK, which copy its Request-URI) of a
// user reaches the registrar that the user's REGISTERs reached.
func TestRequestAORMatchesToAOR(t *testing.T) {
	_, w := newTestWorker(t, func(c *Config) {
		c.Keys = mustPolicy(t, map[string]string{"REGISTER": "to-aor", "INVITE": "ruri-aor", "MESSAGE": "ruri-aor"})
	})
	const cid = "cid-aor@host"
	long := strings.Repeat("u", 600) // beyond the worker's buffers
	cases := []struct {
		name     string
		to, ruri string // the AOR in a REGISTER's To, in an INVITE's Request-URI
		aor      string // the string whose HashKey both must have
	}{
		{"plain", "<sip:alice@example.com>", "sip:alice@example.com", "alice@example.com"},
		{"README's example", "<sip:Alice@Example.COM:5060>", "sips:Alice@example.com;user=phone", "Alice@example.com"},
		{"display name and tag in To", `"Alice" <sip:alice@example.com>;tag=9fxced76sl`, "sip:alice@example.com", "alice@example.com"},
		{"To without angle brackets", "sip:alice@example.com", "sip:alice@example.com", "alice@example.com"},
		{"host case", "<sip:alice@Example.COM>", "sip:alice@example.com", "alice@example.com"},
		{"host case in the Request-URI", "<sip:alice@example.com>", "sip:alice@EXAMPLE.com", "alice@example.com"},
		{"port and parameters ignored", "<sip:alice@example.com:5061;transport=tcp>", "sip:alice@example.com:5060;transport=udp;user=phone;maxaddr=x", "alice@example.com"},
		{"URI headers ignored", "<sip:alice@example.com?Subject=hi>", "sip:alice@example.com", "alice@example.com"},
		{"sips and sip", "<sips:alice@example.com>", "sip:alice@example.com", "alice@example.com"},
		{"sip and sips", "<sip:alice@example.com>", "sips:alice@example.com", "alice@example.com"},
		{"password ignored", "<sip:alice@example.com>", "sip:alice:secret@example.com", "alice@example.com"},
		{"escaped user in the Request-URI", "<sip:alice@example.com>", "sip:%61lic%65@example.com", "alice@example.com"},
		{"escaped user in To", "<sip:%61lice@example.com>", "sip:alice@example.com", "alice@example.com"},
		{"escaped @ in a user", "<sip:a%40b@example.com>", "sip:a%40b@example.com", "a@b@example.com"},
		{"telephone-number user", "<sip:+15551234@gw.example.com;user=phone>", "sip:+15551234@GW.example.com;user=phone", "+15551234@gw.example.com"},
		{"IPv6 host", "<sip:bob@[2001:DB8::1]:5060>", "sip:bob@[2001:db8::1]", "bob@2001:db8::1"},
		{"IPv4 host", "<sip:bob@192.0.2.99>", "sip:bob@192.0.2.99:5060", "bob@192.0.2.99"},
		{"no user part: the host alone", "<sip:Example.com>", "sip:example.com:5060", "example.com"},
		{"longer than the worker's buffers", "<sip:" + long + "@Example.com>", "sip:" + long + "@example.COM;lr", long + "@example.com"},
	}
	want := func(name, method string, req []byte, aor string) {
		t.Helper()
		h, fb := keyOf(t, w, req)
		if h != balancer.HashKeyString(aor) || fb {
			t.Errorf("%s: %s hashed %x (fallback %v), want HashKey(%q) = %x", name, method, h, fb, aor, balancer.HashKeyString(aor))
		}
	}
	for _, c := range cases {
		// The REGISTER's From and the INVITE's To name other AORs: each
		// key must come from its own header.
		want(c.name, "REGISTER", request("REGISTER", "sip:example.com", c.to, "<sip:admin@example.org>", cid), c.aor)
		want(c.name, "INVITE", request("INVITE", c.ruri, "<sip:other@example.net>", "<sip:caller@example.net>", cid), c.aor)
		want(c.name, "MESSAGE", request("MESSAGE", c.ruri, "<sip:other@example.net>", "<sip:caller@example.net>", cid), c.aor)
		want(c.name, "CANCEL", request("CANCEL", c.ruri, "<sip:other@example.net>", "<sip:caller@example.net>", cid), c.aor)
		want(c.name, "non-2xx ACK", request("ACK", c.ruri, "<sip:other@example.net>;tag=487x", "<sip:caller@example.net>", cid), c.aor)
	}

	// The user part keeps its case (RFC 3261 19.1.4): two AORs.
	upper, _ := keyOf(t, w, request("INVITE", "sip:Alice@example.com", "<sip:x@y>", "<sip:a@b>", cid))
	lower, _ := keyOf(t, w, request("INVITE", "sip:alice@example.com", "<sip:x@y>", "<sip:a@b>", cid))
	if upper == lower {
		t.Errorf("sip:Alice@ and sip:alice@ hashed alike")
	}
	// A tel URI has no AOR: the Call-ID, counted as a fallback.
	if h, fb := keyOf(t, w, request("INVITE", "tel:+15551234;phone-context=example.com", "<sip:x@y>", "<sip:a@b>", cid)); h != balancer.HashKeyString(cid) || !fb {
		t.Errorf("tel URI: hash %x fallback %v, want the Call-ID's, counted", h, fb)
	}
}

// Registrars that do not share their location table: with REGISTER on
// to-aor and INVITE on ruri-aor, every user's INVITEs, with any Call-ID,
// and their CANCELs and non-2xx ACKs reach the upstream its REGISTERs
// reached, and the users spread over both upstreams.
func TestRegistrarClusterAffinity(t *testing.T) {
	_, w := newTestWorker(t, func(c *Config) {
		c.Keys = mustPolicy(t, map[string]string{"REGISTER": "to-aor", "INVITE": "ruri-aor"})
	})
	seen := map[netip.AddrPort]int{}
	for i := 0; i < 200; i++ {
		to := fmt.Sprintf("<sip:user%d@Example.com>", i)
		reg := request("REGISTER", "sip:example.com", to, to, fmt.Sprintf("reg-%d@phone", i), fmt.Sprintf("Contact: <sip:user%d@10.0.0.9:5060>", i))
		a, o := handle(t, w, reg, alice)
		if a != ActionForward {
			t.Fatalf("REGISTER %d: %v", i, a)
		}
		registrar := o.To
		seen[registrar]++
		ruri := fmt.Sprintf("sip:user%d@example.com;transport=udp", i)
		for j := 0; j < 3; j++ {
			cid := fmt.Sprintf("call-%d-%d@caller", i, j)
			callee, caller := fmt.Sprintf("<sip:user%d@example.com>", i), "<sip:caller@example.net>"
			for _, req := range []struct {
				method string
				b      []byte
			}{
				{"INVITE", request("INVITE", ruri, callee, caller, cid)},
				{"CANCEL", request("CANCEL", ruri, callee, caller, cid)},
				{"non-2xx ACK", request("ACK", ruri, callee+";tag=487", caller, cid)},
			} {
				if a, o := handle(t, w, req.b, alice); a != ActionForward || o.To != registrar {
					t.Fatalf("user%d, call %d: %s %v to %v, want %v (its REGISTER's upstream)", i, j, req.method, a, o.To, registrar)
				}
			}
		}
	}
	if seen[up1] < 60 || seen[up2] < 60 {
		t.Errorf("200 users registered %v, want both upstreams to hold users", seen)
	}
	if n := w.Stats().KeyFallbacks; n != 0 {
		t.Errorf("%d key fallbacks, want 0", n)
	}
}

// Without Keys the default policy applies: REGISTER by To AOR, the rest by
// Call-ID.
func TestDefaultKeys(t *testing.T) {
	_, w := newTestWorker(t, nil)
	reg := request("REGISTER", "sip:example.com", "<sip:alice@example.com>", "<sip:alice@example.com>", "reg-1")
	if h, _ := keyOf(t, w, reg); h != balancer.HashKeyString("alice@example.com") {
		t.Errorf("REGISTER not hashed on its To AOR")
	}
	if h, _ := keyOf(t, w, invite3261); h != balancer.HashKeyString("a84b4c76e66710@pc33.atlanta.example.com") {
		t.Errorf("INVITE not hashed on its Call-ID")
	}
}

// REGISTERs of one AOR with fresh Call-IDs reach one upstream; many AORs
// reach both.
func TestRegisterAffinity(t *testing.T) {
	_, w := newTestWorker(t, nil)
	first := netip.AddrPort{}
	for i := 0; i < 50; i++ {
		reg := request("REGISTER", "sip:example.com", "<sip:alice@example.com>", "<sip:alice@example.com>", fmt.Sprintf("reg-%d@client", i),
			"Contact: <sip:alice@198.51.100.7>")
		a, o := handle(t, w, reg, alice)
		if a != ActionForward {
			t.Fatalf("REGISTER %d: %v", i, a)
		}
		if i == 0 {
			first = o.To
		} else if o.To != first {
			t.Fatalf("REGISTER %d of one AOR went to %v, the first to %v", i, o.To, first)
		}
	}
	seen := map[netip.AddrPort]int{}
	for i := 0; i < 100; i++ {
		aor := fmt.Sprintf("<sip:user%d@example.com>", i)
		_, o := handle(t, w, request("REGISTER", "sip:example.com", aor, aor, "same-call-id"), alice)
		seen[o.To]++
	}
	if seen[up1] < 25 || seen[up2] < 25 {
		t.Errorf("100 AORs spread %v", seen)
	}
}

// inDialog: a To tag, except CANCEL and an ACK without Route.
func TestInDialog(t *testing.T) {
	tag := []byte("t1")
	cases := []struct {
		meth   parser.Method
		tag    []byte
		routes int
		want   bool
	}{
		{parser.MethodINVITE, nil, 0, false},
		{parser.MethodINVITE, tag, 0, true},
		{parser.MethodBYE, tag, 0, true},
		{parser.MethodOther, tag, 0, true},
		{parser.MethodCANCEL, tag, 0, false},
		{parser.MethodCANCEL, tag, 1, false},
		{parser.MethodACK, tag, 0, false}, // the ACK of a non-2xx
		{parser.MethodACK, tag, 1, true},  // the ACK of a 2xx, following the route set
		{parser.MethodACK, nil, 1, false},
	}
	for _, c := range cases {
		if got := inDialog(c.meth, c.tag, c.routes); got != c.want {
			t.Errorf("inDialog(%v, %q, %d) = %v", c.meth, c.tag, c.routes, got)
		}
	}
}

// A draining upstream keeps the in-dialog requests of the keys it owns, and
// the CANCEL and non-2xx ACK of an INVITE go where the INVITE went.
func TestDrainThroughHandle(t *testing.T) {
	e, w := newTestWorker(t, nil)
	// Find a Call-ID that up1 owns while both are enabled.
	callID := ""
	for i := 0; callID == ""; i++ {
		id := fmt.Sprintf("drain-%d@client", i)
		if _, o := handle(t, w, replace(invite3261, "a84b4c76e66710@pc33.atlanta.example.com", id), alice); o.To == up1 {
			callID = id
		}
	}
	if err := e.Pool().SetAdmin(balancer.DefaultID("udp", up1), balancer.Draining); err != nil {
		t.Fatal(err)
	}
	with := func(b []byte) []byte { return replace(b, "a84b4c76e66710@pc33.atlanta.example.com", callID) }
	bye := replace(replace(ack3261, "ACK sip", "BYE sip"), "314159 ACK", "314160 BYE")
	ack2xxRouted := replace(ack3261, "Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: <sip:192.0.2.10:5060;lr>")
	cancelTagged := replace(cancel3261, "<sip:bob@biloxi.example.com>", "<sip:bob@biloxi.example.com>;tag=x")
	for _, c := range []struct {
		name string
		req  []byte
		want netip.AddrPort
	}{
		{"new INVITE", invite3261, up2},
		{"CANCEL", cancel3261, up2},
		{"CANCEL with a To tag", cancelTagged, up2},
		{"non-2xx ACK", ack3261, up2},
		{"BYE", bye, up1},
		{"2xx ACK with Route", ack2xxRouted, up1},
	} {
		if a, o := handle(t, w, with(c.req), alice); a != ActionForward || o.To != c.want {
			t.Errorf("%s while up1 drains: %v to %v, want %v", c.name, a, o.To, c.want)
		}
	}
}

// An in-dialog request whose next hop (next Route, else Request-URI) is an
// upstream goes to that upstream while it takes in-dialog requests, wherever
// its key hashes: a call set up on up2 while up1, its key's owner, drained
// keeps its BYE on up2. Initial requests, CANCEL and non-2xx ACK never
// follow it, and a next hop that is not a usable upstream is balanced as
// before.
func TestDialogFollowsItsUpstream(t *testing.T) {
	e, w := newTestWorker(t, func(c *Config) { c.RecordRoute = true })
	callID := ""
	for i := 0; callID == ""; i++ {
		id := fmt.Sprintf("dialog-%d@client", i)
		if _, o := handle(t, w, replace(invite3261, "a84b4c76e66710@pc33.atlanta.example.com", id), alice); o.To == up1 {
			callID = id
		}
	}
	with := func(b []byte) []byte { return replace(b, "a84b4c76e66710@pc33.atlanta.example.com", callID) }
	// In-dialog requests of a call on up2, addressed to its Contact, with
	// and without Viaduct's Record-Route in their route set.
	bye := func(ruri string, routes ...string) []byte {
		b := replace(replace(ack3261, "ACK sip:bob@biloxi.example.com", "BYE "+ruri), "314159 ACK", "314160 BYE")
		for _, r := range routes {
			b = replace(b, "Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: "+r)
		}
		return with(b)
	}
	reinvite := with(replace(replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@192.0.2.22:5060"),
		"Bob <sip:bob@biloxi.example.com>", "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"))
	routedBye := bye("sip:bob@biloxi.example.com", "<sip:192.0.2.10:5060;lr>, <sip:192.0.2.22;lr>")
	ack2xx := with(replace(replace(ack3261, "ACK sip:bob@biloxi.example.com", "ACK sip:bob@192.0.2.22:5060"),
		"Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: <sip:192.0.2.10:5060;lr>"))

	type step struct {
		name   string
		req    []byte
		want   netip.AddrPort
		routed bool // counted in Stats.DialogRouted
	}
	run := func(phase string, steps []step) {
		t.Helper()
		for _, c := range steps {
			before := w.Stats().DialogRouted
			a, o := handle(t, w, c.req, alice)
			if a != ActionForward || o.To != c.want {
				t.Errorf("%s: %s: %v to %v, want %v", phase, c.name, a, o.To, c.want)
			}
			if routed := w.Stats().DialogRouted != before; routed != c.routed {
				t.Errorf("%s: %s: counted as routed by its dialog: %v, want %v", phase, c.name, routed, c.routed)
			}
		}
	}
	run("both enabled", []step{
		{"BYE to up2's Contact", bye("sip:bob@192.0.2.22:5060"), up2, true},
		{"BYE to up2's Contact, no port", bye("sip:bob@192.0.2.22"), up2, true},
		{"BYE routed by up2's Record-Route after ours", routedBye, up2, true},
		{"re-INVITE to up2's Contact", reinvite, up2, true},
		{"2xx ACK to up2's Contact after our Route", ack2xx, up2, true},
		{"BYE to a host that is no upstream", bye("sip:bob@198.51.100.99:5060"), up1, false},
		{"BYE to an upstream's address on another port", bye("sip:bob@192.0.2.22:5070"), up1, false},
		{"BYE to a host name", bye("sip:bob@pbx.example.com"), up1, false},
		{"BYE to up2 by a tel URI", bye("tel:+15551234;phone-context=192.0.2.22"), up1, false},
		{"new INVITE addressed to up2", with(replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@192.0.2.22:5060")), up1, false},
		{"CANCEL addressed to up2", with(replace(cancel3261, "CANCEL sip:bob@biloxi.example.com", "CANCEL sip:bob@192.0.2.22:5060")), up1, false},
		{"non-2xx ACK addressed to up2", with(replace(ack3261, "ACK sip:bob@biloxi.example.com", "ACK sip:bob@192.0.2.22:5060")), up1, false},
	})

	// up1 drains: new calls of the key go to up2 and their dialogs stay
	// there; a dialog that names up1 still reaches it.
	if err := e.Pool().SetAdmin(balancer.DefaultID("udp", up1), balancer.Draining); err != nil {
		t.Fatal(err)
	}
	run("up1 draining", []step{
		{"new INVITE", with(invite3261), up2, false},
		{"BYE to up2's Contact", bye("sip:bob@192.0.2.22:5060"), up2, true},
		{"BYE routed by up2's Record-Route", routedBye, up2, true},
		{"BYE to up1's Contact", bye("sip:bob@192.0.2.21:5060"), up1, true},
		{"BYE to a host that is no upstream", bye("sip:bob@198.51.100.99:5060"), up1, false},
	})

	// up2 is down or disabled: its dialogs are lost, and their requests
	// are balanced as before rather than sent to a dead or banned server.
	if err := e.Pool().SetAdmin(balancer.DefaultID("udp", up1), balancer.Enabled); err != nil {
		t.Fatal(err)
	}
	if err := e.Pool().SetHealth(balancer.DefaultID("udp", up2), balancer.Down); err != nil {
		t.Fatal(err)
	}
	run("up2 down", []step{{"BYE to up2's Contact", bye("sip:bob@192.0.2.22:5060"), up1, false}})
	if err := e.Pool().Batch(func(b *balancer.Batch) error {
		if err := b.SetHealth(balancer.DefaultID("udp", up2), balancer.Up); err != nil {
			return err
		}
		return b.SetAdmin(balancer.DefaultID("udp", up2), balancer.Disabled)
	}); err != nil {
		t.Fatal(err)
	}
	run("up2 disabled", []step{{"BYE to up2's Contact", bye("sip:bob@192.0.2.22:5060"), up1, false}})
}

// With round robin, which has no key affinity, in-dialog requests still
// reach the upstream their dialog names; with a custom Picker the Picker
// decides alone.
func TestDialogFollowsItsUpstreamModes(t *testing.T) {
	bye := replace(replace(ack3261, "ACK sip:bob@biloxi.example.com", "BYE sip:bob@192.0.2.22:5060"), "314159 ACK", "314160 BYE")
	_, rr := newTestWorker(t, func(c *Config) { c.Balance = balancer.ModeRoundRobin })
	for i := 0; i < 10; i++ {
		if a, o := handle(t, rr, bye, alice); a != ActionForward || o.To != up2 {
			t.Fatalf("round robin, BYE %d to up2's Contact: %v to %v", i, a, o.To)
		}
	}
	_, pw := newTestWorker(t, func(c *Config) { c.Picker = fixedPicker{up1} })
	if a, o := handle(t, pw, bye, alice); a != ActionForward || o.To != up1 {
		t.Errorf("custom Picker, BYE to up2's Contact: %v to %v, want the Picker's %v", a, o.To, up1)
	}
}

// fixedPicker always picks one address.
type fixedPicker struct{ to netip.AddrPort }

func (p fixedPicker) Pick(uint64, bool) (netip.AddrPort, bool) { return p.to, true }

// invites sends n INVITEs with random Call-IDs through w and counts them per
// destination.
func invites(t *testing.T, w *Worker, n int, seed uint64) map[netip.AddrPort]int {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	out := newOutput(w.e)
	seen := map[netip.AddrPort]int{}
	const orig = "a84b4c76e66710@pc33.atlanta.example.com" // 39 bytes
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%016x%016x@pc33.example.com", rng.Uint64(), rng.Uint64())[:len(orig)]
		if a := w.Handle(replace(invite3261, orig, id), udpFrom(alice), out); a != ActionForward {
			t.Fatalf("INVITE %d: %v", i, a)
		}
		seen[out.To]++
	}
	return seen
}

// weightedPool configures a pool of a (up1, weight 3) and b (up2, weight 0:
// 1) in priority group 0 and, in group 1, standby at standby.
func weightedPool(standby netip.AddrPort) func(*Config) {
	return func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{
			{ID: "a", Addr: up1, Weight: 3},
			{ID: "b", Addr: up2}, // weight 0: 1
			{ID: "standby", Addr: standby, Priority: 1},
		}
	}
}

func TestWeightsAndPriorities(t *testing.T) {
	up3 := netip.MustParseAddrPort("192.0.2.23:5060")
	e, w := newTestWorker(t, weightedPool(up3))
	const n = 4000
	seen := invites(t, w, n, 1)
	if seen[up3] != 0 {
		t.Errorf("standby (priority 1) got %d calls while priority 0 is up", seen[up3])
	}
	if share := float64(seen[up1]) / n; share < 0.70 || share > 0.80 {
		t.Errorf("weight 3:1 split %v: share of a %.3f, want 0.75±0.05", seen, share)
	}
	// Priority 0 down: the standby group takes everything.
	for _, id := range []string{"a", "b"} {
		if err := e.Pool().SetHealth(id, balancer.Down); err != nil {
			t.Fatal(err)
		}
	}
	if seen := invites(t, w, 200, 2); seen[up3] != 200 {
		t.Errorf("with priority 0 down: %v, want all on the standby", seen)
	}
	// The configured IDs are the pool's, and a target is a configured
	// upstream (routes by Route/Request-URI) by its address.
	var ids []string
	for _, tg := range e.Targets() {
		ids = append(ids, tg.ID+"="+tg.Addr.String())
	}
	if got := strings.Join(ids, " "); got != "a=192.0.2.21:5060 b=192.0.2.22:5060 standby=192.0.2.23:5060" {
		t.Errorf("targets %s", got)
	}
	if !e.route.Load().isUpstream(up3, transport.UDP) {
		t.Errorf("a target's address is not a configured upstream")
	}
}

func TestRoundRobin(t *testing.T) {
	e, w := newTestWorker(t, func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{{Addr: up1, Weight: 3}, {Addr: up2, Weight: 1}}
		c.Balance = balancer.ModeRoundRobin
		c.Keys = mustPolicy(t, map[string]string{"*": "header:X-Missing"})
	})
	// One INVITE, sent again and again: round robin ignores the key.
	out := newOutput(e)
	seen := map[netip.AddrPort]int{}
	for i := 0; i < 400; i++ {
		w.Handle(invite3261, udpFrom(alice), out)
		seen[out.To]++
	}
	if seen[up1] != 300 || seen[up2] != 100 {
		t.Errorf("weights 3:1 over 400 requests: %v, want exactly 300 and 100", seen)
	}
	if n := w.Stats().KeyFallbacks; n != 0 {
		t.Errorf("round robin extracted %d keys", n)
	}
	// Workers start at different positions of the cycle.
	if w2, w3 := e.NewWorker(), e.NewWorker(); w2.rr == w3.rr {
		t.Errorf("two workers share a cursor start")
	}
}

func TestTargetsValidation(t *testing.T) {
	cases := []struct {
		targets []balancer.Target
		ups     []netip.AddrPort
		want    string
	}{
		{[]balancer.Target{{Addr: up1}, {Addr: up2, Weight: 1001}}, nil, "upstreams[1].weight: must be 1..1000, got 1001"},
		{[]balancer.Target{{Addr: up1, Weight: -1}}, nil, "upstreams[0].weight: must be 1..1000, got -1"},
		{[]balancer.Target{{Addr: up1, Priority: -1}}, nil, "upstreams[0].priority: must be 0..65535"},
		{[]balancer.Target{{Addr: up1, ID: "x"}, {Addr: up2, ID: "x"}}, nil, `upstreams[1].id: "x" is also the id of upstreams[0]`},
		{[]balancer.Target{{Addr: up1, ID: "has space"}}, nil, "upstreams[0].id: \"has space\": only printable"},
		{[]balancer.Target{{Addr: up1}, {Addr: up1}}, nil, "upstreams[1].address: duplicate of upstreams[0]"},
		{[]balancer.Target{{Addr: netip.MustParseAddrPort("0.0.0.0:5060")}}, nil, "upstreams[0].address: unspecified address"},
		{[]balancer.Target{{Addr: up1, Transport: "tcp"}}, nil, `upstreams[0].transport: tcp upstream 192.0.2.21:5060 needs a tcp listen address`},
		{[]balancer.Target{{Addr: up1, Transport: "ws"}}, nil, `upstreams[0].transport: "ws": want one of udp, tcp, tls`},
		{[]balancer.Target{{Addr: up1}}, []netip.AddrPort{up2}, "upstreams: give Upstreams or Targets, not both"},
	}
	for _, c := range cases {
		cfg := testConfig()
		cfg.Upstreams, cfg.Targets = c.ups, c.targets
		err := cfg.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want a FieldError %q", c.targets, err, c.want)
		}
	}
	cfg := testConfig()
	cfg.Balance = 7
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "balance.mode") {
		t.Errorf("mode 7: %v", err)
	}
}

func TestResponseObserver(t *testing.T) {
	e, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	resp := respond(t, inv.Buf, "503 Service Unavailable", "x")
	type obs struct {
		from   netip.AddrPort
		status int
	}
	var got []obs
	e.SetResponseObserver(func(from netip.AddrPort, status int) { got = append(got, obs{from, status}) })
	if a, _ := handle(t, w, resp, up1); a != ActionForward {
		t.Fatalf("503: %v", a)
	}
	// A forged response is not relayed and not observed.
	handle(t, w, replace(resp, "192.0.2.10:5060", "192.0.2.11:5060"), up2)
	if len(got) != 1 || got[0] != (obs{up1, 503}) {
		t.Errorf("observed %v, want one 503 from %v", got, up1)
	}
	e.SetResponseObserver(nil)
	handle(t, w, resp, up1)
	if len(got) != 1 {
		t.Errorf("observer still called after removal")
	}
}
