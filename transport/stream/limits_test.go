package stream

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// works reports whether the server echoes a message on c: an accepted
// connection does, a refused one is closed.
func works(t *testing.T, from string, addr netip.AddrPort) bool {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr.String())
	if err != nil { // reset at once: refused
		return false
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(sipMsg(7)); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, len(sipMsg(7)))
	n, _ := c.Read(b)
	return bytes.Equal(b[:n], sipMsg(7))
}

// At most MaxConnectionsPerIP from one source address and MaxConnections
// in all; each refusal is counted.
func TestConnectionLimits(t *testing.T) {
	s := serve(t, transport.TCP, ServerConfig{MaxConnections: 3, MaxConnectionsPerIP: 2}, testLayout(), newRecorder(true))
	addr := s.Addrs()[0]
	for i, want := range []bool{true, true, false} {
		if got := works(t, "127.0.0.2", addr); got != want {
			t.Fatalf("connection %d from 127.0.0.2 accepted %v, want %v", i, got, want)
		}
	}
	if !works(t, "127.0.0.3", addr) {
		t.Fatal("connection from 127.0.0.3 refused")
	}
	if works(t, "127.0.0.4", addr) {
		t.Fatal("fourth connection accepted over max_connections 3")
	}
	st := s.Stats()
	if st.LimitHits[LimitConnectionsPerIP] != 1 || st.LimitHits[LimitConnections] != 1 || st.Accepted != 3 {
		t.Errorf("limit hits %v, accepted %d", st.LimitHits, st.Accepted)
	}
}

// The Gate refuses before anything is read; what it lets through works.
func TestGateRefusal(t *testing.T) {
	l := testLayout()
	l.Gate = func(src netip.AddrPort) bool { return src.Addr() != netip.MustParseAddr("127.0.0.5") }
	s := serve(t, transport.TCP, ServerConfig{}, l, newRecorder(true))
	if works(t, "127.0.0.5", s.Addrs()[0]) {
		t.Fatal("gate let 127.0.0.5 in")
	}
	if !works(t, "127.0.0.6", s.Addrs()[0]) {
		t.Fatal("gate refused 127.0.0.6")
	}
	if st := s.Stats(); st.LimitHits[LimitGate] != 1 || st.Accepted != 1 {
		t.Errorf("gate hits %d, accepted %d", st.LimitHits[LimitGate], st.Accepted)
	}
}

// Over the accept burst, connections are closed at once and counted.
func TestAcceptRate(t *testing.T) {
	s := serve(t, transport.TCP, ServerConfig{AcceptRate: 0.001, AcceptBurst: 2}, testLayout(), newRecorder(true))
	for i, want := range []bool{true, true, false} {
		if got := works(t, "127.0.0.1", s.Addrs()[0]); got != want {
			t.Fatalf("connection %d accepted %v, want %v", i, got, want)
		}
	}
	if n := s.Stats().LimitHits[LimitAcceptRate]; n != 1 {
		t.Errorf("accept rate hits %d, want 1", n)
	}
}
