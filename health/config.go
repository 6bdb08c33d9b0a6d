package health

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/parser"
)

// Defaults applied by Settings.Resolve to fields left unset.
const (
	// DefaultInterval is the time between two probes of one target.
	DefaultInterval = 5 * time.Second
	// DefaultTimeout is how long a probe waits for its final response.
	DefaultTimeout = 2 * time.Second
	// DefaultFailures is the number of consecutive failed probes that mark
	// an up target down.
	DefaultFailures = 3
	// DefaultSuccesses is the number of consecutive successful probes that
	// mark a down target up.
	DefaultSuccesses = 2
	// DefaultMethod is the probe's request method.
	DefaultMethod = "OPTIONS"
	// DefaultFrom is the probe's From URI.
	DefaultFrom = "sip:viaduct@localhost"
	// DefaultRequestURI is the probe's Request-URI; "{addr}" stands for the
	// target's address ("10.0.0.1:5060", "[2001:db8::1]:5060").
	DefaultRequestURI = "sip:{addr}"

	// MinInterval and MinTimeout bound how aggressive probing may be.
	MinInterval = 10 * time.Millisecond
	MinTimeout  = 5 * time.Millisecond
	// MaxInterval is the longest interval accepted (a day).
	MaxInterval = 24 * time.Hour
	// MaxThreshold bounds Failures and Successes.
	MaxThreshold = 100
	// MaxPassiveCount bounds Passive503.Count (memory: 8 bytes per unit
	// per target).
	MaxPassiveCount = 10000
)

// Settings is the health-check configuration of a pool (the defaults of its
// targets) or of one target (overrides of its pool's settings), as written
// in Viaduct's YAML file. Every field is optional: a zero field inherits the
// pool's value, and the pool's zero fields take the package defaults. Field
// names in errors are the YAML keys.
//
//	health:
//	  interval: 5s
//	  timeout: 2s
//	  failures: 3
//	  successes: 2
//	  accept: ["2xx", "404"]
//	  method: OPTIONS
//	  from: sip:viaduct@proxy.example.net
//	  request_uri: sip:ping@{addr}
//	  never_probe: false
//	  passive_503: {count: 20, window: 2s}
type Settings struct {
	// Interval is the time between two probes of a target (default 5s).
	// Probes of a pool's targets are spread over the interval, not sent
	// in one burst.
	Interval time.Duration `yaml:"interval"`
	// Timeout is how long a probe waits for a final response (default
	// 2s, or Interval when that is shorter); it may not exceed Interval,
	// so a target has at most one probe outstanding. No final answer
	// within it is a failure. Over UDP the probe is retransmitted within
	// the timeout as RFC 3261 17.1.2.2 says (after 500ms, then doubling
	// up to 4s), so a single lost datagram does not fail a probe whose
	// timeout is longer than 500ms.
	Timeout time.Duration `yaml:"timeout"`
	// Failures is the number of consecutive failed probes that mark an up
	// target down (default 3).
	Failures int `yaml:"failures"`
	// Successes is the number of consecutive successful probes that mark
	// a down target up (default 2).
	Successes int `yaml:"successes"`
	// Accept lists the final response codes that count as success: codes
	// ("200"), classes ("2xx") and ranges ("200-299"). Default: every
	// final response (200-699) except 408, 480 and 503, since any answer
	// shows the server is alive and processing SIP.
	Accept []string `yaml:"accept"`
	// Method is the probe's request method (default OPTIONS). INVITE,
	// ACK, BYE, CANCEL and PRACK are refused: they would set up or tear
	// down state, or get no response.
	Method string `yaml:"method"`
	// From is the URI in the probe's From header (default
	// sip:viaduct@localhost).
	From string `yaml:"from"`
	// RequestURI is the probe's Request-URI (and To URI). "{addr}" is
	// replaced with the target's address. Default sip:{addr}.
	RequestURI string `yaml:"request_uri"`
	// NeverProbe, when true, sends no probe to the target: its health
	// stays as it is (up) unless set by other means. Use it for targets
	// watched by something else or that do not answer out-of-dialog
	// requests. It is a pointer so that a target can say false when its
	// pool says true.
	NeverProbe *bool `yaml:"never_probe"`
	// Passive503 enables the passive check: a burst of 503 responses from
	// the target marks it down until probes bring it back.
	Passive503 *PassiveSettings `yaml:"passive_503"`
}

// Section is the health section of Viaduct's configuration file: the
// switches of the whole pool and, inline, the default Settings of every
// upstream (upstream_health entries override those per upstream).
//
//	health:
//	  enabled: true      # the default; false: no upstream is probed
//	  all_down: forward  # the default (panic mode); reject: answer 503
//	  interval: 5s
//	  ...
//
// The zero value (no health section) probes every upstream with the
// defaults and forwards to all of them when all are down.
type Section struct {
	// Enabled turns health checking on (nil or true: the default) or off
	// (false): no upstream is probed, as if never_probe were true, unless
	// its upstream_health entry says never_probe: false. Admin states work
	// either way.
	Enabled *bool `yaml:"enabled"`
	// AllDown is what happens when every upstream that is not disabled is
	// down: "forward" (the default, panic mode: every one of them takes
	// traffic anyway, health ignored) or "reject" (requests get 503).
	AllDown string `yaml:"all_down"`
	// Settings are the default probe settings of every upstream.
	Settings `yaml:",inline"`
}

// Pool returns the pool's default settings (never_probe set when Enabled is
// false) and its all-down policy. Errors are *FieldError values naming the
// key ("all_down", "never_probe", "interval", ...).
func (s Section) Pool() (Settings, balancer.AllDown, error) {
	ad, err := balancer.ParseAllDown(s.AllDown)
	if err != nil {
		return Settings{}, 0, fieldErr("all_down", "%v", err)
	}
	if err := s.Settings.Validate(); err != nil {
		return Settings{}, 0, err
	}
	st := s.Settings
	if s.Enabled == nil {
		return st, ad, nil
	}
	enabled := *s.Enabled
	if st.NeverProbe != nil && *st.NeverProbe == enabled {
		return Settings{}, 0, fieldErr("never_probe", "%v contradicts enabled: %v (to probe some upstreams only, set enabled: false and never_probe: false in their upstream_health entries)", *st.NeverProbe, enabled)
	}
	never := !enabled
	st.NeverProbe = &never
	return st, ad, nil
}

// PassiveSettings configures the passive 503 burst detector: Count 503
// responses from one target within Window mark it down.
type PassiveSettings struct {
	// Count is the number of 503 responses that make a burst, 2 to
	// MaxPassiveCount; 0 disables the passive check.
	Count int `yaml:"count"`
	// Window is the time within which Count 503s must arrive (default
	// 1s when Count is set).
	Window time.Duration `yaml:"window"`
}

// DefaultPassiveWindow is PassiveSettings.Window when Count is set and
// Window is not.
const DefaultPassiveWindow = time.Second

// FieldError reports an invalid health setting: Field is its YAML key,
// prefixed by where it was found when known ("upstreams[2].health.timeout"),
// and Reason says why. It is the one field error of every configuration
// block (config.FieldError).
type FieldError = config.FieldError

func fieldErr(field, format string, a ...any) *FieldError {
	return config.Errorf(field, format, a...)
}

// prefixErr prefixes the field of a *FieldError (or wraps another error).
func prefixErr(prefix string, err error) error { return config.Prefix(prefix, err) }

// Merge returns s with every field that over sets replacing s's: the pool's
// settings merged with a target's overrides.
func (s Settings) Merge(over Settings) Settings {
	if over.Interval != 0 {
		s.Interval = over.Interval
	}
	if over.Timeout != 0 {
		s.Timeout = over.Timeout
	}
	if over.Failures != 0 {
		s.Failures = over.Failures
	}
	if over.Successes != 0 {
		s.Successes = over.Successes
	}
	if over.Accept != nil {
		s.Accept = over.Accept
	}
	if over.Method != "" {
		s.Method = over.Method
	}
	if over.From != "" {
		s.From = over.From
	}
	if over.RequestURI != "" {
		s.RequestURI = over.RequestURI
	}
	if over.NeverProbe != nil {
		s.NeverProbe = over.NeverProbe
	}
	if over.Passive503 != nil {
		s.Passive503 = over.Passive503
	}
	return s
}

// Validate checks the fields s sets, each on its own, and returns a
// *FieldError naming the first bad one. It is for a config loader checking
// a pool's or a target's block; Resolve also checks how the fields combine
// (timeout not above interval).
func (s Settings) Validate() error {
	if s.Interval != 0 && (s.Interval < MinInterval || s.Interval > MaxInterval) {
		return fieldErr("interval", "must be between %v and %v, got %v", MinInterval, MaxInterval, s.Interval)
	}
	if s.Timeout != 0 && (s.Timeout < MinTimeout || s.Timeout > MaxInterval) {
		return fieldErr("timeout", "must be between %v and %v, got %v", MinTimeout, MaxInterval, s.Timeout)
	}
	if s.Failures < 0 || s.Failures > MaxThreshold {
		return fieldErr("failures", "must be between 1 and %d, got %d", MaxThreshold, s.Failures)
	}
	if s.Successes < 0 || s.Successes > MaxThreshold {
		return fieldErr("successes", "must be between 1 and %d, got %d", MaxThreshold, s.Successes)
	}
	if s.Accept != nil {
		if _, err := ParseCodes(s.Accept); err != nil {
			return fieldErr("accept", "%v", err)
		}
	}
	if s.Method != "" {
		if err := checkMethod(s.Method); err != nil {
			return fieldErr("method", "%v", err)
		}
	}
	if s.From != "" {
		if err := checkURI(s.From); err != nil {
			return fieldErr("from", "%v", err)
		}
	}
	if s.RequestURI != "" {
		// Check with a sample address standing in for {addr}.
		if err := checkURI(expandAddr(s.RequestURI, netip.MustParseAddrPort("192.0.2.1:5060"))); err != nil {
			return fieldErr("request_uri", "%v", err)
		}
	}
	if p := s.Passive503; p != nil {
		if p.Count != 0 && (p.Count < 2 || p.Count > MaxPassiveCount) {
			return fieldErr("passive_503.count", "must be 0 (off) or between 2 and %d, got %d", MaxPassiveCount, p.Count)
		}
		if p.Window < 0 || p.Window > MaxInterval {
			return fieldErr("passive_503.window", "must be between 0 (default %v) and %v, got %v", DefaultPassiveWindow, MaxInterval, p.Window)
		}
	}
	return nil
}

// Probe is the effective health-check configuration of one target: its
// pool's Settings merged with its own, defaults applied, validated.
type Probe struct {
	Interval   time.Duration // between two probes
	Timeout    time.Duration // for a final response; <= Interval
	Failures   int           // consecutive failures that mark an up target down
	Successes  int           // consecutive successes that mark a down target up
	Accept     Codes         // final response codes that count as success
	Method     string        // request method
	From       string        // From URI (a tag is added per probe)
	RequestURI string        // Request-URI and To URI, {addr} expanded
	NeverProbe bool          // send no probe
	// PassiveCount and PassiveWindow configure the passive 503 burst
	// detector; PassiveCount 0 means off.
	PassiveCount  int
	PassiveWindow time.Duration
}

// Resolve applies the defaults to s, expands {addr} in the Request-URI with
// addr, and validates the result, returning a *FieldError naming the first
// bad field. Resolve a target with pool.Merge(target).Resolve(addr).
func (s Settings) Resolve(addr netip.AddrPort) (Probe, error) {
	if err := s.Validate(); err != nil {
		return Probe{}, err
	}
	p := Probe{
		Interval:   s.Interval,
		Timeout:    s.Timeout,
		Failures:   s.Failures,
		Successes:  s.Successes,
		Method:     s.Method,
		From:       s.From,
		RequestURI: s.RequestURI,
		NeverProbe: s.NeverProbe != nil && *s.NeverProbe,
	}
	if p.Interval == 0 {
		p.Interval = DefaultInterval
	}
	if p.Timeout == 0 {
		p.Timeout = min(DefaultTimeout, p.Interval)
	}
	if p.Timeout > p.Interval {
		return Probe{}, fieldErr("timeout", "%v exceeds the interval %v (a target has at most one probe outstanding)", p.Timeout, p.Interval)
	}
	if p.Failures == 0 {
		p.Failures = DefaultFailures
	}
	if p.Successes == 0 {
		p.Successes = DefaultSuccesses
	}
	if s.Accept == nil {
		p.Accept = DefaultCodes()
	} else {
		p.Accept, _ = ParseCodes(s.Accept) // checked by Validate
	}
	if p.Method == "" {
		p.Method = DefaultMethod
	}
	if p.From == "" {
		p.From = DefaultFrom
	}
	if p.RequestURI == "" {
		p.RequestURI = DefaultRequestURI
	}
	p.RequestURI = expandAddr(p.RequestURI, addr)
	if err := checkURI(p.RequestURI); err != nil {
		return Probe{}, fieldErr("request_uri", "%v", err)
	}
	if ps := s.Passive503; ps != nil && ps.Count > 0 {
		p.PassiveCount = ps.Count
		p.PassiveWindow = ps.Window
		if p.PassiveWindow == 0 {
			p.PassiveWindow = DefaultPassiveWindow
		}
	}
	return p, nil
}

// DetectionBound is the longest time between a target ceasing to answer
// and its being marked down by probes: Interval x Failures + Timeout. The
// first probe sent after the target died leaves within one interval, the
// Failures-th one Failures-1 intervals later, and it fails Timeout after
// it was sent.
func (p Probe) DetectionBound() time.Duration {
	return p.Interval*time.Duration(p.Failures) + p.Timeout
}

// RecoveryBound is the longest time between a down target answering again
// and its being marked up: Interval x Successes + Timeout (the last probe
// is answered within Timeout, or it would not count).
func (p Probe) RecoveryBound() time.Duration {
	return p.Interval*time.Duration(p.Successes) + p.Timeout
}

// expandAddr replaces "{addr}" in s with addr ("[v6]:port" for IPv6).
func expandAddr(s string, addr netip.AddrPort) string {
	if !strings.Contains(s, "{addr}") {
		return s
	}
	return strings.ReplaceAll(s, "{addr}", netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()).String())
}

// checkURI accepts a sip or sips URI that fits in a header.
func checkURI(s string) error {
	if strings.ContainsAny(s, "\r\n<>\x00 \t") {
		return fmt.Errorf("%q: white space, angle brackets and line breaks are not allowed", s)
	}
	var u parser.URI
	if err := parser.ParseURI([]byte(s), &u); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if !u.IsSIP() || len(u.Host) == 0 {
		return fmt.Errorf("%q: want a sip: or sips: URI with a host", s)
	}
	return nil
}

// checkMethod accepts a SIP token that is not a method a probe must not
// use.
func checkMethod(m string) error {
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return fmt.Errorf("%q is not a SIP token", m)
		}
	}
	switch m {
	case "INVITE", "ACK", "BYE", "CANCEL", "PRACK":
		return fmt.Errorf("%s cannot be a probe (use OPTIONS, or another method that gets a final response and sets up nothing)", m)
	}
	return nil
}

// Codes is a set of final SIP response codes (200-699). The zero value is
// empty.
type Codes struct {
	bits [8]uint64 // bit c-200
}

const minFinal, maxFinal = 200, 699

// DefaultCodes returns the default accepted set: every final response
// except 408 Request Timeout, 480 Temporarily Unavailable and 503 Service
// Unavailable.
func DefaultCodes() Codes {
	var c Codes
	c.addRange(minFinal, maxFinal)
	c.remove(408)
	c.remove(480)
	c.remove(503)
	return c
}

// ParseCodes parses a list of codes ("200"), classes ("2xx", "2XX") and
// ranges ("200-299") of final responses. An empty list is an error: a
// probe could never succeed.
func ParseCodes(list []string) (Codes, error) {
	var c Codes
	if len(list) == 0 {
		return c, errors.New("empty list: no probe could succeed")
	}
	for _, item := range list {
		s := strings.TrimSpace(item)
		switch {
		case len(s) == 3 && (s[1] == 'x' || s[1] == 'X') && (s[2] == 'x' || s[2] == 'X') && '2' <= s[0] && s[0] <= '6':
			base := int(s[0]-'0') * 100
			c.addRange(base, base+99)
		case strings.Contains(s, "-"):
			a, b, _ := strings.Cut(s, "-")
			lo, err1 := parseCode(strings.TrimSpace(a))
			hi, err2 := parseCode(strings.TrimSpace(b))
			if err1 != nil || err2 != nil || lo > hi {
				return Codes{}, fmt.Errorf("%q: want a range of final codes such as 200-299", item)
			}
			c.addRange(lo, hi)
		default:
			n, err := parseCode(s)
			if err != nil {
				return Codes{}, fmt.Errorf("%q: want a final response code (200-699), a class (2xx) or a range (200-299)", item)
			}
			c.addRange(n, n)
		}
	}
	return c, nil
}

func parseCode(s string) (int, error) {
	if len(s) != 3 {
		return 0, errors.New("not a 3-digit code")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < minFinal || n > maxFinal {
		return 0, errors.New("not a final response code")
	}
	return n, nil
}

func (c *Codes) addRange(lo, hi int) {
	for n := lo; n <= hi; n++ {
		c.bits[(n-minFinal)/64] |= 1 << ((n - minFinal) % 64)
	}
}

func (c *Codes) remove(n int) { c.bits[(n-minFinal)/64] &^= 1 << ((n - minFinal) % 64) }

// Has reports whether code is in the set.
func (c Codes) Has(code int) bool {
	if code < minFinal || code > maxFinal {
		return false
	}
	return c.bits[(code-minFinal)/64]&(1<<((code-minFinal)%64)) != 0
}

// String lists the set as ranges, e.g. "200-407,409-479,481-502,504-699".
func (c Codes) String() string {
	var b strings.Builder
	for n := minFinal; n <= maxFinal; n++ {
		if !c.Has(n) {
			continue
		}
		m := n
		for m+1 <= maxFinal && c.Has(m+1) {
			m++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(n))
		if m > n {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(m))
		}
		n = m
	}
	return b.String()
}
