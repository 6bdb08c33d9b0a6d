package stream

import (
	"bytes"
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
	for i, p := range c.Paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n?#") {
			return c, config.Errorf("paths", "entry %d (%q) is not a path such as /ws", i, p)
		}
	}
	return c, nil
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
