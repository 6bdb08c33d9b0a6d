package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strconv"
)

// Behind a load balancer or an ingress that terminates TLS, a WebSocket
// connection comes from the balancer; the browser's address comes with it
// in an X-Forwarded-For header of the upgrade or in a PROXY protocol header
// before it (haproxy's PROXY protocol, versions 1 and 2), and is believed
// only from WebSocketConfig.TrustedProxies. It becomes the source of the
// connection's messages (the edge's per-source limits and bans, received
// in the Via); the connection's port stays the balancer's.

// Where the client's address of a WebSocket connection comes from
// (WebSocketConfig.ClientAddress).
const (
	ClientAddressSocket        = "socket"
	ClientAddressForwardedFor  = "x-forwarded-for"
	ClientAddressProxyProtocol = "proxy-protocol"
)

// PROXY protocol errors.
var (
	errProxyNeedMore = errors.New("proxy protocol: incomplete header")
	errProxyBad      = errors.New("proxy protocol: malformed header")
)

// proxyV2Sig is the start of a version 2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// maxProxyHeader is the longest header accepted: version 1's 107 bytes,
// or version 2's 16 and an IPv6 address block with room for a few TLVs.
const maxProxyHeader = 16 + 216

// parseProxyHeader reads the PROXY protocol header at the start of b: its
// length and the client's address (invalid for version 2's LOCAL command
// and version 1's UNKNOWN: the balancer's own connection, a health check).
func parseProxyHeader(b []byte) (int, netip.AddrPort, error) {
	switch {
	case len(b) >= len(proxyV2Sig) && bytes.Equal(b[:len(proxyV2Sig)], proxyV2Sig):
		return parseProxyV2(b)
	case len(b) < len(proxyV2Sig) && bytes.HasPrefix(proxyV2Sig, b):
		return 0, netip.AddrPort{}, errProxyNeedMore
	case bytes.HasPrefix(b, []byte("PROXY ")):
		return parseProxyV1(b)
	case len(b) < 6 && bytes.HasPrefix([]byte("PROXY "), b):
		return 0, netip.AddrPort{}, errProxyNeedMore
	}
	return 0, netip.AddrPort{}, errProxyBad
}

// parseProxyV1 reads "PROXY TCP4 src dst sport dport\r\n".
func parseProxyV1(b []byte) (int, netip.AddrPort, error) {
	end := bytes.Index(b[:min(len(b), 107)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= 107 {
			return 0, netip.AddrPort{}, errProxyBad
		}
		return 0, netip.AddrPort{}, errProxyNeedMore
	}
	f := bytes.Split(b[6:end], []byte(" "))
	if len(f) >= 1 && string(f[0]) == "UNKNOWN" {
		return end + 2, netip.AddrPort{}, nil
	}
	if len(f) != 5 || (string(f[0]) != "TCP4" && string(f[0]) != "TCP6") {
		return 0, netip.AddrPort{}, errProxyBad
	}
	ip, err := netip.ParseAddr(string(f[1]))
	port, perr := strconv.ParseUint(string(f[3]), 10, 16)
	if err != nil || perr != nil || ip.Is4() != (string(f[0]) == "TCP4") {
		return 0, netip.AddrPort{}, errProxyBad
	}
	return end + 2, netip.AddrPortFrom(ip, uint16(port)), nil
}

// parseProxyV2 reads the binary header: signature, version and command,
// family and protocol, length, then the addresses.
func parseProxyV2(b []byte) (int, netip.AddrPort, error) {
	if len(b) < 16 {
		return 0, netip.AddrPort{}, errProxyNeedMore
	}
	verCmd, fam, n := b[12], b[13], 16+int(binary.BigEndian.Uint16(b[14:16]))
	switch {
	case verCmd>>4 != 2 || verCmd&0x0F > 1 || n > maxProxyHeader:
		return 0, netip.AddrPort{}, errProxyBad
	case len(b) < n:
		return 0, netip.AddrPort{}, errProxyNeedMore
	case verCmd&0x0F == 0: // LOCAL: the balancer speaking for itself
		return n, netip.AddrPort{}, nil
	}
	a := b[16:n]
	switch {
	case fam == 0x11 && len(a) >= 12: // TCP over IPv4
		return n, netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10])), nil
	case fam == 0x21 && len(a) >= 36: // TCP over IPv6
		return n, netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])).Unmap(), binary.BigEndian.Uint16(a[32:34])), nil
	case fam == 0x00: // UNSPEC
		return n, netip.AddrPort{}, nil
	}
	return 0, netip.AddrPort{}, errProxyBad
}

// readProxyHeader reads a PROXY protocol header from r (blocking: a WSS
// connection's, before its TLS handshake), a byte at a time so that not a
// byte of what follows is taken.
func readProxyHeader(r io.Reader) (netip.AddrPort, error) {
	buf := make([]byte, 0, maxProxyHeader)
	var one [1]byte
	for len(buf) < maxProxyHeader {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			return netip.AddrPort{}, err
		}
		buf = append(buf, one[0])
		n, src, err := parseProxyHeader(buf)
		if err == nil && n == len(buf) {
			return src, nil
		}
		if err != nil && err != errProxyNeedMore {
			return netip.AddrPort{}, err
		}
	}
	return netip.AddrPort{}, errProxyBad
}

// lastForwarded returns the last address of an X-Forwarded-For value (the
// one the trusted proxy itself added), invalid when there is none.
func lastForwarded(v []byte) netip.Addr {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	ip, err := netip.ParseAddr(string(bytes.TrimSpace(v)))
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// clientFrom makes addr (with port, or the connection's port when it has
// none) the source of the connection's messages.
func (c *conn) clientFrom(addr netip.AddrPort) {
	if !addr.IsValid() {
		return
	}
	if addr.Port() == 0 {
		addr = netip.AddrPortFrom(addr.Addr(), c.peer.Port())
	}
	c.src.Addr = addr
	c.s.count.wsForwarded.Add(1)
}

// trustedProxy reports whether the connection comes from a proxy whose
// word on the client's address is taken.
func (c *conn) trustedProxy() bool { return c.s.cfg.WebSocket.trusts(c.peer.Addr()) }
