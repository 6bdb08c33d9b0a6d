package testenv

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/parser"
)

// ListenUDP opens a UDP socket on 127.0.0.1 at a port the kernel picks and
// returns it with its address. The test's cleanup closes it.
func ListenUDP(t testing.TB) (*net.UDPConn, netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen on udp 127.0.0.1:0: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// ServeSIP reads datagrams from c in a goroutine of its own and hands each
// that parses as a SIP message (request or response) to handle, with the
// address it came from; datagrams that do not parse are dropped. m and the
// datagram it was parsed from are reused for the next one: handle copies
// what it keeps. The test's cleanup closes c and waits for the goroutine,
// so no handle call outlives the test.
func ServeSIP(t testing.TB, c *net.UDPConn, handle func(m *parser.Message, from netip.AddrPort)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		var m parser.Message
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil || parser.Parse(buf[:n], &m) != nil {
				continue
			}
			handle(&m, from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
}

// AppendResponse appends to dst a response to request m as a stateless
// server writes it: the status line "SIP/2.0 " + status, m's Via, From,
// Call-ID and CSeq lines as they stand, its To line with ";tag=" + toTag
// added when it has no tag (and toTag is not empty), the extra header
// lines, and "Content-Length: 0".
func AppendResponse(dst []byte, m *parser.Message, status, toTag string, extra ...string) []byte {
	in := m.Bytes()
	dst = append(dst, "SIP/2.0 "...)
	dst = append(dst, status...)
	dst = append(dst, "\r\n"...)
	for i := 0; i < m.NumHeaders(); i++ {
		h := m.Header(i)
		switch h.Kind {
		case parser.KindVia, parser.KindFrom, parser.KindCallID, parser.KindCSeq:
			dst = append(dst, in[h.Start:h.End]...)
		case parser.KindTo:
			dst = append(dst, bytes.TrimRight(in[h.Start:h.End], "\r\n")...)
			if to, _ := m.To(); len(to.Tag) == 0 && toTag != "" {
				dst = append(dst, ";tag="...)
				dst = append(dst, toTag...)
			}
			dst = append(dst, "\r\n"...)
		}
	}
	for _, e := range extra {
		dst = append(dst, e...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// FreePort returns a loopback port that was free a moment ago on UDP and
// TCP both: Viaduct listens on both at a plain ip:port.
func FreePort(t testing.TB) netip.AddrPort {
	t.Helper()
	for try := 0; try < 100; try++ {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		a := u.LocalAddr().(*net.UDPAddr).AddrPort()
		l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(a))
		u.Close()
		if err == nil {
			l.Close()
			return a
		}
	}
	t.Fatal("no loopback port free on both UDP and TCP in 100 tries")
	return netip.AddrPort{}
}
