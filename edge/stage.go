package edge

import (
	"net/netip"

	"github.com/viaduct-sip/viaduct/transport"
)

// Stage is the transport.Stage of the edge: it wraps each worker's
// Handler with the rules, before the core parses a byte.
func (g *Guard) Stage(next transport.Handler, _ transport.Position) transport.Handler {
	h := &stageHandler{g: g, next: next, ctr: new(counters)}
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
	switch h.g.inspect(r, msg, src.Addr.Addr().Unmap(), h.ctr) {
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
func (g *Guard) inspect(r *rules, msg []byte, addr netip.Addr, ctr *counters) action {
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
	if r.scannerMode != Off && g.scanner(r, msg, addr) {
		return drop
	}
	if r.limitsMode == Off {
		return pass
	}
	return g.limit(r, msg, addr, flags, now, ctr)
}

// scanner applies the scanner rule; it reports whether to drop.
func (g *Guard) scanner(r *rules, msg []byte, addr netip.Addr) bool {
	ua := userAgent(msg)
	if ua == nil {
		return false
	}
	i := r.scanners.match(ua)
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
		} else {
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
