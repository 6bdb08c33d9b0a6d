package fastpath

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
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
	gone     map[uint64]bool // flows Send reports as gone
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if to.Flow != 0 && s.gone[to.Flow] {
		return fmt.Errorf("fake %s: %w", s.kind, transport.ErrFlowGone)
	}
	s.sent = append(s.sent, sentMsg{to, string(b)})
	return nil
}

// take returns and forgets what was sent.
func (s *fakeServer) take() []sentMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.sent
	s.sent = nil
	return m
}

// deliver hands msg from src to the handler of listener (the server's
// numbering) and returns the output when the transport is to send it.
func (s *fakeServer) deliver(t *testing.T, listener int, msg []byte, src transport.Peer) (string, transport.Peer, bool) {
	t.Helper()
	out := &transport.Outbound{Buf: make([]byte, 0, 20000)}
	src.Kind, src.Listener = s.kind, listener
	if !s.handlers[listener].Handle(msg, src, out) {
		return "", transport.Peer{}, false
	}
	s.handlers[listener].Sent(out, nil)
	return string(out.Buf), out.To, true
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
