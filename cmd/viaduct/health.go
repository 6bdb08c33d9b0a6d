package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/resolve"
)

// toHealthConfig builds the health checker's configuration for the
// engine's targets: every target under the same ID as in the balancer pool
// (so the admin API, the logs and the pool name targets alike), with the
// health section's settings and its upstream_health overrides, and the
// section's all_down policy. Health checking is on without a health
// section; with enabled: false (or --health=false) nothing is probed
// unless an override says never_probe: false. srcOf gives the upstreams
// entry each target came from (nil: target
// i is entry i). An upstream_health key names an entry written as an
// address, by its ID or address, or an entry written as a DNS name, by
// that name as written: its settings then apply to every address the name
// resolves to, now and after each refresh. It also returns, per target
// index, the upstream_health key that configured it (for error messages).
// Errors name the YAML key.
func (fc *fileConfig) toHealthConfig(targets []balancer.Target, srcOf []int) (health.Config, []string, error) {
	var hc health.Config
	var sec health.Section // no health section: the defaults
	if fc.Health != nil {
		sec = *fc.Health
	}
	st, allDown, err := sec.Pool()
	if err != nil {
		return hc, nil, config.Prefix("health", err)
	}
	hc.Settings, hc.AllDown = st, allDown
	ix := fc.indexTargets(targets, srcOf)
	for _, t := range targets {
		hc.Targets = append(hc.Targets, health.Target{ID: t.ID, Addr: t.Addr, Transport: t.Transport})
	}
	keys := make([]string, 0, len(fc.UpstreamHealth))
	for k := range fc.UpstreamHealth {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	keyOf := make([]string, len(targets))
	for _, key := range keys {
		field := fmt.Sprintf("upstream_health[%q]", key)
		var idx []int
		if e, ok := ix.byName[strings.ToLower(key)]; ok {
			idx = ix.fromEntry[e] // may be empty while the name does not resolve
		} else {
			i, err := resolveTarget(key, ix.byID, ix.byAddr, ix.byName)
			if err != nil {
				return hc, nil, &config.FieldError{Field: field, Reason: err.Error()}
			}
			idx = []int{i}
		}
		s := fc.UpstreamHealth[key]
		if err := s.Validate(); err != nil {
			return hc, nil, config.Prefix(field, err)
		}
		for _, i := range idx {
			if keyOf[i] != "" {
				return hc, nil, &config.FieldError{Field: field, Reason: fmt.Sprintf("names the same upstream as upstream_health[%q]", keyOf[i])}
			}
			keyOf[i] = key
			hc.Targets[i].Settings = s
		}
	}
	return hc, keyOf, nil
}

// targetIndex finds the targets an upstream_health key can name.
type targetIndex struct {
	byName    map[string]int         // upstreams entry of each DNS name, lower case as written
	byID      map[string]int         // target of each ID (entries written as addresses)
	byAddr    map[netip.AddrPort]int // target of each address (idem)
	fromEntry map[int][]int          // targets of each upstreams entry
}

// indexTargets indexes targets, which came from the upstreams entries srcOf
// names (nil: target i from entry i).
func (fc *fileConfig) indexTargets(targets []balancer.Target, srcOf []int) targetIndex {
	ix := targetIndex{
		byName:    map[string]int{},
		byID:      make(map[string]int, len(targets)),
		byAddr:    make(map[netip.AddrPort]int, len(targets)),
		fromEntry: map[int][]int{},
	}
	isDNS := make([]bool, len(fc.Upstreams))
	for e, u := range fc.Upstreams {
		if src, err := resolve.ParseSource(u.Address); err == nil && src.IsDNS() {
			isDNS[e] = true
			ix.byName[strings.ToLower(strings.TrimSpace(u.Address))] = e
		}
	}
	for i, t := range targets {
		e := i
		if srcOf != nil {
			e = srcOf[i]
		}
		ix.fromEntry[e] = append(ix.fromEntry[e], i)
		if e >= len(isDNS) || !isDNS[e] {
			ix.byID[t.ID] = i
			ix.byAddr[t.Addr] = i
		}
	}
	return ix
}

// resolveTarget finds the target an upstream_health key names: by ID
// first, else by address ("ip:port"). names lists the DNS names of the
// upstreams, for the error message.
func resolveTarget(key string, byID map[string]int, byAddr map[netip.AddrPort]int, names map[string]int) (int, error) {
	i, isID := byID[key]
	a, err := netip.ParseAddrPort(key)
	j, isAddr := -1, false
	if err == nil {
		j, isAddr = byAddr[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())]
	}
	switch {
	case isID && isAddr && i != j:
		return 0, fmt.Errorf("ambiguous: the id of one upstream and the address of another; use the id")
	case isID:
		return i, nil
	case isAddr:
		return j, nil
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if len(names) == 0 {
		return 0, fmt.Errorf("not the id or address of an upstream (ids: %s)", strings.Join(ids, ", "))
	}
	ns := make([]string, 0, len(names))
	for n := range names {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return 0, fmt.Errorf("not the id or address of an upstream, nor the DNS name of one (ids: %s; names: %s)", strings.Join(ids, ", "), strings.Join(ns, ", "))
}

// newChecker validates the health configuration and builds the checker
// over the engine (transport) and its pool (state sink), for the engine's
// targets.
func newChecker(fc *fileConfig, eng *fastpath.Engine, logger *slog.Logger) (*health.Checker, error) {
	return newCheckerFor(fc, eng, nil, logger)
}

// newCheckerFor is newChecker for targets that came from the upstreams
// entries srcOf names (nil: target i from entry i).
func newCheckerFor(fc *fileConfig, eng *fastpath.Engine, srcOf []int, logger *slog.Logger) (*health.Checker, error) {
	targets := eng.Targets()
	hc, keyOf, err := fc.toHealthConfig(targets, srcOf)
	if err != nil {
		return nil, err
	}
	chk, err := health.New(hc, eng, eng.Pool(), logger)
	return chk, healthConfigError(err, targets, keyOf)
}

// healthConfigError renames the field of an error of health.New or
// Checker.Update for the user: "targets[i].health.x" is
// upstream_health["KEY"].x; a pool-level field is already "health.x".
func healthConfigError(err error, targets []balancer.Target, keyOf []string) error {
	var fe *config.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	var i int
	var rest string
	if n, _ := fmt.Sscanf(fe.Field, "targets[%d].health.%s", &i, &rest); n == 2 && i >= 0 && i < len(targets) {
		key := keyOf[i]
		if key == "" {
			key = targets[i].ID
		}
		return &config.FieldError{Field: fmt.Sprintf("upstream_health[%q].%s", key, rest), Reason: fe.Reason}
	}
	return err
}

// startHealth hooks the checker into the running engine (probe replies and
// the passive 503 check) and starts probing.
func startHealth(eng *fastpath.Engine, chk *health.Checker) error {
	eng.SetLocalResponseHandler(func(m *parser.Message, from netip.AddrPort) { chk.HandleResponse(m, from) })
	eng.SetResponseObserver(chk.ObserveResponse)
	return chk.Start()
}
