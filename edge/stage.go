package edge

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"

	"github.com/viaduct-sip/viaduct/transport"
)

// Stage is the transport.Stage of the edge: it wraps each worker's
// Handler with the rules, before the core parses a byte.
func (g *Guard) Stage(next transport.Handler, _ transport.Position) transport.Handler {
	h := &stageHandler{g: g, next: next, ctr: new(counters), uas: newUACache()}
	g.mu.Lock()
	g.workers = append(g.workers, h.ctr)
	g.mu.Unlock()
	return h
}

// stageHandler is the edge on one worker.
type stageHandler struct {
	g    *Guard
	next transport.Handler
	ctr  *counters
	uas  *uaCache
	// own are the Outbounds of the 503s this handler answered itself,
	// whose Sent the core is not to hear of (a batch's worth at most).
	own []*transport.Outbound
}

// action is what the rules decide for a message.
type action uint8

const (
	pass action = iota
	drop
	reply // 503 with Retry-After
)

// Handle implements transport.Handler.
func (h *stageHandler) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	r := h.g.rules.Load()
	if !r.on {
		return h.next.Handle(msg, src, out)
	}
	switch h.g.inspect(r, msg, src.Addr.Addr().Unmap(), h.ctr, h.uas) {
	case pass:
		h.ctr.admitted.Add(1)
		return h.next.Handle(msg, src, out)
	case reply:
		if appendRetryLater(out, msg, src, r.retryAfter) {
			h.ctr.replies.Add(1)
			h.own = append(h.own, out)
			return true
		}
	}
	return false
}

// Sent implements transport.Handler.
func (h *stageHandler) Sent(out *transport.Outbound, err error) {
	for i, o := range h.own {
		if o == out {
			h.own[i] = h.own[len(h.own)-1]
			h.own = h.own[:len(h.own)-1]
			return
		}
	}
	h.next.Sent(out, err)
}

// inspect runs the rules over one message from addr, in order: upstreams
// pass; the access lists and the bans apply to every message; responses
// and trusted sources pass; then the scanner rule and the rate limits.
func (g *Guard) inspect(r *rules, msg []byte, addr netip.Addr, ctr *counters, uas *uaCache) action {
	flags := r.access.lookup(addr)
	if flags&flagUpstream != 0 {
		return pass
	}
	if ru, hit := accessRule(r, flags); hit && ctr.count(ru, r.accessMode) {
		return drop
	}
	now := g.clock.now()
	if o, banned := g.bans.lookup(addr, now); banned {
		ctr.count(banRule(o), Enforce)
		return drop
	}
	if flags&flagTrusted != 0 || isResponse(msg) {
		return pass
	}
	if r.scannerMode != Off && g.scanner(r, msg, addr, uas) {
		return drop
	}
	if r.limitsMode == Off {
		return pass
	}
	return g.limit(r, msg, addr, flags, now, ctr)
}

// scanner applies the scanner rule; it reports whether to drop.
func (g *Guard) scanner(r *rules, msg []byte, addr netip.Addr, uas *uaCache) bool {
	ua := userAgent(msg)
	if len(ua) == 0 {
		return false
	}
	i := uas.match(r.scanners, ua)
	if i < 0 || !inHeaders(msg, ua) || !countLabel(r.scannerCtr[i], r.scannerMode) {
		return false
	}
	if r.scannerBan {
		g.autoBan(r, g.table.Key(addr), OriginScanner, "User-Agent "+r.scanners.names[i])
	}
	return true
}

// limit applies the per-source rate limits.
func (g *Guard) limit(r *rules, msg []byte, addr netip.Addr, flags uint8, now int64, ctr *counters) action {
	k := g.table.Key(addr)
	c := classOf(msg)
	switch g.table.Admit(k, c, now) {
	case Admitted:
		return pass
	case NewSourceRefused:
		if ctr.count(ruleNewSource, r.limitsMode) {
			return drop
		}
		return pass
	case OverLimitBan:
		if r.limitsMode == Enforce {
			g.autoBan(r, k, OriginRate, "over the "+c.String()+" limit")
		} else if r.bansMode != Off {
			g.wouldBan[OriginRate].Add(1)
		}
	}
	if !ctr.count(rateRule(c), r.limitsMode) {
		return pass
	}
	if r.reply503 && flags&flagReply503 != 0 {
		return reply
	}
	return drop
}

// uaCacheSlots is the size of a worker's User-Agent cache.
const uaCacheSlots = 64

// uaCache remembers the User-Agent values a worker saw last and the
// scanner pattern each matched (-1: none), direct-mapped by hash: the
// phones of a deployment have a few dozen distinct User-Agents, matched
// once each instead of at every request. It belongs to one worker.
type uaCache struct {
	scanners *scannerMatcher // the patterns the verdicts are of
	seed     uint64
	slots    [uaCacheSlots]uaSlot
}

type uaSlot struct {
	n       uint8 // len(ua); 0: empty
	verdict int8
	ua      [maxUserAgent]byte
}

func newUACache() *uaCache { return &uaCache{seed: rand.Uint64()} }

// uaHash hashes a User-Agent by its length and its first, middle and last
// eight bytes: enough to tell phone models apart (a collision only costs a
// match), cheaper than hashing every byte.
func uaHash(ua []byte, seed uint64) uint64 {
	var a, b, c uint64
	if n := len(ua); n >= 8 {
		a, b, c = binary.LittleEndian.Uint64(ua), binary.LittleEndian.Uint64(ua[n-8:]), binary.LittleEndian.Uint64(ua[(n-8)/2:])
	} else {
		for i, x := range ua {
			a |= uint64(x) << (8 * i)
		}
	}
	hi, lo := bits.Mul64(a^seed, b^c^uint64(len(ua))^0x9e3779b97f4a7c15)
	return hi ^ lo
}

// match is m.match(ua) through the cache.
func (c *uaCache) match(m *scannerMatcher, ua []byte) int {
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	if c.scanners != m { // a reload: the verdicts are of other patterns
		c.scanners = m
		c.slots = [uaCacheSlots]uaSlot{}
	}
	s := &c.slots[uaHash(ua, c.seed)%uaCacheSlots]
	if int(s.n) == len(ua) && bytes.Equal(s.ua[:s.n], ua) {
		return int(s.verdict)
	}
	v := m.match(ua)
	s.n, s.verdict = uint8(len(ua)), int8(v)
	copy(s.ua[:], ua)
	return v
}
