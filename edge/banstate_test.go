package edge

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A ban list saved to bans.state_file comes back in a new Guard (a
// restart) with its origins, reasons and remaining time; expired bans do
// not; an unchanged list is not written again; a missing file is an empty
// list and a corrupt one an error.
func TestBansSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bans.json")
	c := Config{Bans: BansConfig{StateFile: path}}
	g := newGuard(t, c)
	if n, err := g.RestoreBans(); n != 0 || err != nil {
		t.Fatalf("restore from a missing file: %d, %v; want 0, nil", n, err)
	}
	b := g.Bans()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Add(netip.MustParsePrefix("192.0.2.0/24"), time.Hour, OriginManual, "abuse desk"))
	must(b.Add(netip.MustParsePrefix("2001:db8:bad::/48"), 10*time.Minute, OriginRate, "invite flood"))
	must(b.Add(netip.MustParsePrefix("198.51.100.7/32"), time.Second, OriginScanner, "sipvicious"))
	must(g.SaveBans())
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the scanner's ban expires
	must(g.SaveBans())                  // nothing changed: not written again
	if again, _ := os.Stat(path); !again.ModTime().Equal(info.ModTime()) {
		t.Error("an unchanged ban list was written again")
	}

	g2 := newGuard(t, c)
	n, err := g2.RestoreBans()
	if err != nil || n != 2 {
		t.Fatalf("restored %d bans (%v), want the 2 not expired", n, err)
	}
	list := g2.Bans().List()
	if len(list) != 2 || list[0].Prefix != "192.0.2.0/24" || list[0].Origin != "manual" || list[0].Reason != "abuse desk" ||
		list[1].Prefix != "2001:db8:bad::/48" || list[1].Origin != "rate" {
		t.Errorf("restored bans: %+v", list)
	}
	if ttl := list[0].TTLSeconds; ttl < 3590 || ttl > 3600 {
		t.Errorf("restored ban's remaining time %v s, want about an hour", ttl)
	}
	if o, banned := g2.Bans().lookup(netip.MustParseAddr("192.0.2.77"), g2.clock.now()); !banned || o != OriginManual {
		t.Error("a restored ban does not apply")
	}
	if a := &g2.Bans().added; a[OriginManual].Load()+a[OriginRate].Load() != 0 {
		t.Error("restored bans counted as added")
	}

	if err := os.WriteFile(path, []byte(`[{"prefix": "nonsense"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newGuard(t, c).RestoreBans(); err == nil || !strings.Contains(err.Error(), "state_file") {
		t.Errorf("restore from a corrupt file: %v, want an error naming bans.state_file", err)
	}
	if _, err := Prepare(Config{Bans: BansConfig{StateFile: "/nonexistent-dir/bans.json"}}); err == nil || !strings.Contains(err.Error(), "bans.state_file") {
		t.Errorf("a state file in a missing directory: %v, want an error naming bans.state_file", err)
	}
}
