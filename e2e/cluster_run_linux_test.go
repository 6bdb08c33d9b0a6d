//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/parser"
)

// clusterHealth reports whether the active/active tests probe the
// upstreams. VIADUCT_E2E_HEALTH=off runs them with health checks off, which
// checks everything but that instances sharing an address each get their
// own probe replies.
func clusterHealth() bool { return os.Getenv("VIADUCT_E2E_HEALTH") != "off" }

// clusterHealthYAML is the health block of the instances' configuration:
// probes every 500 ms, so that an instance whose probe replies go astray
// marks the upstream down within about a second.
func clusterHealthYAML() string {
	if !clusterHealth() {
		return "health:\n  enabled: false\n"
	}
	return "health:\n  enabled: true\n  interval: 500ms\n  timeout: 300ms\n  failures: 2\n  successes: 1\n"
}

// loadPlan is the traffic of a kill-restart-kill run and its schedule,
// as fractions of the sending time.
type loadPlan struct {
	rate     float64
	sending  time.Duration
	sources  int
	timeout  time.Duration // transaction timeout of the UAC (Timers B and F)
	kill1    float64       // SIGKILL instance 1
	restart1 float64       // start it again
	kill2    float64       // SIGKILL instance 2
}

// runReport is what a kill-restart-kill run measured.
type runReport struct {
	counts        load.Counts
	kills         []time.Time
	reaped        []time.Duration // per kill: SIGKILL to the process reaped
	withdrawn     []time.Duration // per kill: SIGKILL to its route withdrawn (cluster.withdraw)
	restart       time.Time
	restartServed time.Duration // restart to its first answered request through it alone
	failures      []time.Time   // when the UAC counted each failed call
	gaps          gapReport
}

// killRestartKill runs plan's calls through c's shared address from
// newUAC's UAC, and meanwhile kills instance 1, starts it again, and kills
// instance 2, while a prober measures how long the shared address leaves
// datagrams unanswered and a watcher polls every instance's health view.
func (c *cluster) killRestartKill(newUAC func(load.UACConfig) (*load.UAC, error), plan loadPlan) (runReport, *healthWatch) {
	c.t.Helper()
	var rep runReport
	u, err := newUAC(load.UACConfig{Target: c.shared, Sources: plan.sources, Timeout: plan.timeout, CallHold: 300 * time.Millisecond})
	if err != nil {
		c.t.Fatalf("uac: %v", err)
	}
	defer u.Close()
	prober := c.startGapProber(16, 20*time.Millisecond)
	stop := make(chan struct{})
	watch, watchDone := c.watchHealth(stop)
	failDone := make(chan struct{})
	go func() {
		defer close(failDone)
		rep.failures = trackFailures(u, stop)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), plan.sending+plan.timeout+30*time.Second)
	defer cancel()
	runDone := make(chan error, 1)
	var res *load.Result
	begin := time.Now()
	go func() {
		var err error
		res, err = u.Run(ctx, load.RunOptions{Rate: plan.rate, Duration: plan.sending, Drain: plan.timeout + 2*time.Second})
		runDone <- err
	}()
	at := func(f float64) { time.Sleep(time.Until(begin.Add(time.Duration(f * float64(plan.sending))))) }

	kill := func(i int) {
		at, reaped := c.kill(c.insts[i])
		rep.kills, rep.reaped = append(rep.kills, at), append(rep.reaped, reaped)
		if c.withdraw != nil {
			time.Sleep(time.Until(at.Add(c.detect)))
			c.withdraw(i)
			rep.withdrawn = append(rep.withdrawn, time.Since(at))
		}
	}
	at(plan.kill1)
	kill(1)
	at(plan.restart1)
	rep.restart = time.Now()
	c.startInstance(c.insts[1])
	rep.restartServed = c.servedAfterStart(1)
	c.waitStarted(c.insts[1], 15*time.Second)
	if c.announce != nil {
		c.announce(1)
	}
	at(plan.kill2)
	kill(2)

	if err := <-runDone; err != nil {
		c.t.Fatalf("load run: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // the probes' last answers
	close(stop)
	<-watchDone
	<-failDone
	rep.gaps = prober.stop(rep.kills, rep.restart)
	rep.counts = res.Counts
	return rep, watch
}

// servedAfterStart sends a request through instance i alone as soon as
// its socket may be open, again and again, and returns the time from the
// launch to the first 200.
func (c *cluster) servedAfterStart(i int) time.Duration {
	c.t.Helper()
	begin := time.Now()
	if got, _ := c.directCheck(i, []string{fmt.Sprintf("restart-%d@check", i)}, 10*time.Millisecond); got == 1 {
		return time.Since(begin)
	}
	in := c.insts[i]
	in.mu.Lock()
	log, _ := os.ReadFile(in.log)
	in.mu.Unlock()
	c.t.Fatalf("instance %d answered nothing in the 10 s after its restart; its output:\n%s", i, log)
	return 0
}

// trackFailures polls u's failed-call count until stop closes and returns
// when each failure was counted.
func trackFailures(u *load.UAC, stop <-chan struct{}) []time.Time {
	var at []time.Time
	var c load.Counts
	var last uint64
	for {
		u.Counts(&c)
		for ; last < c.Failed; last++ {
			at = append(at, time.Now())
		}
		select {
		case <-stop:
			return at
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// unexplained returns the failures that no kill explains: a call fails
// when a transaction times out, timeout after it began, so a call lost to
// a kill fails about timeout after the kill (slack either side).
func unexplained(failures, kills []time.Time, timeout, slack time.Duration) []time.Time {
	var out []time.Time
	for _, f := range failures {
		ok := false
		for _, k := range kills {
			began := f.Add(-timeout)
			ok = ok || (began.After(k.Add(-slack)) && began.Before(k.Add(slack)))
		}
		if !ok {
			out = append(out, f)
		}
	}
	return out
}

// gapProber sends OPTIONS to the shared address (which each instance
// answers itself) from several sockets, one every interval each, and
// records which were answered when: the sockets whose 4-tuples hashed to a
// killed instance show how long the shared address loses datagrams.
type gapProber struct {
	target netip.AddrPort
	conns  []*net.UDPConn
	quit   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	sent  [][]time.Time // per socket, by sequence number
	reply [][]time.Time // answer time, zero while unanswered
}

// gapReport is what the prober saw around each kill and the restart.
type gapReport struct {
	probes, lost     int
	lostAfterKill    []int           // per kill: unanswered probes sent from 1 s before to 5 s after it
	outage           []time.Duration // per kill: kill to the last unanswered probe sent near it (negative: before it)
	lostElsewhere    int             // unanswered probes no kill explains
	slowestNearStart time.Duration   // slowest answer to a probe sent within 3 s after the restart
}

func (c *cluster) startGapProber(sockets int, every time.Duration) *gapProber {
	c.t.Helper()
	g := &gapProber{target: c.shared, quit: make(chan struct{}), sent: make([][]time.Time, sockets), reply: make([][]time.Time, sockets)}
	for range sockets {
		conn, err := c.clientListen()
		if err != nil {
			c.t.Fatalf("prober socket: %v", err)
		}
		g.conns = append(g.conns, conn)
	}
	for k := range g.conns {
		g.wg.Add(2)
		go g.send(k, every)
		go g.read(k)
	}
	return g
}

func (g *gapProber) send(k int, every time.Duration) {
	defer g.wg.Done()
	local := g.conns[k].LocalAddr().(*net.UDPAddr).AddrPort()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		req := fmt.Appendf(nil, "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-gap-%d-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:gap@example.net>;tag=gap%d\r\nTo: <sip:%s>\r\n"+
			"Call-ID: gap-%d-%d@probe\r\nCSeq: %d OPTIONS\r\nContent-Length: 0\r\n\r\n",
			g.target, local, k, seq, k, g.target, k, seq, seq+1)
		g.mu.Lock()
		g.sent[k] = append(g.sent[k], time.Now())
		g.reply[k] = append(g.reply[k], time.Time{})
		g.mu.Unlock()
		g.conns[k].WriteToUDPAddrPort(req, g.target)
		select {
		case <-g.quit:
			return
		case <-tick.C:
		}
	}
}

func (g *gapProber) read(k int) {
	defer g.wg.Done()
	buf := make([]byte, 65536)
	var m parser.Message
	for {
		n, _, err := g.conns[k].ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if parser.Parse(buf[:n], &m) != nil || m.IsRequest() {
			continue
		}
		seq, _ := m.CSeq()
		g.mu.Lock()
		if i := int(seq) - 1; i >= 0 && i < len(g.reply[k]) && g.reply[k][i].IsZero() {
			g.reply[k][i] = time.Now()
		}
		g.mu.Unlock()
	}
}

// stop ends the probing (the last 500 ms of probes are not judged) and
// reports around kills and restart.
func (g *gapProber) stop(kills []time.Time, restart time.Time) gapReport {
	close(g.quit)
	for _, c := range g.conns {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	}
	time.Sleep(600 * time.Millisecond)
	for _, c := range g.conns {
		c.Close()
	}
	g.wg.Wait()
	end := time.Now().Add(-1100 * time.Millisecond)
	r := gapReport{lostAfterKill: make([]int, len(kills)), outage: make([]time.Duration, len(kills))}
	for j := range r.outage {
		r.outage[j] = -time.Second
	}
	for k := range g.sent {
		for i, s := range g.sent[k] {
			if s.After(end) {
				break
			}
			r.probes++
			if got := g.reply[k][i]; !got.IsZero() {
				if s.After(restart) && s.Before(restart.Add(3*time.Second)) {
					r.slowestNearStart = max(r.slowestNearStart, got.Sub(s))
				}
				continue
			}
			r.lost++
			near := false
			for j, kill := range kills {
				if s.After(kill.Add(-time.Second)) && s.Before(kill.Add(5*time.Second)) {
					near = true
					r.lostAfterKill[j]++
					r.outage[j] = max(r.outage[j], s.Sub(kill))
				}
			}
			if !near {
				r.lostElsewhere++
			}
		}
	}
	return r
}

// String renders the report for the test log.
func (r gapReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d probes, %d unanswered", r.probes, r.lost)
	for j := range r.outage {
		fmt.Fprintf(&b, "; kill %d: %d unanswered", j+1, r.lostAfterKill[j])
		if r.lostAfterKill[j] > 0 {
			fmt.Fprintf(&b, ", the last sent %v after the kill", r.outage[j].Round(100*time.Microsecond))
		}
	}
	fmt.Fprintf(&b, "; %d unanswered away from kills; slowest answer in the 3 s after the restart %v", r.lostElsewhere, r.slowestNearStart.Round(time.Millisecond))
	return b.String()
}

// checkRun asserts what a kill-restart-kill run must show and logs its
// figures.
func (c *cluster) checkRun(rep runReport, watch *healthWatch, plan loadPlan) {
	c.t.Helper()
	cn := rep.counts
	lost := cn.Failed
	c.t.Logf("calls: %d started, %d completed, %d lost (%.3f%%; by cause %v); the UAC retransmitted %d requests and saw %d late responses "+
		"(retransmitted 200s; 180s overtaken by their 200, relayed by another instance)",
		cn.Started, cn.Completed, lost, 100*float64(lost)/float64(max(cn.Started, 1)), cn.FailedBy(), cn.Retransmissions, cn.Duplicates)
	c.t.Logf("restarted instance 1 answered a request through it alone %v after its launch", rep.restartServed.Round(time.Millisecond))
	c.t.Logf("shared-address prober: %v; SIGKILL to process reaped: %v", rep.gaps, rep.reaped)
	if c.withdraw != nil {
		c.t.Logf("SIGKILL to the dead instance's route withdrawn: %v (detection time modelled: %v)", rep.withdrawn, c.detect)
	}
	if cn.Started < uint64(plan.rate*plan.sending.Seconds()*0.8) {
		c.t.Errorf("only %d calls started (plan %v/s for %v): the run proves little", cn.Started, plan.rate, plan.sending)
	}
	if maxLost := cn.Started / 1000; lost > maxLost {
		c.t.Errorf("%d calls lost, over 0.1%% of %d (at most %d)", lost, cn.Started, maxLost)
	}
	if odd := unexplained(rep.failures, rep.kills, plan.timeout, 2*time.Second); len(odd) > 0 {
		c.t.Errorf("%d calls failed at %v, which no kill explains (kills at %v, transaction timeout %v)", len(odd), odd, rep.kills, plan.timeout)
	}
	if rep.restartServed > 5*time.Second {
		c.t.Errorf("the restarted instance took %v to answer through its own socket, want at once (under 5 s)", rep.restartServed)
	}
	if rep.gaps.lostElsewhere > 0 {
		c.t.Errorf("%d probes to the shared address went unanswered away from any kill", rep.gaps.lostElsewhere)
	}
	for j, o := range rep.gaps.outage {
		if o > time.Second {
			c.t.Errorf("kill %d: the shared address still lost probes sent %v after the kill, want under 1 s", j+1, o)
		}
	}
	for _, in := range c.insts {
		m := in.lastScrape()
		fwd, rel := sum(m, "viaduct_requests_forwarded_total"), sum(m, "viaduct_responses_forwarded_total")
		c.t.Logf("instance %d (launched %d times, alive at the end: %v): its last process forwarded %v requests and relayed %v responses",
			in.idx, in.launches, in.isAlive(), fwd, rel)
		// Every process took its share of the calls (the restarted one
		// from the moment it started), not just the test's checks.
		if fwd < 100 || rel < 100 {
			c.t.Errorf("instance %d's last process forwarded %v requests and relayed %v responses: it did not take its share", in.idx, fwd, rel)
		}
	}
	perUp := c.checkOneUpstreamPerCall()
	c.t.Logf("Call-IDs per upstream: %v", perUp)
	for i, n := range perUp {
		if n < len(c.ups) {
			c.t.Errorf("upstream %s saw %d calls: the spread proves nothing", c.ups[i].name, n)
		}
	}
	for _, u := range c.ups {
		inv, acks, byes, probes := u.counts()
		c.t.Logf("%s: %d INVITE, %d ACK, %d BYE, %d OPTIONS", u.name, inv, acks, byes, probes)
	}
	c.checkNoDrops()
	downs, polls := watch.result()
	if !clusterHealth() {
		c.t.Logf("health checks off (VIADUCT_E2E_HEALTH=off): probe replies not checked (%d health polls)", polls)
		return
	}
	if polls == 0 {
		c.t.Errorf("no health poll answered")
	}
	// The property is not vacuous: every live instance probed every
	// upstream and got answers.
	for _, in := range c.insts {
		if !in.isAlive() {
			continue
		}
		ups, err := in.upstreams()
		if err != nil {
			c.t.Errorf("instance %d: %v", in.idx, err)
			continue
		}
		for _, u := range ups {
			c.t.Logf("instance %d: %s: %d probes sent, %d answered, %d timed out", in.idx, u.ID, u.ProbesSent, u.ProbesOK, u.ProbeTimeouts)
			if u.ProbesOK == 0 {
				c.t.Errorf("instance %d got no answer to its probes of %s", in.idx, u.ID)
			}
		}
	}
	for i, d := range downs {
		if i == 10 {
			c.t.Errorf("... %d reports of an upstream not up in all", len(downs))
			break
		}
		c.t.Errorf("both upstreams answer all along, yet %s", d)
	}
}
