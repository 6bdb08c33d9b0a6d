package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
)

// phoneScenario registers the user the -s option names ([service]) with
// this SIPp's address as contact, then stays up for the calls, which
// calleeScenario, SIPp's out-of-call scenario, answers.
const phoneScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register, then wait for calls">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:[service]@example.com>;tag=[pid]reg[call_number]
      To: <sip:[service]@example.com>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Expires: 600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <pause milliseconds="300000"/>
</scenario>
`

// calleeScenario answers a call to the phone's user (the Request-URI's user
// must be [service]): 180, 200, then ACK and BYE; or, when the INVITE's
// Subject is cancel-me, 180, then 200 to the CANCEL, 487 and its ACK. The
// 487 carries the INVITE's Via lines (with the Record-Route lines between
// them): the CANCEL's, which SIPp would copy, end at the registrar. The
// branch comes before the 180: SIPp takes a request that arrives while a
// call waits at a <nop> for an unexpected one, and the CANCEL follows the
// 180 closely.
const calleeScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer a call to this phone's user, or take its CANCEL">
  <recv request="INVITE">
    <action>
      <ereg regexp="^INVITE sip:([^@;>]*)@" search_in="msg" check_it="true" assign_to="ruri,ruriuser"/>
      <assignstr assign_to="me" value="[service]"/>
      <strcmp variable="ruriuser" variable2="me" check_it="true"/>
      <ereg regexp="cancel-me" search_in="hdr" header="Subject:" assign_to="cancel"/>
      <ereg regexp="Via:.*Via:[^[:cntrl:]]*" search_in="msg" check_it="true" assign_to="vias"/>
    </action>
  </recv>
  <Reference variables="ruri"/>
  <nop test="cancel" next="cancelled"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]callee
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]callee
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop next="end"/>
  <label id="cancelled"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]callee
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]callee
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [$vias]
      [last_From:]
      [last_To:];tag=[pid]callee
      [last_Call-ID:]
      CSeq: [last_cseq_number] INVITE
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <label id="end"/>
</scenario>
`

// callerScenario calls the user of its injection file's line
// (sip:USER@example.com) and hangs up once answered: ACK and BYE follow the
// route set.
const callerScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call a registered user">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[field0]@example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:caller@example.net>;tag=[pid]caller[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true" rtd="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      Max-Forwards: 70
      From: <sip:caller@example.net>;tag=[pid]caller[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      Max-Forwards: 70
      From: <sip:caller@example.net>;tag=[pid]caller[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
`

// cancellerScenario calls the user of its injection file's line and
// cancels the call once it rings: CANCEL, then the ACK of the 487, both
// with the INVITE's Request-URI and branch.
const cancellerScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="call a registered user and cancel once it rings">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[field0]@example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:caller@example.net>;tag=[pid]caller[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Subject: cancel-me
      Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <send retrans="500">
    <![CDATA[
      CANCEL sip:[field0]@example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport
      Max-Forwards: 70
      From: <sip:caller@example.net>;tag=[pid]caller[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
  <send>
    <![CDATA[
      ACK sip:[field0]@example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-6];rport
      Max-Forwards: 70
      From: <sip:caller@example.net>;tag=[pid]caller[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Content-Length: 0

    ]]>
  </send>
</scenario>
`

// TestRegistrarCluster is issue #13's case: two Kamailio registrars that
// do not share their location tables behind one Viaduct with path: true,
// REGISTER hashed on to-aor and INVITE on ruri-aor. Twenty phones (one SIPp
// each) register through Viaduct; both registrars get some. Then a call to
// every user completes (200, ACK, BYE), and a call to every user cancelled
// while it rings ends with 487 and its ACK; every request of every call
// reaches the registrar that holds its callee (read from the registrars'
// logs). With INVITE hashed on call-id instead, about half of the calls get
// 404 from the registrar that does not hold the callee.
func TestRegistrarCluster(t *testing.T) {
	sipp := testenv.Sipp(t)
	begin := time.Now()
	regs := []*registrar{
		{"registrar-a", testenv.StartKamailioRegistrar(t)},
		{"registrar-b", testenv.StartKamailioRegistrar(t)},
	}
	dir := t.TempDir()
	bin := buildViaduct(t, dir)
	for name, text := range map[string]string{
		"phone.xml": phoneScenario, "callee.xml": calleeScenario,
		"caller.xml": callerScenario, "canceller.xml": cancellerScenario,
	} {
		writeFile(t, dir, name, text)
	}
	pv, pa := freePort(t, "udp"), freePort(t, "tcp")
	cfg := writeFile(t, dir, "viaduct.yaml", fmt.Sprintf(`listen: ["127.0.0.1:%d"]
upstreams:
  - {address: "127.0.0.1:%d", id: %s}
  - {address: "127.0.0.1:%d", id: %s}
record_route: true
path: true
shutdown_drain: 0s
balance:
  keys:
    REGISTER: to-aor
    INVITE: ruri-aor
health:
  interval: 300ms
  timeout: 250ms
admin:
  listen: 127.0.0.1:%d
`, pv, regs[0].Addr.Port(), regs[0].name, regs[1].Addr.Port(), regs[1].name, pa))
	start(t, dir, "viaduct", bin, "--config", cfg)
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", pa)
	waitFor(t, "viaduct ready", 10*time.Second, func() bool { return httpOK(adminURL + "/readyz") })
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range regs {
				t.Logf("%s log:\n%s", r.name, r.Log())
			}
		}
	})

	// 1. The phones register through Viaduct; each user's REGISTERs reach
	// one registrar, and both registrars hold users.
	users := make([]string, 20)
	for i := range users {
		users[i] = fmt.Sprintf("user%02d", i+1)
		start(t, dir, "phone-"+users[i], sipp, "-sf", "phone.xml", "-oocsf", "callee.xml", "-s", users[i],
			fmt.Sprintf("127.0.0.1:%d", pv), "-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t, "udp")),
			"-m", "1", "-nostdin", "-trace_err")
	}
	var holder map[string]int // user -> index in regs
	waitFor(t, "every user registered", 15*time.Second, func() bool {
		holder = registeredUsers(t, regs)
		return len(holder) == len(users)
	})
	held := make([]int, len(regs))
	for _, i := range holder {
		held[i]++
	}
	t.Logf("registered: %s %d users, %s %d users", regs[0].name, held[0], regs[1].name, held[1])
	if held[0] == 0 || held[1] == 0 {
		t.Fatalf("users per registrar %v: want both to hold some (the test would prove nothing)", held)
	}

	// 2. A call to every user completes; a call to every user cancelled
	// while it rings ends with 487.
	var csv strings.Builder
	csv.WriteString("SEQUENTIAL\n")
	for _, u := range users {
		csv.WriteString(u + ";\n")
	}
	writeFile(t, dir, "callees.csv", csv.String())
	for _, phase := range []string{"caller", "canceller"} {
		r := runSippUAC(t, dir, sipp, pv, len(users), 10, phase, nil, "-sf", phase+".xml", "-inf", "callees.csv")
		if r.exit != 0 || r.failed != 0 || r.successful != len(users) {
			t.Errorf("%s: %+v, want all %d calls successful", phase, r, len(users))
		}
	}

	// 3. Every request of every call reached the registrar holding its
	// callee: INVITE by ruri-aor, CANCEL and the 487's ACK by the
	// INVITE's key, the 200's ACK and BYE by the registrar's Record-Route.
	// (SIPp ends with its last ACK sent: give it time to arrive.)
	const completed, cancelled = "ACK BYE INVITE", "ACK CANCEL INVITE"
	calls, misrouted := callRequests(t, regs, holder)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		kinds := map[string]int{}
		for _, methods := range calls {
			kinds[methods]++
		}
		if kinds[completed] == len(users) && kinds[cancelled] == len(users) {
			break
		}
		calls, misrouted = callRequests(t, regs, holder)
	}
	for _, m := range misrouted {
		t.Error(m)
	}
	kinds := map[string]int{}
	for id, methods := range calls {
		kinds[methods]++
		if methods != completed && methods != cancelled {
			t.Errorf("call %s: the registrar saw %s, want INVITE, ACK and BYE, or INVITE, CANCEL and ACK", id, methods)
		}
	}
	if kinds[completed] != len(users) || kinds[cancelled] != len(users) {
		t.Errorf("calls seen by the registrars: %v, want %d of each", kinds, len(users))
	}
	if n := metric(t, adminURL, "viaduct_balance_key_fallbacks_total"); n != "0" {
		t.Errorf("viaduct_balance_key_fallbacks_total %s, want 0 (every INVITE has a Request-URI AOR)", n)
	}
	// Kamailio answers the health probes, which leave from Viaduct's origin
	// socket and ask for rport: both registrars stay up, and replies came.
	for _, r := range regs {
		if up := metric(t, adminURL, `viaduct_upstream_up{upstream="`+r.name+`"}`); up != "1" {
			t.Errorf("%s: viaduct_upstream_up %s, want 1", r.name, up)
		}
	}
	n, _ := strconv.Atoi(metric(t, adminURL, "viaduct_local_responses_received_total"))
	if n < len(regs) {
		t.Errorf("%d probe replies received, want at least one from each registrar", n)
	}
	t.Logf("%d probe replies from the registrars", n)
	t.Logf("total %v", time.Since(begin))
}

// registrar is a Kamailio registrar started by the test, with the name
// Viaduct knows it by.
type registrar struct {
	name string
	*testenv.KamailioRegistrar
}

var (
	registeredLine = regexp.MustCompile(`registrar: registered sip:([^@]+)@example\.com`)
	requestLine    = regexp.MustCompile(`registrar: request (\S+) (\S+) (\S+)`)
)

// registeredUsers reads which registrar saved each user's binding, failing
// the test if a user is at both.
func registeredUsers(t *testing.T, regs []*registrar) map[string]int {
	t.Helper()
	holder := map[string]int{}
	for i, r := range regs {
		for _, m := range registeredLine.FindAllStringSubmatch(r.Log(), -1) {
			if j, ok := holder[m[1]]; ok && j != i {
				t.Fatalf("%s registered at %s and %s: its REGISTERs were split", m[1], regs[j].name, r.name)
			}
			holder[m[1]] = i
		}
	}
	return holder
}

// callRequests reads the requests of calls (INVITE, ACK, BYE, CANCEL) that
// the registrars received and returns, per Call-ID, the methods seen, sorted
// and space-separated, and a line for every request that reached a
// registrar not holding the user of its Request-URI.
func callRequests(t *testing.T, regs []*registrar, holder map[string]int) (calls map[string]string, misrouted []string) {
	t.Helper()
	seen := map[string]map[string]bool{}
	for i, r := range regs {
		sc := bufio.NewScanner(strings.NewReader(r.Log()))
		for sc.Scan() {
			m := requestLine.FindStringSubmatch(sc.Text())
			if m == nil || m[1] == "REGISTER" || (m[1] == "OPTIONS" && strings.HasPrefix(m[3], "vdp-")) {
				continue // not a call: a registration, or Viaduct's health probe
			}
			method, user, id := m[1], m[2], m[3]
			if j, ok := holder[user]; !ok || j != i {
				misrouted = append(misrouted, fmt.Sprintf("%s of call %s to %s reached %s, which does not hold %s", method, id, user, r.name, user))
			}
			if seen[id] == nil {
				seen[id] = map[string]bool{}
			}
			seen[id][method] = true
		}
	}
	calls = map[string]string{}
	for id, set := range seen {
		var methods []string
		for m := range set {
			methods = append(methods, m)
		}
		sort.Strings(methods)
		calls[id] = strings.Join(methods, " ")
	}
	return calls, misrouted
}

// writeFile writes text to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond every 20ms until it holds, failing the test after
// limit.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
	}
}

// httpOK reports whether a GET of url answers 200.
func httpOK(url string) bool {
	resp, err := adminClient.Get(url)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// metric returns the value of an unlabelled metric from /metrics.
func metric(t *testing.T, adminURL, name string) string {
	t.Helper()
	resp, err := adminClient.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return ""
}
