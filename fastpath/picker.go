package fastpath

import "net/netip"

// Picker chooses the upstream for a request that is balanced by Call-ID.
// keyHash is the xxhash64 of the Call-ID value; inDialog reports whether the
// request carries a To tag (a request inside an existing dialog, which a
// draining upstream still accepts). Pick must return the same upstream for
// the same key while the upstream set is unchanged, must not allocate, and
// is called concurrently by every worker. ok is false when no upstream is
// available; the request is then answered 503.
//
// balancer.Pool is meant to satisfy it; the engine's default is hashPicker.
type Picker interface {
	Pick(keyHash uint64, inDialog bool) (upstream netip.AddrPort, ok bool)
}

// hashPicker spreads Call-IDs over a fixed upstream list with jump
// consistent hashing (Lamping and Veach, 2014): stable for a given list, and
// adding an upstream at the end moves only 1/n of the calls.
type hashPicker struct{ ups []netip.AddrPort }

// Pick implements Picker.
func (p hashPicker) Pick(key uint64, _ bool) (netip.AddrPort, bool) {
	if len(p.ups) == 0 {
		return netip.AddrPort{}, false
	}
	return p.ups[jumpHash(key, len(p.ups))], true
}

// jumpHash maps key to a bucket in [0, n).
func jumpHash(key uint64, n int) int {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
