package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/resolve/resolvetest"
)

// inProcess is viaduct running in the test's process (runWith), with its
// admin API on a loopback port and a signal channel the test writes to.
type inProcess struct {
	t      *testing.T
	base   string // http://ADMIN
	stderr *syncBuffer
	sigs   chan os.Signal
}

// startInProcess runs viaduct with args until the test ends, and waits for
// its admin API (which args must place at adm).
func startInProcess(t *testing.T, hooks procHooks, adm string, args ...string) *inProcess {
	t.Helper()
	p := &inProcess{t: t, base: "http://" + adm, stderr: &syncBuffer{}, sigs: make(chan os.Signal, 4)}
	hooks.signals = p.sigs
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runWith(ctx, args, p.stderr, hooks) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d:\n%s", code, p.stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("run did not return after cancel")
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := get(t, p.base+"/healthz"); code == 200 {
			return p
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("viaduct exited %d:\n%s", code, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API not up:\n%s", p.stderr.String())
		}
	}
}

// upstreams returns the admin API's upstreams by ID.
func (p *inProcess) upstreams() map[string]admin.Upstream {
	p.t.Helper()
	code, body := get(p.t, p.base+"/api/v1/upstreams")
	var list admin.UpstreamList
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil {
		p.t.Fatalf("GET /api/v1/upstreams: %d %s", code, body)
	}
	out := map[string]admin.Upstream{}
	for _, u := range list.Upstreams {
		out[u.ID] = u
	}
	return out
}

// post sends an empty POST and returns the status and body.
func (p *inProcess) post(path string) (int, string) {
	p.t.Helper()
	resp, err := http.Post(p.base+path, "", nil)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reload asks for a reload over the admin API and decodes the answer.
func (p *inProcess) reload() (int, reloadResult) {
	p.t.Helper()
	code, body := p.post("/api/v1/reload")
	var res reloadResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		p.t.Fatalf("reload answer %d %q: %v", code, body, err)
	}
	return code, res
}

// waitLog waits until the log contains n occurrences of s.
func (p *inProcess) waitLog(s string, n int, d time.Duration) {
	p.t.Helper()
	for deadline := time.Now().Add(d); strings.Count(p.stderr.String(), s) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.t.Fatalf("log has %d of %q, want %d:\n%s", strings.Count(p.stderr.String(), s), s, n, p.stderr.String())
		}
	}
}

// sorted returns ids sorted.
func sorted(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

func ids(m map[string]admin.Upstream) []string {
	var out []string
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// A reload (POST /api/v1/reload, SIGHUP) applies the upstream list,
// weights, priorities, keys and probe settings, keeps the admin state of
// the upstreams that remain, refuses a bad file naming the field and
// keeping the running configuration, and names the changed settings that
// need a restart.
func TestReloadAppliesAndRefuses(t *testing.T) {
	a, b, c := newSIPUpstream(t), newSIPUpstream(t), newSIPUpstream(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	head := fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nadmin: {listen: \"%s\"}\n", proxy, adm)
	path := writeFile(t, "v.yaml", head+fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: a}\n  - {address: \"%s\", id: b}\n", a.addr, b.addr))
	p := startInProcess(t, procHooks{}, adm.String(), "--config", path)
	write := func(body string) {
		if err := os.WriteFile(path, []byte(head+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// b is disabled by the operator; the reload must keep that.
	if code, body := p.post("/api/v1/upstreams/b/disable"); code != 200 {
		t.Fatalf("disable b: %d %s", code, body)
	}
	write(fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: a, weight: 3}\n  - {address: \"%s\", id: b}\n  - {address: \"%s\", id: c, priority: 1}\n"+
		"balance: {keys: {MESSAGE: from-uri}}\nhealth: {interval: 1s, timeout: 500ms}\nupstream_health: {c: {never_probe: true}}\n", a.addr, b.addr, c.addr))
	code, res := p.reload()
	if code != 200 || !res.Applied || res.Upstreams != 3 || len(res.RestartRequired) != 0 || res.Hash == "" {
		t.Fatalf("reload: %d %+v\n%s", code, res, p.stderr.String())
	}
	ups := p.upstreams()
	if got := ids(ups); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("upstreams after reload: %v", got)
	}
	if ups["a"].Weight != 3 || ups["c"].Priority != 1 || ups["b"].Admin != "disabled" || ups["c"].Admin != "enabled" {
		t.Errorf("after reload: a weight %d, c priority %d, b %s, c %s", ups["a"].Weight, ups["c"].Priority, ups["b"].Admin, ups["c"].Admin)
	}
	if !ups["a"].Probed || ups["a"].ProbeIntervalSeconds != 1 || ups["c"].Probed {
		t.Errorf("probe settings not applied: a probed %v every %v, c probed %v", ups["a"].Probed, ups["a"].ProbeIntervalSeconds, ups["c"].Probed)
	}
	// MESSAGE now hashes the From URI: one sender, many Call-IDs, one
	// upstream; b (disabled) gets nothing.
	cl := newSIPClient(t, proxy)
	before := [3]int{a.count(), b.count(), c.count()}
	for i := range 30 {
		cl.send(t, "MESSAGE", fmt.Sprintf("msg-%d@client", i), "sip:bob@example.com", "sip:bob@example.com")
	}
	cl.waitOK(t, 30, 5*time.Second)
	if da, db, dc := a.count()-before[0], b.count()-before[1], c.count()-before[2]; da != 30 || db != 0 || dc != 0 {
		t.Errorf("30 MESSAGEs of one sender: a %d, b %d, c %d; want all on a (b disabled, c priority 1)", da, db, dc)
	}

	// Bad files: refused with the field, nothing changes.
	for _, bad := range []struct{ body, field, reason string }{
		{fmt.Sprintf("upstreams: [{address: \"%s\", id: a, weight: 5000}]\n", a.addr), "upstreams[0].weight", "must be 1..1000"},
		{fmt.Sprintf("upstreams: [\"%s\"]\nhealth: {interval: 1s, timeout: 2s}\n", a.addr), "health.timeout", ""},
		{fmt.Sprintf("upstreams: [\"%s\"]\nupstream_health: {nobody: {interval: 1s}}\n", a.addr), `upstream_health["nobody"]`, "not the id or address"},
		{fmt.Sprintf("upstreams: [\"%s\"]\nworkerz: 2\n", a.addr), "", "unknown field workerz"},
		{fmt.Sprintf("upstreams: [\"%s\"]\nbalance: {keys: {INVITE: nonsense}}\n", a.addr), `balance.keys["INVITE"]`, ""},
		{"upstreams: []\n", "upstreams", "at least one upstream"},
	} {
		write(bad.body)
		code, res := p.reload()
		if code != 422 || res.Applied || res.Field != bad.field || !strings.Contains(res.Error, bad.reason) {
			t.Errorf("bad file %q: %d %+v; want 422, field %q, %q", bad.body, code, res, bad.field, bad.reason)
		}
		if got := ids(p.upstreams()); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("a refused reload changed the upstreams: %v", got)
		}
	}
	if log := p.stderr.String(); !strings.Contains(log, `msg="configuration reload refused; the running configuration stays" by="admin API`) ||
		!strings.Contains(log, "field=upstreams[0].weight reason=") {
		t.Errorf("refusal not logged with field and reason:\n%s", log)
	}

	// A change that needs a restart: applied for the rest, named.
	write(fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: a}\n  - {address: \"%s\", id: b}\nbatch: 16\nrecord_route: true\npath: true\nprevious_secret: previous-0123456789abcdef\n", a.addr, b.addr))
	code, res = p.reload()
	if code != 200 || !res.Applied || !slices.Equal(res.RestartRequired, []string{"batch", "record_route", "path", "previous_secret"}) || res.Upstreams != 2 {
		t.Errorf("restart-only change: %d %+v", code, res)
	}
	if !strings.Contains(p.stderr.String(), `need a restart and were not applied" fields="[batch record_route path previous_secret]"`) {
		t.Errorf("restart warning not logged:\n%s", p.stderr.String())
	}

	// SIGHUP does the same.
	write(fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: a}\n  - {address: \"%s\", id: c}\n", a.addr, c.addr))
	p.sigs <- syscall.SIGHUP
	p.waitLog(`msg="configuration reloaded" by=SIGHUP`, 1, 5*time.Second)
	if got := ids(p.upstreams()); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("after SIGHUP: %v", got)
	}

	_, metrics := get(t, p.base+"/metrics")
	for _, want := range []string{`viaduct_config_reloads_total{result="success"} 3`, `viaduct_config_reloads_total{result="failure"} 6`, "viaduct_config_last_reload_successful 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Upstreams given as DNS names (a host name and an SRV name) are resolved
// at start, refreshed (a change reaches the pool and the health checker; a
// failing server keeps the last good answer), and an upstream_health key
// naming a DNS upstream applies to every address it resolves to.
func TestDNSUpstreams(t *testing.T) {
	dns := resolvetest.NewServer(t)
	a, b, c := newSIPUpstream(t), newSIPUpstream(t), newSIPUpstream(t)
	dns.Set("sip.test", resolvetest.A("127.0.0.1"))
	dns.Set("_sip._udp.svc.test",
		resolvetest.SRV(10, 60, b.addr.Port(), "b.svc.test"),
		resolvetest.SRV(10, 40, c.addr.Port(), "c.svc.test"))
	dns.Set("b.svc.test", resolvetest.A("127.0.0.1"), resolvetest.AAAA("::1"))
	dns.Set("c.svc.test", resolvetest.A("127.0.0.1"))
	proxy, adm := freePort(t), freeTCPPort(t)
	// Health checks off but for the SRV name's targets.
	path := writeFile(t, "v.yaml", fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nadmin: {listen: \"%s\"}\ndns: {refresh: 200ms, timeout: 1s}\n"+
		"upstreams:\n  - {address: \"sip.test:%d\", weight: 2, priority: 1}\n  - _sip._udp.svc.test\nhealth: {enabled: false}\n"+
		"upstream_health: {\"_sip._udp.svc.test\": {never_probe: false, interval: 3s, timeout: 1s}}\n", proxy, adm, a.addr.Port()))
	p := startInProcess(t, procHooks{resolver: dns.Resolver()}, adm.String(), "--config", path)

	idA, idB, idC := "udp:"+a.addr.String(), "udp:"+b.addr.String(), "udp:"+c.addr.String()
	ups := p.upstreams()
	// Listening on IPv4 only: the AAAA record is not asked for.
	if got := ids(ups); !slices.Equal(got, sorted(idA, idB, idC)) {
		t.Fatalf("upstreams %v", got)
	}
	if u := ups[idA]; u.Weight != 2 || u.Priority != 1 || u.Probed {
		t.Errorf("host-name upstream: %+v", u)
	}
	if u := ups[idB]; u.Weight != 60 || u.Priority != 10 || !u.Probed || u.ProbeIntervalSeconds != 3 {
		t.Errorf("SRV upstream b: %+v", u)
	}
	if u := ups[idC]; u.Weight != 40 || u.Priority != 10 || !u.Probed {
		t.Errorf("SRV upstream c: %+v", u)
	}
	// Logged after the admin API started: wait for it.
	p.waitLog(`msg="DNS upstreams" names=2 targets=3 refresh=200ms timeout=1s families=ip4`, 1, 5*time.Second)
	// The host name's priority 1 is preferred to the SRV records' 10.
	cl := newSIPClient(t, proxy)
	for i := range 20 {
		cl.send(t, "OPTIONS", fmt.Sprintf("o-%d@client", i), "sip:x@example.com", "sip:x@example.com")
	}
	cl.waitOK(t, 20, 5*time.Second)
	if a.count() != 20 {
		t.Errorf("priority 1 upstream got %d of 20", a.count())
	}
	// The operator drains c; DNS then drops b and changes c's weight: c
	// keeps its admin state.
	if code, body := p.post("/api/v1/upstreams/" + idC + "/drain"); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	dns.Set("_sip._udp.svc.test", resolvetest.SRV(10, 1, c.addr.Port(), "c.svc.test"))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ups = p.upstreams()
		if _, ok := ups[idB]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("DNS change not applied: %v\n%s", ids(ups), p.stderr.String())
		}
	}
	if u := ups[idC]; u.Admin != "draining" || u.Weight != 100 {
		t.Errorf("c after the refresh: admin %s weight %d; want draining, 100", u.Admin, u.Weight)
	}
	// The server fails: the last good answer stays.
	dns.SetFailing(true)
	q := dns.Queries()
	for deadline := time.Now().Add(5 * time.Second); dns.Queries() < q+4; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no refresh while failing")
		}
	}
	p.waitLog("keeping the last good answer", 1, 3*time.Second)
	if got := ids(p.upstreams()); !slices.Equal(got, sorted(idA, idC)) {
		t.Errorf("while DNS fails: %v; want the last good answer", got)
	}
}

// A host name in /etc/hosts is an upstream as the system resolver resolves
// it (the test's DNS server, asked for everything else, does not know
// localhost); with a trailing dot it is an absolute DNS name.
func TestUpstreamFromHostsFile(t *testing.T) {
	dns := resolvetest.NewServer(t)
	dns.Set("localhost", resolvetest.A("127.0.3.9"))
	for _, c := range []struct{ upstream, want string }{
		{"localhost:5071", "upstreams=[127.0.0.1:5071]"},
		{"localhost.:5071", "upstreams=[127.0.3.9:5071]"},
	} {
		var out syncBuffer
		code := runWith(context.Background(), []string{"--listen", "127.0.0.1:5060", "--upstream", c.upstream, "--check"}, &out, procHooks{resolver: dns.Resolver()})
		if code != 0 || !strings.Contains(out.String(), c.want) {
			t.Errorf("--upstream %s: exit %d, want %q in:\n%s", c.upstream, code, c.want, out.String())
		}
	}
}
