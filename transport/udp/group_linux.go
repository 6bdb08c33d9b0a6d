//go:build linux && !portableudp

package udp

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// portTries bounds how often ListenGroup picks a new ephemeral port when
// another socket took the one its probe found before the group bound it.
const portTries = 3

// ListenGroup opens n sockets bound to addr with SO_REUSEPORT, one per
// reader, so that the kernel spreads the address's datagrams over them by
// their 4-tuple (see the README's Design section). They are returned in the
// order they were bound, which is their index in the kernel's group (what
// a SO_ATTACH_REUSEPORT_CBPF program returns). cfg applies to every
// socket; cfg.ReusePort is implied.
//
// SO_REUSEPORT alone would let the group join sockets that another process
// of the same user already has on the address, or let such a process join
// later: each would then take part of the other's traffic, silently. So
// unless cfg.ShareAddress is set, ListenGroup makes sure the group is alone
// on the address:
//
//   - It first binds a probe socket without SO_REUSEPORT, which the kernel
//     refuses with EADDRINUSE while any socket holds the address (with or
//     without SO_REUSEPORT, on it or on the family's wildcard address),
//     and closes it again before it binds the group.
//   - Once the group is bound it lists the sockets on the address from the
//     kernel's table (/proc/net/udp or udp6) and compares their inodes with
//     the group's: a socket that another process bound in the moment
//     between the probe and the group shows up there. When the table
//     cannot be read (no /proc) or parsed, this check is skipped: it only
//     closes the probe's race, and must not stop a start.
//
// Either finding closes what was opened and returns an error wrapping
// syscall.EADDRINUSE that names the address. Of two processes that start on one
// address at the same moment, at least one fails this way (possibly both).
//
// With port 0 the probe picks a port that no socket uses, and the group
// binds it (LocalAddr of every socket reports it); should another socket
// take the port between the probe and the group, ListenGroup tries again
// with a new one, up to 3 times. With cfg.ShareAddress and a port other
// than 0, no probe and no check are made: the group joins sockets other
// processes opened with SO_REUSEPORT on the address, which must all belong
// to the same user.
func ListenGroup(ctx context.Context, addr netip.AddrPort, n int, cfg Config) ([]*Conn, error) {
	if err := checkGroup(addr, n); err != nil {
		return nil, err
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	cfg.ReusePort = true
	for try := 1; ; try++ {
		g, err := listenGroupOnce(ctx, addr, n, cfg)
		if err == nil || addr.Port() != 0 || try == portTries || !errors.Is(err, syscall.EADDRINUSE) {
			return g, err
		}
	}
}

// listenGroupOnce is one attempt of ListenGroup.
func listenGroupOnce(ctx context.Context, addr netip.AddrPort, n int, cfg Config) ([]*Conn, error) {
	exclusive := !cfg.ShareAddress
	if exclusive || addr.Port() == 0 {
		p, err := probe(addr)
		if err != nil {
			return nil, err
		}
		addr = p
	}
	g := make([]*Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := ListenAddrPort(ctx, addr, cfg)
		if err != nil {
			closeGroup(g)
			return nil, fmt.Errorf("udp: listen %v: socket %d of %d: %w", addr, i+1, n, err)
		}
		g = append(g, c)
	}
	if exclusive {
		if err := checkAlone(addr, g); err != nil {
			closeGroup(g)
			return nil, err
		}
	}
	return g, nil
}

// probe binds addr without SO_REUSEPORT and closes the socket again. It
// returns the address bound (with the port the kernel chose for port 0),
// or an error wrapping syscall.EADDRINUSE while another socket holds addr.
func probe(addr netip.AddrPort) (netip.AddrPort, error) {
	network := "udp6" // the net package sets IPV6_V6ONLY for udp6, as Listen does
	if addr.Addr().Is4() {
		network = "udp4"
	}
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return addr, fmt.Errorf("udp: listen %v: %w", addr, syscall.EADDRINUSE)
		}
		return addr, fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	got := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := uc.Close(); err != nil {
		return addr, fmt.Errorf("udp: listen %v: closing the probe socket: %w", addr, err)
	}
	return netip.AddrPortFrom(addr.Addr(), got.Port()), nil
}

// checkAlone returns an error wrapping syscall.EADDRINUSE when the kernel's
// socket table lists a socket on addr (or on an address overlapping it:
// the family's wildcard, or any address when addr is the wildcard) that is
// not one of g. It returns nil when the table cannot be read or parsed.
func checkAlone(addr netip.AddrPort, g []*Conn) error {
	ours := make(map[uint64]bool, len(g))
	for _, c := range g {
		ino, err := c.inode()
		if err != nil {
			return fmt.Errorf("udp: listen %v: %w", addr, err)
		}
		ours[ino] = true
	}
	table := "/proc/net/udp6"
	if addr.Addr().Is4() {
		table = "/proc/net/udp"
	}
	f, err := os.Open(table)
	if err != nil {
		return nil // no /proc: the probe is all there is
	}
	defer f.Close()
	socks, err := readSocketTable(f)
	if err != nil {
		return nil // a format this parser does not know: as without /proc
	}
	for _, s := range socks {
		if s.local.Port() == addr.Port() && overlaps(s.local.Addr(), addr.Addr()) && !ours[s.inode] {
			return fmt.Errorf("udp: listen %v: %w: another socket (%v, inode %d) was bound beside this group's while it was bound",
				addr, syscall.EADDRINUSE, s.local, s.inode)
		}
	}
	return nil
}

// overlaps reports whether sockets bound to a and b on one port share
// traffic: the same address, or either of them the wildcard.
func overlaps(a, b netip.Addr) bool {
	return a == b || a.IsUnspecified() || b.IsUnspecified()
}

// inode returns the inode number of the socket, as the kernel's socket
// tables list it.
func (c *Conn) inode() (uint64, error) {
	var st unix.Stat_t
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil {
		return 0, fmt.Errorf("socket inode: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("socket inode: fstat: %w", serr)
	}
	return st.Ino, nil
}

// tableSocket is one line of /proc/net/udp or /proc/net/udp6.
type tableSocket struct {
	local netip.AddrPort
	inode uint64
}

// readSocketTable parses /proc/net/udp or /proc/net/udp6: after a header
// line, one socket per line whose second field is the local address in
// hex (each 32-bit word in the host's byte order) and port, and whose
// tenth field is the socket's inode.
func readSocketTable(r io.Reader) ([]tableSocket, error) {
	var out []tableSocket
	sc := bufio.NewScanner(r)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 10 {
			continue
		}
		local, err := parseTableAddr(f[1])
		if err != nil {
			return nil, err
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		out = append(out, tableSocket{local: local, inode: ino})
	}
	return out, sc.Err()
}

// parseTableAddr parses "0100007F:13C4" (127.0.0.1:5060 on a little-endian
// host) or its 32-digit IPv6 form.
func parseTableAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, fmt.Errorf("address %q: not HEX:PORT", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	// Each word was printed as a number: put its bytes back in memory order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a, uint16(port)), nil
}

func closeGroup(g []*Conn) {
	for _, c := range g {
		c.Close()
	}
}
