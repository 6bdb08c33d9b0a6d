package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/viaduct-sip/viaduct/fastpath"
	"gopkg.in/yaml.v3"
)

// fileConfig is the YAML configuration file. Every key is optional except
// listen and upstreams (which may also come from flags); unknown keys are
// an error.
type fileConfig struct {
	Listen         []string `yaml:"listen"`
	Advertise      string   `yaml:"advertise"`
	Workers        int      `yaml:"workers"`
	RecvBuffer     int      `yaml:"recv_buffer"`
	SendBuffer     int      `yaml:"send_buffer"`
	Batch          int      `yaml:"batch"`
	Upstreams      []string `yaml:"upstreams"`
	RecordRoute    bool     `yaml:"record_route"`
	MaxMessageSize int      `yaml:"max_message_size"`
	Secret         string   `yaml:"secret"`
	SecretFile     string   `yaml:"secret_file"`
	LogFormat      string   `yaml:"log_format"`
	LogLevel       string   `yaml:"log_level"`
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
	var fc fileConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return fc, &configError{file: path, err: err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil {
		if errors.Is(err, io.EOF) {
			return fc, nil // empty file
		}
		return fc, &configError{file: path, err: cleanYAMLError(err)}
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fc, &configError{file: path, err: errors.New("more than one YAML document")}
	}
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
// fastpath.Config. Errors name the YAML key (and index).
func (fc *fileConfig) toEngineConfig() (fastpath.Config, error) {
	cfg := fastpath.Config{
		Advertise:      fc.Advertise,
		Workers:        fc.Workers,
		RecvBuffer:     fc.RecvBuffer,
		SendBuffer:     fc.SendBuffer,
		Batch:          fc.Batch,
		RecordRoute:    fc.RecordRoute,
		MaxMessageSize: fc.MaxMessageSize,
	}
	for i, s := range fc.Listen {
		a, err := parseAddrPort(s)
		if err != nil {
			return cfg, &fastpath.FieldError{Field: fmt.Sprintf("listen[%d]", i), Reason: err.Error()}
		}
		cfg.Listen = append(cfg.Listen, a)
	}
	for i, s := range fc.Upstreams {
		a, err := parseAddrPort(s)
		if err != nil {
			return cfg, &fastpath.FieldError{Field: fmt.Sprintf("upstreams[%d]", i), Reason: err.Error()}
		}
		cfg.Upstreams = append(cfg.Upstreams, a)
	}
	if fc.Secret != "" && fc.SecretFile != "" {
		return cfg, &fastpath.FieldError{Field: "secret_file", Reason: "give either secret or secret_file, not both"}
	}
	if fc.Secret != "" {
		cfg.Secret = []byte(fc.Secret)
	}
	if fc.SecretFile != "" {
		b, err := os.ReadFile(fc.SecretFile)
		if err != nil {
			return cfg, &fastpath.FieldError{Field: "secret_file", Reason: err.Error()}
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return cfg, &fastpath.FieldError{Field: "secret_file", Reason: fc.SecretFile + " is empty"}
		}
		cfg.Secret = b
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
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
		return nil, &fastpath.FieldError{Field: "log_level", Reason: fmt.Sprintf("%q is not one of debug, info, warn, error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &fastpath.FieldError{Field: "log_format", Reason: fmt.Sprintf("%q is not one of text, json", format)}
}
