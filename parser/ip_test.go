package parser

import (
	"net/netip"
	"testing"
)

func TestParseIP(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "0.0.0.0", "255.255.255.255", "192.0.2.10",
		"::", "::1", "1::", "2001:db8::7", "2001:DB8:0:0:8:800:200C:417A", "fe80::1:2:3:4:5:6",
		"::ffff:192.0.2.1", "64:ff9b::192.0.2.33", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "::1.2.3.4",
	} {
		want := netip.MustParseAddr(s).Unmap()
		got, ok := ParseIP([]byte(s))
		if !ok || got != want {
			t.Errorf("ParseIP(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "a.b.c.d", "example.com",
		":", ":::", "1:::2", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", ":1:2", "1:2:", "g::1",
		"1:2:3:4:5:6:7:1.2.3.4", "::1.2.3", "1::2:3:4:5:6:7:8",
	} {
		if _, err := netip.ParseAddr(s); err == nil {
			t.Errorf("bad test case %q: netip accepts it", s)
		}
		if got, ok := ParseIP([]byte(s)); ok {
			t.Errorf("ParseIP(%q) = %v, want failure", s, got)
		}
	}
	if _, ok := ParseIP([]byte("fe80::1%eth0")); ok {
		t.Errorf("parseIP accepted a zone")
	}
	if n := testing.AllocsPerRun(100, func() { ParseIP([]byte("host.example.com")); ParseIP([]byte("2001:db8::1")) }); n != 0 {
		t.Errorf("%.1f allocations", n)
	}
}

func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::1", "2001:db8::1:2", "::ffff:1.2.3.4", "1::", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseIP([]byte(s))
		want, err := netip.ParseAddr(s)
		if err != nil || want.Zone() != "" {
			if ok {
				t.Fatalf("ParseIP(%q) = %v, netip refuses it", s, got)
			}
			return
		}
		if !ok || got != want.Unmap() {
			t.Fatalf("ParseIP(%q) = %v %v, netip says %v", s, got, ok, want)
		}
	})
}

func TestParseAddrPort(t *testing.T) {
	for _, s := range []string{"198.51.100.7:40112", "127.0.0.1:1", "0.0.0.0:65535", "[2001:db8::7]:5060", "[::1]:5060", "[::ffff:192.0.2.1]:5060"} {
		want := netip.MustParseAddrPort(s)
		want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
		if got, ok := ParseAddrPort([]byte(s)); !ok || got != want {
			t.Errorf("ParseAddrPort(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"", "198.51.100.7", "198.51.100.7:", "198.51.100.7:0", "198.51.100.7:65536", "198.51.100.7:123456", "198.51.100.7:5o60",
		"198.51.100.7:+5060", "::1:5060", "2001:db8::7:5060", "[2001:db8::7]", "[2001:db8::7]5060", "[2001:db8::7:5060",
		"[198.51.100.7]:5060x", "host.example.com:5060", "[fe80::1%eth0]:5060",
	} {
		if got, ok := ParseAddrPort([]byte(s)); ok {
			t.Errorf("ParseAddrPort(%q) = %v, want failure", s, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ParseAddrPort([]byte("[2001:db8::7]:5060")); ParseAddrPort([]byte("edge.example.com:5060")) }); n != 0 {
		t.Errorf("%.1f allocations", n)
	}
}
