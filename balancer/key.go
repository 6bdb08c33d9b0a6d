package balancer

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/viaduct-sip/viaduct/internal/enum"
)

// HashKey hashes a selection key (the bytes of a Call-ID, an AOR, ...) for
// Table.Pick. It is xxhash64 with seed 0, the one place of truth for key
// hashing: every Viaduct instance maps the same key to the same value.
func HashKey(b []byte) uint64 { return xxhash.Sum64(b) }

// HashKeyString is HashKey for a string.
func HashKeyString(s string) uint64 { return xxhash.Sum64String(s) }

// KeyKind names the part of a SIP request that is hashed to choose a target.
// The balancer does not parse SIP: the fast path extracts the key the
// policy names and passes its HashKey to Table.Pick.
type KeyKind uint8

// Key kinds. When a request lacks the chosen key (no such header, a URI
// without a user part, ...), the extractor falls back to KeyCallID.
const (
	// KeyCallID hashes the Call-ID header value. Every request of a dialog,
	// and the CANCEL of an INVITE, carries the INVITE's Call-ID, so they all
	// reach the target the INVITE reached while that target lives.
	KeyCallID KeyKind = iota
	// KeyToAOR hashes the To URI's user@host (the address of record, without
	// scheme, parameters or display name). It is the default for REGISTER:
	// both REGISTERs of a digest challenge and every refresh of a binding
	// reach the same registrar even though their Call-IDs may differ.
	KeyToAOR
	// KeyFromURI hashes the From URI's user@host: all requests of one caller
	// go to one target.
	KeyFromURI
	// KeyRequestUser hashes the user part of the Request-URI (the dialled
	// number), e.g. to pin a callee to one media server.
	KeyRequestUser
	// KeyHeader hashes the value of the header named in KeyRule.Header.
	KeyHeader
	// KeyRequestAOR hashes the Request-URI's user@host, normalised exactly
	// as KeyToAOR normalises the To URI, so that a request addressed to a
	// user (an INVITE, a MESSAGE) reaches the registrar that KeyToAOR sent
	// the user's REGISTERs to. CANCEL and the ACK of a non-2xx response
	// copy the INVITE's Request-URI, so they reach its target too.
	KeyRequestAOR

	numKeyKinds // the number of kinds; not a kind
)

var keyKindNames = [numKeyKinds]string{KeyCallID: "call-id", KeyToAOR: "to-aor", KeyFromURI: "from-uri",
	KeyRequestUser: "ruri-user", KeyHeader: "header", KeyRequestAOR: "ruri-aor"}

// String returns the config spelling of k: "call-id", "to-aor",
// "from-uri", "ruri-user", "ruri-aor" or "header".
func (k KeyKind) String() string { return enum.Name(keyKindNames[:], k, "KeyKind") }

// KeyRule says which key to hash. Header is the header name for KeyHeader
// (header names compare case-insensitively in SIP; the extractor should also
// accept the compact form) and empty otherwise.
type KeyRule struct {
	// Kind is the part of the request to hash.
	Kind KeyKind
	// Header is the header name when Kind is KeyHeader.
	Header string
}

// String returns the config spelling of r, which ParseKeyRule accepts.
func (r KeyRule) String() string {
	if r.Kind == KeyHeader {
		return "header:" + r.Header
	}
	return r.Kind.String()
}

// ParseKeyRule parses a key rule from config: "call-id", "to-aor",
// "from-uri", "ruri-user", "ruri-aor" or "header:NAME" (kind names are case
// insensitive; NAME must be a SIP token). Errors wrap ErrInvalidKey and
// quote the bad value.
func ParseKeyRule(s string) (KeyRule, error) {
	v := strings.TrimSpace(s)
	if name, ok := cutPrefixFold(v, "header:"); ok {
		name = strings.TrimSpace(name)
		if !isToken(name) {
			return KeyRule{}, fmt.Errorf("%w %q: header name %q is not a SIP token", ErrInvalidKey, s, name)
		}
		return KeyRule{Kind: KeyHeader, Header: name}, nil
	}
	if k, ok := enum.Parse[KeyKind](keyKindNames[:], strings.ToLower(v)); ok && k != KeyHeader {
		return KeyRule{Kind: k}, nil
	}
	return KeyRule{}, fmt.Errorf("%w %q: want call-id, to-aor, from-uri, ruri-user, ruri-aor or header:NAME", ErrInvalidKey, s)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// isToken reports whether s is a non-empty SIP token (RFC 3261 25.1).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Policy maps SIP methods to key rules. The zero Policy and a nil *Policy
// are valid and hash everything on Call-ID (without REGISTER's default);
// use NewPolicy or DefaultPolicy for the documented defaults. A Policy is
// immutable once built and safe for concurrent use.
type Policy struct {
	def     KeyRule
	methods []methodRule
}

type methodRule struct {
	method string
	rule   KeyRule
}

// DefaultPolicy returns the default policy: REGISTER hashes the To AOR (so
// a registrar that does not share state sees every REGISTER of a binding),
// everything else hashes the Call-ID (so in-dialog requests and CANCEL
// follow their INVITE).
func DefaultPolicy() *Policy {
	p, _ := NewPolicy(nil)
	return p
}

// NewPolicy builds a policy from per-method rules on top of the defaults.
// The map key "*" (or "default") sets the rule for unlisted methods
// (default call-id); other keys are method names, matched case-sensitively
// as SIP requires (write them upper case). REGISTER hashes to-aor unless it
// is listed explicitly: setting "*" does not change REGISTER.
func NewPolicy(rules map[string]KeyRule) (*Policy, error) {
	p := &Policy{def: KeyRule{Kind: KeyCallID}}
	reg := KeyRule{Kind: KeyToAOR}
	names := make([]string, 0, len(rules))
	for m := range rules {
		names = append(names, m)
	}
	sort.Strings(names) // deterministic errors and order
	for _, m := range names {
		r := rules[m]
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("method %q: %w", m, err)
		}
		switch {
		case m == "*" || m == "default":
			p.def = r
		case m == "REGISTER":
			reg = r
		case isToken(m):
			p.methods = append(p.methods, methodRule{method: m, rule: r})
		default:
			return nil, fmt.Errorf("%w: method %q is not a SIP token", ErrInvalidKey, m)
		}
	}
	p.methods = append(p.methods, methodRule{method: "REGISTER", rule: reg})
	return p, nil
}

// ParsePolicy is NewPolicy for string rules as they appear in config, e.g.
// {"REGISTER": "to-aor", "MESSAGE": "from-uri", "*": "call-id"}. Errors
// name the method and the bad value.
func ParsePolicy(rules map[string]string) (*Policy, error) {
	parsed := make(map[string]KeyRule, len(rules))
	for m, s := range rules {
		r, err := ParseKeyRule(s)
		if err != nil {
			return nil, fmt.Errorf("method %q: %w", m, err)
		}
		parsed[m] = r
	}
	return NewPolicy(parsed)
}

func (r KeyRule) validate() error {
	switch {
	case r.Kind >= numKeyKinds:
		return fmt.Errorf("%w: kind %v", ErrInvalidKey, r.Kind)
	case r.Kind == KeyHeader && !isToken(r.Header):
		return fmt.Errorf("%w %q: header name %q is not a SIP token", ErrInvalidKey, r.String(), r.Header)
	case r.Kind != KeyHeader && r.Header != "":
		return fmt.Errorf("%w: %v rule with header %q", ErrInvalidKey, r.Kind, r.Header)
	}
	return nil
}

// For returns the key rule for a request method. Methods compare
// case-sensitively; the scan is over a handful of entries and does not
// allocate.
func (p *Policy) For(method []byte) KeyRule {
	if p == nil {
		return KeyRule{Kind: KeyCallID}
	}
	for i := range p.methods {
		if string(method) == p.methods[i].method {
			return p.methods[i].rule
		}
	}
	return p.def
}

// Default returns the rule for methods the policy does not list.
func (p *Policy) Default() KeyRule {
	if p == nil {
		return KeyRule{Kind: KeyCallID}
	}
	return p.def
}

// Rules returns the per-method rules (including REGISTER's) as config
// strings, for display.
func (p *Policy) Rules() map[string]string {
	out := map[string]string{"*": p.Default().String()}
	if p != nil {
		for _, m := range p.methods {
			out[m.method] = m.rule.String()
		}
	}
	return out
}
