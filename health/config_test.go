package health

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/viaduct-sip/viaduct/balancer"
)

func TestDefaultCodes(t *testing.T) {
	c := DefaultCodes()
	for _, code := range []int{200, 202, 301, 401, 403, 404, 405, 407, 481, 486, 500, 501, 502, 504, 600, 603, 699} {
		if !c.Has(code) {
			t.Errorf("default set lacks %d", code)
		}
	}
	for _, code := range []int{100, 180, 199, 408, 480, 503, 700, 0, -1} {
		if c.Has(code) {
			t.Errorf("default set has %d", code)
		}
	}
	if got, want := c.String(), "200-407,409-479,481-502,504-699"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestParseCodes(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"2xx"}, "200-299"},
		{[]string{"2XX", "404"}, "200-299,404"},
		{[]string{" 500 - 502 ", "200"}, "200,500-502"},
		{[]string{"6xx", "3xx"}, "300-399,600-699"},
		{[]string{"200-200"}, "200"},
	} {
		c, err := ParseCodes(tc.in)
		if err != nil || c.String() != tc.want {
			t.Errorf("ParseCodes(%q) = %q, %v; want %q", tc.in, c.String(), err, tc.want)
		}
	}
	for _, bad := range [][]string{nil, {}, {"1xx"}, {"7xx"}, {"180"}, {"700"}, {"20"}, {"abc"}, {"300-200"}, {"200-"}, {"2x"}, {"x2x"}} {
		if _, err := ParseCodes(bad); err == nil {
			t.Errorf("ParseCodes(%q) accepted", bad)
		}
	}
}

func TestResolveDefaults(t *testing.T) {
	p, err := Settings{}.Resolve(netip.MustParseAddrPort("10.0.0.1:5060"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Interval != 5*time.Second || p.Timeout != 2*time.Second || p.Failures != 3 || p.Successes != 2 ||
		p.Method != "OPTIONS" || p.From != "sip:viaduct@localhost" || p.RequestURI != "sip:10.0.0.1:5060" ||
		p.NeverProbe || p.PassiveCount != 0 || p.Accept != DefaultCodes() {
		t.Errorf("defaults: %+v", p)
	}
	if p.DetectionBound() != 17*time.Second || p.RecoveryBound() != 12*time.Second {
		t.Errorf("bounds %v %v, want 17s 12s", p.DetectionBound(), p.RecoveryBound())
	}
	// A short interval shortens the default timeout.
	p, err = Settings{Interval: time.Second}.Resolve(netip.MustParseAddrPort("[2001:db8::1]:5080"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Timeout != time.Second || p.RequestURI != "sip:[2001:db8::1]:5080" {
		t.Errorf("timeout %v, Request-URI %q", p.Timeout, p.RequestURI)
	}
	p, _ = Settings{Passive503: &PassiveSettings{Count: 10}}.Resolve(netip.MustParseAddrPort("10.0.0.1:5060"))
	if p.PassiveCount != 10 || p.PassiveWindow != DefaultPassiveWindow {
		t.Errorf("passive %d %v", p.PassiveCount, p.PassiveWindow)
	}
}

func TestMerge(t *testing.T) {
	yes, no := true, false
	pool := Settings{Interval: 10 * time.Second, Timeout: time.Second, Failures: 5, Accept: []string{"2xx"}, From: "sip:a@b",
		NeverProbe: &yes, Passive503: &PassiveSettings{Count: 5}}
	got := pool.Merge(Settings{Interval: 2 * time.Second, NeverProbe: &no, Method: "INFO"})
	p, err := got.Resolve(netip.MustParseAddrPort("10.0.0.1:5060"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Interval != 2*time.Second || p.Timeout != time.Second || p.Failures != 5 || p.Successes != 2 || p.Method != "INFO" ||
		p.From != "sip:a@b" || p.NeverProbe || p.PassiveCount != 5 || p.Accept.String() != "200-299" {
		t.Errorf("merged: %+v", p)
	}
	if p2, _ := pool.Merge(Settings{}).Resolve(netip.MustParseAddrPort("10.0.0.1:5060")); !p2.NeverProbe {
		t.Errorf("an empty override dropped the pool's never_probe")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		s     Settings
		field string
	}{
		{Settings{Interval: time.Millisecond}, "interval"},
		{Settings{Interval: 48 * time.Hour}, "interval"},
		{Settings{Timeout: -time.Second}, "timeout"},
		{Settings{Failures: -1}, "failures"},
		{Settings{Failures: 101}, "failures"},
		{Settings{Successes: -2}, "successes"},
		{Settings{Accept: []string{"1xx"}}, "accept"},
		{Settings{Accept: []string{}}, "accept"},
		{Settings{Method: "INVITE"}, "method"},
		{Settings{Method: "ACK"}, "method"},
		{Settings{Method: "OPT IONS"}, "method"},
		{Settings{From: "tel:+1234"}, "from"},
		{Settings{From: "sip:a@b>"}, "from"},
		{Settings{From: "sip:a@b\r\nX: y"}, "from"},
		{Settings{RequestURI: "mailto:x@y"}, "request_uri"},
		{Settings{RequestURI: "sip:"}, "request_uri"},
		{Settings{Passive503: &PassiveSettings{Count: 1}}, "passive_503.count"},
		{Settings{Passive503: &PassiveSettings{Count: 10001}}, "passive_503.count"},
		{Settings{Passive503: &PassiveSettings{Count: 3, Window: -1}}, "passive_503.window"},
		{Settings{Interval: time.Second, Timeout: 2 * time.Second}, "timeout"}, // Resolve only
	} {
		_, err := tc.s.Resolve(netip.MustParseAddrPort("10.0.0.1:5060"))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want one naming %s", tc.s, err, tc.field)
		}
	}
	if err := (Settings{Interval: time.Second, Timeout: 2 * time.Second}).Validate(); err != nil {
		t.Errorf("Validate checks how fields combine: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:5071")
	b := netip.MustParseAddrPort("127.0.0.1:5072")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Settings: Settings{Failures: -1}}, "health.failures: "},
		{Config{Settings: Settings{Interval: time.Second, Timeout: 2 * time.Second}, Targets: []Target{{Addr: a}}}, "health.timeout: "},
		{Config{Targets: []Target{{Addr: a}, {Addr: b, Settings: Settings{Interval: time.Second, Timeout: 3 * time.Second}}}}, "targets[1].health.timeout: "},
		{Config{Targets: []Target{{Addr: a}, {Addr: b, Settings: Settings{Method: "BYE"}}}}, "targets[1].health.method: "},
		{Config{Targets: []Target{{Addr: a, Transport: "ws"}}}, "targets[0].health.never_probe: probes are sent over UDP, TCP or TLS; a ws target"},
		{Config{Targets: []Target{{Addr: netip.AddrPort{}}}}, "targets[0].addr: "},
		{Config{Targets: []Target{{Addr: netip.MustParseAddrPort("127.0.0.1:0")}}}, "targets[0].addr: "},
		{Config{Targets: []Target{{Addr: a}, {ID: "udp:127.0.0.1:5071", Addr: b}}}, `duplicate id "udp:127.0.0.1:5071"`},
		{Config{Targets: []Target{{Addr: a, Admin: 7}}}, "targets[0].admin: "},
	} {
		_, err := New(tc.cfg, &udpTransport{}, nopSink{}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
	never := true
	if _, err := New(Config{Targets: []Target{{Addr: a, Transport: "TCP", Settings: Settings{NeverProbe: &never}}}}, &udpTransport{}, nopSink{}, nil); err != nil {
		t.Errorf("never-probed tcp target refused: %v", err)
	}
	if _, err := New(Config{}, nil, nopSink{}, nil); err == nil {
		t.Errorf("nil transport accepted")
	}
}

// The YAML example of the Settings documentation decodes strictly and
// resolves.
func TestYAML(t *testing.T) {
	const doc = `
interval: 5s
timeout: 2s
failures: 3
successes: 2
accept: ["2xx", "404"]
method: OPTIONS
from: sip:viaduct@proxy.example.net
request_uri: sip:ping@{addr}
never_probe: false
passive_503: {count: 20, window: 2s}
`
	var s Settings
	dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	p, err := s.Resolve(netip.MustParseAddrPort("192.0.2.7:5060"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Interval != 5*time.Second || p.Accept.String() != "200-299,404" || p.RequestURI != "sip:ping@192.0.2.7:5060" ||
		p.From != "sip:viaduct@proxy.example.net" || p.PassiveCount != 20 || p.PassiveWindow != 2*time.Second || p.NeverProbe {
		t.Errorf("decoded %+v", p)
	}
	var bad Settings
	dec = yaml.NewDecoder(bytes.NewReader([]byte("intervall: 5s\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&bad); err == nil {
		t.Errorf("unknown key accepted")
	}
}

// The health section decodes strictly, with the pool's switches beside the
// inline settings, and resolves to the pool's settings and policy.
func TestSection(t *testing.T) {
	decode := func(doc string) (Section, error) {
		var s Section
		dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
		dec.KnownFields(true)
		err := dec.Decode(&s)
		return s, err
	}
	yes, no := true, false
	cases := []struct {
		doc     string
		never   *bool // the pool's never_probe after Pool
		allDown balancer.AllDown
		err     string
	}{
		{"interval: 1s\n", nil, balancer.AllDownForward, ""},
		{"enabled: true\n", &no, balancer.AllDownForward, ""},
		{"enabled: false\nall_down: reject\n", &yes, balancer.AllDownReject, ""},
		{"never_probe: true\n", &yes, balancer.AllDownForward, ""}, // the old way to say off
		{"enabled: false\nnever_probe: false\n", nil, 0, "never_probe: false contradicts enabled: false"},
		{"enabled: true\nnever_probe: true\n", nil, 0, "never_probe: true contradicts enabled: true"},
		{"all_down: panic\n", nil, 0, `all_down: "panic": want forward`},
		{"interval: 1ms\n", nil, 0, "interval: must be between"},
	}
	for _, c := range cases {
		s, err := decode(c.doc)
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		st, ad, err := s.Pool()
		if c.err != "" {
			var fe *FieldError
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &fe) {
				t.Errorf("%q: error %v, want a *FieldError with %q", c.doc, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.doc, err)
			continue
		}
		if (st.NeverProbe == nil) != (c.never == nil) || (c.never != nil && *st.NeverProbe != *c.never) || ad != c.allDown {
			t.Errorf("%q: never_probe %v, all_down %v; want %v, %v", c.doc, st.NeverProbe, ad, c.never, c.allDown)
		}
	}
	if _, err := decode("enabled: true\nintervall: 1s\n"); err == nil {
		t.Error("unknown key accepted in the health section")
	}
}
