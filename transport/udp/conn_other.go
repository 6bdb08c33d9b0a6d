//go:build !linux || portableudp

package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// sysConn is what a Conn keeps off Linux besides the portable fields: its
// socket's family and the socket's closing, which the Conns of one
// ListenGroup share.
type sysConn struct {
	v4   bool // an AF_INET ("udp4") socket
	sock *socketClose
}

// socketClose closes a socket once, whichever of the Conns sharing it
// closes first.
type socketClose struct {
	once sync.Once
}

// listenSocket opens the socket of ListenAddrPort, with cfg already
// checked, with the standard library alone. Config.ReusePort is refused;
// Config.ParkAfter is ignored (see Config).
func listenSocket(ctx context.Context, addr netip.AddrPort, cfg Config, batchSize int) (*Conn, error) {
	if cfg.ReusePort {
		return nil, errUnsupported(addr, "SO_REUSEPORT groups (Config.ReusePort)")
	}
	network, addr := socketNetwork(addr) // the net package sets IPV6_V6ONLY for udp6
	v4 := network == "udp4"
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	uc := pc.(*net.UDPConn)
	if err := setBuffers(uc, cfg); err != nil {
		uc.Close()
		return nil, fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	c := newConn(uc, v4, batchSize)
	c.rcvbuf, c.sndbuf = cfg.RecvBuffer, cfg.SendBuffer
	c.v4, c.sock = v4, new(socketClose)
	return c, nil
}

// setBuffers asks for the buffer sizes of cfg that are set.
func setBuffers(uc *net.UDPConn, cfg Config) error {
	if cfg.RecvBuffer > 0 {
		if err := uc.SetReadBuffer(cfg.RecvBuffer); err != nil {
			return fmt.Errorf("receive buffer of %d bytes: %w", cfg.RecvBuffer, err)
		}
	}
	if cfg.SendBuffer > 0 {
		if err := uc.SetWriteBuffer(cfg.SendBuffer); err != nil {
			return fmt.Errorf("send buffer of %d bytes: %w", cfg.SendBuffer, err)
		}
	}
	return nil
}

// Close closes the socket. A ReadBatch, ReadLoop or WriteBatch blocked on
// it returns promptly with an error wrapping net.ErrClosed. The Conns of
// one ListenGroup share their socket off Linux: the first Close of any of
// them closes it for all, and later ones return nil.
func (c *Conn) Close() error {
	var err error
	c.sock.once.Do(func() { err = c.uc.Close() })
	if err != nil {
		return fmt.Errorf("udp: close %v: %w", c.local, err)
	}
	return nil
}

// WriteTo sends one datagram b to addr. It is meant for rare traffic
// outside the batch loop (local replies, probes).
func (c *Conn) WriteTo(b []byte, addr netip.AddrPort) error {
	addr = destination(addr, c.v4)
	if _, err := c.uc.WriteToUDPAddrPort(b, addr); err != nil {
		return fmt.Errorf("udp: write to %v: %w", addr, err)
	}
	return nil
}

// Connect is not supported off Linux: send with an address.
func (c *Conn) Connect(to netip.AddrPort) error {
	return fmt.Errorf("udp: connect %v to %v: %w off Linux", c.local, to, errors.ErrUnsupported)
}

// Drops returns 0: off Linux the standard library offers no view of the
// kernel's drop counter.
func (c *Conn) Drops() uint64 { return 0 }

// errUnsupported is the error for a Config option that needs Linux.
func errUnsupported(addr netip.AddrPort, what string) error {
	return fmt.Errorf("udp: listen %v: %s: %w off Linux", addr, what, errors.ErrUnsupported)
}
