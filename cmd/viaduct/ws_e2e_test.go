package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// wsPhone is a SIP phone on a WebSocket to Viaduct (RFC 7118), as a
// browser's JsSIP is: an .invalid host in its Via and Contact, one SIP
// message per masked text frame.
type wsPhone struct {
	c    net.Conn
	r    *bufio.Reader
	user string
	host string // its made-up host name
}

// dialWSPhone connects to a ws: listener and upgrades with the sip
// subprotocol and origin.
func dialWSPhone(t *testing.T, proxy netip.AddrPort, user, origin string) *wsPhone {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := fmt.Sprintf("GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\n"+
		"Origin: %s\r\n\r\n", proxy, origin)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	p := &wsPhone{c: c, r: bufio.NewReader(c), user: user, host: user + "0df3.invalid"}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(p.r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return p
}

// write sends msg in one masked text frame.
func (p *wsPhone) write(t *testing.T, msg string) {
	t.Helper()
	f := []byte{0x81}
	if n := len(msg); n <= 125 {
		f = append(f, 0x80|byte(n))
	} else {
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	f = append(f, mask[:]...)
	for i := range len(msg) {
		f = append(f, msg[i]^mask[i%4])
	}
	if _, err := p.c.Write(f); err != nil {
		t.Fatalf("ws phone write: %v", err)
	}
}

// read returns the next SIP message (10 s at most), skipping pings.
func (p *wsPhone) read(t *testing.T) string {
	t.Helper()
	p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var h [2]byte
		if _, err := io.ReadFull(p.r, h[:]); err != nil {
			t.Fatalf("ws phone read: %v", err)
		}
		n := int(h[1] & 0x7F)
		if n == 126 {
			var l [2]byte
			io.ReadFull(p.r, l[:])
			n = int(binary.BigEndian.Uint16(l[:]))
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(p.r, payload); err != nil {
			t.Fatalf("ws phone read: %v", err)
		}
		if op := h[0] & 0x0F; op == 0x1 || op == 0x2 {
			return string(payload)
		}
	}
}

// register registers the phone's user with its .invalid contact and waits
// for the 200.
func (p *wsPhone) register(t *testing.T) {
	t.Helper()
	aor := "sip:" + p.user + "@example.com"
	p.write(t, fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/WSS %s;branch=z9hG4bKws%d\r\nMax-Forwards: 69\r\n"+
		"From: <%s>;tag=wsreg\r\nTo: <%s>\r\nCall-ID: wsreg-%d\r\nCSeq: 1 REGISTER\r\n"+
		"Contact: <sip:%s@%s;transport=ws>;expires=600\r\nSupported: path,gruu,outbound\r\nContent-Length: 0\r\n\r\n",
		p.host, time.Now().UnixNano(), aor, aor, time.Now().UnixNano(), p.user, p.host))
	if msg := p.read(t); !strings.HasPrefix(msg, "SIP/2.0 200") {
		t.Fatalf("REGISTER over WebSocket answered %q", firstLine(msg))
	}
}

// Issue #16 through the binary with Kamailio as the registrar behind:
// a phone on a WebSocket (JsSIP's Via and Contact, .invalid hosts)
// registers through Viaduct with path: true; the caller's INVITE, routed
// by Kamailio through the stored Path, reaches the phone over its
// WebSocket with a WS Via, and its 200 reaches the caller; once the
// browser tab is gone, the next INVITE gets 430 and no connection is
// attempted towards the browser.
func TestBinaryWebSocketPhone(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	kam := testenv.StartKamailioRegistrar(t)
	wsAddr := freeTCPPort(t)
	v := startStreamsViaduct(t, fmt.Sprintf("workers: 2\npath: true\nrecord_route: true\nupstreams: [\"%s\"]\n"+
		"websocket: {origins: [\"https://app.example.com\"], paths: [\"/ws\"]}\n", kam.Addr), "ws:"+wsAddr.String())

	ph := dialWSPhone(t, wsAddr, "bob", "https://app.example.com")
	ph.register(t)
	waitBinding(t, kam, "sip:bob@example.com")

	caller := listenUDPPeer(t, netip.MustParseAddrPort("127.0.0.1:0"))
	call := func(n int) string {
		return sipRequest("INVITE", "sip:bob@example.com", "UDP", caller.addr(), fmt.Sprintf("ws-call-%d-%d", n, time.Now().UnixNano()), 1, 300)
	}
	first := call(1)
	caller.send(t, first, kam.Addr)
	inv := ph.read(t)
	if !strings.HasPrefix(inv, "INVITE sip:bob@") || header(inv, "Call-ID") != header(first, "Call-ID") {
		t.Fatalf("the WebSocket got %q, want the caller's INVITE", firstLine(inv))
	}
	if via := header(inv, "Via"); !strings.HasPrefix(via, "SIP/2.0/WS ") {
		t.Errorf("INVITE over the WebSocket with the top Via %q, want SIP/2.0/WS", via)
	}
	if rr := header(inv, "Record-Route"); !strings.Contains(rr, ";transport=ws;") {
		t.Errorf("INVITE over the WebSocket with the first Record-Route %q, want Viaduct's WS side (RFC 5658)", rr)
	}
	ph.write(t, response(inv, "180 Ringing"))
	ph.write(t, response(inv, "200 OK"))
	if m, ok := caller.recv(10*time.Second, "SIP/2.0 200"); !ok || header(m.text, "Call-ID") != header(first, "Call-ID") {
		t.Fatalf("the phone's 200 did not reach the caller:\nkamailio:\n%s\nviaduct:\n%s", lastLines(kam.Log(), 20), lastLines(v.p.out.String(), 20))
	}

	ph.c.Close()
	if got := v.waitMetric(t, 10*time.Second, 1, "viaduct_stream_closed_total", `reason="peer"`, `transport="ws"`); got < 1 {
		t.Fatalf("viaduct did not see the WebSocket close")
	}
	second := call(2)
	caller.send(t, second, kam.Addr)
	m, ok := caller.recv(10*time.Second, "SIP/2.0 4")
	if !ok || !strings.HasPrefix(m.text, "SIP/2.0 430") {
		t.Fatalf("the INVITE after the tab closed: %q, want 430 Flow Failed", firstLine(m.text))
	}
	mt := v.metrics(t)
	if n := metricSum(mt, "viaduct_websocket_upgrades_total", `result="accepted"`, `transport="ws"`); n != 1 {
		t.Errorf("viaduct_websocket_upgrades_total{result=\"accepted\"} = %v, want 1", n)
	}
	if n := metricSum(mt, "viaduct_stream_dialed_total", `transport="ws"`); n != 0 {
		t.Errorf("viaduct dialled %v WebSocket connections", n)
	}
}
