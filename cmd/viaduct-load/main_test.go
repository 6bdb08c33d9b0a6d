package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/internal/version"
)

func startUAS(t *testing.T, cfg load.UASConfig) *load.UAS {
	t.Helper()
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	s, err := load.NewUAS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestUACCommandReportAndExitStatus(t *testing.T) {
	s := startUAS(t, load.UASConfig{Workers: 1})
	js := filepath.Join(t.TempDir(), "r.json")
	var out, errb bytes.Buffer
	code := run([]string{"uac", "--target", s.Addr().String(), "--rate", "1000", "--total", "200",
		"--quiet", "--json", js, "--timeout", "2s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"achieved rate", "INVITE->200", "request->1st resp.", "generator CPU", "PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep load.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Started != 200 || rep.Completed != 200 || rep.Failed != 0 || !rep.Passed || rep.InviteTo200 == nil || rep.InviteTo200.N != 200 {
		t.Fatalf("json report: %s", b)
	}

	// Failures above --max-fail make the exit status 1; --json - replaces
	// the table on stdout.
	f := startUAS(t, load.UASConfig{Workers: 1, FailRate: 0.5, FailCode: 486})
	out.Reset()
	code = run([]string{"uac", "--target", f.Addr().String(), "--rate", "1000", "--total", "200",
		"--quiet", "--json", "-", "--max-fail", "1%"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d with 50%% failures, want 1", code)
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, out.String())
	}
	if rep.FailedBy["486"] == 0 || rep.FailedBy["486"] != rep.Failed || rep.MaxFail != 0.01 {
		t.Fatalf("failed by %v, max fail %v", rep.FailedBy, rep.MaxFail)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"uac", "--rate", "10", "--total", "5"}, // no target
		{"uac", "--target", "127.0.0.1:5060"},   // no duration or total
		{"uac", "--target", "127.0.0.1:5060", "--total", "1", "--scenario", "x"}, // bad scenario
		{"uac", "--target", "127.0.0.1:5060", "--total", "1", "--user", "a{m}"},  // bad template
		{"uas", "--fail-rate", "150%"},
		{"uas", "--listen", "127.0.0.1:0", "--fail-code", "200"},
		{"uas", "--listen", "127.0.0.1:0", "extra"}, // positional arguments
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || out.String() != "viaduct-load "+version.Get().String()+"\n" || errb.Len() != 0 {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

func TestUASCommand(t *testing.T) {
	// Find a free port by opening and closing a UAS on an ephemeral one.
	s := startUAS(t, load.UASConfig{Workers: 1})
	port := s.Addr().String()
	s.Close()
	var out, errb bytes.Buffer
	done := make(chan int)
	go func() {
		done <- run([]string{"uas", "--listen", port, "--duration", "1500ms", "--quiet", "--fail-rate", "100%", "--fail-code", "480"}, &out, &errb)
	}()
	time.Sleep(200 * time.Millisecond)
	u, err := load.NewUAC(load.UACConfig{Target: netip.MustParseAddrPort(port), Sources: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := u.Run(ctx, load.RunOptions{Rate: 500, Total: 50})
	if err != nil {
		t.Fatal(err)
	}
	if r.Counts.Codes[480] != 50 {
		t.Fatalf("uac saw %d 480s, want 50 (%v)", r.Counts.Codes[480], r.Counts.FailedBy())
	}
	if code := <-done; code != 0 {
		t.Fatalf("uas exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "INVITE 50, ACK 50") || !strings.Contains(out.String(), "480: 50") {
		t.Fatalf("uas summary:\n%s", out.String())
	}
}

// A second responder on an address in use is refused unless both share it
// with --reuse-port.
func TestUASReusePort(t *testing.T) {
	first := startUAS(t, load.UASConfig{Workers: 2})
	var out, errb bytes.Buffer
	if code := run([]string{"uas", "--listen", first.Addr().String(), "--duration", "10ms", "--quiet"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), first.Addr().String()+": address already in use") || !strings.Contains(errb.String(), "--reuse-port") {
		t.Errorf("second responder: exit %d, want 2 and the address in use:\n%s", code, errb.String())
	}

	shared, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Workers: 2, ReusePort: true})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	errb.Reset()
	if code := run([]string{"uas", "--listen", shared.Addr().String(), "--reuse-port", "--duration", "10ms", "--quiet"}, &out, &errb); code != 0 {
		t.Errorf("second responder with --reuse-port on both: exit %d:\n%s", code, errb.String())
	}
}

func TestUACFindMaxCommand(t *testing.T) {
	s := startUAS(t, load.UASConfig{Workers: 1})
	var out, errb bytes.Buffer
	code := run([]string{"uac", "--target", s.Addr().String(), "--find-max", "--rate", "200", "--find-limit", "400",
		"--find-growth", "2", "--find-step", "300ms", "--find-drain", "500ms", "--quiet", "--json", "-"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res load.FindMaxResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if res.MaxRate != 400 || len(res.Steps) != 2 || res.Best == nil || res.Best.TargetRate != 400 {
		t.Fatalf("find-max: max %v, %d steps", res.MaxRate, len(res.Steps))
	}
	if !strings.Contains(errb.String(), "find-max: rate 200/s -> pass") {
		t.Fatalf("no step lines on stderr:\n%s", errb.String())
	}
}
