package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/version"
)

// runUntilStarted runs viaduct with args in the background until the test
// ends, and waits until it logged its start (or exited). It returns the
// log and a function that stops it and returns its exit status.
func runUntilStarted(t *testing.T, args ...string) (*syncBuffer, func() int) {
	t.Helper()
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &log) }()
	stop := func() int {
		cancel()
		select {
		case code := <-done:
			done <- code
			return code
		case <-time.After(10 * time.Second):
			t.Fatalf("run did not return after cancel:\n%s", log.String())
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), "fastpath started"); time.Sleep(10 * time.Millisecond) {
		select {
		case code := <-done:
			done <- code
			return &log, stop
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not started after 10 s:\n%s", log.String())
		}
	}
	return &log, stop
}

// A second Viaduct on an address another one serves refuses to start,
// naming the address and reuse_port; with reuse_port on both, both run.
func TestSecondInstanceOnListenAddress(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		addr := freePort(t).String()
		args := []string{"--listen", addr, "--upstream", "127.0.0.1:9", "--workers", "2", "--admin-listen", "off"}
		if reuse {
			args = append(args, "--reuse-port")
		}
		_, stopFirst := runUntilStarted(t, args...)
		log, stopSecond := runUntilStarted(t, args...)
		code := stopSecond()
		switch {
		case !reuse && (code != 1 || !strings.Contains(log.String(), addr+": address already in use") || !strings.Contains(log.String(), "reuse_port: true (--reuse-port)")):
			t.Errorf("second instance without reuse_port: exit %d, want 1 naming %s and reuse_port:\n%s", code, addr, log.String())
		case reuse && (code != 0 || !strings.Contains(log.String(), "fastpath started")):
			t.Errorf("second instance with reuse_port: exit %d, want a start and 0:\n%s", code, log.String())
		}
		if code := stopFirst(); code != 0 {
			t.Errorf("first instance (reuse_port %v): exit %d", reuse, code)
		}
	}
	if code, out := checkRun(t, "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\nreuse_port: true\n"); code != 0 || !strings.Contains(out, " reuse_port=true ") {
		t.Errorf("--check with reuse_port: exit %d:\n%s", code, out)
	}
}

// A value of the wrong type is reported by its YAML path, with its line,
// as every other configuration error; a 0 written for a key whose 0 means
// "the default" is refused with the range.
func TestConfigTypeErrorsNameThePath(t *testing.T) {
	const base = "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n"
	for _, c := range []struct{ yaml, want string }{
		{base + "health: {interval: 5}\n", "health.interval: want a duration such as 5s, 250ms or 1m30s, got 5 (line 3)"},
		{base + "health:\n  interval: 1s\n  timeout: 2\n", "health.timeout: want a duration such as 5s, 250ms or 1m30s, got 2 (line 5)"},
		{"listen: 127.0.0.1:5060\nupstreams: [127.0.0.1:5071]\n", `listen: must be a list, got the string "127.0.0.1:5060": write listen: ["127.0.0.1:5060"] (line 1)`},
		{"listen: [127.0.0.1:5060]\nupstreams: 127.0.0.1:5071\n", `upstreams: must be a list, got the string "127.0.0.1:5071": write upstreams: ["127.0.0.1:5071"] (line 2)`},
		{"listen: [127.0.0.1:5060, [127.0.0.1:5061]]\nupstreams: [127.0.0.1:5071]\n", "listen[1]: want a string, got a list (line 1)"},
		{base + "workers: 1.5\n", "workers: want an integer, got 1.5 (line 3)"},
		{base + "workers: two\nbatch: {}\n", `workers: want an integer, got the string "two" (line 3); batch: want an integer, got a mapping (line 4)`},
		{base + "record_route: maybe\n", `record_route: want true or false, got the string "maybe" (line 3)`},
		{base + "park_after: 5\n", "park_after: want a duration such as 5s, 250ms or 1m30s, got 5 (line 3)"},
		{base + "health: {accept: 2xx}\n", `health.accept: must be a list, got the string "2xx": write accept: ["2xx"] (line 3)`},
		{base + "health: {passive_503: 3}\n", "health.passive_503: must be a mapping (key: value, ...), got 3 (line 3)"},
		{base + "health: {passive_503: {count: 20, window: 1}}\n", "health.passive_503.window: want a duration"},
		{base + "upstream_health: {udp:127.0.0.1:5071: {interval: 5}}\n", `upstream_health["udp:127.0.0.1:5071"].interval: want a duration`},
		{base + "balance: {keys: [call-id]}\n", "balance.keys: must be a mapping (key: value, ...), got a list (line 3)"},
		{base + "dns: {refresh: 30}\n", "dns.refresh: want a duration"},
		{base + "admin: {listen: [127.0.0.1:9090]}\n", "admin.listen: want a string, got a list (line 3)"},
		{base + "admin: off\n", "admin: line 3: admin is a mapping with listen, token, token_file"},
		{"- 127.0.0.1:5060\n", "the document: must be a mapping (key: value, ...), got a list (line 1)"},
		// 0 where 0 only means "not set".
		{base + "workers: 0\n", "workers: must be between 1 and 1024, got 0; leave workers out for the default, GOMAXPROCS"},
		{base + "batch: 0\n", "batch: must be between 1 and 256, got 0; leave batch out for the default, 32"},
		{base + "recv_buffer: 0\n", "recv_buffer: must be positive, got 0; leave recv_buffer out for the default, 4194304"},
		{base + "send_buffer: 0\n", "send_buffer: must be positive, got 0"},
		{base + "max_message_size: 0\n", "max_message_size: must be between 512 and 64483 bytes, got 0"},
		{base + "dns: {refresh: 0s}\n", "dns.refresh: must be at least 100ms, got 0s; leave dns.refresh out for the default, 30s"},
		{base + "dns: {timeout: 0s}\n", "dns.timeout: must be positive, got 0s"},
	} {
		code, out := checkRun(t, c.yaml)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%q: exit %d, want 2 and %q in:\n%s", c.yaml, code, c.want, out)
		}
	}
	// The flags too: --workers 0 is not "the default".
	for _, flags := range [][]string{{"--workers", "0"}, {"--batch", "0"}, {"--dns-refresh", "0s"}} {
		if code, out := checkRun(t, base, flags...); code != 2 || !strings.Contains(out, "got 0") {
			t.Errorf("%v: exit %d:\n%s", flags, code, out)
		}
	}
	// A reload names the first field in its answer.
	fc, err := parseConfig("v.yaml", []byte(base+"health: {interval: 5}\nworkers: x\n"))
	var fe *fastpath.FieldError
	if err == nil || !errors.As(err, &fe) || fe.Field != "health.interval" {
		t.Errorf("parseConfig: %+v, %v; want a FieldError for health.interval", fc, err)
	}
}

// --check, --version and --help print on standard output (viaduct --check
// | less), errors go to standard error with a non-zero exit status; the
// start is logged with the version.
func TestOutputStreams(t *testing.T) {
	for _, c := range []struct {
		args           []string
		code           int
		stdout, stderr string // substrings; "" means that stream must be empty
	}{
		{[]string{"--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071", "--check"}, 0, "viaduct: configuration OK: listen=[udp:127.0.0.1:5060 tcp:127.0.0.1:5060]", ""},
		{[]string{"--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:0", "--check"}, 2, "", `upstreams[0]: "127.0.0.1:0": port 0`},
		{[]string{"--version"}, 0, "viaduct " + version.Get().String() + "\n", ""},
		{[]string{"--help"}, 0, "  -reuse-port\n", ""},
		{[]string{"--no-such-flag"}, 2, "", "flag provided but not defined: -no-such-flag"},
	} {
		var stdout, stderr syncBuffer
		code := runWith(context.Background(), c.args, &stderr, procHooks{stdout: &stdout})
		ok := code == c.code && strings.Contains(stdout.String(), c.stdout) && strings.Contains(stderr.String(), c.stderr) &&
			(c.stdout != "" || stdout.String() == "") && (c.stderr != "" || stderr.String() == "")
		if !ok {
			t.Errorf("%v: exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", c.args, code, c.code, stdout.String(), c.stdout, stderr.String(), c.stderr)
		}
	}
	log, stop := runUntilStarted(t, "--listen", freePort(t).String(), "--upstream", "127.0.0.1:9", "--workers", "1", "--admin-listen", "off")
	if code := stop(); code != 0 || !strings.Contains(log.String(), `msg="viaduct starting" version=`+version.Get().Version+" ") {
		t.Errorf("exit %d; start not logged with the version:\n%s", code, log.String())
	}
}

// A release build sets the version at link time; --version prints it on
// standard output, and --check of the built binary prints there too.
func TestBinaryVersionAndCheck(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "viaduct")
	build := exec.Command("go", "build", "-ldflags", "-X github.com/viaduct-sip/viaduct/internal/version.version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--version"}, "viaduct v9.8.7-test (revision "},
		{[]string{"--check", "--listen", "127.0.0.1:5060", "--upstream", "127.0.0.1:5071"}, "viaduct: configuration OK: "},
	} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, c.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || !strings.HasPrefix(stdout.String(), c.want) || stderr.Len() != 0 {
			t.Errorf("viaduct %v: %v\nstdout %q (want %q...)\nstderr %q", c.args, err, stdout.String(), c.want, stderr.String())
		}
	}
}
