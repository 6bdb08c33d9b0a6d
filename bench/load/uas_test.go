package load

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/parser"
)

type sentResp struct {
	msg string
	to  netip.AddrPort
}

type testUAS struct {
	s    *UAS
	w    []*uasWorker
	sent []sentResp
}

// newTestUAS builds a UAS with n socketless workers whose responses are
// captured.
func newTestUAS(t *testing.T, n int, cfg UASConfig) *testUAS {
	t.Helper()
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:5071")
	c, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tu := &testUAS{s: &UAS{cfg: c, addr: c.Listen, epoch: time.Now()}}
	for i := range tu.s.cancels.shards {
		tu.s.cancels.shards[i].m = make(map[uint64]*pending)
	}
	for i := 0; i < n; i++ {
		w := newUASWorker(tu.s, i, nil)
		w.sink = func(b []byte, to netip.AddrPort) { tu.sent = append(tu.sent, sentResp{string(b), to}) }
		tu.w = append(tu.w, w)
	}
	return tu
}

var client = netip.MustParseAddrPort("127.0.0.1:40000")

// handle feeds req to worker i at time now (ns) and returns the responses.
func (tu *testUAS) handle(i int, req string, now int64) []sentResp {
	w := tu.w[i]
	w.now = now
	w.handle([]byte(req), client)
	w.fireDue()
	w.flush()
	s := tu.sent
	tu.sent = nil
	return s
}

// tick lets worker i's delay queue fire at time now.
func (tu *testUAS) tick(i int, now int64) []sentResp {
	w := tu.w[i]
	w.now = now
	w.fireDue()
	w.flush()
	s := tu.sent
	tu.sent = nil
	return s
}

func codes(rs []sentResp) string {
	var c []string
	for _, r := range rs {
		c = append(c, r.msg[8:11])
	}
	return strings.Join(c, " ")
}

const invite = "INVITE sip:alice@example.org SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy1\r\n" +
	"v: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKuac1;rport=5062\r\n" +
	"Record-Route: <sip:10.0.0.1;lr>\r\n" +
	"Max-Forwards: 69\r\n" +
	"From: \"Bob\" <sip:bob@example.org>;tag=bobtag\r\n" +
	"To: <sip:alice@example.org>\r\n" +
	"Call-ID: call-1@example.org\r\n" +
	"CSeq: 7 INVITE\r\n" +
	"Contact: <sip:bob@10.0.0.2:5062>\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: 4\r\n\r\nv=0\n"

func TestUASInvite(t *testing.T) {
	tu := newTestUAS(t, 1, UASConfig{})
	rs := tu.handle(0, invite, 0)
	if codes(rs) != "100 180 200" {
		t.Fatalf("INVITE answered with %q, want 100 180 200", codes(rs))
	}
	var tag string
	for i, r := range rs {
		if r.to != client {
			t.Fatalf("response sent to %v, want the source %v", r.to, client)
		}
		m := mustParse(t, r.msg)
		if n, meth := m.CSeq(); n != 7 || string(meth) != "INVITE" || string(m.CallID()) != "call-1@example.org" {
			t.Fatalf("response %d: CSeq %d %s Call-ID %s", i, n, meth, m.CallID())
		}
		var vias []string
		it := m.Vias()
		var v parser.Via
		for it.Next(&v) {
			vias = append(vias, string(v.Branch))
		}
		if strings.Join(vias, ",") != "z9hG4bKproxy1,z9hG4bKuac1" {
			t.Fatalf("response %d Vias %v", i, vias)
		}
		from, _ := m.From()
		to, _ := m.To()
		if string(from.Tag) != "bobtag" {
			t.Fatalf("From tag %q", from.Tag)
		}
		_, hasRR := m.Find(parser.KindRecordRoute)
		if i == 0 {
			if to.Tag != nil || hasRR {
				t.Fatal("100 Trying must not add a To tag or copy Record-Route")
			}
			continue
		}
		if to.Tag == nil || (tag != "" && string(to.Tag) != tag) {
			t.Fatalf("response %d To tag %q (previous %q)", i, to.Tag, tag)
		}
		tag = string(to.Tag)
		if !hasRR {
			t.Fatalf("response %d lacks the Record-Route", i)
		}
		if c, ok := m.Find(parser.KindContact); !ok || string(c.Value) != "<sip:uas@127.0.0.1:5071>" {
			t.Fatalf("response %d Contact %q", i, c.Value)
		}
	}
	ok := mustParse(t, rs[2].msg)
	if cl, _ := ok.ContentLength(); cl != len(ok.Body()) || !strings.HasPrefix(string(ok.Body()), "v=0\r\n") || string(ok.ContentType()) != "application/sdp" {
		t.Fatalf("200 body: length %d, type %q, body %q", cl, ok.ContentType(), ok.Body())
	}
	// The same INVITE again gets the same tag: the UAS keeps no state.
	rs2 := tu.handle(0, invite, 0)
	if to, _ := mustParse(t, rs2[2].msg).To(); string(to.Tag) != tag {
		t.Fatalf("tag changed across retransmissions: %q vs %q", to.Tag, tag)
	}
}

func inDialog(method string, cseq int) string {
	return method + " sip:uas@127.0.0.1:5071 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK" + strings.ToLower(method) + "\r\n" +
		"From: <sip:bob@example.org>;tag=bobtag\r\n" +
		"To: <sip:alice@example.org>;tag=alicetag\r\n" +
		"Call-ID: call-1@example.org\r\n" +
		fmt.Sprintf("CSeq: %d %s\r\n", cseq, method) +
		"Content-Length: 0\r\n\r\n"
}

func TestUASOtherMethods(t *testing.T) {
	tu := newTestUAS(t, 1, UASConfig{FailRate: 1, FailCode: 486}) // in-dialog requests never fail
	if rs := tu.handle(0, inDialog("ACK", 7), 0); len(rs) != 0 {
		t.Fatalf("ACK answered with %q", codes(rs))
	}
	rs := tu.handle(0, inDialog("BYE", 8), 0)
	if codes(rs) != "200" {
		t.Fatalf("BYE answered %q", codes(rs))
	}
	if to, _ := mustParse(t, rs[0].msg).To(); string(to.Tag) != "alicetag" {
		t.Fatalf("BYE's 200 changed the To tag to %q", to.Tag)
	}
	if rs := tu.handle(0, "SIP/2.0 200 OK\r\n"+inDialog("BYE", 8)[len("BYE sip:uas@127.0.0.1:5071 SIP/2.0\r\n"):], 0); len(rs) != 0 {
		t.Fatal("a response was answered")
	}
	if rs := tu.handle(0, "garbage\r\n\r\n", 0); len(rs) != 0 {
		t.Fatal("garbage answered")
	}
	var c UASCounts
	tu.s.workers = tu.w
	tu.s.Counts(&c)
	if c.Ack != 1 || c.Bye != 1 || c.Responses != 1 || c.ParseErrors != 1 || c.Codes[200] != 1 {
		t.Fatalf("counts: ack %d bye %d responses %d parse errors %d 200s %d", c.Ack, c.Bye, c.Responses, c.ParseErrors, c.Codes[200])
	}

	tu = newTestUAS(t, 1, UASConfig{})
	reg := "REGISTER sip:example.org SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKreg\r\n" +
		"From: <sip:bob@example.org>;tag=r1\r\nTo: <sip:bob@example.org>\r\n" +
		"Call-ID: reg-1\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:bob@10.0.0.2:5062>;expires=600\r\nm: <sip:bob@10.0.0.3>\r\nExpires: 3600\r\n" +
		"Content-Length: 0\r\n\r\n"
	rs = tu.handle(0, reg, 0)
	if codes(rs) != "200" || !strings.Contains(rs[0].msg, "Contact: <sip:bob@10.0.0.2:5062>;expires=600\r\nm: <sip:bob@10.0.0.3>\r\nExpires: 3600\r\n") {
		t.Fatalf("REGISTER answer does not echo Contact and Expires:\n%s", rs[0].msg)
	}
	opt := strings.Replace(strings.Replace(reg, "REGISTER", "OPTIONS", 2), "Expires: 3600\r\n", "", 1)
	rs = tu.handle(0, opt, 0)
	if codes(rs) != "200" || !strings.Contains(rs[0].msg, "\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS") || strings.Contains(rs[0].msg, "sip:bob@10.0.0.3") {
		t.Fatalf("OPTIONS answer:\n%s", rs[0].msg)
	}
	foo := strings.Replace(reg, "REGISTER", "FOO", 2)
	if rs := tu.handle(0, foo, 0); codes(rs) != "501" {
		t.Fatalf("unknown method answered %q, want 501", codes(rs))
	}
}

func TestUASFailAndDrop(t *testing.T) {
	tu := newTestUAS(t, 1, UASConfig{FailRate: 1, FailCode: 486})
	if rs := tu.handle(0, invite, 0); codes(rs) != "100 486" {
		t.Fatalf("failing INVITE answered %q, want 100 486", codes(rs))
	}
	tu = newTestUAS(t, 1, UASConfig{DropRate: 1})
	if rs := tu.handle(0, invite, 0); len(rs) != 0 {
		t.Fatalf("dropped INVITE answered %q", codes(rs))
	}

	// With 30% failures and 10% drops, the shares come out right over many
	// calls and each call's retransmission gets the same treatment.
	tu = newTestUAS(t, 1, UASConfig{FailRate: 0.3, DropRate: 0.1})
	const n = 20000
	var failed, dropped int
	for i := 0; i < n; i++ {
		req := strings.Replace(invite, "call-1@", fmt.Sprintf("call-%d@", i), 1)
		a := codes(tu.handle(0, req, 0))
		if b := codes(tu.handle(0, req, 0)); a != b {
			t.Fatalf("call %d: %q then %q for the retransmission", i, a, b)
		}
		switch a {
		case "100 503":
			failed++
		case "":
			dropped++
		case "100 180 200":
		default:
			t.Fatalf("unexpected answer %q", a)
		}
	}
	if f := float64(failed) / n; math.Abs(f-0.3) > 0.015 {
		t.Fatalf("failed share %.3f, want 0.3", f)
	}
	if d := float64(dropped) / n; math.Abs(d-0.1) > 0.01 {
		t.Fatalf("dropped share %.3f, want 0.1", d)
	}
}

func TestUASDelayAndCancel(t *testing.T) {
	const delay = 100 * time.Millisecond
	tu := newTestUAS(t, 2, UASConfig{Delay: delay})
	if rs := tu.handle(0, invite, 0); codes(rs) != "100 180" {
		t.Fatalf("delayed INVITE answered %q at once, want 100 180", codes(rs))
	}
	// A retransmission while waiting gets the provisional responses again
	// but no second final response.
	if rs := tu.handle(0, invite, 10e6); codes(rs) != "100 180" {
		t.Fatalf("retransmitted INVITE answered %q", codes(rs))
	}
	if rs := tu.tick(0, int64(delay)-1); len(rs) != 0 {
		t.Fatalf("answered %q before the delay", codes(rs))
	}
	if rs := tu.tick(0, int64(delay)); codes(rs) != "200" {
		t.Fatalf("after the delay: %q, want one 200", codes(rs))
	}
	if rs := tu.tick(0, int64(2*delay)); len(rs) != 0 {
		t.Fatalf("second final response %q", codes(rs))
	}

	// CANCEL, handled by the other worker, ends the waiting INVITE: 200
	// for the CANCEL, 487 for the INVITE, and no 200 later.
	inv2 := strings.Replace(invite, "call-1@", "call-2@", 1)
	tu.handle(0, inv2, 0)
	cancel := "CANCEL sip:alice@example.org SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy1\r\n" +
		"From: \"Bob\" <sip:bob@example.org>;tag=bobtag\r\n" +
		"To: <sip:alice@example.org>\r\n" +
		"Call-ID: call-2@example.org\r\nCSeq: 7 CANCEL\r\nContent-Length: 0\r\n\r\n"
	rs := tu.handle(1, cancel, 50e6)
	if codes(rs) != "200 487" {
		t.Fatalf("CANCEL answered %q, want 200 487", codes(rs))
	}
	if c := mustParse(t, rs[0].msg); string(mustCSeqMethod(c)) != "CANCEL" {
		t.Fatal("the 200 must answer the CANCEL")
	}
	m487 := mustParse(t, rs[1].msg)
	if string(mustCSeqMethod(m487)) != "INVITE" || !strings.Contains(rs[1].msg, "z9hG4bKuac1") {
		t.Fatalf("the 487 must answer the INVITE with its full Via stack:\n%s", rs[1].msg)
	}
	if rs := tu.tick(0, int64(2*delay)); len(rs) != 0 {
		t.Fatalf("canceled INVITE still answered %q", codes(rs))
	}
	// A CANCEL for an INVITE already answered gets its 200 only.
	if rs := tu.handle(1, cancel, int64(3*delay)); codes(rs) != "200" {
		t.Fatalf("late CANCEL answered %q, want 200", codes(rs))
	}
	// Non-INVITE requests wait for the delay too.
	if rs := tu.handle(0, inDialog("BYE", 9), int64(3*delay)); len(rs) != 0 {
		t.Fatalf("BYE answered at once with a delay set")
	}
	if rs := tu.tick(0, int64(4*delay)); codes(rs) != "200" {
		t.Fatalf("delayed BYE: %q", codes(rs))
	}
}

func mustCSeqMethod(m *parser.Message) []byte {
	_, meth := m.CSeq()
	return meth
}

func TestUASHandlerDoesNotAllocate(t *testing.T) {
	tu := newTestUAS(t, 1, UASConfig{FailRate: 0.5, FailCode: 486})
	w := tu.w[0]
	w.sink = func([]byte, netip.AddrPort) {}
	reqs := [][]byte{[]byte(invite), []byte(inDialog("ACK", 7)), []byte(inDialog("BYE", 8)),
		[]byte(strings.Replace(invite, "call-1@", "call-9@", 1))}
	for _, r := range reqs {
		w.handle(r, client)
	}
	w.flush()
	a := testing.AllocsPerRun(500, func() {
		for _, r := range reqs {
			w.handle(r, client)
		}
		w.flush()
	})
	if a != 0 {
		t.Fatalf("answering a call's requests allocates %v times", a)
	}

	// With a delay, steady state (queue and entries reused) is free too.
	tu = newTestUAS(t, 1, UASConfig{Delay: time.Millisecond})
	w = tu.w[0]
	w.sink = func([]byte, netip.AddrPort) {}
	now := int64(0)
	step := func() {
		w.now = now
		w.handle(reqs[0], client)
		w.handle(reqs[2], client)
		now += 2e6
		w.now = now
		w.fireDue()
		w.flush()
	}
	for i := 0; i < 10; i++ {
		step()
	}
	if a := testing.AllocsPerRun(500, step); a != 0 {
		t.Fatalf("delayed answering allocates %v times", a)
	}
}
