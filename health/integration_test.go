package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// The fast path and the balancer satisfy the checker's interfaces as they
// are, so cmd/viaduct wires them without adapters.
var (
	_ Transport = (*fastpath.Engine)(nil)
	_ StateSink = (*balancer.Pool)(nil)
)

// proxy is the in-process wiring of cmd/viaduct: a fast path engine on
// loopback, its balancer pool, and a health checker probing through the
// engine's socket and steering the pool.
type proxy struct {
	eng  *fastpath.Engine
	chk  *Checker
	addr netip.AddrPort
}

func startProxy(t *testing.T, s Settings, rs ...*responder) *proxy {
	t.Helper()
	cfg := fastpath.Config{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Transport: udp.Bind(udp.ServerConfig{}, nil), Workers: 2}
	for _, r := range rs {
		cfg.Upstreams = append(cfg.Upstreams, r.addr)
	}
	eng, err := fastpath.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := Config{Settings: s}
	for _, r := range rs {
		hc.Targets = append(hc.Targets, Target{Addr: r.addr}) // default IDs, as the engine's pool
	}
	chk, err := New(hc, eng, eng.Pool(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eng.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) { chk.HandleResponse(m, from) })
	if err := chk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		chk.Close()
		eng.Close()
	})
	return &proxy{eng: eng, chk: chk, addr: eng.ListenAddrs()[0]}
}

func id(r *responder) string { return balancer.DefaultID("udp", r.addr) }

// client is a UAC on loopback sending through the proxy.
type client struct {
	t    *testing.T
	conn *net.UDPConn
	addr netip.AddrPort
	to   netip.AddrPort
	cseq int
	buf  []byte
}

func newClient(t *testing.T, proxy netip.AddrPort) *client {
	c, addr := testenv.ListenUDP(t)
	return &client{t: t, conn: c, addr: addr, to: proxy, buf: make([]byte, 65536)}
}

// request sends method for callID (in-dialog when toTag is set) and
// returns the final response's code and To tag, or 0 after a timeout.
func (c *client) request(method, callID, toTag string) (code int, tag string) {
	c.t.Helper()
	c.cseq++
	to := "<sip:svc@example.net>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	msg := fmt.Sprintf("%s sip:svc@example.net SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-cl-%d;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:alice@example.net>;tag=a1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
		method, c.addr, c.cseq, to, callID, c.cseq, method)
	if _, err := c.conn.WriteToUDPAddrPort([]byte(msg), c.to); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	var m parser.Message
	for {
		c.conn.SetReadDeadline(deadline)
		n, _, err := c.conn.ReadFromUDPAddrPort(c.buf)
		if err != nil {
			return 0, ""
		}
		if parser.Parse(c.buf[:n], &m) != nil || m.IsRequest() || string(m.CallID()) != callID {
			continue
		}
		if num, _ := m.CSeq(); int(num) != c.cseq || m.StatusCode() < 200 {
			continue
		}
		to, _ := m.To()
		return m.StatusCode(), string(to.Tag)
	}
}

// counts returns how many requests of method for callID each responder
// has received.
func counts(callID, method string, rs []*responder) map[*responder]int {
	t := map[*responder]int{}
	for _, r := range rs {
		t[r] = len(filter(r.got(callID), method))
	}
	return t
}

func filter(ms []string, method string) []string {
	var out []string
	for _, m := range ms {
		if m == method {
			out = append(out, m)
		}
	}
	return out
}

// send makes a request through the proxy, requires a 200 and returns the
// responder that got it.
func send(t *testing.T, cl *client, rs []*responder, method, callID, toTag string) (*responder, string) {
	t.Helper()
	before := counts(callID, method, rs)
	code, tag := cl.request(method, callID, toTag)
	if code != 200 {
		t.Fatalf("%s %s: status %d", method, callID, code)
	}
	var got *responder
	for _, r := range rs {
		if len(filter(r.got(callID), method)) > before[r] {
			if got != nil {
				t.Fatalf("%s %s reached both %s and %s", method, callID, got.name, r.name)
			}
			got = r
		}
	}
	if got == nil {
		t.Fatalf("%s %s answered 200 but no responder saw it", method, callID)
	}
	return got, tag
}

func TestIntegrationFailoverAndRecovery(t *testing.T) {
	a, b, c := newResponder(t, "a"), newResponder(t, "b"), newResponder(t, "c")
	rs := []*responder{a, b, c}
	px := startProxy(t, fast, rs...)
	p := px.chk.Status()[0].Probe
	pool := px.eng.Pool()
	cl := newClient(t, px.addr)
	waitFor(t, 2*time.Second, "first probes answered", probedOK(px.chk, 1))

	const n = 60
	callID := func(i int) string { return fmt.Sprintf("call-%d@client", i) }
	owner := make([]*responder, n)
	per := map[*responder]int{}
	for i := range owner {
		owner[i], _ = send(t, cl, rs, "INVITE", callID(i), "")
		per[owner[i]]++
	}
	for _, r := range rs {
		if per[r] == 0 {
			t.Fatalf("%s got none of %d calls", r.name, n)
		}
	}
	t.Logf("calls per upstream: a %d, b %d, c %d", per[a], per[b], per[c])

	// b dies: marked down within the bound; its calls move, no other does.
	t0 := time.Now()
	b.mode.Store(modeSilent)
	waitFor(t, p.DetectionBound()+slack, "b down in the pool", func() bool { return poolHealth(t, pool, id(b)) == balancer.Down })
	t.Logf("b down after %v (bound %v)", time.Since(t0), p.DetectionBound())
	for i := range owner {
		got, _ := send(t, cl, rs, "INVITE", callID(i), "")
		switch {
		case owner[i] != b && got != owner[i]:
			t.Errorf("call %d moved from %s to %s although %s is alive", i, owner[i].name, got.name, owner[i].name)
		case owner[i] == b && got == b:
			t.Errorf("call %d still reached dead b", i)
		}
	}

	// b comes back: marked up within the bound, and its calls return.
	t1 := time.Now()
	b.mode.Store(modeAnswer)
	waitFor(t, p.RecoveryBound()+slack, "b up in the pool", func() bool { return poolHealth(t, pool, id(b)) == balancer.Up })
	t.Logf("b up after %v (bound %v)", time.Since(t1), p.RecoveryBound())
	for i := range owner {
		if got, _ := send(t, cl, rs, "INVITE", callID(i), ""); got != owner[i] {
			t.Errorf("after recovery call %d reached %s, want %s", i, got.name, owner[i].name)
		}
	}

	// c answers its probes 503: down, its calls move, then back.
	c.optionsCode.Store(503)
	waitFor(t, p.DetectionBound()+slack, "c down in the pool", func() bool { return poolHealth(t, pool, id(c)) == balancer.Down })
	if s, _ := px.chk.StatusOf(id(c)); s.LastCode != 503 {
		t.Errorf("c down for %q", s.HealthReason)
	}
	for i := range owner {
		got, _ := send(t, cl, rs, "INVITE", callID(i), "")
		if (owner[i] == c) == (got == owner[i]) {
			t.Errorf("c down: call %d of %s reached %s", i, owner[i].name, got.name)
		}
	}
	c.optionsCode.Store(200)
	waitFor(t, p.RecoveryBound()+slack, "c up in the pool", func() bool { return poolHealth(t, pool, id(c)) == balancer.Up })
	for i := range owner {
		if got, _ := send(t, cl, rs, "INVITE", callID(i), ""); got != owner[i] {
			t.Errorf("after c's recovery call %d reached %s, want %s", i, got.name, owner[i].name)
		}
	}
}

func TestIntegrationDrain(t *testing.T) {
	a, b, c := newResponder(t, "a"), newResponder(t, "b"), newResponder(t, "c")
	rs := []*responder{a, b, c}
	px := startProxy(t, fast, rs...)
	cl := newClient(t, px.addr)
	waitFor(t, 2*time.Second, "first probes answered", probedOK(px.chk, 1))

	// Calls set up before the drain, with their dialogs' To tags.
	const n = 60
	type dialog struct {
		id, tag string
		owner   *responder
	}
	var ds []dialog
	onA := 0
	for i := 0; i < n; i++ {
		d := dialog{id: fmt.Sprintf("early-%d@client", i)}
		d.owner, d.tag = send(t, cl, rs, "INVITE", d.id, "")
		if d.tag == "" {
			t.Fatalf("no To tag in the 200")
		}
		if d.owner == a {
			onA++
		}
		ds = append(ds, d)
	}
	if onA == 0 {
		t.Fatalf("a got none of %d calls", n)
	}

	if err := px.chk.SetAdmin(id(a), balancer.Draining, "test"); err != nil {
		t.Fatal(err)
	}
	// No new call reaches a draining target.
	for i := 0; i < n; i++ {
		if got, _ := send(t, cl, rs, "INVITE", fmt.Sprintf("late-%d@client", i), ""); got == a {
			t.Errorf("new call %d reached draining a", i)
		}
	}
	// In-dialog requests of every call keep reaching their server: a
	// re-INVITE, then the BYE.
	for _, d := range ds {
		if got, _ := send(t, cl, rs, "INVITE", d.id, d.tag); got != d.owner {
			t.Errorf("re-INVITE of %s reached %s, want %s", d.id, got.name, d.owner.name)
		}
		if got, _ := send(t, cl, rs, "BYE", d.id, d.tag); got != d.owner {
			t.Errorf("BYE of %s reached %s, want %s", d.id, got.name, d.owner.name)
		}
	}
	// Disabled: not even in-dialog requests.
	if err := px.chk.SetAdmin(id(a), balancer.Disabled, "test"); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.owner != a {
			continue
		}
		if got, _ := send(t, cl, rs, "BYE", d.id, d.tag); got == a {
			t.Errorf("BYE of %s reached disabled a", d.id)
		}
	}
	// Enabled again: a takes its share of new calls.
	if err := px.chk.SetAdmin(id(a), balancer.Enabled, "test"); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if got, _ := send(t, cl, rs, "INVITE", d.id, ""); got != d.owner {
			t.Errorf("after enabling, %s reached %s, want %s", d.id, got.name, d.owner.name)
		}
	}
	if s, _ := px.chk.StatusOf(id(a)); s.Health != balancer.Up || s.ProbesOK == 0 {
		t.Errorf("a: health %v, %d probes answered", s.Health, s.ProbesOK)
	}
}

// responseObserver is the fast path hook the passive check needs (see the
// issue #5 report): called for every response from a next hop.
type responseObserver interface {
	SetResponseObserver(func(from netip.AddrPort, status int))
}

func TestIntegrationPassive503(t *testing.T) {
	a, b, c := newResponder(t, "a"), newResponder(t, "b"), newResponder(t, "c")
	rs := []*responder{a, b, c}
	s := fast.Merge(Settings{Passive503: &PassiveSettings{Count: 5, Window: time.Second}})
	px := startProxy(t, s, rs...)
	obs, ok := any(px.eng).(responseObserver)
	if !ok {
		// TODO(fastpath): Engine.SetResponseObserver, see the issue #5 report.
		t.Skip("fastpath.Engine has no SetResponseObserver yet: the passive check cannot be wired")
	}
	obs.SetResponseObserver(px.chk.ObserveResponse)
	p := px.chk.Status()[0].Probe
	pool := px.eng.Pool()
	cl := newClient(t, px.addr)
	waitFor(t, 2*time.Second, "first probes answered", probedOK(px.chk, 1))

	// c answers calls 503 (but its probes 200): after 5 of them it is
	// down, and its calls go elsewhere.
	c.requestCode.Store(503)
	var onC []string
	for i := 0; len(onC) < 5 && i < 200; i++ {
		id := fmt.Sprintf("p-%d@client", i)
		before := len(c.got(id))
		code, _ := cl.request("INVITE", id, "")
		if len(c.got(id)) > before {
			if code != 503 {
				t.Fatalf("c answered %d", code)
			}
			onC = append(onC, id)
		}
	}
	if len(onC) < 5 {
		t.Fatalf("only %d calls reached c", len(onC))
	}
	waitFor(t, slack, "c down in the pool", func() bool { return poolHealth(t, pool, id(c)) == balancer.Down })
	if s, _ := px.chk.StatusOf(id(c)); s.Passive503 != 1 {
		t.Errorf("c: %d passive bursts, reason %q", s.Passive503, s.HealthReason)
	}
	c.requestCode.Store(200)
	for _, id := range onC {
		if got, _ := send(t, cl, rs, "INVITE", id, ""); got == c {
			t.Errorf("call %s reached c while down", id)
		}
	}
	// Probes bring c back, with its calls.
	waitFor(t, p.RecoveryBound()+slack, "c up in the pool", func() bool { return poolHealth(t, pool, id(c)) == balancer.Up })
	for _, id := range onC {
		if got, _ := send(t, cl, rs, "INVITE", id, ""); got != c {
			t.Errorf("after recovery call %s reached %s, want c", id, got.name)
		}
	}
}

// An upstream that answers calls but not OPTIONS (as SIPp's uas scenario)
// stays up while calls flow through the fast path to it: the responses the
// fast path relays are its evidence of life. When the calls stop, its
// probes alone decide, and it goes down.
func TestIntegrationTrafficIsEvidenceOfLife(t *testing.T) {
	a, b := newResponder(t, "a"), newResponder(t, "b")
	a.mode.Store(modeNoOptions)
	rs := []*responder{a, b}
	px := startProxy(t, fast, rs...)
	px.eng.SetResponseObserver(px.chk.ObserveResponse)
	p := px.chk.Status()[0].Probe
	pool := px.eng.Pool()
	cl := newClient(t, px.addr)
	start := time.Now()
	onA := 0
	for i := 0; time.Since(start) < 10*p.Interval || onA < 20; i++ {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("only %d of %d calls reached a", onA, i)
		}
		if got, _ := send(t, cl, rs, "INVITE", fmt.Sprintf("e-%d@client", i), ""); got == a {
			onA++
		}
		time.Sleep(2 * time.Millisecond)
	}
	st, _ := px.chk.StatusOf(id(a))
	t.Logf("a after %v of calls: %d rounds passed on traffic, %d probes sent, %d timeouts", time.Since(start), st.TrafficOK, st.ProbesSent, st.ProbeTimeouts)
	if poolHealth(t, pool, id(a)) != balancer.Up || st.TrafficOK == 0 || st.ProbesOK != 0 {
		t.Fatalf("a while carrying calls: %v (%s), %d rounds passed on traffic, %d probes answered", st.Health, st.HealthReason, st.TrafficOK, st.ProbesOK)
	}
	waitFor(t, p.DetectionBound()+slack, "a down once its calls stop", func() bool { return poolHealth(t, pool, id(a)) == balancer.Down })
	if poolHealth(t, pool, id(b)) != balancer.Up {
		t.Errorf("b (answering OPTIONS, no calls needed) is not up")
	}
}
