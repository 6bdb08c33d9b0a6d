package stream

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// upstream is a plain TCP listener standing for a next hop.
func upstream(t *testing.T, addr string) (*net.TCPListener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener), ln.Addr().(*net.TCPAddr).AddrPort()
}

func acceptWithin(t *testing.T, ln *net.TCPListener) *net.TCPConn {
	t.Helper()
	ln.SetDeadline(time.Now().Add(wait))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A send with Flow 0 dials the peer from the listener's IP, the next one
// reuses the connection, and what the peer sends back reaches the handler
// with the outbound connection's flow, over which a reply goes back.
func TestOutboundDialReuse(t *testing.T) {
	r := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	ln, up := upstream(t, "127.0.0.7:0")
	to := transport.Peer{Addr: up, Kind: transport.TCP}
	if err := s.Send(sipMsg(1), to); err != nil { // queued while connecting
		t.Fatal(err)
	}
	uc := acceptWithin(t, ln)
	if err := s.Send(sipMsg(2), to); err != nil {
		t.Fatal(err)
	}
	want := append(sipMsg(1), sipMsg(2)...)
	if got := readFull(t, uc, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("upstream got %q", got)
	}
	if from := uc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); from != s.Addrs()[0].Addr() {
		t.Errorf("dialled from %v, want the listener's IP %v", from, s.Addrs()[0].Addr())
	}
	uc.Write(sipMsg(3))
	_, srcs := r.waitMsgs(t, 1)
	if srcs[0].Flow == 0 || srcs[0].Addr != up || srcs[0].Kind != transport.TCP {
		t.Fatalf("response source %+v", srcs[0])
	}
	if err := s.Send(sipMsg(4), srcs[0]); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, uc, len(sipMsg(4))); !bytes.Equal(got, sipMsg(4)) {
		t.Fatalf("got %q", got)
	}
	ln.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("a second connection was dialled")
	}
	if st := s.Stats(); st.Dialed != 1 || st.OpenOut[0] != 1 {
		t.Errorf("dialled %d, open out %d", st.Dialed, st.OpenOut[0])
	}
}

// A send with Flow 0 to the address of an inbound connection goes over it.
func TestSendReusesInbound(t *testing.T) {
	r := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(sipMsg(1))
	r.waitMsgs(t, 1)
	to := transport.Peer{Addr: c.LocalAddr().(*net.TCPAddr).AddrPort()}
	if err := s.Send(sipMsg(2), to); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, c, len(sipMsg(2))); !bytes.Equal(got, sipMsg(2)) {
		t.Fatalf("got %q", got)
	}
}

// After the peer closes, the next send dials again; after a failed dial,
// sends fail at once until the backoff has passed, then dial again.
func TestReconnectBackoff(t *testing.T) {
	r := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{ReconnectBackoff: 300 * time.Millisecond}, testLayout(), r)
	ln, up := upstream(t, "127.0.0.1:0")
	to := transport.Peer{Addr: up}
	s.Send(sipMsg(1), to)
	uc := acceptWithin(t, ln)
	readFull(t, uc, len(sipMsg(1)))
	uc.Close()
	eventually(t, "peer close seen", func() bool { return s.Stats().Closed[ClosedByPeer] == 1 })

	s.Send(sipMsg(2), to) // dials again
	uc = acceptWithin(t, ln)
	if got := readFull(t, uc, len(sipMsg(2))); !bytes.Equal(got, sipMsg(2)) {
		t.Fatalf("after reconnect got %q", got)
	}
	uc.Close()
	ln.Close()
	eventually(t, "peer close seen", func() bool { return s.Stats().Closed[ClosedByPeer] == 2 })

	s.Send(sipMsg(3), to) // the dial fails: connection refused
	eventually(t, "dial failure", func() bool { return s.Stats().Closed[ClosedDialFailed] == 1 })
	err := s.Send(sipMsg(4), to)
	if !errors.Is(err, errBackingOff) {
		t.Fatalf("send while backing off: %v", err)
	}
	if n := s.Stats().LimitHits[LimitReconnectBackoff]; n != 1 {
		t.Errorf("backoff hits %d, stats %+v", n, s.Stats())
	}
	ln, _ = upstream(t, up.String())
	eventually(t, "backoff over", func() bool { return s.Send(sipMsg(5), to) == nil })
	uc = acceptWithin(t, ln)
	if got := readFull(t, uc, len(sipMsg(5))); !bytes.Equal(got, sipMsg(5)) {
		t.Fatalf("after backoff got %q", got)
	}
}
