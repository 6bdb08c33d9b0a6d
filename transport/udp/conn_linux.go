//go:build linux

package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DefaultBatchSize is the number of messages in a Batch made by
// Conn.NewBatch when Config.BatchSize is zero.
const DefaultBatchSize = 64

// MaxBatchSize is the largest batch NewBatch accepts. It is the kernel's
// UIO_MAXIOV: recvmmsg and sendmmsg silently cap a longer vector to it.
const MaxBatchSize = 1024

// Config holds the socket options applied by Listen. The zero value is
// valid: an exclusive socket with the kernel's default buffer sizes.
type Config struct {
	// ReusePort sets SO_REUSEPORT before bind, so several sockets (one per
	// worker, all opened by the same user) can listen on one address. The
	// kernel then spreads incoming datagrams over the group by a hash of
	// the 4-tuple (source address and port, destination address and
	// port): all datagrams of one source land on the same socket. See the
	// package documentation for what that means for a single heavy peer.
	//
	// SO_REUSEADDR is deliberately not set: a UDP reuse-port group does
	// not need it, and it would let a process of any user that also sets
	// it bind the same address and steal traffic.
	ReusePort bool

	// ShareAddress lets ListenGroup share the address with sockets that
	// other processes of the same user opened on it with SO_REUSEPORT
	// (the kernel then spreads the traffic over all of them). Without it
	// ListenGroup refuses an address that another socket holds. Listen and
	// ListenAddrPort ignore it.
	ShareAddress bool

	// RecvBuffer and SendBuffer, when positive, are the requested socket
	// buffer sizes in bytes (SO_RCVBUF and SO_SNDBUF). Listen first tries
	// SO_RCVBUFFORCE / SO_SNDBUFFORCE, which exceed net.core.rmem_max and
	// net.core.wmem_max but need CAP_NET_ADMIN, and falls back to the
	// plain options, which the kernel silently caps at those sysctls. The
	// kernel doubles the value to account for its bookkeeping overhead;
	// Conn.RecvBufferSize and Conn.SendBufferSize report what it really
	// uses. Zero keeps the kernel default; a negative value is an error.
	RecvBuffer, SendBuffer int

	// BatchSize is the number of messages of a Batch made by
	// Conn.NewBatch. Zero means DefaultBatchSize; it must not exceed
	// MaxBatchSize.
	BatchSize int

	// ParkAfter, when positive, is how long a ReadLoop that ran out of
	// datagrams waits for the next one inside recvmmsg(2) before it parks
	// its goroutine in the Go netpoller. Zero parks at once; negative is
	// an error.
	//
	// A wake-up through the netpoller costs three system calls (the
	// scheduler's non-blocking epoll_wait, the blocking one, recvmmsg)
	// where a wait in recvmmsg costs one, and skips the scheduler; for a
	// proxy forwarding a steady stream that is about a sixth of its CPU
	// per message when the process has its cores to itself (see the
	// package documentation; on cores shared with other busy processes it
	// measured dearer). The price: while it waits
	// the loop holds its thread and its P (its share of GOMAXPROCS), so
	// other goroutines run on the remaining Ps, when the loop yields
	// (every 32 waits, and when the runtime asks it to by a signal), when
	// it passes through the netpoller (every 5 ms, so that goroutines
	// waiting for the network are found), or once the socket has been
	// quiet for ParkAfter. An idle loop is
	// parked in the netpoller like any other. Use it for loops that each
	// have a P of their own: at most GOMAXPROCS of them in the process.
	//
	// The socket is then put in blocking mode with SO_RCVTIMEO set to
	// ParkAfter, which the kernel rounds up to its clock tick (1 to 10
	// ms); every other read and write passes MSG_DONTWAIT and stays
	// non-blocking, except WriteTo, whose sendto(2) may then block its
	// thread while the send buffer is full.
	ParkAfter time.Duration
}

// Conn is a UDP socket bound to one local address, read and written in
// batches with recvmmsg(2) and sendmmsg(2).
//
// A Conn is safe for concurrent use by multiple goroutines, but a Batch is
// not: each goroutine uses its own Batch. Concurrent ReadBatch calls on one
// Conn are serialized by the runtime, as are concurrent WriteBatch calls.
//
// An idle ReadBatch parks its goroutine in the Go netpoller: no thread is
// blocked in a system call and no CPU is spent spinning. Close, or an
// expired read deadline, wakes it.
type Conn struct {
	uc        *net.UDPConn
	rc        syscall.RawConn
	local     netip.AddrPort
	family    int // unix.AF_INET or unix.AF_INET6
	batchSize int
	rcvbuf    int
	sndbuf    int
	rxqOvfl   bool
	reusePort bool

	// drops is the socket's kernel drop counter (sk_drops, a wrapping
	// uint32 in the kernel) extended to 64 bits: the low 32 bits are the
	// last raw value seen, the high bits count wraps.
	drops atomic.Uint64
	// sendFailed counts datagrams WriteBatch skipped after a per-message
	// error.
	sendFailed atomic.Uint64
	// truncated counts datagrams ReadBatch received truncated.
	truncated atomic.Uint64
	// closing is set by Close before it closes the socket, so that a
	// ReadLoop that is busy (not waiting) stops between batches.
	closing atomic.Bool
	// parkAfter is Config.ParkAfter.
	parkAfter time.Duration
}

// Listen opens a UDP socket bound to address, an IP literal with a port:
// "127.0.0.1:5060", "[::1]:5060", "0.0.0.0:5060" or "[::]:5060". Port 0
// picks an ephemeral port; Conn.LocalAddr reports it, and further sockets
// with ReusePort may join the group by listening on that address.
//
// An IPv4 address (or an IPv4-mapped IPv6 one) opens an AF_INET ("udp4")
// socket, any other IPv6 address an AF_INET6 ("udp6") socket with
// IPV6_V6ONLY set, so the IPv6 wildcard "[::]" does not take IPv4 traffic:
// a server that wants both families listens on both addresses.
//
// Listen enables SO_RXQ_OVFL when the kernel supports it, so that
// ReadBatch learns the socket's drop counter from every datagram; see
// Conn.Drops. ctx bounds the socket setup only, not the socket's life.
func Listen(ctx context.Context, address string, cfg Config) (*Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("udp: listen %q: %w", address, err)
	}
	return ListenAddrPort(ctx, ap, cfg)
}

// ListenAddrPort is like Listen but takes the address already parsed.
func ListenAddrPort(ctx context.Context, addr netip.AddrPort, cfg Config) (*Conn, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("udp: listen %v: invalid address", addr)
	}
	if cfg.RecvBuffer < 0 || cfg.SendBuffer < 0 {
		return nil, fmt.Errorf("udp: listen %v: negative socket buffer size (recv %d, send %d)", addr, cfg.RecvBuffer, cfg.SendBuffer)
	}
	batchSize := cfg.BatchSize
	if batchSize == 0 {
		batchSize = DefaultBatchSize
	}
	if cfg.ParkAfter < 0 {
		return nil, fmt.Errorf("udp: listen %v: negative ParkAfter %v", addr, cfg.ParkAfter)
	}
	if batchSize < 0 || batchSize > MaxBatchSize {
		return nil, fmt.Errorf("udp: listen %v: batch size %d out of range 1..%d", addr, cfg.BatchSize, MaxBatchSize)
	}

	network, family := "udp6", unix.AF_INET6
	if addr.Addr().Unmap().Is4() {
		network, family = "udp4", unix.AF_INET
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
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
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if family == unix.AF_INET {
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	return &Conn{
		uc:        uc,
		rc:        rc,
		local:     local,
		family:    family,
		batchSize: batchSize,
		rcvbuf:    st.rcvbuf,
		sndbuf:    st.sndbuf,
		rxqOvfl:   st.rxqOvfl,
		reusePort: cfg.ReusePort,
		parkAfter: cfg.ParkAfter,
	}, nil
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

// LocalAddr returns the address the socket is bound to, with the port the
// kernel chose when Listen was given port 0. IPv4 addresses are returned
// in their 4-byte form.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// RecvBufferSize returns the socket receive buffer size (SO_RCVBUF) as the
// kernel reported it after Listen: about twice the requested size, since
// the kernel counts its bookkeeping overhead in the buffer.
func (c *Conn) RecvBufferSize() int { return c.rcvbuf }

// SendBufferSize returns the socket send buffer size (SO_SNDBUF) as the
// kernel reported it after Listen; see RecvBufferSize.
func (c *Conn) SendBufferSize() int { return c.sndbuf }

// ReusePort reports whether the socket was opened with SO_REUSEPORT.
func (c *Conn) ReusePort() bool { return c.reusePort }

// ParkAfter returns Config.ParkAfter: how long a ReadLoop waits in the
// kernel before it parks in the netpoller (0: it parks at once).
func (c *Conn) ParkAfter() time.Duration { return c.parkAfter }

// BatchSize returns the batch size Conn.NewBatch uses (Config.BatchSize
// or DefaultBatchSize).
func (c *Conn) BatchSize() int { return c.batchSize }

// NewBatch returns a Batch of c.BatchSize() messages with slotSize-byte
// receive slots; see the package-level NewBatch.
func (c *Conn) NewBatch(slotSize int) *Batch { return NewBatch(c.batchSize, slotSize) }

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

// SetReadDeadline sets the deadline for future and pending ReadBatch
// calls; see net.Conn.SetReadDeadline. A zero t means no deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for future and pending WriteBatch
// and WriteTo calls; see net.Conn.SetWriteDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// SyscallConn returns the raw socket, for options this package does not
// set (for example a SO_ATTACH_REUSEPORT_CBPF program). The descriptor
// must not be closed or made blocking.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// WriteTo sends one datagram b to addr with a plain sendto(2). It is meant
// for rare traffic outside the batch loop (local replies, probes); it
// allocates nothing for IPv4 and IPv6 destinations without a zone.
func (c *Conn) WriteTo(b []byte, addr netip.AddrPort) error {
	if c.family == unix.AF_INET {
		addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	} else if addr.Addr().Is4() {
		addr = netip.AddrPortFrom(netip.AddrFrom16(addr.Addr().As16()), addr.Port())
	}
	if _, err := c.uc.WriteToUDPAddrPort(b, addr); err != nil {
		return fmt.Errorf("udp: write to %v: %w", addr, err)
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

// SendFailed returns the number of datagrams WriteBatch skipped because
// sendmmsg reported an error for that datagram alone (see WriteBatch).
func (c *Conn) SendFailed() uint64 { return c.sendFailed.Load() }

// Truncated returns the number of datagrams ReadBatch received longer than
// their slot; their tail was discarded (see ReadBatch).
func (c *Conn) Truncated() uint64 { return c.truncated.Load() }

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

// ErrTruncated is set as Message.Err by ReadBatch for a datagram that was
// longer than its slot: Buf holds the first cap(Buf) bytes, the rest was
// discarded by the kernel.
var ErrTruncated = errors.New("udp: datagram truncated to slot size")
