package load

import (
	"fmt"

	"github.com/viaduct-sip/viaduct/transport/udp"
	"golang.org/x/sys/unix"
)

// Classic BPF ancillary data offsets (linux/filter.h), not in x/sys/unix.
const (
	skfAdOff    = 0xfffff000 // SKF_AD_OFF (-0x1000) as an unsigned offset
	skfAdCPU    = 36
	skfAdRandom = 56
	bpfA        = 0x10 // BPF_A: return the accumulator
)

// attachSpread installs the reuseport program choosing a worker socket
// (by its index in the group: the order the sockets were bound) on the
// group that conn belongs to.
func attachSpread(conn *udp.Conn, spread Spread, n int) error {
	if spread == SpreadHash || n < 2 {
		return nil
	}
	src := uint32(skfAdRandom)
	if spread == SpreadCPU {
		src = skfAdCPU
	}
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + src},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | bpfA},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("attach SO_REUSEPORT %v program: %w", spread, serr)
	}
	return nil
}
