package fastpath

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/transport"
)

// Defaults applied by Config.withDefaults for fields left at their zero value.
const (
	// DefaultMaxMessageSize is the largest datagram forwarded, in bytes
	// (Kamailio's default buffer size).
	DefaultMaxMessageSize = 16384
	// MaxListen is the largest number of listen addresses (the listen
	// index is carried in one base32 digit of the branch).
	MaxListen = 32
	// maxUDPPayload is the largest UDP payload over IPv4.
	maxUDPPayload = 65507
	// headroom is what a rewrite may add to a message: our Via, received
	// and rport, Max-Forwards, Record-Route. Output buffers are
	// MaxMessageSize+headroom bytes.
	headroom = 1024
	// DefaultUDPMTU is the default Config.UDPMTU.
	DefaultUDPMTU = 1300
	// MinSecretLen is the shortest MAC secret accepted.
	MinSecretLen = 16
)

// Config is the configuration of an Engine. The zero value of every field
// except Listen and Upstreams (or Picker) selects a default, documented on
// the field. Field names in errors are the keys of Viaduct's YAML file.
type Config struct {
	// Listen holds UDP addresses to receive on, IPv4 or IPv6: the
	// listeners of Transport, in this order. Port 0 picks an ephemeral
	// port (tests); every worker then shares the port the first socket
	// got. Give either Listen or Listeners, at least one address.
	Listen []netip.AddrPort

	// Listeners are the addresses to receive on with their transport
	// (UDP, TCP, TLS), for an engine on several transports; Listen is
	// the short form for UDP alone. After New, Config().Listen holds the
	// addresses of Listeners in order.
	Listeners []Listener

	// Advertise is the host[:port] that Viaduct puts into its Via (and
	// Record-Route) and recognises as its own. It may differ from the
	// listen address (a public address in front of NAT). Default: the
	// first listen address, which must then be a specific address, not
	// 0.0.0.0 or ::. Without a port the first listen port is used.
	Advertise string

	// Workers is the number of worker goroutines per listen address, each
	// owning one SO_REUSEPORT socket. Default: GOMAXPROCS.
	Workers int

	// Transport opens the UDP listen addresses when the engine starts
	// (udp.Bind): the sockets, their workers and their settings are the
	// transport's. Start needs it when there is a UDP listener; New and
	// NewWorker do not.
	Transport transport.Binder

	// Transports opens the listeners of the other transports (TCP and TLS:
	// stream.Bind), one Binder per kind; a Binder for UDP here is used when
	// Transport is nil. Start needs one for every kind Listeners name.
	Transports map[transport.Kind]transport.Binder

	// Stages wrap the Handler of every transport worker, the first
	// outermost: rooms such as the edge (admission) and capture (a tap)
	// see every message without the core importing them. nil: the
	// transports call the core directly.
	Stages []transport.Stage

	// Gate, if set, is asked before a stream transport accepts a
	// connection (transport.Layout.Gate).
	Gate transport.ConnGate

	// Upstreams are the next hops requests are balanced over, each with
	// weight 1, priority 0 and the default ID ("udp:" + address).
	// Requests coming from one of these exact addresses may be routed by
	// their Route or Request-URI instead (IP literals only). Give either
	// Upstreams or Targets.
	Upstreams []netip.AddrPort

	// Targets are the next hops with their balancing settings: ID (empty:
	// balancer.DefaultID(Transport, Addr)), Addr, Transport ("" or "udp",
	// "tcp", "tls": a TCP or TLS target needs a listener of its transport,
	// and requests reach it over a connection of that listener's
	// transport), Weight (0: balancer.DefaultWeight, else
	// 1..balancer.MaxWeight) and Priority (0..MaxPriority, lower is
	// preferred); Health and Admin are the initial states. Their addresses count as configured upstreams like
	// those of Upstreams. Give either Upstreams or Targets.
	Targets []balancer.Target

	// Balance is the selection mode of the default pool: balancer.ModeHash
	// (the zero value: weighted consistent hashing of the key Keys names)
	// or balancer.ModeRoundRobin (smooth weighted round robin, one cursor
	// per worker; no affinity at all, see the package documentation).
	Balance balancer.Mode

	// Keys maps request methods to the key hashed to choose an upstream.
	// nil means balancer.DefaultPolicy(): REGISTER by the To AOR, every
	// other method by Call-ID. CANCEL and ACK always hash the key of
	// INVITE, since they must reach the INVITE's upstream. A request
	// lacking its key is hashed on its Call-ID (Stats.KeyFallbacks counts
	// those).
	Keys *balancer.Policy

	// RecordRoute makes Viaduct add "Record-Route: <sip:ADVERTISE;lr>" to
	// dialog-forming requests (INVITE, SUBSCRIBE, REFER without To tag).
	RecordRoute bool

	// NextHops resolves the host names that requests from upstreams name as
	// their next hop (see NextHopResolver). Nil: such requests get 503.
	NextHops NextHopResolver

	// Path makes Viaduct add "Path: <sip:ADVERTISE;lr;received=IP:PORT>"
	// as the first Path value of every REGISTER it forwards from a client
	// (RFC 3327), where IP:PORT is the address the REGISTER came from. A
	// registrar that supports Path then sends the requests for that
	// contact through Viaduct, with that value as their first Route, and
	// Viaduct sends them on to the recorded address rather than to the
	// Request-URI (the contact, which behind a NAT is a private address):
	// the way back through the NAT binding the REGISTER opened.
	Path bool

	// UDPMTU is the size above which a request for a UDP upstream that
	// accepts TCP (Target.AcceptsTCP) goes over TCP instead (RFC 3261
	// 18.1.1: larger than 1300 bytes with the path MTU unknown), from a
	// TCP listener of the upstream's family, to the same address and
	// port. A larger request for any other UDP next hop goes over UDP and
	// is counted (Stats.LargeOverUDP). Default DefaultUDPMTU; -1 never
	// switches.
	UDPMTU int

	// DropOrphanResponses makes Viaduct drop a response whose client's TCP
	// or TLS connection is closed (counted as DropFlowGone) instead of
	// sending it to the Via's received address and rport over a new
	// connection (RFC 3261 18.2.2), which behind a NAT rarely reaches the
	// client.
	DropOrphanResponses bool

	// MaxMessageSize is the largest datagram accepted, in bytes; larger
	// requests get 513 Message Too Large, larger responses are dropped.
	// Default DefaultMaxMessageSize; at most 65507-1024.
	MaxMessageSize int

	// Secret keys the MAC in Viaduct's branch parameters. Instances that
	// must accept each other's responses need the same secret. Default:
	// 32 random bytes at start (responses to requests forwarded before a
	// restart are then dropped). At least MinSecretLen bytes.
	Secret []byte

	// PreviousSecret, if set, is the secret a rotation replaces: a
	// response whose branch carries its MAC is still accepted, while every
	// new branch is made with Secret. It keeps the responses to requests
	// forwarded before a restart that changed the secret, and lets
	// instances sharing responses change secrets one at a time. At least
	// MinSecretLen bytes.
	PreviousSecret []byte

	// Picker, if set, chooses the upstream for balanced requests instead
	// of the default balancer.Pool built from Upstreams or Targets (Balance
	// is then ignored; Keys still names the key). Its upstream addresses
	// count as "configured upstreams" (allowed to route by Route/Request-URI)
	// only if they are also listed in Upstreams or Targets.
	Picker Picker
}

// Listener is one address to receive on and its transport.
type Listener struct {
	Kind transport.Kind
	Addr netip.AddrPort
}

// String returns "kind:ip:port".
func (l Listener) String() string { return l.Kind.String() + ":" + l.Addr.String() }

// MaxPriority is the largest Target.Priority accepted.
const MaxPriority = balancer.MaxPriority

// targetTransports are the transports Config.Targets accept, the first
// being the one filled in when a target gives none.
var targetTransports = []string{"udp", "tcp", "tls"}

// FieldError reports an invalid configuration field: Field is its YAML key
// (with an index for lists, as in "upstreams[1]") and Reason says why. It
// is the one field error of every configuration block (config.FieldError).
type FieldError = config.FieldError

func fieldErr(field, format string, a ...any) error {
	return config.Errorf(field, format, a...)
}

// advertise is the parsed Advertise setting.
type advertise struct {
	host    string     // host as written in Via, without brackets
	addr    netip.Addr // valid when host is an IP literal
	port    int
	sentBy  string // "host:port", IPv6 in brackets
	isIPv6  bool
	hostLow string // lower-case host for comparisons
}

// Validate checks the configuration without changing it and returns a
// *FieldError naming the first bad field.
func (c *Config) Validate() error {
	_, _, err := c.withDefaults(false)
	return err
}

// withDefaults returns a copy of c with every default applied, and the parsed
// advertise address. With random set, a missing secret is drawn from
// crypto/rand. The phases run in the order of the fields, so the first bad
// field is the one reported.
func (c *Config) withDefaults(random bool) (Config, advertise, error) {
	n := *c
	phases := []func() error{
		n.checkListen,
		n.socketDefaults,
		n.upstreamDefaults,
		func() error { return n.secretDefaults(random) },
	}
	for _, phase := range phases {
		if err := phase(); err != nil {
			return n, advertise{}, err
		}
	}
	adv, err := parseAdvertise(n.Advertise, n.Listen[0])
	if err != nil {
		return n, advertise{}, err
	}
	return n, adv, nil
}

// checkListen merges Listen into Listeners and checks them: 1..MaxListen
// valid ip:port without zone, a transport Viaduct speaks, no address twice
// on one transport (port 0 excepted).
func (c *Config) checkListen() error {
	if len(c.Listen) > 0 && len(c.Listeners) > 0 && !sameAddrs(c.Listen, c.Listeners) {
		return fieldErr("listen", "give Listen or Listeners, not both (or Listen equal to the addresses of Listeners, as Config returns them)")
	}
	if len(c.Listeners) == 0 {
		c.Listeners = make([]Listener, len(c.Listen))
		for i, a := range c.Listen {
			c.Listeners[i] = Listener{Kind: transport.UDP, Addr: a}
		}
	}
	if len(c.Listeners) == 0 {
		return fieldErr("listen", "at least one listen address is required")
	}
	if len(c.Listeners) > MaxListen {
		return fieldErr("listen", "at most %d listen addresses are supported, got %d", MaxListen, len(c.Listeners))
	}
	c.Listen = make([]netip.AddrPort, len(c.Listeners))
	for i, l := range c.Listeners {
		if err := c.checkListener(i); err != nil {
			return err
		}
		c.Listen[i] = l.Addr
	}
	return nil
}

// sameAddrs reports whether addrs are the addresses of ls, in order.
func sameAddrs(addrs []netip.AddrPort, ls []Listener) bool {
	if len(addrs) != len(ls) {
		return false
	}
	for i, l := range ls {
		if addrs[i] != l.Addr {
			return false
		}
	}
	return true
}

// checkListener checks Listeners[i] against itself and those before it.
func (c *Config) checkListener(i int) error {
	l, f := c.Listeners[i], fmt.Sprintf("listen[%d]", i)
	switch {
	case !l.Addr.IsValid():
		return fieldErr(f, "not a valid ip:port")
	case l.Addr.Addr().Zone() != "":
		return fieldErr(f, "IPv6 zones are not supported (%s)", l.Addr)
	case !l.Kind.Valid():
		return fieldErr(f, "transport %q is not one Viaduct listens on (udp, tcp, tls, ws, wss)", l.Kind)
	}
	for j := 0; j < i; j++ {
		if c.Listeners[j] == l && l.Addr.Port() != 0 {
			return fieldErr(f, "duplicate of listen[%d] (%s)", j, l)
		}
	}
	return nil
}

// socketDefaults applies the defaults of the workers and the message
// size, and checks their ranges.
func (c *Config) socketDefaults() error {
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		return fieldErr("workers", "must be between 1 and 1024, got %d", c.Workers)
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.UDPMTU == 0 {
		c.UDPMTU = DefaultUDPMTU
	}
	if c.UDPMTU < -1 || c.UDPMTU > maxUDPPayload {
		return fieldErr("udp_mtu", "must be -1 (never switch to TCP) or 1..%d bytes, got %d", maxUDPPayload, c.UDPMTU)
	}
	if c.MaxMessageSize < 512 || c.MaxMessageSize > maxUDPPayload-headroom {
		return fieldErr("max_message_size", "must be between 512 and %d bytes, got %d", maxUDPPayload-headroom, c.MaxMessageSize)
	}
	return nil
}

// upstreamDefaults checks Upstreams or Targets (normalising Targets with
// balancer.NormalizeConfig), the balancing mode, and defaults the keys.
func (c *Config) upstreamDefaults() error {
	if len(c.Upstreams) > 0 && len(c.Targets) > 0 {
		return fieldErr("upstreams", "give Upstreams or Targets, not both")
	}
	if len(c.Upstreams) == 0 && len(c.Targets) == 0 && c.Picker == nil {
		return fieldErr("upstreams", "at least one upstream is required")
	}
	for i, u := range c.Upstreams {
		f := fmt.Sprintf("upstreams[%d]", i)
		if err := balancer.CheckDestination(u); err != nil {
			return fieldErr(f, "%v", err)
		}
		for j := 0; j < i; j++ {
			if c.Upstreams[j] == u {
				return fieldErr(f, "duplicate of upstreams[%d] (%s)", j, u)
			}
		}
	}
	if len(c.Targets) > 0 {
		ts, err := balancer.NormalizeConfig(c.Targets, targetTransports...)
		if err != nil {
			return err
		}
		c.Targets = ts
		if err := checkTargetListeners(ts, c.Listeners); err != nil {
			return err
		}
	}
	if c.Balance > balancer.ModeRoundRobin {
		return fieldErr("balance.mode", "unknown mode %d", c.Balance)
	}
	if c.Keys == nil {
		c.Keys = balancer.DefaultPolicy()
	}
	return nil
}

// checkTargetListeners checks that Viaduct listens on the transport of
// every target: a TCP or TLS upstream is reached from a listener of its
// transport (its Via names that listener, and the upstream's requests come
// back to it).
func checkTargetListeners(ts []balancer.Target, ls []Listener) error {
	for i, t := range ts {
		k := targetKind(t.Transport)
		if !slices.ContainsFunc(ls, func(l Listener) bool { return l.Kind == k }) {
			return fieldErr(fmt.Sprintf("upstreams[%d].transport", i), "%s upstream %s needs a %s listen address", k, t.Addr, k)
		}
	}
	return nil
}

// secretDefaults draws a missing secret from crypto/rand when random is
// set, and checks the lengths of Secret and PreviousSecret.
func (c *Config) secretDefaults(random bool) error {
	if c.Secret == nil && random {
		c.Secret = make([]byte, 32)
		if _, err := rand.Read(c.Secret); err != nil {
			return fmt.Errorf("secret: reading random bytes: %w", err)
		}
	}
	if c.Secret != nil && len(c.Secret) < MinSecretLen {
		return fieldErr("secret", "must be at least %d bytes, got %d", MinSecretLen, len(c.Secret))
	}
	if c.PreviousSecret != nil && len(c.PreviousSecret) < MinSecretLen {
		return fieldErr("previous_secret", "must be at least %d bytes, got %d", MinSecretLen, len(c.PreviousSecret))
	}
	return nil
}

// parseAdvertise parses the advertise setting; an empty one means the first
// listen address.
func parseAdvertise(s string, first netip.AddrPort) (advertise, error) {
	var a advertise
	if s == "" {
		if first.Addr().IsUnspecified() {
			return a, fieldErr("advertise", "required when listen[0] is the unspecified address %s: Viaduct must put a reachable address into its Via", first.Addr())
		}
		a.addr = first.Addr().Unmap()
		a.host = a.addr.String()
		a.port = int(first.Port())
	} else {
		host, port, err := splitHostPort(s)
		if err != nil {
			return a, fieldErr("advertise", "%v", err)
		}
		if port == 0 {
			port = int(first.Port())
		}
		a.host = host
		a.port = port
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Zone() != "" {
				return a, fieldErr("advertise", "IPv6 zones are not supported (%s)", s)
			}
			if ip.IsUnspecified() {
				return a, fieldErr("advertise", "the unspecified address %s is not reachable", ip)
			}
			a.addr = ip.Unmap()
			a.host = a.addr.String()
		} else if !validHostname(host) {
			return a, fieldErr("advertise", "%q is neither an IP address nor a valid host name", host)
		}
	}
	a.isIPv6 = a.addr.Is6()
	a.hostLow = strings.ToLower(a.host)
	if a.isIPv6 {
		a.sentBy = "[" + a.host + "]:" + strconv.Itoa(a.port)
	} else {
		a.sentBy = a.host + ":" + strconv.Itoa(a.port)
	}
	return a, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port". A missing
// port is returned as 0.
func splitHostPort(s string) (host string, port int, err error) {
	rest := ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("%q: missing ']'", s)
		}
		host, rest = s[1:end], s[end+1:]
	case strings.Count(s, ":") > 1:
		return s, 0, nil // bare IPv6 literal without port
	default:
		host, rest, _ = strings.Cut(s, ":")
		if strings.Contains(s, ":") {
			rest = ":" + rest
		}
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: empty host", s)
	}
	if rest == "" {
		return host, 0, nil
	}
	if rest[0] != ':' {
		return "", 0, fmt.Errorf("%q: unexpected %q after host", s, rest)
	}
	p, err := strconv.Atoi(rest[1:])
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", s)
	}
	return host, p, nil
}

// validHostname reports whether s is a syntactically valid DNS host name
// (RFC 3261 hostname: labels of letters, digits and '-', dot separated).
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			label++
			if label > 63 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// NextHopState is what a NextHopResolver knows of a host name.
type NextHopState uint8

// The states of a next-hop lookup.
const (
	NextHopFound   NextHopState = iota // the address is known
	NextHopPending                     // being resolved: ask again later
	NextHopFailed                      // does not resolve
)

// NextHopResolver resolves the host name of a request's next hop: a request
// from an upstream whose next Route, or Request-URI, names a host rather
// than an IP address (RFC 3263). LookupNextHop is called on the fast path
// with the URI's host (or maddr) and port (0 when the URI gives none) and
// must neither block nor, for a name it knows, allocate: it answers from
// what it has and resolves unknown names in the background. The request is
// forwarded on NextHopFound, dropped on NextHopPending (counted as
// DropNextHopPending: the upstream's retransmission will find the answer)
// and answered 503 on NextHopFailed. It is called concurrently by every
// worker. resolve.NextHops is the implementation cmd/viaduct uses.
type NextHopResolver interface {
	LookupNextHop(host []byte, port int) (netip.AddrPort, NextHopState)
}
