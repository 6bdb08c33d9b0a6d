package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// The tests in this file run the real viaduct binary, built once.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func viaductBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "viaduct-e2e-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "viaduct")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a started process with its combined output.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func start(t *testing.T, dir string, name string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	p := &proc{cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t, syscall.SIGKILL, time.Second) })
	return p
}

// exited reports whether the process has ended, and its Wait error.
func (p *proc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err // keep it for later calls
		return true, err
	default:
		return false, nil
	}
}

// stop signals the process (by its PID) and waits up to d for it to exit,
// then kills it.
func (p *proc) stop(t *testing.T, sig syscall.Signal, d time.Duration) (exited bool, err error) {
	if ok, err := p.exited(); ok {
		return true, err
	}
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	case <-time.After(d):
		p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		return false, nil
	}
}

// waitBound waits until something holds the UDP port (a plain bind fails).
func waitBound(t *testing.T, addr netip.AddrPort, p *proc) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return
		}
		c.Close()
		if ok, _ := p.exited(); ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not bind %v:\n%s", p.cmd.Path, addr, p.out.String())
}

func TestBinaryServesAndStopsOnSIGTERM(t *testing.T) {
	bin := viaductBinary(t)
	addr := freePort(t)
	p := start(t, t.TempDir(), bin, "--listen", addr.String(), "--upstream", "127.0.0.1:9", "--log-level", "debug", "--admin-listen", "off", "--shutdown-drain", "0")
	if got := options(t, addr); got != "SIP/2.0 200 OK" {
		t.Fatalf("keepalive answer %q; log:\n%s", got, p.out.String())
	}
	exited, err := p.stop(t, syscall.SIGTERM, 5*time.Second)
	if !exited || err != nil {
		t.Fatalf("after SIGTERM: exited=%v err=%v\n%s", exited, err, p.out.String())
	}
	if log := p.out.String(); !strings.Contains(log, "msg=stopped") || !strings.Contains(log, "local_200=1") {
		t.Errorf("log:\n%s", log)
	}
	// A bad configuration is refused at start with exit status 2.
	cmd := exec.Command(bin, "--listen", addr.String(), "--upstream", "127.0.0.1:9", "--workers", "-3")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "workers: must be between 1 and 1024, got -3") {
		t.Errorf("bad config: %v\n%s", err, out)
	}
}

// lastRow returns the named columns of the last row of a SIPp -trace_stat
// CSV file (';' separated).
func lastRow(t *testing.T, path string, cols ...string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	head, err := r.Read()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var last []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		last = rec
	}
	var out []int
	for _, c := range cols {
		v := -1
		for i, h := range head {
			if h == c && i < len(last) {
				v, _ = strconv.Atoi(strings.TrimSpace(last[i]))
			}
		}
		if v < 0 {
			t.Fatalf("%s: no column %s in the last row", path, c)
		}
		out = append(out, v)
	}
	return out
}

// End to end with SIPp as an independent peer: sipp -sn uac -> viaduct ->
// two sipp -sn uas. 300 calls at 100 calls/s must all succeed, and both
// upstreams must receive calls.
func TestSIPpThroughViaduct(t *testing.T) {
	sipp := testenv.Sipp(t)
	if testing.Short() {
		t.Skip("-short")
	}
	bin := viaductBinary(t)
	dir := t.TempDir()
	proxy, uac, uas1, uas2 := freePort(t), freePort(t), freePort(t), freePort(t)
	for proxy == uac || uac == uas1 || uas1 == uas2 || proxy == uas1 || proxy == uas2 || uac == uas2 {
		uac, uas1, uas2 = freePort(t), freePort(t), freePort(t)
	}
	const calls, rate = 300, 100
	var uas []*proc
	for i, a := range []netip.AddrPort{uas1, uas2} {
		p := start(t, dir, sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", fmt.Sprint(a.Port()), "-nostdin", "-bind_local",
			"-timeout", "60s", "-trace_stat", "-fd", "1", "-stf", fmt.Sprintf("uas%d.csv", i+1))
		waitBound(t, a, p)
		uas = append(uas, p)
	}
	// --health=false: SIPp's uas counts a probe as an incoming call, and
	// the sum of those is checked below.
	v := start(t, dir, bin, "--listen", proxy.String(), "--upstream", uas1.String(), "--upstream", uas2.String(), "--workers", "2", "--admin-listen", "off", "--shutdown-drain", "0", "--health=false")
	waitBound(t, proxy, v)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uac", proxy.String(), "-i", "127.0.0.1", "-p", fmt.Sprint(uac.Port()), "-nostdin",
		"-r", fmt.Sprint(rate), "-m", fmt.Sprint(calls), "-timeout", "40s", "-recv_timeout", "4000",
		"-trace_stat", "-fd", "1", "-stf", "uac.csv")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("sipp uac: %v\n%s\nviaduct log:\n%s", err, lastLines(string(out), 30), v.out.String())
	}
	got := lastRow(t, filepath.Join(dir, "uac.csv"), "SuccessfulCall(C)", "FailedCall(C)")
	if got[0] != calls || got[1] != 0 {
		t.Errorf("uac: %d successful, %d failed calls; want %d and 0", got[0], got[1], calls)
	}
	var per []int
	sum := 0
	for i, p := range uas {
		if exited, _ := p.stop(t, syscall.SIGTERM, 5*time.Second); !exited {
			t.Errorf("uas %d did not stop on SIGTERM", i+1)
		}
		n := lastRow(t, filepath.Join(dir, fmt.Sprintf("uas%d.csv", i+1)), "IncomingCall(C)")[0]
		per = append(per, n)
		sum += n
	}
	t.Logf("calls per upstream: %v", per)
	if per[0] == 0 || per[1] == 0 || sum != calls {
		t.Errorf("calls per upstream %v, want both > 0 and %d in all", per, calls)
	}
	if exited, err := v.stop(t, syscall.SIGTERM, 5*time.Second); !exited || err != nil {
		t.Errorf("viaduct after SIGTERM: exited=%v err=%v", exited, err)
	}
	log := v.out.String()
	if !strings.Contains(log, fmt.Sprintf("rx_INVITE=%d", calls)) || strings.Contains(log, "drop_") {
		t.Errorf("viaduct log:\n%s", log)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// startViaduct writes cfg (a YAML file whose first line, the listen key, is
// added here) and runs the binary with it until the test ends; it returns
// the listen address and the process.
func startViaduct(t *testing.T, cfg string) (netip.AddrPort, *proc) {
	t.Helper()
	bin := viaductBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "viaduct.yaml")
	if err := os.WriteFile(path, []byte("listen: [\"127.0.0.1:0\"]\n"+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, dir, bin, "--config", path, "--shutdown-drain", "0")
	return listeningOn(t, p), p
}

// startedLine is the engine's start line, with the address it listens on.
var startedLine = regexp.MustCompile(`msg="fastpath started" listen="?\[udp:(127\.0\.0\.1:\d+)[ \]]`)

// listeningOn waits (10 s at most) for p's start line and returns the
// address it reports. Tests start the binary on port 0 and read the port the
// kernel chose: a port picked free beforehand can be taken by another
// process before the binary binds it, and Viaduct refuses an address in use.
func listeningOn(t *testing.T, p *proc) netip.AddrPort {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := startedLine.FindStringSubmatch(p.out.String()); m != nil {
			return netip.MustParseAddrPort(m[1])
		}
		if ok, _ := p.exited(); ok {
			break
		}
	}
	t.Fatalf("%s did not start listening:\n%s", p.cmd.Path, p.out.String())
	return netip.AddrPort{}
}

// Issue #4 through the real binary: REGISTERs for one AOR with different
// Call-IDs all reach one upstream (the default key for REGISTER is the To
// AOR), while REGISTERs for many AORs reach both.
func TestBinaryRegisterAffinity(t *testing.T) {
	a, b := newSIPUpstream(t), newSIPUpstream(t)
	proxy, v := startViaduct(t, fmt.Sprintf("workers: 2\nupstreams:\n  - {address: \"%s\", id: reg-a}\n  - {address: \"%s\", id: reg-b}\n", a.addr, b.addr))
	c := newSIPClient(t, proxy)
	const aor = "sip:alice@example.com"
	for i := 0; i < 20; i++ {
		c.send(t, "REGISTER", fmt.Sprintf("reg-%d-%d@client", i, time.Now().UnixNano()), aor, "sip:example.com")
	}
	c.waitOK(t, 20, 5*time.Second)
	if na, nb := a.registers(aor), b.registers(aor); !(na == 20 && nb == 0 || na == 0 && nb == 20) {
		t.Errorf("20 REGISTERs of %s with fresh Call-IDs: %d on reg-a, %d on reg-b; want all on one", aor, na, nb)
	}
	before := [2]int{a.received("REGISTER"), b.received("REGISTER")}
	for i := 0; i < 100; i++ {
		// One Call-ID for all: only the AOR differs.
		c.send(t, "REGISTER", "same-call-id@client", fmt.Sprintf("sip:user%d@example.com", i), "sip:example.com")
	}
	c.waitOK(t, 120, 5*time.Second)
	na, nb := a.received("REGISTER")-before[0], b.received("REGISTER")-before[1]
	t.Logf("100 AORs: %d on reg-a, %d on reg-b", na, nb)
	if na < 25 || nb < 25 || na+nb != 100 {
		t.Errorf("100 AORs: %d on reg-a, %d on reg-b; want both >= 25", na, nb)
	}
	if exited, err := v.stop(t, syscall.SIGTERM, 5*time.Second); !exited || err != nil {
		t.Fatalf("viaduct after SIGTERM: exited=%v err=%v", exited, err)
	}
	if log := v.out.String(); !strings.Contains(log, "rx_REGISTER=120") || strings.Contains(log, "key_fallbacks") {
		t.Errorf("viaduct log:\n%s", log)
	}
}

// Weights through the real binary: with weights 3:1, 2000 INVITEs with
// random Call-IDs split within 5 points of 75/25.
func TestBinaryWeights(t *testing.T) {
	a, b := newSIPUpstream(t), newSIPUpstream(t)
	proxy, _ := startViaduct(t, fmt.Sprintf("workers: 2\nupstreams:\n  - {address: \"%s\", weight: 3}\n  - {address: \"%s\", weight: 1}\n", a.addr, b.addr))
	c := newSIPClient(t, proxy)
	rng := rand.New(rand.NewPCG(4, 1))
	const n, burst = 2000, 100
	for sent := 0; sent < n; sent += burst {
		for i := 0; i < burst; i++ {
			c.send(t, "INVITE", fmt.Sprintf("%016x@client", rng.Uint64()), "sip:bob@example.com", "sip:bob@example.com")
		}
		c.waitOK(t, sent+burst, 5*time.Second)
	}
	na, nb := a.received("INVITE"), b.received("INVITE")
	share := float64(na) / n
	t.Logf("weights 3:1, %d INVITEs: %d and %d (%.1f%% / %.1f%%)", n, na, nb, 100*share, 100*(1-share))
	if na+nb != n || share < 0.70 || share > 0.80 {
		t.Errorf("weights 3:1: %d and %d of %d, want 75%%±5%% on the first", na, nb, n)
	}
}
