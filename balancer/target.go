package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/viaduct-sip/viaduct/internal/enum"
	"github.com/viaduct-sip/viaduct/transport"
)

// Limits on pool configuration.
const (
	// DefaultWeight is the weight a config loader should give a target whose
	// weight is not configured. NewPool itself rejects weight 0 rather than
	// guessing: "no traffic" is expressed with AdminDisabled or AdminDraining.
	DefaultWeight = 1
	// MaxWeight is the largest weight of a single target. Weights are
	// relative, so small integers (1..100) are the norm.
	MaxWeight = 1000
	// MaxTotalWeight bounds the sum of the weights of a pool, which bounds
	// the memory (48 bytes per unit of weight) and time of a table build.
	MaxTotalWeight = 1 << 20
	// MaxTargets is the largest number of targets in a pool.
	MaxTargets = 1 << 16
)

// Errors returned (wrapped, with the offending target or value named) by the
// configuration and state-changing functions. Test with errors.Is.
var (
	// ErrInvalidTarget reports a target that fails validation.
	ErrInvalidTarget = errors.New("invalid target")
	// ErrUnknownTarget reports a state change for an ID that is not in the
	// pool.
	ErrUnknownTarget = errors.New("unknown target")
	// ErrInvalidKey reports a key rule or policy that cannot be parsed.
	ErrInvalidKey = errors.New("invalid key rule")
)

// Health is a target's health as reported by health checks. The zero value
// is Up: a target is presumed healthy until a check says otherwise.
type Health uint8

// Health values.
const (
	// Up means the target answers; it can be selected.
	Up Health = iota
	// Down means the target does not answer; it is not selected, unless
	// every target is down and the pool is in panic mode (AllDown).
	Down
)

var healthNames = []string{Up: "up", Down: "down"}

// String returns "up" or "down".
func (h Health) String() string { return enum.Name(healthNames, h, "Health") }

// AdminState is the operator's intent for a target. The zero value is
// Enabled.
type AdminState uint8

// AdminState values.
const (
	// Enabled targets take new dialogs and in-dialog requests.
	Enabled AdminState = iota
	// Draining targets take no new dialogs but keep receiving the in-dialog
	// requests (Pick with inDialog=true) of the dialogs hashed to them.
	Draining
	// Disabled targets are never selected.
	Disabled
)

var adminStateNames = []string{Enabled: "enabled", Draining: "draining", Disabled: "disabled"}

// String returns "enabled", "draining" or "disabled".
func (a AdminState) String() string { return enum.Name(adminStateNames, a, "AdminState") }

// ParseAdminState parses "enabled", "draining" or "disabled" (case
// insensitive), for an admin API or a config loader.
func ParseAdminState(s string) (AdminState, error) {
	if a, ok := enum.Parse[AdminState](adminStateNames, strings.ToLower(strings.TrimSpace(s))); ok {
		return a, nil
	}
	return 0, fmt.Errorf("admin state %q: want enabled, draining or disabled", s)
}

// AllDown is what a pool does when every target that is not disabled is
// down (Table.AllDown). The zero value is AllDownForward.
type AllDown uint8

// AllDown values.
const (
	// AllDownForward is panic mode, as Envoy's: when every target that is
	// not disabled is down, health is ignored and every such target of
	// every priority group becomes selectable (enabled ones for new
	// dialogs, enabled and draining ones for in-dialog requests), with
	// their weights. Health checks can be wrong (an upstream that answers
	// calls but not OPTIONS, a probe path that is cut while the traffic
	// path is not); forwarding to all of them then serves what can be
	// served instead of refusing everything. It is the default.
	AllDownForward AllDown = iota
	// AllDownReject selects no target when every target is down:
	// requests get 503 until one is up again.
	AllDownReject
)

var allDownNames = []string{AllDownForward: "forward", AllDownReject: "reject"}

// String returns "forward" or "reject".
func (a AllDown) String() string { return enum.Name(allDownNames, a, "AllDown") }

// ParseAllDown parses "forward" (or "", the default) or "reject", for
// config loaders.
func ParseAllDown(s string) (AllDown, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return AllDownForward, nil
	}
	if a, ok := enum.Parse[AllDown](allDownNames, v); ok {
		return a, nil
	}
	return 0, fmt.Errorf("%q: want forward (panic mode: send to every upstream anyway) or reject (answer 503)", s)
}

// TransportSCTP is the name of SCTP (RFC 4168), which a target may name
// (DNS SRV records _sip._sctp do) although it has no transport.Kind:
// Viaduct has no SCTP transport.
const TransportSCTP = "sctp"

// knownTransport reports whether tr (lower case) is a SIP transport a
// target may use: one of transport's kinds (RFC 3261, 7118) or SCTP.
func knownTransport(tr string) bool {
	_, ok := transport.ParseKind(tr)
	return ok || tr == TransportSCTP
}

// knownTransports lists the transports knownTransport accepts, for an
// error message: "udp, tcp, tls, ws, wss or sctp".
func knownTransports() string {
	return strings.Join(transport.Names(), ", ") + " or " + TransportSCTP
}

// Target is one upstream server of a pool, with its configuration and its
// current state. Tables hand out pointers to their own immutable copies:
// callers must not modify a *Target obtained from a Table.
type Target struct {
	// ID is the stable identity of the target. Its xxhash is all that the
	// consistent hashing sees of the target, so calls stay where they are
	// when the config list is reordered or the address of a target changes
	// under the same ID. Empty means the default, Transport + ":" + Addr,
	// e.g. "udp:10.0.0.1:5060" or "tcp:[2001:db8::1]:5060".
	ID string
	// Addr is the IPv4 or IPv6 address and port of the target.
	Addr netip.AddrPort
	// Transport is the name of a transport.Kind (udp, tcp, tls, ws, wss)
	// or sctp, in any case (stored lower case).
	Transport string
	// Weight is the relative share of traffic, 1..MaxWeight.
	Weight int
	// Priority is the target's group: lower is preferred. Traffic goes to
	// the lowest-numbered group that has a selectable target.
	Priority int
	// Health is the target's health (zero value Up).
	Health Health
	// Admin is the operator's state for the target (zero value Enabled).
	Admin AdminState
	// AcceptsTCP says that a UDP target also listens on TCP at its
	// address, so that a request too large for UDP (RFC 3261 18.1.1) may
	// go there over TCP.
	AcceptsTCP bool

	idHash uint64
	// healthIgnored is set on the copies of a table in panic mode (see
	// AllDown): its selection ignores health.
	healthIgnored bool
}

// IDHash returns the xxhash of the target's ID, the value the consistent
// hashing is keyed on. It is set on targets obtained from a Table (zero on
// a Target that has not been through NewPool or Update).
func (t *Target) IDHash() uint64 { return t.idHash }

// Selectable reports whether the target's health and admin state let it
// take new dialogs (inDialog false: up and enabled) or the requests of
// existing dialogs (inDialog true: up, and enabled or draining), whatever
// its priority group. On a target obtained from a table in panic mode
// (Table.Panic) health does not count: only the admin state does.
func (t *Target) Selectable(inDialog bool) bool { return t.selectable(inDialog) }

// selectable reports whether the target may be picked for a new dialog
// (inDialog false) or an in-dialog request (inDialog true).
func (t *Target) selectable(inDialog bool) bool {
	if t.Health != Up && !t.healthIgnored {
		return false
	}
	return t.admitted(inDialog)
}

// admitted reports whether the admin state lets the target take new
// dialogs (enabled) or in-dialog requests (enabled or draining).
func (t *Target) admitted(inDialog bool) bool {
	return t.Admin == Enabled || (inDialog && t.Admin == Draining)
}

// normalize validates t in place, fills the default ID and lower-cases the
// transport.
func (t *Target) normalize() error {
	tr := strings.ToLower(t.Transport)
	if !knownTransport(tr) {
		return fmt.Errorf("%w: %s: transport %q: want %s", ErrInvalidTarget, t.name(), t.Transport, knownTransports())
	}
	t.Transport = tr
	if !t.Addr.IsValid() || !t.Addr.Addr().IsValid() {
		return fmt.Errorf("%w: %s: address not set", ErrInvalidTarget, t.name())
	}
	if t.Addr.Port() == 0 {
		return fmt.Errorf("%w: %s: port 0", ErrInvalidTarget, t.name())
	}
	if t.Addr.Addr().Zone() != "" {
		return fmt.Errorf("%w: %s: address %s has a zone", ErrInvalidTarget, t.name(), t.Addr)
	}
	if t.Weight < 1 || t.Weight > MaxWeight {
		return fmt.Errorf("%w: %s: weight %d: want 1..%d (use admin state disabled or draining to stop traffic)", ErrInvalidTarget, t.name(), t.Weight, MaxWeight)
	}
	if t.Health > Down {
		return fmt.Errorf("%w: %s: %v", ErrInvalidTarget, t.name(), t.Health)
	}
	if t.Admin > Disabled {
		return fmt.Errorf("%w: %s: %v", ErrInvalidTarget, t.name(), t.Admin)
	}
	if t.ID == "" {
		t.ID = DefaultID(t.Transport, t.Addr)
	}
	t.idHash = xxhash.Sum64String(t.ID)
	t.healthIgnored = false // the table being built decides
	return nil
}

// name identifies t in error messages, before normalize has set the ID.
func (t *Target) name() string {
	if t.ID != "" {
		return fmt.Sprintf("target %q", t.ID)
	}
	return fmt.Sprintf("target %s:%s", t.Transport, t.Addr)
}

// DefaultID returns the ID of a target that has none configured:
// transport + ":" + address, e.g. "udp:10.0.0.1:5060".
func DefaultID(transport string, addr netip.AddrPort) string {
	return strings.ToLower(transport) + ":" + addr.String()
}

// normalizeTargets validates a configuration and returns a normalised copy.
func normalizeTargets(in []Target) ([]Target, error) {
	if len(in) > MaxTargets {
		return nil, fmt.Errorf("%w: %d targets, at most %d", ErrInvalidTarget, len(in), MaxTargets)
	}
	out := make([]Target, len(in))
	byID := make(map[string]int, len(in))
	byHash := make(map[uint64]string, len(in))
	total := 0
	for i := range in {
		t := in[i]
		if err := t.normalize(); err != nil {
			return nil, err
		}
		if j, dup := byID[t.ID]; dup {
			return nil, fmt.Errorf("%w: duplicate id %q (entries %d and %d)", ErrInvalidTarget, t.ID, j, i)
		}
		if other, dup := byHash[t.idHash]; dup {
			return nil, fmt.Errorf("%w: ids %q and %q have the same xxhash; rename one", ErrInvalidTarget, other, t.ID)
		}
		byID[t.ID] = i
		byHash[t.idHash] = t.ID
		total += t.Weight
		out[i] = t
	}
	if total > MaxTotalWeight {
		return nil, fmt.Errorf("%w: total weight %d exceeds %d", ErrInvalidTarget, total, MaxTotalWeight)
	}
	return out, nil
}
