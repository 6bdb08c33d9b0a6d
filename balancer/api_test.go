package balancer

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/viaduct-sip/viaduct/transport"
)

func TestRoundRobinCycle(t *testing.T) {
	ts := weighted(5, 1, 1)
	id := ids(t, ts)
	p := mustPool(t, ts, Options{Mode: ModeRoundRobin})
	tab := p.Table()
	if tab.NeedsKey() || tab.Mode() != ModeRoundRobin {
		t.Fatalf("NeedsKey = %v, Mode = %v", tab.NeedsKey(), tab.Mode())
	}
	var cursor uint64
	var seq []string
	for i := 0; i < 7*3; i++ {
		tg, ok := tab.Select(0, &cursor, false)
		if !ok {
			t.Fatal("no target")
		}
		seq = append(seq, tg.ID)
	}
	// Exact weights over every cycle, and no burst of the heavy target.
	for c := 0; c < 3; c++ {
		counts := map[string]int{}
		for _, s := range seq[7*c : 7*c+7] {
			counts[s]++
		}
		if counts[id[0]] != 5 || counts[id[1]] != 1 || counts[id[2]] != 1 {
			t.Fatalf("cycle %d counts = %v, want 5/1/1", c, counts)
		}
	}
	run, longest := 0, 0
	for i := range seq[:7] {
		if seq[i] == id[0] {
			run++
		} else {
			run = 0
		}
		longest = max(longest, run)
	}
	if longest > 2 {
		t.Errorf("heavy target picked %d times in a row within a cycle: %v", longest, seq[:7])
	}

	// gcd reduction: weights 10,20 form a cycle of 3.
	p2 := mustPool(t, weighted(10, 20), Options{Mode: ModeRoundRobin})
	if n := len(p2.Table().sets[0].rr); n != 3 {
		t.Errorf("cycle length for weights 10,20 = %d, want 3", n)
	}
}

func TestRoundRobinStateAndCursor(t *testing.T) {
	ts := weighted(1, 1, 1, 1)
	id := ids(t, ts)
	p := mustPool(t, ts, Options{Mode: ModeRoundRobin})
	cursor := uint64(1000) // beyond the cycle: wraps
	if _, ok := p.Table().PickRR(&cursor, false); !ok || cursor != 1 {
		t.Fatalf("cursor after wrap = %d", cursor)
	}
	if err := p.SetAdmin(id[1], Draining); err != nil {
		t.Fatal(err)
	}
	if err := p.SetHealth(id[2], Down); err != nil {
		t.Fatal(err)
	}
	tab := p.Table()
	newD, inD := map[string]int{}, map[string]int{}
	var cursor2 uint64
	for i := 0; i < 60; i++ {
		a, _ := tab.PickRR(&cursor, false)
		b, _ := tab.PickRR(&cursor2, true)
		newD[a.ID]++
		inD[b.ID]++
	}
	if newD[id[1]] != 0 || newD[id[2]] != 0 || newD[id[0]] != 30 || newD[id[3]] != 30 {
		t.Errorf("new dialogs = %v", newD)
	}
	if inD[id[2]] != 0 || inD[id[1]] != 20 {
		t.Errorf("in-dialog = %v, want the draining target included, the down one not", inD)
	}
	// Pick in round-robin mode: weighted, stateless.
	counts := countByID(keyOwners(mustPool(t, weighted(1, 3), Options{Mode: ModeRoundRobin}).Table(), testKeys(100000, 5), false))
	two := ids(t, weighted(1, 3))
	if r := float64(counts[idHash(two[1])]) / float64(counts[idHash(two[0])]); math.Abs(r/3-1) > 0.05 {
		t.Errorf("round-robin Pick ratio = %.3f, want 3", r)
	}
}

func TestPolicy(t *testing.T) {
	def := DefaultPolicy()
	cases := map[string]KeyRule{
		"INVITE":   {Kind: KeyCallID},
		"REGISTER": {Kind: KeyToAOR},
		"register": {Kind: KeyCallID}, // methods are case-sensitive
		"BYE":      {Kind: KeyCallID},
		"":         {Kind: KeyCallID},
	}
	for m, want := range cases {
		if got := def.For([]byte(m)); got != want {
			t.Errorf("default For(%q) = %v, want %v", m, got, want)
		}
	}
	p, err := ParsePolicy(map[string]string{"*": "from-uri", "MESSAGE": "header:X-Tenant", "INVITE": "ruri-user"})
	if err != nil {
		t.Fatal(err)
	}
	for m, want := range map[string]KeyRule{
		"MESSAGE":  {Kind: KeyHeader, Header: "X-Tenant"},
		"INVITE":   {Kind: KeyRequestUser},
		"REGISTER": {Kind: KeyToAOR}, // keeps its default under "*"
		"OPTIONS":  {Kind: KeyFromURI},
	} {
		if got := p.For([]byte(m)); got != want {
			t.Errorf("For(%q) = %v, want %v", m, got, want)
		}
	}
	p2, err := ParsePolicy(map[string]string{"REGISTER": "call-id"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p2.For([]byte("REGISTER")); got.Kind != KeyCallID {
		t.Errorf("explicit REGISTER rule ignored: %v", got)
	}
	if got := p.Rules()["MESSAGE"]; got != "header:X-Tenant" {
		t.Errorf("Rules()[MESSAGE] = %q", got)
	}
	var nilP *Policy
	if got := nilP.For([]byte("REGISTER")); got.Kind != KeyCallID {
		t.Errorf("nil policy For = %v", got)
	}
	if _, err := ParsePolicy(map[string]string{"INVITE": "to-uri"}); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), `"to-uri"`) || !strings.Contains(err.Error(), `"INVITE"`) {
		t.Errorf("bad rule error = %v", err)
	}
	if _, err := NewPolicy(map[string]KeyRule{"IN VITE": {}}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("bad method error = %v", err)
	}
	if _, err := NewPolicy(map[string]KeyRule{"INVITE": {Kind: KeyCallID, Header: "X"}}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("call-id rule with header: error = %v", err)
	}
	if _, err := NewPolicy(map[string]KeyRule{"INVITE": {Kind: KeyRequestAOR}}); err != nil {
		t.Errorf("ruri-aor rule: %v", err)
	}
	if _, err := NewPolicy(map[string]KeyRule{"INVITE": {Kind: numKeyKinds}}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("unknown kind %d: error = %v", numKeyKinds, err)
	}
}

func TestParseKeyRule(t *testing.T) {
	good := map[string]KeyRule{
		"call-id":                     {Kind: KeyCallID},
		"Call-ID":                     {Kind: KeyCallID},
		" to-aor ":                    {Kind: KeyToAOR},
		"from-uri":                    {Kind: KeyFromURI},
		"ruri-user":                   {Kind: KeyRequestUser},
		"RURI-AOR":                    {Kind: KeyRequestAOR},
		"header:X-Foo":                {Kind: KeyHeader, Header: "X-Foo"},
		"HEADER: P-Asserted-Identity": {Kind: KeyHeader, Header: "P-Asserted-Identity"},
	}
	for s, want := range good {
		got, err := ParseKeyRule(s)
		if err != nil || got != want {
			t.Errorf("ParseKeyRule(%q) = %v, %v; want %v", s, got, err, want)
		}
		if again, err := ParseKeyRule(got.String()); err != nil || again != got {
			t.Errorf("round trip of %q via %q = %v, %v", s, got.String(), again, err)
		}
	}
	for _, s := range []string{"", "callid", "header", "header:", "header:X Foo", "header:X:Y", "to", "ruri", "ruri-aor:x"} {
		_, err := ParseKeyRule(s)
		if !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("ParseKeyRule(%q) error = %v, want ErrInvalidKey naming the value", s, err)
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	hashPool := mustPool(t, equalWeights(10), Options{})
	bigPool := mustPool(t, equalWeights(300), Options{})
	rrPool := mustPool(t, weighted(1, 2, 3), Options{Mode: ModeRoundRobin})
	pol := DefaultPolicy()
	method := []byte("REGISTER")
	key := []byte("a84rni9klcd5-1@client.example.org")
	var cursor uint64
	var sink int
	checks := map[string]func(){
		"Pick":       func() { tg, _ := hashPool.Table().Pick(HashKey(key), false); sink += tg.Weight },
		"Pick16":     func() { tg, _ := bigPool.Table().Pick(HashKey(key), true); sink += tg.Weight },
		"PickRR":     func() { tg, _ := rrPool.Table().PickRR(&cursor, false); sink += tg.Weight },
		"Select":     func() { tg, _ := rrPool.Table().Select(0, &cursor, true); sink += tg.Weight },
		"Policy.For": func() { sink += int(pol.For(method).Kind) },
	}
	for name, f := range checks {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s allocates %.1f times per call", name, n)
		}
	}
}

func TestValidation(t *testing.T) {
	ok := tgt(1, 1, 0)
	bad := func(mod func(*Target)) []Target {
		x := ok
		mod(&x)
		return []Target{x}
	}
	cases := map[string]struct {
		ts   []Target
		want string
	}{
		"weight 0":       {bad(func(x *Target) { x.Weight = 0 }), "weight 0"},
		"weight big":     {bad(func(x *Target) { x.Weight = MaxWeight + 1 }), "weight 1001"},
		"transport":      {bad(func(x *Target) { x.Transport = "quic" }), `transport "quic"`},
		"no transport":   {bad(func(x *Target) { x.Transport = "" }), `transport ""`},
		"no address":     {bad(func(x *Target) { x.Addr = netip.AddrPort{} }), "address not set"},
		"port 0":         {bad(func(x *Target) { x.Addr = netip.AddrPortFrom(x.Addr.Addr(), 0) }), "port 0"},
		"bad health":     {bad(func(x *Target) { x.Health = 7 }), "Health(7)"},
		"duplicate id":   {[]Target{ok, ok}, `duplicate id "udp:10.0.0.1:5060"`},
		"duplicate name": {[]Target{{ID: "a", Addr: ok.Addr, Transport: "tcp", Weight: 1}, {ID: "a", Addr: tgt(2, 1, 0).Addr, Transport: "tcp", Weight: 1}}, `duplicate id "a"`},
	}
	for name, c := range cases {
		_, err := NewPool(c.ts, Options{})
		if !errors.Is(err, ErrInvalidTarget) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want ErrInvalidTarget mentioning %q", name, err, c.want)
		}
	}
	if _, err := NewPool(nil, Options{Mode: 9}); err == nil {
		t.Error("invalid mode accepted")
	}
	// Normalisation: lower-case transport, default IDs for IPv4 and IPv6.
	v6 := Target{Addr: netip.MustParseAddrPort("[2001:db8::1]:5061"), Transport: "TLS", Weight: 2}
	p := mustPool(t, []Target{v6, ok}, Options{})
	if got := p.Table().Target(0); got.ID != "tls:[2001:db8::1]:5061" || got.Transport != "tls" {
		t.Errorf("normalised v6 target = %q / %q", got.ID, got.Transport)
	}
	if _, found := p.Table().ByID("udp:10.0.0.1:5060"); !found {
		t.Error("ByID did not find the default ID")
	}
	if err := p.SetHealth("nope", Down); !errors.Is(err, ErrUnknownTarget) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown target error = %v", err)
	}
}

func TestStateChanges(t *testing.T) {
	ts := weighted(1, 1, 1)
	id := ids(t, ts)
	p := mustPool(t, ts, Options{})
	v := p.Table().Version()
	// No-op changes publish nothing.
	if err := p.SetHealth(id[0], Up); err != nil {
		t.Fatal(err)
	}
	if err := p.SetAdmin(id[0], Enabled); err != nil {
		t.Fatal(err)
	}
	if p.Table().Version() != v {
		t.Errorf("no-op change published a table")
	}
	// A failing batch applies nothing.
	err := p.Batch(func(b *Batch) error {
		if err := b.SetHealth(id[0], Down); err != nil {
			return err
		}
		return b.SetAdmin("missing", Disabled)
	})
	if !errors.Is(err, ErrUnknownTarget) {
		t.Fatalf("batch error = %v", err)
	}
	if p.Table().Version() != v || p.Table().Target(0).Health != Up {
		t.Errorf("failed batch changed the pool")
	}
	// A batch is one rebuild.
	if err := p.Batch(func(b *Batch) error {
		if err := b.SetHealth(id[0], Down); err != nil {
			return err
		}
		return b.SetAdmin(id[1], Draining)
	}); err != nil {
		t.Fatal(err)
	}
	if got := p.Table().Version(); got != v+1 {
		t.Errorf("version after batch = %d, want %d", got, v+1)
	}
	// Changes that undo each other publish nothing.
	if err := p.Batch(func(b *Batch) error {
		if err := b.SetHealth(id[2], Down); err != nil {
			return err
		}
		return b.SetHealth(id[2], Up)
	}); err != nil {
		t.Fatal(err)
	}
	if got := p.Table().Version(); got != v+1 {
		t.Errorf("version after a net no-op batch = %d, want %d", got, v+1)
	}
	// Reload keeps the states of remaining targets, takes new ones as given.
	ts2 := []Target{ts[1], ts[0], tgt(7, 2, 0)}
	ts2[1].Health = Up // ignored: the pool's state wins for existing IDs
	ts2[2].Admin = Disabled
	if err := p.Update(ts2); err != nil {
		t.Fatal(err)
	}
	tab := p.Table()
	for _, c := range []struct {
		id     string
		health Health
		admin  AdminState
	}{{id[0], Down, Enabled}, {id[1], Up, Draining}, {"udp:10.0.0.7:5060", Up, Disabled}} {
		got, found := tab.ByID(c.id)
		if !found || got.Health != c.health || got.Admin != c.admin {
			t.Errorf("after reload %s = %+v, want %v/%v", c.id, got, c.health, c.admin)
		}
	}
	if _, found := tab.ByID(id[2]); found {
		t.Error("removed target still present")
	}
	if err := p.Update([]Target{ts[0], ts[0]}); !errors.Is(err, ErrInvalidTarget) || p.Table() != tab {
		t.Errorf("bad reload: err = %v, table replaced = %v", err, p.Table() != tab)
	}
	for _, st := range tab.Snapshot() {
		if st.ID == id[1] && (st.NewDialogs || !st.InDialog) {
			t.Errorf("draining target status = %+v", st)
		}
		if st.Share != 0 {
			t.Errorf("%s has share %v with no target selectable for new dialogs", st.ID, st.Share)
		}
	}
	// Snapshot shares follow the weights and add up to 1.
	sum := 0.0
	for i, st := range mustPool(t, weighted(1, 2, 3), Options{}).Snapshot() {
		sum += st.Share
		if want := float64(i+1) / 6; math.Abs(st.Share/want-1) > 0.01 || !st.NewDialogs || !st.InDialog {
			t.Errorf("%s: share %.4f, want %.4f; status %+v", st.ID, st.Share, want, st)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("shares sum to %v", sum)
	}
}

// TestConcurrentReaders: readers never see a torn state: every target a
// table returns is selectable in that very table, while a writer keeps
// changing states. Run with -race.
func TestConcurrentReaders(t *testing.T) {
	ts := weighted(1, 2, 1, 3)
	ts[3].Priority = 1
	id := ids(t, ts)
	p := mustPool(t, ts, Options{})
	keys := testKeys(4096, 11)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var picks atomic.Int64
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cursor uint64
			for i := 0; !stop.Load(); i++ {
				tab := p.Table()
				inDialog := i%2 == 0
				if tg, ok := tab.Pick(keys[i%len(keys)], inDialog); ok && !tg.selectable(inDialog) {
					t.Errorf("Pick returned %s in state %v/%v", tg.ID, tg.Health, tg.Admin)
					return
				}
				if tg, ok := tab.PickRR(&cursor, inDialog); ok && !tg.selectable(inDialog) {
					t.Errorf("PickRR returned %s in state %v/%v", tg.ID, tg.Health, tg.Admin)
					return
				}
				picks.Add(1)
			}
		}()
	}
	for s := 0; s < 12; s++ {
		i := s % len(id)
		if err := p.SetHealth(id[i], Health(s/len(id)%2)); err != nil {
			t.Fatal(err)
		}
		if err := p.SetAdmin(id[(i+1)%len(id)], AdminState(s%3)); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if picks.Load() == 0 {
		t.Error("readers made no progress")
	}
}

func TestParseEnums(t *testing.T) {
	for s, want := range map[string]AdminState{"enabled": Enabled, "Draining": Draining, " disabled": Disabled} {
		if got, err := ParseAdminState(s); err != nil || got != want {
			t.Errorf("ParseAdminState(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseAdminState("off"); err == nil || !strings.Contains(err.Error(), `"off"`) {
		t.Errorf("ParseAdminState(off) error = %v", err)
	}
	for s, want := range map[string]Mode{"hash": ModeHash, "": ModeHash, "round-robin": ModeRoundRobin, "rr": ModeRoundRobin} {
		if got, err := ParseMode(s); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseMode("random"); err == nil {
		t.Error("ParseMode(random) succeeded")
	}
	if Up.String() != "up" || Down.String() != "down" || Draining.String() != "draining" || ModeRoundRobin.String() != "round-robin" || KeyRequestUser.String() != "ruri-user" {
		t.Error("String methods disagree with the config spelling")
	}
}

// ByAddr finds a target by address whatever its states (the first of
// several sharing one), and Selectable tells what its states allow.
func TestByAddrAndSelectable(t *testing.T) {
	ts := weighted(1, 1, 1)
	shared := ts[2]
	shared.ID = "second-at-same-address"
	ts = append(ts, shared)
	id := ids(t, ts)
	p := mustPool(t, ts, Options{})
	if err := p.Batch(func(b *Batch) error {
		if err := b.SetAdmin(id[0], Draining); err != nil {
			return err
		}
		return b.SetHealth(id[1], Down)
	}); err != nil {
		t.Fatal(err)
	}
	tab := p.Table()
	for i, c := range []struct{ newDialogs, inDialog bool }{
		{false, true},  // draining: keeps its dialogs
		{false, false}, // down
		{true, true},   // up and enabled
	} {
		tg, ok := tab.ByAddr(ts[i].Addr)
		if !ok || tg.ID != id[i] {
			t.Fatalf("ByAddr(%v) = %v, %v; want target %q", ts[i].Addr, tg, ok, id[i])
		}
		if got := tg.Selectable(false); got != c.newDialogs {
			t.Errorf("%s: Selectable(false) = %v, want %v", tg.ID, got, c.newDialogs)
		}
		if got := tg.Selectable(true); got != c.inDialog {
			t.Errorf("%s: Selectable(true) = %v, want %v", tg.ID, got, c.inDialog)
		}
	}
	if _, ok := tab.ByAddr(netip.MustParseAddrPort("192.0.2.99:5060")); ok {
		t.Errorf("ByAddr found a target at an address nobody has")
	}
	if n := testing.AllocsPerRun(1000, func() { tab.ByAddr(ts[2].Addr) }); n != 0 {
		t.Errorf("ByAddr allocates %.1f times per call", n)
	}
	// After a reload that moves a target, the new table knows the new
	// address only.
	moved := append([]Target(nil), ts[:3]...)
	moved[0].ID = id[0] // the same target, at another address
	moved[0].Addr = netip.MustParseAddrPort("10.9.9.9:5060")
	if err := p.Update(moved); err != nil {
		t.Fatal(err)
	}
	if tg, ok := p.Table().ByAddr(moved[0].Addr); !ok || tg.ID != id[0] {
		t.Errorf("after the move: ByAddr(new) = %v, %v", tg, ok)
	}
	if _, ok := p.Table().ByAddr(ts[0].Addr); ok {
		t.Errorf("after the move: the old address still finds a target")
	}
	if tg, ok := p.Table().ByAddr(ts[2].Addr); !ok || tg.ID != id[2] {
		t.Errorf("after the move: ByAddr(third) = %v, %v", tg, ok)
	}
}

// TestPanicModeKeepsAdminStates: in panic mode health is ignored but the
// admin states are not: a disabled target gets nothing, a draining one no
// new dialog; a draining target that is up keeps the pool out of panic;
// a pool whose only targets in service are draining (and down) selects
// them for in-dialog requests only. Targets of a panic table are
// Selectable, so that in-dialog requests can follow their dialog to them.
func TestPanicModeKeepsAdminStates(t *testing.T) {
	ts := []Target{tgt(0, 1, 0), tgt(1, 1, 0), tgt(2, 1, 1), tgt(3, 1, 1)}
	id := ids(t, ts)
	p := mustPool(t, ts, Options{})
	state := func(h [4]Health, a [4]AdminState) *Table {
		t.Helper()
		if err := p.Batch(func(b *Batch) error {
			for i := range id {
				if err := b.SetHealth(id[i], h[i]); err != nil {
					return err
				}
				if err := b.SetAdmin(id[i], a[i]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return p.Table()
	}
	keys := testKeys(20000, 3)
	picked := func(tab *Table, inDialog bool) map[string]int {
		m := map[string]int{}
		for _, k := range keys {
			if tg, ok := tab.Pick(k, inDialog); ok {
				m[tg.ID]++
			}
		}
		return m
	}
	down := [4]Health{Down, Down, Down, Down}

	tab := state(down, [4]AdminState{Enabled, Disabled, Draining, Enabled})
	if !tab.Panic() || !tab.AllDown() {
		t.Fatalf("all down: Panic %v, AllDown %v", tab.Panic(), tab.AllDown())
	}
	newD, inD := picked(tab, false), picked(tab, true)
	if len(newD) != 2 || newD[id[0]] == 0 || newD[id[3]] == 0 {
		t.Errorf("panic, new dialogs = %v; want the enabled targets of both groups (%s, %s)", newD, id[0], id[3])
	}
	if len(inD) != 3 || inD[id[1]] != 0 || inD[id[2]] == 0 {
		t.Errorf("panic, in-dialog = %v; want every target but the disabled %s", inD, id[1])
	}
	for i, want := range [][2]bool{{true, true}, {false, false}, {false, true}, {true, true}} {
		tg, _ := tab.ByAddr(ts[i].Addr)
		if tg.Selectable(false) != want[0] || tg.Selectable(true) != want[1] {
			t.Errorf("panic: %s (%v/%v) Selectable = %v/%v, want %v", tg.ID, tg.Health, tg.Admin, tg.Selectable(false), tg.Selectable(true), want)
		}
	}
	for _, st := range tab.Snapshot() {
		if st.NewDialogs != (st.ID == id[0] || st.ID == id[3]) {
			t.Errorf("panic snapshot: %s NewDialogs %v", st.ID, st.NewDialogs)
		}
	}

	// A draining target that is up: no panic; new dialogs get nothing.
	tab = state([4]Health{Down, Down, Up, Down}, [4]AdminState{Enabled, Enabled, Draining, Enabled})
	if tab.Panic() || tab.AllDown() {
		t.Errorf("draining target up: Panic %v, AllDown %v", tab.Panic(), tab.AllDown())
	}
	if n, _ := tab.Live(false); n != 0 {
		t.Errorf("draining target up, the others down: %d live for new dialogs, want 0", n)
	}
	if tg, _ := tab.ByAddr(ts[0].Addr); tg.Selectable(true) {
		t.Errorf("outside panic mode a down target is Selectable")
	}

	// Only draining targets in service, all down: in-dialog requests only.
	tab = state(down, [4]AdminState{Draining, Disabled, Disabled, Draining})
	if !tab.Panic() {
		t.Fatal("draining targets all down: not in panic mode")
	}
	if n, _ := tab.Live(false); n != 0 {
		t.Errorf("only draining targets: %d live for new dialogs, want 0", n)
	}
	if inD := picked(tab, true); len(inD) != 2 || inD[id[0]] == 0 || inD[id[3]] == 0 {
		t.Errorf("only draining targets, in-dialog = %v", inD)
	}

	// Every target disabled: nothing is in service, nothing is down.
	tab = state(down, [4]AdminState{Disabled, Disabled, Disabled, Disabled})
	if tab.Panic() || tab.AllDown() {
		t.Errorf("all disabled: Panic %v, AllDown %v", tab.Panic(), tab.AllDown())
	}
	if _, ok := tab.Pick(keys[0], true); ok {
		t.Error("all disabled: Pick found a target")
	}

	// Round robin follows the same sets.
	rr := mustPool(t, weighted(1, 1), Options{Mode: ModeRoundRobin})
	two := ids(t, weighted(1, 1))
	for _, i := range two {
		if err := rr.SetHealth(i, Down); err != nil {
			t.Fatal(err)
		}
	}
	var cursor uint64
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		tg, ok := rr.Table().PickRR(&cursor, false)
		if !ok {
			t.Fatal("round robin in panic mode picked nothing")
		}
		seen[tg.ID]++
	}
	if seen[two[0]] != 5 || seen[two[1]] != 5 {
		t.Errorf("round robin in panic mode: %v", seen)
	}
}

func TestAllDownPolicyValues(t *testing.T) {
	for s, want := range map[string]AllDown{"": AllDownForward, "forward": AllDownForward, "Reject": AllDownReject} {
		if got, err := ParseAllDown(s); err != nil || got != want {
			t.Errorf("ParseAllDown(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseAllDown("panic"); err == nil || !strings.Contains(err.Error(), `"panic"`) {
		t.Errorf("ParseAllDown(panic) error = %v", err)
	}
	if _, err := NewPool(weighted(1), Options{AllDown: 7}); err == nil {
		t.Error("NewPool accepted an invalid AllDown")
	}
	p := mustPool(t, weighted(1), Options{})
	if err := p.SetAllDown(7); err == nil {
		t.Error("SetAllDown accepted an invalid value")
	}
	// Changing the policy while a target is up publishes nothing.
	v := p.Table().Version()
	if err := p.SetAllDown(AllDownReject); err != nil || p.Table().Version() != v {
		t.Errorf("SetAllDown with a target up: err %v, version %d -> %d", err, v, p.Table().Version())
	}
	if err := p.SetHealth(ids(t, weighted(1))[0], Down); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Table().Pick(1, false); ok || p.Table().Panic() || !p.Table().AllDown() {
		t.Errorf("reject policy kept after SetAllDown: Panic %v", p.Table().Panic())
	}
}

// TestTransports: a target may use every transport of the transport
// table, and sctp; anything else is refused with the list of them.
func TestTransports(t *testing.T) {
	for _, tr := range append(transport.Names(), "sctp", "SCTP", "Ws") {
		x := tgt(1, 1, 0)
		x.Transport = tr
		p, err := NewPool([]Target{x}, Options{})
		if err != nil {
			t.Errorf("transport %q: %v", tr, err)
			continue
		}
		if got := p.Table().Target(0).Transport; got != strings.ToLower(tr) {
			t.Errorf("transport %q stored as %q", tr, got)
		}
	}
	x := tgt(1, 1, 0)
	x.Transport = "quic"
	_, err := NewPool([]Target{x}, Options{})
	if want := "want udp, tcp, tls, ws, wss or sctp"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("transport quic: error %v, want one saying %q", err, want)
	}
}
