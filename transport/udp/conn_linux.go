//go:build linux && !portableudp

package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysConn is what a Conn keeps on Linux besides the portable fields.
type sysConn struct {
	rc      syscall.RawConn
	family  int // unix.AF_INET or unix.AF_INET6
	rxqOvfl bool

	// drops is the socket's kernel drop counter (sk_drops, a wrapping
	// uint32 in the kernel) extended to 64 bits: the low 32 bits are the
	// last raw value seen, the high bits count wraps.
	drops atomic.Uint64
	// closing is set by Close before it closes the socket, so that a
	// ReadLoop that is busy (not waiting) stops between batches.
	closing atomic.Bool

	// one is WriteTo's state: its sendto(2) is raw, like the batches'.
	one oneSend
}

// oneSend is what a raw sendto(2) of WriteTo needs, prepared under mu.
type oneSend struct {
	mu      sync.Mutex
	sa      unix.RawSockaddrInet6
	nameLen uint32
	b       []byte
	errno   syscall.Errno
	fn      func(fd uintptr) bool // sendNow, bound once
}

// sendNow is the raw sendto(2) of WriteTo, issued without waiting.
func (s *oneSend) sendNow(fd uintptr) bool {
	var name unsafe.Pointer
	if s.nameLen > 0 {
		name = unsafe.Pointer(&s.sa)
	}
	var p unsafe.Pointer
	if len(s.b) > 0 {
		p = unsafe.Pointer(&s.b[0])
	}
	_, _, s.errno = unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(p), uintptr(len(s.b)), unix.MSG_DONTWAIT,
		uintptr(name), uintptr(s.nameLen))
	return true
}

// listenSocket opens the socket of ListenAddrPort, with cfg already checked.
func listenSocket(ctx context.Context, addr netip.AddrPort, cfg Config, batchSize int) (*Conn, error) {
	network, addr := socketNetwork(addr)
	family := unix.AF_INET6
	if network == "udp4" {
		family = unix.AF_INET
	}

	st := setup{cfg: cfg, family: family}
	lc := net.ListenConfig{Control: st.control}
	pc, err := lc.ListenPacket(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	uc := pc.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("udp: listen %v: raw conn: %w", addr, err)
	}
	if cfg.ParkAfter > 0 {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = waitInRecv(int(fd), cfg.ParkAfter) }); err != nil || serr != nil {
			uc.Close()
			return nil, fmt.Errorf("udp: listen %v: park after %v: %w", addr, cfg.ParkAfter, errors.Join(err, serr))
		}
	}
	c := newConn(uc, family == unix.AF_INET, batchSize)
	c.rcvbuf, c.sndbuf = st.rcvbuf, st.sndbuf
	c.reusePort, c.parkAfter, c.yield = cfg.ReusePort, cfg.ParkAfter, cfg.Yield
	c.rc, c.family, c.rxqOvfl = rc, family, st.rxqOvfl
	c.one.fn = c.one.sendNow
	return c, nil
}

// waitInRecv makes a blocking recvmmsg on fd wait at most d: it clears
// O_NONBLOCK, which the runtime set, and sets SO_RCVTIMEO. Every call of
// this package that must not block passes MSG_DONTWAIT instead.
func waitInRecv(fd int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if tv.Sec == 0 && tv.Usec == 0 {
		tv.Usec = 1 // a zero SO_RCVTIMEO would mean no timeout at all
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set SO_RCVTIMEO: %w", err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return fmt.Errorf("clear O_NONBLOCK: %w", err)
	}
	return nil
}

// setup applies Config to a socket between socket(2) and bind(2) and
// records what the kernel granted.
type setup struct {
	cfg     Config
	family  int
	rcvbuf  int
	sndbuf  int
	rxqOvfl bool
}

func (s *setup) control(network, address string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = s.apply(int(fd)) }); err != nil {
		return fmt.Errorf("socket control: %w", err)
	}
	return serr
}

func (s *setup) apply(fd int) error {
	if s.cfg.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("set SO_REUSEPORT: %w", err)
		}
	}
	if s.family == unix.AF_INET6 {
		// The net package already sets this for "udp6"; setting it here
		// keeps the behaviour explicit and independent of that default.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("set IPV6_V6ONLY: %w", err)
		}
	}
	var err error
	if s.rcvbuf, err = setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, s.cfg.RecvBuffer); err != nil {
		return fmt.Errorf("receive buffer: %w", err)
	}
	if s.sndbuf, err = setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, s.cfg.SendBuffer); err != nil {
		return fmt.Errorf("send buffer: %w", err)
	}
	// Drop reporting is best effort: kernels without SO_RXQ_OVFL still
	// work, Drops then relies on SO_MEMINFO alone.
	s.rxqOvfl = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) == nil
	return nil
}

// setBuffer asks for size bytes with the privileged option force, falls
// back to plain, and returns the size the kernel reports afterwards.
func setBuffer(fd, force, plain, size int) (int, error) {
	if size > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size); err != nil {
				return 0, fmt.Errorf("setsockopt %d bytes: %w", size, err)
			}
		}
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, plain)
	if err != nil {
		return 0, fmt.Errorf("getsockopt: %w", err)
	}
	return got, nil
}

// Close closes the socket. A ReadBatch, ReadLoop or WriteBatch blocked on
// it returns promptly with an error wrapping net.ErrClosed.
func (c *Conn) Close() error {
	c.closing.Store(true)
	if c.parkAfter > 0 {
		// End a ReadLoop's wait in recvmmsg now rather than after
		// ParkAfter: shutdown(SHUT_RD) wakes the waiter, which then sees
		// closing. (For an unconnected socket it also reports ENOTCONN.)
		c.rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RD) })
	}
	if err := c.uc.Close(); err != nil {
		return fmt.Errorf("udp: close %v: %w", c.local, err)
	}
	return nil
}

// WriteTo sends one datagram b to addr with a raw sendto(2) (MSG_DONTWAIT,
// so the runtime need not know of it; a full send buffer is waited out
// through the netpoller). It serves traffic outside the batch loop: local
// replies, probes, and what other transports' workers send over UDP. Its
// callers take turns; it allocates nothing for IPv4 and IPv6 destinations
// without a zone.
func (c *Conn) WriteTo(b []byte, addr netip.AddrPort) error {
	s := &c.one
	s.mu.Lock()
	s.nameLen = encodeAddr(&s.sa, addr, c.family)
	s.b = b
	err := c.rc.Write(s.fn)
	errno := s.errno
	s.b = nil
	s.mu.Unlock()
	switch {
	case err != nil:
	case errno == unix.EAGAIN || errno == unix.EINTR: // a full send buffer: wait for room
		_, err = c.uc.WriteToUDPAddrPort(b, destination(addr, c.family == unix.AF_INET))
	case errno != 0:
		err = os.NewSyscallError("sendto", errno)
	}
	if err != nil {
		return fmt.Errorf("udp: write to %v: %w", addr, err)
	}
	return nil
}

// Connect fixes the socket's peer (connect(2)): a message sent with no
// address (an invalid Message.Addr) goes to it, and the kernel reuses the
// route it looked up once instead of looking it up per datagram, which is
// most of what a sender to one destination can save per datagram. Only
// datagrams from to are received afterwards.
func (c *Conn) Connect(to netip.AddrPort) error {
	var sa unix.RawSockaddrInet6
	n := encodeAddr(&sa, to, c.family)
	if n == 0 {
		return fmt.Errorf("udp: connect %v to %v: invalid address", c.local, to)
	}
	var errno syscall.Errno
	err := c.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(&sa)), uintptr(n))
	})
	if err == nil && errno != 0 {
		err = os.NewSyscallError("connect", errno)
	}
	if err != nil {
		return fmt.Errorf("udp: connect %v to %v: %w", c.local, to, err)
	}
	return nil
}

// Drops returns the number of datagrams the kernel dropped on this socket
// since it was opened, mostly because the receive buffer was full (the
// socket's sk_drops counter, which also counts datagrams rejected by a
// socket filter or failing their checksum).
//
// The count comes from two sources: every ReadBatch reads the counter the
// kernel attaches to received datagrams (SO_RXQ_OVFL), at no extra cost;
// and Drops itself asks the kernel for the current value with one
// getsockopt(SO_MEMINFO) call, so drops are visible even while nothing is
// being read. If neither is supported it returns 0. After Close, it
// returns the last value seen. Drops is meant for periodic reporting, not
// for every batch: it costs a system call and a small allocation.
func (c *Conn) Drops() uint64 {
	var info [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(info))
	var errno syscall.Errno
	err := c.rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err == nil && errno == 0 && size > unix.SK_MEMINFO_DROPS*4 {
		c.noteDrops(info[unix.SK_MEMINFO_DROPS])
	}
	return c.drops.Load()
}

// noteDrops merges a raw 32-bit kernel drop counter into c.drops. Values
// may arrive out of order from concurrent readers; an older value never
// lowers the count, and a wrap of the kernel counter is carried into the
// high bits.
func (c *Conn) noteDrops(v uint32) {
	for {
		old := c.drops.Load()
		next := old&^0xffffffff | uint64(v)
		if next < old {
			if old-next < 1<<31 {
				return // stale value
			}
			next += 1 << 32 // the kernel counter wrapped
		} else if next-old >= 1<<31 && old>>32 > 0 {
			return // stale value from before the last wrap
		}
		if next == old || c.drops.CompareAndSwap(old, next) {
			return
		}
	}
}
