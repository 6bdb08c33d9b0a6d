package balancer

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// MaxPriority is the largest Target.Priority a configuration may give.
const MaxPriority = 65535

// maxIDLen bounds the length of a configured target ID.
const maxIDLen = 128

// NormalizeConfig validates targets as a configuration file gives them (the
// upstreams list) and returns a copy with the defaults a config loader
// applies: unmapped addresses, the transport when none is given (the first
// of transports), weight DefaultWeight when 0, the default ID when empty.
// Every target must use one of transports (any case) or leave it empty. Unlike NewPool it also checks
// what a user can get wrong: duplicate addresses, the priority range, IDs
// fit for logs, metric labels and URLs. Errors are *config.FieldError
// values naming the field as "upstreams[i].<key>".
func NormalizeConfig(in []Target, transports ...string) ([]Target, error) {
	if len(in) > MaxTargets {
		return nil, config.Errorf("upstreams", "at most %d upstreams are supported, got %d", MaxTargets, len(in))
	}
	out := make([]Target, len(in))
	byID := make(map[string]int, len(in))
	byAddr := make(map[netip.AddrPort]int, len(in))
	total := 0
	for i, t := range in {
		f := fmt.Sprintf("upstreams[%d]", i)
		if err := CheckDestination(t.Addr); err != nil {
			return nil, config.Errorf(f+".address", "%v", err)
		}
		t.Addr = netip.AddrPortFrom(t.Addr.Addr().Unmap(), t.Addr.Port())
		if j, dup := byAddr[t.Addr]; dup {
			return nil, config.Errorf(f+".address", "duplicate of upstreams[%d] (%s)", j, t.Addr)
		}
		byAddr[t.Addr] = i
		if err := t.configDefaults(f, transports); err != nil {
			return nil, err
		}
		total += t.Weight
		if j, dup := byID[t.ID]; dup {
			return nil, config.Errorf(f+".id", "%q is also the id of upstreams[%d]", t.ID, j)
		}
		byID[t.ID] = i
		out[i] = t
	}
	if total > MaxTotalWeight {
		return nil, config.Errorf("upstreams", "total weight %d exceeds %d", total, MaxTotalWeight)
	}
	return out, nil
}

// configDefaults checks the transport, weight, priority and ID of the
// configured target t, field f, and fills their defaults.
func (t *Target) configDefaults(f string, transports []string) error {
	switch i := slices.IndexFunc(transports, func(s string) bool { return strings.EqualFold(s, t.Transport) }); {
	case t.Transport == "" && len(transports) > 0:
		t.Transport = transports[0]
	case i < 0:
		return config.Errorf(f+".transport", "%q: want one of %s", t.Transport, strings.Join(transports, ", "))
	default:
		t.Transport = transports[i]
	}
	if t.Weight == 0 {
		t.Weight = DefaultWeight
	}
	if t.Weight < 1 || t.Weight > MaxWeight {
		return config.Errorf(f+".weight", "must be 1..%d, got %d", MaxWeight, t.Weight)
	}
	if t.Priority < 0 || t.Priority > MaxPriority {
		return config.Errorf(f+".priority", "must be 0..%d, got %d", MaxPriority, t.Priority)
	}
	if t.ID == "" {
		t.ID = DefaultID(t.Transport, t.Addr)
	} else if err := checkID(t.ID); err != nil {
		return config.Errorf(f+".id", "%v", err)
	}
	return nil
}

// CheckDestination checks that a configured address can be a destination:
// valid, with a non-zero port, not unspecified, without an IPv6 zone.
func CheckDestination(u netip.AddrPort) error {
	if !u.IsValid() || u.Port() == 0 {
		return fmt.Errorf("not a valid ip:port with a non-zero port")
	}
	if u.Addr().IsUnspecified() {
		return fmt.Errorf("unspecified address %s cannot be a destination", u.Addr())
	}
	if u.Addr().Zone() != "" {
		return fmt.Errorf("IPv6 zones are not supported (%s)", u)
	}
	return nil
}

// checkID checks a configured target ID: 1..maxIDLen printable characters
// without white space (it appears in logs, metrics labels and admin URLs).
func checkID(id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("%d bytes, at most %d", len(id), maxIDLen)
	}
	for _, r := range id {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Errorf("%q: only printable characters without white space", id)
		}
	}
	return nil
}
