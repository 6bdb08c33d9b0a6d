package fastpath

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/transport"
)

func TestUpdate(t *testing.T) {
	up3 := netip.MustParseAddrPort("192.0.2.23:5060")
	e, w := newTestWorker(t, func(c *Config) {
		c.Upstreams = nil
		c.Targets = []balancer.Target{{ID: "a", Addr: up1}, {ID: "b", Addr: up2}}
	})
	if err := e.Pool().SetAdmin("b", balancer.Draining); err != nil {
		t.Fatal(err)
	}
	// A request from up3 with an IP Request-URI: up3 is not an upstream
	// yet, so the request is balanced (to a, b is draining).
	fromUp3 := request("MESSAGE", "sip:bob@198.51.100.7:5090", "<sip:bob@198.51.100.7>", "<sip:carol@example.com>", "m1@up3")
	if a, o := handle(t, w, fromUp3, up3); a != ActionForward || o.To != up1 {
		t.Fatalf("before: %v to %v; want forward to a", a, o.To)
	}
	before := e.Pool().Table().Version()

	// A bad update changes nothing.
	err := e.Update([]balancer.Target{{ID: "a", Addr: up1}, {ID: "c", Addr: up3, Weight: 5000}}, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "upstreams[1].weight" {
		t.Fatalf("bad weight: %v", err)
	}
	if err := e.Update(nil, nil); err == nil {
		t.Fatal("empty update accepted")
	}
	if e.Pool().Table().Version() != before || len(e.Targets()) != 2 || e.route.Load().isUpstream(up3, transport.UDP) {
		t.Fatal("a refused update changed the engine")
	}

	// c arrives, a gets weight 3, INVITE hashes the Request-URI user.
	keys := mustPolicy(t, map[string]string{"INVITE": "ruri-user"})
	err = e.Update([]balancer.Target{{ID: "a", Addr: up1, Weight: 3}, {ID: "b", Addr: up2}, {ID: "c", Addr: up3}}, keys)
	if err != nil {
		t.Fatal(err)
	}
	if a, o := handle(t, w, fromUp3, up3); a != ActionForward || o.To != netip.MustParseAddrPort("198.51.100.7:5090") {
		t.Fatalf("after: %v to %v; want routed by its Request-URI", a, o.To)
	}
	tab := e.Pool().Table()
	if b, _ := tab.ByID("b"); b.Admin != balancer.Draining {
		t.Errorf("b lost its admin state: %v", b.Admin)
	}
	if a, _ := tab.ByID("a"); a.Weight != 3 {
		t.Errorf("a weight %d", a.Weight)
	}
	if e.Keys() != keys {
		t.Error("Keys is not the updated policy")
	}
	// The same dialled user from 40 Call-IDs: one upstream.
	seen := map[netip.AddrPort]int{}
	for i := range 40 {
		req := request("INVITE", "sip:1234@example.com", "<sip:1234@example.com>", "<sip:alice@example.com>", fmt.Sprintf("call-%d@host", i))
		a, o := handle(t, w, req, alice)
		if a != ActionForward {
			t.Fatalf("INVITE: %v", a)
		}
		seen[o.To]++
	}
	if len(seen) != 1 {
		t.Errorf("ruri-user key after update: spread over %v", seen)
	}

	// a leaves: it is neither picked nor an upstream any more.
	if err := e.Update([]balancer.Target{{ID: "b", Addr: up2}, {ID: "c", Addr: up3}}, keys); err != nil {
		t.Fatal(err)
	}
	if e.route.Load().isUpstream(up1, transport.UDP) {
		t.Error("removed target still an upstream")
	}
	if got := invites(t, w, 200, 3); got[up1] != 0 || got[up3] != 200 {
		t.Errorf("after removing a: %v; want all on c (b drains)", got)
	}
}

// Updates while a worker handles requests: every request goes to an
// upstream of the configuration it saw (checked under -race for the
// publication), and none is refused.
func TestUpdateWhileHandling(t *testing.T) {
	up3 := netip.MustParseAddrPort("192.0.2.23:5060")
	e, w := newTestWorker(t, nil)
	cfgs := [][]balancer.Target{
		{{Addr: up1}, {Addr: up2}},
		{{Addr: up1, Weight: 5}, {Addr: up3, Priority: 1}},
		{{Addr: up3}, {Addr: up2, Weight: 2}},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	stop := make(chan struct{})
	handled := 0
	go func() {
		defer wg.Done()
		out := newOutput(e)
		const orig = "a84b4c76e66710@pc33.atlanta.example.com"
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("%039d", i)
			if a := w.Handle(replace(invite3261, orig, id), udpFrom(alice), out); a != ActionForward {
				t.Errorf("INVITE %d: %v (%v)", i, a, out.Drop)
				return
			}
			if a := out.To; a != up1 && a != up2 && a != up3 {
				t.Errorf("sent to %v", a)
				return
			}
			handled++
		}
	}()
	for i := range 15 {
		if err := e.Update(cfgs[i%len(cfgs)], nil); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests handled during 15 updates", handled)
}

func TestHandleAllocsAfterUpdate(t *testing.T) {
	up3 := netip.MustParseAddrPort("192.0.2.23:5060")
	e, w := newTestWorker(t, nil)
	if err := e.Update([]balancer.Target{{Addr: up3}, {Addr: up2}}, mustPolicy(t, map[string]string{"INVITE": "to-aor"})); err != nil {
		t.Fatal(err)
	}
	out := newOutput(e)
	w.Handle(invite3261, udpFrom(alice), out) // first sight of a target may grow its counter table
	if n := testing.AllocsPerRun(200, func() {
		if a := w.Handle(invite3261, udpFrom(alice), out); a != ActionForward {
			t.Fatalf("%v", a)
		}
	}); n != 0 {
		t.Errorf("Handle after Update: %v allocs", n)
	}
}
