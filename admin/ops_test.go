package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/bench/load/loadtest"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/metrics"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// live is a running Viaduct in miniature: a started fast path on loopback
// in front of two load.UAS responders, a health checker probing them every
// 100 ms, the metrics collector and the admin API on an httptest server.
type live struct {
	srv     *httptest.Server
	eng     *fastpath.Engine
	pool    *balancer.Pool
	chk     *health.Checker
	ready   *Readiness
	reloads *metrics.Reloads
	ids     []string
}

func startLive(t *testing.T, token string) *live {
	t.Helper()
	var addrs []netip.AddrPort
	for range 2 {
		s, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		addrs = append(addrs, s.Addr())
	}
	eng, err := fastpath.New(fastpath.Config{
		Transport: udp.Bind(udp.ServerConfig{}, nil),
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Workers:   2,
		Upstreams: addrs,
		Secret:    []byte("0123456789abcdef0123456789abcdef"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &live{eng: eng, pool: eng.Pool(), ready: new(Readiness), reloads: new(metrics.Reloads)}
	cfg := health.Config{Settings: health.Settings{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond}}
	for _, a := range addrs {
		id := balancer.DefaultID("udp", a)
		l.ids = append(l.ids, id)
		cfg.Targets = append(cfg.Targets, health.Target{ID: id, Addr: a})
	}
	l.chk, err = health.New(cfg, eng, l.pool, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	eng.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) { l.chk.HandleResponse(m, from) })
	col := metrics.New(metrics.Options{Engine: eng, Health: l.chk, Pool: l.pool, Reloads: l.reloads})
	reg, err := metrics.NewRegistry(col)
	if err != nil {
		t.Fatal(err)
	}
	h := New(Options{
		Upstreams: l.chk, Pool: l.pool, Engine: eng, Reloads: l.reloads,
		Metrics: metrics.Handler(reg, nil), Ready: l.ready, Token: token,
	})
	l.srv = httptest.NewServer(h)
	t.Cleanup(l.srv.Close)
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	if err := l.chk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.chk.Close() })
	return l
}

// calls runs n calls through the engine and requires all to complete.
func (l *live) calls(t *testing.T, n uint64) {
	t.Helper()
	loadtest.RunCalls(t, l.eng.ListenAddrs()[0], n)
}

func TestHealthzReadyz(t *testing.T) {
	l := startLive(t, "s3cret")
	get := func(path string) (int, string) {
		code, body := do(t, "GET", l.srv.URL+path, "") // no token: the probes are open
		return code, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || body != "not ready: not listening\n" {
		t.Errorf("readyz before listening: %d %q", code, body)
	}
	l.ready.SetListening(true)
	if code, body := get("/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("readyz: %d %q", code, body)
	}
	// Every upstream out of rotation: not ready. Drain one, disable the
	// other, through the API.
	for i, action := range []string{"drain", "disable"} {
		if code, body := do(t, "POST", l.srv.URL+"/api/v1/upstreams/"+url.PathEscape(l.ids[i])+"/"+action, "s3cret"); code != 200 {
			t.Fatalf("%s: %d %s", action, code, body)
		}
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no upstream can take new dialogs") {
		t.Errorf("readyz with every upstream out: %d %q", code, body)
	}
	if code, body := do(t, "POST", l.srv.URL+"/api/v1/upstreams/"+url.PathEscape(l.ids[0])+"/enable", "s3cret"); code != 200 {
		t.Fatalf("enable: %d %s", code, body)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz after enabling one: %d", code)
	}
	l.ready.SetShuttingDown()
	if code, body := get("/readyz"); code != 503 || body != "not ready: shutting down\n" {
		t.Errorf("readyz shutting down: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz while shutting down: %d", code)
	}
	// Everything else needs the token, /metrics and the page included.
	for _, p := range []string{"/", "/metrics", "/api/v1/upstreams"} {
		if code, _ := get(p); code != 401 {
			t.Errorf("GET %s without token: %d", p, code)
		}
	}
}

func TestUpstreamsJSONAndMetrics(t *testing.T) {
	l := startLive(t, "")
	l.ready.SetListening(true)
	l.reloads.Loaded(metrics.ConfigHash([]byte("test")))
	l.calls(t, 20)
	// Wait until both targets have answered a probe.
	deadline := time.Now().Add(5 * time.Second)
	for st := l.chk.Status(); st[0].ProbesOK == 0 || st[1].ProbesOK == 0; st = l.chk.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("no probe answered: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := do(t, "GET", l.srv.URL+"/api/v1/upstreams", "")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var list UpstreamList
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	var share float64
	var fwd uint64
	for i, u := range list.Upstreams {
		if u.RequestsForwarded == nil {
			t.Fatalf("upstream %d: no requests_forwarded", i)
		}
		fwd += *u.RequestsForwarded
		if u.ID != l.ids[i] || u.Weight != 1 || u.Priority != 0 || u.Transport != "udp" || !u.NewDialogs || !u.InDialog ||
			u.Health != "up" || u.Admin != "enabled" || u.ProbesOK == 0 || u.RTTSeconds <= 0 {
			t.Errorf("upstream %d: %+v", i, u)
		}
		share += u.Share
	}
	if fwd != 60 {
		t.Errorf("requests_forwarded add up to %d, want 60 (20 calls: INVITE, ACK, BYE)", fwd)
	}
	if share < 0.999 || share > 1.001 {
		t.Errorf("shares add up to %v", share)
	}
	if !strings.Contains(string(body), `"weight": 1`) || !strings.Contains(string(body), `"priority": 0`) {
		t.Errorf("weight/priority missing from the JSON: %s", body)
	}

	code, body = do(t, "GET", l.srv.URL+"/metrics", "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`viaduct_requests_received_total{method="INVITE"} 20`,
		`viaduct_requests_forwarded_total 60`,
		`viaduct_upstream_up{upstream="` + l.ids[1] + `"} 1`,
		`viaduct_config_info{hash="` + metrics.ConfigHash([]byte("test")) + `"} 1`,
		`viaduct_upstream_probe_rtt_seconds_bucket{upstream="` + l.ids[0] + `",le="+Inf"}`,
		"go_goroutines ", "process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestStatusPage(t *testing.T) {
	l := startLive(t, "")
	l.ready.SetListening(true)
	l.reloads.Loaded("0123456789abcdef")
	l.calls(t, 10)
	if code, body := do(t, "POST", l.srv.URL+"/api/v1/upstreams/"+url.PathEscape(l.ids[1])+"/drain", ""); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	resp, err := http.Get(l.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/html; charset=utf-8" {
		t.Fatalf("status page: %d %s", resp.StatusCode, ct)
	}
	_, b := do(t, "GET", l.srv.URL+"/", "")
	page := string(b)
	for _, want := range []string{
		`<span class="ready">ready</span>`,
		"<code>0123456789abcdef</code>",
		"<td>" + l.ids[0] + "</td>",
		"<td>" + l.ids[1] + "</td>",
		`<span class="draining">draining</span>`,
		`<span class="enabled">enabled</span>`,
		"<tr><td>INVITE</td><td class=\"n\">10</td></tr>",
		"<tr><td>BYE</td><td class=\"n\">10</td></tr>",
		"<tr><td>Requests forwarded</td><td class=\"n\">30</td></tr>",
		"<tr><td>2xx</td><td class=\"n\">20</td></tr>",
		"<th>Forwarded</th>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("the status page has a script")
	}
	// Only the exact root is the page.
	if code, _ := do(t, "GET", l.srv.URL+"/nothing", ""); code != 404 {
		t.Errorf("GET /nothing: %d", code)
	}
	if t.Failed() {
		t.Log(page)
	}
}

func TestListenPolicy(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:9090", "", true},
		{"127.0.0.2:9090", "", true},
		{"[::1]:9090", "", true},
		{"localhost:9090", "", true},
		{"0.0.0.0:9090", "", false},
		{"0.0.0.0:9090", "tok", true},
		{":9090", "", false},
		{":9090", "tok", true},
		{"[::]:9090", "", false},
		{"192.0.2.1:9090", "", false},
		{"192.0.2.1:9090", "tok", true},
		{"admin.example.com:9090", "tok", false},
		{"127.0.0.1", "", false},
		{"127.0.0.1:", "", false},
	} {
		err := CheckListen(tc.addr, tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("CheckListen(%q, %q) = %v, want ok %v", tc.addr, tc.token, err, tc.ok)
		}
	}
	for s, want := range map[string]bool{"": true, "off": true, " OFF ": true, "127.0.0.1:9090": false} {
		if Disabled(s) != want {
			t.Errorf("Disabled(%q) = %v", s, !want)
		}
	}
	if _, err := Listen("0.0.0.0:0", ""); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("Listen on every interface without a token: %v", err)
	}
	ln, err := Listen("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(ln, New(Options{}), nil)
	code, body := do(t, "GET", "http://"+s.Addr().String()+"/healthz", "")
	if code != 200 || string(body) != "ok\n" {
		t.Errorf("healthz over Serve: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after Shutdown")
	}
}
