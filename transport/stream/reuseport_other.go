//go:build !unix

package stream

import (
	"errors"
	"syscall"
)

// reusePort is not supported off Unix.
func reusePort(network, address string, c syscall.RawConn) error {
	return errors.New("stream: reuse_port needs a Unix system")
}
