package fastpath

import (
	"fmt"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
)

// Every upstream down: in panic mode (the pool's default) new calls are
// still forwarded, over every upstream, and an in-dialog request follows
// its dialog to the upstream it names, down as it is; with
// balancer.AllDownReject they get 503.
func TestAllUpstreamsDown(t *testing.T) {
	e, w := newTestWorker(t, nil)
	for _, u := range []string{balancer.DefaultID("udp", up1), balancer.DefaultID("udp", up2)} {
		if err := e.Pool().SetHealth(u, balancer.Down); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		a, o := handle(t, w, replace(invite3261, "a84b4c76e66710@pc33.atlanta.example.com", fmt.Sprintf("panic-%d@client", i)), alice)
		if a != ActionForward {
			t.Fatalf("INVITE %d in panic mode: %v (%v)", i, a, o.Drop)
		}
		seen[o.To.String()]++
	}
	if len(seen) != 2 {
		t.Errorf("panic mode: new calls went to %v, want both upstreams", seen)
	}
	bye := replace(replace(ack3261, "ACK sip:bob@biloxi.example.com", "BYE sip:bob@192.0.2.22:5060"), "314159 ACK", "314160 BYE")
	for i := 0; i < 20; i++ {
		b := replace(bye, "a84b4c76e66710@pc33.atlanta.example.com", fmt.Sprintf("panic-bye-%d@client", i))
		if a, o := handle(t, w, b, alice); a != ActionForward || o.To != up2 {
			t.Errorf("BYE to up2's Contact in panic mode: %v to %v, want %v", a, o.To, up2)
		}
	}
	if err := e.Pool().SetAllDown(balancer.AllDownReject); err != nil {
		t.Fatal(err)
	}
	if a, o := handle(t, w, invite3261, alice); a != ActionReply || o.Drop != DropNoUpstream {
		t.Errorf("INVITE with every upstream down and all_down reject: %v (%v), want a 503", a, o.Drop)
	}
}
