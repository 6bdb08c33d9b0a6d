//go:build !linux || portableudp

package udp

import (
	"context"
	"net/netip"
)

// ListenGroup opens one socket bound to addr and returns n Conns that
// share it: off Linux there is no SO_REUSEPORT group that spreads
// datagrams over sockets, so the group degrades to one socket whose
// readers take turns (the runtime serializes their reads). Every Conn
// reports the same LocalAddr; closing any of them closes the socket for
// all (see Conn.Close). Unlike a Linux group, datagrams of one source may
// then be read by different readers.
//
// The socket is bound without SO_REUSEPORT, so the system refuses an
// address another socket holds (an error wrapping its EADDRINUSE).
// cfg.ShareAddress is refused with an error wrapping
// errors.ErrUnsupported; cfg.ReusePort is ignored.
func ListenGroup(ctx context.Context, addr netip.AddrPort, n int, cfg Config) ([]*Conn, error) {
	if err := checkGroup(addr, n); err != nil {
		return nil, err
	}
	if cfg.ShareAddress {
		return nil, errUnsupported(addr, "sharing the address with other processes (Config.ShareAddress)")
	}
	cfg.ReusePort = false
	c, err := ListenAddrPort(ctx, addr, cfg)
	if err != nil {
		return nil, err
	}
	g := make([]*Conn, n)
	g[0] = c
	for i := 1; i < n; i++ {
		g[i] = c.share()
	}
	return g, nil
}

// share returns another Conn on c's socket, with counters of its own.
func (c *Conn) share() *Conn {
	return &Conn{
		uc:        c.uc,
		local:     c.local,
		batchSize: c.batchSize,
		rcvbuf:    c.rcvbuf,
		sndbuf:    c.sndbuf,
		sysConn:   c.sysConn,
	}
}
