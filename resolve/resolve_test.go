package resolve

import (
	"context"
	"errors"
	"fmt"
	"github.com/viaduct-sip/viaduct/transport"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/resolve/resolvetest"
)

var (
	a    = resolvetest.A
	aaaa = resolvetest.AAAA
	srv  = resolvetest.SRV
)

func TestParseSource(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Source
	}{
		{"127.0.0.1:5070", Source{Kind: KindAddr, Addr: netip.MustParseAddrPort("127.0.0.1:5070")}},
		{" 127.0.0.1 ", Source{Kind: KindAddr, Addr: netip.MustParseAddrPort("127.0.0.1:5060")}},
		{"[::1]:5071", Source{Kind: KindAddr, Addr: netip.MustParseAddrPort("[::1]:5071")}},
		{"::1", Source{Kind: KindAddr, Addr: netip.MustParseAddrPort("[::1]:5060")}},
		{"[::ffff:127.0.0.1]:5070", Source{Kind: KindAddr, Addr: netip.MustParseAddrPort("127.0.0.1:5070")}},
		{"SIP.Example.COM.", Source{Kind: KindHost, Name: "sip.example.com", Absolute: true}},
		{"sip.example.com.:5080", Source{Kind: KindHost, Name: "sip.example.com", Absolute: true, Port: 5080}},
		{"_sip._udp.example.com.", Source{Kind: KindSRV, Name: "_sip._udp.example.com", Absolute: true, Transport: "udp"}},
		{"sip.example.com:5080", Source{Kind: KindHost, Name: "sip.example.com", Port: 5080}},
		{"localhost", Source{Kind: KindHost, Name: "localhost"}},
		{"_sip._udp.example.com", Source{Kind: KindSRV, Name: "_sip._udp.example.com", Transport: "udp"}},
		{"_sip._tcp.example.com", Source{Kind: KindSRV, Name: "_sip._tcp.example.com", Transport: "tcp"}},
		{"_sips._tcp.example.com", Source{Kind: KindSRV, Name: "_sips._tcp.example.com", Transport: "tls"}},
	} {
		got, err := ParseSource(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, reason string }{
		{"", "empty"},
		{"127.0.0.1:0", "port 0"},
		{"sip.example.com:0", "port"},
		{"sip.example.com:70000", "port"},
		{"sip.example.com:x", "port"},
		{"sip..example.com", "labels"},
		{"sip example.com", "not allowed"},
		{"[fe80::1%eth0]:5060", "zone"},
		{"_sip.example.com", "_service._proto"},
		{"_sip._udp.example.com:5060", "takes no port"},
		{"[::1]", "not an IP address"},
		{strings.Repeat("a", 64) + ".com", "labels"},
	} {
		_, err := ParseSource(c.in)
		if err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("ParseSource(%q) error %v; want one mentioning %q", c.in, err, c.reason)
		}
	}
	// String round-trips.
	for _, s := range []string{"127.0.0.1:5070", "[::1]:5071", "sip.example.com:5080", "sip.example.com.:5080", "_sip._udp.example.com", "_sip._udp.example.com."} {
		src, _ := ParseSource(s)
		if src.String() != s {
			t.Errorf("String of %q = %q", s, src.String())
		}
	}
}

func TestSRVWeights(t *testing.T) {
	for _, c := range []struct {
		in   []uint16
		want []int
	}{
		{[]uint16{0, 0, 0}, []int{1, 1, 1}},
		{[]uint16{60, 40}, []int{60, 40}},
		{[]uint16{1, 2}, []int{50, 100}},
		{[]uint16{10, 0}, []int{100, 1}},
		{[]uint16{1, 1}, []int{100, 100}},
		{[]uint16{65535, 32768, 1, 0}, []int{100, 50, 1, 1}},
		{[]uint16{1000, 333}, []int{100, 33}},
		{[]uint16{7}, []int{98}},
	} {
		if got := SRVWeights(c.in); !slices.Equal(got, c.want) {
			t.Errorf("SRVWeights(%v) = %v; want %v", c.in, got, c.want)
		}
	}
	// Every mapped weight is valid for the balancer.
	for w := 0; w <= 65535; w += 97 {
		for _, m := range SRVWeights([]uint16{uint16(w), 65535, 1, 0}) {
			if m < 1 || m > balancer.MaxWeight {
				t.Fatalf("weight %d out of range", m)
			}
		}
	}
}

// newTestWatcher returns a watcher resolving through s, logging into buf.
func newTestWatcher(t *testing.T, s *resolvetest.Server, cfg Config) (*Watcher, *syncBuffer) {
	t.Helper()
	var buf syncBuffer
	cfg.Resolver = s.Resolver()
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w, &buf
}

// syncBuffer collects a log written from other goroutines.
type syncBuffer = testenv.SyncBuffer

func mustSources(t *testing.T, specs ...string) []Source {
	t.Helper()
	var out []Source
	for _, s := range specs {
		src, err := ParseSource(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, src)
	}
	return out
}

// summary renders targets as "ID w=W p=P src=S" lines, sorted.
func summary(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s w=%d p=%d src=%d", t.ID, t.Weight, t.Priority, t.Source))
	}
	slices.Sort(out)
	return out
}

func expect(t *testing.T, what string, got []Target, want ...string) {
	t.Helper()
	slices.Sort(want)
	if g := summary(got); !slices.Equal(g, want) {
		t.Fatalf("%s:\n got  %q\n want %q", what, g, want)
	}
}

// capture is an ApplyFunc that records what it was given.
type capture struct {
	mu    sync.Mutex
	calls int
	last  []Target
}

func (c *capture) apply(ts []Target) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	c.last = slices.Clone(ts)
	return nil
}

func TestHostNameTwoARecords(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("sip.test", a("127.0.1.2"), a("127.0.1.1"), aaaa("::1"))
	w, _ := newTestWatcher(t, s, Config{Network: "ip4"})
	src := mustSources(t, "sip.test:5070")
	src[0].Weight, src[0].Priority = 3, 1
	var c capture
	if err := w.Set(context.Background(), src, c.apply); err != nil {
		t.Fatal(err)
	}
	expect(t, "ip4", c.last, "udp:127.0.1.1:5070 w=3 p=1 src=0", "udp:127.0.1.2:5070 w=3 p=1 src=0")
	for _, tg := range c.last {
		if tg.Transport != "udp" {
			t.Errorf("transport %q", tg.Transport)
		}
	}

	// Both families, default port, plus a literal and a duplicate of one
	// of the name's addresses (used once, from the first source).
	w2, logs := newTestWatcher(t, s, Config{})
	// The literal has an ID of its own: the duplicate is found by address.
	src = mustSources(t, "127.0.1.1:5060", "sip.test")
	src[0].ID = "sbc-a"
	if err := w2.Set(context.Background(), src, c.apply); err != nil {
		t.Fatal(err)
	}
	expect(t, "ip", c.last, "sbc-a w=1 p=0 src=0", "udp:127.0.1.2:5060 w=1 p=0 src=1", "udp:[::1]:5060 w=1 p=0 src=1")
	if !strings.Contains(logs.String(), "upstream listed twice") {
		t.Errorf("duplicate not logged:\n%s", logs)
	}
	// The targets are valid for the balancer.
	if _, err := balancer.NewPool(BalancerTargets(c.last), balancer.Options{}); err != nil {
		t.Fatal(err)
	}
}

// A name is asked as written: "localhost" (in /etc/hosts, which the
// test's DNS server does not know) resolves as the system resolver
// resolves it; a trailing dot makes a name absolute, asked of DNS only.
// An SRV record's target is an absolute name from DNS.
func TestHostNamesAsWritten(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("localhost", a("127.0.3.9")) // only the absolute name reaches DNS
	s.Set("_sip._udp.svc.test", srv(10, 10, 5075, "localhost."))
	w, logs := newTestWatcher(t, s, Config{Network: "ip4"})
	var c capture
	if err := w.Set(context.Background(), mustSources(t, "localhost:5071", "LocalHost.:5072", "_sip._udp.svc.test"), c.apply); err != nil {
		t.Fatal(err)
	}
	expect(t, "names", c.last, "udp:127.0.0.1:5071 w=1 p=0 src=0", "udp:127.0.3.9:5072 w=1 p=0 src=1", "udp:127.0.3.9:5075 w=100 p=10 src=2")
	if strings.Contains(logs.String(), "failed") {
		t.Errorf("a lookup failed:\n%s", logs)
	}
	// A refresh asks the same names and keeps the answer.
	if changed, err := w.Refresh(context.Background(), c.apply); err != nil || changed {
		t.Errorf("refresh: changed %v, %v", changed, err)
	}
}

func TestSRVPrioritiesAndWeights(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("_sip._udp.svc.test",
		srv(10, 60, 5070, "a.svc.test."),
		srv(10, 40, 5080, "b.svc.test."),
		srv(20, 0, 5090, "c.svc.test."),
		srv(30, 5, 5099, "."), // service not available: no target
	)
	s.Set("a.svc.test", a("127.0.2.1"))
	s.Set("b.svc.test", a("127.0.2.2"), a("127.0.2.3")) // the record's weight is split
	s.Set("c.svc.test", a("127.0.2.4"), aaaa("::1"))
	w, _ := newTestWatcher(t, s, Config{})
	var c capture
	if err := w.Set(context.Background(), mustSources(t, "_sip._udp.svc.test"), c.apply); err != nil {
		t.Fatal(err)
	}
	expect(t, "srv", c.last,
		"udp:127.0.2.1:5070 w=60 p=10 src=0",
		"udp:127.0.2.2:5080 w=20 p=10 src=0",
		"udp:127.0.2.3:5080 w=20 p=10 src=0",
		"udp:127.0.2.4:5090 w=1 p=20 src=0",
		"udp:[::1]:5090 w=1 p=20 src=0",
	)

	// In a pool, priority 10 takes everything while any of it is up, in the
	// ratio 60:20:20; priority 20 only when all of 10 is out.
	pool, err := balancer.NewPool(BalancerTargets(c.last), balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for k := range 20000 {
		tg, ok := pool.Table().Pick(balancer.HashKeyString(fmt.Sprint("call-", k)), false)
		if !ok {
			t.Fatal("no pick")
		}
		count[tg.ID]++
	}
	if n := count["udp:127.0.2.1:5070"]; n < 11000 || n > 13000 {
		t.Errorf("weight 60 of 100 got %d of 20000: %v", n, count)
	}
	if count["udp:127.0.2.4:5090"]+count["udp:[::1]:5090"] != 0 {
		t.Errorf("priority 20 used while priority 10 is up: %v", count)
	}
	for _, id := range []string{"udp:127.0.2.1:5070", "udp:127.0.2.2:5080", "udp:127.0.2.3:5080"} {
		if err := pool.SetHealth(id, balancer.Down); err != nil {
			t.Fatal(err)
		}
	}
	if n, prio := pool.Table().Live(false); n != 2 || prio != 20 {
		t.Errorf("with priority 10 down: %d live in group %d; want 2 in 20", n, prio)
	}

	// A configured priority offsets the records' priorities.
	src := mustSources(t, "_sip._udp.svc.test")
	src[0].Priority = 100
	if err := w.Set(context.Background(), src, c.apply); err != nil {
		t.Fatal(err)
	}
	if c.last[0].Priority != 110 {
		t.Errorf("priority with offset %d; want 110", c.last[0].Priority)
	}
}

// stateFixture is a pool and a health checker kept in step with a
// Watcher, as cmd/viaduct wires them.
type stateFixture struct {
	pool *balancer.Pool
	chk  *health.Checker
}

// idleTransport satisfies health.Transport for checkers whose targets are
// never probed.
type idleTransport struct{}

func (idleTransport) AppendViaOver(dst []byte, _ netip.AddrPort, _ transport.Kind, _ uint64) []byte {
	return dst
}
func (idleTransport) SendOver([]byte, netip.AddrPort, transport.Kind) error {
	return errors.New("idle transport sends nothing")
}

func healthConfig(ts []Target) health.Config {
	never := true
	hc := health.Config{Settings: health.Settings{NeverProbe: &never}}
	for _, t := range ts {
		hc.Targets = append(hc.Targets, health.Target{ID: t.ID, Addr: t.Addr, Transport: t.Transport, Admin: t.Admin})
	}
	return hc
}

// apply is the ApplyFunc: pool first, then checker.
func (f *stateFixture) apply(t *testing.T) ApplyFunc {
	return func(ts []Target) error {
		if f.pool == nil {
			p, err := balancer.NewPool(BalancerTargets(ts), balancer.Options{})
			if err != nil {
				return err
			}
			chk, err := health.New(healthConfig(ts), idleTransport{}, p, nil)
			if err != nil {
				return err
			}
			t.Cleanup(func() { chk.Close() })
			f.pool, f.chk = p, chk
			return nil
		}
		if err := f.pool.Update(BalancerTargets(ts)); err != nil {
			return err
		}
		return f.chk.Update(healthConfig(ts))
	}
}

func (f *stateFixture) state(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range f.pool.Snapshot() {
		out = append(out, fmt.Sprintf("%s %s %s", s.ID, s.Health, s.Admin))
	}
	slices.Sort(out)
	var chk []string
	for _, s := range f.chk.Status() {
		chk = append(chk, fmt.Sprintf("%s %s", s.ID, s.Admin))
	}
	if len(chk) != len(out) {
		t.Fatalf("checker has %v, pool %v", chk, out)
	}
	return out
}

func TestRefreshUpdatesPoolKeepingState(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("sip.test", a("127.0.3.1"), a("127.0.3.2"), a("127.0.3.3"))
	w, logs := newTestWatcher(t, s, Config{})
	var f stateFixture
	ctx := context.Background()
	if err := w.Set(ctx, mustSources(t, "127.0.3.9:5060", "sip.test"), f.apply(t)); err != nil {
		t.Fatal(err)
	}
	// Operator and health decisions on targets that will remain.
	if err := f.chk.SetAdmin("udp:127.0.3.2:5060", balancer.Draining, "test"); err != nil {
		t.Fatal(err)
	}
	if err := f.pool.SetHealth("udp:127.0.3.3:5060", balancer.Down); err != nil {
		t.Fatal(err)
	}
	if err := f.chk.SetAdmin("udp:127.0.3.1:5060", balancer.Disabled, "test"); err != nil {
		t.Fatal(err)
	}

	// Unchanged answer: nothing applied.
	changed, err := w.Refresh(ctx, f.apply(t))
	if err != nil || changed {
		t.Fatalf("unchanged refresh: changed=%v err=%v", changed, err)
	}
	v := f.pool.Table().Version()

	// .1 leaves, .4 arrives; .2 and .3 remain.
	s.Set("sip.test", a("127.0.3.4"), a("127.0.3.2"), a("127.0.3.3"))
	changed, err = w.Refresh(ctx, f.apply(t))
	if err != nil || !changed {
		t.Fatalf("changed refresh: changed=%v err=%v", changed, err)
	}
	if f.pool.Table().Version() == v {
		t.Error("no new table published")
	}
	want := []string{
		"udp:127.0.3.2:5060 up draining",
		"udp:127.0.3.3:5060 down enabled",
		"udp:127.0.3.4:5060 up enabled",
		"udp:127.0.3.9:5060 up enabled",
	}
	if got := f.state(t); !slices.Equal(got, want) {
		t.Fatalf("after refresh:\n got  %q\n want %q", got, want)
	}
	if st, ok := f.chk.StatusOf("udp:127.0.3.2:5060"); !ok || st.Admin != balancer.Draining {
		t.Errorf("checker lost the admin state: %+v", st)
	}
	if _, ok := f.chk.StatusOf("udp:127.0.3.1:5060"); ok {
		t.Error("removed target still in the checker")
	}
	if !strings.Contains(logs.String(), "upstream targets changed") || !strings.Contains(logs.String(), "127.0.3.1") {
		t.Errorf("change not logged:\n%s", logs)
	}
	// .1 comes back: as a new target, enabled (its old admin state went
	// with it).
	s.Set("sip.test", a("127.0.3.1"), a("127.0.3.2"), a("127.0.3.3"), a("127.0.3.4"))
	if _, err := w.Refresh(ctx, f.apply(t)); err != nil {
		t.Fatal(err)
	}
	if tg, ok := f.pool.Table().ByID("udp:127.0.3.1:5060"); !ok || tg.Admin != balancer.Enabled {
		t.Errorf("returning target: %+v %v", tg, ok)
	}
}

func TestFailedRefreshKeepsLastGoodAnswer(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("_sip._udp.svc.test", srv(0, 1, 5070, "a.svc.test"), srv(0, 1, 5070, "b.svc.test"))
	s.Set("a.svc.test", a("127.0.4.1"))
	s.Set("b.svc.test", a("127.0.4.2"))
	s.Set("sip.test", a("127.0.4.3"))
	w, logs := newTestWatcher(t, s, Config{Timeout: time.Second})
	var c capture
	ctx := context.Background()
	if err := w.Set(ctx, mustSources(t, "_sip._udp.svc.test", "sip.test"), c.apply); err != nil {
		t.Fatal(err)
	}
	good := []string{"udp:127.0.4.1:5070 w=100 p=0 src=0", "udp:127.0.4.2:5070 w=100 p=0 src=0", "udp:127.0.4.3:5060 w=1 p=0 src=1"}
	expect(t, "initial", c.last, good...)

	// The server fails everything: SERVFAIL.
	s.SetFailing(true)
	changed, err := w.Refresh(ctx, c.apply)
	if err != nil || changed {
		t.Fatalf("failing refresh: changed=%v err=%v", changed, err)
	}
	expect(t, "after SERVFAIL", w.Targets(), good...)
	if st := w.Stats(); st.LookupFailures < 4 {
		t.Errorf("lookup failures %d; want >= 4 (SRV, a, b, sip)", st.LookupFailures)
	}
	if !strings.Contains(logs.String(), "keeping the last good answer") {
		t.Errorf("failure not logged:\n%s", logs)
	}

	// The names vanish (NXDOMAIN): still the last good answer.
	s.SetFailing(false)
	s.Clear()
	if changed, err := w.Refresh(ctx, c.apply); err != nil || changed {
		t.Fatalf("NXDOMAIN refresh: changed=%v err=%v", changed, err)
	}
	expect(t, "after NXDOMAIN", w.Targets(), good...)

	// One SRV target host fails while the SRV answer changes: the new
	// record set applies, the failing host keeps its last addresses.
	s.Set("_sip._udp.svc.test", srv(0, 1, 5070, "a.svc.test"), srv(0, 3, 5070, "b.svc.test"))
	s.Set("b.svc.test", a("127.0.4.5"))
	s.Set("sip.test", a("127.0.4.3"))
	changed, err = w.Refresh(ctx, c.apply)
	if err != nil || !changed {
		t.Fatalf("partial refresh: changed=%v err=%v", changed, err)
	}
	expect(t, "partial", c.last, "udp:127.0.4.1:5070 w=33 p=0 src=0", "udp:127.0.4.5:5070 w=99 p=0 src=0", "udp:127.0.4.3:5060 w=1 p=0 src=1")

	// A reload keeps the last good answer of names it still has, also
	// while they fail.
	s.SetFailing(true)
	if err := w.Set(ctx, mustSources(t, "127.0.4.9:5060", "sip.test"), c.apply); err != nil {
		t.Fatal(err)
	}
	expect(t, "reload while failing", c.last, "udp:127.0.4.9:5060 w=1 p=0 src=0", "udp:127.0.4.3:5060 w=1 p=0 src=1")
}

func TestFailedApplyChangesNothing(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("sip.test", a("127.0.5.1"))
	w, _ := newTestWatcher(t, s, Config{})
	var c capture
	ctx := context.Background()
	if err := w.Set(ctx, mustSources(t, "sip.test"), c.apply); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("refused")
	s.Set("sip.test", a("127.0.5.2"))
	if _, err := w.Refresh(ctx, func([]Target) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("refresh error %v", err)
	}
	expect(t, "after refused refresh", w.Targets(), "udp:127.0.5.1:5060 w=1 p=0 src=0")
	if err := w.Set(ctx, mustSources(t, "127.0.5.9"), func([]Target) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("set error %v", err)
	}
	// The next refresh still resolves the old list and applies the change.
	if changed, err := w.Refresh(ctx, c.apply); err != nil || !changed {
		t.Fatalf("retry: %v %v", changed, err)
	}
	expect(t, "retry", c.last, "udp:127.0.5.2:5060 w=1 p=0 src=0")

	// CheckTargets refuses an empty list: a name that never resolved.
	err := w.Set(ctx, mustSources(t, "nowhere.test"), CheckTargets)
	if !errors.Is(err, ErrNoTargets) {
		t.Fatalf("empty list: %v", err)
	}
}

func TestRunRefreshesAndRetries(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("sip.test", a("127.0.6.1"))
	w, _ := newTestWatcher(t, s, Config{Interval: 200 * time.Millisecond, Retry: 100 * time.Millisecond})
	var c capture
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// late.test does not exist yet: no target from it, retried.
	if err := w.Set(ctx, mustSources(t, "sip.test", "late.test"), c.apply); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, c.apply)
	}()
	s.Set("late.test", a("127.0.6.2"))
	s.Set("sip.test", a("127.0.6.1"), a("127.0.6.3"))
	deadline := time.Now().Add(5 * time.Second)
	want := []string{"udp:127.0.6.1:5060 w=1 p=0 src=0", "udp:127.0.6.2:5060 w=1 p=0 src=1", "udp:127.0.6.3:5060 w=1 p=0 src=0"}
	for {
		c.mu.Lock()
		got := summary(c.last)
		c.mu.Unlock()
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run did not apply the new answer: %q", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if w.Stats().Refreshes < 2 {
		t.Errorf("refreshes %d", w.Stats().Refreshes)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Interval: time.Millisecond}); err == nil {
		t.Error("tiny interval accepted")
	}
	if _, err := New(Config{Network: "tcp"}); err == nil {
		t.Error("bad network accepted")
	}
	w, err := New(Config{Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c := w.Config(); c.Retry != time.Second || c.Timeout != DefaultTimeout || c.Network != "ip" {
		t.Errorf("defaults %+v", c)
	}
}
