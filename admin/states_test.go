package admin

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/viaduct-sip/viaduct/balancer"
)

// Every change through the API is saved: draining and disabled upstreams
// by ID, enabled ones left out; the file is replaced atomically with mode
// 0600 and leaves no temporary file behind; Load reads it back.
func TestStateFileSavesEveryChange(t *testing.T) {
	dir := t.TempDir()
	sf := NewStateFile(filepath.Join(dir, "states.json"))
	if got, err := sf.Load(); err != nil || len(got) != 0 {
		t.Fatalf("Load of a missing file: %v, %v; want nothing and no error", got, err)
	}
	srv, _, _, _ := setupWith(t, Options{StateFile: sf})
	const v4, v6 = "udp:127.0.0.1:5071", "udp:[::1]:5072"
	post := func(id, action string) {
		t.Helper()
		if code, body := do(t, "POST", srv.URL+"/api/v1/upstreams/"+url.PathEscape(id)+"/"+action, ""); code != 200 {
			t.Fatalf("%s %s: %d %s", action, id, code, body)
		}
	}
	for _, step := range []struct {
		id, action string
		want       map[string]balancer.AdminState
	}{
		{v4, "drain", map[string]balancer.AdminState{v4: balancer.Draining}},
		{v6, "disable", map[string]balancer.AdminState{v4: balancer.Draining, v6: balancer.Disabled}},
		{v4, "enable", map[string]balancer.AdminState{v6: balancer.Disabled}},
		{v6, "enable", map[string]balancer.AdminState{}},
		{v6, "drain", map[string]balancer.AdminState{v6: balancer.Draining}},
	} {
		post(step.id, step.action)
		got, err := sf.Load()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(step.want) {
			t.Errorf("after %s %s: %v, want %v", step.action, step.id, got, step.want)
		}
		for id, a := range step.want {
			if got[id].Admin != a || got[id].Since.IsZero() {
				t.Errorf("after %s %s: %s is %+v, want %v with a time", step.action, step.id, id, got[id], a)
			}
		}
	}
	st, err := os.Stat(sf.Path())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, %v; want 0600", st.Mode(), err)
	}
	b, _ := os.ReadFile(sf.Path())
	var doc map[string]map[string]map[string]string
	if err := json.Unmarshal(b, &doc); err != nil || doc["upstreams"][v6]["admin"] != "draining" {
		t.Errorf("file %s (%v)", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d files, want the state file alone", len(ents))
	}
}

// A change that cannot be saved is in force and answered 500 saying so.
func TestStateFileSaveFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sf := NewStateFile(filepath.Join(dir, "states.json"))
	srv, pool, _, _ := setupWith(t, Options{StateFile: sf})
	os.Remove(dir)
	code, body := do(t, "POST", srv.URL+"/api/v1/upstreams/udp:127.0.0.1:5071/drain", "")
	if code != 500 || !strings.Contains(string(body), "in force but was not saved to "+sf.Path()) {
		t.Errorf("drain with the directory gone: %d %s", code, body)
	}
	if tg, _ := pool.Table().ByID("udp:127.0.0.1:5071"); tg.Admin != balancer.Draining {
		t.Errorf("admin state %v, want draining (in force)", tg.Admin)
	}
	// An unknown upstream is still a 404, and saves nothing.
	if code, _ := do(t, "POST", srv.URL+"/api/v1/upstreams/nope/drain", ""); code != 404 {
		t.Errorf("unknown upstream: %d", code)
	}
}

// Concurrent changes are saved in the order they were made: the file ends
// with every change.
func TestStateFileConcurrentChanges(t *testing.T) {
	sf := NewStateFile(filepath.Join(t.TempDir(), "states.json"))
	srv, _, _, _ := setupWith(t, Options{StateFile: sf})
	var wg sync.WaitGroup
	for _, id := range []string{"udp:127.0.0.1:5071", "udp:[::1]:5072"} {
		wg.Go(func() {
			for _, action := range []string{"disable", "enable", "drain"} {
				do(t, "POST", srv.URL+"/api/v1/upstreams/"+url.PathEscape(id)+"/"+action, "")
			}
		})
	}
	wg.Wait()
	got, err := sf.Load()
	if err != nil || len(got) != 2 || got["udp:127.0.0.1:5071"].Admin != balancer.Draining || got["udp:[::1]:5072"].Admin != balancer.Draining {
		t.Errorf("after concurrent changes: %v, %v; want both draining", got, err)
	}
}

func TestStateFileLoadErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ content, want string }{
		{"{not json", "invalid character"},
		{`{"upstreams": {"a": {"admin": "asleep"}}}`, `upstream "a": admin state "asleep"`},
	} {
		p := filepath.Join(dir, "s.json")
		os.WriteFile(p, []byte(c.content), 0o600)
		if _, err := NewStateFile(p).Load(); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("Load of %q: %v; want an error naming the file and %q", c.content, err, c.want)
		}
	}
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "nodir", "s.json"), "no such file or directory"},
		{dir, "is a directory"},
	} {
		if err := CheckStateFile(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckStateFile(%s): %v, want %q", c.path, err, c.want)
		}
	}
	if err := CheckStateFile(filepath.Join(dir, "new.json")); err != nil {
		t.Errorf("a new file in an existing directory: %v", err)
	}
}
