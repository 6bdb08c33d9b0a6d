package balancer

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/viaduct-sip/viaduct/internal/config"
)

func TestNormalizeConfigDefaults(t *testing.T) {
	in := []Target{
		{Addr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060")},
		{ID: "b", Addr: netip.MustParseAddrPort("192.0.2.2:5060"), Transport: "UDP", Weight: 3, Priority: 2},
	}
	out, err := NormalizeConfig(in, "udp")
	if err != nil {
		t.Fatal(err)
	}
	a, b := out[0], out[1]
	if a.ID != "udp:192.0.2.1:5060" || a.Addr.String() != "192.0.2.1:5060" || a.Transport != "udp" || a.Weight != DefaultWeight {
		t.Errorf("defaults: %+v", a)
	}
	if b.ID != "b" || b.Transport != "udp" || b.Weight != 3 || b.Priority != 2 {
		t.Errorf("given values: %+v", b)
	}
	if in[0].ID != "" || in[0].Weight != 0 {
		t.Errorf("the input changed: %+v", in[0])
	}
	// The normalised targets make a pool.
	if _, err := NewPool(out, Options{}); err != nil {
		t.Errorf("NewPool: %v", err)
	}
}

func TestNormalizeConfigErrors(t *testing.T) {
	a := netip.MustParseAddrPort("192.0.2.1:5060")
	b := netip.MustParseAddrPort("192.0.2.2:5060")
	many := make([]Target, MaxTargets+1)
	cases := []struct {
		in    []Target
		field string
		want  string
	}{
		{[]Target{{Addr: a}, {Addr: netip.MustParseAddrPort("[::ffff:192.0.2.1]:5060")}}, "upstreams[1].address", "duplicate of upstreams[0] (192.0.2.1:5060)"},
		{[]Target{{Addr: netip.AddrPortFrom(a.Addr(), 0)}}, "upstreams[0].address", "not a valid ip:port with a non-zero port"},
		{[]Target{{Addr: a, Transport: "tcp"}}, "upstreams[0].transport", `"tcp": want one of udp`},
		{[]Target{{Addr: a, Weight: MaxWeight + 1}}, "upstreams[0].weight", "must be 1..1000, got 1001"},
		{[]Target{{Addr: a, Priority: MaxPriority + 1}}, "upstreams[0].priority", "must be 0..65535, got 65536"},
		{[]Target{{Addr: a, ID: strings.Repeat("x", maxIDLen+1)}}, "upstreams[0].id", "129 bytes, at most 128"},
		{[]Target{{Addr: a, ID: "udp:" + b.String()}, {Addr: b}}, "upstreams[1].id", `"udp:192.0.2.2:5060" is also the id of upstreams[0]`},
		{[]Target{{Addr: a, Weight: MaxWeight}}, "", ""}, // fine
		{many, "upstreams", "at most 65536 upstreams are supported, got 65537"},
	}
	for _, c := range cases {
		_, err := NormalizeConfig(c.in, "udp")
		if c.field == "" {
			if err != nil {
				t.Errorf("%.80v: %v", c.in, err)
			}
			continue
		}
		var fe *config.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || fe.Reason != c.want {
			t.Errorf("%.80v: %v; want %s: %s", c.in, err, c.field, c.want)
		}
	}
}

// Several transports: the first is the default, any listed one is taken
// (in any case, stored as listed), others are refused naming the list.
func TestNormalizeConfigTransports(t *testing.T) {
	a, b := netip.MustParseAddrPort("192.0.2.1:5060"), netip.MustParseAddrPort("192.0.2.2:5061")
	out, err := NormalizeConfig([]Target{{Addr: a}, {Addr: b, Transport: "TLS"}}, "udp", "tcp", "tls")
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Transport != "udp" || out[1].Transport != "tls" || out[1].ID != "tls:192.0.2.2:5061" {
		t.Errorf("got %q %q id %q", out[0].Transport, out[1].Transport, out[1].ID)
	}
	if _, err := NormalizeConfig([]Target{{Addr: a, Transport: "ws"}}, "udp", "tcp", "tls"); err == nil || !strings.Contains(err.Error(), `"ws": want one of udp, tcp, tls`) {
		t.Errorf("ws: %v", err)
	}
}
