package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/resolve/resolvetest"
)

// A request from an upstream whose Request-URI names a host goes where DNS
// says (here SRV _sip._udp.callee.test, then its A record): the first
// attempt is dropped while the name resolves, and the upstream's
// retransmission is forwarded. With dns.next_hops off the upstream gets 503.
func TestDNSNextHops(t *testing.T) {
	dns := resolvetest.NewServer(t)
	callee, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	calleeAddr := callee.LocalAddr().(*net.UDPAddr).AddrPort()
	dns.Set("_sip._udp.callee.test", resolvetest.SRV(10, 10, calleeAddr.Port(), "host.callee.test"))
	dns.Set("host.callee.test", resolvetest.A("127.0.0.1"))
	upstream, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer upstream.Close()
	upAddr := upstream.LocalAddr().(*net.UDPAddr).AddrPort()

	bye := func(proxy netip.AddrPort) []byte {
		return []byte(strings.ReplaceAll(fmt.Sprintf(`BYE sip:alice@callee.test SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bKdnsbye1
Max-Forwards: 70
From: <sip:bob@example.com>;tag=b1
To: <sip:alice@example.com>;tag=a1
Call-ID: dns-next-hop@test
CSeq: 2 BYE
Content-Length: 0

`, upAddr), "\n", "\r\n"))
	}
	start := func(extra ...string) netip.AddrPort {
		proxy, adm := freePort(t), freeTCPPort(t)
		// --health=false: the upstream reads the one answer to its BYE,
		// not a probe.
		args := append([]string{"--listen", proxy.String(), "--upstream", upAddr.String(), "--workers", "1",
			"--admin-listen", adm.String(), "--shutdown-drain", "0", "--health=false"}, extra...)
		startInProcess(t, procHooks{resolver: dns.Resolver()}, adm.String(), args...)
		return proxy
	}
	read := func(c *net.UDPConn, d time.Duration) []byte {
		c.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 65536)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}

	proxy := start()
	var got []byte
	sent := 0
	for deadline := time.Now().Add(3 * time.Second); got == nil && time.Now().Before(deadline); sent++ {
		if _, err := upstream.WriteToUDPAddrPort(bye(proxy), proxy); err != nil {
			t.Fatal(err)
		}
		got = read(callee, 100*time.Millisecond) // a retransmission timer, shortened
	}
	if got == nil {
		t.Fatalf("the BYE never reached the callee (%d sent)", sent)
	}
	if !bytes.HasPrefix(got, []byte("BYE sip:alice@callee.test SIP/2.0\r\nVia: SIP/2.0/UDP "+proxy.String())) {
		t.Errorf("callee got:\n%s", got)
	}
	if sent < 2 {
		t.Errorf("the first attempt was forwarded before the name was looked up?")
	}

	proxy = start("--dns-next-hops=false")
	if _, err := upstream.WriteToUDPAddrPort(bye(proxy), proxy); err != nil {
		t.Fatal(err)
	}
	if resp := read(upstream, 2*time.Second); !bytes.HasPrefix(resp, []byte("SIP/2.0 503 Next Hop Not An IP Address\r\n")) {
		t.Errorf("with dns.next_hops off the upstream got %q", resp)
	}
}
