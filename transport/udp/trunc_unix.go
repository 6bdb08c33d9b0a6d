//go:build unix && (!linux || portableudp)

package udp

import "syscall"

// readTruncated reports whether a read that returned flags and err
// received a datagram longer than the buffer: recvmsg sets MSG_TRUNC.
func readTruncated(flags int, err error) bool {
	return err == nil && flags&syscall.MSG_TRUNC != 0
}
