package load

import (
	"context"
	"crypto/tls"
	"net/netip"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
)

// TestHoldConns opens 500 connections to a tcp UAS (from two loopback
// source addresses) and 200 to a tls one, each asking OPTIONS, and holds
// them: all open, all answered, all alive at the end, and the UAS had
// them all at once.
func TestHoldConns(t *testing.T) {
	for _, tc := range []struct {
		kind  transport.Kind
		count int
		bind  []netip.Addr
	}{
		{transport.TCP, 500, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}},
		{transport.TLS, 200, nil},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			s := startUAS(t, UASConfig{Transport: tc.kind})
			cfg := ConnsConfig{Target: s.Addr(), Transport: tc.kind, Count: tc.count, Bind: tc.bind,
				Keepalive: KeepaliveOptions, Hold: 100 * time.Millisecond, DialTimeout: 10 * time.Second}
			if tc.kind == transport.TLS {
				cfg.TLS = &tls.Config{InsecureSkipVerify: true}
			}
			peak := 0
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			rep, err := HoldConns(ctx, cfg, func(opened, failed int) { peak = max(peak, s.Conns()) })
			if err != nil {
				t.Fatal(err)
			}
			if rep.Opened != tc.count || rep.Failed != 0 || rep.Answered != tc.count || rep.Alive != tc.count {
				t.Fatalf("opened %d failed %d (%v) answered %d alive %d, want %d", rep.Opened, rep.Failed, rep.FailedBy,
					rep.Answered, rep.Alive, tc.count)
			}
			if peak != tc.count {
				t.Fatalf("the UAS held %d connections at once, want %d", peak, tc.count)
			}
			var sc UASCounts
			s.Counts(&sc)
			if sc.Accepted != uint64(tc.count) || sc.Options != uint64(tc.count) {
				t.Fatalf("uas accepted %d connections and %d OPTIONS", sc.Accepted, sc.Options)
			}
			testenv.WaitFor(t, "the connections to close", 10*time.Second, func() bool { return s.Conns() == 0 })
		})
	}
}

// TestHoldConnsSeesServerCloses holds connections the server closes
// meanwhile: they are not counted alive.
func TestHoldConnsSeesServerCloses(t *testing.T) {
	s := startUAS(t, UASConfig{Transport: transport.TCP})
	go func() {
		for deadline := time.Now().Add(20 * time.Second); s.Conns() < 50 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		s.Close()
	}()
	rep, err := HoldConns(context.Background(), ConnsConfig{Target: s.Addr(), Count: 50, Hold: 2 * time.Second,
		Keepalive: KeepaliveCRLF}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Opened != 50 || rep.Alive != 0 {
		t.Fatalf("opened %d, alive at the end %d (want 50, 0)", rep.Opened, rep.Alive)
	}
}

func TestConnSourcesSpreadOverLoopback(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:5060")
	if a, err := connSources(ConnsConfig{Target: lo, Count: 4096}); err != nil || a != nil {
		t.Fatalf("4096 connections: sources %v, %v; want the kernel's choice", a, err)
	}
	a, err := connSources(ConnsConfig{Target: lo, Count: 20000})
	if err != nil || len(a) != 5 || a[0] != netip.MustParseAddr("127.0.0.2") || a[4] != netip.MustParseAddr("127.0.0.6") {
		t.Fatalf("20000 connections: sources %v, %v; want 127.0.0.2-6", a, err)
	}
	other := netip.MustParseAddrPort("10.0.0.1:5060")
	if a, err := connSources(ConnsConfig{Target: other, Count: 20000}); err != nil || a != nil {
		t.Fatalf("20000 connections to %v: sources %v, %v; want the kernel's choice", other, a, err)
	}
	if _, err := connSources(ConnsConfig{Target: other, Count: ephemeralPorts()}); err == nil {
		t.Fatal("no error for more connections than one non-loopback address has ports")
	}
}
