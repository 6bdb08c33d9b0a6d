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
