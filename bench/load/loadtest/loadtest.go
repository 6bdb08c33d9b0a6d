// Package loadtest drives the load generator from other packages' tests.
// (internal/testenv cannot hold it: bench/load's own tests import testenv.)
package loadtest

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
)

// Calls runs n calls (INVITE, 100, 180, 200, ACK, BYE, 200 where the
// upstream answers) from one load.UAC source through target, at 500
// calls/s, and returns what became of them. It fails the test if the run
// itself fails or takes more than 15 s.
func Calls(t testing.TB, target netip.AddrPort, n uint64) *load.Result {
	t.Helper()
	return CallsWith(t, load.UACConfig{Target: target}, n)
}

// CallsWith runs n calls as Calls does with the UAC configured by cfg
// (e.g. over tcp or tls: Transport, Connections, TLS), whose Sources,
// retransmissions and Timeout default to Calls' (one source, none, 3s).
func CallsWith(t testing.TB, cfg load.UACConfig, n uint64) *load.Result {
	t.Helper()
	if cfg.Sources == 0 {
		cfg.Sources = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Second
	}
	cfg.NoRetrans = true
	u, err := load.NewUAC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := u.Run(ctx, load.RunOptions{Rate: 500, Total: n, Drain: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// RunCalls runs n calls as Calls does and fails the test unless every one
// completes.
func RunCalls(t testing.TB, target netip.AddrPort, n uint64) {
	t.Helper()
	r := Calls(t, target, n)
	if r.Counts.Completed != n || r.Counts.Failed != 0 {
		t.Fatalf("%d of %d calls completed, %d failed: %v", r.Counts.Completed, n, r.Counts.Failed, r.Counts.FailedBy())
	}
}
