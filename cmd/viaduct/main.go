// Command viaduct is a stateless SIP proxy and load balancer over UDP.
//
// Usage:
//
//	viaduct --listen 127.0.0.1:5060 --upstream 127.0.0.1:5071 --upstream 127.0.0.1:5072
//	viaduct --config viaduct.yaml [flags that override the file]
//
// Every setting can be given in a YAML file (--config), and most also as a
// flag (upstream weights, priorities and IDs, health check settings and the
// admin token only in the file; --health turns health checks, on by
// default, off); a flag given on the command line overrides the
// file's value, and a list flag (--listen, --upstream, --key) replaces the
// file's whole list. Unknown YAML keys and invalid values are refused at
// start with the key and the reason. SIGHUP (or POST /api/v1/reload)
// reloads the configuration file (see reload.go). SIGTERM drains: /readyz
// turns 503 and Viaduct keeps forwarding for shutdown_drain, then stops;
// SIGINT (or a second SIGTERM) stops at once. Stopping is clean: the admin
// API and the health checks stop, the sockets are closed, the workers
// finish their batch, and the counters are logged.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/version"
	"github.com/viaduct-sip/viaduct/parser"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	code := runWith(ctx, os.Args[1:], os.Stderr, procHooks{stdout: os.Stdout, signals: sigs})
	stop()
	os.Exit(code)
}

// run is main without the process: it parses args, starts the engine and
// blocks until ctx is done. It returns the exit code: 0 after a clean stop,
// 2 for a usage or configuration error, 1 for a runtime error. What the
// process prints on its standard output (--check, --version, --help) and
// its errors and logs all go to w, as on a terminal.
func run(ctx context.Context, args []string, w io.Writer) int {
	return runWith(ctx, args, w, procHooks{stdout: w})
}

// runWith is run with the process's standard output and signals (SIGHUP
// reloads, SIGTERM drains and stops: reload.go) and, in tests, a DNS
// resolver. Errors and logs go to stderr.
func runWith(ctx context.Context, args []string, stderr io.Writer, hooks procHooks) int {
	stdout := hooks.stdout
	if stdout == nil {
		stdout = stderr
	}
	cl := newCmdLine(args, stdout, stderr)
	if code, done := cl.parse(args, stdout, stderr); done {
		return code
	}
	fc, logger, err := cl.load(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "viaduct: %v\n", err)
		return 2
	}
	rt, err := newRuntime(ctx, cl, fc, logger, hooks.resolver)
	if err != nil {
		fmt.Fprintf(stderr, "viaduct: %v\n", &configError{file: cl.configPath, err: err})
		return errorExitCode(err)
	}
	if cl.check {
		printCheck(stdout, rt.eng, rt.chk, fc)
		rt.edge.printCheck(stdout)
		return 0
	}
	if !rt.start(ctx, args) {
		return 1
	}
	rt.run(ctx, hooks.signals)
	rt.shutdown()
	return 0
}

// load reads the configuration file, if any, applies the command line over
// it and checks what must be right before anything is built: the logging
// keys (the logger writes to logs) and the admin block. Errors are ready to
// print (configError).
func (cl *cmdLine) load(logs io.Writer) (*fileConfig, *slog.Logger, error) {
	fc := &fileConfig{}
	if cl.configPath != "" {
		f, err := readConfigFile(cl.configPath)
		if err != nil {
			return nil, nil, err
		}
		*fc = f
	}
	cl.overlay(fc)
	logger, err := newLogger(logs, fc.LogFormat, fc.LogLevel)
	if err == nil {
		err = fc.Admin.check()
	}
	if err != nil {
		return nil, nil, &configError{file: cl.configPath, err: err}
	}
	return fc, logger, nil
}

// newRuntime builds the engine, the health checker and the DNS watchers of
// fc (startUpstreams): everything but the sockets, the probes and the admin
// API, which start starts.
func newRuntime(ctx context.Context, cl *cmdLine, fc *fileConfig, logger *slog.Logger, resolver *net.Resolver) (*runtime, error) {
	ed, err := newEdge(fc, logger)
	if err != nil {
		return nil, err
	}
	cp, err := newCapture(fc, logger)
	if err != nil {
		return nil, err
	}
	ss := &streamServers{}
	rt := &runtime{path: cl.configPath, overlay: cl.overlay, logger: logger, capture: cp, edge: ed, streams: ss, boot: fc}
	eng, chk, dns, hops, err := startUpstreams(ctx, fc, ss, ed, logger, resolver, rt.stages())
	if err != nil {
		return nil, err
	}
	ed.attach(eng)
	rt.eng, rt.chk, rt.dns, rt.hops = eng, chk, dns, hops
	rt.cur.Store(fc)
	return rt, nil
}

// start restores the saved admin states, then starts the engine's sockets,
// the health checks and the admin API, in that order. On failure it logs
// why, closes what it started and returns false.
func (rt *runtime) start(ctx context.Context, args []string) bool {
	fc, logger := rt.boot, rt.logger
	rt.logStart()
	// Saved admin states before the first datagram: a drained upstream
	// takes no new dialog after a restart.
	states := stateFile(fc.Admin)
	restoreStates(states, rt.chk, nil, logger)
	if err := rt.eng.Start(ctx); err != nil {
		logger.Error("cannot start", "err", startError(err, fc.ReusePort))
		return false
	}
	if err := rt.startCapture(ctx); err != nil {
		logger.Error("cannot start", "err", err)
		rt.eng.Close()
		return false
	}
	if err := startHealth(rt.eng, rt.chk); err != nil {
		logger.Error("cannot start health checks", "err", err)
		rt.eng.Close()
		rt.capture.Close()
		return false
	}
	collectors := append([]prometheus.Collector{rt.streams.collector(), rt.capture.Collector()}, rt.edge.collectors()...)
	rt.op = &ops{logger: logger, states: states, collectors: collectors, connections: rt.connections}
	rt.op.reloads.Loaded(configHash(rt.path, args))
	rt.op.ready.SetListening(true)
	if err := rt.op.start(fc.Admin, rt.eng, rt.chk); err != nil {
		logger.Error("cannot start the admin API", "err", err)
		rt.chk.Close()
		rt.eng.Close()
		rt.capture.Close()
		return false
	}
	if rt.op.handler != nil {
		rt.op.handler.Handle("POST /api/v1/reload", rt.reloadHandler(ctx))
	}
	rt.mountTraces()
	rt.edge.start(ctx, rt.op.handler, logger)
	describeDNS(logger, fc, rt.dns)
	return true
}

// logStart logs the start with the version, and warns of the settings
// that cost responses or affinity.
func (rt *runtime) logStart() {
	v := version.Get()
	rt.logger.Info("viaduct starting", "version", v.Version, "revision", v.Revision, "modified", v.Modified,
		"go", v.GoVersion, "config", rt.path, "pid", os.Getpid())
	if !rt.boot.hasSecret() {
		rt.logger.Warn("no secret configured: using a random one; " +
			"responses to requests forwarded by another instance or before a restart will be dropped")
	}
	if rt.eng.Config().Balance == balancer.ModeRoundRobin {
		rt.logger.Warn("balance mode round-robin: retransmissions, CANCEL, ACK and in-dialog requests " +
			"may reach another upstream than their INVITE; use it only when any upstream can serve any request")
	}
}

// run forwards, refreshes the DNS upstreams and handles the signals
// (serve) until ctx is done or a stop is asked for.
func (rt *runtime) run(ctx context.Context, sigs <-chan os.Signal) {
	dnsCtx, stopDNS := context.WithCancel(ctx)
	dnsDone := rt.runDNS(dnsCtx)
	rt.serve(ctx, sigs)
	stopDNS()
	<-dnsDone
}

// shutdown stops the admin API, the health checks and the engine, and logs
// the final counters.
func (rt *runtime) shutdown() {
	rt.logger.Info("stopping")
	rt.op.ready.SetShuttingDown()
	rt.op.stop()
	rt.chk.Close()
	if err := rt.eng.Close(); err != nil {
		rt.logger.Error("closing sockets", "err", err)
	}
	rt.capture.Close()
	rt.edge.saveBans(rt.logger)
	logStats(rt.logger, rt.eng.Stats())
	// How SO_REUSEPORT spread the traffic: one busy source lands on one
	// worker (the kernel hashes the 4-tuple).
	var per []uint64
	for _, s := range rt.eng.WorkerStats(nil) {
		per = append(per, s.DatagramsIn)
	}
	rt.logger.Info("datagrams received per worker", "datagrams_in", fmt.Sprint(per))
}

// startError adds to an error of Engine.Start for an address in use what
// the operator can do about it.
func startError(err error, reusePort bool) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	if reusePort {
		return fmt.Errorf("%w; the process that has it does not share it (reuse_port needs SO_REUSEPORT on every socket, all of one user)", err)
	}
	return fmt.Errorf("%w; another process (another Viaduct?) serves it: stop it, or set reuse_port: true (--reuse-port) on every instance that is to share the address", err)
}

// printCheck prints the effective configuration for --check: one line of
// settings, then one per upstream with its balancing and health settings.
func printCheck(w io.Writer, eng *fastpath.Engine, chk *health.Checker, fc *fileConfig) {
	c, ac := eng.Config(), fc.Admin
	uc, _ := fc.udpConfig() // checked with the engine's configuration
	secret := fc.hasSecret()
	targets := eng.Targets()
	addrs := make([]string, len(targets))
	for i, t := range targets {
		addrs[i] = t.Addr.String()
	}
	keys := "-"
	if c.Balance == balancer.ModeHash {
		rules := c.Keys.Rules()
		ms := make([]string, 0, len(rules))
		for m := range rules {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		for i, m := range ms {
			ms[i] = m + "=" + rules[m]
		}
		keys = strings.Join(ms, ",")
	}
	adminAddr := ac.effectiveListen()
	if admin.Disabled(adminAddr) {
		adminAddr = "off"
	}
	fmt.Fprintf(w, "viaduct: configuration OK: listen=%v advertise=%s workers=%d reuse_port=%v upstreams=[%s] balance=%s keys=%s record_route=%v path=%v all_down=%s max_message_size=%d batch=%d park_after=%v recv_buffer=%d send_buffer=%d secret=%s previous_secret=%v state_file=%s admin=%s\n",
		c.Listeners, eng.Advertise(), c.Workers, uc.ReusePort, strings.Join(addrs, " "), c.Balance, keys, c.RecordRoute, c.Path, chk.AllDown(), c.MaxMessageSize, uc.Batch, uc.ParkAfter, uc.RecvBuffer, uc.SendBuffer,
		map[bool]string{true: "configured", false: "random"}[secret], c.PreviousSecret != nil, cmp.Or(ac.StateFile, "-"), adminAddr)
	printCapture(w, fc)
	status := chk.Status()
	for i, t := range targets {
		probe := "never"
		if i < len(status) && !status[i].Probe.NeverProbe {
			p := status[i].Probe
			probe = fmt.Sprintf("%s every %v timeout %v failures %d successes %d accept %s detection_bound %v", p.Method, p.Interval, p.Timeout, p.Failures, p.Successes, p.Accept, p.DetectionBound())
			if p.PassiveCount > 0 {
				probe += fmt.Sprintf(" passive_503 %d/%v", p.PassiveCount, p.PassiveWindow)
			}
		}
		fmt.Fprintf(w, "viaduct: upstream id=%s address=%s weight=%d priority=%d probe=%s\n", t.ID, t.Addr, t.Weight, t.Priority, probe)
	}
}

// logStats logs the final counters in one line.
func logStats(l *slog.Logger, s fastpath.Stats) {
	var req uint64
	attrs := []any{}
	for i, n := range s.RequestsByMethod {
		req += n
		if n > 0 {
			name := parser.Method(i).String()
			if name == "" {
				name = "other"
			}
			attrs = append(attrs, slog.Uint64("rx_"+name, n))
		}
	}
	var resp uint64
	for _, n := range s.ResponsesForwarded {
		resp += n
	}
	attrs = append(attrs,
		slog.Uint64("requests", req), slog.Uint64("requests_forwarded", s.RequestsForwarded),
		slog.Uint64("responses", s.ResponsesReceived), slog.Uint64("responses_forwarded", resp),
		slog.Uint64("datagrams_in", s.DatagramsIn), slog.Uint64("datagrams_out", s.DatagramsOut),
		slog.Uint64("kernel_drops", s.KernelDrops))
	if s.KeyFallbacks > 0 {
		attrs = append(attrs, slog.Uint64("key_fallbacks", s.KeyFallbacks))
	}
	for i, n := range s.LocalReplies {
		if n > 0 {
			attrs = append(attrs, slog.Uint64(fmt.Sprintf("local_%d", fastpath.LocalCode(i).Status()), n))
		}
	}
	for i, n := range s.Drops {
		if n > 0 {
			attrs = append(attrs, slog.Uint64("drop_"+fastpath.DropReason(i).String(), n))
		}
	}
	l.Info("stopped", attrs...)
}
