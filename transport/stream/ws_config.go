package stream

import (
	"bytes"
	"net/netip"
	"strings"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
)

// DefaultWebSocketKeepalive is how long a WebSocket connection may stay
// silent before Viaduct pings the client.
const DefaultWebSocketKeepalive = 30 * time.Second

// WebSocketConfig is the websocket block: the settings of the WS and WSS
// listeners (RFC 7118). The zero value of every field selects its default.
type WebSocketConfig struct {
	// Origins are the Origin values an upgrade may carry
	// ("https://app.example.com", compared without regard to case); a
	// request from a page of another origin gets 403; "*" allows any.
	// Empty, the default: any origin. A request without Origin is not a
	// browser's (browsers always send it) and is let through: the check
	// keeps other sites' pages from using a browser's WebSocket, which a
	// non-browser client could not be kept from by a header it writes
	// itself.
	Origins []string `yaml:"origins"`
	// Paths are the request paths an upgrade may ask for ("/ws"); others
	// get 404. Empty, the default: any path.
	Paths []string `yaml:"paths"`
	// Keepalive is how long a connection may be silent before Viaduct
	// sends the client a WebSocket ping (browsers answer with a pong), so
	// that NATs and load balancers in between keep the connection.
	// Default DefaultWebSocketKeepalive; negative: never.
	Keepalive time.Duration `yaml:"keepalive"`
	// ClientAddress says where the client's address of a connection from
	// one of TrustedProxies comes from: "socket" (the default: the
	// connection's peer), "x-forwarded-for" (the last address of the
	// upgrade's X-Forwarded-For, the one the proxy added) or
	// "proxy-protocol" (a PROXY protocol header, version 1 or 2, before
	// the upgrade, or before the TLS handshake on wss:; a trusted proxy's
	// connection without one is refused). Connections from other
	// addresses always use their peer's address.
	ClientAddress string `yaml:"client_address"`
	// TrustedProxies are the addresses and prefixes ("10.0.0.0/8",
	// "192.0.2.7") whose word on the client's address is taken; required
	// by a ClientAddress other than socket.
	TrustedProxies []string `yaml:"trusted_proxies"`

	trusted []netip.Prefix // TrustedProxies parsed
}

// WithDefaults returns c with its defaults applied, or a
// *config.FieldError naming the first bad key.
func (c WebSocketConfig) WithDefaults() (WebSocketConfig, error) {
	if c.Keepalive == 0 {
		c.Keepalive = DefaultWebSocketKeepalive
	}
	for i, o := range c.Origins {
		if o == "" || strings.ContainsAny(o, " \t\r\n") || o != "*" && !strings.Contains(o, "://") {
			return c, config.Errorf("origins", "entry %d (%q) is not an origin such as https://app.example.com", i, o)
		}
		c.Origins[i] = strings.TrimSuffix(o, "/")
	}
	switch c.ClientAddress {
	case "":
		c.ClientAddress = ClientAddressSocket
	case ClientAddressSocket, ClientAddressForwardedFor, ClientAddressProxyProtocol:
	default:
		return c, config.Errorf("client_address", "%q: want %s, %s or %s", c.ClientAddress,
			ClientAddressSocket, ClientAddressForwardedFor, ClientAddressProxyProtocol)
	}
	c.trusted = nil
	for i, s := range c.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			return c, config.Errorf("trusted_proxies", "entry %d (%q): %v", i, s, err)
		}
		c.trusted = append(c.trusted, p)
	}
	if c.ClientAddress != ClientAddressSocket && len(c.trusted) == 0 {
		return c, config.Errorf("trusted_proxies", "required by client_address %s: the proxies whose word is taken", c.ClientAddress)
	}
	for i, p := range c.Paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n?#") {
			return c, config.Errorf("paths", "entry %d (%q) is not a path such as /ws", i, p)
		}
	}
	return c, nil
}

// parsePrefix parses "10.0.0.0/8" or a lone address ("192.0.2.7").
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// trusts reports whether a connection from a is a trusted proxy's.
func (c *WebSocketConfig) trusts(a netip.Addr) bool {
	if c.ClientAddress == ClientAddressSocket {
		return false
	}
	a = a.Unmap()
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// OriginAllowed reports whether an upgrade with Origin value may go on:
// always with no Origins; else when the list holds it or "*".
func (c *WebSocketConfig) OriginAllowed(value []byte) bool {
	if len(c.Origins) == 0 {
		return true
	}
	for _, o := range c.Origins {
		if o == "*" || bytes.EqualFold(value, []byte(o)) {
			return true
		}
	}
	return false
}

// PathAllowed reports whether an upgrade for the request URI uri may go
// on: always with no Paths; else when its path (before any query) is one
// of them.
func (c *WebSocketConfig) PathAllowed(uri []byte) bool {
	if len(c.Paths) == 0 {
		return true
	}
	if q := bytes.IndexByte(uri, '?'); q >= 0 {
		uri = uri[:q]
	}
	for _, p := range c.Paths {
		if string(uri) == p {
			return true
		}
	}
	return false
}
