package stream

import (
	"crypto/tls"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// Defaults of ServerConfig. Each limit counts in Stats when it fires (see
// Limit and CloseReason).
const (
	DefaultMaxConnections      = 50000
	DefaultMaxConnectionsPerIP = 1024
	DefaultAcceptRate          = 2000 // connections per second, per server
	DefaultAcceptBurst         = 4000
	DefaultHandshakeTimeout    = 5 * time.Second
	DefaultFirstMessageTimeout = 10 * time.Second
	DefaultMessageTimeout      = 5 * time.Second
	DefaultIdleTimeout         = 10 * time.Minute
	DefaultWriteQueue          = 256 << 10
	DefaultDialTimeout         = 5 * time.Second
	DefaultReconnectBackoff    = 250 * time.Millisecond
	DefaultMaxReconnectBackoff = 30 * time.Second
)

// ServerConfig is the configuration block of the TCP and TLS transports.
// The zero value of every field selects its default; only the idle
// timeouts can be turned off (a negative IdleTimeout). Field names in
// errors are its YAML keys.
type ServerConfig struct {
	// MaxConnections bounds the inbound connections open at once, over
	// all listeners of the server. Default DefaultMaxConnections.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds the inbound connections open at once
	// from one source address. Default DefaultMaxConnectionsPerIP.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// AcceptRate and AcceptBurst are a token bucket on accepts: a
	// connection accepted when the bucket is empty is closed at once.
	// Defaults DefaultAcceptRate per second, DefaultAcceptBurst.
	AcceptRate  float64 `yaml:"accept_rate"`
	AcceptBurst int     `yaml:"accept_burst"`

	// HandshakeTimeout bounds a TLS handshake, inbound or outbound.
	// Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// FirstMessageTimeout bounds the time from accept (from the end of
	// the handshake on TLS) to the end of the first message. Default
	// DefaultFirstMessageTimeout.
	FirstMessageTimeout time.Duration `yaml:"first_message_timeout"`
	// MessageTimeout bounds the time from a message's first byte to its
	// last: a client sending one byte a second is closed. Default
	// DefaultMessageTimeout.
	MessageTimeout time.Duration `yaml:"message_timeout"`
	// IdleTimeout closes an inbound connection that received nothing for
	// that long. Default DefaultIdleTimeout; negative: never.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// OutboundIdleTimeout is IdleTimeout for connections the server
	// dialled (to upstreams). Zero or negative: never (the default).
	OutboundIdleTimeout time.Duration `yaml:"outbound_idle_timeout"`

	// WriteQueue bounds the bytes queued on one connection that the peer
	// has not read yet; over it the connection is closed. Default
	// DefaultWriteQueue.
	WriteQueue int `yaml:"write_queue"`

	// DialTimeout bounds the TCP connect of an outbound connection.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReconnectBackoff is the wait after a failed dial before the next
	// one to the same address; it doubles with every failure up to
	// MaxReconnectBackoff, and sends meanwhile fail at once. Defaults
	// DefaultReconnectBackoff, DefaultMaxReconnectBackoff.
	ReconnectBackoff    time.Duration `yaml:"reconnect_backoff"`
	MaxReconnectBackoff time.Duration `yaml:"max_reconnect_backoff"`

	// CertFile and KeyFile are the PEM certificate chain and key a TLS
	// server presents (required for TLS), and a TLS client presents when
	// a peer asks for one.
	CertFile string `yaml:"-"`
	KeyFile  string `yaml:"-"`
	// ClientCAFile, if set, makes the TLS server require a client
	// certificate that verifies against these PEM CAs (mutual TLS).
	ClientCAFile string `yaml:"-"`
	// CAFile holds the PEM CAs outbound TLS connections verify the server
	// against; empty: the system pool.
	CAFile string `yaml:"-"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string `yaml:"-"`
	// ReusePort sets SO_REUSEPORT on the listening sockets, so that
	// several processes (Viaduct instances started with it) share the
	// listen addresses, the kernel spreading new connections over them.
	// Viaduct's top-level reuse_port sets it for UDP and streams alike.
	ReusePort bool `yaml:"-"`
	// InsecureSkipVerify turns off verification of the servers outbound
	// TLS connections reach. For tests only.
	InsecureSkipVerify bool `yaml:"-"`

	// WebSocket is the websocket block, for WS and WSS servers.
	WebSocket WebSocketConfig `yaml:"-"`
}

// WithDefaults returns c with its defaults applied, or a
// *config.FieldError naming the first field out of range.
func (c ServerConfig) WithDefaults() (ServerConfig, error) {
	if err := defaultInt(&c.MaxConnections, DefaultMaxConnections, "max_connections"); err != nil {
		return c, err
	}
	if err := defaultInt(&c.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP, "max_connections_per_ip"); err != nil {
		return c, err
	}
	if err := defaultInt(&c.AcceptBurst, DefaultAcceptBurst, "accept_burst"); err != nil {
		return c, err
	}
	if err := defaultInt(&c.WriteQueue, DefaultWriteQueue, "write_queue"); err != nil {
		return c, err
	}
	if c.AcceptRate == 0 {
		c.AcceptRate = DefaultAcceptRate
	}
	if c.AcceptRate < 0 {
		return c, config.Errorf("accept_rate", "must be positive, got %v", c.AcceptRate)
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
		key string
	}{
		{&c.HandshakeTimeout, DefaultHandshakeTimeout, "handshake_timeout"},
		{&c.FirstMessageTimeout, DefaultFirstMessageTimeout, "first_message_timeout"},
		{&c.MessageTimeout, DefaultMessageTimeout, "message_timeout"},
		{&c.DialTimeout, DefaultDialTimeout, "dial_timeout"},
		{&c.ReconnectBackoff, DefaultReconnectBackoff, "reconnect_backoff"},
		{&c.MaxReconnectBackoff, DefaultMaxReconnectBackoff, "max_reconnect_backoff"},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			return c, config.Errorf(d.key, "must be positive, got %v", *d.v)
		}
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxReconnectBackoff < c.ReconnectBackoff {
		return c, config.Errorf("max_reconnect_backoff", "must be at least reconnect_backoff (%v), got %v",
			c.ReconnectBackoff, c.MaxReconnectBackoff)
	}
	if _, err := c.tlsMinVersion(); err != nil {
		return c, err
	}
	ws, err := c.WebSocket.WithDefaults()
	if err != nil {
		return c, err
	}
	c.WebSocket = ws
	if (c.CertFile == "") != (c.KeyFile == "") {
		return c, config.Errorf("key_file", "cert_file and key_file go together")
	}
	return c, nil
}

func defaultInt(v *int, def int, key string) error {
	if *v == 0 {
		*v = def
	}
	if *v < 0 {
		return config.Errorf(key, "must be positive, got %d", *v)
	}
	return nil
}

// tlsMinVersion maps MinVersion to its crypto/tls constant.
func (c ServerConfig) tlsMinVersion() (uint16, error) {
	switch c.MinVersion {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, config.Errorf("min_version", "must be \"1.2\" or \"1.3\", got %q", c.MinVersion)
}

// idleTimeout returns the idle timeout of a connection, 0 for none.
func (c ServerConfig) idleTimeout(outbound bool) time.Duration {
	d := c.IdleTimeout
	if outbound {
		d = c.OutboundIdleTimeout
	}
	return max(d, 0)
}
