package fastpath

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// fakeServer is a transport.Server without sockets: a test drives its
// workers' Handlers and reads what was sent through Send.
type fakeServer struct {
	kind     transport.Kind
	addrs    []netip.AddrPort
	mu       sync.Mutex
	handlers []transport.Handler // worker 0 of each listener
	sent     []sentMsg
	writes   [][]sentMsg     // what each Send or SendAll sent, a write each
	gone     map[uint64]bool // flows Send reports as gone
	late     bool            // FlowOpen says yes to gone flows: they close between hold and send
}

type sentMsg struct {
	to  transport.Peer
	msg string
}

func (s *fakeServer) Kind() transport.Kind    { return s.kind }
func (s *fakeServer) Addrs() []netip.AddrPort { return s.addrs }
func (s *fakeServer) Serve(newHandler func(listener, worker int) transport.Handler) {
	for l := range s.addrs {
		s.handlers = append(s.handlers, newHandler(l, 0))
	}
}
func (s *fakeServer) Origin(listener int) netip.AddrPort          { return s.addrs[listener] }
func (s *fakeServer) Originate(b []byte, to transport.Peer) error { return s.Send(b, to) }
func (s *fakeServer) KernelDrops(listener, worker int) uint64     { return 0 }
func (s *fakeServer) Close() error                                { return nil }
func (s *fakeServer) Send(b []byte, to transport.Peer) error {
	return s.SendAll(b, []int{len(b)}, to)
}

// SendAll implements transport.Coalescer: the messages are recorded one by
// one, and together as one write.
func (s *fakeServer) SendAll(b []byte, ends []int, to transport.Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if to.Flow != 0 && s.gone[to.Flow] {
		return fmt.Errorf("fake %s: %w", s.kind, transport.ErrFlowGone)
	}
	var write []sentMsg
	start := 0
	for _, end := range ends {
		write = append(write, sentMsg{to, string(b[start:end])})
		start = end
	}
	s.sent = append(s.sent, write...)
	s.writes = append(s.writes, write)
	return nil
}

// FlowOpen implements transport.Coalescer.
func (s *fakeServer) FlowOpen(flow uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.late || !s.gone[flow]
}

// takeWrites returns and forgets what was sent, a write each.
func (s *fakeServer) takeWrites() [][]sentMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.writes
	s.sent, s.writes = nil, nil
	return w
}

// take returns and forgets what was sent.
func (s *fakeServer) take() []sentMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.sent
	s.sent, s.writes = nil, nil
	return m
}

// deliver hands msg from src to the handler of listener (the server's
// numbering), as a batch of its own, and returns the output when the
// transport is to send it.
func (s *fakeServer) deliver(t *testing.T, listener int, msg []byte, src transport.Peer) (string, transport.Peer, bool) {
	t.Helper()
	defer s.endBatch(listener)
	out := &transport.Outbound{Buf: make([]byte, 0, 20000)}
	src.Kind, src.Listener = s.kind, listener
	if !s.handlers[listener].Handle(msg, src, out) {
		return "", transport.Peer{}, false
	}
	s.handlers[listener].Sent(out, nil)
	return string(out.Buf), out.To, true
}

// deliverBatch hands msgs from src to the handler of listener as one
// batch; outputs the transport is to send are not expected.
func (s *fakeServer) deliverBatch(t *testing.T, listener int, msgs [][]byte, src transport.Peer) {
	t.Helper()
	defer s.endBatch(listener)
	src.Kind, src.Listener = s.kind, listener
	for _, msg := range msgs {
		out := &transport.Outbound{Buf: make([]byte, 0, 20000)}
		if s.handlers[listener].Handle(msg, src, out) {
			t.Fatalf("%s output left to the %s transport", out.Buf[:min(len(out.Buf), 20)], s.kind)
		}
	}
}

// endBatch tells listener's handler that the batch ended, as a transport
// does.
func (s *fakeServer) endBatch(listener int) {
	if f, ok := s.handlers[listener].(transport.Flusher); ok {
		f.Flush()
	}
}

// streamRig is an engine on a fake UDP and a fake TCP server, both on
// proxyAddr.
type streamRig struct {
	e        *Engine
	udp, tcp *fakeServer
}

func newStreamRig(t *testing.T, mod func(*Config)) *streamRig {
	t.Helper()
	rig := &streamRig{
		udp: &fakeServer{kind: transport.UDP, addrs: []netip.AddrPort{proxyAddr}, gone: map[uint64]bool{}},
		tcp: &fakeServer{kind: transport.TCP, addrs: []netip.AddrPort{proxyAddr}, gone: map[uint64]bool{}},
	}
	bind := func(s *fakeServer) transport.Binder {
		return func(context.Context, transport.Layout) (transport.Server, error) { return s, nil }
	}
	cfg := Config{
		Listeners:  []Listener{{transport.UDP, proxyAddr}, {transport.TCP, proxyAddr}},
		Upstreams:  []netip.AddrPort{up1},
		Secret:     testKey,
		Workers:    1,
		Transports: map[transport.Kind]transport.Binder{transport.UDP: bind(rig.udp), transport.TCP: bind(rig.tcp)},
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	rig.e = e
	return rig
}

// tcpInvite is invite3261 as a TCP client sends it.
var tcpInvite = replace(invite3261, "Via: SIP/2.0/UDP 198.51.100.7:5060", "Via: SIP/2.0/TCP 198.51.100.7:5060")

// oneSent returns the one message s sent, failing otherwise.
func oneSent(t *testing.T, s *fakeServer, what string) sentMsg {
	t.Helper()
	got := s.take()
	if len(got) != 1 {
		t.Fatalf("%s: %s sent %d messages, want 1", what, s.kind, len(got))
	}
	return got[0]
}

// A request from a TCP client crosses to a UDP upstream with a vd2 branch;
// the responses come back over the client's connection, in order.
func TestStreamClientToUDPUpstream(t *testing.T) {
	rig := newStreamRig(t, nil)
	client := transport.Peer{Addr: alice, Flow: 42}
	if _, _, batched := rig.tcp.deliver(t, 0, tcpInvite, client); batched {
		t.Fatal("a request for a UDP upstream was left to the TCP transport")
	}
	req := oneSent(t, rig.udp, "INVITE")
	if req.to.Addr != up1 || req.to.Kind != transport.UDP || req.to.Listener != 0 || req.to.Flow != 0 {
		t.Fatalf("INVITE sent to %+v", req.to)
	}
	top := vias(t, []byte(req.msg))[0]
	if !strings.HasPrefix(top, "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKvd2") || len(topBranch(t, []byte(req.msg))) != flowBranchLen {
		t.Fatalf("top Via %q: want a UDP Via with a vd2 branch", top)
	}
	for _, status := range []string{"180 Ringing", "200 OK"} {
		resp := respond(t, []byte(req.msg), status, "u1")
		if _, _, batched := rig.udp.deliver(t, 0, resp, transport.Peer{Addr: up1}); batched {
			t.Fatalf("%s for a TCP client was left to the UDP transport", status)
		}
	}
	got := rig.tcp.take()
	if len(got) != 2 || !strings.HasPrefix(got[0].msg, "SIP/2.0 180") || !strings.HasPrefix(got[1].msg, "SIP/2.0 200") {
		t.Fatalf("client got %d messages, want 180 then 200", len(got))
	}
	want := transport.Peer{Addr: alice, Kind: transport.TCP, Listener: 0, Flow: 42}
	if got[0].to != want {
		t.Errorf("response sent to %+v, want %+v", got[0].to, want)
	}
	if v := vias(t, []byte(got[0].msg)); len(v) != 1 || !strings.HasPrefix(v[0], "SIP/2.0/TCP 198.51.100.7:5060") {
		t.Errorf("client's response has Vias %q", v)
	}
}

// The responses one UDP batch gives one connection leave in one write, in
// order; those for different connections keep the batch's order; one
// whose connection closed before it was handled is left to the core at
// once (here: reopened by address), and the rest of the batch still goes.
func TestStreamBatchLeavesInOneWritePerConnection(t *testing.T) {
	rig := newStreamRig(t, nil)
	invite := func(flow uint64, callID string) []byte {
		rig.tcp.deliver(t, 0, []byte(strings.Replace(string(tcpInvite), "Call-ID: ", "Call-ID: "+callID, 1)),
			transport.Peer{Addr: alice, Flow: flow})
		return []byte(oneSent(t, rig.udp, "INVITE").msg)
	}
	a, b := invite(42, "a-"), invite(43, "b-")
	ringA, okA := respond(t, a, "180 Ringing", "u1"), respond(t, a, "200 OK", "u1")
	ringB, okB := respond(t, b, "180 Ringing", "u2"), respond(t, b, "200 OK", "u2")

	rig.udp.deliverBatch(t, 0, [][]byte{ringA, okA, ringB, okB}, transport.Peer{Addr: up1})
	writes := rig.tcp.takeWrites()
	if len(writes) != 2 || len(writes[0]) != 2 || len(writes[1]) != 2 {
		t.Fatalf("writes %v: want two, of two messages each", shape(writes))
	}
	for i, flow := range []uint64{42, 43} {
		w := writes[i]
		if w[0].to.Flow != flow || w[1].to.Flow != flow ||
			!strings.HasPrefix(w[0].msg, "SIP/2.0 180") || !strings.HasPrefix(w[1].msg, "SIP/2.0 200") {
			t.Errorf("write %d: %v, want 180 then 200 on flow %d", i, shape(writes), flow)
		}
	}

	rig.udp.deliverBatch(t, 0, [][]byte{ringA, ringB, okA}, transport.Peer{Addr: up1})
	if got := shape(rig.tcp.takeWrites()); got != "[42:180] [43:180] [42:200]" {
		t.Errorf("interleaved flows: writes %s", got)
	}

	rig.tcp.gone[42] = true
	rig.udp.deliverBatch(t, 0, [][]byte{ringB, okA, okB}, transport.Peer{Addr: up1})
	if got := shape(rig.tcp.takeWrites()); got != "[0:200] [43:180 43:200]" {
		t.Errorf("with flow 42 closed: writes %s, want its 200 reopened at once, then flow 43's two", got)
	}
	if st := rig.e.Stats(); st.FlowsReopened != 1 || st.Drops[DropSendError] != 0 || st.Drops[DropFlowGone] != 0 {
		t.Errorf("reopened %d, send errors %d, flow_gone %d; want 1, 0, 0", st.FlowsReopened, st.Drops[DropSendError], st.Drops[DropFlowGone])
	}
}

// Responses held for a connection that closes before the batch ends are
// lost, each counted as flow_gone (the core has moved on and cannot
// readdress them); what else the batch held still goes.
func TestStreamHeldForConnectionThatCloses(t *testing.T) {
	rig := newStreamRig(t, nil)
	a := []byte(strings.Replace(string(rig.inviteAndAnswer(t, 42)), "200 OK", "180 Ringing", 1))
	okA := rig.inviteAndAnswer(t, 42)
	okB := rig.inviteAndAnswer(t, 43)
	rig.tcp.gone[42], rig.tcp.late = true, true
	rig.udp.deliverBatch(t, 0, [][]byte{a, okA, okB}, transport.Peer{Addr: up1})
	if got := shape(rig.tcp.takeWrites()); got != "[43:200]" {
		t.Errorf("writes %s, want flow 43's 200 alone", got)
	}
	if st := rig.e.Stats(); st.Drops[DropFlowGone] != 2 || st.FlowsReopened != 0 || st.Drops[DropSendError] != 0 {
		t.Errorf("flow_gone %d, reopened %d, send errors %d; want 2, 0, 0", st.Drops[DropFlowGone], st.FlowsReopened, st.Drops[DropSendError])
	}
}

// shape names each write by its messages' flow and status code.
func shape(writes [][]sentMsg) string {
	var b strings.Builder
	for i, w := range writes {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('[')
		for j, m := range w {
			if j > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%d:%s", m.to.Flow, strings.Fields(m.msg)[1])
		}
		b.WriteByte(']')
	}
	return b.String()
}

// invite forwards an INVITE from a TCP client on flow and returns the
// upstream's 200 for it.
func (rig *streamRig) inviteAndAnswer(t *testing.T, flow uint64) []byte {
	t.Helper()
	rig.tcp.deliver(t, 0, tcpInvite, transport.Peer{Addr: alice, Flow: flow})
	req := oneSent(t, rig.udp, "INVITE")
	return respond(t, []byte(req.msg), "200 OK", "u1")
}

// A response whose client connection is gone goes to the Via's address on
// a new connection (RFC 3261 18.2.2), or is dropped with
// DropOrphanResponses; a forged connection reference is refused.
func TestStreamResponseForGoneConnection(t *testing.T) {
	rig := newStreamRig(t, nil)
	ok := rig.inviteAndAnswer(t, 42)
	rig.tcp.gone[42] = true
	rig.udp.deliver(t, 0, ok, transport.Peer{Addr: up1})
	if got := oneSent(t, rig.tcp, "200 after the connection closed"); got.to.Flow != 0 || got.to.Addr != alice {
		t.Errorf("reopened response sent to %+v, want alice on a new connection", got.to)
	}
	if st := rig.e.Stats(); st.FlowsReopened != 1 || st.Drops[DropSendError] != 0 {
		t.Errorf("flows reopened %d, send errors %d; want 1 and 0", st.FlowsReopened, st.Drops[DropSendError])
	}

	strict := newStreamRig(t, func(c *Config) { c.DropOrphanResponses = true })
	ok = strict.inviteAndAnswer(t, 42)
	strict.tcp.gone[42] = true
	strict.udp.deliver(t, 0, ok, transport.Peer{Addr: up1})
	if got := strict.tcp.take(); len(got) != 0 {
		t.Errorf("DropOrphanResponses: %d sent", len(got))
	}
	if n := strict.e.Stats().Drops[DropFlowGone]; n != 1 {
		t.Errorf("flow_gone drops %d, want 1", n)
	}

	// Another engine with the same secret (another instance, or this one
	// restarted) does not own flow 42: it reopens too.
	other := newStreamRig(t, nil)
	other.udp.deliver(t, 0, rig.inviteAndAnswer(t, 42), transport.Peer{Addr: up1})
	if got := oneSent(t, other.tcp, "200 at another instance"); got.to.Flow != 0 {
		t.Errorf("another instance sent on flow %d, which it does not hold", got.to.Flow)
	}

	forged := []byte(strings.Replace(string(rig.inviteAndAnswer(t, 42)), "z9hG4bKvd2", "z9hG4bKvd2", 1))
	br := topBranch(t, forged)
	flip := br[:offFlow] + "1" + br[offFlow+1:]
	if flip == br {
		flip = br[:offFlow] + "2" + br[offFlow+1:]
	}
	rig.udp.deliver(t, 0, []byte(strings.Replace(string(forged), br, flip, 1)), transport.Peer{Addr: up1})
	if got := rig.tcp.take(); len(got) != 0 {
		t.Errorf("a response with an altered flow was sent: %+v", got[0].to)
	}
}

// A request over a stream without Content-Length gets 400 back on its
// connection (RFC 3261 18.3).
func TestStreamRequiresContentLength(t *testing.T) {
	rig := newStreamRig(t, nil)
	noCL := []byte(strings.Replace(string(tcpInvite), "Content-Length: ", "X-Length: ", 1))
	msg, to, batched := rig.tcp.deliver(t, 0, noCL, transport.Peer{Addr: alice, Flow: 7})
	if batched || msg != "" {
		t.Fatalf("400 left to the transport: %q", msg)
	}
	got := oneSent(t, rig.tcp, "400")
	if !strings.HasPrefix(got.msg, "SIP/2.0 400 Missing Content-Length\r\n") || got.to.Flow != 7 {
		t.Errorf("got %q to %+v (%v)", got.msg, got.to, to)
	}
}

// A UDP client's request for a TCP upstream leaves over TCP with a TCP Via,
// Content-Length added where the datagram had none and the bytes after the
// body cut off.
func TestDatagramToTCPUpstream(t *testing.T) {
	rig := newStreamRig(t, func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{{Addr: up1, Transport: "tcp"}}
	})
	noCL := []byte(strings.Replace(string(invite3261), "Content-Length: ", "X-Length: ", 1))
	if _, _, batched := rig.udp.deliver(t, 0, noCL, transport.Peer{Addr: alice}); batched {
		t.Fatal("a request for a TCP upstream was left to the UDP transport")
	}
	req := oneSent(t, rig.tcp, "INVITE")
	if req.to != (transport.Peer{Addr: up1, Kind: transport.TCP, Listener: 0}) {
		t.Fatalf("sent to %+v", req.to)
	}
	m := mustParse(t, []byte(req.msg))
	if n, ok := m.ContentLength(); !ok || n != len(m.Body()) || !strings.HasPrefix(vias(t, []byte(req.msg))[0], "SIP/2.0/TCP ") {
		t.Errorf("Content-Length %d %v for a %d-byte body, top Via %q", n, ok, len(m.Body()), vias(t, []byte(req.msg))[0])
	}
	padded := append(append([]byte(nil), invite3261...), "junk after the body"...)
	rig.udp.deliver(t, 0, padded, transport.Peer{Addr: alice})
	if req := oneSent(t, rig.tcp, "padded INVITE"); strings.Contains(req.msg, "junk") {
		t.Error("bytes after the body went onto the stream")
	}
}

// tcpRegister is a REGISTER from a phone on TCP.
var tcpRegister = msg(`REGISTER sip:registrar.example.com SIP/2.0
Via: SIP/2.0/TCP 10.1.1.5:5060;branch=z9hG4bKnashd7;rport
Max-Forwards: 70
To: Alice <sip:alice@example.com>
From: Alice <sip:alice@example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:alice@10.1.1.5:5060;transport=tcp>
Expires: 3600`, "")

// registrarInvite is the registrar's INVITE for the contact, routed by the
// Path value it stored.
func registrarInvite(path string) []byte {
	return msg(`INVITE sip:alice@10.1.1.5:5060;transport=tcp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKreg77
Max-Forwards: 69
Route: `+path+`
To: <sip:alice@example.com>
From: <sip:bob@example.com>;tag=b1
Call-ID: reg-invite-1
CSeq: 1 INVITE`, "")
}

// A phone registered over TCP with Path is reached by its registrar's
// INVITE over its connection (the flow token in the Path); once that
// connection is gone, or when the token is another process's or altered,
// the INVITE gets 430 Flow Failed or is not sent on the flow.
func TestStreamPathFlowToken(t *testing.T) {
	rig := newStreamRig(t, func(c *Config) { c.Path = true })
	phone := transport.Peer{Addr: netip.MustParseAddrPort("198.51.100.7:40112"), Flow: 42}
	rig.tcp.deliver(t, 0, tcpRegister, phone)
	reg := oneSent(t, rig.udp, "REGISTER")
	paths := header(t, []byte(reg.msg), parser.KindPath)
	if len(paths) != 1 || !strings.HasPrefix(paths[0], "<sip:192.0.2.10:5060;lr;received=198.51.100.7:40112;vf=") {
		t.Fatalf("Path = %q", paths)
	}
	registrar := transport.Peer{Addr: up1}
	if _, _, batched := rig.udp.deliver(t, 0, registrarInvite(paths[0]), registrar); batched {
		t.Fatal("the INVITE for a TCP phone was left to the UDP transport")
	}
	inv := oneSent(t, rig.tcp, "registrar's INVITE")
	if inv.to != (transport.Peer{Addr: phone.Addr, Kind: transport.TCP, Listener: 0, Flow: 42}) {
		t.Fatalf("INVITE sent to %+v, want the phone's connection", inv.to)
	}
	if v := vias(t, []byte(inv.msg)); !strings.HasPrefix(v[0], "SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKvd1") {
		t.Errorf("top Via %q", v[0])
	}
	if r := header(t, []byte(inv.msg), parser.KindRoute); len(r) != 0 {
		t.Errorf("Viaduct's Route left in: %q", r)
	}

	rig.tcp.gone[42] = true
	msg, to, batched := rig.udp.deliver(t, 0, registrarInvite(paths[0]), registrar)
	if !batched || !strings.HasPrefix(msg, "SIP/2.0 430 Flow Failed\r\n") || to.Addr != up1 {
		t.Fatalf("INVITE for a closed connection: %q to %+v", msg, to)
	}
	st := rig.e.Stats()
	if st.LocalReplies[Local430] != 1 || st.Drops[DropFlowGone] != 1 || st.Drops[DropSendError] != 0 {
		t.Errorf("430s %d, flow_gone %d, send errors %d", st.LocalReplies[Local430], st.Drops[DropFlowGone], st.Drops[DropSendError])
	}

	other := newStreamRig(t, nil)
	if msg, _, _ := other.udp.deliver(t, 0, registrarInvite(paths[0]), registrar); !strings.HasPrefix(msg, "SIP/2.0 430 ") {
		t.Errorf("another instance's token: %q, want 430", msg)
	}

	tok := paths[0][strings.Index(paths[0], ";vf=")+4 : len(paths[0])-1]
	bad := strings.Replace(paths[0], tok, tok[:5]+flipDigit(tok[5])+tok[6:], 1)
	delete(rig.tcp.gone, 42)
	rig.udp.deliver(t, 0, registrarInvite(bad), registrar)
	for _, m := range rig.tcp.take() {
		if m.to.Flow == 42 {
			t.Error("an altered token reached the phone's connection")
		}
	}
}

func flipDigit(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

// A TCP client's INVITE to a UDP upstream gets two Record-Route entries
// (RFC 5658): the top one for the upstream, the other with transport=tcp
// and the client's flow token. The callee's BYE, routed by both, goes back
// over the client's connection; the caller's BYE, routed by both reversed,
// goes to the upstream.
func TestStreamDoubleRecordRoute(t *testing.T) {
	rig := newStreamRig(t, func(c *Config) { c.RecordRoute = true })
	client := transport.Peer{Addr: alice, Flow: 42}
	rig.tcp.deliver(t, 0, tcpInvite, client)
	inv := oneSent(t, rig.udp, "INVITE")
	rr := header(t, []byte(inv.msg), parser.KindRecordRoute)
	if len(rr) != 2 || rr[0] != "<sip:192.0.2.10:5060;lr>" ||
		!strings.HasPrefix(rr[1], "<sip:192.0.2.10:5060;transport=tcp;lr;received=198.51.100.7:5060;vf=") {
		t.Fatalf("Record-Route = %q", rr)
	}
	calleeBye := msg(`BYE sip:alice@198.51.100.7:5060;transport=tcp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKbye1
Max-Forwards: 70
Route: `+rr[0]+`,`+rr[1]+`
To: Alice <sip:alice@atlanta.example.com>;tag=1928301774
From: Bob <sip:bob@biloxi.example.com>;tag=u1
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 1 BYE`, "")
	if _, _, batched := rig.udp.deliver(t, 0, calleeBye, transport.Peer{Addr: up1}); batched {
		t.Fatal("the callee's BYE was left to the UDP transport")
	}
	bye := oneSent(t, rig.tcp, "callee's BYE")
	if bye.to.Flow != 42 || len(header(t, []byte(bye.msg), parser.KindRoute)) != 0 {
		t.Errorf("callee's BYE to %+v with Route %q", bye.to, header(t, []byte(bye.msg), parser.KindRoute))
	}

	callerBye := msg(`BYE sip:bob@192.0.2.21:5060 SIP/2.0
Via: SIP/2.0/TCP 198.51.100.7:5060;branch=z9hG4bKbye2
Max-Forwards: 70
Route: `+rr[1]+`
Route: `+rr[0]+`
To: Bob <sip:bob@biloxi.example.com>;tag=u1
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 2 BYE`, "")
	rig.tcp.deliver(t, 0, callerBye, client)
	bye = oneSent(t, rig.udp, "caller's BYE")
	if bye.to.Addr != up1 || len(header(t, []byte(bye.msg), parser.KindRoute)) != 0 {
		t.Errorf("caller's BYE to %+v with Route %q", bye.to, header(t, []byte(bye.msg), parser.KindRoute))
	}
}

// The stream paths allocate nothing: a TCP client's INVITE with its vd2
// branch and double Record-Route, the response back to its connection, a
// REGISTER with a flow token, and the request that token routes.
func TestStreamPathsAllocateNothing(t *testing.T) {
	e, w := newTestWorker(t, func(c *Config) {
		c.Listen = nil
		c.Listeners = []Listener{{transport.UDP, proxyAddr}, {transport.TCP, proxyAddr}}
		c.RecordRoute, c.Path = true, true
	})
	client := transport.Peer{Addr: alice, Kind: transport.TCP, Listener: 1, Flow: 42}
	out := newOutput(e)
	if w.Handle(tcpInvite, client, out) != ActionForward {
		t.Fatal("INVITE not forwarded")
	}
	resp := respond(t, out.Buf, "200 OK", "u1")
	from := transport.Peer{Addr: out.To, Kind: transport.UDP}
	if w.Handle(resp, from, out) != ActionForward || out.Flow != 42 {
		t.Fatalf("response to flow %d", out.Flow)
	}
	w.Handle(tcpRegister, client, out)
	path := header(t, out.Buf, parser.KindPath)[0]
	inv := registrarInvite(path)
	if w.Handle(inv, transport.Peer{Addr: up1, Kind: transport.UDP}, out) != ActionForward || out.Flow != 42 {
		t.Fatalf("registrar's INVITE to flow %d", out.Flow)
	}
	for name, c := range map[string]struct {
		in  []byte
		src transport.Peer
	}{
		"INVITE": {tcpInvite, client}, "response": {resp, from}, "REGISTER": {tcpRegister, client},
		"INVITE by token": {inv, transport.Peer{Addr: up1, Kind: transport.UDP}},
	} {
		if n := testing.AllocsPerRun(200, func() { w.Handle(c.in, c.src, out) }); n != 0 {
			t.Errorf("%s: %v allocations per message", name, n)
		}
	}
}

// A 3 KB INVITE from a UDP client for a UDP upstream that accepts TCP goes
// over TCP when there is a TCP listener (RFC 3261 18.1.1), and is counted
// when there is none or the upstream does not take TCP; UDPMTU -1 keeps it
// on UDP.
func TestLargeRequestGoesOverTCP(t *testing.T) {
	big := msg(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Content-Type: application/sdp`, sdp+strings.Repeat("a=x-padding:0123456789\n", 130))
	if len(big) < 3000 {
		t.Fatalf("test INVITE is %d bytes", len(big))
	}
	tcpOK := func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{{Addr: up1, AcceptsTCP: true}}
	}
	udpOnlyUpstream := newStreamRig(t, nil)
	if _, _, batched := udpOnlyUpstream.udp.deliver(t, 0, big, transport.Peer{Addr: alice}); !batched || udpOnlyUpstream.e.Stats().LargeOverUDP != 1 {
		t.Error("a 3 KB INVITE for an upstream that does not take TCP did not stay on UDP, counted")
	}
	rig := newStreamRig(t, tcpOK)
	if _, _, batched := rig.udp.deliver(t, 0, big, transport.Peer{Addr: alice}); batched {
		t.Fatal("a 3 KB INVITE was left to UDP")
	}
	req := oneSent(t, rig.tcp, "3 KB INVITE")
	if req.to != (transport.Peer{Addr: up1, Kind: transport.TCP}) || !strings.HasPrefix(vias(t, []byte(req.msg))[0], "SIP/2.0/TCP ") {
		t.Errorf("sent to %+v with Via %q", req.to, vias(t, []byte(req.msg))[0])
	}
	if st := rig.e.Stats(); st.LargeToTCP != 1 {
		t.Errorf("large_to_tcp %d", st.LargeToTCP)
	}
	small := rig.udp
	if _, _, batched := small.deliver(t, 0, invite3261, transport.Peer{Addr: alice}); !batched {
		t.Error("a small INVITE did not stay on UDP")
	}

	_, w := newTestWorker(t, tcpOK)
	if a, o := handle(t, w, big, alice); a != ActionForward || o.Kind != transport.UDP || w.Stats().LargeOverUDP != 1 {
		t.Errorf("UDP only: %v over %v, large_over_udp %d", a, o.Kind, w.Stats().LargeOverUDP)
	}
	off := newStreamRig(t, func(c *Config) { tcpOK(c); c.UDPMTU = -1 })
	if _, _, batched := off.udp.deliver(t, 0, big, transport.Peer{Addr: alice}); !batched {
		t.Error("UDPMTU -1: the 3 KB INVITE left UDP")
	}
}

// A client on TCP whose source port equals a UDP upstream's port is not that
// upstream: its request is balanced, not routed by its Request-URI as an
// upstream's would be.
func TestTCPClientOnAnUpstreamsPort(t *testing.T) {
	rig := newStreamRig(t, nil)
	inv := replace(tcpInvite, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@203.0.113.99:5060")
	rig.tcp.deliver(t, 0, inv, transport.Peer{Addr: up1, Flow: 9})
	if got := oneSent(t, rig.udp, "INVITE"); got.to.Addr != up1 {
		t.Errorf("INVITE from a TCP client at %v sent to %v, want balanced to %v", up1, got.to.Addr, up1)
	}
}
