package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startWithAdmin runs viaduct with args (whose admin API listens on adm)
// and waits for the API; stop ends it and returns its exit status.
func startWithAdmin(t *testing.T, adm string, args ...string) (p *inProcess, stop func() int) {
	t.Helper()
	log, stop := runUntilStarted(t, args...)
	p = &inProcess{t: t, base: "http://" + adm, stderr: log}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := get(t, p.base+"/healthz"); code == 200 {
			return p, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API not up:\n%s", log.String())
		}
	}
}

// Admin states survive a restart and a reload through admin.state_file:
// drained before a restart, drained after it; a saved entry naming no
// upstream is ignored with a warning; an upstream that a reload removes
// and a later reload brings back gets its saved state again.
func TestStateFileSurvivesRestartAndReload(t *testing.T) {
	dir := t.TempDir()
	states := filepath.Join(dir, "states.json")
	a, b := freePort(t).String(), "127.0.0.1:9"
	idA, idB := "udp:"+a, "udp:"+b
	proxy, adm := freePort(t).String(), freeTCPPort(t).String()
	conf := func(upstreams string) string {
		return fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nadmin: {listen: \"%s\", state_file: %s}\nupstreams: [%s]\n", proxy, adm, states, upstreams)
	}
	path := writeFile(t, "v.yaml", conf(`"`+a+`", "`+b+`"`))
	os.WriteFile(states, []byte(`{"upstreams": {"udp:192.0.2.1:5060": {"admin": "disabled"}}}`), 0o600)

	p, stop := startWithAdmin(t, adm, "--config", path)
	p.waitLog(`msg="state file names no upstream: entry ignored" file=`+states+` target=udp:192.0.2.1:5060`, 1, time.Second)
	if code, body := p.post("/api/v1/upstreams/" + idA + "/drain"); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("first run: exit %d", code)
	}
	saved, _ := os.ReadFile(states)
	if !strings.Contains(string(saved), idA) || strings.Contains(string(saved), "192.0.2.1") {
		t.Errorf("state file after the drain:\n%s", saved)
	}

	// A new process (in-process instance) over the same file.
	p, stop = startWithAdmin(t, adm, "--config", path)
	if ups := p.upstreams(); ups[idA].Admin != "draining" || ups[idB].Admin != "enabled" {
		t.Fatalf("after the restart: %s %s, %s %s; want draining, enabled", idA, ups[idA].Admin, idB, ups[idB].Admin)
	}
	p.waitLog(`msg="admin states restored" file=`+states+` upstreams=1`, 1, time.Second)
	// A reload keeps it; so does one that removes another upstream.
	if code, body := p.post("/api/v1/upstreams/" + idB + "/disable"); code != 200 {
		t.Fatalf("disable: %d %s", code, body)
	}
	if code, res := p.reload(); code != 200 || !res.Applied || p.upstreams()[idA].Admin != "draining" {
		t.Fatalf("reload: %d %+v, %s %s", code, res, idA, p.upstreams()[idA].Admin)
	}
	os.WriteFile(path, []byte(conf(`"`+a+`"`)), 0o600)
	if code, res := p.reload(); code != 200 || res.Upstreams != 1 {
		t.Fatalf("reload without b: %d %+v", code, res)
	}
	// b comes back with the state saved for it.
	os.WriteFile(path, []byte(conf(`"`+a+`", "`+b+`"`)), 0o600)
	if code, res := p.reload(); code != 200 || res.Upstreams != 2 {
		t.Fatalf("reload with b: %d %+v", code, res)
	}
	if ups := p.upstreams(); ups[idA].Admin != "draining" || ups[idB].Admin != "disabled" {
		t.Errorf("after the reloads: %s %s, %s %s; want draining, disabled", idA, ups[idA].Admin, idB, ups[idB].Admin)
	}
	if code := stop(); code != 0 {
		t.Fatalf("second run: exit %d", code)
	}
}

// A state file that does not parse does not stop Viaduct: it starts with
// every upstream enabled, logs an error naming the file, and the next
// change rewrites it. A state file in a directory that does not exist is
// a configuration error.
func TestStateFileCorrupt(t *testing.T) {
	states := filepath.Join(t.TempDir(), "states.json")
	os.WriteFile(states, []byte(`{"upstreams": {"udp:127.0.0.1:9": {"admin": "draini`), 0o600)
	adm := freeTCPPort(t).String()
	p, stop := startWithAdmin(t, adm, "--listen", freePort(t).String(), "--upstream", "127.0.0.1:9", "--workers", "1",
		"--admin-listen", adm, "--state-file", states)
	p.waitLog(`msg="admin states not restored: every upstream keeps its current state (enabled at start); the next admin change rewrites the file" file=`+states, 1, time.Second)
	if u := p.upstreams()["udp:127.0.0.1:9"]; u.Admin != "enabled" {
		t.Errorf("admin state %s after a corrupt state file, want enabled", u.Admin)
	}
	if code, body := p.post("/api/v1/upstreams/udp:127.0.0.1:9/drain"); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if b, _ := os.ReadFile(states); !strings.Contains(string(b), `"admin": "draining"`) {
		t.Errorf("state file not rewritten:\n%s", b)
	}
	if code := stop(); code != 0 {
		t.Errorf("exit %d", code)
	}
	bad := filepath.Join(t.TempDir(), "nodir", "states.json")
	if code, out := checkRun(t, "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nadmin: {state_file: "+bad+"}\n"); code != 2 || !strings.Contains(out, "admin.state_file: directory of "+bad) {
		t.Errorf("state file in a missing directory: exit %d:\n%s", code, out)
	}
	if code, out := checkRun(t, "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n", "--state-file", states); code != 0 || !strings.Contains(out, "state_file="+states+" ") {
		t.Errorf("--check with --state-file: exit %d:\n%s", code, out)
	}
}
