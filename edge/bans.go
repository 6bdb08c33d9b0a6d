package edge

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Origin says who added a ban.
type Origin uint8

// The origins of bans.
const (
	OriginManual  Origin = iota // the admin API
	OriginRate                  // sustained violation of a rate limit
	OriginScanner               // a scanner's User-Agent
	numOrigins
)

var originNames = [numOrigins]string{"manual", "rate", "scanner"}

func (o Origin) String() string { return originNames[o] }

// ban is a ban's value in the lookup table.
type ban struct {
	expires int64 // on the Guard's clock, ns
	origin  Origin
}

// Ban describes a ban for the admin API.
type Ban struct {
	Prefix     string    `json:"prefix"`
	Origin     string    `json:"origin"`
	Reason     string    `json:"reason,omitempty"`
	Added      time.Time `json:"added"`
	Expires    time.Time `json:"expires"`
	TTLSeconds float64   `json:"ttl_seconds"`
}

// banRecord is what the list keeps of a ban beyond the lookup's value.
type banRecord struct {
	ban
	added  int64
	reason string
}

// ErrBanListFull is the error of an add to a full ban list.
var ErrBanListFull = errors.New("edge: ban list full")

// Bans is the ban list: prefixes with an expiry. Lookups read an immutable
// prefix table through an atomic pointer, without lock or allocation;
// changes build the next table (copy on write, the paths that change) under
// a lock. It belongs to the Guard and outlives reloads.
type Bans struct {
	clock   *clock
	mu      sync.Mutex
	recs    map[netip.Prefix]banRecord
	tbl     atomic.Pointer[bart.Table[ban]]
	count   atomic.Int64 // len(recs), for the lookup's empty fast path
	max     atomic.Int64
	version atomic.Uint64 // counts the changes, for saving only a changed list

	added, refused [numOrigins]atomic.Uint64
	expired        atomic.Uint64
}

func newBans(c *clock, maxBans int) *Bans {
	b := &Bans{clock: c, recs: map[netip.Prefix]banRecord{}}
	b.tbl.Store(new(bart.Table[ban]))
	b.max.Store(int64(maxBans))
	return b
}

// lookup returns the ban that covers addr at now, if any.
func (b *Bans) lookup(addr netip.Addr, now int64) (Origin, bool) {
	if b.count.Load() == 0 {
		return 0, false
	}
	v, ok := b.tbl.Load().Lookup(addr)
	if !ok || v.expires <= now {
		return 0, false
	}
	return v.origin, true
}

// Add bans p for ttl; an existing ban of p is replaced (its expiry
// extended or shortened). Beyond bans.max a new ban is refused with
// ErrBanListFull and counted.
func (b *Bans) Add(p netip.Prefix, ttl time.Duration, o Origin, reason string) error {
	if !p.IsValid() || ttl <= 0 {
		return fmt.Errorf("edge: invalid ban %v for %v", p, ttl)
	}
	p = banKey(p)
	now := b.clock.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, exists := b.recs[p]; !exists && int64(len(b.recs)) >= b.max.Load() {
		b.refused[o].Add(1)
		return ErrBanListFull
	}
	b.putLocked(p, banRecord{ban: ban{expires: now + int64(ttl), origin: o}, added: now, reason: reason})
	b.added[o].Add(1)
	return nil
}

// putLocked sets the ban of p (masked, unmapped).
func (b *Bans) putLocked(p netip.Prefix, r banRecord) {
	b.recs[p] = r
	b.tbl.Store(b.tbl.Load().InsertPersist(p, r.ban))
	b.count.Store(int64(len(b.recs)))
	b.version.Add(1)
}

// banKey is the form in which a ban of p is kept: IPv4-mapped prefixes
// as IPv4, masked.
func banKey(p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked()
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

// Remove lifts the ban of exactly p; it reports whether there was one.
func (b *Bans) Remove(p netip.Prefix) bool {
	p = banKey(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.recs[p]; !ok {
		return false
	}
	b.removeLocked(p)
	return true
}

func (b *Bans) removeLocked(p netip.Prefix) {
	delete(b.recs, p)
	b.tbl.Store(b.tbl.Load().DeletePersist(p))
	b.count.Store(int64(len(b.recs)))
	b.version.Add(1)
}

// Expire removes the bans expired at now and returns how many.
func (b *Bans) Expire() int {
	now := b.clock.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for p, r := range b.recs {
		if r.expires <= now {
			b.removeLocked(p)
			n++
		}
	}
	b.expired.Add(uint64(n))
	return n
}

// List returns the bans in force, the longest remaining first.
func (b *Bans) List() []Ban {
	now := b.clock.now()
	b.mu.Lock()
	out := make([]Ban, 0, len(b.recs))
	for p, r := range b.recs {
		if r.expires <= now {
			continue
		}
		out = append(out, Ban{Prefix: p.String(), Origin: r.origin.String(), Reason: r.reason,
			Added: b.clock.wall(r.added), Expires: b.clock.wall(r.expires), TTLSeconds: math.Ceil(float64(r.expires-now) / 1e9)})
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y Ban) int {
		return cmp.Or(cmp.Compare(y.TTLSeconds, x.TTLSeconds), cmp.Compare(x.Prefix, y.Prefix))
	})
	return out
}

// Active returns the bans in force by origin.
func (b *Bans) Active() [numOrigins]int {
	now := b.clock.now()
	var n [numOrigins]int
	b.mu.Lock()
	for _, r := range b.recs {
		if r.expires > now {
			n[r.origin]++
		}
	}
	b.mu.Unlock()
	return n
}
