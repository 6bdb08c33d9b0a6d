package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
)

// Defaults applied by New to Config fields left at their zero value.
const (
	// DefaultInterval is the time between two refreshes of the DNS
	// answers. The standard library's resolver does not expose record
	// TTLs, so the interval is configured rather than taken from DNS.
	DefaultInterval = 30 * time.Second
	// DefaultRetry is the time before the next attempt while a DNS source
	// has no answer at all yet (at most Interval).
	DefaultRetry = 5 * time.Second
	// DefaultTimeout bounds one lookup (an SRV query, or the A and AAAA
	// queries of one host name).
	DefaultTimeout = 5 * time.Second
	// MinInterval is the shortest refresh interval accepted.
	MinInterval = 100 * time.Millisecond
	// MaxPriority caps the priority of a target found through SRV (the
	// record's priority plus the source's): SRV priorities are 16 bits.
	MaxPriority = 65535
	// maxParallel bounds the lookups in flight at once.
	maxParallel = 8
)

// Config configures a Watcher.
type Config struct {
	// Interval is the time between two refreshes (default DefaultInterval).
	Interval time.Duration
	// Retry is the time between attempts while some DNS source has never
	// been resolved (default DefaultRetry, at most Interval).
	Retry time.Duration
	// Timeout bounds each lookup (default DefaultTimeout).
	Timeout time.Duration
	// Network selects the address families of host names: "ip" (A and
	// AAAA, the default), "ip4" (A only) or "ip6" (AAAA only). Choose the
	// families Viaduct has listen sockets for.
	Network string
	// Resolver is the resolver used (default net.DefaultResolver). Tests
	// point a net.Resolver with PreferGo and Dial at their own server.
	Resolver *net.Resolver
	// Logger receives lookup failures and answer changes; nil discards.
	Logger *slog.Logger
}

// Target is a balancer target together with the index, in the source
// list given to Watcher.Set, of the source it came from (so that the caller
// can attach that source's other settings, such as health checks).
type Target struct {
	balancer.Target
	Source int
}

// ApplyFunc installs a resolved target list: typically balancer.Pool.Update,
// then health.Checker.Update, then the fast path's upstream set. It is called
// with the Watcher's lock held, so calls never overlap. An error leaves the
// Watcher's state as it was before the call.
type ApplyFunc func(targets []Target) error

// Stats counts a Watcher's activity since it was created.
type Stats struct {
	// Refreshes counts completed refreshes (periodic or by Set).
	Refreshes uint64
	// Changes counts target lists applied: by Set, and by refreshes whose
	// answer differed from the one applied before.
	Changes uint64
	// LookupFailures counts failed lookups (SRV or host name), whether a
	// last good answer was then kept or not.
	LookupFailures uint64
}

// Watcher turns sources (addresses, host names, SRV names) into balancer
// targets and keeps them up to date: Set resolves a new source list (at start
// and on reload), Run refreshes the DNS answers periodically. Lookups use
// the standard library's resolver on the Watcher's goroutines, never on the
// fast path. A lookup that fails keeps the last good answer of that name;
// a name that has never resolved contributes no target and is retried every
// Retry. Set, Refresh and Run are safe for concurrent use and serialized.
type Watcher struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	sources []Source
	hosts   map[string][]netip.Addr // last good answer per host name
	srvs    map[string][]srvRecord  // last good answer per SRV name
	applied []Target
	missing bool // some DNS source had no answer at the last resolution

	refreshes, changes, failures atomic.Uint64
}

// srvRecord is an SRV answer with its target normalized (lower case,
// without the trailing dot).
type srvRecord struct {
	Target                 string
	Port, Priority, Weight uint16
}

// query is the name whose addresses are asked for: the target is a fully
// qualified name from DNS, so it is asked as the absolute name (no search
// domain is tried).
func (r srvRecord) query() string { return r.Target + "." }

// New validates cfg, applies its defaults and returns a Watcher with no
// sources.
func New(cfg Config) (*Watcher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg, log: cfg.Logger}, nil
}

// withDefaults validates c and fills its zero fields with the defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Interval < MinInterval {
		return c, fmt.Errorf("resolve: interval %v: at least %v", c.Interval, MinInterval)
	}
	if c.Retry <= 0 {
		c.Retry = DefaultRetry
	}
	c.Retry = min(c.Retry, c.Interval)
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	switch c.Network {
	case "":
		c.Network = "ip"
	case "ip", "ip4", "ip6":
	default:
		return c, fmt.Errorf("resolve: network %q: want ip, ip4 or ip6", c.Network)
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Config returns the configuration in use, with defaults applied.
func (w *Watcher) Config() Config { return w.cfg }

// Stats returns the Watcher's counters.
func (w *Watcher) Stats() Stats {
	return Stats{Refreshes: w.refreshes.Load(), Changes: w.changes.Load(), LookupFailures: w.failures.Load()}
}

// Targets returns a copy of the targets last applied.
func (w *Watcher) Targets() []Target {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.applied)
}

// Set resolves sources and calls apply with the result; when apply succeeds,
// sources become the Watcher's list, refreshed by Run. Names that the
// previous list also had and whose lookup fails now keep their last good
// answer. On error (ctx done, or apply's error) nothing changes. Set is how
// the first list is installed and how a reload replaces it.
func (w *Watcher) Set(ctx context.Context, sources []Source, apply ApplyFunc) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.resolve(ctx, sources)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("resolve upstreams: %w", err)
	}
	if err := apply(r.targets); err != nil {
		return err
	}
	w.logChange(w.applied, r)
	w.commit(sources, r)
	return nil
}

// Refresh resolves the current sources again and, when the answer differs
// from the one last applied, calls apply with it. It reports whether apply
// was called and succeeded. A failing apply is returned and the old
// answer stays applied (the next refresh tries again).
func (w *Watcher) Refresh(ctx context.Context, apply ApplyFunc) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.resolve(ctx, w.sources)
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("refresh upstreams: %w", err)
	}
	if sameTargets(r.targets, w.applied) {
		w.commit(w.sources, r)
		return false, nil
	}
	if err := apply(r.targets); err != nil {
		return false, fmt.Errorf("apply refreshed upstreams: %w", err)
	}
	w.logChange(w.applied, r)
	w.commit(w.sources, r)
	return true, nil
}

// Run refreshes every Interval (every Retry while a DNS source has no
// answer yet) until ctx is done, applying changed answers with apply.
// Errors are logged. With no DNS source a refresh costs nothing.
func (w *Watcher) Run(ctx context.Context, apply ApplyFunc) {
	t := time.NewTimer(w.next())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := w.Refresh(ctx, apply); err != nil && ctx.Err() == nil {
			w.log.Error("upstream refresh not applied; the previous upstreams stay", "err", err)
		}
		t.Reset(w.next())
	}
}

func (w *Watcher) next() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.missing {
		return w.cfg.Retry
	}
	return w.cfg.Interval
}

// result is the outcome of resolving a source list: the targets and the
// caches to commit if they are applied.
type result struct {
	targets []Target
	hosts   map[string][]netip.Addr
	srvs    map[string][]srvRecord
	missing bool
	dups    []string
}

func (w *Watcher) commit(sources []Source, r result) {
	w.sources = slices.Clone(sources)
	w.hosts, w.srvs = r.hosts, r.srvs
	w.applied = r.targets
	w.missing = r.missing
	w.refreshes.Add(1)
}

// resolve looks up every DNS name of sources (SRV names first, then the
// host names they and the sources name) and builds the target list.
func (w *Watcher) resolve(ctx context.Context, sources []Source) result {
	r := result{hosts: map[string][]netip.Addr{}, srvs: map[string][]srvRecord{}}
	var srvNames, hostNames []string
	// Names are keyed as they are asked: as written (Source.query), and
	// an SRV record's target as the absolute name it is.
	for _, s := range sources {
		switch s.Kind {
		case KindSRV:
			srvNames = appendNew(srvNames, s.query())
		case KindHost:
			hostNames = appendNew(hostNames, s.query())
		}
	}
	srvAns := parallel(srvNames, func(name string) ([]srvRecord, error) { return w.cfg.lookupSRV(ctx, name) })
	failedSRV := keepLastGood(w, "DNS SRV lookup", "records", srvNames, srvAns, w.srvs, r.srvs)
	for _, name := range srvNames {
		for _, rec := range r.srvs[name] {
			hostNames = appendNew(hostNames, rec.query())
		}
	}
	hostAns := parallel(hostNames, func(name string) ([]netip.Addr, error) { return w.cfg.lookupHost(ctx, name) })
	failedHost := keepLastGood(w, "DNS lookup", "addresses", hostNames, hostAns, w.hosts, r.hosts)

	seenID := map[string]int{}
	seenAddr := map[netip.AddrPort]int{}
	add := func(src int, t balancer.Target) {
		if t.ID == "" {
			t.ID = balancer.DefaultID(t.Transport, t.Addr)
		}
		j, dup := seenID[t.ID]
		if !dup {
			j, dup = seenAddr[t.Addr]
		}
		if dup {
			r.dups = append(r.dups, fmt.Sprintf("%s from %s (already from %s)", t.ID, sources[src], sources[j]))
			return
		}
		seenID[t.ID], seenAddr[t.Addr] = src, src
		r.targets = append(r.targets, Target{Target: t, Source: src})
	}
	for i, s := range sources {
		tr := s.transport()
		switch s.Kind {
		case KindAddr:
			add(i, balancer.Target{ID: s.ID, Addr: s.Addr, Transport: tr, Weight: weightOr(s.Weight), Priority: s.Priority, Admin: s.Admin})
		case KindHost:
			if failedHost[s.query()] {
				r.missing = true
			}
			for _, a := range r.hosts[s.query()] {
				add(i, balancer.Target{Addr: netip.AddrPortFrom(a, s.port()), Transport: tr, Weight: weightOr(s.Weight), Priority: s.Priority, Admin: s.Admin})
			}
		case KindSRV:
			if failedSRV[s.query()] {
				r.missing = true
			}
			recs := r.srvs[s.query()]
			weights := groupWeights(recs)
			for k, rec := range recs {
				if failedHost[rec.query()] {
					r.missing = true
				}
				addrs := r.hosts[rec.query()]
				for _, a := range addrs {
					add(i, balancer.Target{Addr: netip.AddrPortFrom(a, rec.Port), Transport: tr,
						Weight: splitWeight(weights[k], len(addrs)), Priority: min(s.Priority+int(rec.Priority), MaxPriority), Admin: s.Admin})
				}
			}
		}
	}
	return r
}

// groupWeights maps the weights of recs (sorted by priority) with
// SRVWeights, one priority group at a time.
func groupWeights(recs []srvRecord) []int {
	out := make([]int, 0, len(recs))
	for i := 0; i < len(recs); {
		j := i
		var ws []uint16
		for ; j < len(recs) && recs[j].Priority == recs[i].Priority; j++ {
			ws = append(ws, recs[j].Weight)
		}
		out = append(out, SRVWeights(ws)...)
		i = j
	}
	return out
}

func weightOr(w int) int {
	if w == 0 {
		return balancer.DefaultWeight
	}
	return w
}

// lookupSRV queries the SRV records of name, as written (a trailing dot
// only if the caller gives one), and returns them sorted by
// priority, then target and port (the order does not matter to the
// balancer; a fixed one makes answers comparable). Records whose target is
// "." (RFC 2782: service not available) or whose port is 0 are left out.
func (c *Config) lookupSRV(ctx context.Context, name string) ([]srvRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	_, recs, err := c.Resolver.LookupSRV(ctx, "", "", name)
	if err != nil {
		return nil, err
	}
	out := make([]srvRecord, 0, len(recs))
	for _, r := range recs {
		t := strings.ToLower(strings.TrimSuffix(r.Target, "."))
		if t == "" || r.Port == 0 {
			continue
		}
		out = append(out, srvRecord{Target: t, Port: r.Port, Priority: r.Priority, Weight: r.Weight})
	}
	slices.SortFunc(out, func(a, b srvRecord) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), strings.Compare(a.Target, b.Target),
			cmp.Compare(a.Port, b.Port), cmp.Compare(b.Weight, a.Weight))
	})
	out = slices.CompactFunc(out, func(a, b srvRecord) bool { return a.Priority == b.Priority && a.Target == b.Target && a.Port == b.Port })
	return out, nil
}

// lookupHost returns the addresses of name (A and/or AAAA as
// Config.Network says), unmapped, sorted and without duplicates. name is
// asked as given, so the resolver applies the system's rules: a name
// without a trailing dot is looked up in the hosts file first (as
// nsswitch.conf says) and then in DNS with the search domains; a name with
// one only in DNS, as that absolute name.
func (c *Config) lookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	as, err := c.Resolver.LookupNetIP(ctx, c.Network, name)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		a = a.Unmap().WithZone("")
		if a.IsValid() && !a.IsUnspecified() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no usable address", Name: name, IsNotFound: true}
	}
	return out, nil
}

// keepLastGood stores each name's answer in into. A failed lookup is
// counted and keeps the name's last good answer from old; a name that has
// never resolved is logged and returned in the failed set, so it gives no
// upstream until it resolves. what names the lookup in the log, countKey
// the log key of the answer's size.
func keepLastGood[T any](w *Watcher, what, countKey string, names []string, ans []answer[[]T], old, into map[string][]T) (failed map[string]bool) {
	failed = map[string]bool{}
	for i, name := range names {
		a := ans[i]
		if a.err == nil {
			into[name] = a.val
			continue
		}
		w.failures.Add(1)
		if last, ok := old[name]; ok {
			w.log.Warn(what+" failed; keeping the last good answer", "name", name, countKey, len(last), "err", a.err)
			into[name] = last
			continue
		}
		w.log.Error(what+" failed; no answer yet, the name gives no upstream until it resolves", "name", name, "err", a.err)
		failed[name] = true
	}
	return failed
}

// answer is the outcome of one lookup.
type answer[T any] struct {
	val T
	err error
}

// parallel calls fn for every name, at most maxParallel at once, and
// returns the answers in the order of names.
func parallel[T any](names []string, fn func(string) (T, error)) []answer[T] {
	out := make([]answer[T], len(names))
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v, err := fn(n)
			out[i] = answer[T]{v, err}
		}()
	}
	wg.Wait()
	return out
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// sameTargets compares two target lists as the balancer sees them (IDs,
// addresses, transports, weights, priorities, sources), ignoring states.
func sameTargets(a, b []Target) bool {
	return slices.EqualFunc(a, b, func(x, y Target) bool {
		return x.ID == y.ID && x.Addr == y.Addr && x.Transport == y.Transport && x.Weight == y.Weight &&
			x.Priority == y.Priority && x.Source == y.Source
	})
}

// logChange logs the targets added and removed by a newly applied answer,
// and the duplicates left out of it.
func (w *Watcher) logChange(old []Target, r result) {
	first := w.changes.Add(1) == 1
	for _, d := range r.dups {
		w.log.Warn("upstream listed twice; the first occurrence is used", "target", d)
	}
	if first {
		return // the initial list: the caller describes it
	}
	was := map[string]bool{}
	for _, t := range old {
		was[t.ID] = true
	}
	var added, removed []string
	for _, t := range r.targets {
		if !was[t.ID] {
			added = append(added, t.ID)
		}
		delete(was, t.ID)
	}
	for id := range was {
		removed = append(removed, id)
	}
	slices.Sort(removed)
	if len(added) > 0 || len(removed) > 0 {
		w.log.Info("upstream targets changed", "targets", len(r.targets), "added", added, "removed", removed)
	}
}

// ErrNoTargets reports a resolved source list that gives no target at all
// (every name failed to resolve, or resolved to nothing usable). CheckTargets
// returns it; an ApplyFunc may use it to refuse such a list.
var ErrNoTargets = errors.New("no upstream target: no upstream name resolved to a usable address")

// CheckTargets returns ErrNoTargets when ts is empty.
func CheckTargets(ts []Target) error {
	if len(ts) == 0 {
		return ErrNoTargets
	}
	return nil
}

// BalancerTargets returns the balancer part of ts, for balancer.Pool.Update
// and balancer.NewPool.
func BalancerTargets(ts []Target) []balancer.Target {
	out := make([]balancer.Target, len(ts))
	for i := range ts {
		out[i] = ts[i].Target
	}
	return out
}
