package resolve

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/transport"
)

// DefaultPort is the port of a host-name upstream written without one
// (RFC 3263 4.2: 5060 for UDP and TCP).
const DefaultPort = 5060

// Kind says how a Source becomes targets.
type Kind uint8

// The kinds of source.
const (
	// KindAddr is a literal IP address and port: one target, no lookup.
	KindAddr Kind = iota
	// KindHost is a host name: one target per A and AAAA record, all on
	// Source.Port.
	KindHost
	// KindSRV is an SRV name ("_sip._udp.example.com"): one target per
	// address of every SRV record's target host, on the record's port, with
	// the record's priority and weight (RFC 2782, RFC 3263 4.2).
	KindSRV
)

// String returns "addr", "host" or "srv".
func (k Kind) String() string {
	switch k {
	case KindAddr:
		return "addr"
	case KindHost:
		return "host"
	case KindSRV:
		return "srv"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Source is one upstream as configured: an address, a host name or an SRV
// name, with the balancer settings its targets get.
type Source struct {
	// Kind says which of Addr or Name is set.
	Kind Kind
	// Addr is the address of a KindAddr source.
	Addr netip.AddrPort
	// Name is the host name (KindHost) or SRV name (KindSRV), lower case,
	// without a trailing dot.
	Name string
	// Absolute records that the name was written with a trailing dot
	// ("sip.example.com."): it is then looked up as that absolute name,
	// with no search domain appended, and the hosts file (which lists
	// names without the dot) does not match it. A name written without
	// one is looked up as written, as the system resolver does: the hosts
	// file first (nsswitch), then DNS with the resolv.conf search rules.
	Absolute bool
	// Port is the port of every address of a KindHost source (0 means
	// DefaultPort). SRV records carry their own ports.
	Port uint16
	// Transport is the targets' transport; "" means "udp". ParseSource
	// sets it from an SRV name's protocol label.
	Transport string
	// ID is the target ID of a KindAddr source ("" means
	// balancer.DefaultID). Targets found in DNS always get the default ID
	// (transport:ip:port), so a server keeps its identity, and its health
	// and admin state, whichever name or record leads to it.
	ID string
	// Weight is the balancer weight of a KindAddr target and of every
	// address of a KindHost source (0 means balancer.DefaultWeight). It is
	// ignored for KindSRV: the records' weights are used (see SRVWeights).
	Weight int
	// Priority is the balancer priority of a KindAddr or KindHost source's
	// targets. For KindSRV it is added to every record's priority, so that
	// a whole SRV set can be placed behind (or before) other upstreams
	// (the sum is capped at MaxPriority).
	Priority int
	// Admin is the admin state the targets start with when they first
	// appear (a target that remains keeps the state it has).
	Admin balancer.AdminState
}

// IsDNS reports whether s needs a DNS lookup.
func (s Source) IsDNS() bool { return s.Kind != KindAddr }

// String returns s as ParseSource accepts it.
func (s Source) String() string {
	switch s.Kind {
	case KindAddr:
		return s.Addr.String()
	case KindHost:
		return s.query() + ":" + strconv.Itoa(int(s.port()))
	}
	return s.query()
}

// query is the name asked of the resolver: Name, with the trailing dot
// when it was written with one.
func (s Source) query() string {
	if s.Absolute {
		return s.Name + "."
	}
	return s.Name
}

func (s Source) port() uint16 {
	if s.Port == 0 {
		return DefaultPort
	}
	return s.Port
}

func (s Source) transport() string {
	if s.Transport == "" {
		return transport.UDP.String()
	}
	return strings.ToLower(s.Transport)
}

// key identifies the DNS question(s) behind s, for reusing answers across
// a reload.
func (s Source) key() string {
	return s.Kind.String() + " " + s.query()
}

// ParseSource parses an upstream as written in the config:
//
//	10.0.0.1:5060, [2001:db8::1]:5060     an address (KindAddr)
//	10.0.0.1, 2001:db8::1                 an address on port 5060
//	sip.example.com:5080, sip.example.com a host name (KindHost), port 5060 by default
//	_sip._udp.example.com                 an SRV name (KindSRV): its first two labels start with '_'
//
// A name is looked up as written: a trailing dot ("sip.example.com.")
// makes it absolute (Source.Absolute), without one the system resolver's
// rules apply (the hosts file, then DNS with the search domains).
// The transport of an SRV name comes from its protocol label ("_udp" udp,
// "_tcp" tcp, or tls for "_sips._tcp", "_sctp" sctp); it is udp otherwise.
// Errors say what is wrong with s.
func ParseSource(s string) (Source, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Source{}, fmt.Errorf("empty upstream")
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return addrSource(s, ap)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return addrSource(s, netip.AddrPortFrom(a, DefaultPort))
	}
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") > 1 {
		return Source{}, fmt.Errorf("%q is not an IP address and port ([IPv6]:port) nor a host name", s)
	}
	host, port := s, uint16(0)
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host = s[:i]
		p, err := strconv.ParseUint(s[i+1:], 10, 16)
		if err != nil || p == 0 {
			return Source{}, fmt.Errorf("%q: port %q is not a number in 1..65535", s, s[i+1:])
		}
		port = uint16(p)
	}
	name, err := checkName(host)
	if err != nil {
		return Source{}, fmt.Errorf("%q: %w", s, err)
	}
	absolute := strings.HasSuffix(host, ".")
	labels := strings.Split(name, ".")
	if strings.HasPrefix(labels[0], "_") {
		if len(labels) < 3 || !strings.HasPrefix(labels[1], "_") {
			return Source{}, fmt.Errorf("%q: an SRV name is _service._proto.domain, e.g. _sip._udp.example.com", s)
		}
		if port != 0 {
			return Source{}, fmt.Errorf("%q: an SRV name takes no port: its records give the ports", s)
		}
		tr := transport.UDP.String()
		switch labels[1] {
		case "_tcp":
			tr = transport.TCP.String()
			if labels[0] == "_sips" {
				tr = transport.TLS.String()
			}
		case "_sctp":
			tr = balancer.TransportSCTP
		}
		return Source{Kind: KindSRV, Name: name, Absolute: absolute, Transport: tr}, nil
	}
	return Source{Kind: KindHost, Name: name, Absolute: absolute, Port: port}, nil
}

func addrSource(s string, ap netip.AddrPort) (Source, error) {
	if ap.Port() == 0 {
		return Source{}, fmt.Errorf("%q: port 0", s)
	}
	if ap.Addr().Zone() != "" {
		return Source{}, fmt.Errorf("%q: an address with a zone cannot be an upstream", s)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return Source{Kind: KindAddr, Addr: ap}, nil
}

// checkName validates a DNS name (letters, digits, '-', '_' in labels of
// 1 to 63 characters, at most 253 characters) and returns it in lower case
// without a trailing dot.
func checkName(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return "", fmt.Errorf("host name must have 1 to 253 characters")
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("host name labels must have 1 to 63 characters")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("character %q not allowed in a host name", c)
			}
		}
	}
	return strings.ToLower(s), nil
}
