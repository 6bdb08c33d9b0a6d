package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// rawUpstream is a loopback UDP server that keeps every request it gets,
// byte for byte, and answers each but ACK with a 200 OK.
type rawUpstream struct {
	conn *net.UDPConn
	addr netip.AddrPort

	mu       sync.Mutex
	requests [][]byte
	replies  []string // status lines of responses it got (Viaduct's own replies)
}

func newRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	c, addr := testenv.ListenUDP(t)
	u := &rawUpstream{conn: c, addr: addr}
	testenv.ServeSIP(t, c, u.handle)
	return u
}

// handle keeps request m (or the status line of response m) and answers
// a request other than ACK with 200 OK.
func (u *rawUpstream) handle(m *parser.Message, from netip.AddrPort) {
	u.mu.Lock()
	if m.IsRequest() {
		u.requests = append(u.requests, append([]byte(nil), m.Bytes()...))
	} else {
		u.replies = append(u.replies, fmt.Sprintf("%d %s", m.StatusCode(), m.Reason()))
	}
	u.mu.Unlock()
	if m.IsRequest() && m.MethodID() != parser.MethodACK {
		u.conn.WriteToUDPAddrPort(testenv.AppendResponse(nil, m, "200 OK", "up"), from)
	}
}

// received returns the requests other than OPTIONS (health probes).
func (u *rawUpstream) received() [][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out [][]byte
	for _, r := range u.requests {
		if !bytes.HasPrefix(r, []byte("OPTIONS ")) {
			out = append(out, r)
		}
	}
	return out
}

// wellFormedCase is one request of the end-to-end well-formed test: the
// base request with old replaced by new, and the status line the client
// must get (a relayed 200 when the request is valid).
type wellFormedCase struct {
	name, old, new, status string
}

var wellFormedCases = []wellFormedCase{
	{"valid", "", "", "200 OK"},
	{"quoted-pair NUL", "From: Alice <", "From: \"Al\\\x00ice\" <", "200 OK"},
	{"extension method", "INVITE sip:bob@example.com SIP/2.0", "FOO.BAR-1 sip:bob@example.com SIP/2.0", "200 OK"},
	{"IPv6 reference", "INVITE sip:bob@example.com SIP/2.0", "INVITE sip:bob@[2001:db8::10]:5060 SIP/2.0", "200 OK"},
	{"quoted comma", "To: Bob <", "To: \"Builder, Bob\" <", "200 OK"},
	{"two Call-ID", "CSeq:", "i: other@x\r\nCSeq:", "400 Multiple Call-ID"},
	{"two From", "CSeq:", "f: <sip:eve@x>;tag=9\r\nCSeq:", "400 Multiple From"},
	{"To list", "To: Bob <sip:bob@example.com>", "To: Bob <sip:bob@example.com>, <sip:eve@x>", "400 Multiple To"},
	{"CSeq list", "CSeq: 1 INVITE", "CSeq: 1 INVITE, 2 INVITE", "400 Multiple CSeq"},
	{"two Max-Forwards", "CSeq:", "Max-Forwards: 10\r\nCSeq:", "400 Multiple Max-Forwards"},
	{"Content-Length twice", "CSeq:", "l: 4\r\nCSeq:", "400 Conflicting Content-Length"},
	{"Request-URI in brackets", "INVITE sip:bob@example.com SIP/2.0", "INVITE <sip:bob@example.com> SIP/2.0", "400 Request-URI In Angle Brackets"},
	{"IPv6 without brackets", "INVITE sip:bob@example.com SIP/2.0", "INVITE sip:2001:db8::10 SIP/2.0", "400 IPv6 Address Without Brackets"},
	{"bad IPv6 reference", "INVITE sip:bob@example.com SIP/2.0", "INVITE sip:bob@[1::2::3] SIP/2.0", "400 Malformed IPv6 Reference"},
	{"URI headers", "INVITE sip:bob@example.com SIP/2.0", "INVITE sip:bob@example.com?Route=%3Csip:evil%3E SIP/2.0", "400 Headers In Request-URI"},
	{"display name", "From: Alice <", "From: Alice (Sales) <", "400 Malformed From Display Name"},
	{"space in To URI", "To: Bob <sip:bob@example.com>", "To: Bob <sip:bob smith@example.com>", "400 White Space In To URI"},
}

// wellFormedRequest builds the request of case c from a client at client.
func wellFormedRequest(c wellFormedCase, i int, client netip.AddrPort) []byte {
	base := fmt.Sprintf("INVITE sip:bob@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-wf-%d\r\n"+
		"Max-Forwards: 70\r\n"+
		"To: Bob <sip:bob@example.com>\r\n"+
		"From: Alice <sip:alice@example.com>;tag=wf%d\r\n"+
		"Call-ID: wf-%d@client\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Content-Length: 0\r\n\r\n", client, i, i, i)
	if c.old != "" {
		base = strings.Replace(base, c.old, c.new, 1)
	}
	if strings.HasPrefix(c.new, "FOO.BAR-1 ") {
		base = strings.Replace(base, "CSeq: 1 INVITE", "CSeq: 1 FOO.BAR-1", 1)
	}
	return []byte(base)
}

// Issue #12 through the real binary: each class of malformed request gets
// its 400 and never reaches the upstream; valid spellings reach it byte for
// byte as sent, apart from Viaduct's Via and the decremented Max-Forwards; a
// request from the upstream to an unspecified or multicast address gets 403.
func TestBinaryWellFormedOnly(t *testing.T) {
	up := newRawUpstream(t)
	proxy, v := startViaduct(t, fmt.Sprintf("upstreams: [\"%s\"]\n", up.addr))
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	me := client.LocalAddr().(*net.UDPAddr).AddrPort()
	sent := map[string][]byte{} // valid requests by Call-ID
	for i, c := range wellFormedCases {
		req := wellFormedRequest(c, i, me)
		if got := exchange(t, client, proxy, req); got != c.status {
			t.Errorf("%s: got %q, want %q\n%s", c.name, got, c.status, v.out.String())
		}
		if c.status == "200 OK" {
			sent[fmt.Sprintf("wf-%d@client", i)] = req
		}
	}
	got := up.received()
	if len(got) != len(sent) {
		t.Errorf("upstream got %d requests, want the %d valid ones", len(got), len(sent))
	}
	for _, r := range got {
		var m parser.Message
		if err := parser.Parse(r, &m); err != nil {
			t.Fatalf("upstream got a request that does not parse (%v):\n%q", err, r)
		}
		want, ok := sent[string(m.CallID())]
		if !ok {
			t.Errorf("upstream got a request that should have been refused:\n%q", r)
			continue
		}
		if stripped := stripOwnEdits(t, r); !bytes.Equal(stripped, want) {
			t.Errorf("request changed beyond Via and Max-Forwards:\n%q\nsent\n%q", stripped, want)
		}
	}

	// From the upstream: next hops Viaduct never sends to.
	for i, c := range []struct{ ruri, status string }{
		{"sip:bob@0.0.0.0", "403 Next Hop Is An Unspecified Address"},
		{"sip:bob@224.0.0.1", "403 Next Hop Is A Multicast Address"},
	} {
		req := fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-up-%d\r\nMax-Forwards: 70\r\n"+
			"To: <sip:a@x>;tag=1\r\nFrom: <sip:b@x>;tag=2\r\nCall-ID: up-%d\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
			c.ruri, up.addr, i, i)
		if _, err := up.conn.WriteToUDPAddrPort([]byte(req), proxy); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() bool { return up.gotReply(c.status) }, "the upstream to get "+c.status)
	}
}

// gotReply reports whether the upstream received a response with this
// status line (without "SIP/2.0 ").
func (u *rawUpstream) gotReply(status string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.replies {
		if s == status {
			return true
		}
	}
	return false
}

// exchange sends req to proxy from c and returns the status line (without
// "SIP/2.0 ") of the response for it, retransmitting as a UDP client would.
func exchange(t *testing.T, c *net.UDPConn, proxy netip.AddrPort, req []byte) string {
	t.Helper()
	buf := make([]byte, 65536)
	for try := 0; try < 5; try++ {
		if _, err := c.WriteToUDPAddrPort(req, proxy); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		return strings.TrimPrefix(line, "SIP/2.0 ")
	}
	return "no response"
}

// stripOwnEdits removes Viaduct's Via line from a forwarded request and
// restores Max-Forwards 70.
func stripOwnEdits(t *testing.T, r []byte) []byte {
	t.Helper()
	var m parser.Message
	if err := parser.Parse(r, &m); err != nil {
		t.Fatal(err)
	}
	h := m.Header(m.TopVia().Header)
	out := append(append([]byte(nil), r[:h.Start]...), r[h.End:]...)
	return bytes.Replace(out, []byte("Max-Forwards: 69\r\n"), []byte("Max-Forwards: 70\r\n"), 1)
}

// waitFor polls cond every 20 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
