package edge

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestRateLimitAdmitsTheBurstThenDropsPerClass(t *testing.T) {
	g := newGuard(t, Config{Limits: LimitsConfig{
		Register: Limit{Rate: 0.001, Burst: 5}, Invite: Limit{Rate: 0.001, Burst: 3}, Other: Limit{Rate: 0.001, Burst: 2},
	}, Bans: BansConfig{Mode: Off}})
	w := newWorker(g)
	src := "192.0.2.10:5060"
	if got := w.sendN(request("REGISTER", ""), src, 8); got != 5 {
		t.Errorf("REGISTER: %d of 8 admitted, want the burst of 5", got)
	}
	if got := w.sendN(request("INVITE", ""), src, 8); got != 3 {
		t.Errorf("INVITE: %d of 8 admitted, want 3 (its own bucket)", got)
	}
	if got := w.sendN(request("BYE", ""), src, 8); got != 2 {
		t.Errorf("BYE: %d of 8 admitted, want 2", got)
	}
	if got := w.sendN(request("INVITE", ""), "192.0.2.11:5060", 3); got != 3 {
		t.Errorf("another source: %d of 3 admitted, want 3", got)
	}
	if got := w.sendN(response, src, 10); got != 10 {
		t.Errorf("responses: %d of 10 admitted, want all: responses are not limited", got)
	}
	s := g.Stats()
	for class, want := range map[string]uint64{"register": 3, "invite": 5, "other": 6} {
		if got := s.Dropped("rate", class); got != want {
			t.Errorf("rate/%s drops = %d, want %d", class, got, want)
		}
	}
}

func TestRateRefills(t *testing.T) {
	r := newRate(Limit{Rate: 10, Burst: 2})
	var tat int64
	now := int64(1)
	if !r.admit(&tat, now) || !r.admit(&tat, now) || r.admit(&tat, now) {
		t.Fatal("burst of 2 not kept")
	}
	now += int64(100 * time.Millisecond) // one interval at 10/s
	if !r.admit(&tat, now) {
		t.Error("no token after one interval")
	}
	if r.admit(&tat, now) {
		t.Error("two tokens after one interval")
	}
}

func TestIPv6SourcesAggregateToThePrefix(t *testing.T) {
	g := newGuard(t, Config{Limits: LimitsConfig{Invite: Limit{Rate: 0.001, Burst: 4}}, Bans: BansConfig{Mode: Off}})
	w := newWorker(g)
	inv := request("INVITE", "")
	got := w.sendN(inv, "[2001:db8:1:2::1]:5060", 2) + w.sendN(inv, "[2001:db8:1:2:ffff::9]:5060", 4)
	if got != 4 {
		t.Errorf("one /64: %d of 6 admitted, want 4", got)
	}
	if !w.send(inv, "[2001:db8:1:3::1]:5060") {
		t.Error("another /64 shared the limit")
	}
}

func TestTrustedSourcesAreNotLimited(t *testing.T) {
	g := newGuard(t, Config{Access: AccessConfig{Trusted: []string{"10.0.0.0/8"}}, Limits: LimitsConfig{Invite: Limit{Rate: 0.001, Burst: 1}}})
	w := newWorker(g)
	if got := w.sendN(request("INVITE", "friendly-scanner"), "10.0.0.1:5060", 50); got != 50 {
		t.Errorf("trusted: %d of 50 admitted", got)
	}
}

func TestSustainedViolationEscalatesToABan(t *testing.T) {
	g := newGuard(t, Config{Limits: LimitsConfig{Invite: Limit{Rate: 0.001, Burst: 10}}, Bans: BansConfig{After: 20, TTL: time.Hour}})
	w := newWorker(g)
	inv := request("INVITE", "")
	w.sendN(inv, "192.0.2.50:5060", 10+19)
	if n := len(g.Bans().List()); n != 0 {
		t.Fatalf("banned after 19 violations (bans.after 20): %d bans", n)
	}
	w.send(inv, "192.0.2.50:5060")
	bans := g.Bans().List()
	if len(bans) != 1 || bans[0].Prefix != "192.0.2.50/32" || bans[0].Origin != "rate" {
		t.Fatalf("bans after 20 violations = %+v, want 192.0.2.50/32 by rate", bans)
	}
	if bans[0].TTLSeconds < 3590 || bans[0].TTLSeconds > 3600 {
		t.Errorf("ttl %v s, want bans.ttl 1h", bans[0].TTLSeconds)
	}
	if w.send(response, "192.0.2.50:5060") {
		t.Error("a response from a banned source reached the core")
	}
	if got := g.Stats().Dropped("ban", "rate"); got != 1 {
		t.Errorf("ban/rate drops = %d, want 1", got)
	}
}

func TestNewSourcesBeyondTheirRateAreDropped(t *testing.T) {
	g := newGuard(t, Config{Limits: LimitsConfig{NewSources: Limit{Rate: 0.001, Burst: 64 * 4}}, Bans: BansConfig{Mode: Off}})
	w := newWorker(g)
	inv := request("INVITE", "")
	admitted := 0
	var firstIn string
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
		src := netip.AddrPortFrom(a, 5060).String()
		if w.send(inv, src) {
			admitted++
			if firstIn == "" {
				firstIn = src
			}
		}
	}
	// 4 new sources per shard; the hash spreads 5,000 over all 64 shards.
	if admitted != 256 {
		t.Errorf("%d of 5000 new sources admitted, want the new_sources burst, 256", admitted)
	}
	if got := g.Stats().Dropped("new_source", "table"); got != 5000-uint64(admitted) {
		t.Errorf("new_source drops = %d, want %d", got, 5000-admitted)
	}
	// A source already in the table is not new: the spent budget does
	// not touch it.
	if !w.send(inv, firstIn) {
		t.Error("a source in the table was refused as new")
	}
}

func TestFullTableEvictsTheLeastRecentlySeenAndKeepsActiveSources(t *testing.T) {
	tb := NewTable(minTableSize, 64) // one set per shard
	tb.setLimits(Config{}.WithDefaults())
	now := int64(1)
	active := tb.Key(netip.MustParseAddr("192.0.2.1"))
	for i := range 200000 {
		now += int64(time.Millisecond) // 1,000 new sources a second, under new_sources
		if i%50 == 0 && tb.Admit(active, ClassOther, now) != Admitted {
			t.Fatalf("the active source was refused after %d new sources", i)
		}
		k := tb.Key(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		tb.Admit(k, ClassOther, now)
	}
	if got := tb.Occupancy(); got != int64(tb.Capacity()) {
		t.Errorf("occupancy %d, want the capacity %d", got, tb.Capacity())
	}
	if tb.Evictions() == 0 {
		t.Error("no eviction counted")
	}
	h := tb.hash(active)
	sh := &tb.shards[h>>58]
	if sh.find(&sh.sets[h%uint64(len(sh.sets))], active) == nil {
		t.Error("the active source lost its entry")
	}
}

func TestTopTalkers(t *testing.T) {
	g := newGuard(t, Config{Bans: BansConfig{Mode: Off}})
	w := newWorker(g)
	opt := request("OPTIONS", "")
	w.sendN(opt, "192.0.2.1:5060", 30)
	w.sendN(opt, "192.0.2.2:5060", 10)
	w.sendN(opt, "[2001:db8:5::7]:5060", 20)
	top := g.Table().Top(2, g.clock.now())
	if len(top) != 2 || top[0].Source != "192.0.2.1/32" || top[0].Rate != 30 || top[1].Source != "2001:db8:5::/64" || top[1].Rate != 20 {
		t.Errorf("top 2 = %+v", top)
	}
}

// The hash spreads consecutive IPv4 addresses over every shard whatever
// the table's random seed: with one multiply-fold, about one seed in a
// hundred left a shard with none of 5,000 addresses (and the sources
// crowded into the others' sets).
func TestHashSpreadsIPv4OverShards(t *testing.T) {
	for trial := range 500 {
		tb := NewTable(minTableSize, 64)
		var perShard [tableShards]int
		for i := range 5000 {
			perShard[tb.hash(tb.Key(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})))>>58]++
		}
		if least := slices.Min(perShard[:]); least < 20 {
			t.Fatalf("seed %d (%x): a shard got %d of 5000 addresses, an even spread gives 78", trial, tb.seed, least)
		}
	}
}
