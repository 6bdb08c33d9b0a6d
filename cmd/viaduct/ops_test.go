package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/metrics"
)

// The admin API is on 127.0.0.1:9090 unless the file or the flag says
// otherwise; "" and off disable it.
func TestAdminListenDefault(t *testing.T) {
	base := "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n"
	for _, c := range []struct {
		file  string
		flags []string
		want  string
	}{
		{base, nil, "admin=127.0.0.1:9090\n"},
		{base + "admin: {token: t}\n", nil, "admin=127.0.0.1:9090\n"},
		{base + "admin: {listen: off}\n", nil, "admin=off\n"},
		{base + "admin: {listen: \"\"}\n", nil, "admin=off\n"},
		{base + "admin: {listen: 127.0.0.1:9191}\n", nil, "admin=127.0.0.1:9191\n"},
		{base, []string{"--admin-listen", ""}, "admin=off\n"},
		{base, []string{"--admin-listen", "off"}, "admin=off\n"},
		{base + "admin: {listen: off}\n", []string{"--admin-listen", "[::1]:9192"}, "admin=[::1]:9192\n"},
	} {
		if code, out := checkRun(t, c.file, c.flags...); code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("%q %v: exit %d, want %q in:\n%s", c.file, c.flags, code, strings.TrimSpace(c.want), out)
		}
	}
	var stderr syncBuffer
	path := writeFile(t, "v.yaml", base+"admin: {listen: 127.0.0.1:9090, tokn: x}\n")
	if code := run(context.Background(), []string{"--config", path, "--check"}, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "line 3: unknown field tokn in admin") {
		t.Errorf("misspelled admin key: exit %d\n%s", code, stderr.String())
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A running viaduct serves /healthz, /readyz, /metrics (with the config
// hash of its file and the per-upstream counters) and the status page.
func TestRunServesMetricsAndProbes(t *testing.T) {
	up := newSIPUpstream(t)
	proxy, adm := freePort(t), freeTCPPort(t)
	file := "listen: [\"" + proxy.String() + "\"]\nworkers: 1\nupstreams: [{address: \"" + up.addr.String() + "\", id: sbc-a}]\n" +
		"admin: {listen: \"" + adm.String() + "\"}\n"
	path := writeFile(t, "v.yaml", file)
	base := startInProcess(t, procHooks{}, adm.String(), "--config", path).base
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("readyz: %d %q", code, body)
	}
	c := newSIPClient(t, proxy)
	c.send(t, "OPTIONS", "m1@test", "sip:x@example.com", "sip:x@example.com")
	c.waitOK(t, 1, 3*time.Second)
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`viaduct_config_info{hash="` + metrics.ConfigHash([]byte(file)) + `"} 1`,
		`viaduct_requests_received_total{method="OPTIONS"} 1`,
		`viaduct_upstream_requests_forwarded_total{upstream="sbc-a"} 1`,
		`viaduct_upstream_up{upstream="sbc-a"} 1`,
		`viaduct_config_reloads_total{result="success"} 0`,
		"process_start_time_seconds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := get(t, base+"/"); code != 200 || !strings.Contains(body, "<td>sbc-a</td>") {
		t.Errorf("status page: %d\n%s", code, body)
	}
}

// When the default admin address is taken, Viaduct runs without the admin
// API and says so; an explicit address that is taken is an error.
func TestAdminDefaultAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:9090")
	if err != nil && !errors.Is(err, syscall.EADDRINUSE) {
		t.Skipf("cannot occupy 127.0.0.1:9090: %v", err)
	}
	if l != nil {
		defer l.Close()
	}
	proxy := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--listen", proxy.String(), "--upstream", "127.0.0.1:9", "--workers", "1"}, &stderr)
	}()
	if got := options(t, proxy); got != "SIP/2.0 200 OK" {
		t.Errorf("keepalive answer %q", got)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(stderr.String(), "admin API off: its default address is in use") {
		t.Errorf("exit %d:\n%s", code, stderr.String())
	}

	taken := freeTCPPort(t)
	busy, err := net.Listen("tcp", taken.String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stderr = syncBuffer{}
	code := run(context.Background(), []string{"--listen", freePort(t).String(), "--upstream", "127.0.0.1:9", "--workers", "1", "--admin-listen", taken.String()}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "cannot start the admin API") {
		t.Errorf("explicit busy address: exit %d\n%s", code, stderr.String())
	}
}

// The token can come from a file (a systemd credential): it then satisfies
// the rule that a non-loopback admin address needs a token.
func TestAdminTokenFile(t *testing.T) {
	base := "listen: [127.0.0.1:5060]\nupstreams: [127.0.0.1:5071]\n"
	tok := writeFile(t, "token", "s3cret\n")
	empty := writeFile(t, "empty", "\n")
	for _, c := range []struct {
		file  string
		flags []string
		code  int
		want  string
	}{
		{base + "admin: {listen: \"0.0.0.0:9190\", token_file: " + tok + "}\n", nil, 0, "admin=0.0.0.0:9190\n"},
		{base + "admin: {listen: \"0.0.0.0:9190\"}\n", []string{"--admin-token-file", tok}, 0, "admin=0.0.0.0:9190\n"},
		{base + "admin: {listen: \"0.0.0.0:9190\", token: x}\n", []string{"--admin-token-file", tok}, 0, "admin=0.0.0.0:9190\n"},
		{base + "admin: {listen: \"0.0.0.0:9190\"}\n", nil, 2, "admin.listen: 0.0.0.0:9190 is not a loopback address: set a bearer token"},
		{base + "admin: {token: x, token_file: " + tok + "}\n", nil, 2, "admin.token_file: give either token or token_file, not both"},
		{base + "admin: {token_file: " + empty + "}\n", nil, 2, "admin.token_file: " + empty + " is empty"},
		{base + "admin: {token_file: /nonexistent/token}\n", nil, 2, "admin.token_file: open /nonexistent/token"},
	} {
		var stderr syncBuffer
		args := append([]string{"--config", writeFile(t, "v.yaml", c.file), "--check"}, c.flags...)
		if code := run(context.Background(), args, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q %v: exit %d, want %d and %q in:\n%s", c.file, c.flags, code, c.code, c.want, stderr.String())
		}
		if strings.Contains(stderr.String(), "s3cret") {
			t.Errorf("the token is printed:\n%s", stderr.String())
		}
	}
}
