package fastpath

import "sync/atomic"

// UpstreamCount is the number of requests sent to one upstream by
// balancing, keyed by the target's balancer.Target.IDHash (the xxhash of its
// ID, which stays the same across reloads and address changes).
type UpstreamCount struct {
	IDHash uint64
	Count  uint64
}

// upCounters counts one worker's balanced (or dialog-routed) requests per
// target: an open-addressing table keyed by ID hash, written by the worker alone
// (single-writer stores, as counter) and read concurrently by
// Engine.AppendUpstreamForwarded. Counting costs a probe of a table sized to
// at least twice the targets and one store; it allocates only when a
// target is seen for the first time and the table is half full (a reload
// that adds targets), never in steady state.
type upCounters struct {
	tab  atomic.Pointer[upTable]
	used int // occupied slots; writer only
}

type upTable struct {
	mask  uint64
	slots []upSlot
}

type upSlot struct {
	key   atomic.Uint64 // ID hash; 0 = empty (an ID hash of 0 is stored as 1)
	count counter
}

// minUpSlots is the smallest table.
const minUpSlots = 16

func newUpCounters(targets int) *upCounters {
	u := new(upCounters)
	n := minUpSlots
	for n < 2*targets {
		n *= 2
	}
	u.tab.Store(&upTable{mask: uint64(n - 1), slots: make([]upSlot, n)})
	return u
}

// inc counts one request to the target with ID hash h.
func (u *upCounters) inc(h uint64) {
	if h == 0 {
		h = 1
	}
	t := u.tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		switch s.key.Load() {
		case h:
			s.count.inc()
			return
		case 0:
			if 2*(u.used+1) > len(t.slots) {
				u.grow()
				u.inc(h)
				return
			}
			// Count before key: a reader that sees the key sees the
			// count.
			s.count.set(1)
			s.key.Store(h)
			u.used++
			return
		}
	}
}

// grow publishes a table twice the size with the same counts. Readers of
// the old table see counts that are at most slightly stale.
func (u *upCounters) grow() {
	old := u.tab.Load()
	n := 2 * len(old.slots)
	t := &upTable{mask: uint64(n - 1), slots: make([]upSlot, n)}
	for i := range old.slots {
		k := old.slots[i].key.Load()
		if k == 0 {
			continue
		}
		for j := k & t.mask; ; j = (j + 1) & t.mask {
			if t.slots[j].key.Load() == 0 {
				t.slots[j].count.set(old.slots[i].count.load())
				t.slots[j].key.Store(k)
				break
			}
		}
	}
	u.tab.Store(t)
}

// appendTo appends every target's count (ID hash 0 reads as 1).
func (u *upCounters) appendTo(dst []UpstreamCount) []UpstreamCount {
	t := u.tab.Load()
	for i := range t.slots {
		if k := t.slots[i].key.Load(); k != 0 {
			dst = append(dst, UpstreamCount{IDHash: k, Count: t.slots[i].count.load()})
		}
	}
	return dst
}

// AppendUpstreamForwarded appends, for every target the engine's workers
// have sent a balanced request to since the engine started, the number of
// such requests summed over the workers, in no particular order. In-dialog
// requests that went to the upstream their next hop names (see "Dialogs"
// in the package documentation) count for that upstream; requests from
// upstreams routed by their Route or Request-URI, and requests balanced by
// a Config.Picker, are not counted. An ID hash of 0 is reported as 1. It is
// safe to call concurrently with the workers, and costs the workers
// nothing.
func (e *Engine) AppendUpstreamForwarded(dst []UpstreamCount) []UpstreamCount {
	e.mu.Lock()
	ws := e.workers
	e.mu.Unlock()
	var all []UpstreamCount
	for _, w := range ws {
		all = w.up.appendTo(all)
	}
	at := make(map[uint64]int, len(all))
	for _, c := range all {
		if i, ok := at[c.IDHash]; ok {
			dst[i].Count += c.Count
			continue
		}
		at[c.IDHash] = len(dst)
		dst = append(dst, c)
	}
	return dst
}
