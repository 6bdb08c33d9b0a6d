package edge

import (
	"cmp"
	"slices"
)

// RuleCount is the count of one rule.
type RuleCount struct {
	Reason, Rule       string
	Dropped, WouldDrop uint64
}

// Stats is a snapshot of the Guard's counters.
type Stats struct {
	// Drops lists every rule, the fixed ones first, then the scanner
	// patterns and gateway caps ever configured, sorted.
	Drops             []RuleCount
	Admitted, Replies uint64
	TableEntries      int64
	TableCapacity     int
	Evictions         uint64
	BansActive        [numOrigins]int
	BansAdded         [numOrigins]uint64
	BansRefused       [numOrigins]uint64
	WouldBan          [numOrigins]uint64
	BansExpired       uint64
	BlocklistPrefixes int64
}

// Dropped returns the enforced drops of reason (and of rule, unless rule
// is "").
func (s Stats) Dropped(reason, rule string) uint64 {
	return s.sum(reason, rule, func(r RuleCount) uint64 { return r.Dropped })
}

// WouldDrop is Dropped for the log_only counts.
func (s Stats) WouldDrop(reason, rule string) uint64 {
	return s.sum(reason, rule, func(r RuleCount) uint64 { return r.WouldDrop })
}

// sum adds up count over the rules of reason (and of rule, unless rule is
// "").
func (s Stats) sum(reason, rule string, count func(RuleCount) uint64) uint64 {
	var n uint64
	for _, r := range s.Drops {
		if r.Reason == reason && (rule == "" || r.Rule == rule) {
			n += count(r)
		}
	}
	return n
}

// TotalDropped returns the enforced drops of every rule.
func (s Stats) TotalDropped() uint64 {
	var n uint64
	for _, r := range s.Drops {
		n += r.Dropped
	}
	return n
}

// Stats returns the counters.
func (g *Guard) Stats() Stats {
	var s Stats
	var fixed [2][numRules]uint64
	g.mu.Lock()
	all := make([]*counters, 0, len(g.workers)+1)
	all = append(append(all, g.workers...), &g.gateCtr)
	for _, w := range all {
		for m := range fixed {
			for r := range fixed[m] {
				fixed[m][r] += w.drops[m][r].Load()
			}
		}
		s.Admitted += w.admitted.Load()
		s.Replies += w.replies.Load()
	}
	labels := make([]RuleCount, 0, len(g.labels))
	for _, l := range g.labels {
		labels = append(labels, RuleCount{Reason: l.reason, Rule: l.rule, Dropped: l.n[enforced].Load(), WouldDrop: l.n[wouldDrop].Load()})
	}
	g.mu.Unlock()
	for r := range numRules {
		s.Drops = append(s.Drops, RuleCount{Reason: r.reason(), Rule: r.name(), Dropped: fixed[enforced][r], WouldDrop: fixed[wouldDrop][r]})
	}
	slices.SortFunc(labels, func(a, b RuleCount) int { return cmp.Or(cmp.Compare(a.Reason, b.Reason), cmp.Compare(a.Rule, b.Rule)) })
	s.Drops = append(s.Drops, labels...)
	s.TableEntries, s.TableCapacity, s.Evictions = g.table.Occupancy(), g.table.Capacity(), g.table.Evictions()
	s.BansActive = g.bans.Active()
	for o := range numOrigins {
		s.BansAdded[o] = g.bans.added[o].Load()
		s.BansRefused[o] = g.bans.refused[o].Load()
		s.WouldBan[o] = g.wouldBan[o].Load()
	}
	s.BansExpired = g.bans.expired.Load()
	s.BlocklistPrefixes = g.blockSize.Load()
	return s
}
