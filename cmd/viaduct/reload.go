package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/capture"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/metrics"
	"github.com/viaduct-sip/viaduct/resolve"
	"github.com/viaduct-sip/viaduct/transport"
)

// Reload and graceful shutdown.
//
// SIGHUP and POST /api/v1/reload re-read the configuration file (with the
// command line's flags applied over it again) and apply what can change
// while the sockets stay open: the upstreams (addresses, DNS names, IDs,
// weights, priorities), balance.keys, health, upstream_health, dns names'
// targets and shutdown_drain. Everything is validated before anything
// changes; a bad file is refused, logged with the field and the reason, and
// counted (viaduct_config_reloads_total{result="failure"}), and the running
// configuration stays. Settings that belong to the sockets or to objects
// built once (restartOnly) are compared with those the process started
// with; a reload that changes them applies the rest and logs a warning
// naming them.
//
// SIGTERM starts a graceful stop: /readyz answers 503 at once, forwarding
// goes on for shutdown_drain (in-flight transactions complete while a load
// balancer polling /readyz moves new traffic away), then Viaduct stops and
// exits 0. A second SIGTERM (or SIGINT) during the drain stops at once.
// SIGINT stops at once.

// procHooks connects runWith to the process: its standard output (for
// --check, --version and --help; nil: runWith's stderr writer), the
// signals it handles (SIGHUP, SIGTERM; nil: none) and the DNS resolver
// (nil: net.DefaultResolver; tests give one that asks their own server).
type procHooks struct {
	stdout   io.Writer
	signals  <-chan os.Signal
	resolver *net.Resolver
}

// runtime is what a reload changes in a running Viaduct, and how.
type runtime struct {
	path    string            // the --config file; "" when there is none
	overlay func(*fileConfig) // applies the command line's flags over a file
	logger  *slog.Logger
	eng     *fastpath.Engine
	chk     *health.Checker
	dns     *resolve.Watcher
	hops    *resolve.NextHops // nil when dns.next_hops is off
	op      *ops
	capture *capture.Capture
	edge    *edgeRoom
	streams *streamServers // the TCP and TLS servers the engine bound
	boot    *fileConfig    // the configuration the process started with

	cur atomic.Pointer[fileConfig] // the configuration in use
	mu  sync.Mutex                 // serializes reloads
}

// startUpstreams resolves fc's upstreams (DNS names included) and builds
// the engine and the health checker over the targets, and the resolver of
// host-name next hops the engine uses (nil when dns.next_hops is off; its
// lookups run once runDNS starts it). Configuration errors are
// *config.FieldError values; resolve.ErrNoTargets means that no upstream
// name resolved.
func startUpstreams(ctx context.Context, fc *fileConfig, ss *streamServers, ed *edgeRoom, logger *slog.Logger, resolver *net.Resolver, stages []transport.Stage) (*fastpath.Engine, *health.Checker, *resolve.Watcher, *resolve.NextHops, error) {
	srcs, err := fc.upstreamSources()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if len(srcs) == 0 {
		return nil, nil, nil, nil, errNoUpstream
	}
	if err := fc.checkOwnKeys(); err != nil {
		return nil, nil, nil, nil, err
	}
	dnsCfg := resolve.Config{Interval: fc.DNS.Refresh, Timeout: fc.DNS.Timeout, Network: fc.dnsNetwork(), Resolver: resolver, Logger: logger}
	w, err := resolve.New(dnsCfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	var hops *resolve.NextHops
	if fc.DNS.nextHops() {
		if hops, err = resolve.NewNextHops(dnsCfg); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	var (
		eng *fastpath.Engine
		chk *health.Checker
	)
	err = w.Set(ctx, srcs, func(ts []resolve.Target) error {
		if len(ts) == 0 {
			return resolve.ErrNoTargets
		}
		cfg, err := fc.engineConfig(ts)
		if err != nil {
			return err
		}
		if hops != nil {
			cfg.NextHops = nextHopLookup{hops}
		}
		if err := fc.bindTransports(&cfg, ss, logger); err != nil {
			return err
		}
		ss.setServerNames(fc.tlsServerNames(ts))
		ed.wire(&cfg) // the edge first: capture sees what it admits
		cfg.Stages = append(cfg.Stages, stages...)
		ed.setTargets(fc, ts)
		e, err := fastpath.New(cfg, logger)
		if err != nil {
			return err
		}
		c, err := newCheckerFor(fc, e, sourcesOf(ts), logger)
		if err != nil {
			return err
		}
		eng, chk = e, c
		return nil
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return eng, chk, w, hops, nil
}

// apply validates fc with the targets ts (its upstreams as resolved) and
// installs them: the engine's targets and keys (fastpath.Engine.Update,
// which keeps the health and admin states of the targets that remain), then
// the checker's targets and probe settings (health.Checker.Update). It is
// the resolve.ApplyFunc of reloads and DNS refreshes, called under the
// Watcher's lock. On error nothing changes.
func (rt *runtime) apply(fc *fileConfig, ts []resolve.Target) error {
	if len(ts) == 0 {
		return resolve.ErrNoTargets
	}
	cfg, err := fc.engineConfig(ts)
	if err != nil {
		return err
	}
	hc, keyOf, err := fc.toHealthConfig(cfg.Targets, sourcesOf(ts))
	if err != nil {
		return err
	}
	// health.New validates exactly what Checker.Update will, without side
	// effects: after it, the update below fails only if the sink does.
	if _, err := health.New(hc, rt.eng, rt.eng.Pool(), nil); err != nil {
		return healthConfigError(err, cfg.Targets, keyOf)
	}
	oldTargets, oldKeys := rt.eng.Targets(), rt.eng.Keys()
	if err := rt.eng.Update(cfg.Targets, cfg.Keys); err != nil {
		return err
	}
	if err := rt.chk.Update(hc); err != nil {
		if rerr := rt.eng.Update(oldTargets, oldKeys); rerr != nil {
			rt.logger.Error("restoring the upstreams after a refused health update", "err", rerr)
		}
		return healthConfigError(err, cfg.Targets, keyOf)
	}
	rt.streams.setServerNames(fc.tlsServerNames(ts))
	rt.cur.Store(fc)
	rt.edge.setTargets(fc, ts)
	// Targets that remain keep their admin states; those that are new
	// (again) take the saved ones.
	restoreStates(rt.op.states, rt.chk, newTargets(oldTargets, rt.eng.Targets()), rt.logger)
	return nil
}

// applyCurrent is apply with the configuration in use: the ApplyFunc of
// periodic DNS refreshes.
func (rt *runtime) applyCurrent(ts []resolve.Target) error { return rt.apply(rt.cur.Load(), ts) }

// reloadResult is the outcome of a reload, and the JSON body of
// POST /api/v1/reload.
type reloadResult struct {
	// Applied reports whether the new configuration is in use.
	Applied bool `json:"applied"`
	// Hash identifies the file applied (viaduct_config_info's hash).
	Hash string `json:"config_hash,omitempty"`
	// Upstreams is the number of upstream targets in use afterwards.
	Upstreams int `json:"upstreams"`
	// RestartRequired lists the changed settings that were not applied.
	RestartRequired []string `json:"restart_required,omitempty"`
	// Field and Error say why a reload was refused.
	Field string `json:"field,omitempty"`
	Error string `json:"error,omitempty"`
}

// reload re-reads the configuration file and applies it (see the comment
// at the top of this file); by says who asked, for the log.
func (rt *runtime) reload(ctx context.Context, by string) reloadResult {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	res, err := rt.tryReload(ctx)
	res.Upstreams = len(rt.eng.Targets())
	if err != nil {
		rt.op.reloads.IncFailure()
		res.Error = err.Error()
		var fe *config.FieldError
		if errors.As(err, &fe) {
			res.Field = fe.Field
			rt.logger.Error("configuration reload refused; the running configuration stays", "by", by, "file", rt.path, "field", fe.Field, "reason", fe.Reason)
		} else {
			rt.logger.Error("configuration reload refused; the running configuration stays", "by", by, "file", rt.path, "err", err)
		}
		return res
	}
	res.Applied = true
	rt.op.reloads.IncSuccess(res.Hash)
	rt.logger.Info("configuration reloaded", "by", by, "file", rt.path, "hash", res.Hash, "upstreams", res.Upstreams)
	if len(res.RestartRequired) > 0 {
		rt.logger.Warn("configuration reloaded, but these changed settings need a restart and were not applied", "fields", res.RestartRequired)
	}
	return res
}

func (rt *runtime) tryReload(ctx context.Context) (reloadResult, error) {
	var res reloadResult
	if rt.path == "" {
		return res, errors.New("no configuration file (--config): nothing to reload")
	}
	b, err := os.ReadFile(rt.path)
	if err != nil {
		return res, err
	}
	fc, err := parseConfig(rt.path, b)
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			return res, ce.err // the file name is logged with it
		}
		return res, err
	}
	rt.overlay(&fc)
	// Settings a reload does not apply must still be valid: the file is
	// the one the next start will read.
	if _, err := newLogger(io.Discard, fc.LogFormat, fc.LogLevel); err != nil {
		return res, err
	}
	if err := fc.Admin.check(); err != nil {
		return res, err
	}
	srcs, err := fc.upstreamSources()
	if err != nil {
		return res, err
	}
	if len(srcs) == 0 {
		return res, errNoUpstream
	}
	if err := fc.checkOwnKeys(); err != nil {
		return res, err
	}
	if err := checkCapture(&fc); err != nil {
		return res, err
	}
	edgeCfg, err := prepareEdge(&fc)
	if err != nil {
		return res, err
	}
	if err := rt.streams.reloadTLS(); err != nil {
		return res, err
	}
	if err := rt.dns.Set(ctx, srcs, func(ts []resolve.Target) error { return rt.apply(&fc, ts) }); err != nil {
		return res, err
	}
	rt.edge.guard.Install(edgeCfg)
	res.Hash = metrics.ConfigHash(b)
	res.RestartRequired = append(restartOnly(rt.boot, &fc), rt.edge.restartOnly(edgeCfg)...)
	return res, nil
}

// restartOnly returns the YAML keys whose values differ between the
// configuration the process started with and next, among those that a
// reload cannot apply: listen sockets, workers and buffers, what the fast
// path renders once (advertise, record_route, path, max_message_size, the
// secret), the pool's mode, logging, the admin listener and the DNS
// resolver's settings.
func restartOnly(boot, next *fileConfig) []string {
	var out []string
	diff := func(key string, changed bool) {
		if changed {
			out = append(out, key)
		}
	}
	mode := func(fc *fileConfig) balancer.Mode { m, _ := balancer.ParseMode(fc.Balance.Mode); return m }
	diff("listen", !slices.Equal(boot.Listen, next.Listen))
	diff("advertise", boot.Advertise != next.Advertise)
	diff("workers", boot.Workers != next.Workers)
	diff("reuse_port", boot.ReusePort != next.ReusePort)
	diff("recv_buffer", boot.RecvBuffer != next.RecvBuffer)
	diff("send_buffer", boot.SendBuffer != next.SendBuffer)
	diff("batch", boot.Batch != next.Batch)
	diff("park_after", boot.parkAfter() != next.parkAfter())
	diff("record_route", boot.RecordRoute != next.RecordRoute)
	diff("path", boot.Path != next.Path)
	diff("max_message_size", boot.MaxMessageSize != next.MaxMessageSize)
	diff("udp_mtu", boot.UDPMTU != next.UDPMTU)
	diff("orphan_responses", boot.OrphanResponses != next.OrphanResponses)
	diff("tls", boot.TLS != next.TLS)
	diff("streams", !reflect.DeepEqual(boot.Streams, next.Streams))
	diff("websocket", !reflect.DeepEqual(boot.WebSocket, next.WebSocket))
	diff("secret", boot.Secret != next.Secret)
	diff("secret_file", boot.SecretFile != next.SecretFile)
	diff("previous_secret", boot.PreviousSecret != next.PreviousSecret)
	diff("previous_secret_file", boot.PreviousSecretFile != next.PreviousSecretFile)
	diff("balance.mode", mode(boot) != mode(next))
	diff("log_format", boot.LogFormat != next.LogFormat)
	diff("log_level", boot.LogLevel != next.LogLevel)
	diff("admin.listen", boot.Admin.effectiveListen() != next.Admin.effectiveListen())
	diff("admin.token", boot.Admin.Token != next.Admin.Token || boot.Admin.TokenFile != next.Admin.TokenFile)
	diff("admin.state_file", boot.Admin.StateFile != next.Admin.StateFile)
	diff("dns.refresh", boot.DNS.Refresh != next.DNS.Refresh)
	diff("dns.next_hops", boot.DNS.nextHops() != next.DNS.nextHops())
	diff("dns.timeout", boot.DNS.Timeout != next.DNS.Timeout)
	diff("capture", captureChanged(boot, next))
	return out
}

// reloadHandler serves POST /api/v1/reload: 200 with the reloadResult when
// the new configuration is applied, 422 with the field and the reason when
// it is refused. The reload runs to its end even if the client goes away.
func (rt *runtime) reloadHandler(ctx context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := rt.reload(ctx, "admin API "+r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		if !res.Applied {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		json.NewEncoder(w).Encode(res)
	})
}

// serve handles signals until Viaduct must stop: SIGHUP reloads, SIGTERM
// drains (see drain) and returns. It returns at once when ctx is done
// (SIGINT, or a test's cancel).
func (rt *runtime) serve(ctx context.Context, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			if s == syscall.SIGHUP {
				rt.reload(ctx, "SIGHUP")
				continue
			}
			rt.drain(ctx, sigs, s)
			return
		}
	}
}

// drain turns readiness false and keeps forwarding for shutdown_drain, or
// until ctx is done or another stopping signal arrives.
func (rt *runtime) drain(ctx context.Context, sigs <-chan os.Signal, sig os.Signal) {
	rt.op.ready.SetShuttingDown()
	d := rt.cur.Load().shutdownDrain()
	if d <= 0 {
		rt.logger.Info("stopping now (shutdown_drain 0)", "signal", sig.String())
		return
	}
	rt.logger.Info("draining before stopping: /readyz answers 503, forwarding goes on", "signal", sig.String(), "shutdown_drain", d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			rt.logger.Info("drain period over")
			return
		case <-ctx.Done():
			return
		case s := <-sigs:
			if s == syscall.SIGHUP {
				rt.logger.Info("SIGHUP ignored while draining before a stop")
				continue
			}
			rt.logger.Info("second stop signal: stopping now", "signal", s.String())
			return
		}
	}
}

// runDNS refreshes the upstreams' DNS answers and resolves next hops until
// ctx is done; the returned channel is closed when both have stopped.
func (rt *runtime) runDNS(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		if rt.hops != nil {
			wg.Go(func() { rt.hops.Run(ctx) })
		}
		rt.dns.Run(ctx, rt.applyCurrent)
		wg.Wait()
	}()
	return done
}

// describeDNS logs the DNS upstreams at start, if there are any.
func describeDNS(logger *slog.Logger, fc *fileConfig, w *resolve.Watcher) {
	n := 0
	for _, u := range fc.Upstreams {
		if s, err := resolve.ParseSource(u.Address); err == nil && s.IsDNS() {
			n++
		}
	}
	if n == 0 {
		return
	}
	c := w.Config()
	logger.Info("DNS upstreams", "names", n, "targets", len(w.Targets()), "refresh", c.Interval, "timeout", c.Timeout, "families", c.Network)
}

// errorExitCode is the exit code for a start-up error: 1 when no upstream
// resolved (a run-time condition), 2 for a configuration error.
func errorExitCode(err error) int {
	if errors.Is(err, resolve.ErrNoTargets) {
		return 1
	}
	return 2
}

// defaultShutdownDrain is how long Viaduct keeps forwarding after SIGTERM
// when shutdown_drain is not set.
const defaultShutdownDrain = 5 * time.Second

// maxShutdownDrain bounds shutdown_drain (systemd's TimeoutStopSec must
// exceed it).
const maxShutdownDrain = 10 * time.Minute

// shutdownDrain returns the configured drain period, or the default.
func (fc *fileConfig) shutdownDrain() time.Duration {
	if fc.ShutdownDrain == nil {
		return defaultShutdownDrain
	}
	return *fc.ShutdownDrain
}

// checkShutdownDrain validates shutdown_drain.
func (fc *fileConfig) checkShutdownDrain() error {
	if d := fc.shutdownDrain(); d < 0 || d > maxShutdownDrain {
		return &config.FieldError{Field: "shutdown_drain", Reason: fmt.Sprintf("must be 0 (stop at once) to %v, got %v", maxShutdownDrain, d)}
	}
	return nil
}
