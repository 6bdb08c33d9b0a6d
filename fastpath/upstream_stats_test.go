package fastpath

import (
	"fmt"
	"net/netip"
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
	e, w := newTestWorker(t, func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{
			{ID: "a", Addr: up1, Weight: 3},
			{ID: "b", Addr: up2},
			{ID: "standby", Addr: up3, Priority: 1},
		}
	})
	seen := invites(t, w, 1000, 7)
	// A BYE routed by its Route header from an upstream: forwarded, not
	// balanced.
	rt := msg(`BYE sip:192.0.2.10:5060;lr SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKstrict1;rport
Route: <sip:192.0.2.10;lr>, <sip:alice@198.51.100.7>
To: Alice <sip:alice@atlanta.example.com>;tag=1928301774
From: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 1 BYE`, "")
	if a := w.Handle(rt, up1, newOutput(e)); a != ActionForward {
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
}
