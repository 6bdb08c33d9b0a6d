package edge

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/viaduct-sip/viaduct/transport"
)

// newGuard returns a Guard over c (defaults applied), failing the test on a
// bad configuration.
func newGuard(t testing.TB, c Config) *Guard {
	t.Helper()
	p, err := Prepare(c)
	if err != nil {
		t.Fatal(err)
	}
	return New(p, nil)
}

// sink is the core behind the stage: it counts what reaches it.
type sink struct {
	handled, sent int
}

func (s *sink) Handle([]byte, transport.Peer, *transport.Outbound) bool { s.handled++; return true }
func (s *sink) Sent(*transport.Outbound, error)                         { s.sent++ }

// worker is a Guard's stage over a sink, as one transport worker has it.
type worker struct {
	h    transport.Handler
	core *sink
	out  transport.Outbound
}

func newWorker(g *Guard) *worker {
	w := &worker{core: &sink{}}
	w.h = g.Stage(w.core, transport.Position{Kind: transport.UDP})
	w.out.Buf = make([]byte, 0, 4096)
	return w
}

// send hands msg from src to the stage and reports whether it reached the
// core.
func (w *worker) send(msg []byte, src string) bool {
	before := w.core.handled
	w.out.Buf = w.out.Buf[:0]
	w.h.Handle(msg, transport.Peer{Addr: netip.MustParseAddrPort(src), Kind: transport.UDP}, &w.out)
	return w.core.handled > before
}

// sendN sends msg n times and returns how many reached the core.
func (w *worker) sendN(msg []byte, src string, n int) int {
	got := 0
	for range n {
		if w.send(msg, src) {
			got++
		}
	}
	return got
}

// request returns a SIP request of method with a User-Agent (none if ua
// is "").
func request(method, ua string) []byte {
	s := fmt.Sprintf("%s sip:100@192.0.2.1 SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:100@example.com>;tag=abc\r\n"+
		"To: <sip:100@example.com>\r\n"+
		"Call-ID: c1@198.51.100.7\r\n"+
		"CSeq: 1 %s\r\n"+
		"Contact: <sip:100@198.51.100.7:5060>\r\n", method, method)
	if ua != "" {
		s += "User-Agent: " + ua + "\r\n"
	}
	return []byte(s + "Content-Length: 0\r\n\r\n")
}

var response = []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK-1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")

func boolp(b bool) *bool { return &b }
