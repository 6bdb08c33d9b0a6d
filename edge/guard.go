package edge

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// Upstream is an upstream as the edge knows it: always trusted, and the
// key of its call-rate cap, which names it by ID, by address, or by the
// name it was resolved from (a DNS upstream as written in upstreams: then
// every address of it has the cap).
type Upstream struct {
	ID   string
	Addr netip.AddrPort
	Name string
}

// names reports whether the configuration's name s names u.
func (u Upstream) names(s string) bool {
	return s == u.ID || s == u.Addr.String() || (u.Name != "" && s == u.Name)
}

// Guard is the edge's shared state: the rules in force (swapped whole on
// reload), the rate table and the ban list (kept across reloads), and the
// counters. Its Stage runs the rules on every transport worker, Gate on
// stream connections, AdmitCall on new calls.
type Guard struct {
	clock  clock
	table  *Table
	bans   *Bans
	logger *slog.Logger

	rules atomic.Pointer[rules]
	gates atomic.Pointer[gateways]

	mu        sync.Mutex // serializes changes; guards what follows
	prepared  *Prepared  // the configuration in force
	upstreams []Upstream
	workers   []*counters
	labels    map[[2]string]*labelCounter

	gateCtr   counters // the Gate's, shared by the accepting goroutines
	wouldBan  [numOrigins]atomic.Uint64
	banLogs   logLimiter
	blockSize atomic.Int64

	savedVersion atomic.Uint64 // the ban list's version last saved or restored
}

// rules is the configuration as the workers read it.
type rules struct {
	on                                            bool
	access                                        *accessTable
	accessMode, limitsMode, bansMode, scannerMode Mode
	scanners                                      *scannerMatcher
	scannerCtr                                    []*labelCounter
	scannerBan                                    bool
	banTTL                                        time.Duration
	reply503                                      bool
	retryAfter                                    uint32
}

// Prepared is a configuration checked and read (its blocklist file
// included), ready to install: Guard.Prepare, then Guard.Install, so that
// a reload refuses a bad edge section before anything changes.
type Prepared struct {
	cfg   Config
	lists accessLists
}

// Config returns the configuration, defaults applied.
func (p *Prepared) Config() Config { return p.cfg }

// Prepare applies the defaults to c, validates it and reads its blocklist
// file. Errors are *config.FieldError values naming the key below edge.
func Prepare(c Config) (*Prepared, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &Prepared{cfg: c}
	a := c.Access
	p.lists.allow, _ = ParsePrefixes("access.allow", a.Allow)
	p.lists.deny, _ = ParsePrefixes("access.deny", a.Deny)
	p.lists.trusted, _ = ParsePrefixes("access.trusted", a.Trusted)
	p.lists.reply, _ = ParsePrefixes("limits.reply_networks", c.Limits.ReplyNetworks)
	if a.BlocklistFile != "" {
		bl, err := ReadBlocklist(a.BlocklistFile)
		if err != nil {
			return nil, config.Errorf("access.blocklist_file", "%v", err)
		}
		p.lists.block = bl
	}
	return p, nil
}

// New returns a Guard over a prepared configuration: the rate table is
// sized by it, once.
func New(p *Prepared, logger *slog.Logger) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{clock: newClock(), logger: logger, labels: map[[2]string]*labelCounter{}}
	g.table = NewTable(p.cfg.Limits.TableSize, p.cfg.Limits.IPv6Prefix)
	g.bans = newBans(&g.clock, p.cfg.Bans.Max)
	g.Install(p)
	return g
}

// RestartOnly returns the keys (below edge) whose change in next a running
// Guard cannot apply: the rate table's geometry, as built at start.
func (g *Guard) RestartOnly(next *Prepared) []string {
	var out []string
	l := next.cfg.Limits
	if g.table.Capacity() != tableCapacity(l.TableSize) {
		out = append(out, "edge.limits.table_size")
	}
	if g.table.v6Bits != l.IPv6Prefix {
		out = append(out, "edge.limits.ipv6_prefix")
	}
	return out
}

// Install puts a prepared configuration in force, at once for every
// worker. The ban list and the table's sources stay.
func (g *Guard) Install(p *Prepared) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prepared = p
	g.table.setLimits(p.cfg)
	g.bans.max.Store(int64(p.cfg.Bans.Max))
	g.blockSize.Store(int64(len(p.lists.block)))
	g.installLocked()
}

// SetUpstreams tells the Guard the upstreams: always trusted, and the
// targets of the call-rate caps. Call it at start and whenever the
// upstreams change (reload, DNS refresh).
func (g *Guard) SetUpstreams(ups []Upstream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.upstreams = append([]Upstream(nil), ups...)
	g.installLocked()
}

// installLocked builds the rules and the gateway caps from the prepared
// configuration and the upstreams.
func (g *Guard) installLocked() {
	c := g.prepared.cfg
	lists := g.prepared.lists
	lists.upstream = nil
	for _, u := range g.upstreams {
		a := u.Addr.Addr().Unmap()
		lists.upstream = append(lists.upstream, netip.PrefixFrom(a, a.BitLen()))
	}
	r := &rules{
		on: c.On(), access: lists.build(),
		accessMode: c.Access.Mode, limitsMode: c.Limits.Mode, bansMode: c.Bans.Mode, scannerMode: c.Scanners.Mode,
		scanners: newScannerMatcher(c.Scanners.UserAgents), scannerBan: *c.Scanners.Ban, banTTL: c.Bans.TTL,
		reply503: c.Limits.Reply == "503", retryAfter: uint32(c.Limits.RetryAfter / time.Second),
	}
	for _, ua := range c.Scanners.UserAgents {
		r.scannerCtr = append(r.scannerCtr, g.labelLocked("scanner", ua))
	}
	g.rules.Store(r)
	g.gates.Store(g.buildGateways(c.Gateways))
}

// labelLocked returns the counter of a labelled rule, made once: counts
// survive reloads that drop and bring back a rule.
func (g *Guard) labelLocked(reason, name string) *labelCounter {
	k := [2]string{reason, name}
	l := g.labels[k]
	if l == nil {
		l = &labelCounter{reason: reason, rule: name}
		g.labels[k] = l
	}
	return l
}

// Bans returns the ban list.
func (g *Guard) Bans() *Bans { return g.bans }

// Table returns the rate table.
func (g *Guard) Table() *Table { return g.table }

// Run runs the Guard's clock, expires bans every second and saves a
// changed ban list every stateEvery (bans.state_file) until ctx is done.
func (g *Guard) Run(ctx context.Context) {
	go g.clock.run(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastSave := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			g.bans.Expire()
			if now.Sub(lastSave) >= stateEvery {
				lastSave = now
				if err := g.SaveBans(); err != nil {
					g.logger.Warn("saving the ban list failed", "err", err)
				}
			}
		}
	}
}

// autoBan bans the source k for bans.ttl (bans.mode enforce) or counts the
// ban it would have added (log_only).
func (g *Guard) autoBan(r *rules, k srcKey, o Origin, why string) {
	switch r.bansMode {
	case Off:
		return
	case LogOnly:
		g.wouldBan[o].Add(1)
		return
	}
	p := g.table.prefix(k)
	if err := g.bans.Add(p, r.banTTL, o, why); err != nil {
		return // counted as refused
	}
	if g.banLogs.allow(g.clock.now()) {
		g.logger.Info("edge: source banned", "source", p.String(), "origin", o.String(), "reason", why, "ttl", r.banTTL)
	}
}

// maxBanLogsPerSecond bounds the log lines of automatic bans: an attack
// from many sources is counted in full (viaduct_edge_bans_added_total) but
// logged in part.
const maxBanLogsPerSecond = 10

// logLimiter admits maxBanLogsPerSecond lines a second (roughly: the
// window's reset races, which can only let a few more through).
type logLimiter struct {
	sec, n atomic.Int64
}

func (l *logLimiter) allow(now int64) bool {
	if s := now / 1e9; l.sec.Load() != s {
		l.sec.Store(s)
		l.n.Store(0)
	}
	return l.n.Add(1) <= maxBanLogsPerSecond
}

// Gate implements transport.ConnGate: a stream connection from src is
// accepted unless an access list or a ban drops src (the upstreams are
// always accepted). Counted like datagrams.
func (g *Guard) Gate(src netip.AddrPort) bool {
	r := g.rules.Load()
	if !r.on {
		return true
	}
	addr := src.Addr().Unmap()
	flags := r.access.lookup(addr)
	if flags&flagUpstream != 0 {
		return true
	}
	if ru, hit := accessRule(r, flags); hit && g.gateCtr.count(ru, r.accessMode) {
		return false
	}
	if o, banned := g.bans.lookup(addr, g.clock.now()); banned {
		g.gateCtr.count(banRule(o), Enforce)
		return false
	}
	return true
}

// accessRule returns the access rule that drops a source with flags.
func accessRule(r *rules, flags uint8) (rule, bool) {
	if r.accessMode == Off {
		return 0, false
	}
	switch {
	case r.access.hasAllow && flags&(flagAllow|flagTrusted) == 0:
		return ruleAllow, true
	case flags&flagDeny != 0:
		return ruleDeny, true
	case flags&flagBlock != 0:
		return ruleBlocklist, true
	}
	return 0, false
}

// Summary describes the Guard's state in one line, for the start log.
func (g *Guard) Summary() string {
	g.mu.Lock()
	c := g.prepared.cfg
	g.mu.Unlock()
	if !c.On() {
		return "off"
	}
	l := c.Limits
	return fmt.Sprintf("access=%s(allow %d deny %d trusted %d blocklist %d) limits=%s(register %g/s burst %d, invite %g/s burst %d, other %g/s burst %d, table %d, new_sources %g/s) bans=%s(after %d in %v, ttl %v) scanners=%s(%d) gateways=%s(%d caps)",
		c.Access.Mode, len(c.Access.Allow), len(c.Access.Deny), len(c.Access.Trusted), g.blockSize.Load(),
		l.Mode, l.Register.Rate, l.Register.Burst, l.Invite.Rate, l.Invite.Burst, l.Other.Rate, l.Other.Burst, g.table.Capacity(), l.NewSources.Rate,
		c.Bans.Mode, c.Bans.After, c.Bans.Window, c.Bans.TTL, c.Scanners.Mode, len(c.Scanners.UserAgents), c.Gateways.Mode, len(c.Gateways.Caps))
}
