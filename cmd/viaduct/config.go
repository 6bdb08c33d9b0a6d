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
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/capture"
	"github.com/viaduct-sip/viaduct/edge"
	"github.com/viaduct-sip/viaduct/fastpath"
	"github.com/viaduct-sip/viaduct/health"
	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/resolve"
	"github.com/viaduct-sip/viaduct/transport/stream"
	"github.com/viaduct-sip/viaduct/transport/udp"
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
	// UDPMTU and OrphanResponses: fastpath.Config.UDPMTU and
	// DropOrphanResponses ("reopen", the default, or "drop"). TLS and
	// Streams configure the TCP and TLS transports (transports.go).
	UDPMTU          int                 `yaml:"udp_mtu"`
	OrphanResponses string              `yaml:"orphan_responses"`
	TLS             tlsSection          `yaml:"tls"`
	Streams         stream.ServerConfig `yaml:"streams"`
	// WebSocket configures the ws: and wss: listeners (RFC 7118).
	WebSocket  stream.WebSocketConfig `yaml:"websocket"`
	Secret     string                 `yaml:"secret"`
	SecretFile string                 `yaml:"secret_file"`
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

	// Capture is the HEP capture and the trace limits (capture.go).
	Capture capture.Config `yaml:"capture"`
	// Edge is the edge section: access lists, rate limits, bans, the
	// scanner drop and gateway caps (edge.Config; wiring in edge.go).
	Edge edge.Config `yaml:"edge"`

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
	{"recv_buffer", func(fc *fileConfig) bool { return fc.RecvBuffer == 0 }, fmt.Sprintf("must be positive, got 0; leave recv_buffer out for the default, %d", udp.DefaultSocketBuffer)},
	{"send_buffer", func(fc *fileConfig) bool { return fc.SendBuffer == 0 }, fmt.Sprintf("must be positive, got 0; leave send_buffer out for the default, %d", udp.DefaultSocketBuffer)},
	{"batch", func(fc *fileConfig) bool { return fc.Batch == 0 }, fmt.Sprintf("must be between 1 and %d, got 0; leave batch out for the default, %d", udp.MaxServerBatch, udp.DefaultServerBatch)},
	{"udp_mtu", func(fc *fileConfig) bool { return fc.UDPMTU == 0 }, fmt.Sprintf("must be -1 (never switch to TCP) or 1..65507 bytes, got 0; leave udp_mtu out for the default, %d", fastpath.DefaultUDPMTU)},
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

// checkOwnKeys validates the keys that no feature package checks: that no
// key of zeroMeansUnset is written as 0, shutdown_drain (reload.go) and the
// dns section (upstreams.go).
func (fc *fileConfig) checkOwnKeys() error {
	if err := fc.checkExplicitZeros(); err != nil {
		return err
	}
	if err := fc.checkShutdownDrain(); err != nil {
		return err
	}
	return fc.DNS.check()
}

// hasSecret reports whether a secret is configured (inline or in a file).
func (fc *fileConfig) hasSecret() bool { return fc.Secret != "" || fc.SecretFile != "" }

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
	if err := fc.checkOwnKeys(); err != nil {
		return fastpath.Config{}, err
	}
	cfg := fastpath.Config{
		Advertise:      fc.Advertise,
		Workers:        fc.Workers,
		RecordRoute:    fc.RecordRoute,
		Path:           fc.Path,
		MaxMessageSize: fc.MaxMessageSize,
		UDPMTU:         fc.UDPMTU,
	}
	var err error
	if cfg.Listeners, err = fc.listeners(); err != nil {
		return cfg, err
	}
	if cfg.DropOrphanResponses, err = fc.dropOrphanResponses(); err != nil {
		return cfg, err
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
	if cfg.Secret, err = readSecret("secret", fc.Secret, fc.SecretFile); err != nil {
		return cfg, err
	}
	if cfg.PreviousSecret, err = readSecret("previous_secret", fc.PreviousSecret, fc.PreviousSecretFile); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fc.entryError(err, resolved)
	}
	if _, err := fc.udpConfig(); err != nil {
		return cfg, err
	}
	sc, err := fc.streamConfig()
	if err != nil {
		return cfg, err
	}
	return cfg, checkTLSListen(cfg.Listeners, sc)
}

// udpConfig returns the UDP transport's settings, defaults applied, or a
// *config.FieldError naming the bad key.
func (fc *fileConfig) udpConfig() (udp.ServerConfig, error) {
	return udp.ServerConfig{ReusePort: fc.ReusePort, RecvBuffer: fc.RecvBuffer, SendBuffer: fc.SendBuffer,
		Batch: fc.Batch, ParkAfter: fc.parkAfter()}.WithDefaults()
}

// entryError renames the field of an error of fastpath.Config.Validate
// about target i ("upstreams[i].x") after the upstreams entry the target
// came from, resolved[i].Source; the address of a plain "ip:port" entry is
// the entry itself. Other errors pass unchanged.
func (fc *fileConfig) entryError(err error, resolved []resolve.Target) error {
	var fe *config.FieldError
	var i int
	var rest string
	if !errors.As(err, &fe) {
		return err
	}
	if n, _ := fmt.Sscanf(fe.Field, "upstreams[%d]%s", &i, &rest); n != 2 || i < 0 || i >= len(resolved) {
		return err
	}
	e := resolved[i].Source
	if rest == ".address" && e < len(fc.Upstreams) {
		return &config.FieldError{Field: fc.Upstreams[e].addressField(e), Reason: fe.Reason}
	}
	return &config.FieldError{Field: fmt.Sprintf("upstreams[%d]%s", e, rest), Reason: fe.Reason}
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

// defaultParkAfter is how long a worker waits in recvmmsg for its next
// datagram before it parks in the Go netpoller, when park_after is not
// set (see udp.ServerConfig.ParkAfter). It spans every gap of a busy
// stream and a few clock ticks; an idle worker then costs no thread.
const defaultParkAfter = 5 * time.Millisecond

// parkAfter returns the configured park_after, or the default.
func (fc *fileConfig) parkAfter() time.Duration {
	if fc.ParkAfter == nil {
		return defaultParkAfter
	}
	return *fc.ParkAfter
}
