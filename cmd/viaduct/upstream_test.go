package main

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// sipUpstream is a loopback UDP server that answers every request but ACK
// with 200 OK (sent back to the datagram's source, Viaduct) and records
// what it got.
type sipUpstream struct {
	conn *net.UDPConn
	addr netip.AddrPort

	mu      sync.Mutex
	methods map[string]int // requests by method
	toURIs  map[string]int // REGISTERs by To URI
	callIDs map[string]int // requests by Call-ID
	total   int
}

func newSIPUpstream(t *testing.T) *sipUpstream {
	t.Helper()
	c, addr := testenv.ListenUDP(t)
	u := &sipUpstream{conn: c, addr: addr,
		methods: map[string]int{}, toURIs: map[string]int{}, callIDs: map[string]int{}}
	testenv.ServeSIP(t, c, u.handle)
	return u
}

// handle records request m and answers it 200 OK unless it is an ACK.
func (u *sipUpstream) handle(m *parser.Message, from netip.AddrPort) {
	if !m.IsRequest() {
		return
	}
	to, _ := m.To()
	u.mu.Lock()
	u.methods[string(m.Method())]++
	u.callIDs[string(m.CallID())]++
	if m.MethodID() == parser.MethodREGISTER {
		u.toURIs[string(to.URI)]++
	}
	u.total++
	u.mu.Unlock()
	if m.MethodID() == parser.MethodACK {
		return
	}
	u.conn.WriteToUDPAddrPort(testenv.AppendResponse(nil, m, "200 OK", "up"), from)
}

// count returns the number of requests received.
func (u *sipUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.total
}

// received returns the number of requests of method received: a test
// counting calls counts INVITEs, not the health probes (OPTIONS) that
// every upstream gets by default.
func (u *sipUpstream) received(method string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.methods[method]
}

// registers returns how many REGISTERs arrived for the To URI uri.
func (u *sipUpstream) registers(uri string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.toURIs[uri]
}

// sipClient sends requests to Viaduct from a loopback socket and counts the
// 200 responses by Call-ID.
type sipClient struct {
	conn  *net.UDPConn
	addr  netip.AddrPort
	proxy netip.AddrPort

	mu  sync.Mutex
	oks map[string]int
	n   int
}

func newSIPClient(t *testing.T, proxy netip.AddrPort) *sipClient {
	t.Helper()
	c, addr := testenv.ListenUDP(t)
	cl := &sipClient{conn: c, addr: addr, proxy: proxy, oks: map[string]int{}}
	testenv.ServeSIP(t, c, func(m *parser.Message, _ netip.AddrPort) {
		if !m.IsRequest() && m.StatusCode() == 200 {
			cl.mu.Lock()
			cl.oks[string(m.CallID())]++
			cl.n++
			cl.mu.Unlock()
		}
	})
	return cl
}

// send sends a request for method with the given Call-ID and To URI (the
// Request-URI is the To URI's domain for REGISTER, the To URI otherwise).
func (c *sipClient) send(t *testing.T, method, callID, toURI, ruri string) {
	t.Helper()
	req := fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <%s>;tag=c1\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 %s\r\nContact: <sip:c@%s>\r\nContent-Length: 0\r\n\r\n",
		method, ruri, c.addr, branchOf(callID), toURI, toURI, callID, method, c.addr)
	if _, err := c.conn.WriteToUDPAddrPort([]byte(req), c.proxy); err != nil {
		t.Fatal(err)
	}
}

func branchOf(callID string) string {
	b := []byte(callID)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			b[i] = '-'
		}
	}
	return string(b)
}

// ok reports how many 200s have arrived in all, and for callID.
func (c *sipClient) ok(callID string) (total, forCall int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n, c.oks[callID]
}

// waitOK waits until n 200 responses have arrived in all, failing after d.
func (c *sipClient) waitOK(t *testing.T, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got, _ := c.ok("")
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d 200 OK responses after %v", got, n, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
