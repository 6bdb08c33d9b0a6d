package admin

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
)

// /readyz says when every upstream is down, and what the pool does about
// it: panic mode (forwarding to all of them) or 503.
func TestReadyzAllDown(t *testing.T) {
	ts := []balancer.Target{
		{Addr: netip.MustParseAddrPort("127.0.0.1:5071"), Transport: "udp", Weight: 1},
		{Addr: netip.MustParseAddrPort("127.0.0.1:5072"), Transport: "udp", Weight: 1, Priority: 1},
	}
	pool, err := balancer.NewPool(ts, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Options{Pool: pool}))
	defer srv.Close()
	readyz := func() (int, string) {
		code, body := do(t, "GET", srv.URL+"/readyz", "")
		return code, string(body)
	}
	id := func(i int) string { return balancer.DefaultID("udp", ts[i].Addr) }
	if err := pool.SetHealth(id(0), balancer.Down); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != 200 || body != "ready\n" {
		t.Errorf("one upstream up: %d %q", code, body)
	}
	if err := pool.SetHealth(id(1), balancer.Down); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != 503 || body != "not ready: every upstream is down: panic mode, forwarding to all of them anyway (health.all_down: forward)\n" {
		t.Errorf("all down, panic mode: %d %q", code, body)
	}
	if err := pool.SetAllDown(balancer.AllDownReject); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, "every upstream is down: requests are answered 503 (health.all_down: reject)") {
		t.Errorf("all down, reject: %d %q", code, body)
	}
	if err := pool.SetHealth(id(1), balancer.Up); err != nil {
		t.Fatal(err)
	}
	if code, _ := readyz(); code != 200 {
		t.Errorf("the backup up again: %d", code)
	}
}
