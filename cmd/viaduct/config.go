package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/resolve"
	"gopkg.in/yaml.v3"
)

// fileConfig is the YAML configuration file. Every key is optional except
// listen and upstreams (which may also come from flags); unknown keys are
// an error.
type fileConfig struct {
	Listen         []string        `yaml:"listen"`
	Advertise      string          `yaml:"advertise"`
	Workers        int             `yaml:"workers"`
	ReusePort      bool            `yaml:"reuse_port"`
	RecvBuffer     int             `yaml:"recv_buffer"`
	SendBuffer     int             `yaml:"send_buffer"`
	Batch          int             `yaml:"batch"`
	ParkAfter      *time.Duration  `yaml:"park_after"`
	Upstreams      []upstreamEntry `yaml:"upstreams"`
	Balance        balanceConfig   `yaml:"balance"`
	RecordRoute    bool            `yaml:"record_route"`
	Path           bool            `yaml:"path"`
	MaxMessageSize int             `yaml:"max_message_size"`
	Secret         string          `yaml:"secret"`
	SecretFile     string          `yaml:"secret_file"`
	// PreviousSecret and PreviousSecretFile give the secret a rotation
	// replaces (fastpath.Config.PreviousSecret).
	PreviousSecret     string `yaml:"previous_secret"`
	PreviousSecretFile string `yaml:"previous_secret_file"`
	LogFormat          string `yaml:"log_format"`
	LogLevel           string `yaml:"log_level"`

	// Health holds the health-check switches (enabled, all_down) and the
	// settings of every upstream; without it every upstream is probed
	// with the defaults, and all are used when all are down (panic mode).
	// UpstreamHealth holds per-upstream overrides keyed by the upstream's
	// ID (or its address), Admin the admin HTTP API.
	Health         *health.Section            `yaml:"health"`
	UpstreamHealth map[string]health.Settings `yaml:"upstream_health"`
	Admin          adminConfig                `yaml:"admin"`

	// DNS configures the resolution of host-name and SRV upstreams;
	// ShutdownDrain is how long Viaduct keeps forwarding after SIGTERM
	// (nil: defaultShutdownDrain). See upstreams.go and reload.go.
	DNS           dnsConfig      `yaml:"dns"`
	ShutdownDrain *time.Duration `yaml:"shutdown_drain"`

	// written holds the keys the file or a flag set (writtenKeys), so
	// that a 0 written out is told from an absent key.
	written map[string]bool
}

// markWritten records that a flag set key.
func (fc *fileConfig) markWritten(key string) {
	if fc.written == nil {
		fc.written = map[string]bool{}
	}
	fc.written[key] = true
}

// zeroMeansUnset lists the keys whose zero value stands for "not set" (the
// default applies) and lies outside their range: written out, 0 is
// refused with the range, not quietly taken for the default.
var zeroMeansUnset = []struct {
	key    string
	zero   func(*fileConfig) bool
	reason string
}{
	{"workers", func(fc *fileConfig) bool { return fc.Workers == 0 }, "must be between 1 and 1024, got 0; leave workers out for the default, GOMAXPROCS"},
	{"recv_buffer", func(fc *fileConfig) bool { return fc.RecvBuffer == 0 }, fmt.Sprintf("must be positive, got 0; leave recv_buffer out for the default, %d", fastpath.DefaultSocketBuffer)},
	{"send_buffer", func(fc *fileConfig) bool { return fc.SendBuffer == 0 }, fmt.Sprintf("must be positive, got 0; leave send_buffer out for the default, %d", fastpath.DefaultSocketBuffer)},
	{"batch", func(fc *fileConfig) bool { return fc.Batch == 0 }, fmt.Sprintf("must be between 1 and %d, got 0; leave batch out for the default, %d", fastpath.MaxBatch, fastpath.DefaultBatch)},
	{"max_message_size", func(fc *fileConfig) bool { return fc.MaxMessageSize == 0 }, fmt.Sprintf("must be between 512 and 64483 bytes, got 0; leave max_message_size out for the default, %d", fastpath.DefaultMaxMessageSize)},
	{"dns.refresh", func(fc *fileConfig) bool { return fc.DNS.Refresh == 0 }, fmt.Sprintf("must be at least %v, got 0s; leave dns.refresh out for the default, %v", resolve.MinInterval, resolve.DefaultInterval)},
	{"dns.timeout", func(fc *fileConfig) bool { return fc.DNS.Timeout == 0 }, fmt.Sprintf("must be positive, got 0s; leave dns.timeout out for the default, %v", resolve.DefaultTimeout)},
}

// checkExplicitZeros refuses the keys of zeroMeansUnset written as 0.
func (fc *fileConfig) checkExplicitZeros() error {
	for _, z := range zeroMeansUnset {
		if fc.written[z.key] && z.zero(fc) {
			return &config.FieldError{Field: z.key, Reason: z.reason}
		}
	}
	return nil
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
	// mapping is set for the mapping form: errors then name
	// "upstreams[i].address" rather than "upstreams[i]".
	mapping bool
}

// upstreamKeys are the keys of the mapping form of an upstreams entry.
var upstreamKeys = []string{"address", "id", "weight", "priority"}

// UnmarshalYAML accepts a scalar ("ip:port") or a mapping with the keys of
// upstreamKeys (strictly: an unknown key is an error naming its line).
func (u *upstreamEntry) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*u = upstreamEntry{Address: n.Value}
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if !slices.Contains(upstreamKeys, k.Value) {
				return fmt.Errorf("line %d: unknown field %s in an upstreams entry (want %s)", k.Line, k.Value, strings.Join(upstreamKeys, ", "))
			}
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
	return fmt.Errorf("line %d: an upstreams entry is \"ip:port\" or a mapping with %s", n.Line, strings.Join(upstreamKeys, ", "))
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

// adminConfig is the admin section of the YAML file (decoded by its
// UnmarshalYAML in ops.go).
type adminConfig struct {
	// Listen is the TCP ip:port of the admin HTTP API; "" or "off"
	// disables it; absent means admin.DefaultListen (127.0.0.1:9090).
	Listen string `yaml:"listen"`
	// Token, when set, is the bearer token every admin request but
	// /healthz and /readyz must carry.
	Token string `yaml:"token"`
	// TokenFile is a file holding the token (trailing newline ignored),
	// e.g. a systemd credential; give token or token_file, not both.
	TokenFile string `yaml:"token_file"`
	// StateFile is where the upstreams' admin states are saved after each
	// change and restored from at start (see states.go); "" keeps them in
	// memory only.
	StateFile string `yaml:"state_file"`
	// listenSet records that the file or --admin-listen gave Listen.
	listenSet bool
}

// configError is a configuration problem, reported as "FIELD: REASON" with
// the file name when there is one.
type configError struct {
	file string
	err  error
}

func (e *configError) Error() string {
	if e.file != "" {
		return "config " + e.file + ": " + e.err.Error()
	}
	return "config: " + e.err.Error()
}

func (e *configError) Unwrap() error { return e.err }

// readConfigFile decodes a YAML file strictly: unknown keys, duplicate keys,
// wrong types and a second document are errors naming the line.
func readConfigFile(path string) (fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, &configError{file: path, err: err}
	}
	return parseConfig(path, b)
}

// parseConfig decodes the contents b of the file path as readConfigFile
// does: values of the wrong type are reported by their YAML path
// (checkTypes), unknown and duplicate keys by the decoder with their line.
func parseConfig(path string, b []byte) (fileConfig, error) {
	var fc fileConfig
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fc, nil // empty file
		}
		return fc, &configError{file: path, err: cleanYAMLError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fc, &configError{file: path, err: errors.New("more than one YAML document")}
	}
	if err := checkTypes(&doc, reflect.TypeFor[fileConfig]()); err != nil {
		return fc, &configError{file: path, err: err}
	}
	strict := yaml.NewDecoder(bytes.NewReader(b))
	strict.KnownFields(true)
	if err := strict.Decode(&fc); err != nil {
		return fc, &configError{file: path, err: cleanYAMLError(err)}
	}
	fc.written = writtenKeys(&doc)
	return fc, nil
}

// cleanYAMLError turns yaml.v3's "yaml: unmarshal errors:\n  line 3: field x
// not found in type main.fileConfig" into "line 3: unknown field x".
func cleanYAMLError(err error) error {
	s := err.Error()
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	s = strings.TrimPrefix(s, "yaml: ")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if i := strings.Index(l, " not found in type "); i >= 0 && strings.Contains(l, "field ") {
			j := strings.Index(l, "field ")
			l = l[:j] + "unknown field " + l[j+len("field "):i] + " (see viaduct -help for the keys)"
		}
		l = strings.Replace(l, "in type main.fileConfig", "", 1)
		lines = append(lines, l)
	}
	return errors.New(strings.Join(lines, "; "))
}

// toEngineConfig checks the addresses and turns the file's settings into a
// fastpath.Config, for an upstreams list without DNS names. Errors name the
// YAML key (and index).
func (fc *fileConfig) toEngineConfig() (fastpath.Config, error) { return fc.engineConfig(nil) }

// engineConfig is toEngineConfig with the upstream targets as resolved
// (resolve.Watcher); nil means the list has addresses only.
func (fc *fileConfig) engineConfig(resolved []resolve.Target) (fastpath.Config, error) {
	if err := fc.checkOps(); err != nil {
		return fastpath.Config{}, err
	}
	cfg := fastpath.Config{
		Advertise:      fc.Advertise,
		Workers:        fc.Workers,
		ReusePort:      fc.ReusePort,
		RecvBuffer:     fc.RecvBuffer,
		SendBuffer:     fc.SendBuffer,
		Batch:          fc.Batch,
		ParkAfter:      fc.parkAfter(),
		RecordRoute:    fc.RecordRoute,
		Path:           fc.Path,
		MaxMessageSize: fc.MaxMessageSize,
	}
	for i, s := range fc.Listen {
		a, err := parseAddrPort(s)
		if err != nil {
			return cfg, &config.FieldError{Field: fmt.Sprintf("listen[%d]", i), Reason: err.Error()}
		}
		cfg.Listen = append(cfg.Listen, a)
	}
	if resolved == nil {
		srcs, err := fc.upstreamSources()
		if err != nil {
			return cfg, err
		}
		if resolved, err = staticTargets(srcs); err != nil {
			return cfg, err
		}
	}
	if err := fc.balanceSettings(&cfg, resolved); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Secret, err = readSecret("secret", fc.Secret, fc.SecretFile); err != nil {
		return cfg, err
	}
	if cfg.PreviousSecret, err = readSecret("previous_secret", fc.PreviousSecret, fc.PreviousSecretFile); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		// The address of a plain "ip:port" entry is the entry itself.
		var fe *config.FieldError
		var i int
		var rest string
		if errors.As(err, &fe) {
			// Target i came from entry resolved[i].Source.
			if n, _ := fmt.Sscanf(fe.Field, "upstreams[%d]%s", &i, &rest); n == 2 && i >= 0 && i < len(resolved) {
				e := resolved[i].Source
				if rest == ".address" && e < len(fc.Upstreams) {
					return cfg, &config.FieldError{Field: fc.Upstreams[e].addressField(e), Reason: fe.Reason}
				}
				return cfg, &config.FieldError{Field: fmt.Sprintf("upstreams[%d]%s", e, rest), Reason: fe.Reason}
			}
		}
		return cfg, err
	}
	return cfg, nil
}

// balanceSettings fills the upstream targets (from the upstreams list as
// resolved: a plain "ip:port" entry is a target with weight 1, priority 0
// and the default ID), the balancing mode and the key policy of cfg.
// Errors name the field ("balance.keys").
func (fc *fileConfig) balanceSettings(cfg *fastpath.Config, resolved []resolve.Target) error {
	cfg.Targets = resolve.BalancerTargets(resolved)
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

// parseAddrPort parses "ip:port" or "[ipv6]:port" with a non-zero port.
func parseAddrPort(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(strings.TrimSpace(s))
	if err != nil {
		return a, fmt.Errorf("%q is not an ip:port address (IPv6 as [addr]:port; host names are not supported)", s)
	}
	return a, nil
}

// newLogger builds the slog logger for a format ("text" or "json") and a
// level ("debug", "info", "warn", "error").
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "", "info":
		lv = slog.LevelInfo
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, &config.FieldError{Field: "log_level", Reason: fmt.Sprintf("%q is not one of debug, info, warn, error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &config.FieldError{Field: "log_format", Reason: fmt.Sprintf("%q is not one of text, json", format)}
}

// readSecret returns the secret given inline or in file (without its
// trailing line end) for the YAML key field (and field_file), or nil if
// neither is set.
func readSecret(field, inline, file string) ([]byte, error) {
	if inline != "" && file != "" {
		return nil, &config.FieldError{Field: field + "_file", Reason: "give either " + field + " or " + field + "_file, not both"}
	}
	if inline != "" {
		return []byte(inline), nil
	}
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, &config.FieldError{Field: field + "_file", Reason: err.Error()}
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, &config.FieldError{Field: field + "_file", Reason: file + " is empty"}
	}
	return b, nil
}
