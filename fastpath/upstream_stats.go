package fastpath

import (
	"github.com/viaduct-sip/viaduct/transport"

	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/balancer"
)

// UpstreamCount is the number of requests sent to one upstream by
// balancing, keyed by the target's balancer.Target.IDHash (the xxhash of its
// ID, which stays the same across reloads and address changes).
type UpstreamCount struct {
	IDHash uint64
	Count  uint64
}

// UpstreamResponses is the number of responses relayed from one upstream
// to a client, by status class, keyed like UpstreamCount by the target's
// balancer.Target.IDHash.
type UpstreamResponses struct {
	IDHash uint64
	// ByClass is indexed as Stats.ResponsesForwarded: 1 for 1xx ... 6
	// for 6xx (index 0 unused).
	ByClass [7]uint64
}

// upCounters counts, per target, one worker's balanced (or dialog-routed)
// requests and the responses it relayed from the target: an
// open-addressing table keyed by ID hash, written by the worker alone
// (single-writer stores, as counter) and read concurrently by
// Engine.AppendUpstreamForwarded and Engine.AppendUpstreamResponses.
// Counting costs a probe of a table sized to at least twice the targets and
// one store; it allocates only when a target is seen for the first time and
// the table is half full (a reload that adds targets), never in steady
// state.
type upCounters struct {
	tab  atomic.Pointer[upTable]
	used int // occupied slots; writer only

	// bySource remembers which target recent response sources are (the
	// writer's alone): a direct-mapped cache of the pool table's
	// address lookup, valid for one table.
	bySource [sourceCacheSize]sourceEntry
}

// sourceCacheSize is the number of response sources a worker remembers.
// The kernel gives all datagrams of one source to one worker, so a worker
// hears responses from few upstream addresses.
const sourceCacheSize = 8

// sourceEntry is what the pool table said about one source address.
type sourceEntry struct {
	tab    *balancer.Table // the table asked; nil: empty entry
	from   netip.AddrPort
	idHash uint64 // the target's ID hash
	found  bool   // whether from is a target's address
}

type upTable struct {
	mask  uint64
	slots []upSlot
}

type upSlot struct {
	key   atomic.Uint64 // ID hash; 0 = empty (an ID hash of 0 is stored as 1)
	count counter       // requests sent to the target
	resp  [6]counter    // responses relayed from it: index 0 for 1xx ... 5 for 6xx
}

// copyFrom copies o's counts (not its key).
func (s *upSlot) copyFrom(o *upSlot) {
	s.count.set(o.count.load())
	for i := range s.resp {
		s.resp[i].set(o.resp[i].load())
	}
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
func (u *upCounters) inc(h uint64) { u.slot(h).count.inc() }

// incResponse counts one response of status code status relayed from the
// target with ID hash h; a status outside 100..699 is not counted.
func (u *upCounters) incResponse(h uint64, status int) {
	k := status/100 - 1
	if k < 0 || k >= len(upSlot{}.resp) {
		return
	}
	u.slot(h).resp[k].inc()
}

// slot returns the slot of ID hash h, claiming one (with zero counts) the
// first time h is seen. A reader that sees the key of a new slot before
// its first count sees zeros, which counters may show.
func (u *upCounters) slot(h uint64) *upSlot {
	if h == 0 {
		h = 1
	}
	t := u.tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		switch s.key.Load() {
		case h:
			return s
		case 0:
			if 2*(u.used+1) > len(t.slots) {
				u.grow()
				return u.slot(h)
			}
			s.key.Store(h)
			u.used++
			return s
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
				// Counts before key: a reader that sees the key
				// sees the counts.
				t.slots[j].copyFrom(&old.slots[i])
				t.slots[j].key.Store(k)
				break
			}
		}
	}
	u.tab.Store(t)
}

// appendTo appends the request count of every target that has one (ID
// hash 0 reads as 1).
func (u *upCounters) appendTo(dst []UpstreamCount) []UpstreamCount {
	t := u.tab.Load()
	for i := range t.slots {
		s := &t.slots[i]
		if k := s.key.Load(); k != 0 {
			if n := s.count.load(); n != 0 {
				dst = append(dst, UpstreamCount{IDHash: k, Count: n})
			}
		}
	}
	return dst
}

// appendResponsesTo appends the response counts of every target that has
// relayed a response (ID hash 0 reads as 1).
func (u *upCounters) appendResponsesTo(dst []UpstreamResponses) []UpstreamResponses {
	t := u.tab.Load()
	for i := range t.slots {
		s := &t.slots[i]
		k := s.key.Load()
		if k == 0 {
			continue
		}
		r := UpstreamResponses{IDHash: k}
		var seen uint64
		for c := range s.resp {
			r.ByClass[c+1] = s.resp[c].load()
			seen |= r.ByClass[c+1]
		}
		if seen != 0 {
			dst = append(dst, r)
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
	return sumOverWorkers(dst, e.workerList(), (*upCounters).appendTo,
		func(c *UpstreamCount) uint64 { return c.IDHash },
		func(sum, c *UpstreamCount) { sum.Count += c.Count })
}

// AppendUpstreamResponses appends, for every target the engine's workers
// have relayed a response from since the engine started, the number of
// such responses by status class summed over the workers, in no particular
// order. The upstream a response comes from is the pool target whose
// address is the response's source address (balancer.Table.ByAddr), as
// the passive health check sees it; responses from other addresses (a
// client answering a request an upstream sent), responses Viaduct drops
// and responses to its own probes are not counted, and nothing is counted
// with a Config.Picker (there is no pool). An ID hash of 0 is reported as
// 1. It is safe to call concurrently with the workers, and costs the
// workers nothing.
func (e *Engine) AppendUpstreamResponses(dst []UpstreamResponses) []UpstreamResponses {
	return sumOverWorkers(dst, e.workerList(), (*upCounters).appendResponsesTo,
		func(r *UpstreamResponses) uint64 { return r.IDHash },
		func(sum, r *UpstreamResponses) {
			for c := range r.ByClass {
				sum.ByClass[c] += r.ByClass[c]
			}
		})
}

// sumOverWorkers collects every worker's per-target entries with collect
// and appends them to dst, one entry per ID hash: the first worker's entry
// for a target is appended, and add sums each later one into it.
func sumOverWorkers[T any](dst []T, workers []*Worker, collect func(*upCounters, []T) []T,
	idHash func(*T) uint64, add func(sum, entry *T)) []T {
	var all []T
	for _, w := range workers {
		all = collect(w.up, all)
	}
	at := make(map[uint64]int, len(all))
	for i := range all {
		e := &all[i]
		if j, ok := at[idHash(e)]; ok {
			add(&dst[j], e)
			continue
		}
		at[idHash(e)] = len(dst)
		dst = append(dst, *e)
	}
	return dst
}

// workerList returns the engine's workers (none before Start).
// WorkerPositions returns the transport worker each entry of WorkerStats
// belongs to, in the same order: its transport, listener and index (on a
// UDP listener, index Config.Workers is the origin socket's worker).
func (e *Engine) WorkerPositions() []transport.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	ps := make([]transport.Position, len(e.handlers))
	for i, h := range e.handlers {
		ps[i] = h.at
	}
	return ps
}

func (e *Engine) workerList() []*Worker {
	e.mu.Lock()
	defer e.mu.Unlock()
	ws := make([]*Worker, len(e.handlers))
	for i, h := range e.handlers {
		ws[i] = h.w
	}
	return ws
}

// countUpstreamResponse counts a response with status code status relayed
// from `from` for the pool target at that address, if there is one. It
// costs an atomic load, a look in the worker's small cache of sources
// (the pool table's map lookup when it misses) and a counter store.
func (w *Worker) countUpstreamResponse(from netip.AddrPort, status int) {
	if w.e.pool == nil {
		return
	}
	if h, ok := w.up.source(w.e.pool.Table(), from); ok {
		w.up.incResponse(h, status)
	}
}

// source returns the ID hash of tab's target at address from, through the
// source cache.
func (u *upCounters) source(tab *balancer.Table, from netip.AddrPort) (uint64, bool) {
	c := &u.bySource[sourceIndex(from)]
	if c.tab != tab || c.from != from {
		t, ok := tab.ByAddr(from)
		*c = sourceEntry{tab: tab, from: from, found: ok}
		if ok {
			c.idHash = t.IDHash()
		}
	}
	return c.idHash, c.found
}

// sourceCacheBits is log2(sourceCacheSize).
const sourceCacheBits = 3

// sourceIndex is the source cache entry of address a: a multiplicative
// hash of the port and the low bits of the IP address.
func sourceIndex(a netip.AddrPort) uint64 {
	x := uint64(a.Port())
	if ip := a.Addr(); ip.Is4() {
		b := ip.As4()
		x ^= uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16
	} else {
		b := ip.As16()
		x ^= binary.BigEndian.Uint64(b[8:]) << 16
	}
	return (x * 0x9e3779b97f4a7c15) >> (64 - sourceCacheBits)
}
