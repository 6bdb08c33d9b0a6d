package fastpath

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// responder is a minimal UAS on a loopback socket: it answers INVITE with
// 100, 180 and 200 (or, for Call-IDs containing "cancel-me", only 100, then
// 487 when the CANCEL comes), CANCEL/BYE/REGISTER/OPTIONS with 200, ACK with
// nothing. It records every request it receives as "METHOD Call-ID".
type responder struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort

	mu      sync.Mutex
	got     []string
	invites map[string][]byte
}

func newResponder(t *testing.T) *responder {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), invites: map[string][]byte{}}
	go r.loop()
	t.Cleanup(func() { c.Close() })
	return r
}

func (r *responder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *responder) loop() {
	buf := make([]byte, 65536)
	for {
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		var m parser.Message
		if err := parser.Parse(b, &m); err != nil || !m.IsRequest() {
			r.t.Errorf("responder %v got a bad message (%v):\n%s", r.addr, err, b)
			continue
		}
		callID := string(m.CallID())
		r.mu.Lock()
		r.got = append(r.got, string(m.Method())+" "+callID)
		r.mu.Unlock()
		switch m.MethodID() {
		case parser.MethodACK:
		case parser.MethodINVITE:
			r.send(b, "100 Trying", "")
			if strings.Contains(callID, "cancel-me") {
				r.mu.Lock()
				r.invites[callID] = b
				r.mu.Unlock()
				continue
			}
			r.send(b, "180 Ringing", "uas1")
			r.send(b, "200 OK", "uas1")
		case parser.MethodCANCEL:
			r.send(b, "200 OK", "uas1")
			r.mu.Lock()
			inv := r.invites[callID]
			r.mu.Unlock()
			if inv != nil {
				r.send(inv, "487 Request Terminated", "uas1")
			}
		default:
			r.send(b, "200 OK", "uas1")
		}
	}
}

// send answers req to its top Via's sent-by (the proxy), as a UAS does.
func (r *responder) send(req []byte, status, toTag string) {
	resp := respond(r.t, req, status, toTag)
	v := mustParse(r.t, req).TopVia()
	ip, _ := parser.ParseIP(v.Host)
	port := v.Port
	if port == 0 {
		port = 5060
	}
	if _, err := r.conn.WriteToUDPAddrPort(resp, netip.AddrPortFrom(ip, uint16(port))); err != nil {
		r.t.Errorf("responder send: %v", err)
	}
}

// client is a UAC socket.
type client struct {
	t     *testing.T
	conn  *net.UDPConn
	addr  netip.AddrPort
	proxy netip.AddrPort
}

func newClient(t *testing.T, proxy netip.AddrPort) *client {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), proxy: proxy}
}

// request builds a request from the client.
func (c *client) request(method, ruri, callID string, cseq int, branch, toTag string, extra ...string) []byte {
	to := "<sip:service@example.com>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	h := fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\nMax-Forwards: 70\nFrom: <sip:uac@example.com>;tag=uac1\nTo: %s\nCall-ID: %s\nCSeq: %d %s\n",
		method, ruri, c.addr, branch, to, callID, cseq, method)
	for _, x := range extra {
		h += x + "\n"
	}
	return msg(h, "")
}

func (c *client) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(b, c.proxy); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads responses until one with the status code arrives (others
// are returned too), failing after 2 s.
func (c *client) expect(status int) []*parser.Message {
	c.t.Helper()
	var seen []*parser.Message
	deadline := time.Now().Add(2 * time.Second)
	for {
		c.conn.SetReadDeadline(deadline)
		buf := make([]byte, 65536)
		n, _, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var codes []int
			for _, m := range seen {
				codes = append(codes, m.StatusCode())
			}
			c.t.Fatalf("waiting for %d: %v (got %v)", status, err, codes)
		}
		m := mustParse(c.t, buf[:n])
		seen = append(seen, m)
		if v := vias(c.t, buf[:n]); len(v) != 1 || !strings.Contains(v[0], c.addr.String()) {
			c.t.Errorf("response reached the client with Vias %q", v)
		}
		if m.StatusCode() == status {
			return seen
		}
	}
}

func startEngine(t *testing.T, ups ...netip.AddrPort) *Engine {
	t.Helper()
	return startEngineConfig(t, Config{Upstreams: ups, Workers: 2})
}

// startEngineConfig starts an engine with cfg on an ephemeral loopback
// port and closes it when the test ends.
func startEngineConfig(t *testing.T, cfg Config) *Engine {
	t.Helper()
	if len(cfg.Listeners) == 0 {
		cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	}
	if cfg.Transport == nil {
		cfg.Transport = udp.Bind(udp.ServerConfig{}, nil)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// TestIntegrationCallFlows runs with workers that park in the netpoller at
// once and with workers that first wait in recvmmsg (udp.ServerConfig.ParkAfter).
func TestIntegrationCallFlows(t *testing.T) {
	t.Run("netpoller", func(t *testing.T) { testIntegrationCallFlows(t, 0) })
	t.Run("recvmmsg", func(t *testing.T) { testIntegrationCallFlows(t, 20*time.Millisecond) })
}

func testIntegrationCallFlows(t *testing.T, parkAfter time.Duration) {
	u1, u2 := newResponder(t), newResponder(t)
	e := startEngineConfig(t, Config{Upstreams: []netip.AddrPort{u1.addr, u2.addr}, Workers: 2,
		Transport: udp.Bind(udp.ServerConfig{ParkAfter: parkAfter}, nil)})
	if want := parkAfter; runtime.GOMAXPROCS(0) < 2 {
		t.Logf("GOMAXPROCS %d: two workers do not get ParkAfter", runtime.GOMAXPROCS(0))
	} else if got := e.servers[0].srv.(*udp.Server).ParkAfter(); got != want {
		t.Fatalf("ParkAfter = %v, want %v", got, want)
	}
	proxy := e.ListenAddrs()[0]
	c := newClient(t, proxy)
	ruri := "sip:service@" + proxy.String()

	const calls = 12
	for i := 0; i < calls; i++ {
		id := fmt.Sprintf("call-%d@test", i)
		c.send(c.request("INVITE", ruri, id, 1, fmt.Sprintf("inv%d", i), ""))
		got := c.expect(200)
		codes := ""
		for _, m := range got {
			codes += fmt.Sprint(m.StatusCode(), " ")
		}
		if codes != "100 180 200 " {
			t.Errorf("%s: responses in order %q, want 100 180 200", id, codes)
		}
		c.send(c.request("ACK", ruri, id, 1, fmt.Sprintf("ack%d", i), "uas1"))
		c.send(c.request("BYE", ruri, id, 2, fmt.Sprintf("bye%d", i), "uas1"))
		c.expect(200)
	}
	// CANCEL: 100, then CANCEL -> 200, INVITE -> 487, ACK with the
	// INVITE's branch.
	id := "cancel-me-1@test"
	c.send(c.request("INVITE", ruri, id, 1, "invc", ""))
	c.expect(100)
	c.send(c.request("CANCEL", ruri, id, 1, "invc", ""))
	c.expect(200)
	c.expect(487)
	c.send(c.request("ACK", ruri, id, 1, "invc", "uas1"))
	// REGISTER and OPTIONS to an upstream.
	c.send(c.request("REGISTER", "sip:"+proxy.String(), "reg-1@test", 1, "reg1", "", "Contact: <sip:uac@"+c.addr.String()+">", "Expires: 60"))
	c.expect(200)
	c.send(c.request("OPTIONS", "sip:ping@"+proxy.String(), "opt-1@test", 1, "opt1", ""))
	c.expect(200)
	// OPTIONS to the proxy itself: answered locally.
	before := len(u1.requests()) + len(u2.requests())
	c.send(c.request("OPTIONS", "sip:"+proxy.String(), "opt-2@test", 1, "opt2", ""))
	c.expect(200)

	// Wait for the last ACK to land, then check affinity: every request of
	// a Call-ID reached one upstream only, and both upstreams got calls.
	deadline := time.Now().Add(2 * time.Second)
	want := calls*3 + 3 + 2 // calls, the cancel flow, REGISTER and OPTIONS
	for len(u1.requests())+len(u2.requests()) < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	where := map[string]netip.AddrPort{}
	count := map[netip.AddrPort]int{}
	for _, r := range []*responder{u1, u2} {
		for _, req := range r.requests() {
			cid := strings.SplitN(req, " ", 2)[1]
			if prev, ok := where[cid]; ok && prev != r.addr {
				t.Errorf("Call-ID %s reached both upstreams", cid)
			}
			where[cid] = r.addr
			count[r.addr]++
		}
	}
	total := len(u1.requests()) + len(u2.requests())
	if total != want {
		t.Errorf("upstreams received %d requests, want %d (u1 %q, u2 %q)", total, want, u1.requests(), u2.requests())
	}
	if before != total {
		t.Errorf("the OPTIONS to the proxy reached an upstream")
	}
	if count[u1.addr] == 0 || count[u2.addr] == 0 {
		t.Errorf("requests per upstream: %v", count)
	}
	cancelSeq := ""
	for _, r := range append(u1.requests(), u2.requests()...) {
		if strings.HasSuffix(r, "cancel-me-1@test") {
			cancelSeq += strings.Fields(r)[0] + " "
		}
	}
	if cancelSeq != "INVITE CANCEL ACK " {
		t.Errorf("cancel flow at the upstream: %q", cancelSeq)
	}
	// A worker counts a datagram as sent after sendmmsg returns, which can
	// be after the peer has read it: wait, bounded, for the last batch's
	// counts before comparing them.
	sentAll := func(s Stats) bool {
		return s.DatagramsOut == s.RequestsForwarded+s.ResponsesForwarded[1]+s.ResponsesForwarded[2]+s.ResponsesForwarded[4]+1
	}
	s := e.Stats()
	for deadline := time.Now().Add(2 * time.Second); !sentAll(s) && time.Now().Before(deadline); s = e.Stats() {
		time.Sleep(5 * time.Millisecond)
	}
	if s.RequestsByMethod[parser.MethodINVITE] != calls+1 || s.LocalReplies[Local200] != 1 || s.Drops[DropForgedResponse] != 0 {
		t.Errorf("stats: %+v", s)
	}
	if !sentAll(s) {
		t.Errorf("datagrams out %d != forwarded %d + responses %v + 1 local reply", s.DatagramsOut, s.RequestsForwarded, s.ResponsesForwarded)
	}
}

// A forged response sent to the proxy never reaches the victim named in its
// Via.
func TestIntegrationForgedResponseNotReflected(t *testing.T) {
	u1 := newResponder(t)
	e := startEngine(t, u1.addr)
	proxy := e.ListenAddrs()[0]
	victim := newClient(t, proxy)
	attacker := newClient(t, proxy)
	forged := msg(fmt.Sprintf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP %s;branch=z9hG4bKvd10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
Via: SIP/2.0/UDP %s;branch=z9hG4bKvictim
From: <sip:a@example.com>;tag=1
To: <sip:b@example.com>;tag=2
Call-ID: forged@test
CSeq: 1 INVITE`, proxy, victim.addr), "")
	for i := 0; i < 5; i++ {
		attacker.send(forged)
	}
	victim.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := victim.conn.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
		t.Fatal("the forged response was reflected to the victim")
	}
	deadline := time.Now().Add(2 * time.Second)
	for e.Stats().Drops[DropForgedResponse] < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.Stats().Drops[DropForgedResponse]; n != 5 {
		t.Errorf("forged_response drops = %d, want 5", n)
	}
}

// Responses to requests Viaduct sends itself (AppendVia + SendTo) reach
// the local response handler.
func TestIntegrationLocalProbe(t *testing.T) {
	u1 := newResponder(t)
	e := startEngine(t, u1.addr)
	got := make(chan string, 1)
	e.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) {
		got <- fmt.Sprintf("%d %s %s", m.StatusCode(), m.CallID(), from)
	})
	var b bytes.Buffer
	b.WriteString("OPTIONS sip:" + u1.addr.String() + " SIP/2.0\r\n")
	b.Write(e.AppendVia(nil, u1.addr, 7))
	b.WriteString("Max-Forwards: 70\r\nFrom: <sip:viaduct@localhost>;tag=hc\r\nTo: <sip:" + u1.addr.String() + ">\r\nCall-ID: probe-7\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if err := e.SendTo(b.Bytes(), u1.addr); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "200 probe-7 "+u1.addr.String() {
			t.Errorf("handler got %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no local response")
	}
}

// Two listen addresses, IPv4 and IPv6: an IPv6 client reaches an IPv4
// upstream and gets its responses back over IPv6.
func TestIntegrationDualStack(t *testing.T) {
	u1 := newResponder(t)
	e, err := New(Config{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("[::1]:0")},
		Upstreams: []netip.AddrPort{u1.addr},
		Workers:   1,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer e.Close()
	v6 := e.ListenAddrs()[1]
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer c6.Close()
	c := &client{t: t, conn: c6, addr: c6.LocalAddr().(*net.UDPAddr).AddrPort(), proxy: v6}
	c.send(c.request("INVITE", "sip:service@"+v6.String(), "dual-1@test", 1, "d1", ""))
	c.expect(200)
	c.send(c.request("OPTIONS", "sip:"+v6.String(), "dual-2@test", 1, "d2", ""))
	c.expect(200) // local keepalive over IPv6
	if got := u1.requests(); len(got) != 1 || got[0] != "INVITE dual-1@test" {
		t.Errorf("upstream got %q", got)
	}
}

// Over real sockets: a call set up while its key's upstream drained lives
// on the other upstream, and its BYE, addressed to that upstream (the
// dialog's remote target), reaches it also after the drained upstream is
// enabled again; a BYE whose next hop names no upstream is balanced on the
// Call-ID as before.
func TestIntegrationDialogFollowsItsUpstream(t *testing.T) {
	u1, u2 := newResponder(t), newResponder(t)
	e := startEngine(t, u1.addr, u2.addr)
	c := newClient(t, e.ListenAddrs()[0])
	callID := ""
	for i := 0; callID == ""; i++ {
		id := fmt.Sprintf("follow-%d@uac", i)
		if tg, ok := e.Pool().Table().Pick(balancer.HashKeyString(id), false); ok && tg.Addr == u1.addr {
			callID = id
		}
	}
	id1 := balancer.DefaultID("udp", u1.addr)
	if err := e.Pool().SetAdmin(id1, balancer.Draining); err != nil {
		t.Fatal(err)
	}
	c.send(c.request("INVITE", "sip:service@example.com", callID, 1, "inv1", ""))
	c.expect(200)
	c.send(c.request("ACK", "sip:uas@"+u2.addr.String(), callID, 1, "ack1", "uas1", "Route: <sip:"+e.ListenAddrs()[0].String()+";lr>"))
	if err := e.Pool().SetAdmin(id1, balancer.Enabled); err != nil {
		t.Fatal(err)
	}
	c.send(c.request("BYE", "sip:uas@"+u2.addr.String(), callID, 2, "bye1", "uas1"))
	c.expect(200)
	// A second call's BYE to a next hop that is no upstream: hashed.
	c.send(c.request("BYE", "sip:service@example.com", callID, 3, "bye2", "uas1"))
	c.expect(200)

	want1 := []string{"BYE " + callID}
	want2 := []string{"INVITE " + callID, "ACK " + callID, "BYE " + callID}
	deadline := time.Now().Add(2 * time.Second)
	for (len(u1.requests()) < len(want1) || len(u2.requests()) < len(want2)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := u1.requests(); fmt.Sprint(got) != fmt.Sprint(want1) {
		t.Errorf("drained then re-enabled upstream got %q, want %q", got, want1)
	}
	if got := u2.requests(); fmt.Sprint(got) != fmt.Sprint(want2) {
		t.Errorf("upstream that took the call got %q, want %q", got, want2)
	}
	if n := e.Stats().DialogRouted; n != 2 {
		t.Errorf("Stats.DialogRouted = %d, want 2 (the 2xx ACK and the first BYE)", n)
	}
}

// Over real sockets, Path (RFC 3327): a client REGISTERs through Viaduct
// with a contact that is not its address (as a phone behind a NAT does;
// here another loopback address where nothing listens); the
// registrar receives Viaduct's Path with the client's real address, sends
// an INVITE for the contact with that Path as its Route, and the INVITE
// reaches the client's socket; the client's 200 goes back to the registrar.
func TestIntegrationPath(t *testing.T) {
	registrar, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer registrar.Close()
	regAddr := registrar.LocalAddr().(*net.UDPAddr).AddrPort()
	e := startEngineConfig(t, Config{Upstreams: []netip.AddrPort{regAddr}, Path: true, Workers: 1})
	proxy := e.ListenAddrs()[0]
	c := newClient(t, proxy)
	read := func(conn *net.UDPConn, what string) (*parser.Message, []byte) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 65536)
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return mustParse(t, buf[:n]), buf[:n]
	}

	c.send(c.request("REGISTER", "sip:registrar.example.com", "reg-path@uac", 1, "reg1", "", "Contact: <sip:uac@127.0.0.2:5999>", "Expires: 600"))
	reg, regBytes := read(registrar, "REGISTER at the registrar")
	if reg.MethodID() != parser.MethodREGISTER {
		t.Fatalf("registrar got %s", reg.Method())
	}
	path := header(t, regBytes, parser.KindPath)
	wantPath := "<sip:" + proxy.String() + ";lr;received=" + c.addr.String() + ">"
	if len(path) != 1 || path[0] != wantPath {
		t.Fatalf("Path at the registrar = %q, want %q", path, wantPath)
	}

	// The registrar sends a call for the contact along the stored Path.
	invite := msg(fmt.Sprintf(`INVITE sip:uac@127.0.0.2:5999 SIP/2.0
Via: SIP/2.0/UDP %s;branch=z9hG4bKregin1
Max-Forwards: 70
Route: %s
From: <sip:carol@example.com>;tag=c1
To: <sip:uac@example.com>
Call-ID: path-call@registrar
CSeq: 1 INVITE`, regAddr, path[0]), "")
	if _, err := registrar.WriteToUDPAddrPort(invite, proxy); err != nil {
		t.Fatal(err)
	}
	got, gotBytes := read(c.conn, "INVITE at the client")
	if got.MethodID() != parser.MethodINVITE || string(got.RequestURI()) != "sip:uac@127.0.0.2:5999" {
		t.Fatalf("client got %s %s", got.Method(), got.RequestURI())
	}
	if r := header(t, gotBytes, parser.KindRoute); len(r) != 0 {
		t.Errorf("Viaduct's Route still on the INVITE: %q", r)
	}
	// The client's answer follows the Vias back to the registrar.
	if _, err := c.conn.WriteToUDPAddrPort(respond(t, gotBytes, "200 OK", "uac9"), proxy); err != nil {
		t.Fatal(err)
	}
	if ok, _ := read(registrar, "200 at the registrar"); ok.StatusCode() != 200 || string(ok.CallID()) != "path-call@registrar" {
		t.Errorf("registrar got %d for %s", ok.StatusCode(), ok.CallID())
	}
}
