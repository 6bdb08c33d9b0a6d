package health

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/balancer"
)

// evidence records whether a response came back from a target since the
// checker last looked: evidence of life. ObserveResponse sets seen when a
// response (other than 503) arrives from the target; the checker clears it
// when a check round starts. The workers load it and store only when it is
// clear, so a busy target's flag is written once per round, not once per
// response; the padding keeps it on a cache line of its own.
type evidence struct {
	seen atomic.Bool
	_    [60]byte
}

// observed is the entry of one probed target in the index ObserveResponse
// reads. Entries are immutable once published (publishObserved builds new
// ones); what they point to is what survives a rebuild.
type observed struct {
	ev      *evidence
	passive *passiveSlot // nil when the passive check is off
	next    *observed    // another target at the same address
}

// addrIndex maps the address of every probed target to its entry: an
// open-addressing table, immutable once published, at most half full, with
// a cheap hash of the address. ObserveResponse runs for every relayed
// response; a Go map keyed by netip.AddrPort costs it about 20 ns per
// lookup (the key's hash is generic), this table a few.
type addrIndex struct {
	mask  uint64
	slots []addrSlot
}

type addrSlot struct {
	addr netip.AddrPort // zero: empty
	o    *observed
}

// newAddrIndex returns an empty index sized for n addresses.
func newAddrIndex(n int) *addrIndex {
	size := 8
	for size < 2*n {
		size *= 2
	}
	return &addrIndex{mask: uint64(size - 1), slots: make([]addrSlot, size)}
}

// addrHash mixes an address and port. An IPv4 address is read with As4,
// which is much cheaper than As16 (most upstreams are IPv4).
func addrHash(a netip.AddrPort) uint64 {
	ip := a.Addr()
	var h uint64
	if ip.Is4() {
		b := ip.As4()
		h = uint64(binary.LittleEndian.Uint32(b[:]))
	} else {
		b := ip.As16()
		h = (binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])) * 0x9e3779b97f4a7c15
	}
	h ^= uint64(a.Port()) << 32
	h *= 0xff51afd7ed558ccd // fmix64 of MurmurHash3
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// get returns the entry of addr (unmapped), or nil.
func (x *addrIndex) get(addr netip.AddrPort) *observed {
	for i := addrHash(addr) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.addr == addr {
			return s.o
		}
		if !s.addr.IsValid() {
			return nil
		}
	}
}

// add appends o to the entries of addr. Only before publication.
func (x *addrIndex) add(addr netip.AddrPort, o *observed) {
	for i := addrHash(addr) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.addr == addr {
			o.next = s.o.next
			s.o.next = o
			return
		}
		if !s.addr.IsValid() {
			s.addr, s.o = addr, o
			return
		}
	}
}

// publishObserved rebuilds the address index of the observed targets: every
// probed target, with its passive detector when the passive check is on
// (kept across an Update when its settings did not change). Called with
// c.mu held.
func (c *Checker) publishObserved() {
	idx := newAddrIndex(len(c.targets))
	n := 0
	for _, t := range c.targets {
		if t.probe.NeverProbe {
			t.passive = nil
			continue
		}
		if t.ev == nil {
			t.ev = new(evidence)
		}
		c.updatePassive(t)
		idx.add(t.addr, &observed{ev: t.ev, passive: t.passive})
		n++
	}
	if n == 0 {
		idx = nil // health checks off: ObserveResponse returns at once
	}
	c.observed.Store(idx)
}

// updatePassive gives t the passive 503 detector its settings ask for.
func (c *Checker) updatePassive(t *target) {
	if t.probe.PassiveCount == 0 {
		t.passive = nil
		return
	}
	if t.passive != nil && t.passive.count == t.probe.PassiveCount && t.passive.window == t.probe.PassiveWindow {
		return
	}
	t.passive = newPassiveSlot(t)
	if t.health == balancer.Down {
		t.passive.tripped.Store(true) // rearmed when probes bring it up
	}
}

// ObserveResponse is for the fast path to call with the source address and
// status code of every response it relays (fastpath.ResponseObserver). It
// finds the probed target at that address (a hash and a probe of a small
// table) and records:
//
//   - any status but 503: evidence of life. A check round of the target
//     passes when a response arrives from it after the round started, so a
//     busy target needs no probe, and one that answers calls but not
//     OPTIONS is not marked down while it carries traffic (see the package
//     documentation). The cost is an atomic load, and a store once per
//     round.
//   - 503, with the passive check on: the burst detector (lock-free, see
//     Settings.Passive503). A 503 is not evidence of life: the target says
//     it cannot serve.
//
// It does not allocate and never blocks. Targets that are never probed are
// not watched: nothing would read what was recorded, or bring them back.
func (c *Checker) ObserveResponse(from netip.AddrPort, status int) {
	idx := c.observed.Load()
	if idx == nil {
		return
	}
	for o := idx.get(netip.AddrPortFrom(from.Addr().Unmap(), from.Port())); o != nil; o = o.next {
		if status != 503 {
			if !o.ev.seen.Load() {
				o.ev.seen.Store(true)
			}
			continue
		}
		if o.passive != nil {
			c.record503(o.passive)
		}
	}
}
