//go:build linux && !portableudp

package udp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// plain opens an ordinary UDP socket on an ephemeral loopback port.
func plain(t testing.TB, network, address string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket(network, address)
	if err != nil {
		t.Fatalf("ListenPacket(%s, %s): %v", network, address, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// readN reads with ReadBatch until want datagrams arrived or a 5 s
// deadline passed, and returns copies of them with their sources.
func readN(t testing.TB, c *Conn, b *Batch, want int) (data []string, from []netip.AddrPort, calls []int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for len(data) < want {
		n, err := c.ReadBatch(b)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(data), want, err)
		}
		calls = append(calls, n)
		for _, m := range b.Msgs[:n] {
			if m.N != len(m.Buf) {
				t.Fatalf("N = %d, len(Buf) = %d", m.N, len(m.Buf))
			}
			data = append(data, string(m.Buf))
			from = append(from, m.Addr)
		}
	}
	return data, from, calls
}

func TestListenConfig(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{ReusePort: true, RecvBuffer: 1 << 20, SendBuffer: 1 << 20})
	if a := c.LocalAddr(); !a.Addr().Is4() || a.Addr() != netip.MustParseAddr("127.0.0.1") || a.Port() == 0 {
		t.Errorf("LocalAddr = %v, want 127.0.0.1 with an ephemeral port", a)
	}
	// The kernel doubles the requested size; as root the FORCE variant
	// lets it exceed rmem_max, otherwise it is capped there.
	if c.RecvBufferSize() < 1<<20 && c.RecvBufferSize() < 2*sysctlInt(t, "/proc/sys/net/core/rmem_max") {
		t.Errorf("RecvBufferSize = %d, want >= 1 MiB (or the rmem_max cap)", c.RecvBufferSize())
	}
	if c.SendBufferSize() < 1<<20 && c.SendBufferSize() < 2*sysctlInt(t, "/proc/sys/net/core/wmem_max") {
		t.Errorf("SendBufferSize = %d, want >= 1 MiB (or the wmem_max cap)", c.SendBufferSize())
	}
	if !c.ReusePort() || c.BatchSize() != DefaultBatchSize {
		t.Errorf("ReusePort = %v, BatchSize = %d", c.ReusePort(), c.BatchSize())
	}
	if !c.rxqOvfl {
		t.Errorf("SO_RXQ_OVFL not enabled on a Linux kernel that has it")
	}
	rc, _ := c.SyscallConn()
	var v int
	var gerr error
	rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT) })
	if gerr != nil || v != 1 {
		t.Errorf("SO_REUSEPORT = %d, %v; want 1", v, gerr)
	}

	for _, tc := range []struct {
		addr string
		cfg  Config
	}{
		{"localhost:0", Config{}},
		{"127.0.0.1", Config{}},
		{"127.0.0.1:0", Config{RecvBuffer: -1}},
		{"127.0.0.1:0", Config{BatchSize: MaxBatchSize + 1}},
	} {
		if c, err := Listen(context.Background(), tc.addr, tc.cfg); err == nil {
			c.Close()
			t.Errorf("Listen(%q, %+v) succeeded, want an error", tc.addr, tc.cfg)
		}
	}
}

func sysctlInt(t *testing.T, path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var v int
	fmt.Sscan(string(b), &v)
	return v
}

func TestReadBatchManyInOneCall(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{RecvBuffer: 1 << 20})
	src := plain(t, "udp4", "127.0.0.1:0")
	const count = 40
	for i := 0; i < count; i++ {
		if _, err := src.WriteToUDPAddrPort([]byte(fmt.Sprintf("msg %d", i)), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	b := NewBatch(64, 2048)
	data, from, calls := readN(t, c, b, count)
	// All datagrams were queued before the first read, so recvmmsg
	// returns them together (loopback delivers within sendto).
	if calls[0] < 2 {
		t.Errorf("first ReadBatch returned %d datagrams, want a batch (calls: %v)", calls[0], calls)
	}
	t.Logf("ReadBatch calls for %d queued datagrams: %v", count, calls)
	for i := range data {
		if want := fmt.Sprintf("msg %d", i); data[i] != want {
			t.Fatalf("datagram %d = %q, want %q (order must be kept)", i, data[i], want)
		}
		if from[i] != addrOf(src) {
			t.Fatalf("datagram %d from %v, want %v", i, from[i], addrOf(src))
		}
	}
}

func TestReadBatchTruncated(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	src := plain(t, "udp4", "127.0.0.1:0")
	long := bytes.Repeat([]byte("x"), 100)
	src.WriteToUDPAddrPort(long, c.LocalAddr())
	src.WriteToUDPAddrPort([]byte("short"), c.LocalAddr())
	b := NewBatch(4, 16)
	got := 0
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got < 2 {
		n, err := c.ReadBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range b.Msgs[:n] {
			switch got {
			case 0:
				if m.Err != ErrTruncated || m.N != 16 || string(m.Buf) != string(long[:16]) {
					t.Errorf("long datagram: N=%d Err=%v Buf=%q, want 16 bytes and ErrTruncated", m.N, m.Err, m.Buf)
				}
			case 1:
				if m.Err != nil || string(m.Buf) != "short" {
					t.Errorf("short datagram: Err=%v Buf=%q", m.Err, m.Buf)
				}
			}
			got++
		}
	}
	if c.Truncated() != 1 {
		t.Errorf("Truncated() = %d, want 1", c.Truncated())
	}
}

func TestWriteBatchDestinations(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	var dst [3]*net.UDPConn
	for i := range dst {
		dst[i] = plain(t, "udp4", "127.0.0.1:0")
	}
	// A write batch without slots: Buf points at the caller's memory.
	out := NewBatch(9, 0)
	payload := []byte("p0p1p2p3p4p5p6p7p8")
	for i := range out.Msgs {
		out.Msgs[i].SetData(payload[2*i:2*i+2], addrOf(dst[i%3]))
	}
	sent, err := c.WriteBatch(out, 9)
	if err != nil || sent != 9 {
		t.Fatalf("WriteBatch = %d, %v; want 9, nil", sent, err)
	}
	buf := make([]byte, 64)
	for i, d := range dst {
		d.SetReadDeadline(time.Now().Add(5 * time.Second))
		for k := 0; k < 3; k++ {
			n, from, err := d.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("destination %d, datagram %d: %v", i, k, err)
			}
			if want := fmt.Sprintf("p%d", i+3*k); string(buf[:n]) != want {
				t.Errorf("destination %d got %q, want %q", i, buf[:n], want)
			}
			if netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != c.LocalAddr() {
				t.Errorf("source %v, want %v", from, c.LocalAddr())
			}
		}
	}
	// Repointing Buf between calls is honoured: iovecs are rebuilt.
	out.Msgs[0].SetData([]byte("again"), addrOf(dst[0]))
	if sent, err := c.WriteBatch(out, 1); sent != 1 || err != nil {
		t.Fatalf("second WriteBatch = %d, %v", sent, err)
	}
	n, _, err := dst[0].ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "again" {
		t.Errorf("after repointing Buf got %q, %v", buf[:n], err)
	}
}

func TestWriteBatchPerMessageErrors(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	dst := plain(t, "udp4", "127.0.0.1:0")
	to := addrOf(dst)
	huge := make([]byte, 70000) // over the 65507-byte IPv4 UDP limit
	out := NewBatch(9, 0)
	out.Msgs[0].SetData([]byte("ok0"), to)
	out.Msgs[1].SetData(huge, to)
	out.Msgs[2].SetData([]byte("ok1"), to)
	out.Msgs[3].SetData([]byte("port zero"), netip.AddrPortFrom(to.Addr(), 0))
	out.Msgs[4].SetData([]byte("ok2"), to)
	out.Msgs[5].SetData([]byte("no address"), netip.AddrPort{})
	out.Msgs[6].SetData([]byte("ok3"), to)
	out.Msgs[7].SetData([]byte("ipv6 on ipv4"), netip.MustParseAddrPort("[::1]:9"))
	out.Msgs[8].SetData([]byte("ok4"), netip.AddrPortFrom(netip.AddrFrom16(to.Addr().As16()), to.Port())) // IPv4-mapped is fine
	sent, err := c.WriteBatch(out, 9)
	if err != nil || sent != 5 {
		t.Fatalf("WriteBatch = %d, %v; want 5 sent, nil error", sent, err)
	}
	wantErr := map[int]syscall.Errno{1: unix.EMSGSIZE, 3: unix.EINVAL, 5: unix.EDESTADDRREQ, 7: unix.EAFNOSUPPORT}
	for i, m := range out.Msgs {
		if e, bad := wantErr[i]; bad {
			if !errors.Is(m.Err, e) {
				t.Errorf("message %d: Err = %v, want %v", i, m.Err, e)
			}
		} else if m.Err != nil {
			t.Errorf("message %d: Err = %v, want nil", i, m.Err)
		}
	}
	if c.SendFailed() != 4 {
		t.Errorf("SendFailed() = %d, want 4", c.SendFailed())
	}
	buf := make([]byte, 64)
	dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	for k := 0; k < 5; k++ {
		n, _, err := dst.ReadFromUDPAddrPort(buf)
		if want := fmt.Sprintf("ok%d", k); err != nil || string(buf[:n]) != want {
			t.Fatalf("datagram %d = %q, %v; want %q", k, buf[:n], err, want)
		}
	}
}

func TestIPv6(t *testing.T) {
	c, err := Listen(context.Background(), "[::1]:0", Config{ReusePort: true})
	if err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
			t.Skipf("no IPv6 on loopback: %v", err)
		}
		t.Fatal(err)
	}
	defer c.Close()
	if a := c.LocalAddr(); a.Addr() != netip.IPv6Loopback() || a.Port() == 0 {
		t.Errorf("LocalAddr = %v", a)
	}
	rc, _ := c.SyscallConn()
	var v6only int
	rc.Control(func(fd uintptr) { v6only, _ = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) })
	if v6only != 1 {
		t.Errorf("IPV6_V6ONLY = %d, want 1", v6only)
	}
	peer := listen(t, "[::1]:0", Config{})
	out := NewBatch(4, 0)
	for i := range out.Msgs {
		out.Msgs[i].SetData([]byte(fmt.Sprintf("v6 %d", i)), c.LocalAddr())
	}
	if sent, err := peer.WriteBatch(out, 4); sent != 4 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", sent, err)
	}
	in := c.NewBatch(1500)
	data, from, _ := readN(t, c, in, 4)
	for i := range data {
		if data[i] != fmt.Sprintf("v6 %d", i) || from[i] != peer.LocalAddr() {
			t.Errorf("datagram %d = %q from %v, want from %v", i, data[i], from[i], peer.LocalAddr())
		}
	}
	// Echo back with WriteTo.
	if err := c.WriteTo([]byte("pong"), from[0]); err != nil {
		t.Fatal(err)
	}
	data, _, _ = readN(t, peer, in, 1)
	if data[0] != "pong" {
		t.Errorf("WriteTo delivered %q", data[0])
	}
}

func TestWriteTo(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	dst := listen(t, "127.0.0.1:0", Config{})
	mapped := netip.AddrPortFrom(netip.AddrFrom16(dst.LocalAddr().Addr().As16()), dst.LocalAddr().Port())
	for _, to := range []netip.AddrPort{dst.LocalAddr(), mapped} {
		if err := c.WriteTo([]byte("hi"), to); err != nil {
			t.Fatalf("WriteTo(%v): %v", to, err)
		}
	}
	data, from, _ := readN(t, dst, NewBatch(2, 64), 2)
	if data[0] != "hi" || data[1] != "hi" || from[0] != c.LocalAddr() {
		t.Errorf("got %q from %v", data, from)
	}
}

func TestCloseUnblocksReader(t *testing.T) {
	c, err := Listen(context.Background(), "127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch(NewBatch(8, 1500))
		done <- err
	}()
	// Give the reader time to park; if Close wins the race the read
	// fails the same way.
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadBatch after Close: %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteBatch(NewBatch(1, 8), 1); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteBatch after Close: %v, want net.ErrClosed", err)
	}
}

func TestReadDeadline(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.ReadBatch(NewBatch(8, 1500))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadBatch past deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestDrops(t *testing.T) {
	// The smallest receive buffer the kernel allows holds only a few
	// datagrams; a burst nobody reads must overflow it.
	c := listen(t, "127.0.0.1:0", Config{RecvBuffer: 1})
	src := plain(t, "udp4", "127.0.0.1:0")
	payload := make([]byte, 512)
	const burst = 200
	for i := 0; i < burst; i++ {
		if _, err := src.WriteToUDPAddrPort(payload, c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	// Drain without asking SO_MEMINFO, then one more datagram: its
	// SO_RXQ_OVFL control message alone must carry the count.
	b := NewBatch(64, 1024)
	queued := 0
	for {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.ReadBatch(b)
		if err != nil {
			break
		}
		queued += n
	}
	if queued == 0 || queued >= burst {
		t.Fatalf("read %d of %d datagrams, want some but not all", queued, burst)
	}
	src.WriteToUDPAddrPort(payload, c.LocalAddr())
	readN(t, c, b, 1)
	cmsgDrops := c.drops.Load()
	if want := uint64(burst - queued); cmsgDrops != want {
		t.Errorf("drops from SO_RXQ_OVFL = %d, want %d (sent %d, read %d)", cmsgDrops, want, burst, queued)
	}
	if d := c.Drops(); d != uint64(burst-queued) {
		t.Errorf("Drops() = %d, want %d", d, burst-queued)
	}
	t.Logf("receive buffer %d bytes: %d of %d datagrams queued, Drops() = %d", c.RecvBufferSize(), queued, burst, c.Drops())

	// A second socket: Drops sees the overflow before anything is read.
	c2 := listen(t, "127.0.0.1:0", Config{RecvBuffer: 1})
	for i := 0; i < 50; i++ {
		src.WriteToUDPAddrPort(payload, c2.LocalAddr())
	}
	if c2.Drops() == 0 {
		t.Errorf("Drops() = 0 on an unread socket after a 50-datagram burst into %d bytes", c2.RecvBufferSize())
	}
}

func TestNoteDropsWrap(t *testing.T) {
	var c Conn
	for _, step := range []struct {
		raw  uint32
		want uint64
	}{
		{10, 10},
		{5, 10}, // stale value from a concurrent reader
		{0xfffffff0, 0xfffffff0},
		{3, 1<<32 + 3}, // the kernel counter wrapped
		{0xfffffff8, 1<<32 + 3},
		{7, 1<<32 + 7},
	} {
		c.noteDrops(step.raw)
		if got := c.drops.Load(); got != step.want {
			t.Fatalf("after %#x: drops = %#x, want %#x", step.raw, got, step.want)
		}
	}
}

func TestRxqOvflParse(t *testing.T) {
	// Two control messages; the drop counter is the second.
	oob := make([]byte, unix.CmsgSpace(8)+unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SO_TIMESTAMP
	h.SetLen(unix.CmsgLen(8))
	h2 := (*unix.Cmsghdr)(unsafe.Pointer(&oob[unix.CmsgSpace(8)]))
	h2.Level, h2.Type = unix.SOL_SOCKET, unix.SO_RXQ_OVFL
	h2.SetLen(unix.CmsgLen(4))
	copy(oob[unix.CmsgSpace(8)+unix.CmsgLen(0):], []byte{42, 1, 0, 0})
	if v, ok := rxqOvfl(oob); !ok || v != 298 {
		t.Errorf("rxqOvfl = %d, %v; want 298, true", v, ok)
	}
	if _, ok := rxqOvfl(oob[:unix.CmsgSpace(8)]); ok {
		t.Error("found SO_RXQ_OVFL in a buffer without it")
	}
	h.SetLen(1 << 20) // corrupt length must not run off the buffer
	if _, ok := rxqOvfl(oob); ok {
		t.Error("parsed past a corrupt control message")
	}
}

func TestExclusiveWithoutReusePort(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	if c2, err := Listen(context.Background(), c.LocalAddr().String(), Config{}); err == nil {
		c2.Close()
		t.Fatal("second exclusive socket bound the same address")
	}
	g := listen(t, "127.0.0.1:0", Config{ReusePort: true})
	if c3, err := Listen(context.Background(), g.LocalAddr().String(), Config{}); err == nil {
		c3.Close()
		t.Fatal("a socket without SO_REUSEPORT joined a reuse-port group")
	}
}

// A batch of one datagram goes out with sendto(2) rather than sendmmsg(2):
// its per-message errors are the same, and a good datagram still leaves.
func TestWriteBatchOfOne(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	dst := plain(t, "udp4", "127.0.0.1:0")
	to := addrOf(dst)
	b := NewBatch(1, 0)
	for _, tc := range []struct {
		payload []byte
		to      netip.AddrPort
		want    syscall.Errno
	}{
		{make([]byte, 70000), to, unix.EMSGSIZE},
		{[]byte("port zero"), netip.AddrPortFrom(to.Addr(), 0), unix.EINVAL},
		{[]byte("no address"), netip.AddrPort{}, unix.EDESTADDRREQ},
		{[]byte("ipv6 on ipv4"), netip.MustParseAddrPort("[::1]:9"), unix.EAFNOSUPPORT},
	} {
		b.Msgs[0].SetData(tc.payload, tc.to)
		if sent, err := c.WriteBatch(b, 1); sent != 0 || err != nil || !errors.Is(b.Msgs[0].Err, tc.want) {
			t.Errorf("to %v: WriteBatch = %d, %v, Err %v; want 0, nil, %v", tc.to, sent, err, b.Msgs[0].Err, tc.want)
		}
	}
	sendOne(t, c, b, "ok", to)
	expectDatagram(t, dst, "ok")
	if c.SendFailed() != 4 {
		t.Errorf("SendFailed() = %d, want 4", c.SendFailed())
	}
}

// TestWriteBatchStaleConnRefused checks that ECONNREFUSED, which the
// kernel reports for an earlier datagram (here thanks to IP_RECVERR and
// the ICMP port unreachable loopback returns), does not cost the next
// datagram.
func TestWriteBatchStaleConnRefused(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{})
	rc, _ := c.SyscallConn()
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1) })
	if serr != nil {
		t.Fatal(serr)
	}
	closed := plain(t, "udp4", "127.0.0.1:0")
	closedAddr := addrOf(closed)
	closed.Close()
	dst := plain(t, "udp4", "127.0.0.1:0")

	b := NewBatch(1, 0)
	b.Msgs[0].SetData([]byte("to nobody"), closedAddr)
	if sent, err := c.WriteBatch(b, 1); sent != 1 || err != nil {
		t.Fatalf("WriteBatch to a closed port = %d, %v", sent, err)
	}
	// Wait (bounded) for the ICMP error to be pending on the socket.
	var pending bool
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		n, _ := unix.Poll(fds, 2000)
		pending = n == 1 && fds[0].Revents&unix.POLLERR != 0
	})
	if !pending {
		t.Skip("no ICMP error pending on the socket; cannot exercise the stale-error path")
	}
	sendOne(t, c, b, "good", addrOf(dst)) // after a pending ECONNREFUSED
	expectDatagram(t, dst, "good")
	if c.SendFailed() != 0 {
		t.Errorf("SendFailed() = %d, want 0", c.SendFailed())
	}
}

// TestConcurrentUse runs one reader and two writers, each with its own
// Batch, on one Conn (run with -race), and checks every datagram arrives.
func TestConcurrentUse(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{RecvBuffer: 4 << 20})
	peer := listen(t, "127.0.0.1:0", Config{RecvBuffer: 4 << 20})
	const writers, rounds, per = 2, 20, 16
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		go func() {
			b := NewBatch(per, 0)
			for r := 0; r < rounds; r++ {
				for i := range b.Msgs {
					b.Msgs[i].SetData([]byte(fmt.Sprintf("w%d r%d i%d", w, r, i)), peer.LocalAddr())
				}
				if sent, err := c.WriteBatch(b, per); sent != per || err != nil {
					errc <- fmt.Errorf("writer %d: WriteBatch = %d, %v", w, sent, err)
					return
				}
			}
			errc <- nil
		}()
	}
	data, from, _ := readN(t, peer, NewBatch(64, 64), writers*rounds*per)
	for w := 0; w < writers; w++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	// Each writer's datagrams arrive in its own order.
	next := make([]int, writers)
	for i, d := range data {
		var w, r, k int
		fmt.Sscanf(d, "w%d r%d i%d", &w, &r, &k)
		if r*per+k != next[w] {
			t.Fatalf("writer %d: got %q when datagram %d was due", w, d, next[w])
		}
		next[w]++
		if from[i] != c.LocalAddr() {
			t.Fatalf("source %v", from[i])
		}
	}
}

// TestConnectSendsWithoutAddress checks Connect: a batch whose messages
// carry no address reaches the peer, and a datagram from anyone else is no
// longer received.
func TestConnectSendsWithoutAddress(t *testing.T) {
	peer := plain(t, "udp4", "127.0.0.1:0")
	stranger := plain(t, "udp4", "127.0.0.1:0")
	c := listen(t, "127.0.0.1:0", Config{})
	if err := c.Connect(addrOf(peer)); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	b := NewBatch(2, 0)
	b.Msgs[0].SetData([]byte("one"), netip.AddrPort{})
	b.Msgs[1].SetData([]byte("two"), netip.AddrPort{})
	if n, err := c.WriteBatch(b, 2); n != 2 || err != nil {
		t.Fatalf("WriteBatch without addresses = %d, %v; want 2, nil", n, err)
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"one", "two"} {
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want || from != c.LocalAddr() {
			t.Fatalf("peer read %q from %v (%v), want %q from %v", buf[:n], from, err, want, c.LocalAddr())
		}
	}
	stranger.WriteToUDPAddrPort([]byte("stray"), c.LocalAddr())
	peer.WriteToUDPAddrPort([]byte("reply"), c.LocalAddr())
	rb := NewBatch(4, 64)
	data, _, _ := readN(t, c, rb, 1)
	if data[0] != "reply" {
		t.Errorf("connected socket read %q first, want only the peer's %q", data[0], "reply")
	}
	if err := c.Connect(netip.AddrPort{}); err == nil {
		t.Error("Connect to an invalid address succeeded")
	}
}
