package fastpath

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/balancer"
)

// Picker chooses the upstream for a request that is balanced by Call-ID.
// keyHash is balancer.HashKey of the Call-ID value (xxhash64); inDialog
// reports whether the request carries a To tag (a request inside an existing
// dialog, which a draining upstream still accepts). Pick must return the
// same upstream for the same key while the upstream set is unchanged, must
// not allocate, and is called concurrently by every worker. ok is false when
// no upstream is available; the request is then answered 503.
//
// The engine's default is a balancer.Pool built from Config.Upstreams (see
// PoolPicker); Config.Picker replaces it.
type Picker interface {
	Pick(keyHash uint64, inDialog bool) (upstream netip.AddrPort, ok bool)
}

// PoolPicker adapts a balancer.Pool to Picker: every Pick loads the pool's
// current table (one atomic load) and picks from it by consistent hashing,
// so health and admin changes made on the pool apply to the next request.
func PoolPicker(p *balancer.Pool) Picker { return poolPicker{p} }

type poolPicker struct{ p *balancer.Pool }

// Pick implements Picker.
func (pp poolPicker) Pick(key uint64, inDialog bool) (netip.AddrPort, bool) {
	t, ok := pp.p.Table().Pick(key, inDialog)
	if !ok {
		return netip.AddrPort{}, false
	}
	return t.Addr, true
}

// newPool builds the default pool: every upstream with weight 1, up and
// enabled.
func newPool(ups []netip.AddrPort) (*balancer.Pool, error) {
	ts := make([]balancer.Target, len(ups))
	for i, u := range ups {
		ts[i] = balancer.Target{Addr: u, Transport: "udp", Weight: balancer.DefaultWeight}
	}
	return balancer.NewPool(ts, balancer.Options{})
}
