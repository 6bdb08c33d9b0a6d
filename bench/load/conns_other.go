//go:build !linux

package load

import (
	"net"
	"syscall"
)

// bindNoPort does nothing off Linux (no IP_BIND_ADDRESS_NO_PORT).
func bindNoPort(network, address string, c syscall.RawConn) error { return nil }

// connAlive cannot peek off Linux without reading: it trusts c is open.
func connAlive(c net.Conn) bool { return true }

// raiseOpenFiles leaves the limit alone off Linux (0: not known); opening
// fails with "too many open files" when it is too low.
func raiseOpenFiles(n uint64) (uint64, error) { return 0, nil }
