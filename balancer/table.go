package balancer

import (
	"math/bits"
	"net/netip"
)

// Table is an immutable snapshot of a pool: its targets with their states
// and the lookup structures derived from them. The fast path loads the
// current Table from Pool.Table once per request and picks from it; a Table
// stays valid, and keeps answering the same way, after the pool has moved
// on to a newer one. All methods are safe for concurrent use.
type Table struct {
	targets []Target
	byID    map[string]int
	byAddr  map[netip.AddrPort]int // first target with each address
	// sets[0] serves new dialogs (up && enabled), sets[1] in-dialog requests
	// (up && (enabled || draining)). They are the same *lookup when no
	// draining target makes a difference.
	sets    [2]*lookup
	mode    Mode
	version uint64
	// allDown: every target that is not disabled is down; panic: and
	// the pool's AllDown is AllDownForward, so the sets ignore health.
	allDown, panic bool
}

// lookup selects among the members of one set: the selectable targets of
// the lowest priority group that has any.
type lookup struct {
	own     owners   // bucket -> target index; valid in ModeHash with >= 2 members
	single  int      // index of the only member; -1 when there are 0 or >= 2
	rr      []uint16 // weighted round-robin cycle of target indices
	members []member // sorted by idHash
	weight  int      // total weight of members
	// maxRank bounds the rank at which any bucket's owner ranks it (own
	// valid): a newcomer can only take buckets it ranks at most this low,
	// which lets derive enumerate them instead of scanning every bucket.
	maxRank uint32
	// priority is the group of the members (meaningless when empty).
	priority int
}

// Pick selects the target for a request whose key hashes to keyHash (see
// HashKey and Policy). inDialog must be true for requests inside a dialog
// (they carry a To tag: ACK for 2xx, BYE, re-INVITE, UPDATE, INFO, ...);
// those may still go to draining targets, so dialogs established before a
// drain keep reaching their server. Initial requests use inDialog false, and
// so do CANCEL and the ACK of a non-2xx final response: they belong to the
// INVITE's transaction and must reach where the INVITE went.
//
// In ModeHash the choice is consistent: it depends only on keyHash and the
// set of selectable targets (IDs and weights), so the same key reaches the
// same target on every Viaduct instance with the same configuration and
// state. In ModeRoundRobin, Pick maps keyHash onto the weighted cycle: a
// weighted but not consistent choice. Pick returns false when no target is
// selectable. It does not allocate; callers must not modify the *Target.
func (t *Table) Pick(keyHash uint64, inDialog bool) (*Target, bool) {
	lk := t.sets[0]
	if inDialog {
		lk = t.sets[1]
	}
	b := keyHash >> bucketShift
	var i int
	if o := lk.own.own8; o != nil {
		i = int(o[b])
	} else if o := lk.own.own16; o != nil {
		i = int(o[b])
	} else if lk.single >= 0 {
		i = lk.single
	} else if n := len(lk.rr); n > 0 {
		hi, _ := bits.Mul64(keyHash, uint64(n))
		i = int(lk.rr[hi])
	} else {
		return nil, false
	}
	return &t.targets[i], true
}

// PickRR selects the next target in smooth weighted round-robin order.
// cursor is the caller's position in the cycle: give every worker its own
// (a shared one would be a contended cache line and need atomics); start
// workers at different values, e.g. their worker number, so they do not all
// begin with the same target. PickRR advances *cursor and wraps it, also
// when a new table has a shorter cycle. inDialog has the meaning it has for
// Pick. PickRR works in both modes, returns false when no target is
// selectable and does not allocate.
func (t *Table) PickRR(cursor *uint64, inDialog bool) (*Target, bool) {
	lk := t.sets[0]
	if inDialog {
		lk = t.sets[1]
	}
	n := uint64(len(lk.rr))
	if n == 0 {
		return nil, false
	}
	c := *cursor
	if c >= n {
		c %= n
	}
	*cursor = c + 1
	return &t.targets[lk.rr[c]], true
}

// Select picks with the pool's mode: Pick(keyHash, inDialog) in ModeHash,
// PickRR(cursor, inDialog) in ModeRoundRobin. A fast path that serves both
// kinds of pool calls Select and needs to extract and hash a key only when
// NeedsKey is true.
func (t *Table) Select(keyHash uint64, cursor *uint64, inDialog bool) (*Target, bool) {
	if t.mode == ModeRoundRobin {
		return t.PickRR(cursor, inDialog)
	}
	return t.Pick(keyHash, inDialog)
}

// NeedsKey reports whether Select uses the key hash (ModeHash).
func (t *Table) NeedsKey() bool { return t.mode == ModeHash }

// Mode returns the selection mode of the pool the table belongs to.
func (t *Table) Mode() Mode { return t.mode }

// Version counts the tables a pool has published: 1 for the first, +1 for
// every rebuild. Metrics can export it to show state churn.
func (t *Table) Version() uint64 { return t.version }

// AllDown reports whether every target that is not disabled is down (and
// at least one target is not disabled). What the table then selects
// depends on the pool's AllDown policy: see Panic.
func (t *Table) AllDown() bool { return t.allDown }

// Panic reports whether the table is in panic mode: every target that is
// not disabled is down and the pool's policy is AllDownForward, so the
// table selects them anyway, health ignored, across every priority group
// (enabled targets for new dialogs, enabled and draining ones for
// in-dialog requests). It ends with the first table in which a target is
// up again.
func (t *Table) Panic() bool { return t.panic }

// Len returns the number of configured targets, selectable or not.
func (t *Table) Len() int { return len(t.targets) }

// Target returns target i (0 <= i < Len) in configuration order. Callers
// must not modify it.
func (t *Table) Target(i int) *Target { return &t.targets[i] }

// ByID returns the target with the given ID.
func (t *Table) ByID(id string) (*Target, bool) {
	i, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	return &t.targets[i], true
}

// ByAddr returns the target whose address is addr (the first in
// configuration order when several share it), whatever its states. It
// does not allocate.
func (t *Table) ByAddr(addr netip.AddrPort) (*Target, bool) {
	i, ok := t.byAddr[addr]
	if !ok {
		return nil, false
	}
	return &t.targets[i], true
}

// Targets returns a copy of the targets with their states, in configuration
// order.
func (t *Table) Targets() []Target {
	return append([]Target(nil), t.targets...)
}

// Live returns how many targets are selectable for new dialogs (inDialog
// false) or in-dialog requests (true), and the priority group they belong
// to (the lowest of their groups in panic mode). n == 0 means requests of
// that kind cannot be routed.
func (t *Table) Live(inDialog bool) (n int, priority int) {
	lk := t.sets[0]
	if inDialog {
		lk = t.sets[1]
	}
	return len(lk.members), lk.priority
}

// TargetStatus is a target with what the table does with it, for an admin
// API and metrics.
type TargetStatus struct {
	Target
	// NewDialogs reports whether the target is selected for new dialogs:
	// up, enabled and in the active priority group.
	NewDialogs bool
	// InDialog reports whether the target is selected for in-dialog
	// requests: up, enabled or draining, in the active group for those.
	InDialog bool
	// Share is the fraction of new dialogs the target receives: its share
	// of the buckets in ModeHash, of the weighted cycle in ModeRoundRobin.
	Share float64
}

// Snapshot returns the status of every target in configuration order. It
// counts bucket owners (about a millisecond), so it is for admin and
// metrics paths, not per request.
func (t *Table) Snapshot() []TargetStatus {
	out := make([]TargetStatus, len(t.targets))
	for i := range t.targets {
		out[i].Target = t.targets[i]
	}
	for _, m := range t.sets[1].members {
		out[m.idx].InDialog = true
	}
	lk := t.sets[0]
	for _, m := range lk.members {
		out[m.idx].NewDialogs = true
	}
	switch {
	case lk.own.valid():
		counts := make([]int, len(t.targets))
		for b := uint32(0); b < NumBuckets; b++ {
			counts[lk.own.get(b)]++
		}
		for i, c := range counts {
			out[i].Share = float64(c) / NumBuckets
		}
	case lk.single >= 0:
		out[lk.single].Share = 1
	default:
		for _, i := range lk.rr {
			out[i].Share += 1 / float64(len(lk.rr))
		}
	}
	return out
}
