package resolve

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/resolve/resolvetest"
)

// startNextHops runs a NextHops against s until the test ends; its clock is
// *now (nanoseconds), which the test moves.
func startNextHops(t *testing.T, s *resolvetest.Server, cfg Config) (*NextHops, *atomic.Int64) {
	t.Helper()
	cfg.Resolver = s.Resolver()
	h, err := NewNextHops(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := &atomic.Int64{}
	now.Store(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC).UnixNano())
	h.now = func() time.Time { return time.Unix(0, now.Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, now
}

// settle asks until the answer is no longer pending (bounded by 2 s).
func settle(t *testing.T, h *NextHops, host string, port int) (netip.AddrPort, HopState) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		addr, st := h.Lookup([]byte(host), port)
		if st != HopPending {
			return addr, st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s:%d still pending after 2 s", host, port)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// RFC 3263 4.2 for UDP: an explicit port means A/AAAA; no port means SRV
// first (lowest priority, then highest weight), then A/AAAA on 5060.
func TestNextHopsRFC3263(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("carrier.example.net", a("203.0.113.80"))
	s.Set("_sip._udp.carrier.example.net",
		srv(20, 100, 5090, "backup.example.net"),
		srv(10, 10, 5070, "edge1.example.net"),
		srv(10, 60, 5071, "edge2.example.net"))
	s.Set("edge1.example.net", a("203.0.113.81"))
	s.Set("edge2.example.net", a("203.0.113.82"))
	s.Set("backup.example.net", a("203.0.113.83"))
	s.Set("plain.example.net", a("203.0.113.90"), aaaa("2001:db8::90"))
	s.Set("v6.example.net", aaaa("2001:db8::91"))
	h, _ := startNextHops(t, s, Config{})

	if _, st := h.Lookup([]byte("carrier.example.net"), 0); st != HopPending {
		t.Fatalf("first lookup: %v, want pending", st)
	}
	for _, c := range []struct {
		host string
		port int
		want string
	}{
		{"carrier.example.net", 0, "203.0.113.82:5071"},    // SRV: priority 10, weight 60
		{"Carrier.Example.NET", 0, "203.0.113.82:5071"},    // case does not matter
		{"carrier.example.net", 5080, "203.0.113.80:5080"}, // a port: A only
		{"plain.example.net", 0, "203.0.113.90:5060"},      // no SRV: A, port 5060, IPv4 first
		{"v6.example.net", 5062, "[2001:db8::91]:5062"},    // AAAA
		{"edge1.example.net", 0, "203.0.113.81:5060"},      // no SRV for it
	} {
		addr, st := settle(t, h, c.host, c.port)
		if st != HopFound || addr.String() != c.want {
			t.Errorf("%s:%d = %v %v, want %s", c.host, c.port, addr, st, c.want)
		}
	}
	for _, c := range []struct {
		host string
		port int
	}{{"nxdomain.example.net", 0}, {"nxdomain.example.net", 5060}, {"", 0}, {string(make([]byte, 254)), 0}, {"x.example.net", 70000}} {
		if addr, st := settle(t, h, c.host, c.port); st != HopFailed {
			t.Errorf("%q:%d = %v %v, want failed", c.host, c.port, addr, st)
		}
	}
	if n := testing.AllocsPerRun(100, func() { h.Lookup([]byte("Carrier.example.net"), 0) }); n != 0 {
		t.Errorf("Lookup of a known name allocates %.1f times", n)
	}
	// ipv4 only: a name with IPv6 addresses only fails.
	h4, _ := startNextHops(t, s, Config{Network: "ip4"})
	if addr, st := settle(t, h4, "v6.example.net", 5062); st != HopFailed {
		t.Errorf("ip4 resolver: v6-only name = %v %v, want failed", addr, st)
	}
}

// A next hop's host is asked as the URI writes it, as the Watcher asks an
// upstream's: "localhost" comes from /etc/hosts (the test's DNS server
// does not know it), "localhost." from DNS only; an SRV record's target
// is absolute.
func TestNextHopsHostsFile(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("localhost", a("127.0.3.9"))
	s.Set("_sip._udp.carrier.test", srv(10, 10, 5075, "localhost."))
	h, _ := startNextHops(t, s, Config{Network: "ip4"})
	for _, c := range []struct {
		host string
		port int
		want string
	}{
		{"localhost", 5080, "127.0.0.1:5080"},  // A from the hosts file
		{"LOCALHOST", 0, "127.0.0.1:5060"},     // no SRV record: the hosts file, port 5060
		{"localhost.", 5080, "127.0.3.9:5080"}, // absolute: DNS only
		{"carrier.test", 0, "127.0.3.9:5075"},  // SRV target localhost.: DNS
	} {
		if addr, st := settle(t, h, c.host, c.port); st != HopFound || addr.String() != c.want {
			t.Errorf("%s:%d = %v %v, want %s", c.host, c.port, addr, st, c.want)
		}
	}
}

// An answer is used for Interval; after that the last answer stands while
// a refresh runs, and a refresh that fails keeps it. A failure is kept for
// Retry, then the name is looked up again.
func TestNextHopsRefreshAndFailure(t *testing.T) {
	s := resolvetest.NewServer(t)
	s.Set("gw.example.net", a("203.0.113.10"))
	h, now := startNextHops(t, s, Config{Interval: time.Minute, Retry: 5 * time.Second})
	if addr, _ := settle(t, h, "gw.example.net", 5060); addr.String() != "203.0.113.10:5060" {
		t.Fatalf("first answer %v", addr)
	}
	queries := s.Queries()
	now.Add(int64(30 * time.Second))
	h.Lookup([]byte("gw.example.net"), 5060)
	time.Sleep(50 * time.Millisecond)
	if s.Queries() != queries {
		t.Errorf("looked up again within Interval")
	}

	// Past Interval: the old answer is served while the new one comes.
	s.Set("gw.example.net", a("203.0.113.11"))
	now.Add(int64(31 * time.Second))
	if addr, st := h.Lookup([]byte("gw.example.net"), 5060); st != HopFound || addr.String() != "203.0.113.10:5060" {
		t.Errorf("expired answer: %v %v, want the old one meanwhile", addr, st)
	}
	waitFor(t, func() bool {
		a, _ := h.Lookup([]byte("gw.example.net"), 5060)
		return a.String() == "203.0.113.11:5060"
	})

	// A failing refresh keeps the last good answer.
	s.SetFailing(true)
	now.Add(int64(2 * time.Minute))
	failures := h.Stats().Failures
	h.Lookup([]byte("gw.example.net"), 5060)
	waitFor(t, func() bool { return h.Stats().Failures > failures })
	if addr, st := h.Lookup([]byte("gw.example.net"), 5060); st != HopFound || addr.String() != "203.0.113.11:5060" {
		t.Errorf("after a failed refresh: %v %v, want the last good answer", addr, st)
	}

	// A name that never resolved fails for Retry, then is asked again.
	if _, st := settle(t, h, "new.example.net", 0); st != HopFailed {
		t.Fatalf("new name while the server fails: %v", st)
	}
	s.SetFailing(false)
	s.Set("new.example.net", a("203.0.113.12"))
	if _, st := h.Lookup([]byte("new.example.net"), 0); st != HopFailed {
		t.Errorf("within Retry: %v, want the failure kept", st)
	}
	now.Add(int64(6 * time.Second))
	h.Lookup([]byte("new.example.net"), 0)
	waitFor(t, func() bool { _, st := h.Lookup([]byte("new.example.net"), 0); return st == HopFound })
}

// The table keeps at most MaxHopNames names, forgetting the oldest.
func TestNextHopsBounded(t *testing.T) {
	s := resolvetest.NewServer(t)
	h, now := startNextHops(t, s, Config{})
	answer := func() hopAnswer {
		now.Add(1)
		return hopAnswer{addr: netip.MustParseAddrPort("203.0.113.1:5060"), ok: true, expires: now.Load() + int64(time.Hour), stored: now.Load()}
	}
	full := map[string]hopAnswer{}
	for i := range MaxHopNames {
		full[fmt.Sprintf("h%d.example.net:0", i)] = answer()
	}
	h.table.Store(&full)
	for i := MaxHopNames; i < MaxHopNames+10; i++ {
		h.store(fmt.Sprintf("h%d.example.net:0", i), answer())
	}
	if n := h.Stats().Names; n != MaxHopNames {
		t.Errorf("%d names kept, want %d", n, MaxHopNames)
	}
	if _, st := h.Lookup([]byte(fmt.Sprintf("h%d.example.net", MaxHopNames+9)), 0); st != HopFound {
		t.Errorf("the newest name was forgotten")
	}
	tab := *h.table.Load()
	if _, ok := tab["h0.example.net:0"]; ok {
		t.Errorf("the oldest name was kept")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 2 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
