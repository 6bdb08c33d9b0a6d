package fastpath

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
)

// upCounts returns a worker's per-upstream counts by ID hash.
func upCounts(w *Worker) map[uint64]uint64 {
	m := map[uint64]uint64{}
	for _, c := range w.up.appendTo(nil) {
		m[c.IDHash] += c.Count
	}
	return m
}

// The table keeps every count across growth, and a concurrent reader sees
// counts that only grow (run with -race).
func TestUpCountersGrow(t *testing.T) {
	u := newUpCounters(1) // 16 slots: grows at 9 keys
	const keys = 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := map[uint64]uint64{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range u.appendTo(nil) {
				if c.Count < last[c.IDHash] {
					t.Errorf("count of %x went down from %d to %d", c.IDHash, last[c.IDHash], c.Count)
					return
				}
				last[c.IDHash] = c.Count
			}
		}
	}()
	// Key k is counted k+1 times; keys are multiples of 1024 (same low
	// bits: every insertion probes) plus the ID hash 0.
	for round := 0; round < keys; round++ {
		for k := round; k < keys; k++ {
			u.inc(uint64(k) << 10)
		}
	}
	close(stop)
	wg.Wait()
	got := map[uint64]uint64{}
	for _, c := range u.appendTo(nil) {
		got[c.IDHash] = c.Count
	}
	if len(got) != keys {
		t.Fatalf("%d keys, want %d", len(got), keys)
	}
	for k := 0; k < keys; k++ {
		h := uint64(k) << 10
		if h == 0 {
			h = 1 // ID hash 0 is stored as 1
		}
		if got[h] != uint64(k+1) {
			t.Errorf("key %x: %d, want %d", h, got[h], k+1)
		}
	}
	if n := len(u.tab.Load().slots); n < 2*keys {
		t.Errorf("%d slots for %d keys: the table must stay at most half full", n, keys)
	}
}

// Balanced requests are counted per target ID; requests routed by Route
// from an upstream are not.
func TestUpstreamForwardedPerTarget(t *testing.T) {
	up3 := netip.MustParseAddrPort("192.0.2.23:5060")
	e, w := newTestWorker(t, weightedPool(up3))
	seen := invites(t, w, 1000, 7)
	// A BYE routed by its Route header from an upstream: forwarded, not
	// balanced.
	rt := routedByeFromUpstream
	if a := w.Handle(rt, udpFrom(up1), newOutput(e)); a != ActionForward {
		t.Fatalf("routed BYE: %v", a)
	}
	got := upCounts(w)
	tab := e.Pool().Table()
	for _, id := range []string{"a", "b", "standby"} {
		tg, _ := tab.ByID(id)
		if got[tg.IDHash()] != uint64(seen[tg.Addr]) {
			t.Errorf("%s: counted %d, sent %d", id, got[tg.IDHash()], seen[tg.Addr])
		}
	}
	if len(got) != 2 || w.Stats().RequestsForwarded != 1001 {
		t.Errorf("counts %v (the standby got nothing and must not appear), forwarded %d", got, w.Stats().RequestsForwarded)
	}
}

// A Config.Picker hands out addresses, not targets: nothing is counted.
func TestUpstreamForwardedWithPicker(t *testing.T) {
	p, err := balancer.NewPool([]balancer.Target{{Addr: up1, Transport: "udp", Weight: 1}}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, w := newTestWorker(t, func(c *Config) { c.Picker = PoolPicker(p) })
	invites(t, w, 10, 1)
	if got := upCounts(w); len(got) != 0 {
		t.Errorf("counted %v with a Picker", got)
	}
}

// Over real sockets: the engine sums its workers' counts per target.
func TestEngineAppendUpstreamForwarded(t *testing.T) {
	u1, u2 := newResponder(t), newResponder(t)
	e := startEngine(t, u1.addr, u2.addr)
	proxy := e.ListenAddrs()[0]
	ruri := "sip:service@" + proxy.String()
	const calls = 10
	for i := 0; i < calls; i++ {
		// Clients on different ports: the workers both get traffic.
		c := newClient(t, proxy)
		id := fmt.Sprintf("call-%d@test", i)
		c.send(c.request("INVITE", ruri, id, 1, fmt.Sprintf("inv%d", i), ""))
		c.expect(200)
		c.send(c.request("BYE", ruri, id, 2, fmt.Sprintf("bye%d", i), "uas1"))
		c.expect(200)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(u1.requests())+len(u2.requests()) < 2*calls && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := map[uint64]uint64{}
	for _, c := range e.AppendUpstreamForwarded(nil) {
		if _, dup := got[c.IDHash]; dup {
			t.Errorf("ID hash %x reported twice", c.IDHash)
		}
		got[c.IDHash] = c.Count
	}
	tab := e.Pool().Table()
	var sum uint64
	for i, r := range []*responder{u1, u2} {
		tg := tab.Target(i)
		if got[tg.IDHash()] != uint64(len(r.requests())) {
			t.Errorf("%s: counted %d, received %d", tg.ID, got[tg.IDHash()], len(r.requests()))
		}
		sum += got[tg.IDHash()]
	}
	if sum != 2*calls {
		t.Errorf("counted %d requests, want %d", sum, 2*calls)
	}
	// Every INVITE got 100, 180 and 200 and every BYE 200 from the
	// upstream that took it, and the client got them all (expect): each
	// target's classes follow from the requests it received.
	resp := map[uint64][7]uint64{}
	for _, r := range e.AppendUpstreamResponses(nil) {
		if _, dup := resp[r.IDHash]; dup {
			t.Errorf("ID hash %x reported twice", r.IDHash)
		}
		resp[r.IDHash] = r.ByClass
	}
	var all [7]uint64
	for i, r := range []*responder{u1, u2} {
		var inv, bye uint64
		for _, req := range r.requests() {
			switch {
			case strings.HasPrefix(req, "INVITE "):
				inv++
			case strings.HasPrefix(req, "BYE "):
				bye++
			}
		}
		tg := tab.Target(i)
		if want := [7]uint64{1: 2 * inv, 2: inv + bye}; resp[tg.IDHash()] != want {
			t.Errorf("%s: responses by class %v, want %v", tg.ID, resp[tg.IDHash()], want)
		}
		for c, n := range resp[tg.IDHash()] {
			all[c] += n
		}
	}
	if s := e.Stats(); all != s.ResponsesForwarded {
		t.Errorf("per-upstream responses add up to %v, the engine relayed %v", all, s.ResponsesForwarded)
	}
}

// respCounts returns a worker's per-upstream response counts by ID hash.
func respCounts(w *Worker) map[uint64][7]uint64 {
	m := map[uint64][7]uint64{}
	for _, r := range w.up.appendResponsesTo(nil) {
		m[r.IDHash] = r.ByClass
	}
	return m
}

// Relayed responses are counted per upstream by status class, the upstream
// being the one whose address the response comes from. Responses from an
// address that is no upstream, dropped responses and responses to
// Viaduct's own requests are not counted.
func TestUpstreamResponsesByClass(t *testing.T) {
	e, w := newTestWorker(t, nil)
	_, inv := handle(t, w, invite3261, alice)
	if inv.To != up1 && inv.To != up2 {
		t.Fatalf("INVITE went to %v", inv.To)
	}
	other := up2
	if inv.To == up2 {
		other = up1
	}
	out := newOutput(e)
	relay := func(status string, from netip.AddrPort, want Action) {
		t.Helper()
		if a := w.Handle(respond(t, inv.Buf, status, "a6c85cf"), udpFrom(from), out); a != want {
			t.Fatalf("%s from %v: %v (%v), want %v", status, from, a, out.Drop, want)
		}
	}
	for _, s := range []string{"100 Trying", "180 Ringing", "183 Session Progress", "200 OK", "302 Moved", "486 Busy Here", "503 Service Unavailable", "503 Service Unavailable", "603 Decline"} {
		relay(s, inv.To, ActionForward)
	}
	relay("500 Server Internal Error", other, ActionForward) // the MAC is in the Via, not the source: relayed, counted for other
	relay("200 OK", alice, ActionForward)                    // no upstream there: relayed, not counted per upstream
	forged := replace(respond(t, inv.Buf, "503 Service Unavailable", "x"), "192.0.2.10:5060", "192.0.2.11:5060")
	if a := w.Handle(forged, udpFrom(inv.To), out); a != ActionDrop {
		t.Fatalf("forged 503: %v", a)
	}

	tab := e.Pool().Table()
	to, _ := tab.ByAddr(inv.To)
	ot, _ := tab.ByAddr(other)
	got := respCounts(w)
	if want := [7]uint64{0, 3, 1, 1, 1, 2, 1}; got[to.IDHash()] != want {
		t.Errorf("%s: %v, want %v", to.ID, got[to.IDHash()], want)
	}
	if want := [7]uint64{5: 1}; got[ot.IDHash()] != want {
		t.Errorf("%s: %v, want %v", ot.ID, got[ot.IDHash()], want)
	}
	if len(got) != 2 {
		t.Errorf("counted for %d targets, want 2: %v", len(got), got)
	}
	if s := w.Stats(); s.ResponsesForwarded != [7]uint64{0, 3, 2, 1, 1, 3, 1} {
		t.Errorf("ResponsesForwarded %v: the per-upstream counts must not replace it", s.ResponsesForwarded)
	}
	// Only the INVITE was balanced: a target that only answered has no
	// request count.
	if fwd := upCounts(w); len(fwd) != 1 || fwd[to.IDHash()] != 1 {
		t.Errorf("requests forwarded per target %v, want only %s: 1", fwd, to.ID)
	}
}

// With a Config.Picker there is no pool: nothing is counted per upstream.
func TestUpstreamResponsesWithPicker(t *testing.T) {
	p, err := balancer.NewPool([]balancer.Target{{Addr: up1, Transport: "udp", Weight: 1}}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, w := newTestWorker(t, func(c *Config) { c.Picker = PoolPicker(p) })
	_, inv := handle(t, w, invite3261, alice)
	if a := w.Handle(respond(t, inv.Buf, "503 Service Unavailable", "x"), udpFrom(up1), newOutput(e)); a != ActionForward {
		t.Fatalf("503: %v", a)
	}
	if got := respCounts(w); len(got) != 0 {
		t.Errorf("counted %v with a Picker", got)
	}
}

// Status codes outside 100..699 are not counted; the class counters of a
// target survive the table's growth.
func TestUpCountersResponses(t *testing.T) {
	u := newUpCounters(1)
	for _, s := range []int{0, 99, 700, 999} {
		u.incResponse(42, s)
	}
	if got := u.appendResponsesTo(nil); len(got) != 0 {
		t.Errorf("out-of-range status codes counted: %v", got)
	}
	u.incResponse(42, 503)
	u.incResponse(42, 199)
	for k := uint64(1); k <= 40; k++ { // grows the table several times
		u.inc(k << 10)
	}
	got := u.appendResponsesTo(nil)
	if len(got) != 1 || got[0].IDHash != 42 || got[0].ByClass != [7]uint64{1: 1, 5: 1} {
		t.Errorf("after growth: %v", got)
	}
	for _, c := range u.appendTo(nil) {
		if c.IDHash == 42 {
			t.Errorf("a target with responses only is listed with %d requests", c.Count)
		}
	}
}

// BenchmarkCountUpstreamResponse: what counting a relayed response per
// upstream adds to the response path, with responses from one upstream,
// alternating between two, and from an address that is no upstream.
func BenchmarkCountUpstreamResponse(b *testing.B) {
	for _, bc := range []struct {
		name string
		from [2]netip.AddrPort
	}{
		{"one", [2]netip.AddrPort{up1, up1}},
		{"two", [2]netip.AddrPort{up1, up2}},
		{"client", [2]netip.AddrPort{alice, alice}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, w := newTestWorker(b, nil)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				w.countUpstreamResponse(bc.from[i&1], 200)
			}
		})
	}
}

// The worker's cache of response sources follows the pool: after a reload
// gives an address to a target with another ID, its responses count for
// that target.
func TestUpstreamResponsesAfterReload(t *testing.T) {
	e, w := newTestWorker(t, func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{{ID: "old", Addr: up1}}
	})
	_, inv := handle(t, w, invite3261, alice)
	out := newOutput(e)
	resp := respond(t, inv.Buf, "503 Service Unavailable", "x")
	if a := w.Handle(resp, udpFrom(up1), out); a != ActionForward {
		t.Fatalf("503: %v", a)
	}
	if err := e.Update([]balancer.Target{{ID: "new", Addr: up1}}, nil); err != nil {
		t.Fatal(err)
	}
	if a := w.Handle(resp, udpFrom(up1), out); a != ActionForward {
		t.Fatalf("503 after the reload: %v", a)
	}
	got := respCounts(w)
	tab := e.Pool().Table()
	nt, _ := tab.ByID("new")
	old, err := balancer.NewPool([]balancer.Target{{ID: "old", Addr: up1, Transport: "udp", Weight: 1}}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ot, _ := old.Table().ByID("old")
	if got[ot.IDHash()][5] != 1 || got[nt.IDHash()][5] != 1 || len(got) != 2 {
		t.Errorf("5xx by target: %v; want 1 for old (%x) and 1 for new (%x)", got, ot.IDHash(), nt.IDHash())
	}
}
