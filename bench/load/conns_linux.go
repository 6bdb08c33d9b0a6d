package load

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on a socket about to be bound
// to a local address, so that its port is chosen at connect(2) time for
// the 4-tuple rather than at bind(2) time for the address alone.
func bindNoPort(network, address string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		// Best effort: without it a bound socket just takes its port sooner.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
}

// connAlive reports whether the peer has not closed c: a peek that does
// not wait finds no end of stream and no error.
func connAlive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		alive = n > 0 || errors.Is(rerr, unix.EAGAIN)
		return true // never wait
	})
	return err == nil && alive
}

// raiseOpenFiles raises the soft limit on open files (and the hard one,
// when allowed) to at least n, or as far as it may go; it returns the
// soft limit now in force.
func raiseOpenFiles(n uint64) (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := lim
	want.Cur, want.Max = n, max(lim.Max, n)
	err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want)
	if err == nil {
		return n, nil
	}
	err = fmt.Errorf("raising the open-files limit from %d (hard %d) to %d: %w", lim.Cur, lim.Max, n, err)
	if lim.Cur < lim.Max {
		want.Cur, want.Max = lim.Max, lim.Max
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &want) == nil {
			return lim.Max, err
		}
	}
	return lim.Cur, err
}
