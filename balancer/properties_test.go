package balancer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestSpreadMatchesWeights: with 1e6 random keys every target receives its
// weight share of the keys within ±5% (relative).
func TestSpreadMatchesWeights(t *testing.T) {
	alt := make([]int, 100)
	for i := range alt {
		alt[i] = 1 + i%2
	}
	cases := []struct {
		name    string
		weights []int
	}{
		{"2-equal", []int{1, 1}},
		{"2-weighted", []int{1, 3}},
		{"3-weighted", []int{1, 2, 3}},
		{"10-weighted", []int{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}},
		{"100-equal", make([]int, 100)},
		{"100-weighted", alt},
	}
	keys := keys1M()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range c.weights {
				if c.weights[i] == 0 {
					c.weights[i] = 1
				}
			}
			ts := weighted(c.weights...)
			tab := mustPool(t, ts, Options{}).Table()
			counts := countByID(keyOwners(tab, keys, false))
			total := 0
			for _, w := range c.weights {
				total += w
			}
			worst := 0.0
			for i, id := range ids(t, ts) {
				want := float64(len(keys)) * float64(c.weights[i]) / float64(total)
				dev := float64(counts[idHash(id)])/want - 1
				worst = math.Max(worst, math.Abs(dev))
				if math.Abs(dev) > 0.05 {
					t.Errorf("%s (weight %d): %d keys, want %.0f ±5%% (%+.2f%%)", id, c.weights[i], counts[idHash(id)], want, 100*dev)
				}
			}
			// The table's own precision, without key sampling noise.
			bucketWorst := 0.0
			for i, st := range tab.Snapshot() {
				want := float64(c.weights[i]) / float64(total)
				dev := st.Share/want - 1
				bucketWorst = math.Max(bucketWorst, math.Abs(dev))
				if math.Abs(dev) > 0.05 {
					t.Errorf("%s (weight %d): bucket share %.4f, want %.4f ±5%%", st.ID, c.weights[i], st.Share, want)
				}
			}
			t.Logf("worst deviation from weight share: keys %.2f%%, buckets %.2f%%", 100*worst, 100*bucketWorst)
		})
	}
}

// TestRemovalMovesOnlyItsKeys: when a target leaves (down or disabled) no
// other key changes target, its keys spread over the survivors in
// proportion to weight (±10%), and when it returns the original mapping is
// restored exactly.
//
// The ±10% share check needs enough moved keys per survivor to be
// meaningful: with N=100 one target's ~10,000 keys give each of 99
// survivors ~100 keys, whose sampling noise alone is ±10% (one sigma). So
// the share is checked for N = 3, 10 and 20 and exactness for all N.
func TestRemovalMovesOnlyItsKeys(t *testing.T) {
	w20 := make([]int, 20)
	for i := range w20 {
		w20[i] = 1 + i%2
	}
	cases := []struct {
		name       string
		weights    []int
		remove     []int
		checkShare bool
	}{
		{"3-weighted", []int{1, 2, 3}, []int{0, 2}, true},
		{"10-weighted", []int{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}, []int{0, 4}, true},
		{"20-weighted", w20, []int{1}, true},
		{"100-equal", make([]int, 100), []int{37}, false},
	}
	keys := keys1M()
	for _, c := range cases {
		for i := range c.weights {
			if c.weights[i] == 0 {
				c.weights[i] = 1
			}
		}
		for k, rm := range c.remove {
			hows := []string{"down"}
			if c.name == "10-weighted" && k == 0 {
				hows = append(hows, "disabled") // same member set as down
			}
			for _, how := range hows {
				t.Run(fmt.Sprintf("%s/remove-%d/%s", c.name, rm, how), func(t *testing.T) {
					ts := weighted(c.weights...)
					p := mustPool(t, ts, Options{})
					id := ids(t, ts)[rm]
					before := keyOwners(p.Table(), keys, false)
					beforeBuckets := bucketOwners(p.Table(), false)
					var err error
					if how == "down" {
						err = p.SetHealth(id, Down)
					} else {
						err = p.SetAdmin(id, Disabled)
					}
					if err != nil {
						t.Fatal(err)
					}
					after := keyOwners(p.Table(), keys, false)
					gone := idHash(id)
					movedTo := map[uint64]int{}
					moved := 0
					for i := range keys {
						switch {
						case before[i] != gone && after[i] != before[i]:
							t.Fatalf("key %d moved from a surviving target", i)
						case before[i] == gone:
							if after[i] == gone || after[i] == 0 {
								t.Fatalf("key %d still maps to the removed target", i)
							}
							movedTo[after[i]]++
							moved++
						}
					}
					afterBuckets := bucketOwners(p.Table(), false)
					for b := range afterBuckets {
						if beforeBuckets[b] != gone && afterBuckets[b] != beforeBuckets[b] {
							t.Fatalf("bucket %d moved from a surviving target", b)
						}
					}
					if c.checkShare {
						survivorW := 0
						for i, w := range c.weights {
							if i != rm {
								survivorW += w
							}
						}
						for i, sid := range ids(t, ts) {
							if i == rm {
								continue
							}
							want := float64(moved) * float64(c.weights[i]) / float64(survivorW)
							if dev := float64(movedTo[idHash(sid)])/want - 1; math.Abs(dev) > 0.10 {
								t.Errorf("survivor %s got %d of %d moved keys, want %.0f ±10%% (%+.1f%%)", sid, movedTo[idHash(sid)], moved, want, 100*dev)
							}
						}
					}
					if how == "down" {
						err = p.SetHealth(id, Up)
					} else {
						err = p.SetAdmin(id, Enabled)
					}
					if err != nil {
						t.Fatal(err)
					}
					if n := diffCount(keyOwners(p.Table(), keys, false), before); n != 0 {
						t.Errorf("after the target returned, %d keys differ from the original mapping", n)
					}
					if n := diffCount(bucketOwners(p.Table(), false), beforeBuckets); n != 0 {
						t.Errorf("after the target returned, %d buckets differ from the original mapping", n)
					}
				})
			}
		}
	}
}

// TestAddMovesOnlyItsShare: adding a target moves at most weight/total + 1%
// of the keys, all of them to the new target; removing it again restores
// the mapping.
func TestAddMovesOnlyItsShare(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
		addW    int
	}{
		{"2+1", []int{1, 1}, 1},
		{"10+1-weighted", []int{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}, 3},
		{"100+1", make([]int, 100), 1},
	}
	keys := keys1M()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			total := c.addW
			for i := range c.weights {
				if c.weights[i] == 0 {
					c.weights[i] = 1
				}
				total += c.weights[i]
			}
			ts := weighted(c.weights...)
			p := mustPool(t, ts, Options{})
			before := keyOwners(p.Table(), keys, false)
			beforeBuckets := bucketOwners(p.Table(), false)
			added := tgt(len(ts), c.addW, 0)
			grown := append(append([]Target(nil), ts...), added)
			if err := p.Update(grown); err != nil {
				t.Fatal(err)
			}
			newID := idHash(ids(t, grown)[len(ts)])
			after := keyOwners(p.Table(), keys, false)
			moved := 0
			for i := range keys {
				if after[i] != before[i] {
					moved++
					if after[i] != newID {
						t.Fatalf("key %d moved between old targets", i)
					}
				}
			}
			share := float64(c.addW) / float64(total)
			frac := float64(moved) / float64(len(keys))
			t.Logf("moved %.3f%% of keys, weight share %.3f%%", 100*frac, 100*share)
			if frac > share+0.01 {
				t.Errorf("moved %.2f%% of keys, want at most %.2f%% + 1%%", 100*frac, 100*share)
			}
			if frac < share/2 {
				t.Errorf("new target got only %.2f%% of keys, weight share %.2f%%", 100*frac, 100*share)
			}
			if err := p.Update(ts); err != nil {
				t.Fatal(err)
			}
			if n := diffCount(bucketOwners(p.Table(), false), beforeBuckets); n != 0 {
				t.Errorf("after removing the added target, %d buckets differ", n)
			}
		})
	}
}

// TestPriorityFailover: traffic stays in the lowest group with a live
// target and moves up only when that whole group is down. When every
// target is down, panic mode (the default) sends to every target that is
// not disabled, of every group; AllDownReject sends nowhere.
func TestPriorityFailover(t *testing.T) {
	for _, policy := range []AllDown{AllDownForward, AllDownReject} {
		t.Run(policy.String(), func(t *testing.T) { testPriorityFailover(t, policy) })
	}
}

func testPriorityFailover(t *testing.T, policy AllDown) {
	ts := []Target{tgt(0, 1, 0), tgt(1, 2, 0), tgt(2, 1, 1), tgt(3, 1, 1), tgt(4, 1, 2)}
	id := ids(t, ts)
	p := mustPool(t, ts, Options{AllDown: policy})
	keys := testKeys(20000, 7)
	expect := func(step string, want ...string) {
		t.Helper()
		allowed := map[uint64]bool{}
		for _, w := range want {
			allowed[idHash(w)] = true
		}
		counts := countByID(keyOwners(p.Table(), keys, false))
		for o, n := range counts {
			if o != 0 && !allowed[o] {
				t.Errorf("%s: %d keys went to a target outside %v", step, n, want)
			}
		}
		for _, w := range want {
			if counts[idHash(w)] == 0 {
				t.Errorf("%s: %s got no keys", step, w)
			}
		}
		if _, ok := p.Table().Pick(keys[0], false); ok != (len(want) > 0) {
			t.Errorf("%s: Pick ok = %v with live targets %v", step, ok, want)
		}
	}
	expect("all up", id[0], id[1])
	set := func(i int, h Health) {
		t.Helper()
		if err := p.SetHealth(id[i], h); err != nil {
			t.Fatal(err)
		}
	}
	set(0, Down)
	expect("0 down", id[1])
	set(1, Down)
	expect("group 0 down", id[2], id[3])
	if n, prio := p.Table().Live(false); n != 2 || prio != 1 {
		t.Errorf("Live = %d, %d; want 2 in group 1", n, prio)
	}
	if err := p.SetAdmin(id[2], Disabled); err != nil {
		t.Fatal(err)
	}
	expect("group 0 down, 2 disabled", id[3])
	set(3, Down)
	expect("groups 0 and 1 out", id[4])
	if tab := p.Table(); tab.AllDown() || tab.Panic() {
		t.Errorf("one target up: AllDown %v, Panic %v", tab.AllDown(), tab.Panic())
	}
	set(4, Down)
	if tab := p.Table(); !tab.AllDown() || tab.Panic() != (policy == AllDownForward) {
		t.Errorf("all down (%v): AllDown %v, Panic %v", policy, tab.AllDown(), tab.Panic())
	}
	if policy == AllDownForward {
		// Every target but the disabled one, whatever its group.
		expect("all down, panic", id[0], id[1], id[3], id[4])
		if n, prio := p.Table().Live(false); n != 4 || prio != 0 {
			t.Errorf("panic: Live = %d, %d; want 4 from group 0 up", n, prio)
		}
	} else {
		expect("all down")
	}
	// The policy can change while all are down.
	other := AllDownReject
	if policy == AllDownReject {
		other = AllDownForward
	}
	if err := p.SetAllDown(other); err != nil {
		t.Fatal(err)
	}
	if p.Table().Panic() != (other == AllDownForward) {
		t.Errorf("after SetAllDown(%v): Panic %v", other, p.Table().Panic())
	}
	if err := p.SetAllDown(policy); err != nil {
		t.Fatal(err)
	}
	set(1, Up)
	expect("1 back", id[1])
	if tab := p.Table(); tab.AllDown() || tab.Panic() {
		t.Errorf("1 back: AllDown %v, Panic %v", tab.AllDown(), tab.Panic())
	}
	set(0, Up)
	expect("group 0 back", id[0], id[1])
}

// TestSameConfigSameMapping: two independently built tables from the same
// configuration agree on every bucket, whatever the order of the targets in
// the config and whatever state changes led to the same state. This is what
// lets two Viaduct instances run active/active without sharing state.
func TestSameConfigSameMapping(t *testing.T) {
	ts := weighted(3, 1, 4, 1, 5, 9, 2, 6)
	ts[6].Priority, ts[7].Priority = 1, 1
	ts[2].Health = Down
	ts[3].Admin = Draining
	a := mustPool(t, ts, Options{})
	keys := keys1M()
	want := keyOwners(a.Table(), keys, false)

	shuffled := append([]Target(nil), ts...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := mustPool(t, shuffled, Options{})
	if n := diffCount(keyOwners(b.Table(), keys, false), want); n != 0 {
		t.Errorf("shuffled config: %d of %d keys map differently", n, len(keys))
	}

	// Reach the same state through a different history.
	fresh := append([]Target(nil), ts...)
	fresh[2].Health, fresh[3].Admin = Up, Enabled
	c := mustPool(t, fresh, Options{})
	id := ids(t, ts)
	steps := []func() error{
		func() error { return c.SetHealth(id[0], Down) },
		func() error { return c.SetAdmin(id[3], Draining) },
		func() error { return c.SetHealth(id[2], Down) },
		func() error { return c.SetAdmin(id[5], Disabled) },
		func() error { return c.SetHealth(id[0], Up) },
		func() error { return c.SetAdmin(id[5], Enabled) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	for _, inDialog := range []bool{false, true} {
		if n := diffCount(bucketOwners(c.Table(), inDialog), bucketOwners(a.Table(), inDialog)); n != 0 {
			t.Errorf("inDialog=%v: state reached by changes differs from fresh build in %d buckets", inDialog, n)
		}
	}

	// Reordering the config on reload moves nothing.
	if err := a.Update(shuffled); err != nil {
		t.Fatal(err)
	}
	if n := diffCount(keyOwners(a.Table(), keys, false), want); n != 0 {
		t.Errorf("reload with reordered config: %d keys moved", n)
	}
}

// TestDrainingKeepsDialogs: a draining target gets no new dialogs, but
// in-dialog requests of the keys it owned still reach it; a disabled target
// gets nothing.
func TestDrainingKeepsDialogs(t *testing.T) {
	ts := weighted(1, 1, 2, 1)
	id := ids(t, ts)
	p := mustPool(t, ts, Options{})
	keys := testKeys(100000, 3)
	orig := keyOwners(p.Table(), keys, false)
	drainID := idHash(id[2])
	if err := p.SetAdmin(id[2], Draining); err != nil {
		t.Fatal(err)
	}
	tab := p.Table()
	initial, inDialog := keyOwners(tab, keys, false), keyOwners(tab, keys, true)
	drained := 0
	for i := range keys {
		if initial[i] == drainID {
			t.Fatalf("key %d: new dialog sent to the draining target", i)
		}
		if inDialog[i] != orig[i] {
			t.Fatalf("key %d: in-dialog request moved from %x to %x while draining", i, orig[i], inDialog[i])
		}
		if orig[i] == drainID {
			drained++
		} else if initial[i] != orig[i] {
			t.Fatalf("key %d: new dialog of an untouched target moved", i)
		}
	}
	if drained == 0 {
		t.Fatal("no key was on the draining target")
	}
	st := tab.Snapshot()
	if st[2].NewDialogs || !st[2].InDialog || st[2].Share != 0 {
		t.Errorf("snapshot of draining target = %+v", st[2])
	}
	if err := p.SetAdmin(id[2], Disabled); err != nil {
		t.Fatal(err)
	}
	for i, o := range keyOwners(p.Table(), keys, true) {
		if o == drainID {
			t.Fatalf("key %d: in-dialog request sent to a disabled target", i)
		}
	}
	// A draining target that is down gets nothing either.
	if err := p.Batch(func(b *Batch) error {
		if err := b.SetAdmin(id[2], Draining); err != nil {
			return err
		}
		return b.SetHealth(id[2], Down)
	}); err != nil {
		t.Fatal(err)
	}
	for i, o := range keyOwners(p.Table(), keys, true) {
		if o == drainID {
			t.Fatalf("key %d: in-dialog request sent to a down target", i)
		}
	}
}

// TestOwnersOfMatchesPick: the test helper that reads tables directly agrees
// with Pick on every kind of lookup (1- and 2-byte bucket arrays, a single
// target, no target, round robin).
func TestOwnersOfMatchesPick(t *testing.T) {
	big := equalWeights(300) // > 256 targets: two-byte bucket array
	cases := map[string]*Pool{
		"own8":   mustPool(t, weighted(1, 2, 3), Options{}),
		"own16":  mustPool(t, big, Options{}),
		"single": mustPool(t, weighted(1), Options{}),
		"empty":  mustPool(t, nil, Options{}),
		"rr":     mustPool(t, weighted(1, 2, 3), Options{Mode: ModeRoundRobin}),
	}
	keys := testKeys(200000, 17)
	for name, p := range cases {
		tab := p.Table()
		for _, inDialog := range []bool{false, true} {
			got := keyOwners(tab, keys, inDialog)
			for i, k := range keys {
				var want uint64
				if tg, ok := tab.Pick(k, inDialog); ok {
					want = tg.IDHash()
				}
				if got[i] != want {
					t.Fatalf("%s: key %d: helper says %x, Pick %x", name, i, got[i], want)
				}
			}
		}
	}
}
