package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/bench/load/loadtest"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/internal/version"
	"github.com/viaduct-sip/viaduct/metrics"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// startUAS starts a load.UAS responder on loopback.
func startUAS(t *testing.T) *load.UAS {
	t.Helper()
	s, err := load.NewUAS(load.UASConfig{Listen: loopback, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// startEngine starts a fast path on loopback with two workers in front of
// upstreams.
func startEngine(t *testing.T, upstreams ...netip.AddrPort) *fastpath.Engine {
	t.Helper()
	e, err := fastpath.New(fastpath.Config{
		Transport: udp.Bind(udp.ServerConfig{}, nil),
		Listen:    []netip.AddrPort{loopback},
		Workers:   2,
		Upstreams: upstreams,
		Secret:    []byte("0123456789abcdef0123456789abcdef"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// sendRaw sends datagrams from a fresh loopback socket and returns it
// (answers arrive on it).
func sendRaw(t *testing.T, to netip.AddrPort, msgs ...string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, m := range msgs {
		if _, err := c.WriteToUDPAddrPort([]byte(strings.ReplaceAll(m, "\n", "\r\n")), to); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// readReplies reads n datagrams from c and returns their status lines.
func readReplies(t *testing.T, c *net.UDPConn, n int) []string {
	t.Helper()
	var out []string
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for len(out) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d replies: %v", len(out), n, err)
		}
		line, _, _ := strings.Cut(string(buf[:k]), "\r\n")
		out = append(out, line)
	}
	return out
}

// waitStats polls the engine until cond holds on its summed counters.
func waitStats(t *testing.T, e *fastpath.Engine, what string, cond func(s fastpath.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := e.Stats()
		if cond(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func request(method, ruri, from, callID string, extra ...string) string {
	s := fmt.Sprintf("%s %s SIP/2.0\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport\nMax-Forwards: 70\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:b@example.com>\nCall-ID: %s\nCSeq: 1 %s\n",
		method, ruri, from, callID, callID, method)
	for _, x := range extra {
		s += x + "\n"
	}
	return s + "Content-Length: 0\n\n"
}

// TestEngineCounters drives a real engine on loopback with 20 calls from
// load.UAC through two load.UAS upstreams, plus one message of each kind of
// local handling, and compares the fast-path metrics exactly.
func TestEngineCounters(t *testing.T) {
	a, b := startUAS(t), startUAS(t)
	e := startEngine(t, a.Addr(), b.Addr())
	proxy := e.ListenAddrs()[0]
	const calls = 20
	loadtest.RunCalls(t, proxy, calls)

	from := "127.0.0.1:9"
	c := sendRaw(t, proxy,
		// Addressed to Viaduct itself: 200 (keepalive).
		request("OPTIONS", "sip:"+proxy.String(), from, "keepalive"),
		// Max-Forwards 0: 483 and a too_many_hops drop.
		strings.Replace(request("MESSAGE", "sip:x@example.com", from, "hops"), "Max-Forwards: 70", "Max-Forwards: 0", 1),
		// No Call-ID: 400 and a parse_error drop.
		"INVITE sip:x@example.com SIP/2.0\nVia: SIP/2.0/UDP "+from+";branch=z9hG4bK-bad;rport\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:b@example.com>\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
		// A response Viaduct never sent: forged_response.
		"SIP/2.0 200 OK\nVia: SIP/2.0/UDP "+proxy.String()+";branch=z9hG4bKvd1forged\nVia: SIP/2.0/UDP "+from+";branch=z9hG4bK-x\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:b@example.com>;tag=2\nCall-ID: forged\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
	)
	// Replies go back to the sender's port (rport), which is c's.
	got := readReplies(t, c, 3)
	want := map[string]bool{"SIP/2.0 200 OK": true, "SIP/2.0 483 Too Many Hops": true}
	for _, l := range got {
		if !want[l] && !strings.HasPrefix(l, "SIP/2.0 400 ") {
			t.Errorf("unexpected reply %q", l)
		}
	}
	// The drop is counted while the batch is handled, a sent datagram only
	// after sendmmsg returns (possibly after its reader got it): wait for
	// both.
	waitStats(t, e, "the forged response and the last datagram sent", func(s fastpath.Stats) bool {
		return s.Drops[fastpath.DropForgedResponse] == 1 && s.DatagramsOut == 143
	})

	col := metrics.New(metrics.Options{Engine: e, Pool: e.Pool()})
	// Every reason and code is exported, zero or not.
	local := map[int]int{200: 1, 400: 1, 483: 1}
	drops := map[string]int{"forged_response": 1, "parse_error": 1, "too_many_hops": 1}
	var lines strings.Builder
	lines.WriteString("# HELP viaduct_local_replies_total Responses Viaduct generated itself, by status code (200 answers OPTIONS addressed to Viaduct; the others refuse a request).\n# TYPE viaduct_local_replies_total counter\n")
	for i := range fastpath.NumLocalCodes {
		code := fastpath.LocalCode(i).Status()
		fmt.Fprintf(&lines, "viaduct_local_replies_total{code=\"%d\"} %d\n", code, local[code])
	}
	lines.WriteString("# HELP viaduct_messages_dropped_total Messages not forwarded, by reason; a request refused with a local reply counts here and in viaduct_local_replies_total.\n# TYPE viaduct_messages_dropped_total counter\n")
	for r := fastpath.DropReason(1); r < fastpath.NumDropReasons; r++ {
		fmt.Fprintf(&lines, "viaduct_messages_dropped_total{reason=%q} %d\n", r.String(), drops[r.String()])
	}
	// Per call: INVITE, ACK, BYE forwarded; 100, 180, 200 and the BYE's
	// 200 relayed. Plus the four messages above.
	const exp = `
# HELP viaduct_requests_forwarded_total SIP requests sent on to a next hop.
# TYPE viaduct_requests_forwarded_total counter
viaduct_requests_forwarded_total 60
# HELP viaduct_responses_received_total SIP responses received and parsed.
# TYPE viaduct_responses_received_total counter
viaduct_responses_received_total 81
# HELP viaduct_responses_forwarded_total SIP responses relayed towards the client, by status class (1xx..6xx).
# TYPE viaduct_responses_forwarded_total counter
viaduct_responses_forwarded_total{class="1xx"} 40
viaduct_responses_forwarded_total{class="2xx"} 40
viaduct_responses_forwarded_total{class="3xx"} 0
viaduct_responses_forwarded_total{class="4xx"} 0
viaduct_responses_forwarded_total{class="5xx"} 0
viaduct_responses_forwarded_total{class="6xx"} 0
%s# HELP viaduct_datagrams_received_total UDP datagrams received.
# TYPE viaduct_datagrams_received_total counter
viaduct_datagrams_received_total 144
# HELP viaduct_datagrams_sent_total UDP datagrams sent (forwarded messages and local replies).
# TYPE viaduct_datagrams_sent_total counter
viaduct_datagrams_sent_total 143
# HELP viaduct_kernel_receive_drops_total Datagrams the kernel dropped on Viaduct's sockets (receive buffer full).
# TYPE viaduct_kernel_receive_drops_total counter
viaduct_kernel_receive_drops_total 0
# HELP viaduct_balance_key_fallbacks_total Balanced requests that lacked the key configured for their method and were hashed on their Call-ID instead.
# TYPE viaduct_balance_key_fallbacks_total counter
viaduct_balance_key_fallbacks_total 0
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(fmt.Sprintf(exp, lines.String())),
		"viaduct_requests_forwarded_total", "viaduct_responses_received_total", "viaduct_responses_forwarded_total",
		"viaduct_local_replies_total", "viaduct_messages_dropped_total",
		"viaduct_datagrams_received_total", "viaduct_datagrams_sent_total", "viaduct_kernel_receive_drops_total",
		"viaduct_balance_key_fallbacks_total",
	); err != nil {
		t.Error(err)
	}

	// By method: INVITE, ACK, BYE per call, one OPTIONS and one MESSAGE
	// (the malformed INVITE is not counted: it did not parse), zero for
	// the others.
	wantMethod := map[string]float64{"INVITE": calls, "ACK": calls, "BYE": calls, "OPTIONS": 1, "MESSAGE": 1}
	m := gatherOne(t, col, "viaduct_requests_received_total")
	if len(m) != fastpath.NumMethods-1 { // indices 0 and 15 are both "other"
		t.Errorf("%d method series, want %d: %v", len(m), fastpath.NumMethods-1, m)
	}
	for _, name := range []string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "other"} {
		if got := m[`method="`+name+`"`]; got != wantMethod[name] {
			t.Errorf("requests received with method %s: %v, want %v", name, got, wantMethod[name])
		}
	}

	// Bytes: every datagram has bytes; the per-worker series add up to
	// the total.
	s := e.Stats()
	if v := testutil.ToFloat64(constCollector(t, col, "viaduct_received_bytes_total")); v != float64(s.BytesIn) || v < 144*200 {
		t.Errorf("received bytes %v, engine says %d", v, s.BytesIn)
	}
	if v := testutil.ToFloat64(constCollector(t, col, "viaduct_sent_bytes_total")); v != float64(s.BytesOut) || v < 143*200 {
		t.Errorf("sent bytes %v, engine says %d", v, s.BytesOut)
	}
	// Every request was balanced: the per-upstream counts add up to the
	// 60 forwarded, and each upstream got its share.
	fwd := gatherOne(t, col, "viaduct_upstream_requests_forwarded_total")
	var total float64
	for _, up := range []netip.AddrPort{a.Addr(), b.Addr()} {
		n := fwd[`upstream="`+balancer.DefaultID("udp", up)+`"`]
		if n == 0 || int(n)%3 != 0 {
			t.Errorf("%v: %v requests forwarded, want a positive multiple of 3 (INVITE, ACK, BYE per call)", up, n)
		}
		total += n
	}
	if len(fwd) != 2 || total != 3*calls {
		t.Errorf("per-upstream forwarded %v, want 2 series adding up to %d", fwd, 3*calls)
	}

	per := gatherOne(t, col, "viaduct_worker_datagrams_received_total")
	var sum float64
	for lbl, v := range per {
		if !strings.Contains(lbl, `listen="`+proxy.String()+`"`) {
			t.Errorf("worker series %s does not name the listen address %v", lbl, proxy)
		}
		sum += v
	}
	origin := `listen="` + proxy.String() + `",worker="origin"`
	if _, ok := per[origin]; len(per) != 3 || !ok || sum != 144 || per[origin] != 0 {
		t.Errorf("per-worker datagrams %v: want 2 workers adding up to 144 and the origin socket's reader at 0", per)
	}
}

// gatherOne collects c and returns the samples of metric name by their
// label string (`k="v",k2="v2"`, sorted by name).
func gatherOne(t *testing.T, c prometheus.Collector, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var lbl []string
			for _, lp := range m.GetLabel() {
				lbl = append(lbl, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			var v float64
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Histogram != nil:
				v = float64(m.Histogram.GetSampleCount())
			}
			out[strings.Join(lbl, ",")] = v
		}
	}
	return out
}

// constCollector returns a collector that yields only the metric name of
// c, for testutil.ToFloat64.
func constCollector(t *testing.T, c prometheus.Collector, name string) prometheus.Collector {
	t.Helper()
	return filtered{c, name}
}

type filtered struct {
	c    prometheus.Collector
	name string
}

func (f filtered) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(f, ch)
}

func (f filtered) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { f.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `fqName: "`+f.name+`"`) {
			ch <- m
		}
	}
}

// TestUpstreamMetrics runs a real health checker over a real engine on
// loopback: two answering upstreams and a disabled one whose port is
// closed. Every configured target has its state gauges before any probe,
// then probe results, RTT histograms and failure causes show up.
func TestUpstreamMetrics(t *testing.T) {
	a, b := startUAS(t), startUAS(t)
	closed := closedPort(t)
	e := startEngine(t, a.Addr(), b.Addr(), closed)
	pool := e.Pool()
	ids := []string{
		balancer.DefaultID("udp", a.Addr()),
		balancer.DefaultID("udp", b.Addr()),
		balancer.DefaultID("udp", closed),
	}
	var targets []health.Target
	for i, addr := range []netip.AddrPort{a.Addr(), b.Addr(), closed} {
		targets = append(targets, health.Target{ID: ids[i], Addr: addr})
	}
	targets[2].Admin = balancer.Disabled
	if err := pool.SetAdmin(ids[2], balancer.Disabled); err != nil {
		t.Fatal(err)
	}
	chk, err := health.New(health.Config{
		Settings: health.Settings{Interval: 100 * time.Millisecond, Timeout: 60 * time.Millisecond, Failures: 1, Successes: 1},
		Targets:  targets,
	}, e, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) { chk.HandleResponse(m, from) })
	col := metrics.New(metrics.Options{Engine: e, Health: chk, Pool: pool})

	// Before the first probe: every target, the disabled one included.
	states := func(upC int) string {
		return fmt.Sprintf(`
# HELP viaduct_upstream_up Health of the upstream as the balancer uses it: 1 up, 0 down.
# TYPE viaduct_upstream_up gauge
viaduct_upstream_up{upstream=%[1]q} 1
viaduct_upstream_up{upstream=%[2]q} 1
viaduct_upstream_up{upstream=%[3]q} %[4]d
# HELP viaduct_upstream_admin_state Admin state of the upstream: 1 for the current state (enabled, draining, disabled), 0 for the others.
# TYPE viaduct_upstream_admin_state gauge
viaduct_upstream_admin_state{state="disabled",upstream=%[1]q} 0
viaduct_upstream_admin_state{state="disabled",upstream=%[2]q} 0
viaduct_upstream_admin_state{state="disabled",upstream=%[3]q} 1
viaduct_upstream_admin_state{state="draining",upstream=%[1]q} 0
viaduct_upstream_admin_state{state="draining",upstream=%[2]q} 0
viaduct_upstream_admin_state{state="draining",upstream=%[3]q} 0
viaduct_upstream_admin_state{state="enabled",upstream=%[1]q} 1
viaduct_upstream_admin_state{state="enabled",upstream=%[2]q} 1
viaduct_upstream_admin_state{state="enabled",upstream=%[3]q} 0
# HELP viaduct_upstream_weight Configured weight of the upstream.
# TYPE viaduct_upstream_weight gauge
viaduct_upstream_weight{upstream=%[1]q} 1
viaduct_upstream_weight{upstream=%[2]q} 1
viaduct_upstream_weight{upstream=%[3]q} 1
# HELP viaduct_upstream_selected Whether the balancer currently sends new dialogs (requests=new_dialog) or in-dialog requests (requests=in_dialog) to the upstream: 1 yes, 0 no.
# TYPE viaduct_upstream_selected gauge
viaduct_upstream_selected{requests="in_dialog",upstream=%[1]q} 1
viaduct_upstream_selected{requests="in_dialog",upstream=%[2]q} 1
viaduct_upstream_selected{requests="in_dialog",upstream=%[3]q} 0
viaduct_upstream_selected{requests="new_dialog",upstream=%[1]q} 1
viaduct_upstream_selected{requests="new_dialog",upstream=%[2]q} 1
viaduct_upstream_selected{requests="new_dialog",upstream=%[3]q} 0
# HELP viaduct_upstream_share_ratio Fraction of new dialogs the balancer assigns to the upstream (0 to 1).
# TYPE viaduct_upstream_share_ratio gauge
viaduct_upstream_share_ratio{upstream=%[3]q} 0
# HELP viaduct_pool_selectable_targets Upstreams the balancer can currently choose for new dialogs (requests=new_dialog) or in-dialog requests (requests=in_dialog); 0 means such requests get 503.
# TYPE viaduct_pool_selectable_targets gauge
viaduct_pool_selectable_targets{requests="in_dialog"} 2
viaduct_pool_selectable_targets{requests="new_dialog"} 2
`, ids[0], ids[1], ids[2], upC)
	}
	compare := func(exp string) error {
		return testutil.CollectAndCompare(filteredShare{col, ids[2]}, strings.NewReader(exp),
			"viaduct_upstream_up", "viaduct_upstream_admin_state", "viaduct_upstream_weight",
			"viaduct_upstream_selected", "viaduct_upstream_share_ratio", "viaduct_pool_selectable_targets")
	}
	if err := compare(states(1)); err != nil {
		t.Errorf("before probing: %v", err)
	}
	share := gatherOne(t, col, "viaduct_upstream_share_ratio")
	if s := share[`upstream="`+ids[0]+`"`] + share[`upstream="`+ids[1]+`"`]; s < 0.999 || s > 1.001 {
		t.Errorf("shares %v do not add up to 1", share)
	}

	if err := chk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chk.Close() })
	// Probes go on whatever the admin state: the closed port goes down.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := chk.Status()
		if st[0].RTTHist.Count >= 2 && st[1].RTTHist.Count >= 2 && st[2].Health == balancer.Down && st[2].ProbeTimeouts >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probes did not progress: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The balancer's table follows the checker's decision within a rebuild.
	for pool.Table().Target(2).Health != balancer.Down {
		if time.Now().After(deadline) {
			t.Fatal("the pool never saw the closed port down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := compare(states(0)); err != nil {
		t.Errorf("after probing: %v", err)
	}

	// Probe counters and histograms match the checker's status exactly
	// once the checker is stopped (nothing moves any more).
	chk.Close()
	probes := gatherOne(t, col, "viaduct_upstream_probes_total")
	fails := gatherOne(t, col, "viaduct_upstream_probe_failures_total")
	rtt := gatherOne(t, col, "viaduct_upstream_probe_rtt_seconds")
	st := chk.Status()
	for i, s := range st {
		u := `upstream="` + s.ID + `"`
		if p := probes[u]; p < 1 || p != float64(s.ProbesSent) {
			t.Errorf("%s: %v probes exported, status says %d", s.ID, p, s.ProbesSent)
		}
		if n := rtt[u]; n != float64(s.RTTHist.Count) {
			t.Errorf("%s: %v RTT samples exported, status says %d", s.ID, n, s.RTTHist.Count)
		}
		if to := fails[`cause="timeout",`+u]; to != float64(s.ProbeTimeouts) {
			t.Errorf("%s: %v timeouts exported, status says %d", s.ID, to, s.ProbeTimeouts)
		}
		to := fails[`cause="timeout",`+u]
		if i < 2 && (to != 0 || rtt[u] < 2) {
			t.Errorf("%s answers: %v timeouts, %v RTT samples", s.ID, to, rtt[u])
		}
		if i == 2 && (to < 2 || rtt[u] != 0) {
			t.Errorf("%s is closed: %v timeouts, %v RTT samples", s.ID, to, rtt[u])
		}
		for _, cause := range []string{"timeout", "bad_code", "send_error"} {
			if _, ok := fails[`cause="`+cause+`",`+u]; !ok {
				t.Errorf("%s: no probe failure series for cause %s", s.ID, cause)
			}
		}
	}

	// The whole registry, Go and process collectors included, passes the
	// Prometheus linter.
	reg, err := metrics.NewRegistry(col)
	if err != nil {
		t.Fatal(err)
	}
	probs, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if n, err := testutil.GatherAndCount(reg, "viaduct_upstream_info", "go_goroutines", "process_cpu_seconds_total"); err != nil || n != 5 {
		t.Errorf("gathered %d info/go/process series (%v), want 3+1+1", n, err)
	}
}

// filteredShare hides the shares of the answering targets, which depend on
// their IDs' hashes (the test checks that they add up to 1).
type filteredShare struct {
	c    prometheus.Collector
	keep string
}

func (f filteredShare) Describe(ch chan<- *prometheus.Desc) { f.c.Describe(ch) }

func (f filteredShare) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { f.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"viaduct_upstream_share_ratio"`) {
			var pb dto.Metric
			if err := m.Write(&pb); err != nil || pb.GetLabel()[0].GetValue() != f.keep {
				continue
			}
		}
		ch <- m
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

// TestUpstreamResponses drives a real engine with calls over a healthy
// upstream and one that answers every INVITE with 100 and 503: each
// upstream's responses are exported by class, the failing one's 5xx
// included, and they add up to the engine's relayed responses.
func TestUpstreamResponses(t *testing.T) {
	ok := startUAS(t)
	bad, err := load.NewUAS(load.UASConfig{Listen: loopback, Workers: 1, FailRate: 1, FailCode: 503})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bad.Close() })
	e := startEngine(t, ok.Addr(), bad.Addr())
	col := metrics.New(metrics.Options{Engine: e, Pool: e.Pool()})
	okID, badID := balancer.DefaultID("udp", ok.Addr()), balancer.DefaultID("udp", bad.Addr())

	// Before any traffic: every upstream and class, at zero.
	if got := gatherOne(t, col, "viaduct_upstream_responses_total"); len(got) != 12 {
		t.Errorf("%d series before traffic, want 2 upstreams x 6 classes: %v", len(got), got)
	}

	const calls = 20
	r := loadtest.Calls(t, e.ListenAddrs()[0], calls)
	if r.Counts.Completed+r.Counts.Failed != calls || r.Counts.Codes[503] != r.Counts.Failed {
		t.Fatalf("%d completed, %d failed (%d with 503) of %d calls: %v", r.Counts.Completed, r.Counts.Failed, r.Counts.Codes[503], calls, r.Counts.FailedBy())
	}
	// A completed call went to ok (INVITE, ACK, BYE), a failed one to bad
	// (INVITE, ACK).
	waitStats(t, e, "every request forwarded", func(s fastpath.Stats) bool {
		return s.RequestsForwarded == 3*r.Counts.Completed+2*r.Counts.Failed
	})
	fwd := gatherOne(t, col, "viaduct_upstream_requests_forwarded_total")
	nOK, nBad := int(fwd[`upstream="`+okID+`"`])/3, int(fwd[`upstream="`+badID+`"`])/2
	if uint64(nOK) != r.Counts.Completed || uint64(nBad) != r.Counts.Failed || nOK == 0 || nBad == 0 {
		t.Fatalf("requests forwarded %v: want %d calls to %s and %d to %s, both some", fwd, r.Counts.Completed, okID, r.Counts.Failed, badID)
	}

	// ok: 100, 180, 200 per INVITE and 200 per BYE; bad: 100 and 503.
	var exp strings.Builder
	exp.WriteString("# HELP viaduct_upstream_responses_total Responses relayed from the upstream (by source address) towards the client, by status class (1xx..6xx).\n# TYPE viaduct_upstream_responses_total counter\n")
	for _, up := range []struct {
		id      string
		byClass [7]int
	}{
		{okID, [7]int{1: 2 * nOK, 2: 2 * nOK}},
		{badID, [7]int{1: nBad, 5: nBad}},
	} {
		for k := 1; k <= 6; k++ {
			fmt.Fprintf(&exp, "viaduct_upstream_responses_total{class=\"%dxx\",upstream=%q} %d\n", k, up.id, up.byClass[k])
		}
	}
	if err := testutil.CollectAndCompare(col, strings.NewReader(exp.String()), "viaduct_upstream_responses_total"); err != nil {
		t.Error(err)
	}
	s := e.Stats()
	if want := [7]uint64{1: uint64(2*nOK + nBad), 2: uint64(2 * nOK), 5: uint64(nBad)}; s.ResponsesForwarded != want {
		t.Errorf("engine relayed %v, want %v", s.ResponsesForwarded, want)
	}
}

// TestDropLogSuppressed floods a real engine logging at debug level with
// forged responses: the drops the rate limit kept out of the log are
// exported.
func TestDropLogSuppressed(t *testing.T) {
	var log testenv.SyncBuffer
	e, err := fastpath.New(fastpath.Config{
		Transport: udp.Bind(udp.ServerConfig{}, nil),
		Listen:    []netip.AddrPort{loopback},
		Workers:   1,
		Upstreams: []netip.AddrPort{closedPort(t)},
	}, slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	proxy := e.ListenAddrs()[0]
	const flood = 50
	var msgs []string
	for i := range flood {
		msgs = append(msgs, fmt.Sprintf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP %s;branch=z9hG4bKvd1forged\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:b@example.com>;tag=2\nCall-ID: forged-%d\nCSeq: 1 INVITE\nContent-Length: 0\n\n", proxy, i))
	}
	sendRaw(t, proxy, msgs...)
	lines := func() uint64 { return uint64(strings.Count(log.String(), "msg=\"message dropped\"")) }
	waitStats(t, e, "every drop logged or suppressed", func(s fastpath.Stats) bool {
		return s.Drops[fastpath.DropForgedResponse] == flood && lines()+s.DropLogsSuppressed == flood
	})
	col := metrics.New(metrics.Options{Engine: e})
	got := testutil.ToFloat64(constCollector(t, col, "viaduct_drop_log_lines_suppressed_total"))
	if want := float64(flood - lines()); got != want || got == 0 {
		t.Errorf("exported %v suppressed lines, want %v (%d of %d drops logged)", got, want, lines(), flood)
	}
}

// viaduct_pool_panic follows the table; viaduct_upstream_traffic_checks_total
// the rounds a target passed on its own responses.
func TestPanicAndTrafficMetrics(t *testing.T) {
	silent := closedPort(t) // answers no probe
	e := startEngine(t, silent, closedPort(t))
	pool := e.Pool()
	ids := []string{balancer.DefaultID("udp", pool.Table().Target(0).Addr), balancer.DefaultID("udp", pool.Table().Target(1).Addr)}
	chk, err := health.New(health.Config{
		Settings: health.Settings{Interval: 50 * time.Millisecond, Timeout: 30 * time.Millisecond, Failures: 2, Successes: 1},
		Targets:  []health.Target{{ID: ids[0], Addr: silent}, {ID: ids[1], Addr: pool.Table().Target(1).Addr}},
	}, e, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	col := metrics.New(metrics.Options{Engine: e, Health: chk, Pool: pool})
	panicMode := func() float64 { return gatherOne(t, col, "viaduct_pool_panic")[""] }
	if v := panicMode(); v != 0 {
		t.Errorf("viaduct_pool_panic = %v with every target up", v)
	}
	if err := chk.Start(); err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	// The first target's responses to traffic keep it up; the second,
	// without traffic, goes down.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				chk.ObserveResponse(silent, 200)
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for st := chk.Status(); st[0].TrafficOK < 3 || pool.Table().Target(1).Health != balancer.Down; st = chk.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := panicMode(); v != 0 {
		t.Errorf("viaduct_pool_panic = %v with one target up", v)
	}
	got := gatherOne(t, col, "viaduct_upstream_traffic_checks_total")
	if v := got[`upstream="`+ids[0]+`"`]; v < 3 {
		t.Errorf("traffic checks of %s: %v, want >= 3 (%v)", ids[0], v, got)
	}
	if v, ok := got[`upstream="`+ids[1]+`"`]; !ok || v != 0 {
		t.Errorf("traffic checks of %s: %v (present %v), want 0", ids[1], v, ok)
	}
	if err := pool.SetHealth(ids[0], balancer.Down); err != nil {
		t.Fatal(err)
	}
	if v := panicMode(); v != 1 {
		t.Errorf("viaduct_pool_panic = %v with every target down", v)
	}
	if err := pool.SetAllDown(balancer.AllDownReject); err != nil {
		t.Fatal(err)
	}
	if v := panicMode(); v != 0 {
		t.Errorf("viaduct_pool_panic = %v with all_down reject", v)
	}
}

// viaduct_build_info carries the version and revision that --version
// prints.
func TestBuildInfo(t *testing.T) {
	e := startEngine(t, closedPort(t))
	got := gatherOne(t, metrics.New(metrics.Options{Engine: e}), "viaduct_build_info")
	v := version.Get()
	rev := v.Revision
	if rev == "" {
		rev = "unknown"
	}
	want := fmt.Sprintf("goversion=%q,revision=%q,version=%q", v.GoVersion, rev, v.Version)
	if len(got) != 1 || got[want] != 1 {
		t.Errorf("viaduct_build_info %v, want {%s: 1}", got, want)
	}
}
