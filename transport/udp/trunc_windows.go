package udp

import (
	"errors"
	"syscall"
)

// wsaEMSGSIZE is WSAEMSGSIZE: the datagram was larger than the buffer,
// which Windows filled with its beginning.
const wsaEMSGSIZE = syscall.Errno(10040)

// readTruncated reports whether a read that returned flags and err
// received a datagram longer than the buffer: Windows reports it as the
// error WSAEMSGSIZE.
func readTruncated(flags int, err error) bool {
	return errors.Is(err, wsaEMSGSIZE)
}
