package edge

import (
	"net/netip"
	"slices"
	"time"
)

// gateways are the call-rate caps in force, by upstream address.
type gateways struct {
	mode       Mode
	retryAfter uint32
	caps       map[netip.AddrPort]*gatewayCap
}

// gatewayCap is one upstream's cap.
type gatewayCap struct {
	b   sharedBucket
	ctr *labelCounter
}

// buildGateways resolves the caps of c against the upstreams (by ID,
// address or DNS name; each address of a name has a cap of its own). A cap whose upstream is not (or no longer) configured caps
// nothing; a cap that stays keeps its bucket. Called with g.mu held.
func (g *Guard) buildGateways(c GatewaysConfig) *gateways {
	old := g.gates.Load()
	gw := &gateways{mode: c.Mode, retryAfter: uint32(c.RetryAfter / time.Second), caps: map[netip.AddrPort]*gatewayCap{}}
	if c.Mode == Off {
		return gw
	}
	for _, cp := range c.Caps {
		r := newRate(Limit{Rate: cp.CPS, Burst: cp.Burst})
		if len(g.upstreams) > 0 && !slices.ContainsFunc(g.upstreams, func(u Upstream) bool { return u.names(cp.Upstream) }) {
			g.logger.Warn("edge: gateways.caps names no upstream in use; it caps nothing", "upstream", cp.Upstream)
		}
		for _, u := range g.upstreams {
			if !u.names(cp.Upstream) {
				continue
			}
			gc := &gatewayCap{ctr: g.labelLocked("call_rate", cp.Upstream)}
			gc.b.r = r
			if old != nil {
				if prev := old.caps[u.Addr]; prev != nil && prev.b.r == r {
					gc.b.tat.Store(prev.b.tat.Load())
				}
			}
			gw.caps[u.Addr] = gc
		}
	}
	return gw
}

// AdmitCall is the core's CallAdmitter (fastpath.Engine.SetCallAdmitter):
// it charges a new call to upstream's cap. Over the cap, the call is
// refused with gateways.retry_after (enforce) or counted and admitted
// (log_only). An upstream without a cap admits every call.
func (g *Guard) AdmitCall(upstream netip.AddrPort) (retryAfter uint32, ok bool) {
	if !g.rules.Load().on {
		return 0, true
	}
	gw := g.gates.Load()
	c := gw.caps[upstream]
	if c == nil {
		return 0, true
	}
	if fits, _ := c.b.admit(g.clock.now()); fits {
		return 0, true
	}
	if !countLabel(c.ctr, gw.mode) {
		return 0, true
	}
	return gw.retryAfter, false
}
