package fastpath

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/stream"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// The per-message path allocates nothing, for every kind of message.
func TestHandleAllocatesNothing(t *testing.T) {
	e, w := newTestWorker(t, func(c *Config) { c.RecordRoute, c.Path = true, true })
	out := newOutput(e)
	_, inv := handle(t, w, invite3261, alice)
	resp := respond(t, inv.Buf, "200 OK", "a6c85cf")
	_, inv2543 := handle(t, w, invite2543, oldPhone)
	resp2543 := respond(t, inv2543.Buf, "486 Busy Here", "b")
	mf0 := replace(invite3261, "Max-Forwards: 70", "Max-Forwards: 0")
	noCallID := replace(invite3261, "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", "")
	opt := msg(`OPTIONS sip:192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKka1;rport
To: <sip:192.0.2.10:5060>
From: <sip:mon@198.51.100.7>;tag=k1
Call-ID: keepalive-1@198.51.100.7
CSeq: 7 OPTIONS`, "")
	rt := routedByeFromUpstream
	forged := replace(resp, "192.0.2.10:5060", "192.0.2.11:5060")
	register := request("REGISTER", "sip:registrar.example.com", "<sip:alice@example.com>", "<sip:alice@example.com>", "reg-1@client", "Contact: <sip:alice@10.1.1.5>")
	pathInvite := replace(replace(invite3261, "INVITE sip:bob@biloxi.example.com", "INVITE sip:bob@10.1.1.5"),
		"Max-Forwards: 70", "Max-Forwards: 70\r\nRoute: <sip:192.0.2.10:5060;lr;received=198.51.100.7:40112>")
	dialogBye := replace(replace(ack3261, "ACK sip:bob@biloxi.example.com", "BYE sip:bob@192.0.2.22:5060"), "314159 ACK", "314160 BYE")
	cases := []struct {
		name string
		in   []byte
		from netip.AddrPort
		want Action
	}{
		{"INVITE", invite3261, alice, ActionForward},
		{"200 OK", resp, up1, ActionForward},
		{"2543 INVITE", invite2543, oldPhone, ActionForward},
		{"2543 486", resp2543, up1, ActionForward},
		{"483", mf0, alice, ActionReply},
		{"400", noCallID, alice, ActionReply},
		{"OPTIONS 200", opt, alice, ActionReply},
		{"routes from upstream", rt, up1, ActionForward},
		{"in-dialog to its upstream", dialogBye, alice, ActionForward},
		{"REGISTER with Path", register, alice, ActionForward},
		{"through our Path", pathInvite, up1, ActionForward},
		{"forged", forged, up1, ActionDrop},
	}
	for _, c := range cases {
		if a := w.Handle(c.in, udpFrom(c.from), out); a != c.want {
			t.Fatalf("%s: %v, want %v", c.name, a, c.want)
		}
		if n := testing.AllocsPerRun(200, func() { w.Handle(c.in, udpFrom(c.from), out) }); n != 0 {
			t.Errorf("%s: %.1f allocations per message, want 0", c.name, n)
		}
	}
}

// The whole path over real loopback sockets (recvmmsg, Handle, sendmmsg)
// allocates nothing either, in the worker or anywhere else in the process,
// whether the worker parks in the netpoller at once or first waits in
// recvmmsg (udp.ServerConfig.ParkAfter).
func TestBatchAllocatesNothing(t *testing.T) {
	t.Run("netpoller", func(t *testing.T) { testBatchAllocatesNothing(t, 0) })
	t.Run("recvmmsg", func(t *testing.T) { testBatchAllocatesNothing(t, 50*time.Millisecond) })
}

func testBatchAllocatesNothing(t *testing.T, parkAfter time.Duration) {
	upConn, upAddr := testenv.ListenUDP(t)
	e := startEngineConfig(t, Config{
		Upstreams: []netip.AddrPort{upAddr},
		Workers:   1,
		Transport: udp.Bind(udp.ServerConfig{Batch: 16, ParkAfter: parkAfter}, nil),
	})
	proxy := e.ListenAddrs()[0]
	client, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(proxy))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The client's Via must name its real address for the test to mean
	// something; the exact text does not matter for the allocation count.
	req := replace(invite3261, "198.51.100.7:5060", client.LocalAddr().String())
	const k = 8
	buf := make([]byte, 65536)
	if err := upConn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	done := 0
	round := func() {
		for i := 0; i < k; i++ {
			if _, err := client.Write(req); err != nil {
				t.Fatal(err)
			}
		}
		done += k
		for i := 0; i < k; i++ {
			if _, _, err := upConn.ReadFromUDPAddrPort(buf); err != nil {
				t.Fatal(err)
			}
		}
	}
	round() // warm up
	if n := testing.AllocsPerRun(50, round); n != 0 {
		t.Errorf("%.2f allocations per round of %d requests, want 0", n, k)
	}
	waitFor(t, "every request counted as sent", func() bool {
		s := e.Stats()
		return s.RequestsForwarded == uint64(done) && s.DatagramsOut == uint64(done)
	})
}

// A TCP client's INVITE through a UDP upstream over real sockets: read from
// the connection and sent as a datagram; the upstream's 180 and 200 read,
// held and written to the connection (in one write when they come in one
// batch). Steady state, nothing is allocated anywhere in the process.
func TestStreamBatchAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("AllocsPerRun counts every goroutine; slow under -race")
	}
	upConn, upAddr := testenv.ListenUDP(t)
	anyAddr := netip.MustParseAddrPort("127.0.0.1:0")
	e := startEngineConfig(t, Config{
		Listeners:  []Listener{{transport.UDP, anyAddr}, {transport.TCP, anyAddr}},
		Upstreams:  []netip.AddrPort{upAddr},
		Workers:    1,
		Transport:  udp.Bind(udp.ServerConfig{Batch: 16}, nil),
		Transports: map[transport.Kind]transport.Binder{transport.TCP: stream.Bind(stream.ServerConfig{}, transport.TCP, nil)},
	})
	client, err := net.Dial("tcp", e.ListenAddrs()[1].String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	req := replace(tcpInvite, "198.51.100.7:5060", client.LocalAddr().String())
	client.SetDeadline(time.Now().Add(time.Minute))
	upConn.SetDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 65536)

	// Warm up, and learn the upstream's answers and what the client gets.
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	n, proxy, err := upConn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	ring, ok := respond(t, buf[:n], "180 Ringing", "u1"), respond(t, buf[:n], "200 OK", "u1")
	answer := func() {
		upConn.WriteToUDPAddrPort(ring, proxy)
		upConn.WriteToUDPAddrPort(ok, proxy)
	}
	answer()
	back := readStreamMsgs(t, client, 2)
	round := func() {
		if _, err := client.Write(req); err != nil {
			panic(err)
		}
		if _, _, err := upConn.ReadFromUDPAddrPort(buf); err != nil {
			panic(err)
		}
		answer()
		if _, err := io.ReadFull(client, back); err != nil {
			panic(err)
		}
	}
	for range 50 {
		round()
	}
	if n := testing.AllocsPerRun(200, round); n != 0 {
		t.Errorf("%.2f allocations per call round (INVITE, 180, 200), want 0", n)
	}
}

// readStreamMsgs reads n SIP messages from c and returns their bytes.
func readStreamMsgs(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 65536)
	for {
		rest, k := got, 0
		for len(rest) > 0 {
			f, err := parser.FrameStream(rest, len(buf))
			if err != nil || f.Len == 0 {
				break
			}
			rest, k = rest[f.Len:], k+1
		}
		if k == n && len(rest) == 0 {
			return got
		}
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got)
		}
		got = append(got, buf[:m]...)
	}
}

// Extracting and hashing every kind of key, round robin and the response
// observer allocate nothing either.
func TestBalancingAllocatesNothing(t *testing.T) {
	keys := mustPolicy(t, map[string]string{
		"REGISTER": "to-aor", "MESSAGE": "from-uri", "INVITE": "ruri-user",
		"PUBLISH": "header:X-Tenant", "SUBSCRIBE": "header:Subject", "FOO": "header:X-Tenant",
		"OPTIONS": "ruri-aor",
	})
	hashed, hw := newTestWorker(t, func(c *Config) { c.Keys = keys })
	var observed int
	hashed.SetResponseObserver(func(netip.AddrPort, int) { observed++ })
	_, rrw := newTestWorker(t, func(c *Config) { c.Balance = balancer.ModeRoundRobin })
	_, inv := handle(t, hw, invite3261, alice)
	resp := respond(t, inv.Buf, "503 Service Unavailable", "a6c85cf")
	const cid = "alloc-1@client"
	cases := []struct {
		name string
		w    *Worker
		in   []byte
		from netip.AddrPort
	}{
		{"REGISTER to-aor", hw, request("REGISTER", "sip:example.com", "<sip:alice@Example.COM:5060;transport=udp>", "<sip:alice@example.com>", cid), alice},
		{"REGISTER to-aor escaped", hw, request("REGISTER", "sip:example.com", "<sip:%61lice@example.com>", "<sip:alice@example.com>", cid), alice},
		{"REGISTER to-aor fallback", hw, request("REGISTER", "sip:example.com", "<tel:+15551234>", "<sip:alice@example.com>", cid), alice},
		{"MESSAGE from-uri", hw, request("MESSAGE", "sip:bob@example.com", "<sip:bob@example.com>", "<sip:carol@Chicago.example.com>", cid), alice},
		{"INVITE ruri-user", hw, request("INVITE", "sip:+15551234@gw.example.com;user=phone", "<sip:x@y>", "<sip:a@b>", cid), alice},
		{"OPTIONS ruri-aor", hw, request("OPTIONS", "sip:alice@Example.COM:5060;transport=udp", "<sip:x@y>", "<sip:a@b>", cid), alice},
		{"OPTIONS ruri-aor escaped", hw, request("OPTIONS", "sip:%61lice@example.com", "<sip:x@y>", "<sip:a@b>", cid), alice},
		{"OPTIONS ruri-aor longer than the buffer", hw, request("OPTIONS", "sip:"+strings.Repeat("u", 600)+"@example.com", "<sip:x@y>", "<sip:a@b>", cid), alice},
		{"OPTIONS ruri-aor fallback", hw, request("OPTIONS", "tel:+15551234", "<sip:x@y>", "<sip:a@b>", cid), alice},
		{"PUBLISH header", hw, request("PUBLISH", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "X-Tenant: acme"), alice},
		{"SUBSCRIBE compact header", hw, request("SUBSCRIBE", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "s: weather"), alice},
		{"FOO header (extension method)", hw, request("FOO", "sip:p@example.com", "<sip:x@y>", "<sip:a@b>", cid, "X-Tenant: acme"), alice},
		{"observed 503", hw, resp, up1},
		{"round robin", rrw, invite3261, alice},
	}
	out := newOutput(hashed)
	for _, c := range cases {
		if a := c.w.Handle(c.in, udpFrom(c.from), out); a != ActionForward {
			t.Fatalf("%s: %v", c.name, a)
		}
		if n := testing.AllocsPerRun(200, func() { c.w.Handle(c.in, udpFrom(c.from), out) }); n != 0 {
			t.Errorf("%s: %.1f allocations per message, want 0", c.name, n)
		}
	}
	if observed == 0 {
		t.Errorf("the response observer was not called")
	}
}
