package main

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/resolve"
	"github.com/viaduct-sip/viaduct/transport"
	"gopkg.in/yaml.v3"
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

// check validates the dns section (zero values select the defaults).
func (d *dnsConfig) check() error {
	if r := d.Refresh; r != 0 && r < resolve.MinInterval {
		return &config.FieldError{Field: "dns.refresh", Reason: fmt.Sprintf("must be at least %v, got %v", resolve.MinInterval, r)}
	}
	if t := d.Timeout; t < 0 {
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
		src, err := u.source()
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
				id = balancer.DefaultID(src.Transport, src.Addr)
			}
			if j, dup := ids[id]; dup {
				return nil, &config.FieldError{Field: f + ".id", Reason: fmt.Sprintf("%q is also the id of upstreams[%d]", id, j)}
			}
			ids[id] = i
		case resolve.KindHost, resolve.KindSRV:
			if u.ID != "" {
				return nil, &config.FieldError{Field: f + ".id", Reason: fmt.Sprintf("not allowed for the DNS name %s: each address it resolves to is an upstream of its own, with the id %s:IP:PORT", src.Name, src.Transport)}
			}
		}
		if _, ok := transport.ParseKind(src.Transport); !ok || src.Transport == "ws" || src.Transport == "wss" {
			return nil, &config.FieldError{Field: u.addressField(i), Reason: fmt.Sprintf("%s: Viaduct forwards over udp, tcp or tls, not %s", src, src.Transport)}
		}
		if u.AcceptsTCP && src.Transport != transport.UDP.String() {
			return nil, &config.FieldError{Field: f + ".accepts_tcp", Reason: "only for a udp upstream (a tcp or tls one takes every request over its own transport)"}
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
		out[i] = resolve.Target{Source: i, Target: balancer.Target{ID: s.ID, Addr: s.Addr, Transport: s.Transport, Weight: w, Priority: s.Priority}}
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
		ls, err := parseListen(s)
		if err != nil {
			continue
		}
		if ls[0].Addr.Addr().Unmap().Is4() {
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

// upstreamEntry is one entry of the upstreams list: an address, or a
// mapping with the address and the balancing settings. The address is
// "ip:port", a host name (every A/AAAA address, port 5060 by default) or an
// SRV name (see upstreamSources).
//
//	upstreams:
//	  - 10.0.0.1:5060
//	  - {address: 10.0.0.2:5060, weight: 3, priority: 0, id: sbc-b}
//	  - {address: sbc.example.net:5080, weight: 2}
//	  - _sip._udp.example.net
type upstreamEntry struct {
	Address  string `yaml:"address"`
	ID       string `yaml:"id"`
	Weight   *int   `yaml:"weight"`
	Priority int    `yaml:"priority"`
	// Transport is the upstream's transport (udp, the default, tcp or
	// tls), also given as a prefix of the address ("tls:sbc.example.com").
	// AcceptsTCP says that a udp upstream also takes TCP at its address,
	// for requests larger than udp_mtu. TLSServerName is the name a tls
	// upstream's certificate is checked against: default its host name
	// (the domain of an SRV name), or its IP address.
	Transport     string `yaml:"transport"`
	AcceptsTCP    bool   `yaml:"accepts_tcp"`
	TLSServerName string `yaml:"tls_server_name"`
	// mapping is set for the mapping form: errors then name
	// "upstreams[i].address" rather than "upstreams[i]".
	mapping bool
}

// upstreamKeys are the keys of the mapping form of an upstreams entry.
var upstreamKeys = []string{"address", "id", "weight", "priority", "transport", "accepts_tcp", "tls_server_name"}

// UnmarshalYAML accepts a scalar ("ip:port") or a mapping with the keys of
// upstreamKeys (strictly: an unknown key is an error naming its line).
func (u *upstreamEntry) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*u = upstreamEntry{Address: n.Value}
		return nil
	case yaml.MappingNode:
		if err := checkKeys(n, upstreamKeys, "an upstreams entry"); err != nil {
			return err
		}
		type plain upstreamEntry // without this method
		var p plain
		if err := n.Decode(&p); err != nil {
			return err
		}
		*u = upstreamEntry(p)
		u.mapping = true
		return nil
	}
	return fmt.Errorf("line %d: an upstreams entry is \"[transport:]ip:port\" or a mapping with %s", n.Line, strings.Join(upstreamKeys, ", "))
}

// source parses the entry's address, with its transport prefix or key.
func (u *upstreamEntry) source() (resolve.Source, error) {
	addr, tr := u.Address, u.Transport
	for _, k := range listenKinds {
		if rest, ok := cutPrefixFold(addr, k.String()+":"); ok {
			if tr != "" && !strings.EqualFold(tr, k.String()) {
				return resolve.Source{}, fmt.Errorf("the prefix %s: and transport %q disagree", k, tr)
			}
			addr, tr = rest, k.String()
			break
		}
	}
	src, err := resolve.ParseSource(addr)
	if err != nil {
		return src, err
	}
	if tr != "" {
		if src.Kind == resolve.KindSRV && !strings.EqualFold(tr, src.Transport) {
			return src, fmt.Errorf("%s is a %s SRV name, not %s", src.Name, src.Transport, tr)
		}
		src.Transport = strings.ToLower(tr)
	}
	if src.Transport == "" {
		src.Transport = transport.UDP.String()
	}
	return src, nil
}

// balanceConfig is the balance section: how requests are spread over the
// upstreams.
//
//	balance:
//	  mode: hash            # or round-robin
//	  keys:                 # per method; "*" for the others
//	    "*": call-id
//	    REGISTER: to-aor
//	    MESSAGE: from-uri
//	    PUBLISH: header:X-Tenant
type balanceConfig struct {
	Mode string            `yaml:"mode"`
	Keys map[string]string `yaml:"keys"`
}

// balanceSettings fills the upstream targets (from the upstreams list as
// resolved: a plain "ip:port" entry is a target with weight 1, priority 0
// and the default ID), the balancing mode and the key policy of cfg.
// Errors name the field ("balance.keys").
func (fc *fileConfig) balanceSettings(cfg *fastpath.Config, resolved []resolve.Target) error {
	cfg.Targets = resolve.BalancerTargets(resolved)
	for i, t := range resolved {
		if t.Source < len(fc.Upstreams) {
			cfg.Targets[i].AcceptsTCP = fc.Upstreams[t.Source].AcceptsTCP
		}
	}
	mode, err := balancer.ParseMode(fc.Balance.Mode)
	if err != nil {
		return &config.FieldError{Field: "balance.mode", Reason: fmt.Sprintf("%q: want hash or round-robin", fc.Balance.Mode)}
	}
	cfg.Balance = mode
	if len(fc.Balance.Keys) > 0 && mode == balancer.ModeRoundRobin {
		return &config.FieldError{Field: "balance.keys", Reason: "round-robin hashes no key: remove keys or use mode hash"}
	}
	p, err := parseKeys(fc.Balance.Keys)
	if err != nil {
		return err
	}
	cfg.Keys = p
	return nil
}

// addressField names the address of entry i in errors: the entry itself
// for the plain form.
func (u *upstreamEntry) addressField(i int) string {
	if u.mapping {
		return fmt.Sprintf("upstreams[%d].address", i)
	}
	return fmt.Sprintf("upstreams[%d]", i)
}

// parseKeys builds the key policy from the balance.keys section. Method
// names are upper case ("*" or "default" for every other method); CANCEL
// and ACK are not configurable (they always hash INVITE's key).
func parseKeys(keys map[string]string) (*balancer.Policy, error) {
	methods := make([]string, 0, len(keys))
	for m := range keys {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	rules := make(map[string]balancer.KeyRule, len(keys))
	for _, m := range methods {
		f := fmt.Sprintf("balance.keys[%q]", m)
		switch {
		case m == "*" || m == "default":
		case m == "CANCEL" || m == "ACK":
			return nil, &config.FieldError{Field: f, Reason: "not configurable: CANCEL and ACK hash INVITE's key, to reach the INVITE's upstream"}
		case m != strings.ToUpper(m):
			return nil, &config.FieldError{Field: f, Reason: fmt.Sprintf("method names are case-sensitive: write %q", strings.ToUpper(m))}
		}
		r, err := balancer.ParseKeyRule(keys[m])
		if err != nil {
			return nil, &config.FieldError{Field: f, Reason: strings.TrimPrefix(err.Error(), balancer.ErrInvalidKey.Error()+" ")}
		}
		if _, err := balancer.NewPolicy(map[string]balancer.KeyRule{m: r}); err != nil {
			return nil, &config.FieldError{Field: f, Reason: strings.TrimPrefix(err.Error(), balancer.ErrInvalidKey.Error()+": ")}
		}
		rules[m] = r
	}
	if _, star := keys["*"]; star {
		if _, def := keys["default"]; def {
			return nil, &config.FieldError{Field: `balance.keys["default"]`, Reason: `"default" and "*" are the same key: give one`}
		}
	}
	p, err := balancer.NewPolicy(rules)
	if err != nil {
		return nil, &config.FieldError{Field: "balance.keys", Reason: err.Error()}
	}
	return p, nil
}
