package edge

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// Mode is how a rule acts: enforce drops, log_only only counts what it
// would have dropped, off skips the rule.
type Mode string

// The modes of a rule; "" means the default, enforce.
const (
	Enforce Mode = "enforce"
	LogOnly Mode = "log_only"
	Off     Mode = "off"
)

func (m Mode) check(field string) error {
	switch m {
	case "", Enforce, LogOnly, Off:
		return nil
	}
	return config.Errorf(field, "%q is not one of enforce, log_only, off", string(m))
}

// or returns m, or Enforce when m is unset.
func (m Mode) or() Mode {
	if m == "" {
		return Enforce
	}
	return m
}

// Config is the edge section of the configuration file. The zero value
// (no section) is the safe default: the scanner drop, the per-source limits
// and their bans on, no access list.
//
//	edge:
//	  enabled: true
//	  access: {allow: [], deny: [], trusted: [10.0.0.0/8], blocklist_file: /etc/viaduct/voipbl.txt}
//	  limits: {register: {rate: 50, burst: 500}, invite: {rate: 20, burst: 100}, other: {rate: 200, burst: 2000}}
//	  bans: {after: 200, window: 10s, ttl: 10m}
//	  scanners: {user_agents: [friendly-scanner, sipvicious]}
//	  gateways: {caps: [{upstream: carrier-a, cps: 30}]}
type Config struct {
	// Enabled turns the whole edge stage off when false (default true).
	Enabled *bool `yaml:"enabled"`
	// Access holds the CIDR lists.
	Access AccessConfig `yaml:"access"`
	// Limits holds the per-source rate limits.
	Limits LimitsConfig `yaml:"limits"`
	// Bans holds the escalation of limit violations to bans.
	Bans BansConfig `yaml:"bans"`
	// Scanners holds the User-Agent drop.
	Scanners ScannersConfig `yaml:"scanners"`
	// Gateways holds the per-upstream call-rate caps.
	Gateways GatewaysConfig `yaml:"gateways"`
}

// AccessConfig is edge.access: the CIDR lists (an address alone is a /32
// or /128).
type AccessConfig struct {
	// Mode applies to allow, deny and blocklist.
	Mode Mode `yaml:"mode"`
	// Allow, when not empty, admits only these sources (and trusted ones
	// and the upstreams).
	Allow []string `yaml:"allow"`
	// Deny drops every message from these sources.
	Deny []string `yaml:"deny"`
	// Trusted sources skip the rate limits and the scanner rule and are
	// never banned automatically. The upstreams are always trusted.
	Trusted []string `yaml:"trusted"`
	// BlocklistFile is a file of CIDRs or addresses, one a line ('#' and
	// ';' start comments), read at start and on every reload; its sources
	// are dropped like deny's.
	BlocklistFile string `yaml:"blocklist_file"`
}

// Limit is a rate with a burst, in requests.
type Limit struct {
	// Rate is the sustained rate, per second.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests may arrive at once.
	Burst int `yaml:"burst"`
}

// LimitsConfig is edge.limits: requests per second and burst per source
// address (IPv4 addresses alone, IPv6 addresses aggregated to IPv6Prefix).
type LimitsConfig struct {
	Mode     Mode  `yaml:"mode"`
	Register Limit `yaml:"register"`
	Invite   Limit `yaml:"invite"`
	Other    Limit `yaml:"other"`
	// IPv6Prefix is the prefix length an IPv6 source is counted by.
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// TableSize is the number of sources the table tracks, fixed at start
	// (a multiple of 512; rounded up).
	TableSize int `yaml:"table_size"`
	// NewSources bounds the sources that enter the table per second, over
	// all sources: a source not in the table beyond it is dropped
	// (reason new_source). It is what stops a flood of spoofed sources,
	// each new, and bounds the evictions it can cause.
	NewSources Limit `yaml:"new_sources"`
	// Reply is what a request over its limit gets: drop (default; no
	// reflection to a spoofed address) or 503 (with Retry-After), the
	// latter only for sources in ReplyNetworks.
	Reply string `yaml:"reply"`
	// ReplyNetworks are the sources answered 503 when Reply is 503.
	ReplyNetworks []string `yaml:"reply_networks"`
	// RetryAfter is the Retry-After of that 503.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// BansConfig is edge.bans: sustained violation of a limit bans the source.
type BansConfig struct {
	// Mode off or log_only disables (or only counts) the automatic bans;
	// bans added through the admin API always apply.
	Mode Mode `yaml:"mode"`
	// After is the number of requests over a limit within Window that
	// bans the source.
	After int `yaml:"after"`
	// Window is the period After counts in.
	Window time.Duration `yaml:"window"`
	// TTL is how long an automatic ban lasts.
	TTL time.Duration `yaml:"ttl"`
	// Max bounds the ban list; automatic bans beyond it are refused and
	// counted.
	Max int `yaml:"max"`
	// StateFile, when set, keeps the ban list across restarts: it is
	// saved there every 10 s when it changed and at shutdown, and the bans
	// not yet expired are put back at start (banstate.go).
	StateFile string `yaml:"state_file"`
}

// ScannersConfig is edge.scanners: requests whose User-Agent contains one
// of UserAgents (case-insensitive) are dropped silently.
type ScannersConfig struct {
	Mode       Mode     `yaml:"mode"`
	UserAgents []string `yaml:"user_agents"`
	// Ban bans the scanner's source for bans.ttl at its first request
	// (default true).
	Ban *bool `yaml:"ban"`
}

// GatewaysConfig is edge.gateways: caps on the new calls per second
// balancing sends to an upstream.
type GatewaysConfig struct {
	Mode Mode `yaml:"mode"`
	// RetryAfter is the Retry-After of the 503 a call over a cap gets.
	RetryAfter time.Duration `yaml:"retry_after"`
	Caps       []GatewayCap  `yaml:"caps"`
}

// GatewayCap caps the new calls (INVITE without To tag) sent to one
// upstream.
type GatewayCap struct {
	// Upstream is the upstream's id or address, or a DNS upstream's name
	// as written in upstreams (each of its addresses is capped alike).
	Upstream string `yaml:"upstream"`
	// CPS is the calls per second the upstream takes.
	CPS float64 `yaml:"cps"`
	// Burst is how many calls may start at once (default: CPS, at least 1).
	Burst int `yaml:"burst"`
}

// The defaults, and the reasoning behind them, are in the README's "At the
// edge" section.
const (
	DefaultRegisterRate    = 50
	DefaultRegisterBurst   = 500
	DefaultInviteRate      = 20
	DefaultInviteBurst     = 100
	DefaultOtherRate       = 200
	DefaultOtherBurst      = 2000
	DefaultIPv6Prefix      = 64
	DefaultTableSize       = 65536
	DefaultNewSourcesRate  = 2000
	DefaultNewSourcesBurst = 20000
	DefaultRetryAfter      = 5 * time.Second
	DefaultBanAfter        = 200
	DefaultBanWindow       = 10 * time.Second
	DefaultBanTTL          = 10 * time.Minute
	DefaultMaxBans         = 65536
	DefaultCallRetryAfter  = time.Second
	// MaxScannerPatterns bounds edge.scanners.user_agents.
	MaxScannerPatterns = 64
	// maxTableSize bounds edge.limits.table_size (about 640 MB).
	maxTableSize = 1 << 23
)

// DefaultScanners are the User-Agents of common SIP scanners and attack
// tools (SIPVicious and its forks, sipcli, VaxSIPUserAgent, pplsip, the
// sip-scan and iWar scanners, sundayddr).
var DefaultScanners = []string{"friendly-scanner", "sipvicious", "sipcli", "VaxSIPUserAgent", "pplsip", "sip-scan", "SIPScan", "iWar", "sundayddr"}

// On reports whether the edge stage runs.
func (c Config) On() bool { return c.Enabled == nil || *c.Enabled }

// WithDefaults returns c with every unset key at its default.
func (c Config) WithDefaults() Config {
	l := &c.Limits
	l.Mode = l.Mode.or()
	setLimit(&l.Register, DefaultRegisterRate, DefaultRegisterBurst)
	setLimit(&l.Invite, DefaultInviteRate, DefaultInviteBurst)
	setLimit(&l.Other, DefaultOtherRate, DefaultOtherBurst)
	setLimit(&l.NewSources, DefaultNewSourcesRate, DefaultNewSourcesBurst)
	setDefault(&l.IPv6Prefix, DefaultIPv6Prefix)
	setDefault(&l.TableSize, DefaultTableSize)
	if l.Reply == "" {
		l.Reply = "drop"
	}
	if l.RetryAfter == 0 {
		l.RetryAfter = DefaultRetryAfter
	}
	b := &c.Bans
	b.Mode = b.Mode.or()
	setDefault(&b.After, DefaultBanAfter)
	setDefault(&b.Max, DefaultMaxBans)
	if b.Window == 0 {
		b.Window = DefaultBanWindow
	}
	if b.TTL == 0 {
		b.TTL = DefaultBanTTL
	}
	c.Access.Mode = c.Access.Mode.or()
	s := &c.Scanners
	s.Mode = s.Mode.or()
	if s.UserAgents == nil {
		s.UserAgents = DefaultScanners
	}
	if s.Ban == nil {
		t := true
		s.Ban = &t
	}
	g := &c.Gateways
	g.Mode = g.Mode.or()
	if g.RetryAfter == 0 {
		g.RetryAfter = DefaultCallRetryAfter
	}
	for i := range g.Caps {
		if g.Caps[i].Burst == 0 {
			g.Caps[i].Burst = max(1, int(g.Caps[i].CPS))
		}
	}
	return c
}

func setLimit(l *Limit, rate float64, burst int) {
	if l.Rate == 0 {
		l.Rate = rate
	}
	setDefault(&l.Burst, burst)
}

func setDefault(v *int, d int) {
	if *v == 0 {
		*v = d
	}
}

// Validate checks a configuration with its defaults applied
// (WithDefaults); errors are *config.FieldError values naming the key
// below edge.
func (c Config) Validate() error {
	for _, check := range []func() error{c.Access.validate, c.Limits.validate, c.Bans.validate, c.Scanners.validate, c.Gateways.validate} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (a AccessConfig) validate() error {
	if err := a.Mode.check("access.mode"); err != nil {
		return err
	}
	for name, list := range map[string][]string{"allow": a.Allow, "deny": a.Deny, "trusted": a.Trusted} {
		if _, err := ParsePrefixes("access."+name, list); err != nil {
			return err
		}
	}
	return nil
}

func (l LimitsConfig) validate() error {
	if err := l.Mode.check("limits.mode"); err != nil {
		return err
	}
	for name, lim := range map[string]Limit{"register": l.Register, "invite": l.Invite, "other": l.Other, "new_sources": l.NewSources} {
		if lim.Rate <= 0 || lim.Rate > 1e9 {
			return config.Errorf("limits."+name+".rate", "must be above 0 and at most 1e9 per second, got %v (to lift limits, set limits.mode: off)", lim.Rate)
		}
		if lim.Burst < 1 {
			return config.Errorf("limits."+name+".burst", "must be at least 1, got %d", lim.Burst)
		}
	}
	if l.IPv6Prefix < 32 || l.IPv6Prefix > 128 {
		return config.Errorf("limits.ipv6_prefix", "must be 32 to 128, got %d", l.IPv6Prefix)
	}
	if l.TableSize < minTableSize || l.TableSize > maxTableSize {
		return config.Errorf("limits.table_size", "must be %d to %d, got %d", minTableSize, maxTableSize, l.TableSize)
	}
	if l.Reply != "drop" && l.Reply != "503" {
		return config.Errorf("limits.reply", "%q is not one of drop, 503", l.Reply)
	}
	if _, err := ParsePrefixes("limits.reply_networks", l.ReplyNetworks); err != nil {
		return err
	}
	return checkRetryAfter("limits.retry_after", l.RetryAfter)
}

func checkRetryAfter(field string, d time.Duration) error {
	if d < time.Second || d > 24*time.Hour || d%time.Second != 0 {
		return config.Errorf(field, "must be whole seconds from 1s to 24h, got %v", d)
	}
	return nil
}

func (b BansConfig) validate() error {
	if err := b.Mode.check("bans.mode"); err != nil {
		return err
	}
	if b.After < 1 {
		return config.Errorf("bans.after", "must be at least 1, got %d", b.After)
	}
	if b.Window < time.Second {
		return config.Errorf("bans.window", "must be at least 1s, got %v", b.Window)
	}
	if b.TTL < time.Second {
		return config.Errorf("bans.ttl", "must be at least 1s, got %v", b.TTL)
	}
	if b.Max < 1 {
		return config.Errorf("bans.max", "must be at least 1, got %d", b.Max)
	}
	if b.StateFile != "" {
		if st, err := os.Stat(filepath.Dir(b.StateFile)); err != nil || !st.IsDir() {
			return config.Errorf("bans.state_file", "directory %s does not exist", filepath.Dir(b.StateFile))
		}
	}
	return nil
}

func (s ScannersConfig) validate() error {
	if err := s.Mode.check("scanners.mode"); err != nil {
		return err
	}
	if len(s.UserAgents) > MaxScannerPatterns {
		return config.Errorf("scanners.user_agents", "at most %d entries, got %d", MaxScannerPatterns, len(s.UserAgents))
	}
	for i, ua := range s.UserAgents {
		if strings.TrimSpace(ua) == "" || len(ua) > maxUserAgent {
			return config.Errorf(fmt.Sprintf("scanners.user_agents[%d]", i), "must be 1 to %d characters, got %q", maxUserAgent, ua)
		}
	}
	return nil
}

func (g GatewaysConfig) validate() error {
	if err := g.Mode.check("gateways.mode"); err != nil {
		return err
	}
	if err := checkRetryAfter("gateways.retry_after", g.RetryAfter); err != nil {
		return err
	}
	seen := map[string]int{}
	for i, c := range g.Caps {
		f := fmt.Sprintf("gateways.caps[%d]", i)
		if c.Upstream == "" {
			return config.Errorf(f+".upstream", "required: an upstream's id or address")
		}
		if j, dup := seen[c.Upstream]; dup {
			return config.Errorf(f+".upstream", "%q is also capped by gateways.caps[%d]", c.Upstream, j)
		}
		seen[c.Upstream] = i
		if c.CPS <= 0 || c.CPS > 1e6 {
			return config.Errorf(f+".cps", "must be above 0 and at most 1e6, got %v", c.CPS)
		}
		if c.Burst < 1 {
			return config.Errorf(f+".burst", "must be at least 1, got %d", c.Burst)
		}
	}
	return nil
}

// ParsePrefixes parses CIDRs and bare addresses (a /32 or /128) for the
// key field; errors name the entry.
func ParsePrefixes(field string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, config.Errorf(fmt.Sprintf("%s[%d]", field, i), "%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParsePrefix parses a CIDR ("192.0.2.0/24", "2001:db8::/32") or an address
// (a /32 or /128), masked to its prefix; IPv4-mapped IPv6 addresses are
// taken as IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR prefix such as 192.0.2.0/24", s)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}
