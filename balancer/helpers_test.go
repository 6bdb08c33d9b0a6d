package balancer

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"testing"
)

// numKeys is the number of random keys of the property tests.
const numKeys = 1_000_000

// tgt returns target i: udp 10.0.x.y:5060 with the given weight and priority.
func tgt(i, weight, prio int) Target {
	return Target{
		Addr:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060),
		Transport: "udp",
		Weight:    weight,
		Priority:  prio,
	}
}

// weighted returns targets 0..len(weights)-1 in priority group 0.
func weighted(weights ...int) []Target {
	ts := make([]Target, len(weights))
	for i, w := range weights {
		ts[i] = tgt(i, w, 0)
	}
	return ts
}

// equalWeights returns n targets of weight 1.
func equalWeights(n int) []Target {
	ws := make([]int, n)
	for i := range ws {
		ws[i] = 1
	}
	return weighted(ws...)
}

// testKeys returns n hashed Call-ID-like keys from a fixed seed.
//
//go:norace
func testKeys(n int, seed uint64) []uint64 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	keys := make([]uint64, n)
	buf := make([]byte, 0, 64)
	for i := range keys {
		buf = strconv.AppendUint(buf[:0], rng.Uint64(), 36)
		buf = append(buf, '-')
		buf = strconv.AppendUint(buf, uint64(rng.Uint32()), 16)
		buf = append(buf, "@client.example.org"...)
		keys[i] = HashKey(buf)
	}
	return keys
}

// keys1M returns the 1e6 test keys, generated once per test binary.
var keys1M = sync.OnceValue(func() []uint64 { return testKeys(numKeys, 42) })

// idOf returns the ID of the target picked for h, or "" if none.
func idOf(tab *Table, h uint64, inDialog bool) string {
	t, ok := tab.Pick(h, inDialog)
	if !ok {
		return ""
	}
	return t.ID
}

// keyOwners returns the ID hash of the target picked for each key (0: none).
func keyOwners(tab *Table, keys []uint64, inDialog bool) []uint64 {
	return ownersOf(tab, keys, inDialog, false)
}

// bucketOwners returns the ID hash of the owner of every bucket: the whole
// mapping, since Pick depends on the key hash only through its bucket.
func bucketOwners(tab *Table, inDialog bool) []uint64 {
	return ownersOf(tab, nil, inDialog, true)
}

// ownersOf maps keys (or, with all, the first key of every bucket) to the
// ID hash of their target. It reads the table the way Pick does, without
// calling it: the property tests look up ~10^7 keys, and the race detector
// made that dominate `go test -race`. TestOwnersOfMatchesPick proves the
// two agree on every kind of table.
//
//go:norace
func ownersOf(tab *Table, keys []uint64, inDialog, all bool) []uint64 {
	lk := tab.sets[0]
	if inDialog {
		lk = tab.sets[1]
	}
	n := len(keys)
	if all {
		n = NumBuckets
	}
	out := make([]uint64, n)
	for i := range out {
		var h uint64
		if all {
			h = uint64(i) << bucketShift
		} else {
			h = keys[i]
		}
		idx := -1
		switch {
		case lk.own.own8 != nil:
			idx = int(lk.own.own8[h>>bucketShift])
		case lk.own.own16 != nil:
			idx = int(lk.own.own16[h>>bucketShift])
		case lk.single >= 0:
			idx = lk.single
		case len(lk.rr) > 0:
			hi, _ := bits.Mul64(h, uint64(len(lk.rr)))
			idx = int(lk.rr[hi])
		}
		if idx >= 0 {
			out[i] = tab.targets[idx].idHash
		}
	}
	return out
}

// countByID counts the keys per owner ID hash.
//
//go:norace
func countByID(owners []uint64) map[uint64]int {
	m := make(map[uint64]int)
	for _, o := range owners {
		m[o]++
	}
	return m
}

func mustPool(t testing.TB, ts []Target, opts Options) *Pool {
	t.Helper()
	p, err := NewPool(ts, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ids returns the normalised IDs of ts, in order.
func ids(t testing.TB, ts []Target) []string {
	t.Helper()
	n, err := normalizeTargets(ts)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(n))
	for i := range n {
		out[i] = n[i].ID
	}
	return out
}

func idHash(id string) uint64 { return HashKeyString(id) }

// diffCount returns how many entries of a and b differ.
//
//go:norace
func diffCount(a, b []uint64) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
