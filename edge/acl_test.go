package edge

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestAccessListsDropBeforeTheCore(t *testing.T) {
	g := newGuard(t, Config{Access: AccessConfig{
		Deny:    []string{"203.0.113.0/24"},
		Trusted: []string{"10.0.0.0/8"},
	}})
	g.SetUpstreams([]Upstream{{ID: "pbx", Addr: netip.MustParseAddrPort("203.0.113.5:5060")}})
	w := newWorker(g)
	inv := request("INVITE", "")
	if w.send(inv, "203.0.113.9:5060") {
		t.Error("a source in deny reached the core")
	}
	if w.send(response, "203.0.113.9:5060") {
		t.Error("a response from a denied source reached the core")
	}
	if !w.send(inv, "203.0.113.5:5999") {
		t.Error("the upstream, inside a denied prefix, was dropped: upstreams are always trusted")
	}
	if !w.send(inv, "198.51.100.1:5060") {
		t.Error("a source in no list was dropped")
	}
	if got := g.Stats().Dropped("access", "deny"); got != 2 {
		t.Errorf("access/deny drops = %d, want 2", got)
	}
}

func TestAllowListAdmitsOnlyItsSourcesTrustedAndUpstreams(t *testing.T) {
	g := newGuard(t, Config{Access: AccessConfig{Allow: []string{"192.0.2.0/24"}, Trusted: []string{"10.1.0.0/16"}}})
	g.SetUpstreams([]Upstream{{Addr: netip.MustParseAddrPort("198.51.100.200:5060")}})
	w := newWorker(g)
	inv := request("INVITE", "")
	for src, want := range map[string]bool{
		"192.0.2.44:5060":     true,
		"10.1.2.3:5060":       true,
		"198.51.100.200:5060": true,
		"198.51.100.1:5060":   false,
		"[2001:db8::1]:5060":  false,
	} {
		if got := w.send(inv, src); got != want {
			t.Errorf("%s reached the core: %v, want %v", src, got, want)
		}
	}
	if got := g.Stats().Dropped("access", "allow"); got != 2 {
		t.Errorf("access/allow drops = %d, want 2", got)
	}
}

func TestNestedPrefixesInheritTheirSupernetsFlags(t *testing.T) {
	// A deny inside a trusted range, and a trusted host inside a denied
	// range: the most specific prefix carries both lists' flags.
	l := accessLists{
		deny:    []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("172.16.0.0/12")},
		trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.1.1/32")},
	}
	a := l.build()
	for addr, want := range map[string]uint8{
		"10.9.1.1":    flagDeny | flagTrusted,
		"10.1.1.1":    flagTrusted,
		"172.16.1.1":  flagDeny | flagTrusted,
		"172.16.1.2":  flagDeny,
		"192.168.0.1": 0,
	} {
		if got := a.lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("flags of %s = %b, want %b", addr, got, want)
		}
	}
}

func TestBlocklistFileLoadsAndReloadSwapsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "voipbl.txt")
	write := fileWriter(t, path)
	write("# VoIPBL\n198.51.100.0/24\n\n192.0.2.7 ; one host\n2001:db8:bad::/48\n")
	c := Config{Access: AccessConfig{BlocklistFile: path}}
	g := newGuard(t, c)
	w := newWorker(g)
	inv := request("OPTIONS", "")
	for src, want := range map[string]bool{"198.51.100.9:5060": false, "192.0.2.7:1": false, "192.0.2.8:1": true, "[2001:db8:bad:1::5]:5060": false} {
		if got := w.send(inv, src); got != want {
			t.Errorf("before reload, %s reached the core: %v, want %v", src, got, want)
		}
	}
	if got := g.Stats().BlocklistPrefixes; got != 3 {
		t.Errorf("blocklist prefixes = %d, want 3", got)
	}
	write("192.0.2.8\n")
	p, err := Prepare(c)
	if err != nil {
		t.Fatal(err)
	}
	g.Install(p)
	for src, want := range map[string]bool{"198.51.100.9:5060": true, "192.0.2.8:1": false} {
		if got := w.send(inv, src); got != want {
			t.Errorf("after reload, %s reached the core: %v, want %v", src, got, want)
		}
	}
	write("192.0.2.999\n")
	if _, err := Prepare(c); err == nil {
		t.Error("a blocklist with a bad line was accepted")
	}
}

func TestGateRefusesDeniedAndBannedConnections(t *testing.T) {
	g := newGuard(t, Config{Access: AccessConfig{Deny: []string{"203.0.113.0/24"}}})
	g.SetUpstreams([]Upstream{{Addr: netip.MustParseAddrPort("203.0.113.1:5060")}})
	if err := g.Bans().Add(netip.MustParsePrefix("192.0.2.66/32"), 60e9, OriginManual, "test"); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]bool{"203.0.113.2:40000": false, "192.0.2.66:1234": false, "203.0.113.1:5060": true, "192.0.2.67:1234": true} {
		if got := g.Gate(netip.MustParseAddrPort(src)); got != want {
			t.Errorf("Gate(%s) = %v, want %v", src, got, want)
		}
	}
	s := g.Stats()
	if s.Dropped("access", "deny") != 1 || s.Dropped("ban", "manual") != 1 {
		t.Errorf("gate drops: deny %d, ban %d; want 1 and 1", s.Dropped("access", "deny"), s.Dropped("ban", "manual"))
	}
}

// APIBAN's JSON answers (two pages here), saved one after the other as the
// blocklist file, are read as such; a bad entry or a JSON file that is not
// APIBAN's refuses the load.
func TestBlocklistReadsAPIBANJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "apiban.json")
	write := fileWriter(t, path)
	write(`{"ipaddress": ["198.51.100.7", "203.0.113.0/24"], "ID": "1700000000"}` + "\n" + `{"ipaddress": ["2001:db8::66"], "ID": "1700000100"}` + "\n")
	got, err := ReadBlocklist(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8::66/128")}
	if !slices.Equal(got, want) {
		t.Errorf("APIBAN JSON read as %v, want %v", got, want)
	}
	g := newGuard(t, Config{Access: AccessConfig{BlocklistFile: path}})
	w := newWorker(g)
	if w.send(request("OPTIONS", ""), "203.0.113.40:5060") {
		t.Error("a source in the APIBAN list reached the core")
	}
	for _, bad := range []string{`{"ipaddress": ["198.51.100.999"]}`, `{"ID": "none"}`, `{"ipaddress": [`, `{"ipaddress": []} [1]`} {
		write(bad)
		if _, err := ReadBlocklist(path); err == nil {
			t.Errorf("blocklist %s accepted", bad)
		}
	}
}

// fileWriter returns a function that replaces the file at path with its
// argument.
func fileWriter(t *testing.T, path string) func(string) {
	return func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
