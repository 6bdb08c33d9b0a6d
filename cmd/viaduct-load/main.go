// Command viaduct-load is Viaduct's SIP load generator and responder.
//
//	viaduct-load uac --target 127.0.0.1:5060 --rate 5000 --duration 30s
//	viaduct-load uas --listen 127.0.0.1:5071
//	viaduct-load uac --transport tls --tls-insecure --target 127.0.0.1:5061 --find-max
//	viaduct-load conns --transport tcp --count 20000 --target 127.0.0.1:5060 --hold 30s
//
// "uac" sends calls (or REGISTER, OPTIONS, MESSAGE requests) at a paced
// rate and reports throughput, failures by reason and code, latency
// percentiles and its own CPU use; "uas" answers every request
// statelessly, optionally with a delay, a share of failures or of
// unanswered requests; both speak udp, tcp and tls (--transport). "conns"
// opens many idle tcp or tls connections and holds them, for measuring
// what idle connections cost a server. Run "viaduct-load uac -h" (or uas,
// conns) for the flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/internal/version"
	"github.com/viaduct-sip/viaduct/transport"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: viaduct-load uac|uas|conns [flags]
       viaduct-load --version

  uac   generate SIP traffic against --target and report the results
  uas   answer SIP requests on --listen
  conns open --count idle tcp or tls connections to --target and hold them

Run "viaduct-load uac -h" (or uas, conns) for the flags.
`

// run is main without os.Exit, for tests. It returns the exit status:
// 0 success, 1 failures above --max-fail, 2 usage or setup error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "uac":
		return runUAC(ctx, args[1:], stdout, stderr)
	case "uas":
		return runUAS(ctx, args[1:], stdout, stderr)
	case "conns":
		return runConns(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintf(stdout, "viaduct-load %s\n", version.Get())
		return 0
	}
	fmt.Fprintf(stderr, "viaduct-load: unknown command %q\n%s", args[0], usage)
	return 2
}

// ratio is a flag holding a fraction, given as "0.001" or "0.1%".
type ratio float64

// String formats the ratio as a percentage.
func (r *ratio) String() string { return strconv.FormatFloat(float64(*r)*100, 'g', -1, 64) + "%" }

// Set parses a fraction ("0.001") or a percentage ("0.1%").
func (r *ratio) Set(s string) error {
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return fmt.Errorf("not a number or percentage: %q", s)
	}
	if pct {
		f /= 100
	}
	if f < 0 || f > 1 {
		return fmt.Errorf("%q is outside 0..1 (0%%..100%%)", s)
	}
	*r = ratio(f)
	return nil
}

// resolveAddr parses host:port, resolving a host name if needed.
func resolveAddr(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// parseBind parses the --bind flag: comma-separated local addresses (none
// when it is empty).
func parseBind(s string) ([]netip.Addr, error) {
	if s == "" {
		return nil, nil
	}
	var addrs []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--bind: %w", err)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

func setCores(n int) {
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
}

func runUAC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("viaduct-load uac", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		target      = fs.String("target", "", "`host:port` to send requests to (required)")
		scenario    = fs.String("scenario", "call", "what each call does: call, register, options or message")
		rate        = fs.Float64("rate", 100, "calls (or requests) per second, paced evenly; 0 = as fast as --max-outstanding allows")
		duration    = fs.Duration("duration", 0, "how long to send (stops at --duration or --total, whichever comes first)")
		total       = fs.Uint64("total", 0, "how many calls to start")
		maxOut      = fs.Int("max-outstanding", 65536, "calls in progress at most; new calls wait")
		quantum     = fs.Duration("pace-quantum", time.Millisecond, "start the calls due within this time together (fewer system calls); negative: pace each call exactly")
		concurrency = fs.Int("concurrency", 0, "cores used (GOMAXPROCS); default all")
		sources     = fs.Int("sources", 0, "local sockets to send from, each a distinct source port (default: one per core)")
		bind        = fs.String("bind", "", "comma-separated local `addresses` for the sources, used round-robin (default: the route to the target)")
		bindPort    = fs.Int("bind-port", 0, "first local port; source i uses port+i (default: ephemeral)")
		hold        = fs.Duration("call-hold", 0, "time between the 200 to the INVITE and the BYE")
		sdpSize     = fs.Int("sdp-size", 0, "INVITE SDP body size in bytes (default: a minimal SDP of about 130 bytes)")
		bodySize    = fs.Int("body-size", 32, "MESSAGE body size in bytes")
		user        = fs.String("user", "{n}", "called (or registering) user `template`; {n} is the call's user number")
		fromUser    = fs.String("from-user", "load", "calling user `template`; {n} is the call's user number")
		userStart   = fs.Uint64("user-start", 100000, "first user number")
		userCount   = fs.Uint64("user-count", 100000, "how many user numbers to cycle through")
		domain      = fs.String("domain", "", "domain of the URIs (default: the target's host:port)")
		noRetrans   = fs.Bool("no-retrans", false, "do not retransmit requests (RFC 3261 Timers A and E)")
		t1          = fs.Duration("t1", load.DefaultT1, "RFC 3261 timer T1 (first retransmission interval)")
		t2          = fs.Duration("t2", load.DefaultT2, "RFC 3261 timer T2 (retransmission interval cap for non-INVITE)")
		timeout     = fs.Duration("timeout", 0, "time a transaction may wait for its final response (default 64*T1)")
		drain       = fs.Duration("drain", 0, "time to wait for calls in progress after sending stops (default call-hold + timeout + 1s)")
		jsonOut     = fs.String("json", "", "write the report as JSON to `file` (\"-\" for stdout, replacing the table)")
		quiet       = fs.Bool("quiet", false, "no live progress line on stderr")
		findMax     = fs.Bool("find-max", false, "ramp the rate up and report the highest rate sustained within --max-fail")
		fmStart     = fs.Float64("find-start", 0, "find-max: first rate (default --rate)")
		fmLimit     = fs.Float64("find-limit", 1e6, "find-max: highest rate to try")
		fmStep      = fs.Duration("find-step", 5*time.Second, "find-max: duration of each rate step")
		fmPrec      = fs.Float64("find-precision", 0.05, "find-max: stop bisecting when the bounds are within this fraction")
		fmGrowth    = fs.Float64("find-growth", 1.5, "find-max: rate multiplier between passing steps")
		fmDrain     = fs.Duration("find-drain", 0, "find-max: drain time per step (default call-hold + 3s)")
		fmP99       = fs.Duration("find-p99", 0, "find-max: also fail a step whose p99 first-response latency exceeds this (default: failures alone decide)")
		maxFail     = ratio(0.001)
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile to `file`")
		transportF  = fs.String("transport", "udp", "udp, tcp, tls, ws or wss (ws, wss: SIP over WebSocket as a browser speaks it, RFC 7118)")
		connections = fs.String("connections", "shared", "tcp and tls: shared (one connection per source that every call uses, like SIPp's -t t1 with --sources 1) or per-call (like -t tn)")
		dialTimeout = fs.Duration("dial-timeout", 5*time.Second, "tcp and tls: time to open a connection, TLS handshake included")
		tlsFlags    = addTLSClientFlags(fs)
	)
	fs.Var(&maxFail, "max-fail", "failure ratio above which the exit status is 1, as a fraction or percentage")
	if !parseArgs(fs, args) {
		return 2
	}
	fail := failWith(fs)
	if *target == "" {
		return fail(errors.New("--target is required"))
	}
	if !*findMax && *duration <= 0 && *total == 0 {
		return fail(errors.New("give --duration and/or --total (or --find-max)"))
	}
	setCores(*concurrency)
	stopProfile, err := startProfile(*cpuProfile)
	if err != nil {
		return fail(err)
	}
	defer stopProfile()
	cfg := load.UACConfig{
		Sources: *sources, BindPort: *bindPort, MaxOutstanding: *maxOut, CallHold: *hold, PaceQuantum: *quantum,
		SDPSize: *sdpSize, BodySize: *bodySize, UserStart: *userStart, UserCount: *userCount,
		Domain: *domain, NoRetrans: *noRetrans, T1: *t1, T2: *t2, Timeout: *timeout,
	}
	if cfg.Target, err = resolveAddr(*target); err != nil {
		return fail(err)
	}
	if cfg.Scenario, err = load.ParseScenario(*scenario); err != nil {
		return fail(err)
	}
	if cfg.Transport, err = load.ParseTransport(*transportF); err != nil {
		return fail(err)
	}
	if cfg.Connections, err = load.ParseConnections(*connections); err != nil {
		return fail(err)
	}
	cfg.DialTimeout = *dialTimeout
	if cfg.Transport.Secure() {
		if cfg.TLS, err = tlsFlags.config(); err != nil {
			return fail(err)
		}
	}
	if cfg.User, err = load.ParseTemplate(*user); err != nil {
		return fail(err)
	}
	if cfg.FromUser, err = load.ParseTemplate(*fromUser); err != nil {
		return fail(err)
	}
	if cfg.Bind, err = parseBind(*bind); err != nil {
		return fail(err)
	}
	u, err := load.NewUAC(cfg)
	if err != nil {
		return fail(err)
	}
	defer u.Close()

	var progressDone chan struct{}
	stopProgress := func() {}
	if !*quiet {
		pctx, cancel := context.WithCancel(ctx)
		progressDone = make(chan struct{})
		go func() {
			defer close(progressDone)
			progress(pctx, u, stderr)
		}()
		stopProgress = func() { cancel(); <-progressDone }
	}

	writeJSON := func(v any) error {
		if *jsonOut == "" {
			return nil
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if *jsonOut == "-" {
			_, err = stdout.Write(b)
			return err
		}
		return os.WriteFile(*jsonOut, b, 0o644)
	}

	if *findMax {
		start := *fmStart
		if start <= 0 {
			start = *rate
		}
		o := load.FindMaxOptions{Start: start, Limit: *fmLimit, StepDuration: *fmStep, Precision: *fmPrec,
			Growth: *fmGrowth, Drain: *fmDrain, MaxFail: float64(maxFail), MaxP99: *fmP99}
		res, err := load.FindMax(ctx, u, o, func(s load.Step) {
			verdict := "pass"
			if !s.Passed {
				verdict = "FAIL"
			}
			fmt.Fprintf(stderr, "\rfind-max: rate %.0f/s -> %s (achieved %.1f/s, failed %d of %d, %.4f%%, p99 %.3fms, cpu %.2f cores)\033[K\n",
				s.Rate, verdict, s.Report.AchievedRate, s.Report.Failed, s.Report.Started, 100*s.Report.FailureRatio,
				s.Report.FirstResponse.P99, s.Report.CPUCores)
		})
		stopProgress()
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "viaduct-load uac: %v\n", err)
		}
		if res == nil {
			return 2
		}
		if *jsonOut != "-" {
			fmt.Fprintf(stdout, "find-max: highest rate sustained with failures <= %.4f%%: %.0f/s\n", 100*float64(maxFail), res.MaxRate)
			if res.Best != nil {
				res.Best.WriteTable(stdout)
			}
		}
		if err := writeJSON(res); err != nil {
			return fail(err)
		}
		if res.MaxRate == 0 {
			return 1
		}
		return 0
	}

	r, err := u.Run(ctx, load.RunOptions{Rate: *rate, Duration: *duration, Total: *total, Drain: *drain})
	stopProgress()
	if err != nil {
		return fail(err)
	}
	rep := r.Report(float64(maxFail))
	if *jsonOut != "-" {
		if !*quiet {
			fmt.Fprint(stderr, "\n")
		}
		rep.WriteTable(stdout)
	}
	if err := writeJSON(rep); err != nil {
		return fail(err)
	}
	if !rep.Passed {
		return 1
	}
	return 0
}

// parseArgs parses a command's arguments, flags alone, with fs. It reports
// a mistake on fs's output and returns false.
func parseArgs(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(args); err != nil {
		return false // the flag package has said why
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return false
	}
	return true
}

// failWith returns the error exit of fs's command: it reports err on fs's
// output, after the command's name, and returns exit status 2.
func failWith(fs *flag.FlagSet) func(err error) int {
	return func(err error) int {
		fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		return 2
	}
}

// progress prints a live line on stderr every second until ctx ends.
func progress(ctx context.Context, u *load.UAC, w io.Writer) {
	var prev, cur load.Counts
	u.Counts(&prev)
	start := time.Now()
	last := start
	cpu := load.ProcessCPU()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			u.Counts(&cur)
			c := load.ProcessCPU()
			dt := now.Sub(last)
			line := load.Progress(now.Sub(start), &cur, &prev, dt)
			fmt.Fprintf(w, "\r%s  cpu %.0f%%\033[K", line, 100*(c-cpu).Seconds()/dt.Seconds())
			prev, last, cpu = cur, now, c
		}
	}
}

func runUAS(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("viaduct-load uas", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen      = fs.String("listen", "127.0.0.1:5060", "`host:port` to answer on")
		concurrency = fs.Int("concurrency", 0, "cores used (GOMAXPROCS); default all")
		workers     = fs.Int("workers", 0, "sockets in the SO_REUSEPORT group, one goroutine each (default: one per core)")
		reusePort   = fs.Bool("reuse-port", false, "share --listen with other processes' SO_REUSEPORT sockets (other responders started with --reuse-port); without it an address in use is refused")
		advertise   = fs.String("advertise", "", "`host:port` for Contact headers (default: the listen address)")
		delay       = fs.Duration("delay", 0, "delay before final responses (INVITE: 100 and 180 at once, 200 after the delay)")
		failCode    = fs.Int("fail-code", 503, "status code for --fail-rate")
		sdpSize     = fs.Int("sdp-size", 0, "SDP answer size in bytes (default: a minimal SDP)")
		duration    = fs.Duration("duration", 0, "exit after this time (default: run until interrupted)")
		quiet       = fs.Bool("quiet", false, "no live progress line on stderr")
		cpuProfile  = fs.String("cpuprofile", "", "write a CPU profile to `file`")
		spread      = fs.String("spread", "random", "how datagrams are spread over the workers: random (per datagram), cpu (receiving CPU) or hash (kernel default, by source address and port)")
		transportF  = fs.String("transport", "udp", "udp, tcp or tls (tcp and tls: a goroutine per connection; --workers, --reuse-port and --spread are for udp)")
		tlsCert     = fs.String("tls-cert", "", "tls: certificate `file` (PEM); without it and --tls-key, a self-signed certificate for the listen address, localhost and loopback is made in memory")
		tlsKey      = fs.String("tls-key", "", "tls: private key `file` (PEM) of --tls-cert")
		failRate    ratio
		dropRate    ratio
	)
	fs.Var(&failRate, "fail-rate", "share of new requests answered with --fail-code, as a fraction or percentage")
	fs.Var(&dropRate, "drop-rate", "share of new requests not answered at all, as a fraction or percentage")
	if !parseArgs(fs, args) {
		return 2
	}
	fail := failWith(fs)
	setCores(*concurrency)
	stopProfile, err := startProfile(*cpuProfile)
	if err != nil {
		return fail(err)
	}
	defer stopProfile()
	cfg := load.UASConfig{Workers: *workers, ReusePort: *reusePort, Delay: *delay, FailRate: float64(failRate), FailCode: *failCode,
		DropRate: float64(dropRate), SDPSize: *sdpSize}
	if cfg.Spread, err = load.ParseSpread(*spread); err != nil {
		return fail(err)
	}
	if cfg.Listen, err = resolveAddr(*listen); err != nil {
		return fail(err)
	}
	if cfg.Transport, err = load.ParseTransport(*transportF); err != nil {
		return fail(err)
	}
	if cfg.Transport == transport.WS || cfg.Transport == transport.WSS {
		return fail(errors.New("--transport: the responder answers on udp, tcp or tls (ws and wss are for uac and conns)"))
	}
	if cfg.Transport == transport.TLS {
		if cfg.TLS, err = load.ServerTLSConfig(*tlsCert, *tlsKey, cfg.Listen.Addr().String()); err != nil {
			return fail(err)
		}
	} else if *tlsCert != "" || *tlsKey != "" {
		return fail(errors.New("--tls-cert and --tls-key need --transport tls"))
	}
	if *advertise != "" {
		if cfg.Advertise, err = resolveAddr(*advertise); err != nil {
			return fail(err)
		}
	}
	s, err := load.NewUAS(cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && !cfg.ReusePort {
			err = fmt.Errorf("%w; stop the process that has it, or give --reuse-port to every responder that is to share it", err)
		}
		return fail(err)
	}
	if cfg.Transport.Reliable() {
		fmt.Fprintf(stderr, "viaduct-load uas: answering on %v %v, a goroutine per connection\n", cfg.Transport, s.Addr())
	} else {
		fmt.Fprintf(stderr, "viaduct-load uas: answering on %v with %d workers (spread: %v)\n", s.Addr(), s.Workers(), cfg.Spread)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	var prev, cur load.UASCounts
	cpu0 := load.ProcessCPU()
	cpuPrev := cpu0
	last := start
	t := time.NewTicker(time.Second)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-t.C:
			if *quiet {
				continue
			}
			s.Counts(&cur)
			var d load.UASCounts
			d.Sub(&cur, &prev)
			c := load.ProcessCPU()
			dt := now.Sub(last).Seconds()
			conns := ""
			if cfg.Transport.Reliable() {
				conns = fmt.Sprintf("  conns %d", s.Conns())
			}
			fmt.Fprintf(stderr, "\r[%6.1fs] recv %8.0f/s  sent %8.0f/s  invite %d bye %d register %d options %d  dropped %d failed %d canceled %d%s  cpu %.0f%%\033[K",
				now.Sub(start).Seconds(), float64(d.Received)/dt, float64(d.Sent)/dt, cur.Invite, cur.Bye, cur.Register,
				cur.Options, cur.Dropped, cur.Failed, cur.Canceled, conns, 100*(c-cpuPrev).Seconds()/dt)
			prev, last, cpuPrev = cur, now, c
		}
	}
	s.Close()
	s.Counts(&cur)
	el := time.Since(start)
	cpu := load.ProcessCPU() - cpu0
	if !*quiet {
		fmt.Fprint(stderr, "\n")
	}
	fmt.Fprintf(stdout, "viaduct-load uas: %v %v for %.1fs\n", cfg.Transport, s.Addr(), el.Seconds())
	if cfg.Transport.Reliable() {
		fmt.Fprintf(stdout, "  connections: accepted %d, closed %d, closed for bad framing %d, TLS handshakes failed %d\n",
			cur.Accepted, cur.Closed, cur.FramingErrors, cur.HandshakeErrors)
	}
	fmt.Fprintf(stdout, "  received %d (requests %d: INVITE %d, ACK %d, BYE %d, CANCEL %d, OPTIONS %d, REGISTER %d, other %d; responses %d; unparsable %d)\n",
		cur.Received, cur.Requests, cur.Invite, cur.Ack, cur.Bye, cur.Cancel, cur.Options, cur.Register, cur.OtherRequests,
		cur.Responses, cur.ParseErrors)
	fmt.Fprintf(stdout, "  sent %d responses (", cur.Sent)
	first := true
	for code, n := range cur.Codes {
		if n > 0 {
			if !first {
				fmt.Fprint(stdout, ", ")
			}
			fmt.Fprintf(stdout, "%d: %d", code, n)
			first = false
		}
	}
	fmt.Fprintf(stdout, "), send errors %d; dropped %d, failed %d, canceled %d; kernel receive drops %d\n",
		cur.SendErrors, cur.Dropped, cur.Failed, cur.Canceled, cur.KernelDrops)
	fmt.Fprintf(stdout, "  CPU %.2fs (%.2f cores)\n", cpu.Seconds(), cpu.Seconds()/el.Seconds())
	return 0
}

// startProfile starts a CPU profile into file (if not empty) and returns
// the function that ends it.
func startProfile(file string) (func(), error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
