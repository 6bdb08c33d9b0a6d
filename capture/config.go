package capture

import (
	"bytes"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/parser"
)

// Defaults and limits of the capture section.
const (
	DefaultRingSize = 1 << 20 // bytes per transport worker
	MinRingSize     = 64 << 10
	MaxRingSize     = 256 << 20

	DefaultTraceMaxActive   = 4
	MaxTraceMaxActive       = 64
	DefaultTraceMaxMessages = 1000 // the largest max_messages a trace may ask for
	MaxTraceMaxMessages     = 100000
	DefaultTraceMaxDuration = 5 * time.Minute // the longest duration a trace may ask for
	MaxTraceMaxDuration     = time.Hour
)

// Config is the capture section of Viaduct's configuration file.
//
//	capture:
//	  hep:
//	    address: 10.0.0.5:9060   # the HEP collector (heplify-server, Homer)
//	    transport: udp           # or tcp
//	    agent_id: 2001
//	    auth_key_file: /etc/viaduct/hep.key
//	  methods: [INVITE, BYE]     # default: every method
//	  direction: both            # in, out or both
//	  sample_rate: 0.1           # share of calls (by Call-ID) sent
//	  ring_size: 1048576         # bytes per transport worker
//	  traces: {max_active: 4, max_messages: 1000, max_duration: 5m}
//
// The zero value sends nothing to a collector; the per-call traces of the
// admin API work with it.
type Config struct {
	// HEP is the collector; nil or an empty address: none.
	HEP HEPConfig `yaml:"hep"`
	// Methods, when set, limits what is sent to the collector to these
	// methods' requests and the responses to them (by CSeq). Default:
	// every message.
	Methods []string `yaml:"methods"`
	// Direction limits what is sent to the collector to what Viaduct
	// received ("in") or sent ("out"); "" or "both": both.
	Direction string `yaml:"direction"`
	// SampleRate is the share of calls sent to the collector, 0 to 1, by
	// a hash of the Call-ID: every message of a sampled call, none of the
	// others. nil: 1 (every call).
	SampleRate *float64 `yaml:"sample_rate"`
	// RingSize is the capture buffer of each transport worker in bytes,
	// rounded up to a power of two; when it is full, messages are not
	// captured (and counted). Default DefaultRingSize.
	RingSize int `yaml:"ring_size"`
	// Traces bounds the admin API's per-call traces.
	Traces TraceLimits `yaml:"traces"`
}

// HEPConfig is the HEP collector.
type HEPConfig struct {
	// Address is the collector's ip:port; "" sends no HEP.
	Address string `yaml:"address"`
	// Transport is "udp" (the default) or "tcp".
	Transport string `yaml:"transport"`
	// AgentID is the capture agent ID put in every frame (Homer's
	// capture node); default 0.
	AgentID uint32 `yaml:"agent_id"`
	// AuthKeyFile holds the collector's password (trailing line end
	// ignored), sent in every frame; "": none.
	AuthKeyFile string `yaml:"auth_key_file"`
}

// TraceLimits bound the per-call traces of the admin API.
type TraceLimits struct {
	// MaxActive is the number of traces armed at once (default
	// DefaultTraceMaxActive); more are refused with 429.
	MaxActive int `yaml:"max_active"`
	// MaxMessages is the most messages one trace may keep (default
	// DefaultTraceMaxMessages).
	MaxMessages int `yaml:"max_messages"`
	// MaxDuration is the longest a trace may stay armed (default
	// DefaultTraceMaxDuration).
	MaxDuration time.Duration `yaml:"max_duration"`
}

// WithDefaults returns c with the defaults in place of unset fields.
func (c Config) WithDefaults() Config {
	if c.HEP.Transport == "" {
		c.HEP.Transport = "udp"
	}
	if c.Direction == "" {
		c.Direction = "both"
	}
	if c.SampleRate == nil {
		one := 1.0
		c.SampleRate = &one
	}
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.Traces.MaxActive == 0 {
		c.Traces.MaxActive = DefaultTraceMaxActive
	}
	if c.Traces.MaxMessages == 0 {
		c.Traces.MaxMessages = DefaultTraceMaxMessages
	}
	if c.Traces.MaxDuration == 0 {
		c.Traces.MaxDuration = DefaultTraceMaxDuration
	}
	return c
}

// Validate checks c (defaults applied). Errors are *config.FieldError
// values naming the key below capture ("hep.address").
func (c Config) Validate() error {
	if c.HEP.Address != "" {
		if _, err := c.collector(); err != nil {
			return config.Errorf("hep.address", "%v", err)
		}
	}
	if c.HEP.Transport != "udp" && c.HEP.Transport != "tcp" {
		return config.Errorf("hep.transport", "%q is not one of udp, tcp", c.HEP.Transport)
	}
	if c.HEP.AuthKeyFile != "" {
		if _, err := c.authKey(); err != nil {
			return config.Errorf("hep.auth_key_file", "%v", err)
		}
	}
	if _, err := c.methodSet(); err != nil {
		return err
	}
	if _, err := c.directions(); err != nil {
		return config.Errorf("direction", "%v", err)
	}
	if r := *c.SampleRate; !(r >= 0 && r <= 1) {
		return config.Errorf("sample_rate", "must be between 0 and 1, got %v", r)
	}
	if c.RingSize < MinRingSize || c.RingSize > MaxRingSize {
		return config.Errorf("ring_size", "must be %d to %d bytes, got %d", MinRingSize, MaxRingSize, c.RingSize)
	}
	return c.Traces.validate()
}

func (l TraceLimits) validate() error {
	if l.MaxActive < 1 || l.MaxActive > MaxTraceMaxActive {
		return config.Errorf("traces.max_active", "must be 1 to %d, got %d", MaxTraceMaxActive, l.MaxActive)
	}
	if l.MaxMessages < 1 || l.MaxMessages > MaxTraceMaxMessages {
		return config.Errorf("traces.max_messages", "must be 1 to %d, got %d", MaxTraceMaxMessages, l.MaxMessages)
	}
	if l.MaxDuration < time.Second || l.MaxDuration > MaxTraceMaxDuration {
		return config.Errorf("traces.max_duration", "must be 1s to %v, got %v", MaxTraceMaxDuration, l.MaxDuration)
	}
	return nil
}

// collector parses HEP.Address.
func (c Config) collector() (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(strings.TrimSpace(c.HEP.Address))
	if err != nil {
		return a, fmt.Errorf("%q is not an ip:port address", c.HEP.Address)
	}
	if a.Port() == 0 || a.Addr().IsUnspecified() {
		return a, fmt.Errorf("%q: the collector needs a specific address and a port", c.HEP.Address)
	}
	return a, nil
}

// authKey reads HEP.AuthKeyFile.
func (c Config) authKey() ([]byte, error) {
	if c.HEP.AuthKeyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.HEP.AuthKeyFile)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 || len(b) > 255 {
		return nil, fmt.Errorf("%s: the key must be 1 to 255 bytes, got %d", c.HEP.AuthKeyFile, len(b))
	}
	return b, nil
}

// methodSet returns the set of Methods, one bit per parser.Method; all
// bits when Methods is empty.
func (c Config) methodSet() (uint64, error) {
	if len(c.Methods) == 0 {
		return allMethods, nil
	}
	var set uint64
	for i, m := range c.Methods {
		k := parser.MethodOf([]byte(strings.TrimSpace(m)))
		if k == parser.MethodOther {
			return 0, config.Errorf(fmt.Sprintf("methods[%d]", i), "%q is not one of %s (method names are upper case)", m, strings.Join(knownMethods(), ", "))
		}
		set |= 1 << k
	}
	return set, nil
}

// knownMethods lists the methods the filter knows.
func knownMethods() []string {
	var out []string
	for m := parser.Method(1); m.String() != ""; m++ {
		out = append(out, m.String())
	}
	return out
}

// directions returns the directions Direction admits, as a bit set of
// dirIn and dirOut.
func (c Config) directions() (uint8, error) {
	switch c.Direction {
	case "both":
		return 1<<dirIn | 1<<dirOut, nil
	case "in":
		return 1 << dirIn, nil
	case "out":
		return 1 << dirOut, nil
	}
	return 0, fmt.Errorf("%q is not one of in, out, both", c.Direction)
}

// ringSize returns RingSize rounded up to a power of two.
func (c Config) ringSize() int {
	return 1 << bits.Len(uint(c.RingSize-1))
}

// sampleThreshold turns a sample rate into the bound a Call-ID's hash
// must stay below; ok is false when every call is sampled.
func sampleThreshold(rate float64) (threshold uint64, all bool) {
	v := rate * (1 << 64)
	if v >= 1<<64 {
		return 0, true
	}
	return uint64(v), false
}
