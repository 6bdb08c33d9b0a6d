package balancer

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// TestBuildPhasesAgree: the enumeration phase and the direct evaluation
// phase compute the same function, so the split point does not change the
// table.
func TestBuildPhasesAgree(t *testing.T) {
	ts, err := normalizeTargets(weighted(1, 4, 2, 3, 1, 2, 4))
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := activeMembers(ts, false, false)
	build := func(at uint64) owners {
		own := newOwners(len(ts))
		(&builder{phase2At: at}).build(ms, own)
		return own
	}
	direct := build(^uint64(0)) // phase 2 only: plain per-bucket rendezvous
	def := build(0)             // the default split
	enum := build(1)            // phase 1 (level enumeration) to the last bucket
	for b := uint32(0); b < NumBuckets; b++ {
		if d := direct.get(b); d != def.get(b) || d != enum.get(b) {
			t.Fatalf("bucket %d: direct %d, default %d, enumeration %d", b, d, def.get(b), enum.get(b))
		}
	}
}

// TestDerivedEqualsFullBuild: lookups derived from the previous table
// (reuse, removal, addition, reweighting) equal full builds, along a random
// walk of state changes and reloads. Tables built from the same state must
// agree bit for bit whatever their history, or two instances would diverge.
func TestDerivedEqualsFullBuild(t *testing.T) {
	cases := []struct {
		n     int
		addBy int
	}{{12, 0}, {12, addByScan}, {12, addByEnum}, {300, 0}}
	for _, c := range cases {
		n := c.n
		t.Run(fmt.Sprintf("%d/%d", n, c.addBy), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(n), 9))
			ts := make([]Target, n)
			for i := range ts {
				ts[i] = tgt(i, 1+rng.IntN(3), rng.IntN(2))
			}
			id := ids(t, ts)
			p := mustPool(t, ts, Options{addBy: c.addBy})
			steps := 10
			if n > 100 || c.addBy != 0 {
				steps = 5
			}
			for s := 0; s < steps; s++ {
				i := rng.IntN(n)
				var what string
				var err error
				// Every step changes something; the kinds rotate so that
				// even short walks remove and add members.
				tg, _ := p.Table().ByID(id[i])
				switch s % 3 {
				case 0:
					h := 1 - tg.Health
					what, err = fmt.Sprintf("health %s %v", id[i], h), p.SetHealth(id[i], h)
				case 1:
					a := (tg.Admin + 1) % 3
					what, err = fmt.Sprintf("admin %s %v", id[i], a), p.SetAdmin(id[i], a)
				case 2:
					ts[i].Weight = ts[i].Weight%3 + 1
					what, err = fmt.Sprintf("reload, %s weight %d", id[i], ts[i].Weight), p.Update(ts)
				}
				if err != nil {
					t.Fatal(err)
				}
				cur := p.Table()
				full := mustPool(t, cur.Targets(), Options{noDerive: true}).Table()
				for _, inDialog := range []bool{false, true} {
					if d := diffCount(bucketOwners(cur, inDialog), bucketOwners(full, inDialog)); d != 0 {
						t.Fatalf("step %d (%s), inDialog=%v: derived table differs from full build in %d buckets", s, what, inDialog, d)
					}
				}
			}
		})
	}
}

// TestGoldenMapping pins the mapping of a fixed configuration. Two Viaduct
// versions that disagree here split calls during a rolling upgrade of an
// active/active pair: change the algorithm only deliberately, and say so in
// the release notes.
func TestGoldenMapping(t *testing.T) {
	ts := weighted(1, 2, 3, 1, 5)
	ts[1].ID = "edge-b"
	tab := mustPool(t, ts, Options{}).Table()
	d := xxhash.New()
	var buf [8]byte
	for _, o := range bucketOwners(tab, false) {
		for i := range buf {
			buf[i] = byte(o >> (8 * i))
		}
		d.Write(buf[:])
	}
	const want uint64 = 0xbad1dc2d629618ce
	if got := d.Sum64(); got != want {
		t.Errorf("mapping digest = %#x, want %#x: the consistent-hash mapping changed", got, want)
	}
	pins := map[string]string{
		"a84rni9klcd5-1@client": "udp:10.0.0.2:5060",
		"alice@example.com":     "udp:10.0.0.4:5060",
		"bob@example.com":       "udp:10.0.0.2:5060",
		"3c2b9d10-77@10.1.1.1":  "udp:10.0.0.4:5060",
		"carol@example.org":     "udp:10.0.0.4:5060",
		"x":                     "udp:10.0.0.3:5060",
	}
	for k, want := range pins {
		if got := idOf(tab, HashKeyString(k), false); got != want {
			t.Errorf("key %q -> %s, want %s", k, got, want)
		}
	}
}

// TestDeriveMatchesBuild: derive gives the full build's array for every
// kind of difference between parent and child member sets, with both ways
// of placing added members.
func TestDeriveMatchesBuild(t *testing.T) {
	lookupFor := func(ts []Target) (*lookup, []member) {
		t.Helper()
		norm, err := normalizeTargets(ts)
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := activeMembers(norm, false, false)
		lk := &lookup{members: ms, own: newOwners(len(norm))}
		for _, m := range ms {
			lk.weight += m.weight
		}
		lk.maxRank = (&builder{}).build(ms, lk.own)
		return lk, ms
	}
	base := func(n int) []Target {
		ts := make([]Target, n)
		for i := range ts {
			ts[i] = tgt(i, 1+i%3, 0)
		}
		return ts
	}
	withBackups := func(ts []Target, n int) []Target {
		for i := 0; i < n; i++ {
			ts = append(ts, tgt(1000+i, 1, 1))
		}
		return ts
	}
	cases := []struct {
		name   string
		parent []Target
		child  func([]Target) []Target
	}{
		{"remove one", base(20), func(ts []Target) []Target { return ts[1:] }},
		{"add one", base(20), func(ts []Target) []Target { return append(ts, tgt(50, 2, 0)) }},
		{"remove one add two", base(20), func(ts []Target) []Target {
			return append(ts[:19:19], tgt(60, 1, 0), tgt(61, 3, 0))
		}},
		{"reweight", base(20), func(ts []Target) []Target {
			ts[7].Weight = 3
			return ts
		}},
		{"same set reordered", base(20), func(ts []Target) []Target {
			return append(append([]Target(nil), ts[10:]...), ts[:10]...)
		}},
		// 20 active targets among 300: dropping inactive ones changes only
		// the width of the array.
		{"two-byte to one-byte", withBackups(base(20), 280), func(ts []Target) []Target { return ts[:250] }},
		{"two-byte add", base(300), func(ts []Target) []Target { return append(ts, tgt(400, 1, 0)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			par, _ := lookupFor(c.parent)
			child := c.child(append([]Target(nil), c.parent...))
			want, ms := lookupFor(child)
			for _, addBy := range []int{addByScan, addByEnum} {
				got, maxRank := derive(&builder{}, par, ms, len(child), addBy)
				if b, differ := firstDiff(got, want.own); differ {
					t.Fatalf("addBy %d: bucket %d: derived %d, built %d", addBy, b, got.get(b), want.own.get(b))
				}
				// The bound must hold: every owner ranks its bucket within it.
				if b, rank := worstOwnerRank(ms, got); rank > maxRank {
					t.Fatalf("addBy %d: bucket %d: its owner ranks it %d, above the bound %d", addBy, b, rank, maxRank)
				}
			}
		})
	}
}

// worstOwnerRank returns the bucket whose owner ranks it lowest, and that
// rank.
//
//go:norace
func worstOwnerRank(ms []member, own owners) (bucket, rank uint32) {
	reps := (&builder{}).makeReplicas(ms)
	span := make([][2]int, 1<<16)
	k := 0
	for _, m := range ms {
		span[m.idx] = [2]int{k, k + m.weight}
		k += m.weight
	}
	for b := uint32(0); b < NumBuckets; b++ {
		sp := span[own.get(b)]
		_, r := directBest(reps[sp[0]:sp[1]], b)
		if r >= rank {
			bucket, rank = b, r
		}
	}
	return bucket, rank
}

// firstDiff returns the first bucket where a and b differ.
//
//go:norace
func firstDiff(a, b owners) (uint32, bool) {
	for k := uint32(0); k < NumBuckets; k++ {
		if a.get(k) != b.get(k) {
			return k, true
		}
	}
	return 0, false
}
