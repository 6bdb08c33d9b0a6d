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
	"flag"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/viaduct-sip/viaduct/resolve"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	code := runWith(ctx, os.Args[1:], os.Stderr, procHooks{stdout: os.Stdout, signals: sigs})
	stop()
	os.Exit(code)
}

// listFlag is a repeatable flag; each value may also be a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

const usageText = `viaduct: a stateless SIP proxy and load balancer (UDP)

Usage:
  viaduct --listen 127.0.0.1:5060 --upstream 10.0.0.1:5060 --upstream 10.0.0.2:5060
  viaduct --config viaduct.yaml [flags overriding the file]

Flags (YAML key in brackets; a flag given on the command line overrides the
file, and --listen / --upstream / --key replace the file's list):
`

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
	fs := flag.NewFlagSet("viaduct", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath = fs.String("config", "", "YAML configuration file")
		listen     listFlag
		upstreams  listFlag
		keys       listFlag
		fc         fileConfig
		check      = fs.Bool("check", false, "validate the configuration, print it on standard output and exit")
		showVer    = fs.Bool("version", false, "print the version and exit")
	)
	fs.Var(&listen, "listen", "UDP `ip:port` to listen on, repeatable or comma separated [listen]")
	fs.Var(&upstreams, "upstream", "upstream `address` to balance over: ip:port, host[:port] (every A/AAAA address) or _sip._udp.DOMAIN (SRV); repeatable or comma separated [upstreams]")
	fs.StringVar(&fc.Balance.Mode, "balance", "", "balancing `mode`: hash (consistent hashing of the key) or round-robin; default hash [balance.mode]")
	fs.Var(&keys, "key", "`METHOD=RULE`: the key hashed for a method (* for the others): call-id, to-aor, from-uri, ruri-user, ruri-aor or header:NAME; repeatable; default REGISTER=to-aor, *=call-id [balance.keys]")
	fs.StringVar(&fc.Admin.Listen, "admin-listen", "", "TCP `ip:port` of the admin HTTP API (/metrics, /healthz, /readyz, status page, upstream states: drain, disable, enable); off or empty: none; a non-loopback address needs admin.token; default 127.0.0.1:9090 [admin.listen]")
	fs.StringVar(&fc.Admin.StateFile, "state-file", "", "`file` where the upstreams' admin states (drain, disable) are saved on every change and restored from at start and reload; default: none, states are lost on restart [admin.state_file]")
	fs.StringVar(&fc.Admin.TokenFile, "admin-token-file", "", "`file` holding the admin API's bearer token (a systemd credential, say) [admin.token_file]")
	fs.StringVar(&fc.Advertise, "advertise", "", "`host[:port]` put in Via and Record-Route; default: the first listen address [advertise]")
	fs.IntVar(&fc.Workers, "workers", 0, "workers (sockets) per listen address; default GOMAXPROCS [workers]")
	fs.BoolVar(&fc.ReusePort, "reuse-port", false, "share the listen addresses with other processes' SO_REUSEPORT sockets (other Viaduct instances started with it), which then take part of the traffic; without it an address another socket holds is refused [reuse_port]")
	fs.IntVar(&fc.RecvBuffer, "recv-buffer", 0, "SO_RCVBUF `bytes` asked for per socket (the kernel doubles it, and caps it at net.core.rmem_max without CAP_NET_ADMIN); default 4 MiB [recv_buffer]")
	fs.IntVar(&fc.SendBuffer, "send-buffer", 0, "SO_SNDBUF `bytes` asked for per socket (the kernel doubles it, and caps it at net.core.wmem_max without CAP_NET_ADMIN); default 4 MiB [send_buffer]")
	fs.IntVar(&fc.Batch, "batch", 0, "datagrams per recvmmsg/sendmmsg; default 32 [batch]")
	parkFlag := fs.Duration("park-after", defaultParkAfter, "a worker whose socket ran empty waits this long in recvmmsg (holding its thread) before it parks in the Go netpoller; 0: park at once; used only if workers <= GOMAXPROCS [park_after]")
	fs.BoolVar(&fc.RecordRoute, "record-route", false, "add Record-Route to INVITE, SUBSCRIBE and REFER that start a dialog [record_route]")
	fs.BoolVar(&fc.Path, "path", false, "add a Path with the client's address to every REGISTER from a client (RFC 3327), and send requests that come back through it to that address [path]")
	fs.IntVar(&fc.MaxMessageSize, "max-message-size", 0, "largest datagram in `bytes`; larger requests get 513; default 16384 [max_message_size]")
	fs.StringVar(&fc.SecretFile, "secret-file", "", "file holding the branch MAC secret (>= 16 bytes); default: random at start [secret_file]")
	fs.StringVar(&fc.PreviousSecretFile, "previous-secret-file", "", "file holding the secret a rotation replaces: responses carrying its MAC are still relayed [previous_secret_file]")
	fs.StringVar(&fc.LogFormat, "log-format", "", "log format: text or json; default text [log_format]")
	fs.StringVar(&fc.LogLevel, "log-level", "", "log level: debug, info, warn, error; default info [log_level]")
	drainFlag := fs.Duration("shutdown-drain", defaultShutdownDrain, "after SIGTERM, keep forwarding this long with /readyz false, then stop; 0: stop at once [shutdown_drain]")
	fs.DurationVar(&fc.DNS.Refresh, "dns-refresh", resolve.DefaultInterval, "how often host-name and SRV upstreams are resolved again [dns.refresh]")
	healthFlag := fs.Bool("health", true, "probe the upstreams (OPTIONS every 5s; their responses to calls count as answers) and stop sending new calls to those that stop answering; false: no upstream is probed [health.enabled]")
	nextHopsFlag := fs.Bool("dns-next-hops", true, "resolve host names that requests from upstreams name as their next hop (RFC 3263); false: answer them 503 [dns.next_hops]")
	fs.Usage = func() {
		// Asked for, the help is the output; after a usage error, the
		// diagnosis.
		out := stderr
		if helpAsked(args) {
			out = stdout
		}
		fs.SetOutput(out)
		fmt.Fprint(out, usageText)
		fs.PrintDefaults()
		fs.SetOutput(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "viaduct: unexpected argument %q (see -help)\n", fs.Arg(0))
		return 2
	}
	if *showVer {
		fmt.Fprintf(stdout, "viaduct %s\n", version.Get())
		return 0
	}

	// The file first, then every flag that was set on the command line.
	merged := fileConfig{}
	if *configPath != "" {
		f, err := readConfigFile(*configPath)
		if err != nil {
			fmt.Fprintf(stderr, "viaduct: %v\n", err)
			return 2
		}
		merged = f
	}
	// The flags also apply over the file a reload reads.
	overlay := func(merged *fileConfig) {
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "listen":
				merged.Listen = listen
			case "upstream":
				merged.Upstreams = nil
				for _, u := range upstreams {
					merged.Upstreams = append(merged.Upstreams, upstreamEntry{Address: u})
				}
			case "balance":
				merged.Balance.Mode = fc.Balance.Mode
			case "key":
				merged.Balance.Keys = map[string]string{}
				for _, kv := range keys {
					m, r, _ := strings.Cut(kv, "=")
					merged.Balance.Keys[strings.TrimSpace(m)] = strings.TrimSpace(r)
				}
			case "admin-listen":
				merged.Admin.Listen = fc.Admin.Listen
				merged.Admin.listenSet = true
			case "state-file":
				merged.Admin.StateFile = fc.Admin.StateFile
			case "admin-token-file":
				merged.Admin.TokenFile = fc.Admin.TokenFile
				merged.Admin.Token = ""
			case "advertise":
				merged.Advertise = fc.Advertise
			case "workers":
				merged.Workers = fc.Workers
				merged.markWritten("workers")
			case "reuse-port":
				merged.ReusePort = fc.ReusePort
			case "recv-buffer":
				merged.RecvBuffer = fc.RecvBuffer
				merged.markWritten("recv_buffer")
			case "send-buffer":
				merged.SendBuffer = fc.SendBuffer
				merged.markWritten("send_buffer")
			case "batch":
				merged.Batch = fc.Batch
				merged.markWritten("batch")
			case "park-after":
				d := *parkFlag
				merged.ParkAfter = &d
			case "record-route":
				merged.RecordRoute = fc.RecordRoute
			case "path":
				merged.Path = fc.Path
			case "max-message-size":
				merged.MaxMessageSize = fc.MaxMessageSize
				merged.markWritten("max_message_size")
			case "secret-file":
				merged.SecretFile = fc.SecretFile
				merged.Secret = ""
			case "previous-secret-file":
				merged.PreviousSecretFile = fc.PreviousSecretFile
				merged.PreviousSecret = ""
			case "log-format":
				merged.LogFormat = fc.LogFormat
			case "log-level":
				merged.LogLevel = fc.LogLevel
			case "shutdown-drain":
				d := *drainFlag
				merged.ShutdownDrain = &d
			case "dns-next-hops":
				v := *nextHopsFlag
				merged.DNS.NextHops = &v
			case "dns-refresh":
				merged.DNS.Refresh = fc.DNS.Refresh
				merged.markWritten("dns.refresh")
			case "health":
				if merged.Health == nil {
					merged.Health = &health.Section{}
				}
				v := *healthFlag
				merged.Health.Enabled = &v
			}
		})
	}
	overlay(&merged)
	logger, err := newLogger(stderr, merged.LogFormat, merged.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "viaduct: %v\n", &configError{file: *configPath, err: err})
		return 2
	}
	if err := checkAdminListen(&merged.Admin); err != nil {
		fmt.Fprintf(stderr, "viaduct: %v\n", &configError{file: *configPath, err: err})
		return 2
	}
	if err := checkStateFile(&merged.Admin); err != nil {
		fmt.Fprintf(stderr, "viaduct: %v\n", &configError{file: *configPath, err: err})
		return 2
	}
	eng, chk, dns, hops, err := startUpstreams(ctx, &merged, logger, hooks.resolver)
	if err != nil {
		fmt.Fprintf(stderr, "viaduct: %v\n", &configError{file: *configPath, err: err})
		return errorExitCode(err)
	}
	secret := merged.Secret != "" || merged.SecretFile != ""
	if *check {
		printCheck(stdout, eng, chk, merged.Admin, secret)
		return 0
	}
	v := version.Get()
	logger.Info("viaduct starting", "version", v.Version, "revision", v.Revision, "modified", v.Modified, "go", v.GoVersion, "config", *configPath, "pid", os.Getpid())
	if !secret {
		logger.Warn("no secret configured: using a random one; responses to requests forwarded by another instance or before a restart will be dropped")
	}
	if eng.Config().Balance == balancer.ModeRoundRobin {
		logger.Warn("balance mode round-robin: retransmissions, CANCEL, ACK and in-dialog requests may reach another upstream than their INVITE; use it only when any upstream can serve any request")
	}
	// Saved admin states before the first datagram: a drained upstream
	// takes no new dialog after a restart.
	states := stateFile(merged.Admin)
	restoreStates(states, chk, nil, logger)
	if err := eng.Start(ctx); err != nil {
		logger.Error("cannot start", "err", startError(err, merged.ReusePort))
		return 1
	}
	if err := startHealth(eng, chk); err != nil {
		logger.Error("cannot start health checks", "err", err)
		eng.Close()
		return 1
	}
	op := &ops{logger: logger, states: states}
	op.reloads.Loaded(configHash(*configPath, args))
	op.ready.SetListening(true)
	if err := op.start(merged.Admin, eng, chk); err != nil {
		logger.Error("cannot start the admin API", "err", err)
		chk.Close()
		eng.Close()
		return 1
	}
	rt := &runtime{path: *configPath, overlay: overlay, logger: logger, eng: eng, chk: chk, dns: dns, hops: hops, op: op, boot: &merged}
	rt.cur.Store(&merged)
	if op.handler != nil {
		op.handler.Handle("POST /api/v1/reload", rt.reloadHandler(ctx))
	}
	describeDNS(logger, &merged, dns)
	dnsCtx, stopDNS := context.WithCancel(ctx)
	dnsDone := rt.runDNS(dnsCtx)
	rt.serve(ctx, hooks.signals)
	stopDNS()
	<-dnsDone
	logger.Info("stopping")
	op.ready.SetShuttingDown()
	op.stop()
	chk.Close()
	if err := eng.Close(); err != nil {
		logger.Error("closing sockets", "err", err)
	}
	logStats(logger, eng.Stats())
	// How SO_REUSEPORT spread the traffic: one busy source lands on one
	// worker (the kernel hashes the 4-tuple).
	var per []uint64
	for _, s := range eng.WorkerStats(nil) {
		per = append(per, s.DatagramsIn)
	}
	logger.Info("datagrams received per worker", "datagrams_in", fmt.Sprint(per))
	return 0
}

// helpAsked reports whether args ask for the help (-h, -help, --help
// before the first argument that is not a flag).
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--h", "--help":
			return true
		case "--":
			return false
		}
	}
	return false
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
func printCheck(w io.Writer, eng *fastpath.Engine, chk *health.Checker, ac adminConfig, secret bool) {
	c := eng.Config()
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
		c.Listen, eng.Advertise(), c.Workers, c.ReusePort, strings.Join(addrs, " "), c.Balance, keys, c.RecordRoute, c.Path, chk.AllDown(), c.MaxMessageSize, c.Batch, c.ParkAfter, c.RecvBuffer, c.SendBuffer,
		map[bool]string{true: "configured", false: "random"}[secret], c.PreviousSecret != nil, cmp.Or(ac.StateFile, "-"), adminAddr)
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
