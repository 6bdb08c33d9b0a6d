package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// Issue #13, "failover out of the box": the binary started with nothing but
// --listen and two --upstream flags, so with the default health checks
// (OPTIONS every 5s, timeout 2s, 3 failures to go down, 2 successes to come
// back). The binary has no flags for those settings; these tests use the
// defaults, and run in parallel with each other to keep the wall time near
// that of the longer one (about 40 s).
const (
	defInterval  = 5 * time.Second
	defTimeout   = 2 * time.Second
	defDetection = defInterval*3 + defTimeout // interval x failures + timeout
	defRecovery  = defInterval*2 + defTimeout // interval x successes + timeout
	// e2eSlack covers a loaded machine: a table rebuild, a late timer.
	e2eSlack = 2 * time.Second
)

// mutableUAS is an upstream on loopback that answers like a UAS (200 to
// every request but ACK, with a To tag and a Contact naming itself, so that
// SIPp's uac completes its calls through it), answers OPTIONS too, and can
// be muted: it then reads everything and answers nothing, as a server that
// hangs or a host that drops off the network. It records when each call's
// first INVITE arrived.
type mutableUAS struct {
	conn  *net.UDPConn
	addr  netip.AddrPort
	muted atomic.Bool

	mu      sync.Mutex
	invites map[string]time.Time // Call-ID -> arrival of its first INVITE
}

func newMutableUAS(t *testing.T) *mutableUAS {
	t.Helper()
	c, addr := testenv.ListenUDP(t)
	u := &mutableUAS{conn: c, addr: addr, invites: map[string]time.Time{}}
	testenv.ServeSIP(t, c, u.handle)
	return u
}

// handle records the arrival of a call's first INVITE and, unless muted,
// answers request m (but an ACK) statelessly with 200 OK.
func (u *mutableUAS) handle(m *parser.Message, from netip.AddrPort) {
	if !m.IsRequest() {
		return
	}
	if m.MethodID() == parser.MethodINVITE {
		u.mu.Lock()
		if _, ok := u.invites[string(m.CallID())]; !ok {
			u.invites[string(m.CallID())] = time.Now()
		}
		u.mu.Unlock()
	}
	if u.muted.Load() || m.MethodID() == parser.MethodACK {
		return
	}
	contact := "Contact: <sip:" + u.addr.String() + ">"
	u.conn.WriteToUDPAddrPort(testenv.AppendResponse(nil, m, "200 OK", "mute", contact), from)
}

// newCalls returns how many calls' first INVITE arrived after since, and
// the first and last of those arrivals.
func (u *mutableUAS) newCalls(since time.Time) (n int, first, last time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, at := range u.invites {
		if !at.After(since) {
			continue
		}
		n++
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return n, first, last
}

// viaductLog reads the binary's output (start writes it to dir/name.out).
func viaductLog(t *testing.T, dir string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "viaduct.out"))
	return string(b)
}

// waitLog polls the binary's log until re matches a line, and returns the
// time= of that line; it fails the test after limit.
func waitLog(t *testing.T, dir string, re *regexp.Regexp, limit time.Duration) time.Time {
	t.Helper()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(viaductLog(t, dir)); m != nil {
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				t.Fatalf("log time %q: %v", m[1], err)
			}
			return at
		}
		if time.Since(start) > limit {
			t.Fatalf("after %v the viaduct log has no line matching %s:\n%s", limit, re, viaductLog(t, dir))
		}
	}
}

// healthLine matches the log line of upstream id's health becoming h, and
// captures its time.
func healthLine(id, h string) *regexp.Regexp {
	return regexp.MustCompile(`time=(\S+) level=\w+ msg="upstream health changed" target=` + regexp.QuoteMeta(id) + ` \S+ health=` + h + ` `)
}

// startDefaultViaduct starts the binary with nothing but --listen and one
// --upstream per upstream, waits until its sockets are open and returns the
// port it listens on. It listens on port 0 and reads the port the kernel
// chose from the start line: a port picked free beforehand could be taken
// by another process (a SIPp's media socket, say) before Viaduct binds it,
// and Viaduct refuses an address that is in use.
func startDefaultViaduct(t *testing.T, dir string, upstreams ...netip.AddrPort) int {
	t.Helper()
	args := []string{"--listen", "127.0.0.1:0"}
	for _, u := range upstreams {
		args = append(args, "--upstream", u.String())
	}
	start(t, dir, "viaduct", buildViaduct(t, dir), args...)
	started := regexp.MustCompile(`time=(\S+) level=INFO msg="fastpath started" listen="?\[udp:127\.0\.0\.1:(\d+)[ \]]`)
	waitLog(t, dir, started, 10*time.Second)
	port, err := strconv.Atoi(started.FindStringSubmatch(viaductLog(t, dir))[2])
	if err != nil || port == 0 {
		t.Fatalf("no listen port in the start line (%v):\n%s", err, viaductLog(t, dir))
	}
	return port
}

// startUAC starts SIPp's built-in uac against viaduct at rate calls/s, for
// calls calls, each held hold (its statistics in dir/name_stat.csv).
func startUAC(t *testing.T, dir, sipp string, proxyPort, calls, rate int, hold time.Duration, name string) *proc {
	t.Helper()
	return start(t, dir, name, sipp, "-sn", "uac", fmt.Sprintf("127.0.0.1:%d", proxyPort),
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t, "udp")), "-m", strconv.Itoa(calls), "-r", strconv.Itoa(rate),
		"-d", strconv.Itoa(int(hold/time.Millisecond)), "-nostdin", "-recv_timeout", "4000",
		"-trace_stat", "-stf", filepath.Join(dir, name+"_stat.csv"), "-fd", "1")
}

// waitExit waits up to limit for p to end on its own.
func waitExit(t *testing.T, p *proc, limit time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(limit):
		t.Fatalf("%s still running after %v", p.name, limit)
	}
}

// One upstream goes silent under load: new calls stop reaching it within
// interval x failures + timeout, and come back once it answers again. The
// other upstream is SIPp's built-in uas, which never answers OPTIONS: its
// own traffic keeps it up all along.
func TestDefaultFailoverSilentUpstream(t *testing.T) {
	t.Parallel()
	sipp := testenv.Sipp(t)
	dir := t.TempDir()
	pa := freePort(t, "udp")
	start(t, dir, "uas", sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(pa), "-nostdin")
	b := newMutableUAS(t)
	idA, idB := fmt.Sprintf("udp:127.0.0.1:%d", pa), "udp:"+b.addr.String()
	pv := startDefaultViaduct(t, dir, netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", pa)), b.addr)
	begin := time.Now()
	const rate = 20
	uac := startUAC(t, dir, sipp, pv, 100000, rate, 0, "uac")
	waitFor := func(what string, limit time.Duration, cond func() bool) time.Time {
		t.Helper()
		for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > limit {
				t.Fatalf("timed out after %v waiting for %s", limit, what)
			}
		}
		return time.Now()
	}
	waitFor("calls on the muteable upstream", 10*time.Second, func() bool { n, _, _ := b.newCalls(begin); return n >= 20 })

	// B goes silent.
	muted := time.Now()
	b.muted.Store(true)
	down := waitLog(t, dir, healthLine(idB, "down"), defDetection+e2eSlack)
	// Let new calls come for a while: none may reach B any more.
	time.Sleep(2 * time.Second)
	n, _, last := b.newCalls(muted)
	t.Logf("B silent: marked down after %v (bound %v); %d new calls reached it, the last %v after it went silent",
		down.Sub(muted), defDetection, n, last.Sub(muted))
	// Three rounds must fail; the first may have started just before the
	// mute (and seen no response in that instant).
	if el := down.Sub(muted); el < defInterval*2+defTimeout-time.Second {
		t.Errorf("B down after %v: faster than 3 failed rounds can be", el)
	}
	if el := last.Sub(muted); el > defDetection+e2eSlack {
		t.Errorf("a new call reached B %v after it went silent; bound %v (+%v)", el, defDetection, e2eSlack)
	}
	if m, _, _ := b.newCalls(down.Add(time.Second)); m != 0 {
		t.Errorf("%d new calls reached B more than 1 s after it was marked down", m)
	}

	// B answers again: it is probed up and new calls reach it.
	unmuted := time.Now()
	b.muted.Store(false)
	back := waitFor("a new call on B", defRecovery+e2eSlack, func() bool { n, _, _ := b.newCalls(unmuted); return n > 0 })
	t.Logf("B answers again: new calls reach it after %v (bound %v)", back.Sub(unmuted), defRecovery)
	waitLog(t, dir, healthLine(idB, "up"), time.Second)
	waitFor("B's share of new calls", 10*time.Second, func() bool { n, _, _ := b.newCalls(unmuted); return n >= 10 })

	uac.cmd.Process.Signal(syscall.SIGUSR1) // no new calls; the calls in progress end
	waitExit(t, uac, 10*time.Second)
	ok, failed := lastCSV(t, filepath.Join(dir, "uac_stat.csv"), "SuccessfulCall(C)"), lastCSV(t, filepath.Join(dir, "uac_stat.csv"), "FailedCall(C)")
	t.Logf("calls: %d successful, %d failed, in %v", ok, failed, time.Since(begin))
	// Only calls that B took while silent, before it was marked down, may
	// fail (half the calls for at most the detection bound).
	if maxFailed := int((defDetection + e2eSlack).Seconds() * rate / 2); failed > maxFailed || ok == 0 {
		t.Errorf("%d calls failed, at most %d may (those B took before it was marked down)", failed, maxFailed)
	}
	log := viaductLog(t, dir)
	if healthLine(idA, "down").MatchString(log) {
		t.Errorf("the SIPp uas (no OPTIONS answers) was marked down while carrying calls:\n%s", log)
	}
	if !strings.Contains(log, `msg="upstream health changed" target=`+idB+` addr=`+b.addr.String()+` health=down previous=up reason="probe timeout`) {
		t.Errorf("B's failure not logged with its reason:\n%s", log)
	}
}

// Two SIPp built-in uas upstreams, which never answer OPTIONS: every call
// completes, and neither upstream is ever marked down, since each one's
// responses to its calls count as answered probes. The calls (held 1 s
// each) run longer than the detection bound. Without evidence of life the
// calls would still complete, thanks to panic mode once both are down; the
// log is what shows that neither went down and panic mode never started.
func TestDefaultHealthSippUAS(t *testing.T) {
	t.Parallel()
	sipp := testenv.Sipp(t)
	dir := t.TempDir()
	var ups []netip.AddrPort
	for i := 0; i < 2; i++ {
		p := freePort(t, "udp")
		start(t, dir, "uas"+strconv.Itoa(i), sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", strconv.Itoa(p), "-nostdin")
		ups = append(ups, netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", p)))
	}
	pv := startDefaultViaduct(t, dir, ups...)
	id0 := "udp:" + ups[0].String()
	// The first probe goes to uas0 at once; with no call yet, its timeout
	// logs the hint about upstreams that ignore OPTIONS.
	hint := regexp.MustCompile(`time=(\S+) level=WARN msg="upstream did not answer a health probe: if it never answers OPTIONS .*set never_probe for it.* target=` + regexp.QuoteMeta(id0) + ` `)
	waitLog(t, dir, hint, defTimeout+e2eSlack)

	const rate, calls = 20, 20 * 18 // 18 s of calls: past the detection bound
	begin := time.Now()
	uac := startUAC(t, dir, sipp, pv, calls, rate, time.Second, "uac")
	waitExit(t, uac, calls/rate*time.Second+30*time.Second)
	ok, failed := lastCSV(t, filepath.Join(dir, "uac_stat.csv"), "SuccessfulCall(C)"), lastCSV(t, filepath.Join(dir, "uac_stat.csv"), "FailedCall(C)")
	t.Logf("%d calls in %v: %d successful, %d failed", calls, time.Since(begin), ok, failed)
	if ok != calls || failed != 0 {
		t.Errorf("%d successful and %d failed calls, want all %d successful", ok, failed, calls)
	}
	log := viaductLog(t, dir)
	for _, bad := range []string{"health=down", "every upstream is down"} {
		if strings.Contains(log, bad) {
			t.Errorf("viaduct log has %q:\n%s", bad, log)
		}
	}
	if n := len(hint.FindAllString(log, -1)); n != 1 {
		t.Errorf("the never_probe hint for %s logged %d times, want once", id0, n)
	}
}
