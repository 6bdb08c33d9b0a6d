// Package e2e holds end-to-end tests that run the real viaduct binary
// between SIPp instances on loopback.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// buildViaduct builds ./cmd/viaduct into dir.
func buildViaduct(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "viaduct")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/viaduct")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/viaduct: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a port that was free on 127.0.0.1 a moment ago (sipp and
// viaduct need explicit ports here).
func freePort(t *testing.T, network string) int {
	t.Helper()
	switch network {
	case "udp": // free on TCP too: a plain listen address binds both
		return int(testenv.FreePort(t).Port())
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// uasScenario is SIPp's built-in uas scenario (sipp -sd uas) with one
// addition: an OPTIONS arriving as the first message of a "call" is
// answered 200. The built-in scenario aborts such a call without answering,
// so `sipp -sn uas` can never pass a health probe and would (rightly) be
// marked down.
const uasScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uas answering OPTIONS">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" optional="true" rtd="true" crlf="true"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <nop next="end"/>
  <label id="options"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpOpt[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
  <timewait milliseconds="4000"/>
</scenario>
`

// proc is a started process, killed at the end of the test with the
// processes it forked (kamailio's workers, say): it leads its own process
// group.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan error
}

// start runs bin in dir with its output in dir/name.out.
func start(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	out, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan error, 1)}
	go func() {
		p.done <- cmd.Wait()
		out.Close()
	}()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

// stop sends sig to the process's group and waits (up to 5s) for the
// process to end.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		p.done <- nil
		return
	default:
	}
	// The leader is not reaped yet: the group ID is still ours.
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
	}
}

// adminClient bounds each admin API request, so that a poll cannot
// outlast its deadline.
var adminClient = &http.Client{Timeout: 2 * time.Second}

// upstreams reads the admin API.
func upstreams(t *testing.T, adminURL string) map[string]admin.Upstream {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/api/v1/upstreams")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var l admin.UpstreamList
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&l) != nil {
		return nil
	}
	m := map[string]admin.Upstream{}
	for _, u := range l.Upstreams {
		m[u.ID] = u
	}
	return m
}

// waitHealth polls the admin API until upstream id has health h and
// returns how long it took; it fails the test after limit.
func waitHealth(t *testing.T, adminURL, id, h string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if u, ok := upstreams(t, adminURL)[id]; ok && u.Health == h {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not %s within %v: %+v", id, h, limit, upstreams(t, adminURL)[id])
	return 0
}

// uacResult is the outcome of one sipp uac run.
type uacResult struct {
	exit       int
	successful int
	failed     int
}

// runUAC drives calls calls at rate calls/s through viaduct with
// `sipp -sn uac` and returns its exit code and call counts.
func runUAC(t *testing.T, dir, sipp string, proxyPort, calls, rate int, name string, during func()) uacResult {
	t.Helper()
	return runSippUAC(t, dir, sipp, proxyPort, calls, rate, name, during, "-sn", "uac")
}

// runSippUAC runs sipp as a UAC through viaduct: calls calls at rate
// calls/s of the scenario that scenario names (-sn NAME or -sf FILE,
// followed by any further options), and returns its exit code and call
// counts. during, if not nil, runs while the calls do.
func runSippUAC(t *testing.T, dir, sipp string, proxyPort, calls, rate int, name string, during func(), scenario ...string) uacResult {
	t.Helper()
	stat := filepath.Join(dir, name+"_stat.csv")
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(calls/rate+15)*time.Second)
	defer cancel()
	args := append(append([]string(nil), scenario...), fmt.Sprintf("127.0.0.1:%d", proxyPort),
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t, "udp")), "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate),
		"-nostdin", "-recv_timeout", "4000", "-trace_stat", "-stf", stat, "-fd", "1")
	cmd := exec.CommandContext(ctx, sipp, args...)
	cmd.Dir = dir
	testenv.StartLogged(t, cmd, filepath.Join(dir, name+".out"))
	if during != nil {
		during()
	}
	err := cmd.Wait()
	res := uacResult{}
	if ee, ok := err.(*exec.ExitError); ok {
		res.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sipp uac %s: %v", name, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("sipp uac %s did not finish in time", name)
	}
	res.successful = lastCSV(t, stat, "SuccessfulCall(C)")
	res.failed = lastCSV(t, stat, "FailedCall(C)")
	return res
}

// lastCSV returns column col of the last line of a SIPp statistics or
// counts file (';' separated, header first).
func lastCSV(t *testing.T, path, col string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("sipp statistics: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var header, last []string
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ";")
		if header == nil {
			header = fields
			continue
		}
		last = fields
	}
	for i, h := range header {
		if h == col && i < len(last) {
			n, err := strconv.Atoi(strings.TrimSpace(last[i]))
			if err != nil {
				t.Fatalf("%s: column %s = %q", path, col, last[i])
			}
			return n
		}
	}
	t.Fatalf("%s: no column %s in %d-line file", path, col, len(last))
	return 0
}

// invitesReceived returns the INVITE count in a uas's counts file.
func invitesReceived(t *testing.T, dir string, pid int) int {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("*_%d_counts.csv", pid)))
	if len(matches) != 1 {
		t.Fatalf("counts file of sipp %d: %v", pid, matches)
	}
	return lastCSV(t, matches[0], "1_INVITE_Recv")
}

// TestHealthFailoverSipp runs viaduct in front of two SIPp UAS, drives
// calls with SIPp's built-in uac, kills one UAS mid-run and restarts it:
// after the detection bound no new call fails and the surviving UAS carries
// them all; the restarted UAS is marked up within the recovery bound and
// gets its share of calls back.
func TestHealthFailoverSipp(t *testing.T) {
	sipp := testenv.Sipp(t)
	begin := time.Now()
	dir := t.TempDir()
	bin := buildViaduct(t, dir)
	scen := filepath.Join(dir, "uas.xml")
	if err := os.WriteFile(scen, []byte(uasScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	pv, pa := freePort(t, "udp"), freePort(t, "tcp")
	pu := []int{freePort(t, "udp"), freePort(t, "udp")}
	// Detection bound 400ms x 2 + 200ms = 1s; recovery bound the same.
	const (
		interval  = 400 * time.Millisecond
		timeout   = 200 * time.Millisecond
		failures  = 2
		successes = 2
		detection = interval*failures + timeout
		recovery  = interval*successes + timeout
		slack     = 2 * time.Second
	)
	cfgPath := filepath.Join(dir, "viaduct.yaml")
	cfg := fmt.Sprintf(`listen: ["127.0.0.1:%d"]
upstreams: ["127.0.0.1:%d", "127.0.0.1:%d"]
workers: 2
health:
  interval: %v
  timeout: %v
  failures: %d
  successes: %d
admin:
  listen: 127.0.0.1:%d
`, pv, pu[0], pu[1], interval, timeout, failures, successes, pa)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "--check", "--config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("viaduct --check: %v\n%s", err, out)
	}
	id := func(i int) string { return fmt.Sprintf("udp:127.0.0.1:%d", pu[i]) }
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", pa)
	uasArgs := func(i int) []string {
		return []string{"-sf", scen, "-i", "127.0.0.1", "-p", strconv.Itoa(pu[i]), "-nostdin", "-trace_counts", "-fd", "1"}
	}

	uas := []*proc{start(t, dir, "uas0", sipp, uasArgs(0)...), start(t, dir, "uas1", sipp, uasArgs(1)...)}
	start(t, dir, "viaduct", bin, "--config", cfgPath)
	waitFor(t, "both upstreams probed up", 5*time.Second, func() bool {
		m := upstreams(t, adminURL)
		return m[id(0)].ProbesOK >= 1 && m[id(1)].ProbesOK >= 1 && m[id(0)].Health == "up" && m[id(1)].Health == "up"
	})

	// 1. Both up: every call succeeds and both UAS take calls.
	if r := runUAC(t, dir, sipp, pv, 40, 20, "uac1", nil); r.exit != 0 || r.failed != 0 || r.successful != 40 {
		t.Fatalf("phase 1 (both up): %+v", r)
	}
	waitFor(t, "counts of both UAS", 3*time.Second, func() bool {
		return invitesReceived(t, dir, uas[0].cmd.Process.Pid) > 0 && invitesReceived(t, dir, uas[1].cmd.Process.Pid) > 0
	})

	// 2. uas1 is killed mid-run.
	var detected time.Duration
	r2 := runUAC(t, dir, sipp, pv, 120, 20, "uac2", func() {
		time.Sleep(2 * time.Second)
		uas[1].stop(syscall.SIGKILL)
		detected = waitHealth(t, adminURL, id(1), "down", detection+slack)
	})
	t.Logf("uas1 killed: marked down after %v (bound %v); calls during the run: %+v", detected, detection, r2)
	// Only calls caught in the detection window may fail (most survive: the
	// INVITE retransmission after the detection goes to the live UAS).
	if maxFailed := int((detection + slack).Seconds() * 20); r2.failed > maxFailed || r2.successful+r2.failed != 120 {
		t.Errorf("phase 2: %d calls failed, at most %d may (the calls started within the detection bound)", r2.failed, maxFailed)
	}

	// 3. After the detection bound no new call fails: uas0 carries them all.
	before := invitesReceived(t, dir, uas[0].cmd.Process.Pid)
	if r := runUAC(t, dir, sipp, pv, 40, 20, "uac3", nil); r.exit != 0 || r.failed != 0 || r.successful != 40 {
		t.Fatalf("phase 3 (uas1 dead): %+v", r)
	}
	waitFor(t, "uas0 counted 40 more INVITEs", 3*time.Second, func() bool {
		return invitesReceived(t, dir, uas[0].cmd.Process.Pid) >= before+40
	})

	// 4. uas1 restarts: up within the recovery bound, and its share returns.
	uas[1] = start(t, dir, "uas1b", sipp, uasArgs(1)...)
	up := waitHealth(t, adminURL, id(1), "up", recovery+slack)
	t.Logf("uas1 restarted: marked up after %v (bound %v)", up, recovery)
	if r := runUAC(t, dir, sipp, pv, 60, 20, "uac4", nil); r.exit != 0 || r.failed != 0 || r.successful != 60 {
		t.Fatalf("phase 4 (uas1 back): %+v", r)
	}
	uas[1].stop(syscall.SIGTERM) // final counts dump
	if got := invitesReceived(t, dir, uas[1].cmd.Process.Pid); got < 60/4 {
		t.Errorf("restarted uas1 got %d of 60 calls, want its share back (>= 15)", got)
	}
	t.Logf("total %v", time.Since(begin))
	log, _ := os.ReadFile(filepath.Join(dir, "viaduct.out"))
	for _, want := range []string{
		`msg="upstream health changed" target=` + id(1) + ` addr=127.0.0.1:` + strconv.Itoa(pu[1]) + ` health=down previous=up reason="probe timeout`,
		`msg="upstream health changed" target=` + id(1) + ` addr=127.0.0.1:` + strconv.Itoa(pu[1]) + ` health=up previous=down reason="probe reply 200 OK`,
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("viaduct log lacks %q:\n%s", want, log)
		}
	}
}
