package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/version"
	"github.com/viaduct-sip/viaduct/resolve"
)

// The command line. Every flag but --config, --check and --version stands
// for a key of the configuration file (named in brackets in its help); a
// flag given on the command line overrides that key of the file, at start
// and at every reload (cmdLine.overlay).

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

const usageText = `viaduct: a stateless SIP proxy and load balancer (UDP, TCP, TLS)

Usage:
  viaduct --listen 127.0.0.1:5060 --upstream 10.0.0.1:5060 --upstream 10.0.0.2:5060
  viaduct --config viaduct.yaml [flags overriding the file]

Flags (YAML key in brackets; a flag given on the command line overrides the
file, and --listen / --upstream / --key replace the file's list):
`

// cmdLine is the parsed command line: the flags' values and, per flag, how
// it applies over a configuration file.
type cmdLine struct {
	fs          *flag.FlagSet
	configPath  string
	check       bool
	showVersion bool

	// set holds the values of the flags that are plain file keys; the
	// others have fields of their own.
	set                     fileConfig
	listen, upstreams, keys listFlag
	parkAfter, drain        time.Duration
	health, nextHops        bool

	// apply, by flag name, writes the flag's value into a file's
	// configuration.
	apply map[string]func(*fileConfig)
}

// newCmdLine defines the flags. Help goes to stdout when args ask for it,
// else (a usage error) to stderr.
func newCmdLine(args []string, stdout, stderr io.Writer) *cmdLine {
	cl := &cmdLine{fs: flag.NewFlagSet("viaduct", flag.ContinueOnError), apply: map[string]func(*fileConfig){}}
	cl.fs.SetOutput(stderr)
	cl.fs.Usage = func() {
		out := stderr
		if helpAsked(args) {
			out = stdout
		}
		cl.fs.SetOutput(out)
		fmt.Fprint(out, usageText)
		cl.fs.PrintDefaults()
		cl.fs.SetOutput(stderr)
	}
	cl.defineProcessFlags()
	cl.defineSocketFlags()
	cl.defineUpstreamFlags()
	cl.defineAdminFlags()
	cl.defineCaptureFlags()
	return cl
}

// parse parses args. done reports that the process is to exit with code
// now: after -help or -version (0) or a usage error (2).
func (cl *cmdLine) parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	if err := cl.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if cl.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "viaduct: unexpected argument %q (see -help)\n", cl.fs.Arg(0))
		return 2, true
	}
	if cl.showVersion {
		fmt.Fprintf(stdout, "viaduct %s\n", version.Get())
		return 0, true
	}
	return 0, false
}

// overlay writes the value of every flag given on the command line into
// fc: over the file at start, and over the file a reload reads.
func (cl *cmdLine) overlay(fc *fileConfig) {
	cl.fs.Visit(func(f *flag.Flag) {
		if apply := cl.apply[f.Name]; apply != nil {
			apply(fc)
		}
	})
}

// onSet registers how the flag name applies over a file's configuration.
func (cl *cmdLine) onSet(name string, apply func(*fileConfig)) { cl.apply[name] = apply }

// defineProcessFlags defines the flags of the process itself: the file,
// --check and --version, logging and the shutdown.
func (cl *cmdLine) defineProcessFlags() {
	fs := cl.fs
	fs.StringVar(&cl.configPath, "config", "", "YAML configuration file")
	fs.BoolVar(&cl.check, "check", false, "validate the configuration, print it on standard output and exit")
	fs.BoolVar(&cl.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&cl.set.LogFormat, "log-format", "", "log format: text or json; default text [log_format]")
	cl.onSet("log-format", func(fc *fileConfig) { fc.LogFormat = cl.set.LogFormat })
	fs.StringVar(&cl.set.LogLevel, "log-level", "", "log level: debug, info, warn, error; default info [log_level]")
	cl.onSet("log-level", func(fc *fileConfig) { fc.LogLevel = cl.set.LogLevel })
	fs.DurationVar(&cl.drain, "shutdown-drain", defaultShutdownDrain,
		"after SIGTERM, keep forwarding this long with /readyz false, then stop; 0: stop at once [shutdown_drain]")
	cl.onSet("shutdown-drain", func(fc *fileConfig) { d := cl.drain; fc.ShutdownDrain = &d })
	fs.StringVar(&cl.set.SecretFile, "secret-file", "",
		"file holding the branch MAC secret (>= 16 bytes); default: random at start [secret_file]")
	cl.onSet("secret-file", func(fc *fileConfig) { fc.SecretFile, fc.Secret = cl.set.SecretFile, "" })
	fs.StringVar(&cl.set.PreviousSecretFile, "previous-secret-file", "",
		"file holding the secret a rotation replaces: responses carrying its MAC are still relayed [previous_secret_file]")
	cl.onSet("previous-secret-file", func(fc *fileConfig) {
		fc.PreviousSecretFile, fc.PreviousSecret = cl.set.PreviousSecretFile, ""
	})
}

// defineSocketFlags defines the flags of the listen sockets, the workers
// and the messages.
func (cl *cmdLine) defineSocketFlags() {
	fs, set := cl.fs, &cl.set
	fs.Var(&cl.listen, "listen", "`address` to listen on: ip:port (UDP and TCP), udp:ip:port, tcp:ip:port, tls:ip:port, ws:ip:port or wss:ip:port; "+
		"repeatable or comma separated [listen]")
	cl.onSet("listen", func(fc *fileConfig) { fc.Listen = cl.listen })
	fs.StringVar(&set.Advertise, "advertise", "",
		"`host[:port]` put in Via and Record-Route; default: the first listen address [advertise]")
	cl.onSet("advertise", func(fc *fileConfig) { fc.Advertise = set.Advertise })
	fs.IntVar(&set.Workers, "workers", 0, "workers (sockets) per listen address; default GOMAXPROCS [workers]")
	cl.onSet("workers", func(fc *fileConfig) { fc.Workers = set.Workers; fc.markWritten("workers") })
	fs.BoolVar(&set.ReusePort, "reuse-port", false,
		"share the listen addresses with other processes' SO_REUSEPORT sockets (other Viaduct instances started with it), "+
			"which then take part of the traffic; without it an address another socket holds is refused [reuse_port]")
	cl.onSet("reuse-port", func(fc *fileConfig) { fc.ReusePort = set.ReusePort })
	fs.IntVar(&set.RecvBuffer, "recv-buffer", 0, "SO_RCVBUF `bytes` asked for per socket (the kernel doubles it, "+
		"and caps it at net.core.rmem_max without CAP_NET_ADMIN); default 4 MiB [recv_buffer]")
	cl.onSet("recv-buffer", func(fc *fileConfig) { fc.RecvBuffer = set.RecvBuffer; fc.markWritten("recv_buffer") })
	fs.IntVar(&set.SendBuffer, "send-buffer", 0, "SO_SNDBUF `bytes` asked for per socket (the kernel doubles it, "+
		"and caps it at net.core.wmem_max without CAP_NET_ADMIN); default 4 MiB [send_buffer]")
	cl.onSet("send-buffer", func(fc *fileConfig) { fc.SendBuffer = set.SendBuffer; fc.markWritten("send_buffer") })
	fs.IntVar(&set.Batch, "batch", 0, "datagrams per recvmmsg/sendmmsg; default 32 [batch]")
	cl.onSet("batch", func(fc *fileConfig) { fc.Batch = set.Batch; fc.markWritten("batch") })
	fs.DurationVar(&cl.parkAfter, "park-after", defaultParkAfter,
		"a worker whose socket ran empty waits this long in recvmmsg (holding its thread) before it parks in the Go netpoller; "+
			"0: park at once; used only if workers <= GOMAXPROCS [park_after]")
	cl.onSet("park-after", func(fc *fileConfig) { d := cl.parkAfter; fc.ParkAfter = &d })
	fs.StringVar(&set.TLS.CertFile, "tls-cert", "", "PEM certificate `file` (chain) of the tls: listeners, read again on reload [tls.cert_file]")
	cl.onSet("tls-cert", func(fc *fileConfig) { fc.TLS.CertFile = set.TLS.CertFile })
	fs.StringVar(&set.TLS.KeyFile, "tls-key", "", "PEM private key `file` of --tls-cert [tls.key_file]")
	cl.onSet("tls-key", func(fc *fileConfig) { fc.TLS.KeyFile = set.TLS.KeyFile })
	fs.IntVar(&set.UDPMTU, "udp-mtu", 0, "a request for a UDP next hop larger than this many `bytes` goes over TCP when Viaduct "+
		"listens on TCP (RFC 3261 18.1.1); -1: never; default 1300 [udp_mtu]")
	cl.onSet("udp-mtu", func(fc *fileConfig) { fc.UDPMTU = set.UDPMTU; fc.markWritten("udp_mtu") })
	fs.IntVar(&set.MaxMessageSize, "max-message-size", 0,
		"largest datagram in `bytes`; larger requests get 513; default 16384 [max_message_size]")
	cl.onSet("max-message-size", func(fc *fileConfig) {
		fc.MaxMessageSize = set.MaxMessageSize
		fc.markWritten("max_message_size")
	})
}

// defineUpstreamFlags defines the flags of the upstreams, balancing,
// routing, DNS and health checks.
func (cl *cmdLine) defineUpstreamFlags() {
	fs, set := cl.fs, &cl.set
	fs.Var(&cl.upstreams, "upstream", "upstream `address` to balance over: ip:port, host[:port] (every A/AAAA address) "+
		"or _sip._udp.DOMAIN (SRV); repeatable or comma separated [upstreams]")
	cl.onSet("upstream", func(fc *fileConfig) {
		fc.Upstreams = nil
		for _, u := range cl.upstreams {
			fc.Upstreams = append(fc.Upstreams, upstreamEntry{Address: u})
		}
	})
	fs.StringVar(&set.Balance.Mode, "balance", "",
		"balancing `mode`: hash (consistent hashing of the key) or round-robin; default hash [balance.mode]")
	cl.onSet("balance", func(fc *fileConfig) { fc.Balance.Mode = set.Balance.Mode })
	fs.Var(&cl.keys, "key", "`METHOD=RULE`: the key hashed for a method (* for the others): "+
		"call-id, to-aor, from-uri, ruri-user, ruri-aor or header:NAME; repeatable; default REGISTER=to-aor, *=call-id [balance.keys]")
	cl.onSet("key", func(fc *fileConfig) {
		fc.Balance.Keys = map[string]string{}
		for _, kv := range cl.keys {
			m, r, _ := strings.Cut(kv, "=")
			fc.Balance.Keys[strings.TrimSpace(m)] = strings.TrimSpace(r)
		}
	})
	fs.BoolVar(&set.RecordRoute, "record-route", false, "add Record-Route to INVITE, SUBSCRIBE and REFER that start a dialog [record_route]")
	cl.onSet("record-route", func(fc *fileConfig) { fc.RecordRoute = set.RecordRoute })
	fs.BoolVar(&set.Path, "path", false, "add a Path with the client's address to every REGISTER from a client (RFC 3327), "+
		"and send requests that come back through it to that address [path]")
	cl.onSet("path", func(fc *fileConfig) { fc.Path = set.Path })
	fs.DurationVar(&set.DNS.Refresh, "dns-refresh", resolve.DefaultInterval, "how often host-name and SRV upstreams are resolved again [dns.refresh]")
	cl.onSet("dns-refresh", func(fc *fileConfig) { fc.DNS.Refresh = set.DNS.Refresh; fc.markWritten("dns.refresh") })
	fs.BoolVar(&cl.nextHops, "dns-next-hops", true, "resolve host names that requests from upstreams name as their next hop (RFC 3263); "+
		"false: answer them 503 [dns.next_hops]")
	cl.onSet("dns-next-hops", func(fc *fileConfig) { v := cl.nextHops; fc.DNS.NextHops = &v })
	fs.BoolVar(&cl.health, "health", true, "probe the upstreams (OPTIONS every 5s; their responses to calls count as answers) "+
		"and stop sending new calls to those that stop answering; false: no upstream is probed [health.enabled]")
	cl.onSet("health", func(fc *fileConfig) {
		if fc.Health == nil {
			fc.Health = &health.Section{}
		}
		v := cl.health
		fc.Health.Enabled = &v
	})
}

// defineAdminFlags defines the flags of the admin block.
func (cl *cmdLine) defineAdminFlags() {
	fs, ac := cl.fs, &cl.set.Admin
	fs.StringVar(&ac.Listen, "admin-listen", "", "TCP `ip:port` of the admin HTTP API "+
		"(/metrics, /healthz, /readyz, status page, upstream states: drain, disable, enable); off or empty: none; "+
		"a non-loopback address needs admin.token; default 127.0.0.1:9090 [admin.listen]")
	cl.onSet("admin-listen", func(fc *fileConfig) { fc.Admin.Listen, fc.Admin.listenSet = ac.Listen, true })
	fs.StringVar(&ac.StateFile, "state-file", "", "`file` where the upstreams' admin states (drain, disable) are saved on every change "+
		"and restored from at start and reload; default: none, states are lost on restart [admin.state_file]")
	cl.onSet("state-file", func(fc *fileConfig) { fc.Admin.StateFile = ac.StateFile })
	fs.StringVar(&ac.TokenFile, "admin-token-file", "",
		"`file` holding the admin API's bearer token (a systemd credential, say) [admin.token_file]")
	cl.onSet("admin-token-file", func(fc *fileConfig) { fc.Admin.TokenFile, fc.Admin.Token = ac.TokenFile, "" })
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
