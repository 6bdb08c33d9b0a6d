package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// maxIdle bounds how long a source sleeps, so that it notices a new plan
// (rate change, stop, abort) within this time.
const maxIdle = 10 * time.Millisecond

// plan is what the controller asks the sources to do.
type plan struct {
	ver     uint64
	sending bool
	rate    float64 // total calls per second (<= 0: unlimited)
	quota   uint64  // total calls to start (0: unlimited)
	start   int64   // when sending starts (UAC clock): the pacers' origin
	end     int64   // when sending ends (UAC clock), 0 for no end
	abort   bool    // end every call in progress first
	exit    bool
}

// UAC is the traffic generator: a set of sources (local sockets), each
// driven by its own goroutine with its own call table, pacer and timer
// wheel, sending one scenario to one target. Create it with NewUAC, run
// traffic with Run (as often as needed, e.g. a rate ramp), read live
// counters with Counts, and Close it at the end.
type UAC struct {
	cfg     UACConfig
	epoch   time.Time
	sources []*uacSource

	planMu  sync.Mutex
	plan    plan
	planVer atomic.Uint64
	acks    []atomic.Uint64 // plan version applied by each source
	wg      sync.WaitGroup
	readers sync.WaitGroup // connection readers (tcp, tls)
	runMu   sync.Mutex     // one Run at a time; Close waits for it
	closed  bool
	ran     bool // a Run has started
}

// NewUAC validates cfg, opens the sources' sockets and starts their
// goroutines (idle until Run).
func NewUAC(cfg UACConfig) (*UAC, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("uac config: %w", err)
	}
	if len(cfg.Bind) == 0 {
		a, err := localAddrFor(cfg.Target)
		if err != nil {
			return nil, err
		}
		cfg.Bind = []netip.Addr{a}
	}
	u := &UAC{cfg: cfg, epoch: time.Now()}
	run := make([]byte, 3)
	if _, err := rand.Read(run); err != nil {
		return nil, fmt.Errorf("uac: random run id: %w", err)
	}
	runID := hex.EncodeToString(run)
	perSource := (cfg.MaxOutstanding + cfg.Sources - 1) / cfg.Sources
	batch := cfg.BatchSize
	// Keep receive memory bounded with many sources.
	if cfg.Sources > 16 {
		batch = max(8, min(batch, 1024/cfg.Sources*8))
	}
	u.acks = make([]atomic.Uint64, cfg.Sources)
	for i := 0; i < cfg.Sources; i++ {
		ip := cfg.Bind[i%len(cfg.Bind)]
		port := 0
		if cfg.BindPort != 0 {
			port = cfg.BindPort + i
		}
		if cfg.Transport.Reliable() {
			if err := u.addStreamSource(i, ip, port, runID, perSource); err != nil {
				u.closeSockets()
				return nil, fmt.Errorf("uac source %d: %w", i, err)
			}
			continue
		}
		conn, err := udp.ListenAddrPort(context.Background(), netip.AddrPortFrom(ip, uint16(port)), udp.Config{
			RecvBuffer: cfg.RecvBuffer, SendBuffer: cfg.SendBuffer, BatchSize: batch,
		})
		if err != nil {
			u.closeSockets()
			return nil, fmt.Errorf("uac source %d: %w", i, err)
		}
		local := conn.LocalAddr()
		if ip.IsUnspecified() {
			a, err := localAddrFor(cfg.Target)
			if err != nil {
				conn.Close()
				u.closeSockets()
				return nil, err
			}
			local = netip.AddrPortFrom(a, local.Port())
		}
		s := newSource(u, &u.cfg, i, local, runID, perSource, u.nanotime())
		s.conn = conn
		s.in = udp.NewBatch(batch, 8192)
		u.sources = append(u.sources, s)
	}
	for _, s := range u.sources {
		u.wg.Go(s.run)
	}
	return u, nil
}

// addStreamSource adds source i, bound to ip (and port when not 0), with
// its shared connection open unless connections are per call.
func (u *UAC) addStreamSource(i int, ip netip.Addr, port int, runID string, perSource int) error {
	if ip.IsUnspecified() {
		a, err := localAddrFor(u.cfg.Target)
		if err != nil {
			return err
		}
		ip = a
	}
	s := newSource(u, &u.cfg, i, netip.AddrPortFrom(ip, uint16(port)), runID, perSource, u.nanotime())
	s.stream = newUACStream(&u.cfg, ip, port, perSource, s.slotN, &u.readers)
	u.sources = append(u.sources, s)
	if s.stream.perCall {
		return nil
	}
	sc, err := s.stream.open(s)
	if err != nil {
		return fmt.Errorf("connecting to %v: %w", u.cfg.Target, err)
	}
	s.stream.shared = sc
	return nil
}

// localAddrFor returns the local address the kernel would use to send to
// target (no packet is sent).
func localAddrFor(target netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("uac: finding a local address for %v: %w", target, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func (u *UAC) nanotime() int64 { return int64(time.Since(u.epoch)) }

// Config returns the configuration in use, defaults filled in.
func (u *UAC) Config() UACConfig { return u.cfg }

// LocalAddrs returns the sources' local addresses.
func (u *UAC) LocalAddrs() []netip.AddrPort {
	a := make([]netip.AddrPort, len(u.sources))
	for i, s := range u.sources {
		if s.conn != nil {
			a[i] = s.conn.LocalAddr()
		} else {
			a[i], _ = netip.ParseAddrPort(string(s.sentBy(-1)))
		}
	}
	return a
}

// Counts stores the current totals over all sources in c. It may be called
// at any time from any goroutine.
func (u *UAC) Counts(c *Counts) {
	*c = Counts{}
	for _, s := range u.sources {
		c.addSource(s.st)
		if s.conn != nil {
			c.KernelDrops += s.conn.Drops()
		}
	}
}

// started returns the calls started so far (cheaper than Counts).
func (u *UAC) started() (started, done uint64) {
	for _, s := range u.sources {
		started += s.st.c[cStarted].Load()
		done += s.st.c[cCompleted].Load() + s.st.c[cFailed].Load()
	}
	return started, done
}

// setPlan publishes p to the sources and waits until every source has
// applied it (or ctx ends).
func (u *UAC) setPlan(ctx context.Context, p plan) error {
	u.planMu.Lock()
	p.ver = u.plan.ver + 1
	u.plan = p
	u.planMu.Unlock()
	u.planVer.Store(p.ver)
	for {
		all := true
		for i := range u.acks {
			if u.acks[i].Load() < p.ver {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// RunOptions says how much traffic one Run sends.
type RunOptions struct {
	// Rate is the target call (or request) rate per second over all
	// sources; 0 means as fast as MaxOutstanding allows.
	Rate float64
	// Duration and Total bound the sending: it stops when either is
	// reached (a zero value is no bound; at least one must be set).
	Duration time.Duration
	Total    uint64
	// Drain is how long to wait, after sending stops, for the calls in
	// progress to end; those still going then count as failed
	// ("unfinished"). Default: call hold + transaction timeout + 1s.
	Drain time.Duration
}

// Result is the outcome of one Run.
type Result struct {
	Rate       float64       // target rate
	Sending    time.Duration // time spent starting calls
	Elapsed    time.Duration // sending plus draining
	Counts     Counts        // activity during the run
	CPU        time.Duration // user+system CPU time of the process during the run
	Cores      int           // GOMAXPROCS
	Aborted    bool          // the context ended the run early
	MaxOutput  int           // the configured max-outstanding
	Scenario   Scenario
	TargetAddr netip.AddrPort
	// Transport and Connections are the UAC's (Connections matters on
	// tcp and tls only).
	Transport   transport.Kind
	Connections Connections
}

// Achieved returns the rate at which calls were started.
func (r *Result) Achieved() float64 {
	if r.Sending <= 0 {
		return 0
	}
	return float64(r.Counts.Started) / r.Sending.Seconds()
}

// FailureRatio returns failed / (completed + failed), 0 if none ended.
func (r *Result) FailureRatio() float64 {
	d := r.Counts.Completed + r.Counts.Failed
	if d == 0 {
		return 0
	}
	return float64(r.Counts.Failed) / float64(d)
}

// Run sends traffic as opts says, then waits for the calls in progress to
// end, and returns what happened during the run. Runs do not overlap: a
// second Run waits for the first. When ctx ends, sending
// stops and calls in progress are abandoned at once (counted unfinished);
// Run then returns the partial result with Aborted set, and no error.
func (u *UAC) Run(ctx context.Context, opts RunOptions) (*Result, error) {
	u.runMu.Lock()
	defer u.runMu.Unlock()
	if u.closed {
		return nil, errors.New("uac: run after close")
	}
	if opts.Duration <= 0 && opts.Total == 0 {
		return nil, errors.New("uac: run needs a duration or a total")
	}
	if opts.Drain <= 0 {
		opts.Drain = u.cfg.CallHold + u.cfg.Timeout + time.Second
	}
	var before, after Counts
	u.Counts(&before)
	if !u.ran {
		// The first run's report counts the shared connections NewUAC opened.
		before.ConnsOpened, before.ConnsFailed = 0, 0
		u.ran = true
	}
	cpu0 := processCPU()
	t0 := time.Now()
	res := &Result{Rate: opts.Rate, Cores: gomaxprocs(), MaxOutput: u.cfg.MaxOutstanding,
		Scenario: u.cfg.Scenario, TargetAddr: u.cfg.Target, Transport: u.cfg.Transport, Connections: u.cfg.Connections}
	bg := context.Background()
	startedBefore, _ := u.started()
	startNs := u.nanotime()
	t0 = u.epoch.Add(time.Duration(startNs))
	var endNs int64
	if opts.Duration > 0 {
		endNs = startNs + int64(opts.Duration)
	}
	if err := u.setPlan(bg, plan{sending: true, rate: opts.Rate, quota: opts.Total, start: startNs, end: endNs}); err != nil {
		return nil, err
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
sending:
	for {
		select {
		case <-ctx.Done():
			res.Aborted = true
			break sending
		case <-tick.C:
		}
		if opts.Duration > 0 && time.Since(t0) >= opts.Duration {
			break
		}
		if opts.Total > 0 {
			if st, _ := u.started(); st-startedBefore >= opts.Total {
				break
			}
		}
	}
	res.Sending = time.Since(t0)
	if opts.Duration > 0 && res.Sending > opts.Duration && !res.Aborted {
		res.Sending = opts.Duration
	}
	if err := u.setPlan(bg, plan{}); err != nil {
		return nil, err
	}
	drainEnd := time.Now().Add(opts.Drain)
	for !res.Aborted && time.Now().Before(drainEnd) {
		if st, done := u.started(); st <= done {
			break
		}
		select {
		case <-ctx.Done():
			res.Aborted = true
		case <-tick.C:
		}
	}
	if err := u.setPlan(bg, plan{abort: true}); err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(t0)
	res.CPU = processCPU() - cpu0
	u.Counts(&after)
	res.Counts.Sub(&after, &before)
	return res, nil
}

// Close stops the sources and closes their sockets. It waits for a Run in
// progress to return (cancel its context to make that quick).
func (u *UAC) Close() error {
	u.runMu.Lock()
	defer u.runMu.Unlock()
	if u.closed {
		return nil
	}
	u.closed = true
	u.planMu.Lock()
	u.plan = plan{ver: u.plan.ver + 1, exit: true, abort: true}
	v := u.plan.ver
	u.planMu.Unlock()
	u.planVer.Store(v)
	u.wg.Wait()
	return u.closeSockets()
}

func (u *UAC) closeSockets() error {
	var errs []error
	for _, s := range u.sources {
		if s.stream != nil {
			s.stream.closeAll()
		}
		if s.conn != nil {
			if err := s.conn.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	u.readers.Wait()
	return errors.Join(errs...)
}

// applyPlan reads the controller's plan when it changed. It returns false
// when the source must exit.
func (s *uacSource) applyPlan() bool {
	u := s.u
	v := u.planVer.Load()
	if v == u.acks[s.idx].Load() {
		return true
	}
	u.planMu.Lock()
	p := u.plan
	u.planMu.Unlock()
	if p.abort {
		s.abortAll()
	}
	n := uint64(len(u.sources))
	if p.sending {
		rate := p.rate / float64(n)
		if p.rate <= 0 {
			rate = 0
		}
		s.pacer.Start(p.start, rate)
		s.end = p.end
		if p.quota > 0 {
			s.quota = p.quota / n
			if uint64(s.idx) < p.quota%n {
				s.quota++
			}
		} else {
			s.quota = math.MaxUint64
		}
	} else {
		s.pacer.Stop()
		s.quota = 0
	}
	u.acks[s.idx].Store(p.ver)
	return !p.exit
}

// run is the source's loop: timers, new calls, sending, then receiving
// (parked in the netpoller until a datagram arrives or the next deadline).
func (s *uacSource) run() {
	u := s.u
	var deadline int64 // read deadline currently set on the socket (0: none)
	maxStart := len(s.out.Msgs)
	for {
		s.now = u.nanotime()
		if !s.applyPlan() {
			s.flush()
			return
		}
		s.wheel.advance(s.now, s.fireFn)
		if s.quota > 0 {
			t := s.gridFloor(s.now)
			over := s.end != 0 && s.now >= s.end
			if over && t >= s.end {
				t = s.end - 1 // start what was due before the end, no more
			}
			due := s.pacer.Due(t)
			n := 0
			for n < due && n < maxStart && s.quota > 0 && s.startCall() {
				n++
				s.quota--
			}
			s.pacer.Take(n)
			if over && n == due {
				s.quota = 0 // the run's duration is over
			}
		}
		s.flush()

		wake := s.now + int64(maxIdle)
		if s.quota > 0 && len(s.free) > 0 {
			if nx := s.pacer.Next(); nx <= s.gridFloor(s.now) {
				wake = s.now // calls still owed (more than one batch was due)
			} else {
				wake = min(wake, s.quantize(nx))
			}
		}
		wake = min(wake, s.wheel.nextDeadline())
		if wake <= s.now {
			wake = s.now + 1000 // more to do: just poll the socket
		}
		if s.stream != nil {
			s.stream.wait(s, wake)
			continue
		}
		if deadline == 0 || wake < deadline || deadline <= s.now {
			deadline = wake
			s.conn.SetReadDeadline(u.epoch.Add(time.Duration(wake)))
		}
		n, err := s.conn.ReadBatch(s.in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				deadline = 0
			}
			continue
		}
		s.now = u.nanotime()
		s.st.inc(cReadCalls)
		for i := 0; i < n; i++ {
			m := &s.in.Msgs[i]
			if m.Err != nil {
				s.st.inc(cRecv)
				s.st.inc(cParseErr)
				continue
			}
			s.onDatagram(m.Buf[:m.N])
		}
	}
}
