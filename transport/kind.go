// Package transport is the room of Viaduct's transports and the seam
// between them and the forwarding core. It holds what both sides share:
// the Kind table (Via token, URI transport parameter, default port), a
// Peer (where a message came from or goes: address, kind, listener, flow),
// and the interfaces of the seam: a Binder opens a Server (one transport's
// listeners and workers) for a Layout, and each transport worker hands
// every message to its Handler (the core) and sends what it returns. The
// sockets and connections themselves live in one sub-package per kind
// (transport/udp). A transport knows framing and connections, not SIP
// routing; the core knows no socket.
package transport

import "strings"

// Kind is a SIP transport (RFC 3261 18, RFC 7118 for WebSocket).
type Kind uint8

// The transports. The zero Kind is no transport.
const (
	UDP Kind = iota + 1
	TCP
	TLS
	WS
	WSS
	numKinds
)

// kindInfo is one row of the transport table.
type kindInfo struct {
	name     string // lower case: the URI transport= value, config prefix and ID prefix
	via      string // the Via sent-protocol transport token
	port     uint16 // default port (RFC 3261 19.1.2, RFC 7118 section 5)
	reliable bool   // a stream: no retransmission by the transaction layer
	secure   bool   // TLS underneath (sips)
}

var kinds = [numKinds]kindInfo{
	UDP: {"udp", "UDP", 5060, false, false},
	TCP: {"tcp", "TCP", 5060, true, false},
	TLS: {"tls", "TLS", 5061, true, true},
	WS:  {"ws", "WS", 80, true, false},
	WSS: {"wss", "WSS", 443, true, true},
}

// Valid reports whether k is one of the transports above.
func (k Kind) Valid() bool { return k > 0 && k < numKinds }

// String returns the lower-case name ("udp"), the spelling of config
// prefixes, target IDs and the URI transport parameter; "" for an invalid
// Kind.
func (k Kind) String() string {
	if !k.Valid() {
		return ""
	}
	return kinds[k].name
}

// ViaToken returns the transport token of a Via's sent-protocol ("UDP").
func (k Kind) ViaToken() string {
	if !k.Valid() {
		return ""
	}
	return kinds[k].via
}

// DefaultPort returns the port a URI or Via without one means.
func (k Kind) DefaultPort() uint16 {
	if !k.Valid() {
		return 0
	}
	return kinds[k].port
}

// Reliable reports whether the transport is a stream (TCP, TLS, WebSocket).
func (k Kind) Reliable() bool { return k.Valid() && kinds[k].reliable }

// NeedsLength reports whether the transport's messages are delimited by
// their Content-Length alone (TCP and TLS: RFC 3261 18.3 requires it);
// a datagram and a WebSocket message (RFC 7118) delimit themselves.
func (k Kind) NeedsLength() bool { return k == TCP || k == TLS }

// Secure reports whether the transport runs over TLS.
func (k Kind) Secure() bool { return k.Valid() && kinds[k].secure }

// ParseKind returns the Kind named s (any case: "udp", "TLS"), and false
// when there is none.
func ParseKind(s string) (Kind, bool) {
	for k := UDP; k < numKinds; k++ {
		if strings.EqualFold(s, kinds[k].name) {
			return k, true
		}
	}
	return 0, false
}

// Names returns the lower-case names of the transports in table order
// ("udp", "tcp", "tls", "ws", "wss"): the spellings ParseKind takes, for
// listing them in an error or a help text.
func Names() []string {
	names := make([]string, 0, numKinds-1)
	for k := UDP; k < numKinds; k++ {
		names = append(names, kinds[k].name)
	}
	return names
}
