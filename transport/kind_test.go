package transport

import (
	"strings"
	"testing"
)

func TestKindTable(t *testing.T) {
	for _, c := range []struct {
		k             Kind
		name, via     string
		port          uint16
		reliable, tls bool
		needsLength   bool
	}{
		{UDP, "udp", "UDP", 5060, false, false, false},
		{TCP, "tcp", "TCP", 5060, true, false, true},
		{TLS, "tls", "TLS", 5061, true, true, true},
		{WS, "ws", "WS", 80, true, false, false},
		{WSS, "wss", "WSS", 443, true, true, false},
	} {
		if c.k.String() != c.name || c.k.ViaToken() != c.via || c.k.DefaultPort() != c.port || c.k.Reliable() != c.reliable || c.k.Secure() != c.tls {
			t.Errorf("%v: %q %q %d %v %v", c.k, c.k.String(), c.k.ViaToken(), c.k.DefaultPort(), c.k.Reliable(), c.k.Secure())
		}
		if c.k.NeedsLength() != c.needsLength {
			t.Errorf("%v: NeedsLength = %v", c.k, c.k.NeedsLength())
		}
		for _, s := range []string{c.name, c.via} {
			if k, ok := ParseKind(s); !ok || k != c.k {
				t.Errorf("ParseKind(%q) = %v, %v", s, k, ok)
			}
		}
	}
	for _, k := range []Kind{0, numKinds, 200} {
		if k.Valid() || k.String() != "" || k.ViaToken() != "" || k.DefaultPort() != 0 {
			t.Errorf("invalid kind %d reads as valid", k)
		}
	}
	if _, ok := ParseKind("sctp"); ok {
		t.Error("ParseKind accepted sctp")
	}
}

func TestNames(t *testing.T) {
	names := Names()
	if got := strings.Join(names, " "); got != "udp tcp tls ws wss" {
		t.Errorf("Names() = %q", got)
	}
	for _, n := range names {
		if k, ok := ParseKind(n); !ok || k.String() != n {
			t.Errorf("Names() lists %q, which ParseKind reads as %v, %v", n, k, ok)
		}
	}
}
