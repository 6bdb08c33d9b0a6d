//go:build linux

package e2e

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// clusterUAS is an upstream for the active/active tests. It answers like a
// UAS: INVITE with 180 and 200 (the 200 retransmitted as RFC 3261 13.3.1.4
// asks, every T1 doubling up to T2, until its ACK arrives or 64*T1 pass),
// ACK with nothing, OPTIONS and any other request with 200. It records the
// Call-ID of every request that reaches it.
//
// It answers calls from a socket picked at random from a pool of its own,
// to the sent-by of the top Via (Viaduct's, which names the address the
// instances share): each response then has a 4-tuple of its own, and where
// several instances share that address the kernel hands it to any of them,
// most often not to the one that forwarded the request. OPTIONS are answered
// from the listening socket to the request's source address, as an RFC 3581
// server answers: a health probe's reply goes back to the socket it came
// from.
type clusterUAS struct {
	name string
	conn *net.UDPConn
	addr netip.AddrPort
	pool []*net.UDPConn

	mu      sync.Mutex
	calls   map[string]bool        // Call-IDs of the requests (but OPTIONS) seen
	pending map[string]*pendingOK  // Call-ID -> 200 to an INVITE awaiting its ACK
	probes  int                    // OPTIONS answered
	byKind  map[parser.Method]int  // requests received per method
	senders map[netip.AddrPort]int // source of each request but OPTIONS
}

// pendingOK is a 200 to an INVITE that is retransmitted until its ACK.
type pendingOK struct {
	msg      []byte
	to       netip.AddrPort
	next     time.Time
	interval time.Duration
	giveUp   time.Time
}

const (
	uasT1 = 500 * time.Millisecond
	uasT2 = 4 * time.Second
)

// newClusterUAS opens the upstream's socket on bind (port chosen by the
// kernel) and a pool of poolSize sockets to answer from, and serves until
// the test ends. listen opens a UDP socket (the netns tests open them in a
// namespace).
func newClusterUAS(t *testing.T, name string, bind netip.Addr, poolSize int, listen func(netip.AddrPort) (*net.UDPConn, error)) *clusterUAS {
	t.Helper()
	open := func() *net.UDPConn {
		c, err := listen(netip.AddrPortFrom(bind, 0))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	u := &clusterUAS{name: name, calls: map[string]bool{}, pending: map[string]*pendingOK{},
		byKind: map[parser.Method]int{}, senders: map[netip.AddrPort]int{}}
	u.conn = open()
	u.addr = u.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	for range poolSize {
		u.pool = append(u.pool, open())
	}
	testenv.ServeSIP(t, u.conn, u.handle)
	stop := make(chan struct{})
	done := make(chan struct{})
	go u.retransmit(stop, done)
	t.Cleanup(func() { close(stop); <-done })
	return u
}

// listenUDP opens a UDP socket on a in the caller's network namespace.
func listenUDP(a netip.AddrPort) (*net.UDPConn, error) {
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
}

// handle answers request m from from.
func (u *clusterUAS) handle(m *parser.Message, from netip.AddrPort) {
	if !m.IsRequest() {
		return
	}
	meth := m.MethodID()
	u.mu.Lock()
	u.byKind[meth]++
	if meth == parser.MethodOPTIONS {
		u.probes++
		u.mu.Unlock()
		u.conn.WriteToUDPAddrPort(testenv.AppendResponse(nil, m, "200 OK", "opt"), from)
		return
	}
	id := string(m.CallID())
	u.calls[id] = true
	u.senders[from]++
	u.mu.Unlock()

	to, ok := sentBy(m)
	if !ok {
		return
	}
	contact := "Contact: <sip:uas@" + u.addr.String() + ">"
	tag := "uas-" + u.name
	switch meth {
	case parser.MethodACK:
		u.mu.Lock()
		delete(u.pending, id)
		u.mu.Unlock()
	case parser.MethodINVITE:
		u.send(testenv.AppendResponse(nil, m, "180 Ringing", tag, contact), to)
		ok := testenv.AppendResponse(nil, m, "200 OK", tag, contact)
		u.send(ok, to)
		now := time.Now()
		u.mu.Lock()
		u.pending[id] = &pendingOK{msg: ok, to: to, next: now.Add(uasT1), interval: uasT1, giveUp: now.Add(64 * uasT1)}
		u.mu.Unlock()
	default:
		u.send(testenv.AppendResponse(nil, m, "200 OK", tag, contact), to)
	}
}

// sentBy returns the address a response to m goes to: its top Via's
// sent-by (an IP literal; port 5060 when absent).
func sentBy(m *parser.Message) (netip.AddrPort, bool) {
	v := m.TopVia()
	ip, err := netip.ParseAddr(string(v.Host))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// send writes b to to from a socket of the pool picked at random.
func (u *clusterUAS) send(b []byte, to netip.AddrPort) {
	u.pool[rand.IntN(len(u.pool))].WriteToUDPAddrPort(b, to)
}

// retransmit resends the 200s whose ACK has not come, until stop closes.
func (u *clusterUAS) retransmit(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			u.resendDue(now)
		}
	}
}

// resendDue resends every 200 due at now and drops those past 64*T1.
func (u *clusterUAS) resendDue(now time.Time) {
	type due struct {
		msg []byte
		to  netip.AddrPort
	}
	var out []due
	u.mu.Lock()
	for id, p := range u.pending {
		switch {
		case now.After(p.giveUp):
			delete(u.pending, id)
		case !now.Before(p.next):
			out = append(out, due{p.msg, p.to})
			p.interval = min(2*p.interval, uasT2)
			p.next = now.Add(p.interval)
		}
	}
	u.mu.Unlock()
	for _, d := range out {
		u.send(d.msg, d.to)
	}
}

// callIDs returns a copy of the Call-IDs seen.
func (u *clusterUAS) callIDs() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := make(map[string]bool, len(u.calls))
	for id := range u.calls {
		m[id] = true
	}
	return m
}

// counts returns the requests received per method and the OPTIONS
// answered.
func (u *clusterUAS) counts() (invites, acks, byes, probes int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.byKind[parser.MethodINVITE], u.byKind[parser.MethodACK], u.byKind[parser.MethodBYE], u.probes
}

// sources returns how many requests (but OPTIONS) came from each address.
func (u *clusterUAS) sources() map[netip.AddrPort]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := make(map[netip.AddrPort]int, len(u.senders))
	for a, n := range u.senders {
		m[a] = n
	}
	return m
}
