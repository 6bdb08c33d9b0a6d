package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/edge"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/resolve"
	"github.com/viaduct-sip/viaduct/transport"
)

// The edge room's wiring (edge/): its Guard is built with the runtime, its
// stage wraps every transport worker and its gate every stream accept,
// its call-rate caps answer the engine's CallAdmitter, its endpoints and
// metrics join the admin API. A reload prepares the edge section with
// the rest of the file (a bad blocklist refuses the whole reload) and
// installs it once the rest is applied; the ban list and the rate table
// stay.

// edgeRoom is the edge of a running Viaduct.
type edgeRoom struct {
	guard *edge.Guard
}

// newEdge prepares fc's edge section and builds the Guard.
func newEdge(fc *fileConfig, logger *slog.Logger) (*edgeRoom, error) {
	p, err := prepareEdge(fc)
	if err != nil {
		return nil, err
	}
	return &edgeRoom{guard: edge.New(p, logger)}, nil
}

// prepareEdge checks fc's edge section and reads its blocklist; errors
// name the key (edge.limits.invite.rate).
func prepareEdge(fc *fileConfig) (*edge.Prepared, error) {
	p, err := edge.Prepare(fc.Edge)
	return p, config.Prefix("edge", err)
}

// wire puts the edge in front of the engine's workers and stream accepts.
func (r *edgeRoom) wire(cfg *fastpath.Config) {
	cfg.Stages = append(cfg.Stages, r.guard.Stage)
	cfg.Gate = r.guard.Gate
}

// attach installs the caps as the engine's CallAdmitter.
func (r *edgeRoom) attach(eng *fastpath.Engine) { eng.SetCallAdmitter(r.guard.AdmitCall) }

// setTargets tells the Guard the upstream targets in use (always trusted;
// what the caps name), with the upstreams entry each came from: at start,
// on reload and on a DNS refresh.
func (r *edgeRoom) setTargets(fc *fileConfig, ts []resolve.Target) {
	ups := make([]edge.Upstream, len(ts))
	for i, t := range ts {
		ups[i] = edge.Upstream{ID: cmp.Or(t.ID, balancer.DefaultID(transport.UDP.String(), t.Addr)), Addr: t.Addr}
		if t.Source >= 0 && t.Source < len(fc.Upstreams) {
			ups[i].Name = fc.Upstreams[t.Source].Address
		}
	}
	r.guard.SetUpstreams(ups)
}

// collectors are the edge's metrics, for the admin API's registry.
func (r *edgeRoom) collectors() []prometheus.Collector {
	return []prometheus.Collector{edge.NewCollector(r.guard)}
}

// start puts back the saved bans, mounts the edge's endpoints on the admin
// API (h nil: the API is off), expires bans until ctx is done, and logs
// the rules in force.
func (r *edgeRoom) start(ctx context.Context, h *admin.Handler, logger *slog.Logger) {
	if h != nil {
		for pattern, handler := range r.guard.Routes() {
			h.Handle(pattern, handler)
		}
	}
	if n, err := r.guard.RestoreBans(); err != nil {
		logger.Warn("ban list not restored", "err", err, "restored", n)
	} else if n > 0 {
		logger.Info("ban list restored", "bans", n)
	}
	go r.guard.Run(ctx)
	logger.Info("edge", "rules", r.guard.Summary())
}

// saveBans saves the ban list (edge.bans.state_file) at shutdown.
func (r *edgeRoom) saveBans(logger *slog.Logger) {
	if err := r.guard.SaveBans(); err != nil {
		logger.Warn("saving the ban list failed", "err", err)
	}
}

// printCheck prints the edge's rules for --check.
func (r *edgeRoom) printCheck(w io.Writer) { fmt.Fprintf(w, "viaduct: edge %s\n", r.guard.Summary()) }

// restartOnly lists the edge keys of next that a reload cannot apply.
func (r *edgeRoom) restartOnly(next *edge.Prepared) []string { return r.guard.RestartOnly(next) }
