package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
upstreams:
  - 10.0.0.1:5060
  - "[2001:db8::1]:5062"
record_route: true
max_message_size: 8192
secret: 0123456789abcdef0123
log_format: json
log_level: debug
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
	got := fmt.Sprintf("%v %s %d %d %d %d %v %v %d %s", cfg.Listen, cfg.Advertise, cfg.Workers, cfg.RecvBuffer, cfg.SendBuffer,
		cfg.Batch, cfg.Upstreams, cfg.RecordRoute, cfg.MaxMessageSize, cfg.Secret)
	want := "[127.0.0.1:5060 [::1]:5060] sip.example.com:5080 3 1048576 2097152 16 [10.0.0.1:5060 [2001:db8::1]:5062] true 8192 0123456789abcdef0123"
	if got != want {
		t.Errorf("config\n got %s\nwant %s", got, want)
	}
	if fc.LogFormat != "json" || fc.LogLevel != "debug" {
		t.Errorf("log settings %q %q", fc.LogFormat, fc.LogLevel)
	}
}

// A bad configuration is refused at start, naming the field and the reason.
func TestConfigErrorsNameTheField(t *testing.T) {
	secret := writeFile(t, "secret", "0123456789abcdef-from-file\n")
	cases := []struct{ yaml, want string }{
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nworkerz: 2\n", "line 3: unknown field workerz"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nworkers: two\n", "line 3: cannot unmarshal"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nlisten: [127.0.0.1:5061]\n", "already defined"},
		{"listen: [127.0.0.1]\nupstreams: [127.0.0.1:5071]\n", `listen[0]: "127.0.0.1" is not an ip:port`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, sip.example.com:5060]\n", `upstreams[1]: "sip.example.com:5060" is not an ip:port`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, 127.0.0.1:5071]\n", "upstreams[1]: duplicate of upstreams[0]"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:0]\n", "upstreams[0]: not a valid ip:port with a non-zero port"},
		{"listen: [127.0.0.1:5060]\n", "upstreams: at least one upstream is required"},
		{"upstreams: [127.0.0.1:5071]\n", "listen: at least one listen address is required"},
		{"listen: [0.0.0.0:5060]\nupstreams: [127.0.0.1:5071]\n", "advertise: required when listen[0] is the unspecified address"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nadvertise: 'bad host!'\n", "advertise: \"bad host!\" is neither"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nworkers: -1\n", "workers: must be between 1 and 1024"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nbatch: 1000\n", "batch: must be between 1 and 256"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nmax_message_size: 100\n", "max_message_size: must be between 512"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nrecv_buffer: -5\n", "recv_buffer: must be positive"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nsecret: short\n", "secret: must be at least 16 bytes"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nsecret: 0123456789abcdef\nsecret_file: " + secret + "\n", "secret_file: give either secret or secret_file"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nsecret_file: /nonexistent/secret\n", "secret_file: open /nonexistent/secret"},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nlog_level: loud\n", `log_level: "loud" is not one of`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nlog_format: xml\n", `log_format: "xml" is not one of`},
		{"listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n---\nworkers: 2\n", "more than one YAML document"},
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
	if code := run(context.Background(), []string{"--listen", "127.0.0.1:5060", "--upstream", "nope", "--check"}, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), `upstreams[0]: "nope" is not an ip:port`) {
		t.Errorf("bad --upstream: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "stray"}, &stderr); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"--secret-file", secret, "--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "--check"}, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "secret=configured") {
		t.Errorf("secret file: exit %d, %q", code, stderr.String())
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	path := writeFile(t, "v.yaml", "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071, 127.0.0.1:5072]\nworkers: 3\nrecord_route: true\n")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--config", path, "--upstream", "127.0.0.1:6001,127.0.0.1:6002", "--upstream", "127.0.0.1:6003", "--workers", "1", "--check"}, &stderr)
	out := stderr.String()
	if code != 0 || !strings.Contains(out, "workers=1 ") || !strings.Contains(out, "upstreams=[127.0.0.1:6001 127.0.0.1:6002 127.0.0.1:6003]") ||
		!strings.Contains(out, "record_route=true") || !strings.Contains(out, "listen=[127.0.0.1:5060]") {
		t.Errorf("exit %d: %s", code, out)
	}
}

// freePort returns a loopback UDP port that was free a moment ago.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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
		done <- run(ctx, []string{"--listen", addr.String(), "--upstream", "127.0.0.1:9", "--workers", "2", "--log-format", "json"}, &stderr)
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
