//go:build !linux || portableudp

// The tests of the portable implementation. On Linux they run with
// go test -tags portableudp ./transport/udp/ (make test does).

package udp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// deadline bounds every read of these tests: generous for a loaded
// machine, short enough that a missing datagram fails the test.
const deadline = 10 * time.Second

// plainPeer is a plain loopback socket whose reads and writes fail after
// deadline.
func plainPeer(t *testing.T) *net.UDPConn {
	uc, _ := testenv.ListenUDP(t)
	uc.SetDeadline(time.Now().Add(deadline))
	return uc
}

// TestFallbackReadWrite reads datagrams one per ReadBatch and echoes a
// batch back with WriteBatch.
func TestFallbackReadWrite(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{RecvBuffer: 1 << 20})
	if c.RecvBufferSize() != 1<<20 || c.ReusePort() || c.BatchSize() != DefaultBatchSize {
		t.Errorf("RecvBufferSize %d, ReusePort %v, BatchSize %d", c.RecvBufferSize(), c.ReusePort(), c.BatchSize())
	}
	c.SetReadDeadline(time.Now().Add(deadline))
	peer := plainPeer(t)
	want := []string{"one", "two", "three"}
	for _, s := range want {
		if _, err := peer.WriteToUDPAddrPort([]byte(s), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	in, out := c.NewBatch(64), NewBatch(len(want), 0)
	for i, s := range want {
		n, err := c.ReadBatch(in)
		if err != nil || n != 1 {
			t.Fatalf("ReadBatch %d = %d, %v; want 1 datagram", i, n, err)
		}
		m := in.Msgs[0]
		if string(m.Buf) != s || m.N != len(s) || m.Addr != addrOf(peer) || m.Err != nil {
			t.Fatalf("datagram %d = %q (N %d) from %v, err %v; want %q from %v", i, m.Buf, m.N, m.Addr, m.Err, s, addrOf(peer))
		}
		out.Msgs[i].SetData([]byte(strings.ToUpper(s)), m.Addr)
	}
	if sent, err := c.WriteBatch(out, len(want)); sent != len(want) || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, len(want))
	}
	buf := make([]byte, 64)
	for _, s := range want {
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != strings.ToUpper(s) || from != c.LocalAddr() {
			t.Fatalf("peer read %q from %v, %v; want %q from %v", buf[:n], from, err, strings.ToUpper(s), c.LocalAddr())
		}
	}
}

// TestFallbackTruncated: a datagram longer than its slot is cut to the
// slot and marked.
func TestFallbackTruncated(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	c.SetReadDeadline(time.Now().Add(deadline))
	peer := plainPeer(t)
	peer.WriteToUDPAddrPort([]byte("0123456789abcdef"), c.LocalAddr())
	peer.WriteToUDPAddrPort([]byte("short"), c.LocalAddr())
	b := c.NewBatch(8)
	if n, err := c.ReadBatch(b); n != 1 || err != nil {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	if m := b.Msgs[0]; string(m.Buf) != "01234567" || m.N != 8 || !errors.Is(m.Err, ErrTruncated) {
		t.Errorf("long datagram: %q (N %d), err %v; want the first 8 bytes and ErrTruncated", m.Buf, m.N, m.Err)
	}
	if n, err := c.ReadBatch(b); n != 1 || err != nil || string(b.Msgs[0].Buf) != "short" || b.Msgs[0].Err != nil {
		t.Errorf("next datagram: %d, %v, %q, %v; want \"short\" whole", n, err, b.Msgs[0].Buf, b.Msgs[0].Err)
	}
	if c.Truncated() != 1 {
		t.Errorf("Truncated() = %d, want 1", c.Truncated())
	}
}

// TestFallbackWriteBatchPerMessageErrors: a datagram the kernel refuses
// is skipped and marked; the others go out.
func TestFallbackWriteBatchPerMessageErrors(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	peer := plainPeer(t)
	b := NewBatch(4, 0)
	b.Msgs[0].SetData([]byte("a"), addrOf(peer))
	b.Msgs[1].SetData([]byte("b"), netip.AddrPort{})                              // no destination
	b.Msgs[2].SetData([]byte("c"), netip.MustParseAddrPort("[2001:db8::1]:5060")) // IPv6 on an IPv4 socket
	b.Msgs[3].SetData([]byte("d"), addrOf(peer))
	sent, err := c.WriteBatch(b, 4)
	if sent != 2 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 2, nil", sent, err)
	}
	for i, failed := range []bool{false, true, true, false} {
		if (b.Msgs[i].Err != nil) != failed {
			t.Errorf("message %d: Err = %v, want failed %v", i, b.Msgs[i].Err, failed)
		}
	}
	if c.SendFailed() != 2 {
		t.Errorf("SendFailed() = %d, want 2", c.SendFailed())
	}
	buf := make([]byte, 8)
	for _, want := range []string{"a", "d"} {
		if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != want {
			t.Fatalf("peer read %q, %v; want %q", buf[:n], err, want)
		}
	}
	c.Close()
	b.Msgs[1].Addr = addrOf(peer)
	if sent, err := c.WriteBatch(b, 2); sent != 0 || !errors.Is(err, net.ErrClosed) || !errors.Is(b.Msgs[1].Err, net.ErrClosed) {
		t.Errorf("WriteBatch after Close = %d, %v (message 1: %v); want 0 and net.ErrClosed on every message", sent, err, b.Msgs[1].Err)
	}
}

// TestFallbackReadLoop: handle sees every datagram and can stop the loop;
// a deadline and Close end it with their errors.
func TestFallbackReadLoop(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{ParkAfter: time.Millisecond})
	if c.ParkAfter() != 0 {
		t.Errorf("ParkAfter() = %v, want 0 (not in effect off Linux)", c.ParkAfter())
	}
	c.SetReadDeadline(time.Now().Add(deadline))
	peer := plainPeer(t)
	for _, s := range []string{"1", "2", "3"} {
		peer.WriteToUDPAddrPort([]byte(s), c.LocalAddr())
	}
	b := c.NewBatch(16)
	var got []string
	err := c.ReadLoop(b, func(n int) bool {
		for _, m := range b.Msgs[:n] {
			got = append(got, string(m.Buf))
		}
		return len(got) < 3
	})
	if err != nil || strings.Join(got, ",") != "1,2,3" {
		t.Fatalf("ReadLoop = %v, read %q; want nil after 1,2,3", err, got)
	}

	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if err := c.ReadLoop(b, func(int) bool { return true }); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadLoop past its deadline = %v, want os.ErrDeadlineExceeded", err)
	}

	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { done <- c.ReadLoop(b, func(int) bool { return true }) }()
	time.Sleep(20 * time.Millisecond) // let it park; Close must wake it either way
	c.Close()
	if err := wait(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadLoop after Close = %v, want net.ErrClosed", err)
	}
}

// TestFallbackListenGroup: a group is one socket that every member reads
// and writes; it holds its address alone, and one Close closes it for all.
func TestFallbackListenGroup(t *testing.T) {
	g, err := ListenGroup(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 3, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range g {
		if c.LocalAddr() != g[0].LocalAddr() || c.LocalAddr().Port() == 0 || c.ReusePort() {
			t.Fatalf("member %d on %v (reuseport %v), member 0 on %v", i, c.LocalAddr(), c.ReusePort(), g[0].LocalAddr())
		}
	}
	if _, err := ListenGroup(context.Background(), g[0].LocalAddr(), 1, Config{}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second group on %v: %v, want EADDRINUSE", g[0].LocalAddr(), err)
	}
	peer := plainPeer(t)
	for i, c := range g {
		c.SetReadDeadline(time.Now().Add(deadline))
		peer.WriteToUDPAddrPort([]byte{byte('a' + i)}, c.LocalAddr())
		b := c.NewBatch(8)
		if n, err := c.ReadBatch(b); n != 1 || err != nil || b.Msgs[0].Buf[0] != byte('a'+i) {
			t.Fatalf("member %d: ReadBatch = %d, %v, %q", i, n, err, b.Msgs[0].Buf)
		}
		if err := c.WriteTo([]byte("ok"), addrOf(peer)); err != nil {
			t.Fatalf("member %d: WriteTo: %v", i, err)
		}
	}

	done := make(chan error, 1)
	go func() {
		_, err := g[2].ReadBatch(g[2].NewBatch(8))
		done <- err
	}()
	if err := g[0].Close(); err != nil {
		t.Fatalf("Close of member 0: %v", err)
	}
	if err := wait(t, done, "member 0's Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("member 2's ReadBatch after member 0's Close = %v, want net.ErrClosed", err)
	}
	for i, c := range g[1:] {
		if err := c.Close(); err != nil {
			t.Errorf("Close of member %d after the socket closed: %v, want nil", i+1, err)
		}
	}
}

// TestFallbackRefuses: what needs Linux is an error saying so, and
// invalid arguments are errors as on Linux.
func TestFallbackRefuses(t *testing.T) {
	ctx := context.Background()
	ephemeral := netip.MustParseAddrPort("127.0.0.1:0")
	if _, err := ListenGroup(ctx, ephemeral, 2, Config{ShareAddress: true}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("ListenGroup with ShareAddress: %v, want errors.ErrUnsupported", err)
	}
	if _, err := ListenAddrPort(ctx, ephemeral, Config{ReusePort: true}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Listen with ReusePort: %v, want errors.ErrUnsupported", err)
	}
	for _, tc := range []struct {
		name string
		n    int
		cfg  Config
	}{
		{"group of 0", 0, Config{}},
		{"group too large", MaxGroupSize + 1, Config{}},
		{"negative ParkAfter", 1, Config{ParkAfter: -time.Second}},
		{"negative buffer", 1, Config{RecvBuffer: -1}},
		{"batch too large", 1, Config{BatchSize: MaxBatchSize + 1}},
	} {
		if g, err := ListenGroup(ctx, ephemeral, tc.n, tc.cfg); err == nil {
			closeAll(g)
			t.Errorf("%s: ListenGroup succeeded, want an error", tc.name)
		}
	}
}

func closeAll(g []*Conn) {
	for _, c := range g {
		c.Close()
	}
}
