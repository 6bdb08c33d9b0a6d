package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/testenv"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const fullYAML = `# every key
listen: ["127.0.0.1:5060", "[::1]:5060"]
advertise: sip.example.com:5080
workers: 3
recv_buffer: 1048576
send_buffer: 2097152
batch: 16
park_after: 2ms
upstreams:
  - 10.0.0.1:5060
  - "[2001:db8::1]:5062"
  - {address: 10.0.0.3:5060, weight: 3, priority: 1, id: sbc-c}
  - address: 10.0.0.4:5060
    weight: 2
balance:
  mode: hash
  keys:
    "*": call-id
    REGISTER: to-aor
    MESSAGE: from-uri
    PUBLISH: header:X-Tenant
    FOO: ruri-user
record_route: true
path: true
max_message_size: 8192
secret: 0123456789abcdef0123
previous_secret: previous-0123456789abcdef
log_format: json
log_level: debug
health:
  enabled: true
  all_down: reject
  interval: 1s
  timeout: 500ms
  failures: 2
  successes: 3
  accept: ["2xx", "404"]
  method: INFO
  from: sip:ping@proxy.example.net
  request_uri: sip:ping@{addr}
  never_probe: false
  passive_503: {count: 20, window: 2s}
upstream_health:
  sbc-c: {interval: 3s, timeout: 1s}
  "10.0.0.4:5060": {never_probe: true}
admin:
  listen: 127.0.0.1:9090
  token: s3cret
`

func TestConfigFileEveryKey(t *testing.T) {
	fc, err := readConfigFile(writeFile(t, "v.yaml", fullYAML))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := fc.toEngineConfig()
	if err != nil {
		t.Fatal(err)
	}
	uc, err := fc.udpConfig()
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %s %d %d %d %d %v %v %v %d %s %s", cfg.Listeners, cfg.Advertise, cfg.Workers, uc.RecvBuffer, uc.SendBuffer,
		uc.Batch, uc.ParkAfter, cfg.RecordRoute, cfg.Path, cfg.MaxMessageSize, cfg.Secret, cfg.PreviousSecret)
	want := "[udp:127.0.0.1:5060 tcp:127.0.0.1:5060 udp:[::1]:5060 tcp:[::1]:5060] sip.example.com:5080 3 1048576 2097152 16 2ms true true 8192 0123456789abcdef0123 previous-0123456789abcdef"
	if got != want {
		t.Errorf("config\n got %s\nwant %s", got, want)
	}
	var ts []string
	for _, tg := range cfg.Targets {
		ts = append(ts, fmt.Sprintf("%s=%s/w%d/p%d", tg.ID, tg.Addr, tg.Weight, tg.Priority))
	}
	if got, want := strings.Join(ts, " "), "=10.0.0.1:5060/w1/p0 =[2001:db8::1]:5062/w1/p0 sbc-c=10.0.0.3:5060/w3/p1 =10.0.0.4:5060/w2/p0"; got != want {
		t.Errorf("targets\n got %s\nwant %s", got, want)
	}
	if cfg.Balance != balancer.ModeHash {
		t.Errorf("mode %v", cfg.Balance)
	}
	for m, want := range map[string]string{"REGISTER": "to-aor", "MESSAGE": "from-uri", "PUBLISH": "header:X-Tenant", "FOO": "ruri-user", "INVITE": "call-id"} {
		if got := cfg.Keys.For([]byte(m)).String(); got != want {
			t.Errorf("key of %s = %s, want %s", m, got, want)
		}
	}
	if fc.LogFormat != "json" || fc.LogLevel != "debug" {
		t.Errorf("log settings %q %q", fc.LogFormat, fc.LogLevel)
	}
	if fc.Admin != (adminConfig{Listen: "127.0.0.1:9090", Token: "s3cret", listenSet: true}) {
		t.Errorf("admin %+v", fc.Admin)
	}
	// The health section as the checker resolves it, per target.
	eng, err := fastpath.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	chk, err := newChecker(&fc, eng, nil)
	if err != nil {
		t.Fatal(err)
	}
	if chk.AllDown() != balancer.AllDownReject {
		t.Errorf("health.all_down: %v", chk.AllDown())
	}
	var ps []string
	for _, st := range chk.Status() {
		p := st.Probe
		ps = append(ps, fmt.Sprintf("%s %v/%v/%d/%d %s %s %s %s never=%v passive=%d/%v", st.ID, p.Interval, p.Timeout, p.Failures, p.Successes,
			p.Accept, p.Method, p.From, p.RequestURI, p.NeverProbe, p.PassiveCount, p.PassiveWindow))
	}
	want = strings.Join([]string{
		"udp:10.0.0.1:5060 1s/500ms/2/3 200-299,404 INFO sip:ping@proxy.example.net sip:ping@10.0.0.1:5060 never=false passive=20/2s",
		"udp:[2001:db8::1]:5062 1s/500ms/2/3 200-299,404 INFO sip:ping@proxy.example.net sip:ping@[2001:db8::1]:5062 never=false passive=20/2s",
		"sbc-c 3s/1s/2/3 200-299,404 INFO sip:ping@proxy.example.net sip:ping@10.0.0.3:5060 never=false passive=20/2s",
		"udp:10.0.0.4:5060 1s/500ms/2/3 200-299,404 INFO sip:ping@proxy.example.net sip:ping@10.0.0.4:5060 never=true passive=20/2s",
	}, "\n")
	if got := strings.Join(ps, "\n"); got != want {
		t.Errorf("health\n got %s\nwant %s", got, want)
	}
}

// A bad configuration is refused at start, naming the field and the reason.
func TestConfigErrorsNameTheField(t *testing.T) {
	secret := writeFile(t, "secret", "0123456789abcdef-from-file\n")
	empty := writeFile(t, "empty", "\n")
	cases := []struct{ yaml, want string }{
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nworkerz: 2\n", "line 3: unknown field workerz"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nworkers: two\n", `workers: want an integer, got the string "two" (line 3)`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nlisten: [127.0.0.1:5061]\n", "already defined"},
		{"listen: [127.0.0.1]\nupstreams: [127.0.0.1:5071]\n", `listen[0]: "127.0.0.1" is not an ip:port`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, 'bad host!']\n", `upstreams[1]: "bad host!": character ' ' not allowed in a host name`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, sip.example.com:0]\n", `upstreams[1]: "sip.example.com:0": port "0" is not a number in 1..65535`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: _sip._sctp.example.com}]\n", `upstreams[0].address: _sip._sctp.example.com: Viaduct forwards over udp, tcp or tls, not sctp`},
		{"listen: [127.0.0.1:5060]\nupstreams: [tls:127.0.0.1:5061]\n", `upstreams[0].transport: tls upstream 127.0.0.1:5061 needs a tls listen address`},
		{"listen: [udp:127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, transport: tcp}]\n", `upstreams[0].transport: tcp upstream 127.0.0.1:5071 needs a tcp listen address`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: \"tcp:127.0.0.1:5071\", transport: udp}]\n", `upstreams[0].address: the prefix tcp: and transport "udp" disagree`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: \"tcp:127.0.0.1:5071\", accepts_tcp: true}]\n", `upstreams[0].accepts_tcp: only for a udp upstream`},
		{"listen: [tls:127.0.0.1:5061, udp:127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n", `tls.cert_file: required by the listener tls:127.0.0.1:5061`},
		{"listen: [wss:127.0.0.1:5061, udp:127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n", `tls.cert_file: required by the listener wss:127.0.0.1:5061`},
		{"listen: [ws:127.0.0.1:8080, 127.0.0.1:5060]\nupstreams: [ws:127.0.0.1:5071]\n", `Viaduct forwards over udp, tcp or tls, not ws`},
		{"listen: [ws:127.0.0.1:8080, udp:127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nwebsocket: {origins: [example.com]}\n", `websocket.origins: entry 0 ("example.com") is not an origin`},
		{"listen: [ws:127.0.0.1:8080, udp:127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nwebsocket: {client_address: x-forwarded-for}\n", `websocket.trusted_proxies: required by client_address x-forwarded-for`},
		{"listen: [ws:127.0.0.1:8080, udp:127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nwebsocket: {client_address: x-real-ip}\n", `websocket.client_address: "x-real-ip": want socket`},
		{"listen: [ws:127.0.0.1:8080, udp:127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nwebsocket: {trusted_proxies: [10.0.0.0/99]}\n", `websocket.trusted_proxies: entry 0 ("10.0.0.0/99")`},
		{"listen: [sctp:127.0.0.1:5061]\nupstreams: [127.0.0.1:5071]\n", `listen[0]: "sctp:127.0.0.1:5061" is not an ip:port address`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\norphan_responses: keep\n", `orphan_responses: "keep" is not one of reopen, drop`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nudp_mtu: 0\n", `udp_mtu: must be -1 (never switch to TCP) or 1..65507 bytes, got 0`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nstreams: {write_queue: -1}\n", `streams.write_queue: must be positive`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: _sip._udp.example.com, weight: 2}]\n", `upstreams[0].weight: not allowed for an SRV name`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: sip.example.com, id: a}]\n", `upstreams[0].id: not allowed for the DNS name sip.example.com`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nshutdown_drain: -1s\n", `shutdown_drain: must be 0 (stop at once) to 10m0s, got -1s`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\ndns: {refresh: 1ms}\n", `dns.refresh: must be at least 100ms, got 1ms`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, 127.0.0.1:5071]\n", "upstreams[1]: duplicate of upstreams[0]"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:0]\n", `upstreams[0]: "127.0.0.1:0": port 0`},
		{"listen: [127.0.0.1:5060]\n", "upstreams: at least one upstream is required"},
		{"upstreams: [127.0.0.1:5071]\n", "listen: at least one listen address is required"},
		{"listen: [0.0.0.0:5060]\nupstreams: [127.0.0.1:5071]\n", "advertise: required when listen[0] is the unspecified address"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nadvertise: 'bad host!'\n", "advertise: \"bad host!\" is neither"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nworkers: -1\n", "workers: must be between 1 and 1024"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbatch: 1000\n", "batch: must be between 1 and 256"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\npark_after: -1ms\n", "park_after: must be 0 (park at once) to 1s, got -1ms"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\npark_after: 2s\n", "park_after: must be 0 (park at once) to 1s, got 2s"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nmax_message_size: 100\n", "max_message_size: must be between 512"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nrecv_buffer: -5\n", "recv_buffer: must be positive"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nsecret: short\n", "secret: must be at least 16 bytes"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nsecret: 0123456789abcdef\nsecret_file: " + secret + "\n", "secret_file: give either secret or secret_file"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nsecret_file: /nonexistent/secret\n", "secret_file: open /nonexistent/secret"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nprevious_secret: short\n", "previous_secret: must be at least 16 bytes"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nprevious_secret: 0123456789abcdef\nprevious_secret_file: " + secret + "\n", "previous_secret_file: give either previous_secret or previous_secret_file"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nprevious_secret_file: " + empty + "\n", "previous_secret_file: " + empty + " is empty"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nlog_level: loud\n", `log_level: "loud" is not one of`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nlog_format: xml\n", `log_format: "xml" is not one of`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n---\nworkers: 2\n", "more than one YAML document"},
		// Upstream entries in the mapping form.
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, weight: 1001}]\n", "upstreams[0].weight: must be 1..1000, got 1001"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, {address: 127.0.0.1:5072, weight: 0}]\n", "upstreams[1].weight: must be 1..1000, got 0"},
		{"listen: [127.0.0.1:5060]\nupstreams:\n  - address: 127.0.0.1:5071\n    wieght: 2\n", "line 4: unknown field wieght in an upstreams entry"},
		{"listen: [127.0.0.1:5060]\nupstreams: [{weight: 2}]\n", "upstreams[0].address: required"},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 'no/pe'}]\n", `upstreams[0].address: "no/pe": character '/' not allowed`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, weight: two}]\n", `upstreams[0].weight: want an integer, got the string "two" (line 2)`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, priority: -1}]\n", "upstreams[0].priority: must be 0..65535, got -1"},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, id: a}, {address: 127.0.0.1:5072, id: a}]\n", `upstreams[1].id: "a" is also the id of upstreams[0]`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, id: 'a b'}]\n", `upstreams[0].id: "a b": only printable characters without white space`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, {address: 127.0.0.1:5071, id: b}]\n", "upstreams[1].address: duplicate of upstreams[0]"},
		{"listen: [127.0.0.1:5060]\nupstreams: [[127.0.0.1:5071]]\n", `line 2: an upstreams entry is "[transport:]ip:port" or a mapping with address, id, weight, priority, transport, accepts_tcp, tls_server_name`},
		// balance
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {mode: random}\n", `balance.mode: "random": want hash or round-robin`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {mod: hash}\n", "line 3: unknown field mod"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {keys: {REGISTER: to-uri}}\n", `balance.keys["REGISTER"]: "to-uri": want call-id, to-aor, from-uri, ruri-user, ruri-aor or header:NAME`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {keys: {register: to-aor}}\n", `balance.keys["register"]: method names are case-sensitive: write "REGISTER"`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {keys: {CANCEL: call-id}}\n", `balance.keys["CANCEL"]: not configurable`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {keys: {MESSAGE: \"header:X Tenant\"}}\n", `balance.keys["MESSAGE"]: "header:X Tenant": header name "X Tenant" is not a SIP token`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {keys: {\"IN VITE\": call-id}}\n", `balance.keys["IN VITE"]: method "IN VITE" is not a SIP token`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {keys: {\"*\": call-id, default: to-aor}}\n", `balance.keys["default"]: "default" and "*" are the same key`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbalance: {mode: round-robin, keys: {REGISTER: to-aor}}\n", "balance.keys: round-robin hashes no key"},
		// health, upstream_health, admin
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {intervall: 1s}\n", "line 3: unknown field intervall"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {interval: 1ms}\n", "health.interval: must be between 10ms and 24h0m0s, got 1ms"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {interval: 1s, timeout: 2s}\n", "health.timeout: 2s exceeds the interval 1s"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {accept: [\"1xx\"]}\n", "health.accept: "},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {all_down: drop}\n", `health.all_down: "drop": want forward`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {enabled: false, never_probe: false}\n", "health.never_probe: false contradicts enabled: false"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nhealth: {enabled: 0}\n", "health.enabled: want true or false, got 0 (line 3)"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nupstream_health: {\"127.0.0.1:9999\": {interval: 1s}}\n", `upstream_health["127.0.0.1:9999"]: not the id or address of an upstream (ids: udp:127.0.0.1:5071)`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nupstream_health: {\"udp:127.0.0.1:5071\": {failures: 200}}\n", `upstream_health["udp:127.0.0.1:5071"].failures: must be between 1 and 100, got 200`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, id: a}]\nhealth: {interval: 1s}\nupstream_health: {a: {timeout: 3s}}\n", `upstream_health["a"].timeout: 3s exceeds the interval 1s`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, id: a}]\nupstream_health: {a: {}, \"127.0.0.1:5071\": {}}\n", `upstream_health["a"]: names the same upstream as upstream_health["127.0.0.1:5071"]`},
		{"listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, id: \"127.0.0.1:5072\"}, 127.0.0.1:5072]\nupstream_health: {\"127.0.0.1:5072\": {}}\n", `upstream_health["127.0.0.1:5072"]: ambiguous`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nadmin: {listen: example.com:9090}\n", `admin.listen: "example.com:9090": the host must be an IP address or localhost`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nadmin: {listen: 192.0.2.1:9090}\n", `admin.listen: 192.0.2.1:9090 is not a loopback address: set a bearer token`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nadmin: {port: 9090}\n", "line 3: unknown field port"},
	}
	for _, c := range cases {
		path := writeFile(t, "v.yaml", c.yaml)
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"--config", path, "--check"}, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), c.want) || !strings.Contains(stderr.String(), "config "+path+": ") {
			t.Errorf("config %q: exit %d, stderr %q; want 2 and %q", c.yaml, code, stderr.String(), c.want)
		}
	}
	// The same check applies to flags.
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--listen", "127.0.0.1:5060", "--upstream", "no/pe", "--check"}, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `upstreams[0]: "no/pe": character '/' not allowed`) {
		t.Errorf("bad --upstream: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "stray"}, &stderr); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--secret-file", secret, "--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "--check"}, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "secret=configured previous_secret=false") {
		t.Errorf("secret file: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--secret-file", secret, "--previous-secret-file", secret, "--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "--check"}, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "secret=configured previous_secret=true") {
		t.Errorf("previous secret file: exit %d, %q", code, stderr.String())
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	path := writeFile(t, "v.yaml", "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, 127.0.0.1:5072]\nworkers: 3\nrecord_route: true\n")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--config", path, "--upstream", "127.0.0.1:6001,127.0.0.1:6002", "--upstream", "127.0.0.1:6003", "--workers", "1", "--path", "--check"}, &stderr)
	out := stderr.String()
	if code != 0 || !strings.Contains(out, "workers=1 ") || !strings.Contains(out, "upstreams=[127.0.0.1:6001 127.0.0.1:6002 127.0.0.1:6003]") ||
		!strings.Contains(out, "record_route=true") || !strings.Contains(out, "path=true") || !strings.Contains(out, "listen=[udp:127.0.0.1:5060 tcp:127.0.0.1:5060]") {
		t.Errorf("exit %d: %s", code, out)
	}
}

// park_after defaults to defaultParkAfter; the file and the flag set it, 0
// included (the file's 0 is not taken for "unset").
func TestParkAfterSetting(t *testing.T) {
	base := "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n"
	for _, c := range []struct {
		yaml  string
		flags []string
		want  string
	}{
		{base, nil, "park_after=5ms "},
		{base + "park_after: 0s\n", nil, "park_after=0s "},
		{base + "park_after: 20ms\n", nil, "park_after=20ms "},
		{base + "park_after: 20ms\n", []string{"--park-after", "0"}, "park_after=0s "},
		{base, []string{"--park-after", "1ms"}, "park_after=1ms "},
	} {
		if code, out := checkRun(t, c.yaml, c.flags...); code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("%q %v: exit %d, want %q in: %s", c.yaml, c.flags, code, c.want, out)
		}
	}
}

// checkRun runs viaduct --check on a file holding yaml, with extra flags,
// and returns the exit status and what it printed.
func checkRun(t *testing.T, yaml string, flags ...string) (int, string) {
	t.Helper()
	var stderr syncBuffer
	args := append([]string{"--config", writeFile(t, "v.yaml", yaml), "--check"}, flags...)
	code := run(context.Background(), args, &stderr)
	return code, stderr.String()
}

// freePort returns a loopback port that was free a moment ago on UDP and
// TCP (a plain listen address binds both).
func freePort(t *testing.T) netip.AddrPort { return testenv.FreePort(t) }

// syncBuffer collects a log written from other goroutines.
type syncBuffer = testenv.SyncBuffer

// options sends an OPTIONS keepalive to addr and returns the status line of
// the reply (or "" after 2 s).
func options(t *testing.T, addr netip.AddrPort) string {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKka\r\nFrom: <sip:t@localhost>;tag=1\r\nTo: <sip:%s>\r\nCall-ID: ka@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		addr, c.LocalAddr(), addr)
	buf := make([]byte, 4096)
	for try := 0; try < 40; try++ { // the engine may still be starting
		c.Write([]byte(req))
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return strings.SplitN(string(buf[:n]), "\r\n", 2)[0]
		}
		time.Sleep(50 * time.Millisecond) // a refused send returns at once
	}
	return ""
}

func TestRunServesAndStopsOnCancel(t *testing.T) {
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--listen", addr.String(), "--upstream", "127.0.0.1:9", "--workers", "2", "--log-format", "json", "--admin-listen", "off"}, &stderr)
	}()
	if got := options(t, addr); got != "SIP/2.0 200 OK" {
		cancel()
		t.Fatalf("keepalive answer %q; log:\n%s", got, stderr.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	log := stderr.String()
	if !strings.Contains(log, `"msg":"stopped"`) || !strings.Contains(log, `"local_200":1`) {
		t.Errorf("log:\n%s", log)
	}
}

// TestHealthConfig: which upstreams are probed, with what, under which IDs.
// The checker's targets are the pool's targets by ID, so the admin API
// (which addresses the checker) and the balancer name the same upstreams.
func TestHealthConfig(t *testing.T) {
	const ups = "upstreams: [127.0.0.1:5071, {address: 127.0.0.1:5072, id: sbc-b}, \"[::1]:5073\"]\n"
	cases := []struct {
		name, yaml string
		want       []string // per target: "ID probe-summary"
	}{
		{"no health section probes every upstream with the defaults", "", []string{
			"udp:127.0.0.1:5071 OPTIONS 5s/2s/3/2 sip:127.0.0.1:5071 bound=17s",
			"sbc-b OPTIONS 5s/2s/3/2 sip:127.0.0.1:5072 bound=17s",
			"udp:[::1]:5073 OPTIONS 5s/2s/3/2 sip:[::1]:5073 bound=17s"}},
		{"health: {enabled: false}: nothing probed", "health: {enabled: false}\n", []string{
			"udp:127.0.0.1:5071 never", "sbc-b never", "udp:[::1]:5073 never"}},
		{"health: {} probes every upstream with the defaults", "health: {}\n", []string{
			"udp:127.0.0.1:5071 OPTIONS 5s/2s/3/2 sip:127.0.0.1:5071 bound=17s",
			"sbc-b OPTIONS 5s/2s/3/2 sip:127.0.0.1:5072 bound=17s",
			"udp:[::1]:5073 OPTIONS 5s/2s/3/2 sip:[::1]:5073 bound=17s"}},
		{"overrides by id and by address", "health: {interval: 1s, timeout: 200ms}\nupstream_health:\n  sbc-b: {failures: 5}\n  \"[::1]:5073\": {never_probe: true}\n", []string{
			"udp:127.0.0.1:5071 OPTIONS 1s/200ms/3/2 sip:127.0.0.1:5071 bound=3.2s",
			"sbc-b OPTIONS 1s/200ms/5/2 sip:127.0.0.1:5072 bound=5.2s",
			"udp:[::1]:5073 never"}},
		{"one upstream probed with health checks off", "health: {enabled: false}\nupstream_health:\n  udp:127.0.0.1:5071: {never_probe: false, interval: 2s}\n", []string{
			"udp:127.0.0.1:5071 OPTIONS 2s/2s/3/2 sip:127.0.0.1:5071 bound=8s", "sbc-b never", "udp:[::1]:5073 never"}},
	}
	for _, c := range cases {
		fc, err := readConfigFile(writeFile(t, "v.yaml", "listen: [127.0.0.1:5060]\n"+ups+c.yaml))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		cfg, err := fc.toEngineConfig()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		eng, err := fastpath.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		chk, err := newChecker(&fc, eng, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for i, st := range chk.Status() {
			p := st.Probe
			line := st.ID + " never"
			if !p.NeverProbe {
				line = fmt.Sprintf("%s %s %v/%v/%d/%d %s bound=%v", st.ID, p.Method, p.Interval, p.Timeout, p.Failures, p.Successes, p.RequestURI, p.DetectionBound())
			}
			got = append(got, line)
			if pt := eng.Pool().Table().Target(i); pt.ID != st.ID || pt.Addr != st.Addr {
				t.Errorf("%s: checker target %d is %s %s, pool target %s %s", c.name, i, st.ID, st.Addr, pt.ID, pt.Addr)
			}
		}
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n got %s\nwant %s", c.name, strings.Join(got, "\n     "), strings.Join(c.want, "\n     "))
		}
	}
}

func TestBalanceAndAdminFlags(t *testing.T) {
	path := writeFile(t, "v.yaml", "listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, weight: 3, id: a}, 127.0.0.1:5072]\n"+
		"balance: {keys: {MESSAGE: from-uri}}\nadmin: {listen: 127.0.0.1:9090}\n")
	var stderr bytes.Buffer
	// The file alone.
	if code := run(context.Background(), []string{"--config", path, "--check"}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{
		"upstreams=[127.0.0.1:5071 127.0.0.1:5072] balance=hash keys=*=call-id,MESSAGE=from-uri,REGISTER=to-aor ",
		" all_down=forward ",
		"admin=127.0.0.1:9090\n",
		"upstream id=a address=127.0.0.1:5071 weight=3 priority=0 probe=OPTIONS every 5s timeout 2s failures 3 successes 2 accept 200-407,409-479,481-502,504-699 detection_bound 17s\n",
		"upstream id=udp:127.0.0.1:5072 address=127.0.0.1:5072 weight=1 priority=0 probe=OPTIONS every 5s ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--check output lacks %q:\n%s", want, out)
		}
	}
	// --health=false turns health checks off, over the file too.
	for _, args := range [][]string{
		{"--config", path, "--health=false", "--check"},
		{"--config", writeFile(t, "on.yaml", "listen: [127.0.0.1:5060]\nupstreams: [{address: 127.0.0.1:5071, weight: 3, id: a}, 127.0.0.1:5072]\nhealth: {enabled: true, all_down: reject}\n"), "--health=false", "--check"},
	} {
		stderr.Reset()
		if code := run(context.Background(), args, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		for _, want := range []string{
			"upstream id=a address=127.0.0.1:5071 weight=3 priority=0 probe=never\n",
			"upstream id=udp:127.0.0.1:5072 address=127.0.0.1:5072 weight=1 priority=0 probe=never\n",
		} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("%v: --check output lacks %q:\n%s", args, want, stderr.String())
			}
		}
	}
	if !strings.Contains(stderr.String(), " all_down=reject ") {
		t.Errorf("health.all_down: reject not shown:\n%s", stderr.String())
	}
	// --key replaces the file's keys, --admin-listen its admin address.
	stderr.Reset()
	code := run(context.Background(), []string{"--config", path, "--key", "REGISTER=call-id", "--key", "*=header:X-Tenant", "--admin-listen", "127.0.0.1:9091", "--check"}, &stderr)
	if out := stderr.String(); code != 0 || !strings.Contains(out, "keys=*=header:X-Tenant,REGISTER=call-id ") || !strings.Contains(out, "admin=127.0.0.1:9091\n") {
		t.Errorf("exit %d: %s", code, out)
	}
	// --balance round-robin with the file's keys is refused; without keys
	// it is accepted.
	stderr.Reset()
	if code := run(context.Background(), []string{"--config", path, "--balance", "round-robin", "--check"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "balance.keys: round-robin hashes no key") {
		t.Errorf("round-robin with keys: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "--balance", "rr", "--check"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "balance=round-robin keys=- ") {
		t.Errorf("round-robin: exit %d: %s", code, stderr.String())
	}
	for _, c := range []struct{ args, want string }{
		{"--key REGISTER", `balance.keys["REGISTER"]: "": want call-id`},
		{"--key invite=call-id", `balance.keys["invite"]: method names are case-sensitive`},
		{"--balance fastest", `balance.mode: "fastest": want hash or round-robin`},
		{"--admin-listen :9090", `admin.listen: :9090 is not a loopback address`},
		{"--admin-listen 9090", `admin.listen: "9090" is not host:port`},
	} {
		stderr.Reset()
		args := append([]string{"--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "--check"}, strings.Fields(c.args)...)
		if code := run(context.Background(), args, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: exit %d: %s", c.args, code, stderr.String())
		}
	}
}

// freeTCPPort returns a loopback TCP address that was free a moment ago.
func freeTCPPort(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// The admin API addresses the pool's targets by the same IDs: draining one
// through it keeps new calls away from it, enabling it brings them back.
func TestAdminAPIDrain(t *testing.T) {
	a, b := newSIPUpstream(t), newSIPUpstream(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	path := writeFile(t, "v.yaml", fmt.Sprintf("listen: [\"%s\"]\nworkers: 1\nupstreams: [{address: \"%s\", id: sbc-a}, \"%s\"]\nadmin: {listen: \"%s\", token: tok}\n",
		proxy, a.addr, b.addr, adm))
	p := startInProcess(t, procHooks{}, adm.String(), "--config", path)
	base := "http://" + adm.String() + "/api/v1/upstreams"
	call := func(method, url string) (int, string) {
		req, _ := http.NewRequest(method, url, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	var list admin.UpstreamList
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code, body := call("GET", base)
		if code == 200 {
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin API: %d %s\n%s", code, body, p.stderr.String())
		}
	}
	idB := balancer.DefaultID("udp", b.addr)
	if len(list.Upstreams) != 2 || list.Upstreams[0].ID != "sbc-a" || list.Upstreams[0].Address != a.addr.String() || list.Upstreams[1].ID != idB {
		t.Fatalf("upstreams %+v, want sbc-a and %s", list.Upstreams, idB)
	}
	// The token is required.
	if resp, err := http.Get(base); err != nil || resp.StatusCode != 401 {
		t.Errorf("GET without token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	adminState := func(action string) string {
		code, body := call("POST", base+"/sbc-a/"+action)
		var u admin.Upstream
		if code != 200 || json.Unmarshal([]byte(body), &u) != nil {
			t.Fatalf("%s: %d %s", action, code, body)
		}
		return u.Admin
	}
	if got := adminState("drain"); got != "draining" {
		t.Fatalf("after drain: admin state %q", got)
	}
	c := newSIPClient(t, proxy)
	for i := 0; i < 40; i++ {
		c.send(t, "INVITE", fmt.Sprintf("drained-%d@client", i), "sip:bob@example.com", "sip:bob@example.com")
	}
	c.waitOK(t, 40, 5*time.Second)
	if a.received("INVITE") != 0 || b.received("INVITE") != 40 {
		t.Errorf("40 calls while sbc-a drains: %d on sbc-a, %d on the other", a.received("INVITE"), b.received("INVITE"))
	}
	if got := adminState("enable"); got != "enabled" {
		t.Fatalf("after enable: admin state %q", got)
	}
	for i := 0; i < 40; i++ {
		c.send(t, "INVITE", fmt.Sprintf("enabled-%d@client", i), "sip:bob@example.com", "sip:bob@example.com")
	}
	c.waitOK(t, 80, 5*time.Second)
	if a.received("INVITE") < 5 {
		t.Errorf("after enabling sbc-a it got %d of 40 calls", a.received("INVITE"))
	}
	if code, _ := call("POST", base+"/udp:127.0.0.1:1/drain"); code != 404 {
		t.Errorf("unknown id: %d, want 404", code)
	}
	if log := p.stderr.String(); !strings.Contains(log, "admin API listening") {
		t.Errorf("log:\n%s", log)
	}
}
