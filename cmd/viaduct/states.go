package main

import (
	"log/slog"

	"github.com/viaduct-sip/viaduct/admin"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/health"
)

// Admin states across restarts (admin.state_file, --state-file).
//
// The admin API saves the admin states of every upstream to the file after
// each change (admin.StateFile). At start, before the first datagram, the
// saved states are applied to the upstreams they name; an entry naming no
// upstream is ignored with a warning (and dropped at the next save). A
// reload, or a DNS refresh, keeps the states of the upstreams that remain,
// as always, and applies the saved states to the upstreams it adds, so an
// upstream drained before it left the configuration is drained when it
// comes back, as long as no change was saved meanwhile.
//
// A file that cannot be read or parsed does not stop Viaduct: it starts
// with every upstream enabled and logs an error naming the file (refusing
// to start over a state file would turn a bad disk into an outage); the
// next change through the admin API replaces the file.

// stateFile returns the state file of ac, nil when there is none.
func stateFile(ac adminConfig) *admin.StateFile {
	if ac.StateFile == "" {
		return nil
	}
	return admin.NewStateFile(ac.StateFile)
}

// restoreStates applies the states saved in sf (nil: none) to the
// checker's targets: all of them when only is nil, at start, and then an
// entry that names no target is logged; else those only lists (targets a
// reload or DNS refresh added).
func restoreStates(sf *admin.StateFile, chk *health.Checker, only map[string]bool, logger *slog.Logger) {
	if sf == nil || (only != nil && len(only) == 0) {
		return
	}
	saved, err := sf.Load()
	if err != nil {
		logger.Error("admin states not restored: every upstream keeps its current state (enabled at start); the next admin change rewrites the file", "file", sf.Path(), "err", err)
		return
	}
	restored := 0
	for _, id := range admin.SortedIDs(saved) {
		if only != nil && !only[id] {
			continue
		}
		s := saved[id]
		if _, ok := chk.StatusOf(id); !ok {
			logger.Warn("state file names no upstream: entry ignored", "file", sf.Path(), "target", id, "admin", s.Admin.String())
			continue
		}
		if err := chk.SetAdmin(id, s.Admin, "state_file "+sf.Path()); err != nil {
			logger.Error("admin state not restored", "target", id, "admin", s.Admin.String(), "err", err)
			continue
		}
		restored++
	}
	if only == nil {
		logger.Info("admin states restored", "file", sf.Path(), "upstreams", restored)
	}
}

// newTargets returns the IDs in after that before lacks.
func newTargets(before, after []balancer.Target) map[string]bool {
	had := make(map[string]bool, len(before))
	for _, t := range before {
		had[t.ID] = true
	}
	out := map[string]bool{}
	for _, t := range after {
		if !had[t.ID] {
			out[t.ID] = true
		}
	}
	return out
}
