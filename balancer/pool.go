package balancer

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/internal/enum"
)

// Mode is a pool's selection algorithm.
type Mode uint8

// Modes.
const (
	// ModeHash selects by weighted consistent hashing of the request key
	// (Table.Pick). It is the default.
	ModeHash Mode = iota
	// ModeRoundRobin selects in smooth weighted round-robin order
	// (Table.PickRR), for pools where stickiness does not matter. It builds
	// no hash tables, so its rebuilds are cheap.
	ModeRoundRobin
)

var modeNames = []string{ModeHash: "hash", ModeRoundRobin: "round-robin"}

// String returns "hash" or "round-robin".
func (m Mode) String() string { return enum.Name(modeNames, m, "Mode") }

// ParseMode parses "hash" (or "", the default) or "round-robin" (or "rr"),
// for config loaders.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "":
		return ModeHash, nil
	case "rr":
		return ModeRoundRobin, nil
	}
	if m, ok := enum.Parse[Mode](modeNames, s); ok {
		return m, nil
	}
	return 0, fmt.Errorf("balancer mode %q: want hash or round-robin", s)
}

// Options configures a Pool. The zero value selects ModeHash.
type Options struct {
	// Mode is the selection algorithm (default ModeHash).
	Mode Mode
	// AllDown is what the pool does when every target that is not
	// disabled is down: AllDownForward (the default, panic mode) or
	// AllDownReject. Pool.SetAllDown changes it.
	AllDown AllDown

	// phase2At is passed to every builder (tests only).
	phase2At uint64
	// noDerive forces full builds (tests only).
	noDerive bool
	// addBy forces how derive places added members (tests only): 0 by
	// cost, addByScan or addByEnum.
	addBy int
}

// Pool is a set of upstream targets. Readers call Table, which is one
// atomic load, and pick from the returned immutable Table without locking.
// Writers (SetHealth, SetAdmin, Batch, Update) serialize on a mutex, build a
// new Table and publish it with an atomic store; a rebuild costs
// milliseconds to tens of milliseconds (see the package documentation), so
// callers that change many targets at once should use Batch.
type Pool struct {
	cur  atomic.Pointer[Table]
	mu   sync.Mutex
	opts Options
}

// NewPool validates targets (see Target for the rules) and builds the first
// table. The initial Health and Admin of each target are taken from the
// given values (zero: up and enabled). A pool may be empty.
func NewPool(targets []Target, opts Options) (*Pool, error) {
	if opts.Mode > ModeRoundRobin {
		return nil, fmt.Errorf("new pool: invalid %v", opts.Mode)
	}
	if opts.AllDown > AllDownReject {
		return nil, fmt.Errorf("new pool: invalid %v", opts.AllDown)
	}
	ts, err := normalizeTargets(targets)
	if err != nil {
		return nil, fmt.Errorf("new pool: %w", err)
	}
	p := &Pool{opts: opts}
	p.cur.Store(p.build(ts, nil))
	return p, nil
}

// Table returns the current table. It never blocks and does not allocate.
func (p *Pool) Table() *Table { return p.cur.Load() }

// Snapshot returns the status of every target of the current table.
func (p *Pool) Snapshot() []TargetStatus { return p.Table().Snapshot() }

// SetHealth records the health of the target with the given ID and
// publishes a new table if it changed.
func (p *Pool) SetHealth(id string, h Health) error {
	return p.Batch(func(b *Batch) error { return b.SetHealth(id, h) })
}

// SetAdmin records the admin state of the target with the given ID and
// publishes a new table if it changed.
func (p *Pool) SetAdmin(id string, a AdminState) error {
	return p.Batch(func(b *Batch) error { return b.SetAdmin(id, a) })
}

// SetAllDown sets what the pool does when every target that is not
// disabled is down (see AllDown) and publishes a new table if that changes
// the selection.
func (p *Pool) SetAllDown(a AllDown) error {
	if a > AllDownReject {
		return fmt.Errorf("set all-down policy: invalid %v", a)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opts.AllDown == a {
		return nil
	}
	p.opts.AllDown = a
	old := p.cur.Load()
	if !old.allDown {
		return nil // the next build applies it
	}
	p.cur.Store(p.build(slices.Clone(old.targets), old))
	return nil
}

// Batch applies several state changes with a single rebuild: fn records
// them on b; if fn returns an error nothing is applied and the error is
// returned; if nothing changed in the end (including changes that undo
// each other) no table is published. fn runs under the
// writer lock and must not call other Pool methods that write.
func (p *Pool) Batch(fn func(b *Batch) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cur.Load()
	b := &Batch{old: old}
	if err := fn(b); err != nil {
		return err
	}
	if !b.changed() {
		return nil
	}
	p.cur.Store(p.build(b.targets, old))
	return nil
}

// Batch collects state changes for Pool.Batch.
type Batch struct {
	old     *Table
	targets []Target // copy-on-write of old.targets
}

// writable returns the batch's own copy of target i.
func (b *Batch) writable(i int) *Target {
	if b.targets == nil {
		b.targets = slices.Clone(b.old.targets)
	}
	return &b.targets[i]
}

// changed reports whether the batch differs from the table it started from.
func (b *Batch) changed() bool {
	for i := range b.targets {
		if b.targets[i].Health != b.old.targets[i].Health || b.targets[i].Admin != b.old.targets[i].Admin {
			return true
		}
	}
	return false
}

// SetHealth records the health of target id.
func (b *Batch) SetHealth(id string, h Health) error {
	if h > Down {
		return fmt.Errorf("set health of %q: invalid %v", id, h)
	}
	i, ok := b.old.byID[id]
	if !ok {
		return fmt.Errorf("set health: %w %q", ErrUnknownTarget, id)
	}
	if b.current(i).Health != h {
		b.writable(i).Health = h
	}
	return nil
}

// SetAdmin records the admin state of target id.
func (b *Batch) SetAdmin(id string, a AdminState) error {
	if a > Disabled {
		return fmt.Errorf("set admin state of %q: invalid %v", id, a)
	}
	i, ok := b.old.byID[id]
	if !ok {
		return fmt.Errorf("set admin state: %w %q", ErrUnknownTarget, id)
	}
	if b.current(i).Admin != a {
		b.writable(i).Admin = a
	}
	return nil
}

// current returns target i as the batch has it so far.
func (b *Batch) current(i int) *Target {
	if b.targets != nil {
		return &b.targets[i]
	}
	return &b.old.targets[i]
}

// Update replaces the configuration (a reload). Targets that remain, by ID,
// keep their current Health and Admin state, whatever the new entries say;
// new targets take the state given in targets (zero: up and enabled).
// Address, transport, weight and priority come from the new entries. On
// error the pool is unchanged.
func (p *Pool) Update(targets []Target) error {
	ts, err := normalizeTargets(targets)
	if err != nil {
		return fmt.Errorf("update pool: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cur.Load()
	for i := range ts {
		if j, ok := old.byID[ts[i].ID]; ok {
			ts[i].Health = old.targets[j].Health
			ts[i].Admin = old.targets[j].Admin
		}
	}
	p.cur.Store(p.build(ts, old))
	return nil
}

// build makes the table for targets (normalised, owned by the new table),
// reusing or deriving lookups of prev (may be nil) where their member sets
// allow.
func (p *Pool) build(targets []Target, prev *Table) *Table {
	t := &Table{
		targets: targets,
		byID:    make(map[string]int, len(targets)),
		byAddr:  make(map[netip.AddrPort]int, len(targets)),
		mode:    p.opts.Mode,
		version: 1,
		allDown: allDown(targets),
	}
	t.panic = t.allDown && p.opts.AllDown == AllDownForward
	for i := range targets {
		targets[i].healthIgnored = t.panic
	}
	for i := range targets {
		t.byID[targets[i].ID] = i
		if _, dup := t.byAddr[targets[i].Addr]; !dup {
			t.byAddr[targets[i].Addr] = i
		}
	}
	var parents []*lookup
	if prev != nil {
		t.version = prev.version + 1
		parents = append(parents, prev.sets[0])
		if prev.sets[1] != prev.sets[0] {
			parents = append(parents, prev.sets[1])
		}
	}
	// Build the in-dialog set first: the new-dialog set is a subset of it
	// whenever both use the same priority group, and derives from it cheaply.
	dlg, dprio := activeMembers(targets, true, t.panic)
	t.sets[1] = p.makeLookup(dlg, dprio, len(targets), parents)
	ini, iprio := activeMembers(targets, false, t.panic)
	if sameMembers(ini, dlg) {
		t.sets[0] = t.sets[1]
	} else {
		t.sets[0] = p.makeLookup(ini, iprio, len(targets), append(parents, t.sets[1]))
	}
	return t
}

// allDown reports whether every target that is not disabled is down (and
// there is one).
func allDown(targets []Target) bool {
	inService := false
	for i := range targets {
		if targets[i].Admin == Disabled {
			continue
		}
		if targets[i].Health == Up {
			return false
		}
		inService = true
	}
	return inService
}

// activeMembers returns the selectable targets of the lowest priority group
// that has any, sorted by ID hash, and that group's priority (the lowest
// one among them). With allGroups (panic mode) it returns those of every
// group.
func activeMembers(targets []Target, inDialog, allGroups bool) ([]member, int) {
	best, found := 0, false
	for i := range targets {
		if targets[i].selectable(inDialog) && (!found || targets[i].Priority < best) {
			best, found = targets[i].Priority, true
		}
	}
	var ms []member
	for i := range targets {
		if targets[i].selectable(inDialog) && (allGroups || targets[i].Priority == best) {
			ms = append(ms, member{idHash: targets[i].idHash, weight: targets[i].Weight, idx: uint16(i)})
		}
	}
	slices.SortFunc(ms, func(a, b member) int {
		if a.idHash < b.idHash {
			return -1
		}
		if a.idHash > b.idHash {
			return 1
		}
		return 0
	})
	return ms, best
}

// sameMembers compares member sets by identity and weight (not index).
func sameMembers(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].idHash != b[i].idHash || a[i].weight != b[i].weight {
			return false
		}
	}
	return true
}

// makeLookup builds the lookup for members. In ModeHash it derives the
// bucket array from a parent lookup (the previous table's, or the in-dialog
// set's) when that is cheaper than a full build, which it is when the member
// sets differ by a few targets: see derive. Derived and fully built arrays
// are identical: the tests check it.
func (p *Pool) makeLookup(members []member, priority, nTargets int, parents []*lookup) *lookup {
	lk := &lookup{members: members, single: -1, rr: rrSequence(members), priority: priority}
	for _, m := range members {
		lk.weight += m.weight
	}
	switch {
	case len(members) == 1:
		lk.single = int(members[0].idx)
		return lk
	case len(members) == 0 || p.opts.Mode != ModeHash:
		return lk
	}
	bd := &builder{phase2At: p.opts.phase2At}
	var best *lookup
	bestCost := fullBuildCost(lk.weight)
	for _, par := range parents {
		if p.opts.noDerive || par == nil || !par.own.valid() {
			continue
		}
		if cost := deriveCost(par, members, lk.weight); cost < bestCost {
			best, bestCost = par, cost
		}
	}
	if best == nil {
		lk.own = newOwners(nTargets)
		lk.maxRank = bd.build(members, lk.own)
		return lk
	}
	lk.own, lk.maxRank = derive(bd, best, members, nTargets, p.opts.addBy)
	return lk
}
