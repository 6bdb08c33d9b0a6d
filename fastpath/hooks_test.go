package fastpath

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/transport"
)

// TestCallAdmitter: a new call the admitter refuses gets 503 with its
// Retry-After and is counted; an in-dialog request and a call it admits
// are forwarded untouched; nil admits everything again.
func TestCallAdmitter(t *testing.T) {
	e, w := newTestWorker(t, nil)
	var asked []netip.AddrPort
	e.SetCallAdmitter(func(up netip.AddrPort) (uint32, bool) {
		asked = append(asked, up)
		return 7, false
	})
	a, o := handle(t, w, invite3261, alice)
	if a != ActionReply || !strings.HasPrefix(string(o.Buf), "SIP/2.0 503 Call Rate Limit Exceeded\r\n") {
		t.Fatalf("capped INVITE: %v %q", a, o.Buf)
	}
	if !strings.Contains(string(o.Buf), "\r\nRetry-After: 7\r\n") {
		t.Errorf("503 lacks Retry-After: 7: %q", o.Buf)
	}
	if o.Drop != DropCallRate || w.Stats().Drops[DropCallRate] != 1 {
		t.Errorf("drop %v, call_rate drops %d", o.Drop, w.Stats().Drops[DropCallRate])
	}
	if len(asked) != 1 || (asked[0] != up1 && asked[0] != up2) {
		t.Errorf("admitter asked about %v, want one upstream", asked)
	}

	bye := replace(invite3261, "INVITE sip:bob@biloxi.example.com", "BYE sip:bob@biloxi.example.com")
	bye = replace(bye, "To: Bob <sip:bob@biloxi.example.com>", "To: Bob <sip:bob@biloxi.example.com>;tag=b1")
	bye = replace(bye, "CSeq: 314159 INVITE", "CSeq: 314160 BYE")
	if a, _ := handle(t, w, bye, alice); a != ActionForward {
		t.Errorf("in-dialog BYE: %v, want forwarded without asking", a)
	}
	if len(asked) != 1 {
		t.Errorf("admitter asked %d times, want only for the INVITE", len(asked))
	}

	e.SetCallAdmitter(func(netip.AddrPort) (uint32, bool) { return 0, true })
	if a, o := handle(t, w, invite3261, alice); a != ActionForward || strings.Contains(string(o.Buf), "Retry-After") {
		t.Errorf("admitted INVITE: %v %q", a, o.Buf)
	}
	e.SetCallAdmitter(func(netip.AddrPort) (uint32, bool) { return 0, false })
	if _, o := handle(t, w, invite3261, alice); strings.Contains(string(o.Buf), "Retry-After") {
		t.Errorf("retryAfter 0 still wrote Retry-After: %q", o.Buf)
	}
	e.SetCallAdmitter(nil)
	if a, _ := handle(t, w, invite3261, alice); a != ActionForward {
		t.Errorf("without admitter: %v", a)
	}
}

// countStage counts the messages its Handler sees and what was sent.
type countStage struct {
	next       transport.Handler
	at         transport.Position
	seen, sent *int
}

func (s *countStage) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	*s.seen++
	return s.next.Handle(msg, src, out)
}

func (s *countStage) Sent(out *transport.Outbound, err error) {
	if err == nil {
		*s.sent++
	}
	s.next.Sent(out, err)
}

// TestStagesWrapEveryWorker: each Stage wraps every worker's Handler, the
// first outermost, and sees what the core handles and what is sent.
func TestStagesWrapEveryWorker(t *testing.T) {
	var order []string
	var positions []transport.Position
	var seen, sent int
	stage := func(name string) transport.Stage {
		return func(next transport.Handler, at transport.Position) transport.Handler {
			order = append(order, name)
			positions = append(positions, at)
			return &countStage{next: next, at: at, seen: &seen, sent: &sent}
		}
	}
	e, err := New(Config{Listen: []netip.AddrPort{proxyAddr}, Upstreams: []netip.AddrPort{up1}, Secret: testKey,
		Workers: 2, Stages: []transport.Stage{stage("outer"), stage("inner")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.servers = []boundServer{{kind: transport.UDP, globals: []int{0}}}
	e.where = []listenerSite{{server: 0, local: 0}}
	var hs []transport.Handler
	for i := 0; i < 2; i++ {
		hs = append(hs, e.newSocketHandler(0, 0, i))
	}
	if strings.Join(order, ",") != "inner,outer,inner,outer" {
		t.Errorf("stages applied in order %v, want inner then outer per worker", order)
	}
	if positions[2] != (transport.Position{Kind: e.kinds[0], Listener: 0, Worker: 1}) {
		t.Errorf("second worker's position %+v", positions[2])
	}
	out := &transport.Outbound{Buf: make([]byte, 0, e.OutputBufferSize())}
	if !hs[1].Handle(invite3261, udpFrom(alice), out) {
		t.Fatal("INVITE not forwarded through the stages")
	}
	hs[1].Sent(out, nil)
	if seen != 2 || sent != 2 {
		t.Errorf("stages saw %d messages and %d sends, want 2 and 2 (two stages, one message)", seen, sent)
	}
	if st := e.Stats(); st.DatagramsOut != 1 {
		t.Errorf("core counted %d sent, want 1", st.DatagramsOut)
	}
}
