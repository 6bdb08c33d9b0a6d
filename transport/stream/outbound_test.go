package stream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
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

// levels is a slog.Handler keeping the level of each "connection failed"
// record.
type levels struct {
	mu  sync.Mutex
	got []slog.Level
}

func (h *levels) Enabled(context.Context, slog.Level) bool { return true }
func (h *levels) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "connection failed" {
		h.mu.Lock()
		h.got = append(h.got, r.Level)
		h.mu.Unlock()
	}
	return nil
}
func (h *levels) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levels) WithGroup(string) slog.Handler      { return h }

func (h *levels) snapshot() []slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

// The first failed dial of an outage is a warning (an upstream down, its
// certificate refused); the retries of the same outage are logged at
// debug level.
func TestDialFailureWarnsOnce(t *testing.T) {
	h := &levels{}
	s, err := NewServer(t.Context(), testLayout(), ServerConfig{ReconnectBackoff: 20 * time.Millisecond}, transport.TCP, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(func(int, int) transport.Handler { return newRecorder(false) })
	t.Cleanup(func() { s.Close() })
	ln, up := upstream(t, "127.0.0.1:0")
	ln.Close() // nothing listens there: every dial is refused
	to := transport.Peer{Addr: up}
	for i := 1; i <= 3; i++ {
		eventually(t, "backoff over", func() bool { return s.Send(sipMsg(i), to) == nil })
		eventually(t, "dial failure", func() bool { return s.Stats().Closed[ClosedDialFailed] == uint64(i) })
	}
	got := h.snapshot()
	want := []slog.Level{slog.LevelWarn, slog.LevelDebug, slog.LevelDebug}
	if !slices.Equal(got, want) {
		t.Errorf("levels of the three failed dials: %v, want %v", got, want)
	}
}

// The table of failing peers is bounded: when it is full, the peers whose
// backoff has passed are forgotten; a peer that finds it full of running
// backoffs gets none.
func TestBackoffTableBounded(t *testing.T) {
	tb := newTable()
	now := time.Now()
	key := func(i int) connKey {
		return connKey{0, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5060)}
	}
	for i := range maxBackoffs {
		if !tb.dialFailed(key(i), now.Add(-time.Minute), time.Millisecond, time.Second) {
			t.Fatalf("peer %d: first failure not reported as the start of an outage", i)
		}
	}
	if tb.dialFailed(key(0), now, time.Millisecond, time.Second) {
		t.Error("a peer's second failure reported as the start of an outage")
	}
	tb.dialFailed(key(maxBackoffs), now, time.Millisecond, time.Second)
	if n := len(tb.backoff); n != 2 {
		t.Errorf("%d peers remembered after a failure met a full table of passed backoffs, want 2 (the two failing now)", n)
	}
	for i := range maxBackoffs - 2 {
		tb.dialFailed(key(maxBackoffs+1+i), now, time.Second, time.Second)
	}
	tb.dialFailed(key(3*maxBackoffs), now, time.Second, time.Second)
	if n := len(tb.backoff); n != maxBackoffs {
		t.Errorf("%d peers remembered, want the bound %d", n, maxBackoffs)
	}
}
