package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/bench/load"
)

// The tests in this file run the real binary under load from the load
// generator (bench/load in this process: uac -> viaduct -> uas).

func newUAS(t *testing.T) *load.UAS {
	t.Helper()
	s, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Workers: 1, RecvBuffer: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func uasInvites(s *load.UAS) uint64 {
	var c load.UASCounts
	s.Counts(&c)
	return c.Invite
}

func newUAC(t *testing.T, target netip.AddrPort) *load.UAC {
	t.Helper()
	u, err := load.NewUAC(load.UACConfig{Target: target, Sources: 2, CallHold: 100 * time.Millisecond, RecvBuffer: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// adminGet fetches url and decodes its JSON into v (nil: status only).
func adminGet(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func waitStatus(t *testing.T, url string, code int, d time.Duration, p *proc) {
	t.Helper()
	for deadline := time.Now().Add(d); adminGet(t, url, nil) != code; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d:\n%s", url, code, p.out.String())
		}
	}
}

// Issue #7: 20 reloads by SIGHUP, alternating weights, upstream lists and
// keys, while viaduct-load's UAC drives calls through Viaduct to three
// UAS: no call fails, nothing is dropped, every reload is applied, and the
// admin state of an upstream present in every configuration survives them
// all.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	bin := viaductBinary(t)
	u1, u2, u3 := newUAS(t), newUAS(t), newUAS(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	head := fmt.Sprintf("listen: [\"%s\"]\nworkers: 2\nadmin: {listen: \"%s\"}\nhealth: {interval: 500ms, timeout: 400ms}\n", proxy, adm)
	configs := []string{
		fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: u1}\n  - {address: \"%s\", id: u2}\n", u1.Addr(), u2.Addr()),
		fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: u1, weight: 3}\n  - {address: \"%s\", id: u2}\n  - {address: \"%s\", id: u3}\n", u1.Addr(), u2.Addr(), u3.Addr()),
		fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: u1}\n  - {address: \"%s\", id: u2, weight: 2}\nbalance: {keys: {MESSAGE: from-uri}}\n", u1.Addr(), u2.Addr()),
		fmt.Sprintf("upstreams:\n  - {address: \"%s\", id: u2}\n  - {address: \"%s\", id: u3, weight: 2}\n  - {address: \"%s\", id: u1, priority: 1}\n", u2.Addr(), u3.Addr(), u1.Addr()),
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "viaduct.yaml")
	write := func(i int) {
		// Write and rename, as an editor or a config manager does, so a
		// reload never reads a half-written file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(head+configs[i%len(configs)]), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	p := start(t, dir, bin, "--config", path, "--shutdown-drain", "0")
	waitBound(t, proxy, p)
	base := "http://" + adm.String()
	waitStatus(t, base+"/readyz", 200, 5*time.Second, p)
	// u2 is in every configuration: drain it and check the reloads keep it
	// draining.
	if resp, err := http.Post(base+"/api/v1/upstreams/u2/drain", "", nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain u2: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	uac := newUAC(t, proxy)
	type outcome struct {
		res *load.Result
		err error
	}
	ran := make(chan outcome, 1)
	const rate, sending = 300, 8 * time.Second
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := uac.Run(ctx, load.RunOptions{Rate: rate, Duration: sending, Drain: 5 * time.Second})
		ran <- outcome{r, err}
	}()
	const reloads = 20
	time.Sleep(300 * time.Millisecond)
	for i := 1; i <= reloads; i++ {
		write(i)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		// Each reload is applied before the next file is written.
		for deadline := time.Now().Add(5 * time.Second); strings.Count(p.out.String(), `msg="configuration reloaded"`) < i; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d not applied:\n%s", i, lastLines(p.out.String(), 20))
			}
		}
		time.Sleep(sending / (reloads + 4))
	}
	o := <-ran
	if o.err != nil {
		t.Fatal(o.err)
	}
	rep := o.res.Report(0)
	var tbl strings.Builder
	rep.WriteTable(&tbl)
	t.Logf("%d reloads during the run:\n%s", reloads, tbl.String())
	if rep.Failed != 0 || rep.Completed != rep.Started || rep.Started < uint64(rate*sending.Seconds()*0.9) {
		t.Errorf("calls: %d started, %d completed, %d failed %v; want every call completed", rep.Started, rep.Completed, rep.Failed, rep.FailedBy)
	}
	if n := uasInvites(u3); n == 0 {
		t.Errorf("u3 (in half of the configurations) got no call")
	}
	t.Logf("INVITEs per UAS (u2 draining): u1 %d, u2 %d, u3 %d; UAC retransmissions %d", uasInvites(u1), uasInvites(u2), uasInvites(u3), rep.Retrans)

	var list admin.UpstreamList
	if code := adminGet(t, base+"/api/v1/upstreams", &list); code != 200 {
		t.Fatalf("upstreams: %d", code)
	}
	for _, u := range list.Upstreams {
		if u.Health != "up" || (u.ID == "u2") != (u.Admin == "draining") {
			t.Errorf("after the reloads: %s %s %s (health reason %q)", u.ID, u.Health, u.Admin, u.HealthReason)
		}
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var mb strings.Builder
	io.Copy(&mb, resp.Body)
	resp.Body.Close()
	for _, want := range []string{fmt.Sprintf(`viaduct_config_reloads_total{result="success"} %d`, reloads), `viaduct_config_reloads_total{result="failure"} 0`} {
		if !strings.Contains(mb.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if exited, err := p.stop(t, syscall.SIGTERM, 5*time.Second); !exited || err != nil {
		t.Fatalf("stop: exited=%v err=%v", exited, err)
	}
	stopped := regexp.MustCompile(`msg=stopped .*`).FindString(p.out.String())
	t.Logf("viaduct: %s", stopped)
	if stopped == "" || strings.Contains(stopped, "drop_") {
		t.Errorf("viaduct dropped messages (or did not log its counters): %q", stopped)
	}
	if strings.Contains(p.out.String(), "refused") {
		t.Errorf("a reload was refused:\n%s", p.out.String())
	}
}

// SIGTERM: /readyz turns 503 at once, requests are still forwarded during
// shutdown_drain, and the process exits 0 once it is over; a second
// SIGTERM stops at once.
func TestBinaryDrainOnSIGTERM(t *testing.T) {
	bin := viaductBinary(t)
	uas := newUAS(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	const drain = 2 * time.Second
	p := start(t, t.TempDir(), bin, "--listen", proxy.String(), "--upstream", uas.Addr().String(), "--workers", "1",
		"--admin-listen", adm.String(), "--shutdown-drain", drain.String())
	waitBound(t, proxy, p)
	base := "http://" + adm.String()
	waitStatus(t, base+"/readyz", 200, 5*time.Second, p)
	uac := newUAC(t, proxy)

	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, base+"/readyz", 503, time.Second, p)
	before := uasInvites(uas)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := uac.Run(ctx, load.RunOptions{Rate: 100, Duration: 700 * time.Millisecond, Drain: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report(0)
	if rep.Started < 50 || rep.Failed != 0 || rep.Completed != rep.Started {
		t.Errorf("calls during the drain: %d started, %d completed, %d failed %v", rep.Started, rep.Completed, rep.Failed, rep.FailedBy)
	}
	if got := uasInvites(uas) - before; got != rep.Started {
		t.Errorf("the UAS got %d INVITEs during the drain, the UAC started %d", got, rep.Started)
	}
	if ok, _ := p.exited(); ok {
		t.Fatalf("exited %v after SIGTERM, before the %v drain:\n%s", time.Since(t0), drain, p.out.String())
	}
	select {
	case err := <-p.done:
		p.done <- err
		elapsed := time.Since(t0)
		if err != nil || elapsed < drain {
			t.Errorf("exit after %v: %v; want status 0 after %v", elapsed, err, drain)
		}
		t.Logf("exited %v after SIGTERM (drain %v)", elapsed.Round(time.Millisecond), drain)
	case <-time.After(drain + 3*time.Second):
		t.Fatalf("still running %v after SIGTERM:\n%s", time.Since(t0), p.out.String())
	}
	log := p.out.String()
	for _, want := range []string{`msg="draining before stopping: /readyz answers 503, forwarding goes on" signal=terminated shutdown_drain=2s`,
		`msg="drain period over"`, "msg=stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	// A second SIGTERM cuts a long drain short.
	p2 := start(t, t.TempDir(), bin, "--listen", proxy.String(), "--upstream", uas.Addr().String(), "--workers", "1",
		"--admin-listen", "off", "--shutdown-drain", "1m")
	waitBound(t, proxy, p2)
	p2.cmd.Process.Signal(syscall.SIGTERM)
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(p2.out.String(), "draining before stopping"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no drain:\n%s", p2.out.String())
		}
	}
	t1 := time.Now()
	if exited, err := p2.stop(t, syscall.SIGTERM, 3*time.Second); !exited || err != nil {
		t.Fatalf("second SIGTERM: exited=%v err=%v\n%s", exited, err, p2.out.String())
	}
	t.Logf("second SIGTERM: exited after %v", time.Since(t1).Round(time.Millisecond))
	if !strings.Contains(p2.out.String(), "second stop signal: stopping now") {
		t.Errorf("log:\n%s", p2.out.String())
	}
}
