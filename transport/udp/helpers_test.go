package udp

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// The helpers of the tests of both implementations (Linux and portable).

// listen opens a Conn on address and closes it when the test ends.
func listen(t testing.TB, address string, cfg Config) *Conn {
	t.Helper()
	c, err := Listen(context.Background(), address, cfg)
	if err != nil {
		t.Fatalf("Listen(%q): %v", address, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// listenOrSkip is listen, but skips the test when address is IPv6 and
// loopback has no IPv6.
func listenOrSkip(t testing.TB, address string, cfg Config) *Conn {
	t.Helper()
	if address[0] == '[' {
		requireIPv6(t)
	}
	return listen(t, address, cfg)
}

// requireIPv6 skips the test when no socket can be bound on [::1].
func requireIPv6(t testing.TB) {
	t.Helper()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 on loopback: %v", err)
	}
	pc.Close()
}

// addrOf returns the local address of uc, IPv4 in its 4-byte form.
func addrOf(uc *net.UDPConn) netip.AddrPort {
	ap := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// resultWait bounds how long wait waits: generous for a loaded machine,
// short enough that a goroutine that never returns fails the test.
const resultWait = 10 * time.Second

// wait returns the result that arrives on done (of a ReadLoop or
// ReadBatch in a goroutine of its own), failing the test if none arrives
// within resultWait of what should have ended the call.
func wait(t testing.TB, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(resultWait):
		t.Fatalf("still running %v after %s", resultWait, what)
		return nil
	}
}

// sendOne writes b's first message, payload to `to`, with WriteBatch and
// fails the test unless the kernel took it.
func sendOne(t testing.TB, c *Conn, b *Batch, payload string, to netip.AddrPort) {
	t.Helper()
	b.Msgs[0].SetData([]byte(payload), to)
	if sent, err := c.WriteBatch(b, 1); sent != 1 || err != nil || b.Msgs[0].Err != nil {
		t.Fatalf("WriteBatch of %q = %d, %v, Err %v; want it sent", payload, sent, err, b.Msgs[0].Err)
	}
}

// expectDatagram reads one datagram from uc within resultWait and fails
// the test unless it is want.
func expectDatagram(t testing.TB, uc *net.UDPConn, want string) {
	t.Helper()
	buf := make([]byte, len(want)+64)
	uc.SetReadDeadline(time.Now().Add(resultWait))
	if n, _, err := uc.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != want {
		t.Errorf("destination got %q, %v; want %q", buf[:n], err, want)
	}
}
