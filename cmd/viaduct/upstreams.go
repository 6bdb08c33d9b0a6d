package main

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/resolve"
)

// dnsConfig is the dns section: how host-name and SRV upstreams are
// resolved.
//
//	dns:
//	  refresh: 30s      # how often every name is resolved again
//	  timeout: 5s       # bound of one lookup
//	  next_hops: true   # resolve host names that requests from upstreams route to
type dnsConfig struct {
	Refresh  time.Duration `yaml:"refresh"`
	Timeout  time.Duration `yaml:"timeout"`
	NextHops *bool         `yaml:"next_hops"`
}

// nextHops reports whether host-name next hops are resolved (default true).
func (d *dnsConfig) nextHops() bool { return d.NextHops == nil || *d.NextHops }

// nextHopLookup adapts resolve.NextHops to fastpath.NextHopResolver.
type nextHopLookup struct{ h *resolve.NextHops }

// LookupNextHop implements fastpath.NextHopResolver.
func (l nextHopLookup) LookupNextHop(host []byte, port int) (netip.AddrPort, fastpath.NextHopState) {
	addr, st := l.h.Lookup(host, port)
	switch st {
	case resolve.HopFound:
		return addr, fastpath.NextHopFound
	case resolve.HopPending:
		return addr, fastpath.NextHopPending
	}
	return addr, fastpath.NextHopFailed
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

// defaultParkAfter is how long a worker waits in recvmmsg for its next
// datagram before it parks in the Go netpoller, when park_after is not
// set (see fastpath.Config.ParkAfter). It spans every gap of a busy
// stream and a few clock ticks; an idle worker then costs no thread.
const defaultParkAfter = 5 * time.Millisecond

// parkAfter returns the configured park_after, or the default.
func (fc *fileConfig) parkAfter() time.Duration {
	if fc.ParkAfter == nil {
		return defaultParkAfter
	}
	return *fc.ParkAfter
}

// checkOps validates the settings of this file: shutdown_drain and dns,
// and that no key of zeroMeansUnset is written as 0.
func (fc *fileConfig) checkOps() error {
	if err := fc.checkExplicitZeros(); err != nil {
		return err
	}
	if d := fc.shutdownDrain(); d < 0 || d > maxShutdownDrain {
		return &config.FieldError{Field: "shutdown_drain", Reason: fmt.Sprintf("must be 0 (stop at once) to %v, got %v", maxShutdownDrain, d)}
	}
	if r := fc.DNS.Refresh; r != 0 && r < resolve.MinInterval {
		return &config.FieldError{Field: "dns.refresh", Reason: fmt.Sprintf("must be at least %v, got %v", resolve.MinInterval, r)}
	}
	if t := fc.DNS.Timeout; t < 0 {
		return &config.FieldError{Field: "dns.timeout", Reason: fmt.Sprintf("must be positive, got %v", t)}
	}
	return nil
}

// upstreamSources parses the upstreams list: every entry is an address, a
// host name (each of its A/AAAA addresses is an upstream) or an SRV name
// (_sip._udp.example.com: the records' targets, priorities and weights).
// Errors name the entry's field.
func (fc *fileConfig) upstreamSources() ([]resolve.Source, error) {
	out := make([]resolve.Source, 0, len(fc.Upstreams))
	literal := map[netip.AddrPort]int{}
	ids := map[string]int{}
	for i, u := range fc.Upstreams {
		f := fmt.Sprintf("upstreams[%d]", i)
		if u.Address == "" {
			return nil, &config.FieldError{Field: f + ".address", Reason: "required"}
		}
		src, err := resolve.ParseSource(u.Address)
		if err != nil {
			return nil, &config.FieldError{Field: u.addressField(i), Reason: err.Error()}
		}
		switch src.Kind {
		case resolve.KindAddr:
			if j, dup := literal[src.Addr]; dup {
				return nil, &config.FieldError{Field: u.addressField(i), Reason: fmt.Sprintf("duplicate of upstreams[%d] (%s)", j, src.Addr)}
			}
			literal[src.Addr] = i
			src.ID = u.ID
			id := u.ID
			if id == "" {
				id = balancer.DefaultID("udp", src.Addr)
			}
			if j, dup := ids[id]; dup {
				return nil, &config.FieldError{Field: f + ".id", Reason: fmt.Sprintf("%q is also the id of upstreams[%d]", id, j)}
			}
			ids[id] = i
		case resolve.KindHost, resolve.KindSRV:
			if u.ID != "" {
				return nil, &config.FieldError{Field: f + ".id", Reason: fmt.Sprintf("not allowed for the DNS name %s: each address it resolves to is an upstream of its own, with the id udp:IP:PORT", src.Name)}
			}
		}
		if src.Kind == resolve.KindSRV && src.Transport != "udp" {
			return nil, &config.FieldError{Field: u.addressField(i), Reason: fmt.Sprintf("%s is a %s SRV name: Viaduct forwards over UDP, use _sip._udp.DOMAIN", src.Name, src.Transport)}
		}
		if u.Weight != nil {
			if src.Kind == resolve.KindSRV {
				return nil, &config.FieldError{Field: f + ".weight", Reason: "not allowed for an SRV name: the weights of its records are used"}
			}
			if *u.Weight < 1 || *u.Weight > balancer.MaxWeight {
				return nil, &config.FieldError{Field: f + ".weight", Reason: fmt.Sprintf("must be 1..%d, got %d (to send an upstream nothing, drain or disable it)", balancer.MaxWeight, *u.Weight)}
			}
			src.Weight = *u.Weight
		}
		if u.Priority < 0 || u.Priority > balancer.MaxPriority {
			return nil, &config.FieldError{Field: f + ".priority", Reason: fmt.Sprintf("must be 0..%d, got %d", balancer.MaxPriority, u.Priority)}
		}
		src.Priority = u.Priority
		out = append(out, src)
	}
	return out, nil
}

// errNoUpstream is the error for an empty upstreams list.
var errNoUpstream = &config.FieldError{Field: "upstreams", Reason: "at least one upstream is required"}

// errNeedsDNS is returned by staticTargets for a list with DNS names.
var errNeedsDNS = errors.New("upstreams: the list has DNS names: resolve it")

// staticTargets returns the targets of a list of addresses without any
// lookup (every target comes from the entry of the same index).
func staticTargets(srcs []resolve.Source) ([]resolve.Target, error) {
	out := make([]resolve.Target, len(srcs))
	for i, s := range srcs {
		if s.IsDNS() {
			return nil, errNeedsDNS
		}
		w := s.Weight
		if w == 0 {
			w = balancer.DefaultWeight
		}
		out[i] = resolve.Target{Source: i, Target: balancer.Target{ID: s.ID, Addr: s.Addr, Transport: "udp", Weight: w, Priority: s.Priority}}
	}
	return out, nil
}

// sourcesOf returns the index of each target's upstreams entry.
func sourcesOf(ts []resolve.Target) []int {
	out := make([]int, len(ts))
	for i, t := range ts {
		out[i] = t.Source
	}
	return out
}

// dnsNetwork chooses the address families asked of DNS from the listen
// addresses: Viaduct can only send to a family it has a socket for.
func (fc *fileConfig) dnsNetwork() string {
	var v4, v6 bool
	for _, s := range fc.Listen {
		a, err := netip.ParseAddrPort(s)
		if err != nil {
			continue
		}
		if a.Addr().Unmap().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	switch {
	case v4 && !v6:
		return "ip4"
	case v6 && !v4:
		return "ip6"
	}
	return "ip"
}
