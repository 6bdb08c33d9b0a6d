// Package deploy_test checks the operations files in deploy/: the systemd
// unit (with systemd-analyze verify when it is installed), the Grafana
// dashboard (every metric it queries is exported) and the sample
// configuration (viaduct --check accepts it and it shows every key).
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/capture"
	"github.com/viaduct-sip/viaduct/edge"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/metrics"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/stream"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// viaductBinary builds cmd/viaduct once for the tests that run it.
func viaductBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "viaduct-deploy-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "viaduct")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/viaduct")
		cmd.Dir = ".."
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/viaduct: %v\n%s", buildErr, buildOut)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("viaduct.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"\nDynamicUser=yes\n",
		"\nNoNewPrivileges=yes\n",
		"\nProtectSystem=strict\n",
		"\nProtectHome=yes\n",
		"\nCapabilityBoundingSet=\n",
		"\nLimitNOFILE=65536\n",
		"\nRestart=on-failure\n",
		"\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nExecStart=/usr/local/bin/viaduct --config /etc/viaduct/viaduct.yaml",
		"\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("viaduct.service lacks %q", strings.TrimSpace(want))
		}
	}
	// No capability is granted by default: 5060 is not a privileged port.
	for _, l := range strings.Split(unit, "\n") {
		if strings.HasPrefix(l, "AmbientCapabilities=") {
			t.Errorf("%q: no capability should be granted by default", l)
		}
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: static checks only")
	}
	// verify needs the commands to exist: point them at a built binary.
	bin := viaductBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "viaduct.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/viaduct", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sa, "verify", path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	// verify exits 0 on unknown keys but says so: any output is a finding.
	if err != nil || strings.TrimSpace(out.String()) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}

// exportedNames collects the metric names a fully wired collector exports
// (histograms as their _bucket, _sum and _count series), with the Go and
// process collectors.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	uas, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer uas.Close()
	e, err := fastpath.New(fastpath.Config{
		Transport: udp.Bind(udp.ServerConfig{}, nil),
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Workers:   1,
		Upstreams: []netip.AddrPort{uas.Addr()},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	id := balancer.DefaultID("udp", uas.Addr())
	chk, err := health.New(health.Config{
		Settings: health.Settings{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond},
		Targets:  []health.Target{{ID: id, Addr: uas.Addr()}},
	}, e, e.Pool(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) { chk.HandleResponse(m, from) })
	if err := chk.Start(); err != nil {
		t.Fatal(err)
	}
	defer chk.Close()
	deadline := time.Now().Add(5 * time.Second)
	for st, _ := chk.StatusOf(id); st.RTTAvg == 0; st, _ = chk.StatusOf(id) {
		if time.Now().After(deadline) {
			t.Fatal("no probe answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var reloads metrics.Reloads
	reloads.Loaded(metrics.ConfigHash([]byte("x")))
	o := metrics.Options{Engine: e, Health: chk, Pool: e.Pool(), Reloads: &reloads}
	if us, ok := any(e).(metrics.UpstreamStats); ok {
		o.UpstreamStats = us
	}
	reg, err := metrics.NewRegistry(metrics.New(o))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := edge.Prepare(edge.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(edge.NewCollector(edge.New(ep, nil))); err != nil {
		t.Fatal(err)
	}
	cp, err := capture.New(capture.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(cp.Collector()); err != nil {
		t.Fatal(err)
	}
	srv, err := stream.NewServer(context.Background(), transport.Layout{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Workers: 1, MaxMessage: 4096, OutputSize: 5120}, stream.ServerConfig{}, transport.TCP, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	wsSrv, err := stream.NewServer(context.Background(), transport.Layout{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Workers: 1, MaxMessage: 4096, OutputSize: 5120}, stream.ServerConfig{}, transport.WS, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wsSrv.Close()
	if err := reg.Register(stream.Collector(srv, wsSrv)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		if mf.GetType().String() == "HISTOGRAM" {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

// dashboard is the part of the Grafana JSON the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var metricName = regexp.MustCompile(`\b(viaduct|go|process)_[a-z0-9_]+\b`)

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard %q (uid %q) has %d panels", d.Title, d.UID, len(d.Panels))
	}
	var exprs []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced query %s", p.Title, tg.Expr)
			}
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	names := exportedNames(t)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			used[n] = true
			if !names[n] {
				t.Errorf("the dashboard queries %s, which Viaduct does not export", n)
			}
		}
	}
	// And the other way round: every viaduct_ family is on the dashboard.
	for n := range names {
		if strings.HasPrefix(n, "viaduct_") && !used[n] && !strings.HasSuffix(n, "_bucket") && !used[n+"_bucket"] {
			if strings.HasSuffix(n, "_sum") || strings.HasSuffix(n, "_count") {
				continue
			}
			t.Errorf("%s is exported but not on the dashboard", n)
		}
	}
}

// yamlKeys returns the YAML keys of the struct type st and of the structs
// below it, each with the path prefix.
func yamlKeys(prefix string, st reflect.Type) []string {
	var keys []string
	for i := range st.NumField() {
		f := st.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		keys = append(keys, prefix+"."+tag)
		t := f.Type
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() == reflect.Struct && t.PkgPath() == st.PkgPath() {
			keys = append(keys, yamlKeys(prefix+"."+tag, t)...)
		}
	}
	return keys
}

// TestSampleConfig runs viaduct --check on the sample configuration and
// checks that it shows every key: the YAML keys --help names in brackets
// and every health setting.
func TestSampleConfig(t *testing.T) {
	bin := viaductBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--check", "--config", "viaduct.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("viaduct --check --config deploy/viaduct.yaml: %v\n%s", err, out)
	}
	sample, err := os.ReadFile("viaduct.yaml")
	if err != nil {
		t.Fatal(err)
	}
	help, _ := exec.CommandContext(ctx, bin, "--help").CombinedOutput()
	var keys []string
	for _, m := range regexp.MustCompile(`\[([a-z0-9_.]+)\]`).FindAllStringSubmatch(string(help), -1) {
		keys = append(keys, m[1])
	}
	if len(keys) < 10 {
		t.Fatalf("found only %d [keys] in viaduct --help:\n%s", len(keys), help)
	}
	for _, st := range []reflect.Type{reflect.TypeFor[health.Section](), reflect.TypeFor[health.Settings]()} {
		for i := range st.NumField() {
			tag, opts, _ := strings.Cut(st.Field(i).Tag.Get("yaml"), ",")
			if opts != "inline" {
				keys = append(keys, "health."+tag)
			}
		}
	}
	for prefix, st := range map[string]reflect.Type{"capture.": reflect.TypeFor[capture.Config](),
		"capture.hep.": reflect.TypeFor[capture.HEPConfig](), "capture.traces.": reflect.TypeFor[capture.TraceLimits]()} {
		for i := range st.NumField() {
			tag, _, _ := strings.Cut(st.Field(i).Tag.Get("yaml"), ",")
			keys = append(keys, prefix+tag)
		}
	}
	keys = append(keys, yamlKeys("edge", reflect.TypeFor[edge.Config]())...)
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		// The last component must appear as a key ("name:"), commented
		// out or not.
		last := k[strings.LastIndex(k, ".")+1:]
		if !regexp.MustCompile(`(?m)^[\s#-]*` + regexp.QuoteMeta(last) + `:`).Match(sample) {
			t.Errorf("deploy/viaduct.yaml does not show %s", k)
		}
	}
}
