//go:build unix

// Package webrtc is the end-to-end test of SIP over WebSocket (RFC 7118)
// with a real browser: Debian's Chromium, headless, runs JsSIP on a page
// the test serves (testdata/index.html and app.js), driven by puppeteer-core
// (testdata/driver.js). Two user agents on the page, alice and bob,
// REGISTER over WSS through the proxy under test to a Kamailio registrar
// behind it; the test sends bob a MESSAGE from behind the proxy; alice
// sends bob a MESSAGE and calls him (fake microphone), bob answers, alice
// hangs up; both unregister. Everything bob receives comes from behind
// the proxy, back over bob's WebSocket. setup.sh installs what it needs.
//
// Environment: CHROMIUM, the browser (default /usr/bin/chromium);
// VIADUCT_BIN, a viaduct binary to use instead of building ./cmd/viaduct;
// WEBRTC_E2E_DUMP=1, the page's console, every WebSocket frame and the
// servers' logs printed even when a test passes (always when it fails).
package webrtc

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// domain is the SIP domain of alice, bob and carol (the test). No one
// resolves it: the proxy sends everything from the browser to its
// upstream, the registrar looks users up by name alone.
const domain = "webrtc.test"

// browserLimit bounds the driver (Chromium's start, the whole scenario,
// its stop); the page's own steps have shorter limits (app.js).
const browserLimit = 30 * time.Second

// TestBrowserJsSIPThroughViaduct is the proof: the browser's
// WebSocket ends at Viaduct's wss: listener, Viaduct adds Path and
// Record-Route and relays over UDP to Kamailio (the registrar of
// internal/testenv), which sends bob's requests back through Viaduct by
// the Path it stored.
func TestBrowserJsSIPThroughViaduct(t *testing.T) {
	b := requireBrowser(t)
	reg := testenv.StartKamailioRegistrar(t)
	dir := t.TempDir()
	page := servePage(t, b)
	cert, key := writeCert(t, dir)
	wss, vlog := startViaduct(t, dir, reg.Addr, cert, key, page.URL)
	h := &harness{t: t, logs: map[string]func() string{"viaduct": vlog, "kamailio registrar": reg.Log}}
	h.run(b, page.URL, "wss://"+wss.String(), reg.Addr)
	// The registrar saw bob's MESSAGEs, INVITE and BYE: they went behind
	// Viaduct, and came back to bob by the Path it stored (nothing else
	// leads to a ".invalid" Contact).
	kl := reg.Log()
	for _, want := range []string{"registrar: registered sip:alice@" + domain, "registrar: registered sip:bob@" + domain,
		"registrar: request MESSAGE bob", "registrar: request INVITE bob", "registrar: request BYE bob"} {
		if !strings.Contains(kl, want) {
			t.Errorf("Kamailio registrar's log lacks %q", want)
		}
	}
}

// browser is what the test needs of the machine: Chromium, node, and
// e2e/webrtc with its npm packages and JsSIP's bundle (setup.sh).
type browser struct {
	chromium, node, dir string
}

// requireBrowser finds Chromium, node and the npm packages. Without them
// the test is skipped on a developer's machine, and fails when CI=true,
// where .ci/run calls setup.sh (the rule of testenv.Sipp).
func requireBrowser(t *testing.T) browser {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	b := browser{chromium: os.Getenv("CHROMIUM"), dir: dir}
	if b.chromium == "" {
		b.chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(b.chromium); err != nil {
		skipOrFail(t, "chromium not installed (%v): run e2e/webrtc/setup.sh", err)
	}
	if b.node, err = exec.LookPath("node"); err != nil {
		skipOrFail(t, "node not installed: %v", err)
	}
	for _, f := range []string{"node_modules/puppeteer-core/package.json", "node_modules/.bundle/jssip.min.js"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			skipOrFail(t, "%s missing: run e2e/webrtc/setup.sh", f)
		}
	}
	return b
}

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required when CI=true: "+format, args...)
	}
	t.Skipf(format, args...)
}

// servePage serves the scenario page and JsSIP's bundle on 127.0.0.1 (the
// page's origin, which the WebSocket servers must accept).
func servePage(t *testing.T, b browser) *httptest.Server {
	mux := http.NewServeMux()
	files := map[string]string{
		"GET /{$}":          "testdata/index.html",
		"GET /app.js":       "testdata/app.js",
		"GET /jssip.min.js": "node_modules/.bundle/jssip.min.js",
	}
	for pattern, file := range files {
		path := filepath.Join(b.dir, file)
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	}
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// buildViaduct builds ./cmd/viaduct into dir, or returns $VIADUCT_BIN, a
// binary built beforehand, when set.
func buildViaduct(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("VIADUCT_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(dir, "viaduct")
	build := exec.Command("go", "build", "-o", bin, "./cmd/viaduct")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/viaduct: %v\n%s", err, out)
	}
	return bin
}

// viaductStarted is Viaduct's log line that names the listeners it bound
// (port 0: the kernel picks free ports; a port picked beforehand could be
// taken in between as another connection's local port).
var viaductStarted = regexp.MustCompile(`msg="fastpath started" listen="\[[^\]]*\bwss:(127\.0\.0\.1:\d+)`)

// startViaduct builds cmd/viaduct and runs it with a wss: listener and a
// udp: one (its socket towards the UDP upstream) in front of upstream,
// adding Path and Record-Route, the certificate and key given, the page's
// origin allowed. It returns the wss: listener's address, once it takes
// TCP connections, and a reader of Viaduct's log. If Viaduct exits first
// (a binary without WebSocket refuses "wss:"), the test fails with its
// output.
func startViaduct(t *testing.T, dir string, upstream netip.AddrPort, cert, key, origin string) (netip.AddrPort, func() string) {
	t.Helper()
	bin := buildViaduct(t, dir)
	cfg := filepath.Join(dir, "viaduct.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "websocket:\n  origins: [%q]\n", origin), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--listen", "wss:127.0.0.1:0", "--listen", "udp:127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
		"--upstream", upstream.String(), "--path", "--record-route", "--admin-listen", "off", "--log-level", "debug", "--config", cfg}
	logPath := filepath.Join(dir, "viaduct.log")
	cmd := exec.Command(bin, args...)
	testenv.StartLogged(t, cmd, logPath)
	p := watch(t, cmd, false)
	readLog := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	var wss netip.AddrPort
	testenv.WaitFor(t, "viaduct's wss: listener in its log", 10*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("viaduct %s exited before its wss: listener took connections (%v): this test needs the "+
				"WebSocket listener (--listen wss:IP:PORT, websocket.origins in the configuration).\nIts output:\n%s",
				strings.Join(args, " "), p.err, readLog())
		default:
		}
		m := viaductStarted.FindStringSubmatch(readLog())
		if m != nil {
			wss = netip.MustParseAddrPort(m[1])
		}
		return m != nil
	})
	waitListening(t, int(wss.Port()), p, func(err error) { t.Fatalf("viaduct exited (%v):\n%s", err, readLog()) })
	return wss, readLog
}

// harness runs the page against one WebSocket server and checks every
// step; on failure it prints the page's console, the SIP it sent and
// received, and logs.
type harness struct {
	t    *testing.T
	logs map[string]func() string
}

// run opens the page on wsURL, sends bob a MESSAGE from carol to registrar
// (UDP, behind the WebSocket server) once alice and bob are registered,
// and checks the scenario's steps and that MESSAGE's 200.
func (h *harness) run(b browser, pageURL, wsURL string, registrar netip.AddrPort) {
	t := h.t
	token := fmt.Sprintf("%x", time.Now().UnixNano())
	carolBody := "hello bob from behind the proxy " + token
	q := url.Values{"ws": {wsURL}, "domain": {domain}, "token": {token}}
	sent := make(chan error, 1)
	asked := false
	begin := time.Now()
	tr := runDriver(t, b, pageURL+"/?"+q.Encode(), func(s step) {
		if s.Step == "registered" && !asked {
			asked = true
			go func() { sent <- sendMessage(registrar, "carol", "bob", carolBody) }()
		}
	})
	t.Cleanup(func() { // WEBRTC_E2E_DUMP=1: also when it passes
		if t.Failed() || os.Getenv("WEBRTC_E2E_DUMP") == "1" {
			h.dump(tr)
		}
	})
	if !asked {
		t.Errorf("the MESSAGE from carol was never sent (no 'registered' step)")
	} else if err := <-sent; err != nil { // sendMessage's wait is bounded
		t.Errorf("MESSAGE from carol to bob through %v: %v", registrar, err)
	}
	checkSteps(t, tr, token, carolBody)
	t.Logf("scenario over %s done in %v (browser start included)", wsURL, time.Since(begin).Round(time.Millisecond))
}

// dump logs what a failing test's reader needs.
func (h *harness) dump(tr *transcript) {
	t := h.t
	t.Logf("driver: %v\ndriver stderr:\n%s", tr.err, tr.stderr)
	t.Logf("page console:\n%s", strings.Join(tr.console, "\n"))
	t.Logf("WebSocket frames (%d):\n%s", len(tr.frames), strings.Join(tr.frames, "\n"))
	for name, log := range h.logs {
		t.Logf("%s log:\n%s", name, tail(log(), 40000))
	}
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// sendMessage sends a MESSAGE from user from to user to over UDP to addr
// and waits up to 10 seconds for its final response, which must be 2xx.
func sendMessage(addr netip.AddrPort, from, to, body string) error {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	defer c.Close()
	id := fmt.Sprintf("%x", time.Now().UnixNano())
	var m bytes.Buffer
	fmt.Fprintf(&m, "MESSAGE sip:%s@%s SIP/2.0\r\n", to, domain)
	fmt.Fprintf(&m, "Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK%s\r\n", c.LocalAddr(), id)
	fmt.Fprintf(&m, "Max-Forwards: 70\r\nFrom: <sip:%s@%s>;tag=%s\r\nTo: <sip:%s@%s>\r\n", from, domain, id, to, domain)
	fmt.Fprintf(&m, "Call-ID: %s@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n", id)
	fmt.Fprintf(&m, "Content-Length: %d\r\n\r\n%s", len(body), body)
	if _, err := c.Write(m.Bytes()); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("no final response: %w", err)
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		var code int
		if _, err := fmt.Sscanf(line, "SIP/2.0 %d", &code); err != nil || code < 200 {
			continue
		}
		if code >= 300 {
			return fmt.Errorf("answered %q", line)
		}
		return nil
	}
}

// checkSteps checks the page's steps: each present, in order, with what
// it carried.
func checkSteps(t *testing.T, tr *transcript, token, carolBody string) {
	t.Helper()
	if tr.result == nil {
		t.Fatalf("no result from the page (driver: %v)", tr.err)
	}
	if tr.result.Failed != "" {
		t.Errorf("the page failed: %s", tr.result.Failed)
	}
	order := []string{"start", "registered", "message-from-test", "message-sent", "message-received",
		"call-confirmed", "call-answered", "call-ended", "unregistered", "done"}
	got := map[string]step{}
	var names []string
	for _, s := range tr.result.Events {
		got[s.Step] = s
		names = append(names, s.Step)
	}
	if strings.Join(names, " ") != strings.Join(order, " ") {
		t.Errorf("page steps %q, want %q", names, order)
	}
	// What each step carried (a missing step is reported above).
	checks := []struct {
		step string
		ok   func(s step) bool
		what string
	}{
		{"message-from-test", func(s step) bool { return s.From == "carol" && s.Body == carolBody },
			"bob receives carol's MESSAGE from behind the proxy, body intact"},
		{"message-sent", func(s step) bool { return s.Status == 200 }, "alice's MESSAGE answered 200 by bob's browser"},
		{"message-received", func(s step) bool { return s.From == "alice" && s.Body == "hello bob "+token },
			"bob receives alice's MESSAGE, body intact"},
		{"call-confirmed", func(s step) bool { return s.AnswerType == "answer" && s.AnswerHasAudio },
			"alice's browser accepts bob's answer SDP, with audio"},
		{"call-answered", func(s step) bool { return s.From == "alice" }, "bob answers alice's call and gets the ACK"},
		{"call-ended", func(s step) bool { return s.Caller == "local Terminated" && s.Callee == "remote Terminated" },
			"alice hangs up, bob's browser gets the BYE"},
	}
	for _, c := range checks {
		if s, ok := got[c.step]; ok && !c.ok(s) {
			t.Errorf("not so: %s (step %+v)", c.what, s)
		}
	}
}
