package load

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

func startUAS(t *testing.T, cfg UASConfig) *UAS {
	t.Helper()
	if !cfg.Listen.IsValid() {
		cfg.Listen = loopback
	}
	s, err := NewUAS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startUAC(t *testing.T, cfg UACConfig) *UAC {
	t.Helper()
	u, err := NewUAC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func runFor(t *testing.T, u *UAC, opts RunOptions) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := u.Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Aborted {
		t.Fatalf("run aborted by the test timeout: started %d completed %d failed %d", r.Counts.Started, r.Counts.Completed, r.Counts.Failed)
	}
	return r
}

// TestCallsLoopback runs 500 calls from the UAC to the UAS over loopback
// and expects every one to succeed.
func TestCallsLoopback(t *testing.T) {
	s := startUAS(t, UASConfig{Workers: 2})
	u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 3, T1: 100 * time.Millisecond, Timeout: 2 * time.Second})
	r := runFor(t, u, RunOptions{Rate: 1000, Total: 500})
	c := &r.Counts
	if c.Started != 500 || c.Completed != 500 || c.Failed != 0 {
		t.Fatalf("started %d completed %d failed %d (timeouts %d, rejected %d, unfinished %d, unexpected %d, late %d, stray %d, parse %d)",
			c.Started, c.Completed, c.Failed, c.Timeouts, c.Rejected, c.Unfinished, c.Unexpected, c.Late, c.Stray, c.ParseErrors)
	}
	if c.Setup.N != 500 || c.Response.N != 1000 {
		t.Fatalf("latency samples: setup %d (want 500), first response %d (want 1000: INVITE and BYE)", c.Setup.N, c.Response.N)
	}
	var sc UASCounts
	s.Counts(&sc)
	if sc.Invite != 500 || sc.Ack != 500 || sc.Bye != 500 || sc.Codes[100] != 500 || sc.Codes[180] != 500 || sc.Codes[200] != 1000 {
		t.Fatalf("uas saw invite %d ack %d bye %d, sent 100:%d 180:%d 200:%d", sc.Invite, sc.Ack, sc.Bye, sc.Codes[100], sc.Codes[180], sc.Codes[200])
	}
}

func TestRequestScenariosLoopback(t *testing.T) {
	s := startUAS(t, UASConfig{Workers: 2})
	for _, sc := range []Scenario{ScenarioRegister, ScenarioOptions, ScenarioMessage} {
		t.Run(sc.String(), func(t *testing.T) {
			u := startUAC(t, UACConfig{Target: s.Addr(), Scenario: sc, Sources: 2, Timeout: 2 * time.Second})
			r := runFor(t, u, RunOptions{Rate: 2000, Total: 300})
			c := &r.Counts
			if c.Completed != 300 || c.Failed != 0 || c.Response.N != 300 || c.Setup.N != 0 {
				t.Fatalf("completed %d failed %d samples %d/%d", c.Completed, c.Failed, c.Response.N, c.Setup.N)
			}
		})
	}
	var sc UASCounts
	s.Counts(&sc)
	if sc.Register != 300 || sc.Options != 300 || sc.OtherRequests != 300 {
		t.Fatalf("uas saw REGISTER %d OPTIONS %d other %d", sc.Register, sc.Options, sc.OtherRequests)
	}
}

// TestFailuresCountedByReason checks that rejected and unanswered calls
// are told apart and that the failure ratio reflects them.
func TestFailuresCountedByReason(t *testing.T) {
	s := startUAS(t, UASConfig{Workers: 2, FailRate: 0.2, FailCode: 486, DropRate: 0.1})
	// A timeout long enough that an answered call does not time out on a
	// loaded machine (300ms did, now and then, under -race).
	u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 4, T1: 20 * time.Millisecond, Timeout: 2 * time.Second})
	r := runFor(t, u, RunOptions{Rate: 2000, Total: 2000})
	c := &r.Counts
	if c.Completed+c.Failed != 2000 {
		t.Fatalf("completed %d + failed %d != 2000", c.Completed, c.Failed)
	}
	if c.Codes[486] != c.Rejected || c.Failed != c.Rejected+c.Timeouts {
		t.Fatalf("failures %v do not add up: rejected %d timeouts %d", c.FailedBy(), c.Rejected, c.Timeouts)
	}
	if c.Rejected < 320 || c.Rejected > 480 || c.Timeouts < 140 || c.Timeouts > 260 {
		t.Fatalf("486: %d (want about 400), timeouts %d (want about 200)", c.Rejected, c.Timeouts)
	}
	// Dropped INVITEs were retransmitted (Timer A) before timing out.
	if c.Retransmissions < c.Timeouts*3 {
		t.Fatalf("retransmissions %d for %d timed-out calls", c.Retransmissions, c.Timeouts)
	}
	if rep := r.Report(0.001); rep.Passed || rep.FailedBy["486"] != c.Rejected || rep.FailedBy["timeout"] != c.Timeouts {
		t.Fatalf("report: passed %v, by reason %v", rep.Passed, rep.FailedBy)
	}
}

// TestManySourcesAndHold uses 64 sources with a call hold, so calls
// overlap and the UAS workers share the sources.
func TestManySourcesAndHold(t *testing.T) {
	s := startUAS(t, UASConfig{Workers: 3})
	u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 64, CallHold: 200 * time.Millisecond, Timeout: 2 * time.Second})
	if n := len(u.LocalAddrs()); n != 64 {
		t.Fatalf("%d sources", n)
	}
	r := runFor(t, u, RunOptions{Rate: 2000, Total: 1000})
	c := &r.Counts
	if c.Completed != 1000 || c.Failed != 0 {
		t.Fatalf("completed %d failed %d (%v)", c.Completed, c.Failed, c.FailedBy())
	}
	// The setup latency was recorded, and lies below the call timeout (a
	// plausibility check of the histogram, not a speed claim: under -race on
	// a busy machine the median can reach a good part of a second).
	if p := c.Setup.Percentile(50); p == 0 || p >= uint64(2*time.Second) {
		t.Fatalf("INVITE->200 median %v outside (0, timeout)", time.Duration(p))
	}
	var busy int
	for _, w := range s.workers {
		if w.st.c[uInvite].Load() > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Fatalf("only %d of 3 UAS workers got traffic from 64 sources", busy)
	}
}

// TestRunDurationAndRate checks that a timed run paces calls at the rate.
func TestRunDurationAndRate(t *testing.T) {
	s := startUAS(t, UASConfig{Workers: 1})
	u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 2})
	r := runFor(t, u, RunOptions{Rate: 400, Duration: 500 * time.Millisecond})
	if n := r.Counts.Started; n < 195 || n > 202 {
		t.Fatalf("started %d calls in 0.5s at 400/s, want 200", n)
	}
	if r.Counts.Completed != r.Counts.Started {
		t.Fatalf("completed %d of %d", r.Counts.Completed, r.Counts.Started)
	}
	// A second run on the same UAC starts from fresh counts.
	r2 := runFor(t, u, RunOptions{Rate: 1000, Total: 100})
	if r2.Counts.Started != 100 || r2.Counts.Completed != 100 {
		t.Fatalf("second run started %d completed %d", r2.Counts.Started, r2.Counts.Completed)
	}
}

func TestFindMaxStopsAtFailingRate(t *testing.T) {
	// The UAS drops 5% of calls at any rate; with a 20% limit every step
	// passes and the search stops at its limit.
	s := startUAS(t, UASConfig{Workers: 1, DropRate: 0.05})
	u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 1, T1: 10 * time.Millisecond, Timeout: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var steps []Step
	res, err := FindMax(ctx, u, FindMaxOptions{Start: 400, Limit: 800, StepDuration: 200 * time.Millisecond,
		Drain: 300 * time.Millisecond, Pause: -1, MaxFail: 0.2, Growth: 2}, func(s Step) { steps = append(steps, s) })
	if err != nil {
		t.Fatal(err)
	}
	if res.MaxRate != 800 || len(steps) != 2 || !steps[0].Passed || res.Best == nil {
		for _, s := range steps {
			t.Logf("rate %v passed %v achieved %v failed %v/%v", s.Rate, s.Passed, s.Report.AchievedRate, s.Report.Failed, s.Report.Started)
		}
		t.Fatalf("max %v after %d steps", res.MaxRate, len(steps))
	}
	// When every call fails, the search halves the rate down to 1/s and
	// gives up.
	s2 := startUAS(t, UASConfig{Workers: 1, DropRate: 1})
	u2 := startUAC(t, UACConfig{Target: s2.Addr(), Sources: 1, T1: 10 * time.Millisecond, Timeout: 50 * time.Millisecond})
	steps = nil
	res, err = FindMax(ctx, u2, FindMaxOptions{Start: 8, StepDuration: 200 * time.Millisecond,
		Drain: 100 * time.Millisecond, Pause: -1}, func(s Step) { steps = append(steps, s) })
	if err == nil || res.MaxRate != 0 || len(steps) != 4 {
		t.Fatalf("with every call dropped: max %v after %d steps, err %v", res.MaxRate, len(steps), err)
	}
}

// TestUASSpread checks that one busy source reaches every UAS worker with
// the random spread, and a single worker with the kernel's hash.
func TestUASSpread(t *testing.T) {
	for _, tc := range []struct {
		spread Spread
		busy   int
	}{{SpreadRandom, 3}, {SpreadHash, 1}} {
		t.Run(tc.spread.String(), func(t *testing.T) {
			s := startUAS(t, UASConfig{Workers: 3, Spread: tc.spread})
			u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 1})
			r := runFor(t, u, RunOptions{Rate: 2000, Total: 300})
			if r.Counts.Completed != 300 {
				t.Fatalf("completed %d of 300 (%v)", r.Counts.Completed, r.Counts.FailedBy())
			}
			busy := 0
			for _, w := range s.workers {
				if w.st.c[uRequests].Load() > 0 {
					busy++
				}
			}
			if busy != tc.busy {
				t.Fatalf("%d workers got requests from one source, want %d", busy, tc.busy)
			}
		})
	}
}

func TestCallsIPv6Loopback(t *testing.T) {
	s, err := NewUAS(UASConfig{Listen: netip.MustParseAddrPort("[::1]:0"), Workers: 2})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	u := startUAC(t, UACConfig{Target: s.Addr(), Sources: 2, SDPSize: 1200, Timeout: 2 * time.Second})
	r := runFor(t, u, RunOptions{Rate: 1000, Total: 200})
	if r.Counts.Completed != 200 || r.Counts.Failed != 0 {
		t.Fatalf("completed %d failed %d (%v)", r.Counts.Completed, r.Counts.Failed, r.Counts.FailedBy())
	}
	if a := u.LocalAddrs()[0]; !a.Addr().Is6() || !a.Addr().IsLoopback() {
		t.Fatalf("source bound to %v, want ::1", a)
	}
}
