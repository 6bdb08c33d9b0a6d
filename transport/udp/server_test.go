package udp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// relay is a transport.Handler that sends every message it gets, with a
// prefix, to a fixed peer, and remembers what it saw and what was sent.
type relay struct {
	to       transport.Peer
	mu       sync.Mutex
	sources  []transport.Peer
	sent     int
	sendErrs []error
}

func (r *relay) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	r.mu.Lock()
	r.sources = append(r.sources, src)
	r.mu.Unlock()
	out.Buf = append(append(out.Buf, "relayed "...), msg...)
	out.To = r.to
	return true
}

func (r *relay) Sent(out *transport.Outbound, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.sendErrs = append(r.sendErrs, err)
		return
	}
	r.sent++
}

// serve binds a server for layout l and serves it with handlers made by
// newHandler; the test's cleanup closes it.
func serve(t *testing.T, l transport.Layout, c ServerConfig, newHandler func(l, w int) transport.Handler) *Server {
	t.Helper()
	s, err := NewServer(context.Background(), l, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(newHandler)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func loopbackLayout(workers int) transport.Layout {
	return transport.Layout{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Workers: workers,
		MaxMessage: 1500, OutputSize: 1600}
}

// readFrom reads one datagram from c within 5 s.
func readFrom(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), from
}

// A datagram goes to its handler with its source, the UDP kind and the
// listener; what the handler returns leaves from the listen address.
func TestServerRelays(t *testing.T) {
	dst, dstAddr := testenv.ListenUDP(t)
	r := &relay{to: transport.Peer{Addr: dstAddr, Kind: transport.UDP}}
	s := serve(t, loopbackLayout(2), ServerConfig{}, func(int, int) transport.Handler { return r })
	client, clientAddr := testenv.ListenUDP(t)
	if _, err := client.WriteToUDPAddrPort([]byte("hello"), s.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	got, from := readFrom(t, dst)
	if got != "relayed hello" || from != s.Addrs()[0] {
		t.Errorf("got %q from %v, want %q from %v", got, from, "relayed hello", s.Addrs()[0])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	want := transport.Peer{Addr: clientAddr, Kind: transport.UDP}
	if len(r.sources) != 1 || r.sources[0] != want {
		t.Errorf("sources %v, want [%v]", r.sources, want)
	}
}

// An output naming a listener the server does not have is reported to the
// handler as a send error, and the rest of the batch still leaves.
func TestServerReportsUnknownListener(t *testing.T) {
	_, dstAddr := testenv.ListenUDP(t)
	bad := &relay{to: transport.Peer{Addr: dstAddr, Listener: 3}}
	s := serve(t, loopbackLayout(1), ServerConfig{}, func(int, int) transport.Handler { return bad })
	client, _ := testenv.ListenUDP(t)
	if _, err := client.WriteToUDPAddrPort([]byte("x"), s.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		bad.mu.Lock()
		n := len(bad.sendErrs)
		bad.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no send error reported for listener 3")
		}
		time.Sleep(time.Millisecond)
	}
}

// Originate sends from the listener's origin socket, a port of its own on
// the wildcard address (the kernel picks the source address by route), and
// what comes back there reaches the origin worker's handler (worker index
// Workers), not one of the shared sockets' workers.
func TestServerOrigin(t *testing.T) {
	peer, peerAddr := testenv.ListenUDP(t)
	var mu sync.Mutex
	got := map[int][]transport.Peer{}
	record := handlerFunc(func(msg []byte, src transport.Peer, out *transport.Outbound) bool {
		mu.Lock()
		defer mu.Unlock()
		got[src.Listener] = append(got[src.Listener], src)
		return false
	})
	var workers []int
	s := serve(t, loopbackLayout(2), ServerConfig{}, func(l, w int) transport.Handler {
		workers = append(workers, w)
		return record
	})
	if len(workers) != 3 || workers[2] != 2 {
		t.Fatalf("handlers made for workers %v, want [0 1 2]", workers)
	}
	origin := s.Origin(0)
	if origin.Port() == s.Addrs()[0].Port() || !origin.Addr().IsUnspecified() || !origin.Addr().Is4() {
		t.Fatalf("origin %v: want the IPv4 wildcard with a port of its own (listen %v)", origin, s.Addrs()[0])
	}
	if err := s.Originate([]byte("probe"), transport.Peer{Addr: peerAddr}); err != nil {
		t.Fatal(err)
	}
	msg, from := readFrom(t, peer)
	if msg != "probe" || from.Port() != origin.Port() || from.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("got %q from %v, want the probe from 127.0.0.1:%d", msg, from, origin.Port())
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("reply"), from); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got[0])
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reply to the origin socket reached no handler")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Originate([]byte("x"), transport.Peer{Addr: from, Listener: 1}); err == nil {
		t.Error("Originate on listener 1 of 1: no error")
	}
}

type handlerFunc func(msg []byte, src transport.Peer, out *transport.Outbound) bool

func (f handlerFunc) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	return f(msg, src, out)
}
func (handlerFunc) Sent(*transport.Outbound, error) {}

// Each field out of range is named in the error, and zero values get the
// defaults.
func TestServerConfigDefaults(t *testing.T) {
	c, err := ServerConfig{}.WithDefaults()
	if err != nil || c.Batch != DefaultServerBatch || c.RecvBuffer != DefaultSocketBuffer || c.SendBuffer != DefaultSocketBuffer || c.ParkAfter != 0 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	for field, bad := range map[string]ServerConfig{
		"recv_buffer": {RecvBuffer: -1},
		"send_buffer": {SendBuffer: -1},
		"batch":       {Batch: MaxServerBatch + 1},
		"park_after":  {ParkAfter: MaxParkAfter + 1},
	} {
		_, err := bad.WithDefaults()
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%+v: error %v, want one naming %s", bad, err, field)
		}
	}
}

// Send writes from the listen port itself, from any goroutine, and refuses
// a listener the server does not have.
func TestServerSend(t *testing.T) {
	peer, peerAddr := testenv.ListenUDP(t)
	s := serve(t, loopbackLayout(1), ServerConfig{}, func(l, w int) transport.Handler {
		return handlerFunc(func([]byte, transport.Peer, *transport.Outbound) bool { return false })
	})
	if err := s.Send([]byte("hello"), transport.Peer{Addr: peerAddr, Kind: transport.UDP}); err != nil {
		t.Fatal(err)
	}
	msg, from := readFrom(t, peer)
	if msg != "hello" || from != s.Addrs()[0] {
		t.Fatalf("got %q from %v, want hello from the listen address %v", msg, from, s.Addrs()[0])
	}
	if err := s.Send([]byte("x"), transport.Peer{Addr: peerAddr, Listener: 5}); err == nil {
		t.Error("Send on listener 5 of 1: no error")
	}
}

// flushingRelay is a relay that is a transport.Flusher: at each Flush it
// notes how many of its outputs had been reported sent.
type flushingRelay struct {
	relay
	flushes chan int
}

func (f *flushingRelay) Flush() {
	f.mu.Lock()
	n := f.sent
	f.mu.Unlock()
	f.flushes <- n
}

// A Handler that is a Flusher gets Flush after each batch, once the
// batch's own outputs are sent.
func TestServerFlushesAfterBatch(t *testing.T) {
	dst, dstAddr := testenv.ListenUDP(t)
	f := &flushingRelay{relay: relay{to: transport.Peer{Addr: dstAddr, Kind: transport.UDP}}, flushes: make(chan int, 16)}
	s := serve(t, loopbackLayout(1), ServerConfig{}, func(int, int) transport.Handler { return f })
	client, _ := testenv.ListenUDP(t)
	for _, m := range []string{"one", "two"} {
		if _, err := client.WriteToUDPAddrPort([]byte(m), s.Addrs()[0]); err != nil {
			t.Fatal(err)
		}
		readFrom(t, dst)
		select {
		case n := <-f.flushes:
			if m == "two" && n != 2 {
				t.Errorf("Flush after %d outputs sent, want 2", n)
			}
			if n == 0 {
				t.Error("Flush before the batch's output was sent")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no Flush after the batch")
		}
	}
}
