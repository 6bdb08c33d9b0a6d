//go:build linux && !portableudp

package udp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

// listenGroup opens a group and closes it when the test ends.
func listenGroup(t *testing.T, addr string, n int, cfg Config) []*Conn {
	t.Helper()
	g, err := ListenGroup(context.Background(), netip.MustParseAddrPort(addr), n, cfg)
	if err != nil {
		if strings.HasPrefix(addr, "[") && !errors.Is(err, syscall.EADDRINUSE) {
			t.Skipf("no IPv6 on loopback: %v", err)
		}
		t.Fatalf("ListenGroup(%s, %d): %v", addr, n, err)
	}
	t.Cleanup(func() { closeGroup(g) })
	return g
}

// A group takes an address alone unless both sides share: a second group,
// from this or another process, is refused with EADDRINUSE naming the
// address, also on the family's wildcard address; with ShareAddress on
// both, the second joins. IPv4 and IPv6, port 0 and a given port.
func TestListenGroupExclusive(t *testing.T) {
	for _, c := range []struct{ loopback, wildcard string }{{"127.0.0.1", "0.0.0.0"}, {"[::1]", "[::]"}} {
		t.Run(c.loopback, func(t *testing.T) {
			g := listenGroup(t, c.loopback+":0", 3, Config{})
			addr := g[0].LocalAddr()
			for i, s := range g {
				if s.LocalAddr() != addr || addr.Port() == 0 || !s.ReusePort() {
					t.Fatalf("socket %d on %v (reuseport %v), socket 0 on %v", i, s.LocalAddr(), s.ReusePort(), addr)
				}
			}
			port := fmt.Sprint(addr.Port())
			for _, other := range []string{addr.String(), c.wildcard + ":" + port} {
				g2, err := ListenGroup(context.Background(), netip.MustParseAddrPort(other), 2, Config{})
				if err == nil {
					closeGroup(g2)
					t.Fatalf("a second group on %s started", other)
				}
				if !errors.Is(err, syscall.EADDRINUSE) ||
					!strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "address already in use") {
					t.Errorf("second group on %s: %v; want EADDRINUSE naming the address", other, err)
				}
			}
			// The kernel cannot tell a group that shares from one that does
			// not: a sharing group joins any SO_REUSEPORT group of this
			// user (as documented), so sharing is set on every side.
			g3 := listenGroup(t, addr.String(), 1, Config{ShareAddress: true})
			if g3[0].LocalAddr() != addr {
				t.Errorf("sharing group on %v, want %v", g3[0].LocalAddr(), addr)
			}

			// Both sharing: the second group joins the first.
			s1 := listenGroup(t, c.loopback+":0", 2, Config{ShareAddress: true})
			s2 := listenGroup(t, s1[0].LocalAddr().String(), 2, Config{ShareAddress: true})
			if s2[1].LocalAddr() != s1[0].LocalAddr() {
				t.Errorf("shared group on %v, want %v", s2[1].LocalAddr(), s1[0].LocalAddr())
			}
		})
	}
}

// A group the kernel table shows a foreign socket beside (one bound between
// the probe and the group, as by a process starting at the same moment) is
// refused; the group's own sockets are not foreign.
func TestCheckAloneSeesJoiners(t *testing.T) {
	g := listenGroup(t, "127.0.0.1:0", 2, Config{ShareAddress: true})
	addr := g[0].LocalAddr()
	if err := checkAlone(addr, g); err != nil {
		t.Fatalf("the group alone: %v", err)
	}
	joiner := listen(t, addr.String(), Config{ReusePort: true})
	err := checkAlone(addr, g)
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("with a joiner: %v; want EADDRINUSE naming %v", err, addr)
	}
	ino, _ := joiner.inode()
	if !strings.Contains(err.Error(), fmt.Sprintf("inode %d", ino)) {
		t.Errorf("error does not name the joiner's inode %d: %v", ino, err)
	}
	// Sockets of the group are never in its way.
	if err := checkAlone(addr, append(g, joiner)); err != nil {
		t.Errorf("all sockets ours: %v", err)
	}
}

// The probe makes port 0 a port no socket has. A plain SO_REUSEPORT bind
// of port 0 may get a port that a SO_REUSEPORT socket of the same user
// holds, and join it (on Linux 6.18, 64 of 2,000 such binds did): with
// 1,000 ports held that way, 300 groups on port 0, sharing or not, must
// land on none of them.
func TestListenGroupPortZero(t *testing.T) {
	g := listenGroup(t, "127.0.0.1:0", 2, Config{})
	// The port is held: a plain bind of it fails.
	if c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(g[0].LocalAddr())); err == nil {
		c.Close()
		t.Fatalf("%v not held", g[0].LocalAddr())
	}
	held := map[uint16]bool{}
	for range 1000 {
		held[listen(t, "127.0.0.1:0", Config{ReusePort: true}).LocalAddr().Port()] = true
	}
	for i := range 300 {
		h, err := ListenGroup(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 1, Config{ShareAddress: i%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		p := h[0].LocalAddr().Port()
		closeGroup(h)
		if held[p] {
			t.Fatalf("group %d on port 0 joined sockets on port %d", i, p)
		}
	}
	if _, err := ListenGroup(context.Background(), netip.MustParseAddrPort("127.0.0.1:0"), 0, Config{}); err == nil {
		t.Error("a group of 0 sockets was opened")
	}
}

// The kernel prints each 32-bit word of an address as a number in the
// host's byte order.
func TestParseTableAddr(t *testing.T) {
	word := func(b []byte) string {
		var s string
		for i := 0; i < len(b); i += 4 {
			s += fmt.Sprintf("%08X", binary.NativeEndian.Uint32(b[i:]))
		}
		return s
	}
	for _, want := range []string{"127.0.0.1:5060", "0.0.0.0:53", "[::1]:5061", "[2001:db8::7]:65535", "[::]:1"} {
		a := netip.MustParseAddrPort(want)
		s := fmt.Sprintf("%s:%04X", word(a.Addr().AsSlice()), a.Port())
		got, err := parseTableAddr(s)
		if err != nil || got != a {
			t.Errorf("parseTableAddr(%q) = %v, %v; want %v", s, got, err, a)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:XYZ", "01007F:13C4", "0100007G:13C4"} {
		if _, err := parseTableAddr(bad); err == nil {
			t.Errorf("parseTableAddr(%q) accepted", bad)
		}
	}
	socks, err := readSocketTable(strings.NewReader(
		"   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
			" 5066: " + word([]byte{127, 0, 0, 1}) + ":3AE5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 9667 2 00000000ca65a0ff 0\n"))
	if err != nil || len(socks) != 1 || socks[0] != (tableSocket{netip.MustParseAddrPort("127.0.0.1:15077"), 9667}) {
		t.Errorf("readSocketTable: %+v, %v", socks, err)
	}
}
