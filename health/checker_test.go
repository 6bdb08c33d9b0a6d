package health

import (
	"errors"
	"fmt"
	"github.com/viaduct-sip/viaduct/transport"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
)

// slack is added to every upper time bound: the machine running the tests
// may be slow (race detector, two cores, other packages in parallel), and
// a balancer table rebuild takes tens of milliseconds (more under -race).
const slack = time.Second

// fast are short probe settings for tests: detection bound 100ms x 3 + 50ms
// = 350ms, recovery bound 100ms x 2 + 50ms = 250ms.
var fast = Settings{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond, Failures: 3, Successes: 2}

func probedOK(c *Checker, n uint64) func() bool {
	return func() bool {
		for _, s := range c.Status() {
			if s.ProbesOK < n {
				return false
			}
		}
		return true
	}
}

func TestDownAndUpWithinBounds(t *testing.T) {
	f := startPair(t, fast, 2)
	a, sink, logs, c, p := f.a, f.sink, f.logs, f.c, f.p
	start := time.Now()

	// a stops answering: down within interval x failures + timeout.
	t0 := time.Now()
	a.mode.Store(modeSilent)
	down := sink.waitHealth(t, "a", balancer.Down, t0, p.DetectionBound()+slack)
	el := down.Sub(t0)
	t.Logf("down after %v (bound %v)", el, p.DetectionBound())
	// Failures probes, each sent no earlier than its slot, must time out:
	// detection cannot be faster than (failures-1) x interval + timeout.
	if lower := p.Interval*time.Duration(p.Failures-1) + p.Timeout - 5*time.Millisecond; el < lower {
		t.Errorf("down after %v, before %v: fewer than %d failures?", el, lower, p.Failures)
	}
	if h := poolHealth(t, sink.pool, "a"); h != balancer.Down {
		t.Errorf("pool health of a = %v, want down", h)
	}
	st, _ := c.StatusOf("a")
	if !strings.Contains(st.HealthReason, "probe timeout") || st.ProbeTimeouts < uint64(p.Failures) {
		t.Errorf("status of a: reason %q, %d timeouts", st.HealthReason, st.ProbeTimeouts)
	}

	// a answers again: up within interval x successes + timeout.
	t1 := time.Now()
	a.mode.Store(modeAnswer)
	up := sink.waitHealth(t, "a", balancer.Up, t1, p.RecoveryBound()+slack)
	el = up.Sub(t1)
	t.Logf("up after %v (bound %v)", el, p.RecoveryBound())
	if lower := p.Interval*time.Duration(p.Successes-1) - 5*time.Millisecond; el < lower {
		t.Errorf("up after %v, before %v: fewer than %d successes?", el, lower, p.Successes)
	}
	if h := poolHealth(t, sink.pool, "a"); h != balancer.Up {
		t.Errorf("pool health of a = %v, want up", h)
	}
	// b never changed.
	if evs := sink.healthChanges("b", start); len(evs) != 0 {
		t.Errorf("b changed health %d times", len(evs))
	}
	logs.waitLog(t,
		`msg="upstream health changed" target=a addr=`+a.addr.String()+` health=down previous=up reason="probe timeout`,
		`msg="upstream health changed" target=a addr=`+a.addr.String()+` health=up previous=down reason="probe reply 200 OK (2 consecutive successes)"`,
	)
}

func TestReply503MarksDown(t *testing.T) {
	tr := newUDPTransport(t)
	a := newResponder(t, "a")
	sink := newRecordingSink(t, a)
	c := startChecker(t, tr, sink, fast, nil, a)
	p := c.Status()[0].Probe
	waitFor(t, 2*time.Second, "first probe answered", probedOK(c, 1))
	t0 := time.Now()
	a.optionsCode.Store(503)
	// A reply fails at once: no timeout to wait for.
	down := sink.waitHealth(t, "a", balancer.Down, t0, p.Interval*time.Duration(p.Failures)+slack)
	t.Logf("down after %v", down.Sub(t0))
	st, _ := c.StatusOf("a")
	if !strings.Contains(st.HealthReason, "probe reply 503 Service Unavailable") || st.LastCode != 503 || st.ProbeBadCode < 3 {
		t.Errorf("status: reason %q, last code %d, bad codes %d", st.HealthReason, st.LastCode, st.ProbeBadCode)
	}
	a.optionsCode.Store(200)
	sink.waitHealth(t, "a", balancer.Up, down, p.RecoveryBound()+slack)
}

func TestAcceptedCodes(t *testing.T) {
	tr := newUDPTransport(t)
	strict, lenient := newResponder(t, "strict"), newResponder(t, "lenient")
	strict.optionsCode.Store(404) // accepted by default, not by "2xx"
	lenient.optionsCode.Store(503)
	sink := newRecordingSink(t, strict, lenient)
	cfg := Config{
		Settings: fast.Merge(Settings{Accept: []string{"2xx"}}),
		Targets: []Target{
			{ID: "strict", Addr: strict.addr},
			{ID: "lenient", Addr: lenient.addr, Settings: Settings{Accept: []string{"2xx", "500-599"}}},
		},
	}
	t0 := time.Now()
	c := runChecker(t, tr, sink, cfg, nil)
	p := c.Status()[0].Probe
	sink.waitHealth(t, "strict", balancer.Down, t0, p.DetectionBound()+slack)
	waitFor(t, 2*time.Second, "lenient probed 5 times", func() bool {
		s, _ := c.StatusOf("lenient")
		return s.ProbesOK >= 5
	})
	if evs := sink.healthChanges("lenient", t0); len(evs) != 0 {
		t.Errorf("lenient target answering accepted 503s changed health: %d events", len(evs))
	}
	s, _ := c.StatusOf("strict")
	if !strings.Contains(s.HealthReason, "reply 404 Not Found") {
		t.Errorf("strict reason %q", s.HealthReason)
	}
}

func TestSendErrorIsFailure(t *testing.T) {
	tr := newUDPTransport(t)
	a := newResponder(t, "a")
	sink := newRecordingSink(t, a)
	c := startChecker(t, tr, sink, fast, nil, a)
	waitFor(t, 2*time.Second, "first probe answered", probedOK(c, 1))
	t0 := time.Now()
	tr.sendErr.Store(true)
	sink.waitHealth(t, "a", balancer.Down, t0, c.Status()[0].Probe.DetectionBound()+slack)
	s, _ := c.StatusOf("a")
	if !strings.Contains(s.HealthReason, "probe send error: simulated send failure") || s.SendErrors < 3 {
		t.Errorf("reason %q, %d send errors", s.HealthReason, s.SendErrors)
	}
}

func TestRTT(t *testing.T) {
	tr := newUDPTransport(t)
	a := newResponder(t, "a")
	const d = 15 * time.Millisecond
	a.delay.Store(int64(d))
	sink := newRecordingSink(t, a)
	c := startChecker(t, tr, sink, fast, nil, a)
	waitFor(t, 2*time.Second, "3 probes answered", probedOK(c, 3))
	s := c.Status()[0]
	if s.RTT < d || s.RTT > s.Probe.Timeout {
		t.Errorf("RTT %v, want between %v and %v", s.RTT, d, s.Probe.Timeout)
	}
	if s.RTTAvg < d || s.RTTAvg > s.Probe.Timeout {
		t.Errorf("RTT average %v, want between %v and %v", s.RTTAvg, d, s.Probe.Timeout)
	}
	// Every sample is in the histogram, none below the 15 ms delay.
	h := s.RTTHist
	if h.Count < 3 || h.Count > s.ProbesOK || h.Sum < time.Duration(h.Count)*d {
		t.Errorf("histogram: %d samples summing to %v; want 3..%d samples of at least %v", h.Count, h.Sum, s.ProbesOK, d)
	}
	if cum := h.Cumulative(); cum[4] != 0 { // bound 4 is 5 ms
		t.Errorf("histogram: %d samples at most 5 ms, want 0 (delay %v)", cum[4], d)
	}
}

func TestRetransmission(t *testing.T) {
	tr := newUDPTransport(t)
	a := newResponder(t, "a")
	a.dropFirst.Store(true) // answer only the retransmission
	sink := newRecordingSink(t, a)
	s := Settings{Interval: 2 * time.Second, Timeout: 900 * time.Millisecond, Failures: 1, Successes: 1}
	t0 := time.Now()
	c := startChecker(t, tr, sink, s, nil, a)
	waitFor(t, 3*time.Second, "probe answered", probedOK(c, 1))
	st := c.Status()[0]
	if st.ProbeTimeouts != 0 || st.Health != balancer.Up {
		t.Errorf("timeouts %d, health %v: the retransmission should have been answered", st.ProbeTimeouts, st.Health)
	}
	if st.RTT != 0 || st.RTTHist.Count != 0 {
		t.Errorf("RTT %v, %d histogram samples measured on a retransmitted probe (Karn's rule)", st.RTT, st.RTTHist.Count)
	}
	ts := a.optionsTimes()
	if len(ts) < 2 {
		t.Fatalf("%d copies of the probe arrived, want 2", len(ts))
	}
	// Arrival times: the first copy may be delayed on a loaded machine,
	// which shortens the gap; T1/2 still tells timer E from a resend.
	if gap := ts[1].Sub(ts[0]); gap < T1/2 {
		t.Errorf("retransmitted after %v, want T1 = %v", gap, T1)
	}
	if evs := sink.healthChanges("a", t0); len(evs) != 0 {
		t.Errorf("health changed: %d events", len(evs))
	}
}

func TestProbesSpreadOverInterval(t *testing.T) {
	const n = 4
	interval := 400 * time.Millisecond
	tr := newUDPTransport(t)
	rs := make([]*responder, n)
	for i := range rs {
		rs[i] = newResponder(t, fmt.Sprintf("r%d", i))
	}
	sink := newRecordingSink(t, rs...)
	start := time.Now()
	c := startChecker(t, tr, sink, Settings{Interval: interval, Timeout: 100 * time.Millisecond}, nil, rs...)
	waitFor(t, 2*time.Second, "every target probed", probedOK(c, 1))
	// The k-th target is not probed before k/n of the interval: one
	// probe every interval/n, not a burst of n.
	for k, r := range rs {
		first := r.optionsTimes()[0].Sub(start)
		if lower := interval*time.Duration(k)/n - 5*time.Millisecond; first < lower {
			t.Errorf("target %d first probed after %v, before its slot %v", k, first, lower)
		}
	}
}

func TestScheduleSpread(t *testing.T) {
	cfg := Config{Settings: Settings{Interval: time.Second}}
	for i := 0; i < 5; i++ {
		cfg.Targets = append(cfg.Targets, Target{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(5060+i))})
	}
	never := true
	cfg.Targets[2].Settings.NeverProbe = &never
	c, err := New(cfg, newUDPTransport(t), nopSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.scheduleNew(c.targets, now)
	for k, tg := range c.targets {
		if k == 2 {
			if tg.hidx != -1 {
				t.Errorf("never-probed target is scheduled")
			}
			continue
		}
		if got, want := tg.nextProbe.Sub(now), time.Second*time.Duration(k)/5; got != want {
			t.Errorf("target %d first probe at +%v, want +%v", k, got, want)
		}
	}
	if len(c.queue) != 4 {
		t.Errorf("queue holds %d targets, want 4", len(c.queue))
	}
}

type nopSink struct{}

func (nopSink) SetHealth(string, balancer.Health) error    { return nil }
func (nopSink) SetAdmin(string, balancer.AdminState) error { return nil }

func TestPassive503Burst(t *testing.T) {
	f := startPair(t, fast.Merge(Settings{Passive503: &PassiveSettings{Count: 5, Window: 200 * time.Millisecond}}), 1)
	a, b, sink, logs, c, p := f.a, f.b, f.sink, f.logs, f.c, f.p
	t0 := time.Now()
	// b's 503s come slower than 5 per 200ms: 5 consecutive ones span
	// 4 x 60ms = 240ms.
	for i := 0; i < 6; i++ {
		c.ObserveResponse(b.addr, 503)
		time.Sleep(60 * time.Millisecond)
	}
	for i := 0; i < 4; i++ {
		c.ObserveResponse(a.addr, 503)
	}
	for i := 0; i < 100; i++ {
		c.ObserveResponse(a.addr, 200)
		c.ObserveResponse(a.addr, 486)
		c.ObserveResponse(netip.MustParseAddrPort("127.0.0.1:9"), 503)
	}
	time.Sleep(20 * time.Millisecond)
	if evs := sink.healthChanges("a", t0); len(evs) != 0 {
		t.Fatalf("4 503s (count 5) changed a's health")
	}
	t1 := time.Now()
	c.ObserveResponse(netip.AddrPortFrom(netip.AddrFrom16(a.addr.Addr().As16()), a.addr.Port()), 503) // v4-mapped form
	down := sink.waitHealth(t, "a", balancer.Down, t1, slack)
	t.Logf("down %v after the 5th 503", down.Sub(t1))
	st, _ := c.StatusOf("a")
	if !strings.Contains(st.HealthReason, "passive 503 burst") || st.Passive503 != 1 {
		t.Errorf("reason %q, %d bursts", st.HealthReason, st.Passive503)
	}
	// Probes (answered 200) bring it back.
	sink.waitHealth(t, "a", balancer.Up, down, p.RecoveryBound()+slack)
	if evs := sink.healthChanges("b", t0); len(evs) != 0 {
		t.Errorf("b's slow 503s changed its health")
	}
	// Rearmed: a new burst trips again.
	t2 := time.Now()
	for i := 0; i < 5; i++ {
		c.ObserveResponse(a.addr, 503)
	}
	sink.waitHealth(t, "a", balancer.Down, t2, slack)
	logs.waitLog(t, `health=down previous=up reason="passive 503 burst (5 responses 503 within 200ms)"`)
}

func TestAdminStateSeparateFromHealth(t *testing.T) {
	f := startPair(t, fast, 1)
	a, sink, logs, c, p := f.a, f.sink, f.logs, f.c, f.p

	admin := func(id string) balancer.AdminState {
		tg, _ := sink.pool.Table().ByID(id)
		return tg.Admin
	}
	if err := c.SetAdmin("a", balancer.Draining, "test"); err != nil {
		t.Fatal(err)
	}
	if admin("a") != balancer.Draining || poolHealth(t, sink.pool, "a") != balancer.Up {
		t.Fatalf("after drain: admin %v health %v", admin("a"), poolHealth(t, sink.pool, "a"))
	}
	if err := c.SetAdmin("a", balancer.Disabled, "test"); err != nil {
		t.Fatal(err)
	}
	// Probing goes on while disabled, and finds a dead.
	t0 := time.Now()
	a.mode.Store(modeSilent)
	sink.waitHealth(t, "a", balancer.Down, t0, p.DetectionBound()+slack)
	if admin("a") != balancer.Disabled {
		t.Errorf("a probe changed the admin state to %v", admin("a"))
	}
	// Enabling does not forget that a is down.
	if err := c.SetAdmin("a", balancer.Enabled, "test"); err != nil {
		t.Fatal(err)
	}
	if h := poolHealth(t, sink.pool, "a"); h != balancer.Down {
		t.Errorf("enabling a made its health %v", h)
	}
	if s, _ := c.StatusOf("a"); s.Health != balancer.Down || s.Admin != balancer.Enabled {
		t.Errorf("status: health %v admin %v", s.Health, s.Admin)
	}
	t1 := time.Now()
	a.mode.Store(modeAnswer)
	sink.waitHealth(t, "a", balancer.Up, t1, p.RecoveryBound()+slack)
	if admin("a") != balancer.Enabled {
		t.Errorf("recovery changed the admin state to %v", admin("a"))
	}

	// Same state again: no change, no log line.
	before := strings.Count(logs.String(), "admin state changed")
	if err := c.SetAdmin("a", balancer.Enabled, "test"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "admin state changed"); n != before {
		t.Errorf("a no-op admin change was logged")
	}
	err := c.SetAdmin("nope", balancer.Disabled, "test")
	if !errors.Is(err, balancer.ErrUnknownTarget) {
		t.Errorf("unknown target: %v", err)
	}
	if err := c.SetAdmin("b", balancer.AdminState(9), "test"); err == nil {
		t.Errorf("invalid admin state accepted")
	}
	logs.waitLog(t,
		`msg="upstream admin state changed" target=a addr=`+a.addr.String()+` admin=draining previous=enabled reason=admin by=test health=up`,
		`admin=disabled previous=draining reason=admin by=test health=up`,
		`admin=enabled previous=disabled reason=admin by=test health=down`,
		`health=down previous=up reason="probe timeout (no final response within 50ms) (3 consecutive failures)" admin=disabled`,
	)
}

func TestUpdateKeepsStates(t *testing.T) {
	tr := newUDPTransport(t)
	a, b, n := newResponder(t, "a"), newResponder(t, "b"), newResponder(t, "n")
	sink := newRecordingSink(t, a, b)
	c := startChecker(t, tr, sink, fast, nil, a, b)
	p := c.Status()[0].Probe
	waitFor(t, 2*time.Second, "first probes answered", probedOK(c, 1))
	a.mode.Store(modeSilent)
	sink.waitHealth(t, "a", balancer.Down, time.Now().Add(-time.Hour), p.DetectionBound()+slack)
	if err := c.SetAdmin("b", balancer.Draining, "test"); err != nil {
		t.Fatal(err)
	}
	sentB := c.Status()[1].ProbesSent

	// Reload: b's settings change, n is new, a stays. The sink first.
	ts := []balancer.Target{
		{ID: "a", Addr: a.addr, Transport: "udp", Weight: 1},
		{ID: "n", Addr: n.addr, Transport: "udp", Weight: 1},
		{ID: "b", Addr: b.addr, Transport: "udp", Weight: 2},
	}
	if err := sink.pool.Update(ts); err != nil {
		t.Fatal(err)
	}
	err := c.Update(Config{Settings: fast, Targets: []Target{
		{ID: "a", Addr: a.addr},
		{ID: "n", Addr: n.addr, Admin: balancer.Enabled},
		{ID: "b", Addr: b.addr, Admin: balancer.Enabled, Settings: Settings{Interval: 150 * time.Millisecond}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	if len(st) != 3 || st[0].ID != "a" || st[1].ID != "n" || st[2].ID != "b" {
		t.Fatalf("status order after update: %+v", st)
	}
	if st[0].Health != balancer.Down || st[2].Admin != balancer.Draining || st[2].ProbesSent < sentB {
		t.Errorf("update lost state: a %v, b admin %v, b probes %d < %d", st[0].Health, st[2].Admin, st[2].ProbesSent, sentB)
	}
	if st[2].Probe.Interval != 150*time.Millisecond {
		t.Errorf("b interval %v after update", st[2].Probe.Interval)
	}
	waitFor(t, 2*time.Second, "new target probed", func() bool { s, _ := c.StatusOf("n"); return s.ProbesOK >= 2 })
	waitFor(t, 2*time.Second, "b probed after update", func() bool { s, _ := c.StatusOf("b"); return s.ProbesOK >= st[2].ProbesOK+2 })
	a.mode.Store(modeAnswer)
	sink.waitHealth(t, "a", balancer.Up, time.Now().Add(-time.Millisecond), p.RecoveryBound()+slack)

	// Removing b stops its probes.
	if err := c.Update(Config{Settings: fast, Targets: []Target{{ID: "a", Addr: a.addr}, {ID: "n", Addr: n.addr}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * p.Interval) // a probe already in flight may still arrive
	count := len(b.optionsTimes())
	time.Sleep(3 * p.Interval)
	if got := len(b.optionsTimes()); got != count {
		t.Errorf("removed target probed %d more times", got-count)
	}
	if _, ok := c.StatusOf("b"); ok {
		t.Errorf("removed target still in status")
	}
	// A target the sink does not know is refused.
	if err := c.Update(Config{Settings: fast, Targets: []Target{{ID: "a", Addr: a.addr}, {ID: "ghost", Addr: b.addr}}}); !errors.Is(err, balancer.ErrUnknownTarget) {
		t.Errorf("update with a target unknown to the sink: %v", err)
	}
	// A bad config changes nothing.
	if err := c.Update(Config{Targets: []Target{{ID: "a", Addr: a.addr}, {ID: "a", Addr: n.addr}}}); err == nil {
		t.Errorf("duplicate IDs accepted")
	}
	if len(c.Status()) != 2 {
		t.Errorf("failed update changed the targets")
	}
}

func TestStartChecksSink(t *testing.T) {
	a := newResponder(t, "a")
	pool, err := balancer.NewPool([]balancer.Target{{ID: "other", Addr: a.addr, Transport: "udp", Weight: 1}}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Targets: []Target{{ID: "a", Addr: a.addr}}}, newUDPTransport(t), pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); !errors.Is(err, balancer.ErrUnknownTarget) {
		t.Errorf("Start with a target the sink lacks: %v", err)
	}
	// Initial admin states reach the sink at Start.
	pool2, _ := balancer.NewPool([]balancer.Target{{ID: "a", Addr: a.addr, Transport: "udp", Weight: 1}}, balancer.Options{})
	c2, err := New(Config{Targets: []Target{{ID: "a", Addr: a.addr, Admin: balancer.Disabled}}}, newUDPTransport(t), pool2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Start(); err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if tg, _ := pool2.Table().ByID("a"); tg.Admin != balancer.Disabled {
		t.Errorf("pool admin %v after Start, want disabled", tg.Admin)
	}
	if err := c2.Start(); err == nil {
		t.Errorf("second Start accepted")
	}
}

func TestNeverProbe(t *testing.T) {
	tr := newUDPTransport(t)
	a, b := newResponder(t, "a"), newResponder(t, "b")
	sink := newRecordingSink(t, a, b)
	never := true
	cfg := Config{Settings: fast.Merge(Settings{NeverProbe: &never, Passive503: &PassiveSettings{Count: 2}}), Targets: []Target{
		{ID: "a", Addr: a.addr},
		{ID: "b", Addr: b.addr, Settings: Settings{NeverProbe: new(bool)}}, // pool says never, b says probe
	}}
	c := runChecker(t, tr, sink, cfg, nil)
	waitFor(t, 2*time.Second, "b probed", func() bool { s, _ := c.StatusOf("b"); return s.ProbesOK >= 3 })
	for i := 0; i < 10; i++ {
		c.ObserveResponse(a.addr, 503) // a is not watched passively either
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(a.optionsTimes()); n != 0 {
		t.Errorf("never-probed target got %d probes", n)
	}
	if s, _ := c.StatusOf("a"); s.Health != balancer.Up || s.ProbesSent != 0 {
		t.Errorf("never-probed target: %v, %d probes", s.Health, s.ProbesSent)
	}
}

func TestBuildProbe(t *testing.T) {
	tr := newUDPTransport(t)
	addr := netip.MustParseAddrPort("127.0.0.1:5071")
	cfg := Config{Settings: Settings{From: "sip:hc@proxy.example.net", RequestURI: "sip:ping@{addr};transport=udp", Method: "INFO"},
		Targets: []Target{{ID: "x", Addr: addr}}}
	c, err := New(cfg, tr, nopSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.targets[0]
	b := c.buildProbe(nil, tg, 0x1234)
	var m parser.Message
	if err := parser.Parse(b, &m); err != nil {
		t.Fatalf("probe does not parse: %v\n%s", err, b)
	}
	if string(m.Method()) != "INFO" || string(m.RequestURI()) != "sip:ping@127.0.0.1:5071;transport=udp" {
		t.Errorf("start line %q %q", m.Method(), m.RequestURI())
	}
	num, meth := m.CSeq()
	if num != 0x1234 || string(meth) != "INFO" {
		t.Errorf("CSeq %d %s", num, meth)
	}
	idx, seq, ok := parseCallID(m.CallID(), c.prefix)
	if !ok || idx != 0 || seq != 0x1234 {
		t.Errorf("Call-ID %q parses as %d %x %v", m.CallID(), idx, seq, ok)
	}
	from, _ := m.From()
	to, _ := m.To()
	if string(from.URI) != "sip:hc@proxy.example.net" || len(from.Tag) == 0 {
		t.Errorf("From %q tag %q", from.URI, from.Tag)
	}
	if string(to.URI) != "sip:ping@127.0.0.1:5071;transport=udp" || to.Tag != nil {
		t.Errorf("To %q tag %q", to.URI, to.Tag)
	}
	if mf, ok := m.MaxForwards(); !ok || mf != 70 {
		t.Errorf("Max-Forwards %d %v", mf, ok)
	}
	v := m.TopVia()
	if string(v.Branch) != "z9hG4bKtest1234" || v.Port != int(tr.addr.Port()) {
		t.Errorf("Via branch %q port %d", v.Branch, v.Port)
	}
	if n, _ := m.ContentLength(); n != 0 {
		t.Errorf("Content-Length %d", n)
	}
	// IPv6 target: the default Request-URI brackets the address.
	c6, err := New(Config{Targets: []Target{{Addr: netip.MustParseAddrPort("[::1]:5060")}}}, tr, nopSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c6.targets[0].probe.RequestURI; got != "sip:[::1]:5060" {
		t.Errorf("IPv6 Request-URI %q", got)
	}
	if c6.targets[0].id != "udp:[::1]:5060" {
		t.Errorf("default ID %q", c6.targets[0].id)
	}
}

func TestParseCallID(t *testing.T) {
	prefix := []byte("vdp-0123456789abcdef-")
	for _, tc := range []struct {
		in       string
		idx, seq uint64
		ok       bool
	}{
		{"vdp-0123456789abcdef-0-1", 0, 1, true},
		{"vdp-0123456789abcdef-ff-ffffffffffffffff", 255, 1<<64 - 1, true},
		{"vdp-0123456789abcdef-1-1ffffffffffffffff", 0, 0, false}, // 17 digits
		{"vdp-0123456789abcdef-1", 0, 0, false},
		{"vdp-0123456789abcdef-1-", 0, 0, false},
		{"vdp-0123456789abcdef--1", 0, 0, false},
		{"vdp-0123456789abcdef-1-2@host", 0, 0, false},
		{"vdp-0123456789abcdeF-1-2", 0, 0, false},
		{"vdp-0123456789abcdef-", 0, 0, false},
		{"abc", 0, 0, false},
	} {
		idx, seq, ok := parseCallID([]byte(tc.in), prefix)
		if ok != tc.ok || ok && (idx != tc.idx || seq != tc.seq) {
			t.Errorf("parseCallID(%q) = %d, %d, %v", tc.in, idx, seq, ok)
		}
	}
}

func TestHandleResponseFilters(t *testing.T) {
	c, err := New(Config{Targets: []Target{{ID: "x", Addr: netip.MustParseAddrPort("127.0.0.1:5071")}}}, newUDPTransport(t), nopSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(start, callID string) *parser.Message {
		var m parser.Message
		s := start + "\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: " +
			callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		if err := parser.Parse([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	ours := string(c.prefix) + "0-1"
	from := netip.MustParseAddrPort("127.0.0.1:5071")
	if c.HandleResponse(msg("OPTIONS sip:x SIP/2.0", ours), from) {
		t.Errorf("a request was taken")
	}
	if c.HandleResponse(msg("SIP/2.0 200 OK", "someone-else"), from) {
		t.Errorf("a foreign response was taken")
	}
	if !c.HandleResponse(msg("SIP/2.0 100 Trying", ours), from) || len(c.replies) != 0 {
		t.Errorf("a provisional response was queued")
	}
	if !c.HandleResponse(msg("SIP/2.0 486 Busy Here", ours), from) || len(c.replies) != 1 {
		t.Fatalf("a final response was not queued")
	}
	r := <-c.replies
	if r.idx != 0 || r.seq != 1 || r.status != 486 || string(r.reason[:r.rlen]) != "Busy Here" {
		t.Errorf("queued %+v", r)
	}
}

func TestHotPathAllocs(t *testing.T) {
	never := false
	cfg := Config{
		Settings: Settings{NeverProbe: &never, Passive503: &PassiveSettings{Count: 1000, Window: time.Nanosecond}},
		Targets:  []Target{{ID: "x", Addr: netip.MustParseAddrPort("127.0.0.1:5071")}},
	}
	c, err := New(cfg, newUDPTransport(t), nopSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5071")
	if n := testing.AllocsPerRun(1000, func() { c.ObserveResponse(from, 503) }); n != 0 {
		t.Errorf("ObserveResponse(503) allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.ObserveResponse(from, 200) }); n != 0 {
		t.Errorf("ObserveResponse(200) allocates %v times", n)
	}
	var m parser.Message
	raw := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: " +
		string(c.prefix) + "0-2a\r\nCSeq: 42 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if err := parser.Parse(raw, &m); err != nil {
		t.Fatal(err)
	}
	// Both the queued path and, once the queue is full, the dropping one.
	if n := testing.AllocsPerRun(2*cap(c.replies), func() { c.HandleResponse(&m, from) }); n != 0 {
		t.Errorf("HandleResponse allocates %v times", n)
	}
	if c.DroppedReplies() == 0 {
		t.Errorf("the full-queue path was not exercised")
	}
}

func BenchmarkObserveResponse(b *testing.B) {
	cfg := Config{
		Settings: Settings{Passive503: &PassiveSettings{Count: 1000, Window: time.Nanosecond}},
		Targets:  []Target{{ID: "x", Addr: netip.MustParseAddrPort("127.0.0.1:5071")}},
	}
	c, err := New(cfg, &udpTransport{}, nopSink{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5071")
	for _, code := range []int{200, 503} {
		b.Run(fmt.Sprint(code), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.ObserveResponse(from, code)
				}
			})
		})
	}
}

func BenchmarkHandleResponse(b *testing.B) {
	c, err := New(Config{Targets: []Target{{ID: "x", Addr: netip.MustParseAddrPort("127.0.0.1:5071")}}}, &udpTransport{}, nopSink{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	var m parser.Message
	raw := []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: " +
		string(c.prefix) + "0-2a\r\nCSeq: 42 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if err := parser.Parse(raw, &m); err != nil {
		b.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5071")
	done := make(chan struct{})
	go func() { // the checker's side of the queue
		for {
			select {
			case <-c.replies:
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	b.ReportAllocs()
	for b.Loop() {
		c.HandleResponse(&m, from)
	}
}

// countingPool counts the batches applied to a pool.
type countingPool struct {
	*balancer.Pool
	batches int
}

func (p *countingPool) Batch(fn func(b *balancer.Batch) error) error {
	p.batches++
	return p.Pool.Batch(fn)
}

func TestFlushBatchesHealthChanges(t *testing.T) {
	a, b := netip.MustParseAddrPort("127.0.0.1:5071"), netip.MustParseAddrPort("127.0.0.1:5072")
	pool, err := balancer.NewPool([]balancer.Target{{ID: "a", Addr: a, Transport: "udp", Weight: 1}, {ID: "b", Addr: b, Transport: "udp", Weight: 1}}, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sink := &countingPool{Pool: pool}
	logs := &logBuffer{}
	c, err := New(Config{Targets: []Target{{ID: "a", Addr: a}, {ID: "b", Addr: b}}}, newUDPTransport(t), sink, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	c.pending = map[string]balancer.Health{"a": balancer.Down, "b": balancer.Down}
	c.flush()
	if sink.batches != 1 || poolHealth(t, pool, "a") != balancer.Down || poolHealth(t, pool, "b") != balancer.Down {
		t.Errorf("%d batches; health a %v b %v", sink.batches, poolHealth(t, pool, "a"), poolHealth(t, pool, "b"))
	}
	// A target the sink does not know spoils the batch: the others are
	// applied one by one, and the failure is logged.
	c.pending = map[string]balancer.Health{"a": balancer.Up, "ghost": balancer.Up}
	c.flush()
	if poolHealth(t, pool, "a") != balancer.Up || !strings.Contains(logs.String(), `msg="upstream health not applied" target=ghost`) {
		t.Errorf("health a %v; log:\n%s", poolHealth(t, pool, "a"), logs.String())
	}
	if c.pending != nil {
		t.Errorf("flush left %v pending", c.pending)
	}
}

// recordTransport is a Transport that sends nothing: it counts the probes,
// for tests that drive the checker's rounds with their own clock.
type recordTransport struct{ sent int }

func (tr *recordTransport) AppendViaOver(dst []byte, _ netip.AddrPort, _ transport.Kind, key uint64) []byte {
	return fmt.Appendf(dst, "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtest%x\r\n", key)
}
func (tr *recordTransport) SendOver([]byte, netip.AddrPort, transport.Kind) error {
	tr.sent++
	return nil
}

// TestTrafficRounds drives the rounds of one target with a simulated clock
// (runDue with chosen times; the checker is not started): a response to
// traffic that arrives during a round passes it without a probe reply; a
// target that carried traffic gets its probe only if nothing came back
// within half the timeout; and a response from before the round does not
// pass it, which is what keeps the detection bound interval x failures +
// timeout for a target that dies while carrying traffic.
func TestTrafficRounds(t *testing.T) {
	addr := netip.MustParseAddrPort("127.0.0.1:5071")
	tr := &recordTransport{}
	logs := &logBuffer{}
	s := Settings{Interval: 100 * time.Millisecond, Timeout: 40 * time.Millisecond, Failures: 2, Successes: 1}
	c, err := New(Config{Settings: s, Targets: []Target{{ID: "a", Addr: addr}}}, tr, nopSink{}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	c.scheduleNew(c.targets, base)
	a := c.targets[0]
	step := func(ms int, want string) {
		t.Helper()
		c.runDue(at(ms))
		st := a.status()
		got := fmt.Sprintf("probes %d, traffic ok %d, timeouts %d, health %v", tr.sent, st.TrafficOK, st.ProbeTimeouts, st.Health)
		if got != want {
			t.Errorf("at %dms: %s; want %s", ms, got, want)
		}
	}
	// Round 1 (0-40ms): no traffic before it, so a probe at once; an
	// answer to traffic during it passes it.
	step(0, "probes 1, traffic ok 0, timeouts 0, health up")
	c.ObserveResponse(addr, 180)
	step(40, "probes 1, traffic ok 1, timeouts 0, health up")
	// Round 2 (100-140ms): traffic in round 1, so no probe yet; an answer
	// comes within half the timeout: passed, no probe sent.
	step(100, "probes 1, traffic ok 1, timeouts 0, health up")
	c.ObserveResponse(addr, 200)
	step(120, "probes 1, traffic ok 2, timeouts 0, health up")
	// Round 3 (200-240ms): the response seen in round 2 is older than the
	// round: it does not pass it. Nothing came within half the timeout:
	// the probe goes out, then the round times out.
	step(200, "probes 1, traffic ok 2, timeouts 0, health up")
	step(220, "probes 2, traffic ok 2, timeouts 0, health up")
	step(240, "probes 2, traffic ok 2, timeouts 1, health up")
	if st := a.status(); !strings.Contains(st.LastResult, "no response to forwarded requests within 40ms") {
		t.Errorf("round 3: %q", st.LastResult)
	}
	// Round 4: no traffic in round 3, probe at once; a 503 is no evidence
	// of life: second timeout, down.
	step(300, "probes 3, traffic ok 2, timeouts 1, health up")
	c.ObserveResponse(addr, 503)
	step(340, "probes 3, traffic ok 2, timeouts 2, health down")
	// The hint about targets that ignore OPTIONS: once, at the first
	// timeout of a target that never answered a probe.
	if n := strings.Count(logs.String(), `msg="upstream did not answer a health probe: if it never answers OPTIONS`); n != 1 {
		t.Errorf("hint logged %d times:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "set never_probe for it") {
		t.Errorf("the hint does not point to never_probe:\n%s", logs.String())
	}
	// Round 5: a response to an in-dialog request (a down target still
	// gets those) brings it back, with successes 1.
	step(400, "probes 4, traffic ok 2, timeouts 2, health down")
	c.ObserveResponse(netip.AddrPortFrom(netip.AddrFrom16(addr.Addr().As16()), addr.Port()), 200) // v4-mapped form
	step(410, "probes 4, traffic ok 2, timeouts 2, health down")                                  // seen at the next event only
	step(440, "probes 4, traffic ok 3, timeouts 2, health up")
}

// A busy target is never probed, and one that ignores OPTIONS is not marked
// down while it carries traffic; when its traffic stops it is marked down
// within interval x failures + timeout, as by probes alone.
func TestTrafficKeepsTargetUp(t *testing.T) {
	tr := newUDPTransport(t)
	a := newResponder(t, "a")
	a.mode.Store(modeNoOptions)
	sink := newRecordingSink(t, a)
	logs := &logBuffer{}
	c := startChecker(t, tr, sink, fast, logs.logger(), a)
	p := c.Status()[0].Probe
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan time.Time)
	go func() { // the fast path relaying a's responses, every 5ms
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- time.Now()
				return
			case <-tick.C:
				c.ObserveResponse(a.addr, 200)
			}
		}
	}()
	waitFor(t, 10*time.Second, "10 rounds passed on traffic", func() bool {
		st, _ := c.StatusOf("a")
		return st.TrafficOK >= 10
	})
	close(stop)
	t0 := <-done
	st, _ := c.StatusOf("a")
	if evs := sink.healthChanges("a", start); len(evs) != 0 || st.Health != balancer.Up {
		t.Fatalf("a changed health while carrying traffic: %d changes, %v (%s)", len(evs), st.Health, st.HealthReason)
	}
	// The first round has no traffic before it and sends a probe; a busy
	// target needs no other (a round waits 25ms for traffic every 5ms: a
	// second probe means a stall of the machine, tolerated once).
	if st.ProbesSent > 2 || st.ProbesOK != 0 {
		t.Errorf("busy target: %d probes sent, %d answered; want at most 2, 0", st.ProbesSent, st.ProbesOK)
	}
	down := sink.waitHealth(t, "a", balancer.Down, t0, p.DetectionBound()+slack)
	el := down.Sub(t0)
	t.Logf("traffic stopped: down after %v (bound %v)", el, p.DetectionBound())
	if lower := p.Interval*time.Duration(p.Failures-1) + p.Timeout - 5*time.Millisecond; el < lower {
		t.Errorf("down after %v, before %v", el, lower)
	}
	if st, _ := c.StatusOf("a"); !strings.Contains(st.HealthReason, "probe timeout") {
		t.Errorf("reason %q", st.HealthReason)
	}
}

// When every upstream is down the checker's policy reaches the pool, which
// forwards to all of them (panic mode) or refuses; the checker logs it
// loudly, once, and logs its end.
func TestAllDownReachesPoolAndIsLogged(t *testing.T) {
	for _, policy := range []balancer.AllDown{balancer.AllDownForward, balancer.AllDownReject} {
		t.Run(policy.String(), func(t *testing.T) {
			tr := newUDPTransport(t)
			a, b := newResponder(t, "a"), newResponder(t, "b")
			pool, err := balancer.NewPool([]balancer.Target{
				{ID: "a", Addr: a.addr, Transport: "udp", Weight: 1},
				{ID: "b", Addr: b.addr, Transport: "udp", Weight: 1, Priority: 1},
			}, balancer.Options{AllDown: 1 - policy}) // the checker sets it
			if err != nil {
				t.Fatal(err)
			}
			logs := &logBuffer{}
			cfg := Config{Settings: fast, AllDown: policy, Targets: []Target{{ID: "a", Addr: a.addr}, {ID: "b", Addr: b.addr}}}
			c := runChecker(t, tr, pool, cfg, logs.logger())
			p := c.Status()[0].Probe
			a.mode.Store(modeSilent)
			b.mode.Store(modeSilent)
			waitFor(t, p.DetectionBound()+slack, "every target down", func() bool { return pool.Table().AllDown() })
			tab := pool.Table()
			if tab.Panic() != (policy == balancer.AllDownForward) {
				t.Errorf("policy %v: Panic() = %v", policy, tab.Panic())
			}
			if n, _ := tab.Live(false); (n == 2) != (policy == balancer.AllDownForward) || (n == 0) != (policy == balancer.AllDownReject) {
				t.Errorf("policy %v: %d targets selectable", policy, n)
			}
			want := `level=ERROR msg="every upstream is down: forwarding to all of them anyway (panic mode)`
			if policy == balancer.AllDownReject {
				want = `level=ERROR msg="every upstream is down: new requests are answered 503 (health.all_down: reject)"`
			}
			logs.waitLog(t, want)
			b.mode.Store(modeAnswer)
			waitFor(t, p.RecoveryBound()+slack, "b up", func() bool { return !pool.Table().AllDown() })
			logs.waitLog(t, `level=WARN msg="not every upstream is down any more`)
			if n := strings.Count(logs.String(), "every upstream is down:"); n != 1 {
				t.Errorf("all-down logged %d times:\n%s", n, logs.String())
			}
			// A reload may change the policy.
			cfg.AllDown = 1 - policy
			if err := c.Update(cfg); err != nil {
				t.Fatal(err)
			}
			b.mode.Store(modeSilent)
			waitFor(t, p.DetectionBound()+slack, "every target down again", func() bool { return pool.Table().AllDown() })
			if pool.Table().Panic() != (policy == balancer.AllDownReject) {
				t.Errorf("after the reload to %v: Panic() = %v", 1-policy, pool.Table().Panic())
			}
		})
	}
}

// The address index finds every probed target, IPv4 and IPv6, several at
// one address, and nothing else.
func TestObserveResponseFindsItsTarget(t *testing.T) {
	var cfg Config
	for i := 0; i < 300; i++ {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5060)
		if i%2 == 1 {
			a = netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i)), 5060)
		}
		cfg.Targets = append(cfg.Targets, Target{ID: fmt.Sprint(i), Addr: a})
	}
	shared := cfg.Targets[7].Addr
	cfg.Targets = append(cfg.Targets, Target{ID: "same-address", Addr: shared})
	never := true
	cfg.Targets = append(cfg.Targets, Target{ID: "never", Addr: netip.MustParseAddrPort("10.9.9.9:5060"), Settings: Settings{NeverProbe: &never}})
	c, err := New(cfg, &recordTransport{}, nopSink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := func() (ids []string) {
		for _, tg := range c.targets {
			if tg.ev != nil && tg.ev.seen.Swap(false) {
				ids = append(ids, tg.id)
			}
		}
		return ids
	}
	for i, tg := range cfg.Targets[:300] {
		c.ObserveResponse(tg.Addr, 200)
		got := seen()
		want := []string{fmt.Sprint(i)}
		if tg.Addr == shared {
			want = append(want, "same-address")
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("response from %v marked %v, want %v", tg.Addr, got, want)
		}
	}
	for _, a := range []string{"10.9.9.9:5060", "10.0.0.0:5061", "[2001:db8::2]:5060", "192.0.2.1:5060"} {
		c.ObserveResponse(netip.MustParseAddrPort(a), 200)
		if got := seen(); len(got) != 0 {
			t.Errorf("response from %s (no probed target) marked %v", a, got)
		}
	}
	if tg := c.targets[len(c.targets)-1]; tg.ev != nil {
		t.Errorf("a never-probed target is watched")
	}
}
