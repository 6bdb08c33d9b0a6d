//go:build !linux

package load

import (
	"errors"
	"fmt"

	"github.com/viaduct-sip/viaduct/transport/udp"
)

// attachSpread accepts only SpreadHash (or a single worker) off Linux:
// choosing a socket by CPU or at random needs a SO_ATTACH_REUSEPORT_CBPF
// program, and a group there is one shared socket (see udp.ListenGroup).
func attachSpread(conn *udp.Conn, spread Spread, n int) error {
	if spread == SpreadHash || n < 2 {
		return nil
	}
	return fmt.Errorf("spread %v: %w off Linux", spread, errors.ErrUnsupported)
}
