package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// phone is a SIP phone on one TCP connection to Viaduct.
type phone struct {
	c    *net.TCPConn
	r    *bufio.Reader
	user string
}

func dialPhone(t *testing.T, proxy netip.AddrPort, user string) *phone {
	t.Helper()
	c, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(proxy))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{c: c, r: bufio.NewReader(c), user: user}
}

func (p *phone) local() netip.AddrPort { return p.c.LocalAddr().(*net.TCPAddr).AddrPort() }

func (p *phone) write(t *testing.T, msg string) {
	t.Helper()
	if _, err := p.c.Write([]byte(msg)); err != nil {
		t.Fatalf("phone write: %v", err)
	}
}

// read reads the next message on the phone's connection (10 s at most).
func (p *phone) read(t *testing.T) string {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, err := readSIP(p.r)
	if err != nil {
		t.Fatalf("phone read: %v (after %q)", err, msg)
	}
	return msg
}

// register registers the phone's user with its contact on this
// connection, and waits for the 200.
func (p *phone) register(t *testing.T) string {
	t.Helper()
	aor := "sip:" + p.user + "@example.com"
	reg := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKreg%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <%s>;tag=reg\r\nTo: <%s>\r\nCall-ID: reg-%d@phone\r\nCSeq: 1 REGISTER\r\n"+
		"Contact: <sip:%s@%s;transport=tcp>\r\nExpires: 600\r\nSupported: path\r\nContent-Length: 0\r\n\r\n",
		p.local(), time.Now().UnixNano(), aor, aor, time.Now().UnixNano(), p.user, p.local())
	p.write(t, reg)
	for {
		msg := p.read(t)
		if strings.HasPrefix(msg, "SIP/2.0 1") {
			continue
		}
		if !strings.HasPrefix(msg, "SIP/2.0 200") {
			t.Fatalf("REGISTER answered %q", firstLine(msg))
		}
		return msg
	}
}

// Issue #15: "A phone registered over TCP through Viaduct with path: true
// is reached by its registrar's INVITE over the same connection; after the
// phone disconnects, the INVITE gets 430." The registrar is Kamailio
// (registrar, usrloc, path on UDP); the caller sends its INVITEs over UDP
// to Kamailio, which routes them through the Path Viaduct stored, with its
// flow token: the first reaches the phone on the connection it registered
// over, and the phone's 200 reaches the caller; once the phone has closed
// its connection, the next one is answered 430 Flow Failed, which
// Kamailio relays to the caller.
func TestBinaryFlowToRegisteredPhone(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	kam := testenv.StartKamailioRegistrar(t)
	registrar := kam.Addr
	v := startStreamsViaduct(t, fmt.Sprintf("workers: 2\npath: true\nrecord_route: true\nupstreams: [\"%s\"]\n", registrar))

	ph := dialPhone(t, v.sip, "alice")
	ph.register(t)
	waitBinding(t, kam, "sip:alice@example.com")

	caller := listenUDPPeer(t, netip.MustParseAddrPort("127.0.0.1:0"))
	call := func(n int) string {
		return sipRequest("INVITE", "sip:alice@example.com", "UDP", caller.addr(), fmt.Sprintf("flow-call-%d-%d", n, time.Now().UnixNano()), 1, 200)
	}
	first := call(1)
	caller.send(t, first, registrar)
	inv := ph.read(t)
	if !strings.HasPrefix(inv, "INVITE sip:alice@") || header(inv, "Call-ID") != header(first, "Call-ID") {
		t.Fatalf("the phone's connection got %q (Call-ID %q), want the caller's INVITE", firstLine(inv), header(inv, "Call-ID"))
	}
	if via := header(inv, "Via"); !strings.HasPrefix(via, "SIP/2.0/TCP ") {
		t.Errorf("INVITE on the phone's connection with the top Via %q", via)
	}
	t.Logf("INVITE reached the phone on its connection, Record-Route %q", headerLines(inv, "Record-Route"))
	ph.write(t, response(inv, "180 Ringing"))
	ph.write(t, response(inv, "200 OK"))
	if m, ok := caller.recv(10*time.Second, "SIP/2.0 200"); !ok || header(m.text, "Call-ID") != header(first, "Call-ID") {
		t.Fatalf("the phone's 200 did not reach the caller:\nkamailio:\n%s\nviaduct:\n%s", lastLines(kam.Log(), 20), lastLines(v.p.out.String(), 20))
	}

	ph.c.Close()
	if got := v.waitMetric(t, 10*time.Second, 1, "viaduct_stream_closed_total", `reason="peer"`, `transport="tcp"`); got < 1 {
		t.Fatalf("viaduct did not see the phone's connection close")
	}
	second := call(2)
	caller.send(t, second, registrar)
	m, ok := caller.recv(10*time.Second, "SIP/2.0 4")
	if !ok {
		t.Fatalf("no final answer to the INVITE after the phone left:\nkamailio:\n%s\nviaduct:\n%s", lastLines(kam.Log(), 20), lastLines(v.p.out.String(), 20))
	}
	if !strings.HasPrefix(m.text, "SIP/2.0 430") || header(m.text, "Call-ID") != header(second, "Call-ID") {
		t.Errorf("the INVITE after the phone left got %q, want 430 Flow Failed", firstLine(m.text))
	}
	if n := metricSum(v.metrics(t), "viaduct_local_replies_total", `code="430"`); n != 1 {
		t.Errorf("viaduct_local_replies_total{code=\"430\"} = %v, want 1", n)
	}
}

// waitBinding waits (5 s at most) until Kamailio logs the binding of aor:
// save() sends the 200 before the script logs it.
func waitBinding(t *testing.T, kam *testenv.KamailioRegistrar, aor string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(kam.Log(), "registrar: registered "+aor); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kamailio did not save the binding of %s:\n%s", aor, lastLines(kam.Log(), 20))
		}
	}
}
