package edge

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Class is the kind of request a source's limit is kept for.
type Class uint8

// The classes of requests, each limited on its own.
const (
	ClassRegister Class = iota
	ClassInvite
	ClassOther
	numClasses
)

var classNames = [numClasses]string{"register", "invite", "other"}

func (c Class) String() string { return classNames[c] }

// The table's geometry: tableShards shards (one lock each), each an array
// of sets of setWays entries. A source hashes to one set; it is looked for
// in those setWays entries only.
const (
	setWays      = 8
	tableShards  = 64
	minTableSize = setWays * tableShards
)

// srcKey is a source as the table counts it: an IPv4 address as an
// IPv4-mapped IPv6 address, an IPv6 address masked to the configured
// prefix. The zero key marks a free way (Key never returns it).
type srcKey [16]byte

// entry is one source's state: 64 bytes, one cache line.
type entry struct {
	seen  int64 // ns of its last request
	tat   [numClasses]int64
	sec   int64  // the second cur counts requests in
	cur   uint32 // requests in second sec
	prev  uint32 // requests in the second before sec
	strk  uint32 // requests over a limit since strkT
	strkT int64
}

// tableSet is one set: its keys together (two cache lines to search),
// then their entries.
type tableSet struct {
	keys    [setWays]srcKey
	entries [setWays]entry
}

type shard struct {
	mu        sync.Mutex
	sets      []tableSet
	newTat    int64 // the shard's share of the new-sources bucket
	used      atomic.Int64
	evictions atomic.Uint64
	_         [64]byte // keeps shards' hot fields off each other's cache lines
}

// tableLimits are the rates a Table applies; a reload swaps them.
type tableLimits struct {
	class     [numClasses]rate
	newSource rate // per shard
	banAfter  uint32
	banWindow int64
}

// Verdict is what Table.Admit decides for a request.
type Verdict uint8

const (
	// Admitted: within the source's limit.
	Admitted Verdict = iota
	// OverLimit: over the source's limit for the class.
	OverLimit
	// OverLimitBan: over the limit, and often enough within bans.window
	// that the source is to be banned.
	OverLimitBan
	// NewSourceRefused: the source is not in the table and the
	// new-sources rate is spent.
	NewSourceRefused
)

// Table holds the rate-limit state of the sources, in memory fixed at
// start: a sharded, set-associative table (the structure of a CPU cache).
// A source finds its entry among the setWays of the set it hashes to; a
// source not found is new, and enters the table only within the
// new-sources rate (per shard, so with no lock beyond the shard's). It
// takes a free way of its set, or evicts the way seen least recently
// (counted). That is the full-table policy: a flood of spoofed sources,
// every one new, is dropped beyond the new-sources rate, and can evict at
// most that many entries per second, the least active first; a source
// that keeps sending keeps its entry.
//
// The alternative, a count-min sketch in front, bounds memory as well but
// counts a source's neighbours' requests as its own, which bans the
// innocent exactly when a flood is on; and it has no identities to list,
// ban or show as top talkers.
type Table struct {
	shards [tableShards]shard
	seed   [2]uint64 // of the hash, random: no source can aim at a set
	v6Bits int
	limits atomic.Pointer[tableLimits]
}

// NewTable returns a table of at least size entries (rounded up to a
// multiple of setWays*tableShards), with every page of it touched, so that
// its memory is resident from the start and does not grow under a flood.
func NewTable(size, ipv6Prefix int) *Table {
	t := &Table{seed: [2]uint64{rand.Uint64() | 1, rand.Uint64()}, v6Bits: ipv6Prefix}
	sets := tableCapacity(size) / minTableSize
	for i := range t.shards {
		s := make([]tableSet, sets)
		for j := range s {
			s[j].keys[0][0] = 0 // touch every page now
			s[j].entries[setWays-1].seen = 0
		}
		t.shards[i].sets = s
	}
	return t
}

// tableCapacity is the number of entries of a table of size: size rounded
// up to a multiple of minTableSize.
func tableCapacity(size int) int { return (size + minTableSize - 1) / minTableSize * minTableSize }

// Capacity returns the number of entries.
func (t *Table) Capacity() int { return tableShards * len(t.shards[0].sets) * setWays }

// setLimits installs the rates of c (its defaults applied).
func (t *Table) setLimits(c Config) {
	l := c.Limits
	nl := &tableLimits{banAfter: uint32(c.Bans.After), banWindow: int64(c.Bans.Window)}
	nl.class[ClassRegister] = newRate(l.Register)
	nl.class[ClassInvite] = newRate(l.Invite)
	nl.class[ClassOther] = newRate(l.Other)
	nl.newSource = newRate(Limit{Rate: l.NewSources.Rate / tableShards, Burst: max(1, l.NewSources.Burst/tableShards)})
	t.limits.Store(nl)
}

// Key returns the table's key for addr.
func (t *Table) Key(addr netip.Addr) srcKey {
	addr = addr.Unmap()
	k := srcKey(addr.As16())
	if addr.Is4() {
		return k
	}
	bits := t.v6Bits
	for i := range k {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			k[i] &= ^byte(0xff >> bits)
			bits = 0
		default:
			k[i] = 0
		}
	}
	if k == (srcKey{}) {
		k[15] = 1 // :: is not a source; the zero key marks free ways
	}
	return k
}

// prefix returns the prefix a key stands for.
func (t *Table) prefix(k srcKey) netip.Prefix {
	a := netip.AddrFrom16(k)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
	}
	return netip.PrefixFrom(a, t.v6Bits)
}

// Admit charges a request of class c from source k at now (ns, from the
// Guard's clock) and returns the verdict.
func (t *Table) Admit(k srcKey, c Class, now int64) Verdict {
	lim := t.limits.Load()
	h := t.hash(k)
	sh := &t.shards[h>>58] // tableShards = 64: the top 6 bits
	sh.mu.Lock()
	set := &sh.sets[h%uint64(len(sh.sets))]
	e := sh.find(set, k)
	if e == nil {
		if !lim.newSource.admit(&sh.newTat, now) {
			sh.mu.Unlock()
			return NewSourceRefused
		}
		e = sh.claim(set, k)
	}
	v := e.charge(lim, c, now)
	sh.mu.Unlock()
	return v
}

// hash mixes the key's two words with the seed (a multiply-fold, as
// wyhash does: a few ns where maphash takes three times as long), then
// folds the result once more with a fixed odd constant. One fold alone
// spreads an IPv4 address poorly for about one seed in a hundred: its
// bits sit in the top quarter of the second word, and the seed's
// multiplier can leave the hash's top bits, which pick the shard, barely
// touched by them (a shard then got none of 5,000 addresses).
func (t *Table) hash(k srcKey) uint64 {
	hi, lo := bits.Mul64(binary.LittleEndian.Uint64(k[:8])^t.seed[0], binary.LittleEndian.Uint64(k[8:])^t.seed[1])
	hi, lo = bits.Mul64(hi^lo^t.seed[1], 0x9E3779B97F4A7C15)
	return hi ^ lo
}

func (sh *shard) find(set *tableSet, k srcKey) *entry {
	for i := range set.keys {
		if set.keys[i] == k {
			return &set.entries[i]
		}
	}
	return nil
}

// claim takes a free way of set for k, or evicts the least recently seen.
func (sh *shard) claim(set *tableSet, k srcKey) *entry {
	victim := -1
	for i := range set.keys {
		if set.keys[i] == (srcKey{}) {
			victim = i
			sh.used.Add(1)
			break
		}
		if victim < 0 || set.entries[i].seen < set.entries[victim].seen {
			victim = i
		}
	}
	if set.keys[victim] != (srcKey{}) {
		sh.evictions.Add(1)
	}
	set.keys[victim] = k
	set.entries[victim] = entry{}
	return &set.entries[victim]
}

// charge counts a request of class c at now against e.
func (e *entry) charge(lim *tableLimits, c Class, now int64) Verdict {
	e.seen = now
	if sec := now / 1e9; sec != e.sec {
		e.prev = 0
		if sec == e.sec+1 {
			e.prev = e.cur
		}
		e.sec, e.cur = sec, 0
	}
	e.cur++
	if lim.class[c].admit(&e.tat[c], now) {
		return Admitted
	}
	if now-e.strkT > lim.banWindow {
		e.strkT, e.strk = now, 0
	}
	e.strk++
	if e.strk >= lim.banAfter {
		e.strk = 0
		return OverLimitBan
	}
	return OverLimit
}

// Occupancy returns the entries in use.
func (t *Table) Occupancy() int64 {
	var n int64
	for i := range t.shards {
		n += t.shards[i].used.Load()
	}
	return n
}

// Evictions returns the entries evicted for new sources so far.
func (t *Table) Evictions() uint64 {
	var n uint64
	for i := range t.shards {
		n += t.shards[i].evictions.Load()
	}
	return n
}

// Talker is a source and its current rate, for the top-talkers view.
type Talker struct {
	Source string `json:"source"`
	// Rate is its requests in the last whole second (or in the current
	// one, when that is higher).
	Rate uint32 `json:"rate"`
	// IdleSeconds is the time since its last request.
	IdleSeconds float64 `json:"idle_seconds"`
}

// Top returns the n sources with the highest current rates, highest
// first. It walks the whole table, a shard at a time.
func (t *Table) Top(n int, now int64) []Talker {
	type cand struct {
		k    srcKey
		rate uint32
		seen int64
	}
	var top []cand
	sec := now / 1e9
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for s := range sh.sets {
			set := &sh.sets[s]
			for w := range set.keys {
				e := &set.entries[w]
				if set.keys[w] == (srcKey{}) {
					continue
				}
				var r uint32
				switch e.sec {
				case sec:
					r = max(e.cur, e.prev)
				case sec - 1:
					r = e.cur
				}
				if r > 0 {
					top = append(top, cand{set.keys[w], r, e.seen})
				}
			}
		}
		sh.mu.Unlock()
		if len(top) > 4*n+1024 {
			top = trimTop(top, n, func(c cand) uint32 { return c.rate })
		}
	}
	top = trimTop(top, n, func(c cand) uint32 { return c.rate })
	out := make([]Talker, len(top))
	for i, c := range top {
		out[i] = Talker{Source: t.prefix(c.k).String(), Rate: c.rate, IdleSeconds: float64(now-c.seen) / 1e9}
	}
	return out
}

// trimTop sorts by rate, highest first, and keeps n.
func trimTop[T any](s []T, n int, rate func(T) uint32) []T {
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(rate(b), rate(a)) })
	if len(s) > n {
		s = s[:n]
	}
	return s
}
