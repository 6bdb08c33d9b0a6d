package balancer_test

import (
	"fmt"
	"net/netip"

	"github.com/viaduct-sip/viaduct/balancer"
)

func Example() {
	pool, err := balancer.NewPool([]balancer.Target{
		{Addr: netip.MustParseAddrPort("10.0.0.1:5060"), Transport: "udp", Weight: 2},
		{Addr: netip.MustParseAddrPort("10.0.0.2:5060"), Transport: "udp", Weight: 1},
		{ID: "backup", Addr: netip.MustParseAddrPort("[2001:db8::9]:5060"), Transport: "tcp", Weight: 1, Priority: 1},
	}, balancer.Options{})
	if err != nil {
		panic(err)
	}
	policy := balancer.DefaultPolicy()
	fmt.Println(policy.For([]byte("INVITE")), policy.For([]byte("REGISTER")))

	// Per request: the fast path extracts the key the rule names.
	callID := []byte("a84b4c76e66710@pc33.atlanta.example.com")
	t, _ := pool.Table().Pick(balancer.HashKey(callID), false)
	first := t.ID

	// A health check takes the first group down: traffic fails over.
	_ = pool.SetHealth("udp:10.0.0.1:5060", balancer.Down)
	_ = pool.SetHealth("udp:10.0.0.2:5060", balancer.Down)
	t, _ = pool.Table().Pick(balancer.HashKey(callID), false)
	fmt.Println(t.ID, t.Addr, t.Transport)

	// When it returns, the call's key maps where it did before.
	_ = pool.SetHealth("udp:10.0.0.1:5060", balancer.Up)
	_ = pool.SetHealth("udp:10.0.0.2:5060", balancer.Up)
	t, _ = pool.Table().Pick(balancer.HashKey(callID), false)
	fmt.Println(t.ID == first)
	// Output:
	// call-id to-aor
	// backup [2001:db8::9]:5060 tcp
	// true
}
