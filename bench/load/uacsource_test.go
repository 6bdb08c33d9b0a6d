package load

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// testSource is a UAC source without a socket: what it sends is captured.
type testSource struct {
	*uacSource
	sent []string
}

func newTestSource(t *testing.T, cfg UACConfig) *testSource {
	t.Helper()
	cfg.Target = netip.MustParseAddrPort("127.0.0.1:5060")
	c, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testSource{}
	ts.uacSource = newSource(nil, &c, 0, netip.MustParseAddrPort("127.0.0.1:40000"), "r1", 8, 1e9)
	ts.sink = func(b []byte) { ts.sent = append(ts.sent, string(b)) }
	return ts
}

// take returns the messages sent since the last call.
func (ts *testSource) take() []string {
	ts.flush()
	s := ts.sent
	ts.sent = nil
	return s
}

// at moves the source's clock to t (ns) and fires due timers.
func (ts *testSource) at(t int64) {
	ts.now = t
	ts.wheel.advance(t, ts.fireFn)
}

func (ts *testSource) feed(t *testing.T, msg string) {
	t.Helper()
	ts.onDatagram([]byte(msg))
}

func (ts *testSource) counter(k counter) uint64 { return ts.st.c[k].Load() }

func mustParse(t *testing.T, s string) *parser.Message {
	t.Helper()
	m := new(parser.Message)
	if err := parser.Parse([]byte(s), m); err != nil {
		t.Fatalf("parse %v:\n%s", err, s)
	}
	return m
}

func header(t *testing.T, msg, name string) string {
	t.Helper()
	m := mustParse(t, msg)
	h, ok := m.FindName([]byte(name))
	if !ok {
		return ""
	}
	return string(h.Value)
}

func startLine(msg string) string { return msg[:strings.Index(msg, "\r\n")] }

// reply builds a response to request req as a UAS would: the request's
// Via, From, Call-ID and CSeq, its To with toTag added (unless empty), and
// extra header lines.
func reply(t *testing.T, req string, code int, toTag string, extra ...string) string {
	t.Helper()
	m := mustParse(t, req)
	return string(testenv.AppendResponse(nil, m, fmt.Sprintf("%d %s", code, reason(code)), toTag, extra...))
}

func TestCallScenarioHappyPath(t *testing.T) {
	ts := newTestSource(t, UACConfig{})
	if !ts.startCall() {
		t.Fatal("startCall failed with an empty table")
	}
	out := ts.take()
	if len(out) != 1 {
		t.Fatalf("startCall sent %d messages, want the INVITE", len(out))
	}
	inv := out[0]
	if got := startLine(inv); got != "INVITE sip:100000@127.0.0.1:5060 SIP/2.0" {
		t.Fatalf("request line %q", got)
	}
	m := mustParse(t, inv)
	if n, meth := m.CSeq(); n != 1 || string(meth) != "INVITE" {
		t.Fatalf("CSeq %d %s", n, meth)
	}
	if v := m.TopVia(); string(v.Host) != "127.0.0.1" || v.Port != 40000 || !v.HasCookie() || !v.HasRPort {
		t.Fatalf("Via %q", header(t, inv, "Via"))
	}
	if cl, _ := m.ContentLength(); cl != len(m.Body()) || cl < 100 || string(m.ContentType()) != "application/sdp" {
		t.Fatalf("Content-Length %d body %d type %q", cl, len(m.Body()), m.ContentType())
	}
	if c := header(t, inv, "Contact"); c != "<sip:load@127.0.0.1:40000>" {
		t.Fatalf("Contact %q", c)
	}

	// Provisional responses: nothing to send.
	ts.now += 1e6
	ts.feed(t, reply(t, inv, 100, ""))
	ts.feed(t, reply(t, inv, 180, "uas1"))
	if out := ts.take(); len(out) != 0 {
		t.Fatalf("sent %d messages on 1xx", len(out))
	}
	// 200 with a Contact and two Record-Routes: ACK to the Contact with
	// the route set reversed, then the BYE at once (no hold).
	ts.now += 2e6
	ok := reply(t, inv, 200, "uas1", "Record-Route: <sip:p2.example;lr>", "Record-Route: <sip:p1.example;lr>, <sip:p0.example;lr>",
		"Contact: <sip:uas@127.0.0.1:5071>")
	ts.feed(t, ok)
	out = ts.take()
	if len(out) != 2 {
		t.Fatalf("on 200 sent %d messages, want ACK and BYE", len(out))
	}
	ack, bye := out[0], out[1]
	if startLine(ack) != "ACK sip:uas@127.0.0.1:5071 SIP/2.0" || startLine(bye) != "BYE sip:uas@127.0.0.1:5071 SIP/2.0" {
		t.Fatalf("in-dialog request lines %q / %q", startLine(ack), startLine(bye))
	}
	for _, req := range []string{ack, bye} {
		if r := header(t, req, "Route"); r != "<sip:p0.example;lr>,<sip:p1.example;lr>,<sip:p2.example;lr>" {
			t.Fatalf("Route %q", r)
		}
		if to := header(t, req, "To"); !strings.HasSuffix(to, ";tag=uas1") {
			t.Fatalf("To %q lacks the UAS tag", to)
		}
		if header(t, req, "Call-ID") != header(t, inv, "Call-ID") || header(t, req, "From") != header(t, inv, "From") {
			t.Fatal("Call-ID or From changed within the dialog")
		}
	}
	if c := header(t, ack, "CSeq"); c != "1 ACK" {
		t.Fatalf("ACK CSeq %q", c)
	}
	if c := header(t, bye, "CSeq"); c != "2 BYE" {
		t.Fatalf("BYE CSeq %q", c)
	}
	if header(t, ack, "Via") == header(t, inv, "Via") || header(t, bye, "Via") == header(t, inv, "Via") {
		t.Fatal("the 2xx ACK and the BYE must have new branches")
	}
	// A retransmitted 200 gets the ACK again.
	ts.feed(t, ok)
	if out := ts.take(); len(out) != 1 || out[0] != ack {
		t.Fatalf("retransmitted 200: sent %q, want the same ACK", out)
	}
	ts.now += 1e6
	ts.feed(t, reply(t, bye, 200, ""))
	if out := ts.take(); len(out) != 0 {
		t.Fatalf("sent %d messages after the BYE's 200", len(out))
	}
	if ts.counter(cCompleted) != 1 || ts.counter(cFailed) != 0 || ts.outstanding() != 0 {
		t.Fatalf("completed %d failed %d outstanding %d", ts.counter(cCompleted), ts.counter(cFailed), ts.outstanding())
	}
	if ts.st.setup.Count() != 1 || ts.st.resp.Count() != 2 {
		t.Fatalf("latency samples: setup %d resp %d", ts.st.setup.Count(), ts.st.resp.Count())
	}
	var snap Counts
	snap.addSource(ts.st)
	if p := snap.Setup.Percentile(50); p < 2_990_000 || p > 3_010_000 {
		t.Fatalf("INVITE->200 recorded as %dns, want 3ms", p)
	}
	if p := snap.Response.Percentile(0); p < 990_000 || p > 1_010_000 {
		t.Fatalf("first response latency %dns, want 1ms", p)
	}
	// Anything for the finished call is late now.
	ts.feed(t, ok)
	if ts.counter(cLate) != 1 || len(ts.take()) != 0 {
		t.Fatal("a response for a finished call should be counted late and ignored")
	}
	if ts.counter(cDup) != 1 {
		t.Fatalf("duplicates %d, want 1", ts.counter(cDup))
	}
}

func TestCallRejectedIsAcknowledged(t *testing.T) {
	ts := newTestSource(t, UACConfig{})
	ts.startCall()
	inv := ts.take()[0]
	ts.feed(t, reply(t, inv, 486, "busy7"))
	out := ts.take()
	if len(out) != 1 {
		t.Fatalf("on 486 sent %d messages, want one ACK", len(out))
	}
	ack := out[0]
	if startLine(ack) != strings.Replace(startLine(inv), "INVITE", "ACK", 1) {
		t.Fatalf("non-2xx ACK request line %q", startLine(ack))
	}
	if header(t, ack, "Via") != header(t, inv, "Via") {
		t.Fatal("non-2xx ACK must reuse the INVITE's Via branch")
	}
	if header(t, ack, "CSeq") != "1 ACK" || !strings.HasSuffix(header(t, ack, "To"), ";tag=busy7") {
		t.Fatalf("ACK CSeq %q To %q", header(t, ack, "CSeq"), header(t, ack, "To"))
	}
	if ts.counter(cFailed) != 1 || ts.counter(cRejected) != 1 || ts.st.codes[486].Load() != 1 {
		t.Fatal("486 not counted as a rejected call")
	}
}

func TestInviteRetransmissionsAndTimeout(t *testing.T) {
	ts := newTestSource(t, UACConfig{T1: 100 * time.Millisecond, Timeout: 2 * time.Second})
	t0 := ts.now
	ts.startCall()
	inv := ts.take()[0]
	// Timer A: retransmissions at T1, 3*T1, 7*T1 (intervals double).
	var at []int64
	for ms := int64(1); ms <= 1000; ms++ {
		ts.at(t0 + ms*1e6)
		for _, m := range ts.take() {
			if m != inv {
				t.Fatalf("retransmission differs from the INVITE:\n%s", m)
			}
			at = append(at, ms)
		}
	}
	if fmt.Sprint(at) != "[100 300 700]" {
		t.Fatalf("INVITE retransmitted at %v ms, want [100 300 700]", at)
	}
	// A provisional response stops retransmissions.
	ts.feed(t, reply(t, inv, 100, ""))
	for ms := int64(1001); ms < 2000; ms += 10 {
		ts.at(t0 + ms*1e6)
		if len(ts.take()) != 0 {
			t.Fatalf("INVITE retransmitted at %dms after a 100", ms)
		}
	}
	if ts.counter(cFailed) != 0 {
		t.Fatal("failed before the timeout")
	}
	ts.at(t0 + 2001e6)
	if ts.counter(cFailed) != 1 || ts.counter(cTimeout) != 1 || ts.outstanding() != 0 {
		t.Fatalf("after the timeout: failed %d timeouts %d outstanding %d", ts.counter(cFailed), ts.counter(cTimeout), ts.outstanding())
	}
	if ts.counter(cRetrans) != 3 {
		t.Fatalf("retransmissions %d, want 3", ts.counter(cRetrans))
	}
}

func TestByeRetransmissionsCapAtT2AndNoRetrans(t *testing.T) {
	ts := newTestSource(t, UACConfig{T1: 100 * time.Millisecond, T2: 400 * time.Millisecond, Timeout: 3 * time.Second})
	t0 := ts.now
	ts.startCall()
	inv := ts.take()[0]
	ts.feed(t, reply(t, inv, 200, "x"))
	out := ts.take()
	bye := out[1]
	var at []int64
	for ms := int64(1); ms <= 3000; ms++ {
		ts.at(t0 + ms*1e6)
		for _, m := range ts.take() {
			if m != bye {
				t.Fatalf("unexpected message %q", startLine(m))
			}
			at = append(at, ms)
		}
	}
	// Timer E: 100, 200, 400, 400, ... (cumulative 100 300 700 1100 ...).
	if fmt.Sprint(at) != "[100 300 700 1100 1500 1900 2300 2700]" {
		t.Fatalf("BYE retransmitted at %v", at)
	}
	if ts.counter(cByeTimeout) != 1 {
		t.Fatalf("bye timeouts %d, want 1", ts.counter(cByeTimeout))
	}

	nr := newTestSource(t, UACConfig{NoRetrans: true, Timeout: time.Second})
	t0 = nr.now
	nr.startCall()
	nr.take()
	for ms := int64(10); ms <= 1100; ms += 10 {
		nr.at(t0 + ms*1e6)
		if len(nr.take()) != 0 {
			t.Fatal("--no-retrans source retransmitted")
		}
	}
	if nr.counter(cTimeout) != 1 {
		t.Fatal("no timeout without retransmissions")
	}
}

func TestCallHold(t *testing.T) {
	ts := newTestSource(t, UACConfig{CallHold: 500 * time.Millisecond})
	t0 := ts.now
	ts.startCall()
	inv := ts.take()[0]
	ts.feed(t, reply(t, inv, 200, "h"))
	if out := ts.take(); len(out) != 1 || !strings.HasPrefix(out[0], "ACK ") {
		t.Fatalf("on 200 with hold: sent %d messages, want only the ACK", len(out))
	}
	ts.at(t0 + 499e6)
	if len(ts.take()) != 0 {
		t.Fatal("BYE sent before the hold time")
	}
	ts.at(t0 + 501e6)
	out := ts.take()
	if len(out) != 1 || !strings.HasPrefix(out[0], "BYE ") {
		t.Fatalf("after the hold: %d messages", len(out))
	}
	// The 200's request line (no Contact) falls back to the Request-URI.
	if startLine(out[0]) != "BYE sip:100000@127.0.0.1:5060 SIP/2.0" {
		t.Fatalf("BYE request line %q", startLine(out[0]))
	}
}

func TestStrayAndMismatchedResponses(t *testing.T) {
	ts := newTestSource(t, UACConfig{})
	ts.startCall()
	inv := ts.take()[0]
	other := strings.Replace(reply(t, inv, 200, "x"), "-0-r1@vl", "-0-r2@vl", 1)
	ts.feed(t, other)
	forged := strings.Replace(reply(t, inv, 200, "x"), "-1i;rport", "-1b;rport", 1)
	ts.feed(t, forged)
	ts.feed(t, "garbage")
	if ts.counter(cStray) != 1 || ts.counter(cUnexpected) != 1 || ts.counter(cParseErr) != 1 {
		t.Fatalf("stray %d unexpected %d parse errors %d", ts.counter(cStray), ts.counter(cUnexpected), ts.counter(cParseErr))
	}
	if len(ts.take()) != 0 || ts.outstanding() != 1 {
		t.Fatal("foreign responses must not move the call")
	}
}

func TestNonInviteScenarios(t *testing.T) {
	for _, tc := range []struct {
		sc     Scenario
		line   string
		header string
	}{
		{ScenarioRegister, "REGISTER sip:example.org SIP/2.0", "Expires"},
		{ScenarioOptions, "OPTIONS sip:u100000@example.org SIP/2.0", "Accept"},
		{ScenarioMessage, "MESSAGE sip:u100000@example.org SIP/2.0", "Content-Type"},
	} {
		t.Run(tc.sc.String(), func(t *testing.T) {
			ts := newTestSource(t, UACConfig{Scenario: tc.sc, Domain: "example.org", User: MustTemplate("u{n}")})
			ts.startCall()
			req := ts.take()[0]
			if startLine(req) != tc.line || header(t, req, tc.header) == "" {
				t.Fatalf("request %q missing %s:\n%s", startLine(req), tc.header, req)
			}
			if tc.sc == ScenarioRegister && header(t, req, "From") != "<sip:u100000@example.org>;tag=vl0x1" {
				t.Fatalf("REGISTER From %q", header(t, req, "From"))
			}
			ts.feed(t, reply(t, req, 200, "t"))
			if ts.counter(cCompleted) != 1 || len(ts.take()) != 0 {
				t.Fatal("200 did not complete the request")
			}
			ts.startCall()
			req = ts.take()[0]
			ts.feed(t, reply(t, req, 403, "t"))
			if ts.counter(cRejected) != 1 || ts.st.codes[403].Load() != 1 || len(ts.take()) != 0 {
				t.Fatal("403 not counted (or answered with something)")
			}
		})
	}
}

func TestUserNumbersVary(t *testing.T) {
	ts := newTestSource(t, UACConfig{UserStart: 5, UserCount: 3, User: MustTemplate("+1555{n}")})
	var lines []string
	for i := 0; i < 4; i++ {
		ts.startCall()
		lines = append(lines, startLine(ts.take()[0]))
	}
	want := []string{"5", "6", "7", "5"}
	for i, l := range lines {
		if !strings.HasPrefix(l, "INVITE sip:+1555"+want[i]+"@") {
			t.Fatalf("call %d: %q, want user +1555%s", i, l, want[i])
		}
	}
}

func TestUACMessagePathDoesNotAllocate(t *testing.T) {
	ts := newTestSource(t, UACConfig{})
	call := replayableCall(t, ts, "Record-Route: <sip:p1;lr>")
	if ts.counter(cCompleted) != 1 {
		t.Fatal("first call did not complete")
	}
	a := testing.AllocsPerRun(500, call)
	if a != 0 {
		t.Fatalf("a call allocates %v times on the message path", a)
	}
	if c := ts.counter(cCompleted); c != 502 || ts.counter(cFailed) != 0 {
		t.Fatalf("completed %d failed %d, want 502 and 0", c, ts.counter(cFailed))
	}
}

// replayableCall completes a first call on ts (its 200 carrying a Contact
// and the extra header lines) and returns a function that runs a whole
// call again in the same slot and generation, so that the prepared
// responses match: INVITE, 180, 200, ACK, BYE, 200. What it sends is
// discarded.
func replayableCall(t *testing.T, ts *testSource, extra ...string) func() {
	slot := ts.free[len(ts.free)-1]
	ts.startCall()
	inv := ts.take()[0]
	prov := []byte(reply(t, inv, 180, "t"))
	ok200 := []byte(reply(t, inv, 200, "t", append([]string{"Contact: <sip:uas@127.0.0.1:5071>"}, extra...)...))
	ts.onDatagram(ok200)
	byeOK := []byte(reply(t, ts.take()[1], 200, ""))
	ts.onDatagram(byeOK)
	gen := ts.calls[slot].gen
	ts.sink = func([]byte) {}
	return func() {
		ts.calls[slot].gen = gen - 1
		ts.startCall()
		ts.onDatagram(prov)
		ts.onDatagram(ok200)
		ts.onDatagram(byeOK)
		ts.flush()
	}
}

func TestSDPSize(t *testing.T) {
	a := netip.MustParseAddr("127.0.0.1")
	base := len(buildSDP(a, 0))
	if base < 100 || base > 200 {
		t.Fatalf("default SDP is %d bytes", base)
	}
	for size := base; size < base+400; size++ {
		b := buildSDP(a, size)
		if len(b) != size || !strings.HasSuffix(string(b), "\r\n") {
			t.Fatalf("SDP for size %d is %d bytes (ends %q)", size, len(b), b[len(b)-4:])
		}
	}
	for _, size := range []int{1, base - 1} {
		if len(buildSDP(a, size)) != base {
			t.Fatalf("a size below the default SDP should give the default")
		}
	}
	if v6 := string(buildSDP(netip.MustParseAddr("::1"), 0)); !strings.Contains(v6, "c=IN IP6 ::1\r\n") {
		t.Fatalf("IPv6 SDP:\n%s", v6)
	}
}
