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
)

// DefaultBatchSize is the number of messages in a Batch made by
// Conn.NewBatch when Config.BatchSize is zero.
const DefaultBatchSize = 64

// MaxBatchSize is the largest batch NewBatch accepts. It is the kernel's
// UIO_MAXIOV: recvmmsg and sendmmsg silently cap a longer vector to it.
const MaxBatchSize = 1024

// MaxGroupSize is the largest number of sockets ListenGroup opens on one
// address.
const MaxGroupSize = 1024

// Config holds the socket options applied by Listen. The zero value is
// valid: an exclusive socket with the kernel's default buffer sizes.
type Config struct {
	// ReusePort sets SO_REUSEPORT before bind, so several sockets (one per
	// worker, all opened by the same user) can listen on one address. The
	// kernel then spreads incoming datagrams over the group by a hash of
	// the 4-tuple (source address and port, destination address and
	// port): all datagrams of one source land on the same socket. See the
	// README's Design section for what that means for a single heavy peer.
	//
	// SO_REUSEADDR is deliberately not set: a UDP reuse-port group does
	// not need it, and it would let a process of any user that also sets
	// it bind the same address and steal traffic.
	//
	// Linux only: elsewhere Listen refuses it with an error wrapping
	// errors.ErrUnsupported (other systems' SO_REUSEPORT does not spread
	// datagrams over the sockets).
	ReusePort bool

	// ShareAddress lets ListenGroup share the address with sockets that
	// other processes of the same user opened on it with SO_REUSEPORT
	// (the kernel then spreads the traffic over all of them). Without it
	// ListenGroup refuses an address that another socket holds. Listen and
	// ListenAddrPort ignore it. Linux only: elsewhere ListenGroup refuses
	// it with an error wrapping errors.ErrUnsupported.
	ShareAddress bool

	// RecvBuffer and SendBuffer, when positive, are the requested socket
	// buffer sizes in bytes (SO_RCVBUF and SO_SNDBUF). Listen first tries
	// SO_RCVBUFFORCE / SO_SNDBUFFORCE, which exceed net.core.rmem_max and
	// net.core.wmem_max but need CAP_NET_ADMIN, and falls back to the
	// plain options, which the kernel silently caps at those sysctls. The
	// kernel doubles the value to account for its bookkeeping overhead;
	// Conn.RecvBufferSize and Conn.SendBufferSize report what it really
	// uses. Zero keeps the kernel default; a negative value is an error.
	// Off Linux the sizes are set with net.UDPConn.SetReadBuffer and
	// SetWriteBuffer, and the Conn reports the size requested.
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
	// where a wait in recvmmsg costs one, and skips the scheduler (the
	// README's Performance section has the figures: cheaper on cores of
	// its own, dearer on cores shared with other busy processes). The
	// price: while it waits the loop holds its thread and its P (its
	// share of GOMAXPROCS), so other goroutines run on the remaining Ps,
	// when the loop yields (every 32 waits, and when the runtime asks it
	// to by a signal), when it passes through the netpoller (every 5 ms,
	// so that goroutines waiting for the network are found), or once the
	// socket has been quiet for ParkAfter. An idle loop is parked in the
	// netpoller like any other. Use it for loops that each have a P of
	// their own: at most GOMAXPROCS of them in the process.
	//
	// The socket is then put in blocking mode with SO_RCVTIMEO set to
	// ParkAfter, which the kernel rounds up to its clock tick (1 to 10
	// ms); every other read and write passes MSG_DONTWAIT and stays
	// non-blocking.
	//
	// Linux only: elsewhere it is checked and then ignored (a ReadLoop
	// always parks in the netpoller, and Conn.ParkAfter reports 0).
	ParkAfter time.Duration

	// Yield, when set with ParkAfter, counts goroutines elsewhere in the
	// process that wait in the Go netpoller for traffic (transport.Layout's
	// Conns): while it is above zero a ReadLoop does not wait in the
	// kernel but parks at once, as with ParkAfter zero. A loop waiting in
	// recvmmsg keeps its P, and the goroutines of a TCP connection that
	// has a message would wait for it until the loop next passes through
	// the netpoller: up to 5 ms per message.
	Yield *atomic.Int64
}

// check validates cfg for a socket on addr and returns the batch size it
// means.
func (cfg Config) check(addr netip.AddrPort) (batchSize int, err error) {
	if !addr.IsValid() {
		return 0, fmt.Errorf("udp: listen %v: invalid address", addr)
	}
	if cfg.RecvBuffer < 0 || cfg.SendBuffer < 0 {
		return 0, fmt.Errorf("udp: listen %v: negative socket buffer size (recv %d, send %d)", addr, cfg.RecvBuffer, cfg.SendBuffer)
	}
	if cfg.ParkAfter < 0 {
		return 0, fmt.Errorf("udp: listen %v: negative ParkAfter %v", addr, cfg.ParkAfter)
	}
	batchSize = cfg.BatchSize
	if batchSize == 0 {
		batchSize = DefaultBatchSize
	}
	if batchSize < 0 || batchSize > MaxBatchSize {
		return 0, fmt.Errorf("udp: listen %v: batch size %d out of range 1..%d", addr, cfg.BatchSize, MaxBatchSize)
	}
	return batchSize, nil
}

// checkGroup validates the arguments of ListenGroup.
func checkGroup(addr netip.AddrPort, n int) error {
	if n < 1 || n > MaxGroupSize {
		return fmt.Errorf("udp: listen %v: group of %d sockets: want 1..%d", addr, n, MaxGroupSize)
	}
	if !addr.IsValid() {
		return fmt.Errorf("udp: listen %v: invalid address", addr)
	}
	return nil
}

// Conn is a UDP socket bound to one local address, read and written in
// batches: with recvmmsg(2) and sendmmsg(2) on Linux, one datagram per
// system call elsewhere.
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
	local     netip.AddrPort
	batchSize int
	rcvbuf    int
	sndbuf    int
	reusePort bool
	parkAfter time.Duration // Config.ParkAfter where it is in effect (Linux)
	yield     *atomic.Int64 // Config.Yield

	// sendFailed counts datagrams WriteBatch skipped after a per-message
	// error.
	sendFailed atomic.Uint64
	// truncated counts datagrams ReadBatch received truncated.
	truncated atomic.Uint64

	sysConn // what the platform's implementation keeps besides
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
// On Linux, Listen enables SO_RXQ_OVFL when the kernel supports it, so
// that ReadBatch learns the socket's drop counter from every datagram; see
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
	batchSize, err := cfg.check(addr)
	if err != nil {
		return nil, err
	}
	return listenSocket(ctx, addr, cfg, batchSize)
}

// socketNetwork returns the network of the socket ListenAddrPort opens
// for addr, "udp4" for an IPv4 (or IPv4-mapped) address and "udp6" for any
// other, and addr in the form that socket binds.
func socketNetwork(addr netip.AddrPort) (network string, bind netip.AddrPort) {
	if a := addr.Addr().Unmap(); a.Is4() {
		return "udp4", netip.AddrPortFrom(a, addr.Port())
	}
	return "udp6", addr
}

// newConn returns the Conn of the bound socket uc, with its local address
// in the form LocalAddr reports: 4-byte IPv4 on an IPv4 socket. The
// platform's listenSocket fills in the rest.
func newConn(uc *net.UDPConn, v4 bool, batchSize int) *Conn {
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	if v4 {
		local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	}
	return &Conn{uc: uc, local: local, batchSize: batchSize}
}

// LocalAddr returns the address the socket is bound to, with the port the
// kernel chose when Listen was given port 0. IPv4 addresses are returned
// in their 4-byte form.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// RecvBufferSize returns the socket receive buffer size (SO_RCVBUF) as the
// kernel reported it after Listen: about twice the requested size, since
// the kernel counts its bookkeeping overhead in the buffer. Off Linux it
// is Config.RecvBuffer (0: the system's default, size unknown).
func (c *Conn) RecvBufferSize() int { return c.rcvbuf }

// SendBufferSize returns the socket send buffer size (SO_SNDBUF) as the
// kernel reported it after Listen; see RecvBufferSize.
func (c *Conn) SendBufferSize() int { return c.sndbuf }

// ReusePort reports whether the socket was opened with SO_REUSEPORT.
func (c *Conn) ReusePort() bool { return c.reusePort }

// ParkAfter returns how long a ReadLoop waits in the kernel before it
// parks in the netpoller: Config.ParkAfter on Linux, 0 (it parks at once)
// without it and elsewhere.
func (c *Conn) ParkAfter() time.Duration { return c.parkAfter }

// BatchSize returns the batch size Conn.NewBatch uses (Config.BatchSize
// or DefaultBatchSize).
func (c *Conn) BatchSize() int { return c.batchSize }

// NewBatch returns a Batch of c.BatchSize() messages with slotSize-byte
// receive slots; see the package-level NewBatch.
func (c *Conn) NewBatch(slotSize int) *Batch { return NewBatch(c.batchSize, slotSize) }

// SetReadDeadline sets the deadline for future and pending ReadBatch
// calls; see net.Conn.SetReadDeadline. A zero t means no deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline for future and pending WriteBatch
// and WriteTo calls; see net.Conn.SetWriteDeadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// SyscallConn returns the raw socket, for options this package does not
// set (for example a SO_ATTACH_REUSEPORT_CBPF program). The descriptor
// must not be closed or made blocking.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.uc.SyscallConn() }

// SendFailed returns the number of datagrams WriteBatch skipped because
// the kernel refused that datagram alone (see WriteBatch).
func (c *Conn) SendFailed() uint64 { return c.sendFailed.Load() }

// Truncated returns the number of datagrams ReadBatch received longer than
// their slot; their tail was discarded (see ReadBatch).
func (c *Conn) Truncated() uint64 { return c.truncated.Load() }

// destination returns addr in the form a socket of the given family takes:
// 4-byte IPv4 on an IPv4 socket, IPv4-mapped on an IPv6 one.
func destination(addr netip.AddrPort, v4Socket bool) netip.AddrPort {
	if v4Socket {
		return netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	}
	if addr.Addr().Is4() {
		return netip.AddrPortFrom(netip.AddrFrom16(addr.Addr().As16()), addr.Port())
	}
	return addr
}

// ErrTruncated is set as Message.Err by ReadBatch for a datagram that was
// longer than its slot: Buf holds the first cap(Buf) bytes, the rest was
// discarded by the kernel.
var ErrTruncated = errors.New("udp: datagram truncated to slot size")
