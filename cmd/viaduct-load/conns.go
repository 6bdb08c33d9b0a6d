package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
)

// tlsClientFlags are the TLS client flags uac and conns share.
type tlsClientFlags struct {
	ca         *string
	insecure   *bool
	serverName *string
	resume     *bool
}

func addTLSClientFlags(fs *flag.FlagSet) *tlsClientFlags {
	return &tlsClientFlags{
		ca:         fs.String("tls-ca", "", "tls: CA certificate `file` (PEM) to check the server's certificate against (default: the system's)"),
		insecure:   fs.Bool("tls-insecure", false, "tls: do not check the server's certificate (benchmarks against a self-signed one)"),
		serverName: fs.String("tls-server-name", "", "tls: `name` the server's certificate must have (default: the target's address)"),
		resume:     fs.Bool("tls-resume", false, "tls: resume sessions (RFC 8446 2.2) on later connections instead of a full handshake each"),
	}
}

func (f *tlsClientFlags) config() (*tls.Config, error) {
	c, err := load.ClientTLSConfig(*f.ca, *f.insecure, *f.serverName)
	if err == nil && *f.resume {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	}
	return c, err
}

func runConns(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("viaduct-load conns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		target      = fs.String("target", "", "`host:port` to connect to (required)")
		transportF  = fs.String("transport", "tcp", "tcp, tls, ws or wss (ws, wss: upgraded with the sip subprotocol, as a browser does)")
		count       = fs.Int("count", 1000, "connections to open")
		hold        = fs.Duration("hold", 30*time.Second, "how long to hold the connections once open")
		keepalive   = fs.String("keepalive", "none", "what each connection sends once open: none, crlf (a double CRLF ping) or options (an OPTIONS, its response awaited)")
		bind        = fs.String("bind", "", "comma-separated local `addresses` to connect from, round-robin (default: the kernel's choice, or as many of 127.0.0.0/8 as the count needs against a loopback target)")
		parallel    = fs.Int("parallel", 64, "connections being opened at once")
		dialTimeout = fs.Duration("dial-timeout", 5*time.Second, "time to open a connection (TLS handshake and OPTIONS response included)")
		jsonOut     = fs.String("json", "", "write the report as JSON to `file` (\"-\" for stdout, replacing the text)")
		quiet       = fs.Bool("quiet", false, "no progress on stderr")
		tlsFlags    = addTLSClientFlags(fs)
	)
	if !parseArgs(fs, args) {
		return 2
	}
	fail := failWith(fs)
	if *target == "" {
		return fail(errors.New("--target is required"))
	}
	cfg := load.ConnsConfig{Count: *count, Hold: *hold, Parallel: *parallel, DialTimeout: *dialTimeout}
	var err error
	if cfg.Target, err = resolveAddr(*target); err != nil {
		return fail(err)
	}
	if cfg.Transport, err = load.ParseTransport(*transportF); err != nil {
		return fail(err)
	}
	if !cfg.Transport.Reliable() {
		return fail(errors.New("--transport: conns holds tcp, tls, ws or wss connections"))
	}
	if cfg.Transport.Secure() {
		if cfg.TLS, err = tlsFlags.config(); err != nil {
			return fail(err)
		}
	}
	if cfg.Keepalive, err = load.ParseKeepalive(*keepalive); err != nil {
		return fail(err)
	}
	if cfg.Bind, err = parseBind(*bind); err != nil {
		return fail(err)
	}
	progress := func(opened, failed int) {
		if !*quiet {
			fmt.Fprintf(stderr, "\rconns: opened %d, failed %d of %d\033[K", opened, failed, cfg.Count)
		}
	}
	if !*quiet {
		fmt.Fprintf(stderr, "viaduct-load conns: opening %d %v connections to %v\n", cfg.Count, cfg.Transport, cfg.Target)
	}
	rep, err := load.HoldConns(ctx, cfg, progress)
	if err != nil {
		return fail(err)
	}
	if !*quiet {
		fmt.Fprint(stderr, "\n")
	}
	if *jsonOut != "-" {
		writeConnsReport(stdout, rep)
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fail(err)
		}
		b = append(b, '\n')
		if *jsonOut == "-" {
			_, err = stdout.Write(b)
		} else {
			err = os.WriteFile(*jsonOut, b, 0o644)
		}
		if err != nil {
			return fail(err)
		}
	}
	if rep.Opened < rep.Requested || rep.Alive < rep.Opened {
		return 1
	}
	return 0
}

// writeConnsReport writes rep as text.
func writeConnsReport(w io.Writer, rep *load.ConnsReport) {
	fmt.Fprintf(w, "viaduct-load conns: %d %s connections to %s (keepalive %s)\n", rep.Requested, rep.Transport, rep.Target, rep.Keepalive)
	fmt.Fprintf(w, "  %-22s %d in %.3fs (%.0f/s)\n", "opened", rep.Opened, rep.OpenSeconds, rep.OpenRate)
	fmt.Fprintf(w, "  %-22s %d", "failed", rep.Failed)
	reasons := make([]string, 0, len(rep.FailedBy))
	for r := range rep.FailedBy {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for i, r := range reasons {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(w, "%s%s %d", sep, r, rep.FailedBy[r])
		if i == len(reasons)-1 {
			fmt.Fprint(w, ")")
		}
	}
	fmt.Fprintln(w)
	if rep.Keepalive == "options" {
		fmt.Fprintf(w, "  %-22s %d\n", "OPTIONS answered", rep.Answered)
	}
	fmt.Fprintf(w, "  %-22s %d after %.1fs held\n", "still open", rep.Alive, rep.HeldSeconds)
	if len(rep.SourceAddrs) > 0 {
		fmt.Fprintf(w, "  %-22s %s\n", "source addresses", strings.Join(rep.SourceAddrs, ", "))
	}
	fmt.Fprintf(w, "  %-22s %.2fs\n", "generator CPU", rep.CPUSeconds)
	if rep.Note != "" {
		fmt.Fprintf(w, "  %-22s %s\n", "note", rep.Note)
	}
}
