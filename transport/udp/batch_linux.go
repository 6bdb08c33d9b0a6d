//go:build linux && !portableudp

package udp

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oobSize is the per-message control buffer for ReadBatch: room for the
// SO_RXQ_OVFL message (24 bytes on 64-bit) and a little more, so an
// unexpected extra control message does not truncate it.
const oobSize = 64

// Batch is a reusable vector of messages with the kernel structures
// (mmsghdr, iovec, sockaddr and control buffers) recvmmsg and sendmmsg
// need, all allocated once by NewBatch. Reading or writing a batch
// allocates nothing.
//
// A Batch belongs to one goroutine at a time; it may be used with any
// Conn, for reading and for writing.
type Batch struct {
	// Msgs are the messages. ReadBatch and WriteBatch use at most the
	// first len(Msgs) of them, up to the size given to NewBatch. The
	// caller may change any field of any message between calls.
	Msgs []Message

	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for sockaddr_in too
	oob   []byte                  // oobSize bytes per message

	// readFn, loopFn and writeFn are b.doRead, b.doLoop and b.doWrite,
	// bound once so that passing them to syscall.RawConn does not allocate
	// per call.
	readFn  func(fd uintptr) bool
	loopFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool

	// State shared with doRead, doLoop and doWrite for the call in
	// progress.
	lc       *Conn            // loop: the Conn of ReadLoop
	handle   func(n int) bool // loop: the caller's handler
	stopped  bool             // loop: handle asked to stop
	linger   bool             // loop: the next read waits in the kernel (Config.ParkAfter)
	waits    uint32           // loop: kernel waits so far, to yield the P now and then
	lastPark time.Time        // loop: when it last went through the netpoller
	vlen     int              // read: messages offered to recvmmsg
	got      int              // read: messages received
	off, end int              // write: next message to send, end of batch
	sent     int              // write: datagrams accepted by the kernel
	failed   int              // write: datagrams skipped after an error
	retried  int              // write: index retried after ECONNREFUSED, or -1
	errno    syscall.Errno    // hard error of the call

	// Zone cache for IPv6 link-local sources.
	zoneID  uint32
	zoneStr string
}

// NewBatch returns a Batch of n messages (1 <= n <= MaxBatchSize). If
// slotSize is positive, every message gets its own slotSize-byte receive
// slot (one contiguous allocation); a batch used only for writing can pass
// 0 and point each Message.Buf at the data to send.
//
// A slot should hold the largest datagram the caller accepts; a longer
// one is truncated (Message.Err = ErrTruncated). 65535 holds any UDP
// datagram over IPv4.
func NewBatch(n, slotSize int) *Batch {
	b := &Batch{
		Msgs:    newMessages(n, slotSize),
		hdrs:    make([]unix.Mmsghdr, n),
		iovs:    make([]unix.Iovec, n),
		names:   make([]unix.RawSockaddrInet6, n),
		oob:     make([]byte, n*oobSize),
		retried: -1,
	}
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	b.readFn = b.doRead
	b.loopFn = b.doLoop
	b.writeFn = b.doWrite
	return b
}

// Len returns the capacity of the batch in messages (n given to NewBatch).
func (b *Batch) Len() int { return len(b.hdrs) }

// ReadBatch receives up to len(b.Msgs) datagrams with one recvmmsg call
// and returns how many it received; b.Msgs[:n] then hold them (Buf
// resliced to the datagram, N, Addr and Err). It returns at least one
// datagram unless it returns an error: when the socket has nothing to
// read, the goroutine parks in the netpoller until a datagram arrives, the
// read deadline passes or the Conn is closed.
//
// After Close the error wraps net.ErrClosed; after a read deadline it
// wraps os.ErrDeadlineExceeded. Any other error (a pending socket error
// the kernel reports once) is transient and the caller may read again.
//
// A datagram longer than its slot is truncated to cap(Buf) bytes and
// marked with Err = ErrTruncated; Conn.Truncated counts them.
func (c *Conn) ReadBatch(b *Batch) (int, error) {
	if b.prepareRead(c) == 0 {
		return 0, nil
	}
	if err := c.rc.Read(b.readFn); err != nil {
		return 0, fmt.Errorf("udp: read batch on %v: %w", c.local, err)
	}
	if b.errno != 0 {
		return 0, fmt.Errorf("udp: read batch on %v: %w", c.local, os.NewSyscallError("recvmmsg", b.errno))
	}
	b.finishRead(c)
	return b.got, nil
}

// ReadLoop receives batches into b and calls handle(n) after each, with
// b.Msgs[:n] holding the datagrams as ReadBatch leaves them, until handle
// returns false (ReadLoop then returns nil) or the socket fails: it returns
// an error wrapping net.ErrClosed after Close, os.ErrDeadlineExceeded after
// a read deadline, or a transient socket error after which the caller may
// call it again. handle may write to any Conn, this one included.
//
// It is a loop over ReadBatch with one system call less per wake-up. A
// ReadBatch that finds the socket empty must ask the kernel once more to
// learn so before it parks. ReadLoop stays inside one netpoller read
// operation and parks right after a batch that was not full, which
// recvmmsg only returns when the queue ran empty: a datagram that arrives
// later is an edge the netpoller has recorded since, so the wait returns at
// once and nothing is delayed. At a few datagrams per wake-up (most of a
// proxy's life) that is a third of its system calls.
//
// With Config.ParkAfter set, a loop whose queue ran empty first waits for
// the next datagram inside recvmmsg, keeping its thread, and parks in the
// netpoller only after ParkAfter without one (see Config.ParkAfter).
//
// The read deadline is seen when ReadLoop waits in the netpoller; Close is
// also seen between batches and ends a wait in the kernel at once, so a
// loop that never parks still stops. ReadLoop holds the socket's read side
// for as long as it runs: a ReadBatch or ReadLoop on the same Conn from
// another goroutine waits until it returns; writes do not.
func (c *Conn) ReadLoop(b *Batch, handle func(n int) bool) error {
	b.lc, b.handle, b.stopped, b.linger = c, handle, false, false
	err := c.rc.Read(b.loopFn)
	b.lc, b.handle = nil, nil
	switch {
	case err != nil:
		return fmt.Errorf("udp: read loop on %v: %w", c.local, err)
	case b.errno != 0:
		return fmt.Errorf("udp: read loop on %v: %w", c.local, os.NewSyscallError("recvmmsg", b.errno))
	case !b.stopped:
		return fmt.Errorf("udp: read loop on %v: %w", c.local, net.ErrClosed)
	}
	return nil
}

// doLoop is the syscall.RawConn.Read callback of ReadLoop: it returns
// false to wait for the socket to be readable and true to end the loop.
func (b *Batch) doLoop(fd uintptr) bool {
	c := b.lc
	if c.parkAfter > 0 {
		b.lastPark = time.Now() // called anew after every netpoller wait
	}
	for {
		if c.closing.Load() {
			return true
		}
		if b.prepareRead(c) == 0 {
			b.stopped = true
			return true
		}
		if b.linger {
			switch b.doWait(fd) {
			case waitQuiet:
				b.linger = false
				return false // quiet for ParkAfter: park in the netpoller
			case waitInterrupted:
				runtime.Gosched() // a signal: let a preemption or GC stop happen
				continue
			}
			if c.closing.Load() {
				// Close shut the socket down to end the wait; recvmmsg
				// then reports one empty message, not a datagram.
				return true
			}
		} else if !b.doRead(fd) {
			return false // empty: park until readable
		}
		if b.errno != 0 {
			return true
		}
		if b.got == 0 {
			b.linger = false
			return false // not expected from recvmmsg; park rather than spin
		}
		b.finishRead(c)
		full := b.got == b.vlen
		if !b.handle(b.got) {
			b.stopped = true
			return true
		}
		if !full {
			if c.parkAfter <= 0 || b.netpollDue() || c.yielding() {
				b.linger = false
				return false // the queue ran empty: park without asking again
			}
			b.linger = true // wait for the next datagram in recvmmsg
		}
	}
}

// Results of recv and doWait.
const (
	waitData        = iota // datagrams received (or an error, in b.errno)
	waitQuiet              // none: EAGAIN (for doWait, none for Config.ParkAfter)
	waitInterrupted        // a signal interrupted the call (EINTR)
)

// netpollEvery is how long a ReadLoop waiting in the kernel may go without
// a pass through the netpoller. The scheduler learns that goroutines
// waiting for the network (an admin API's listener, say) can run only by
// polling; it does so when a P runs out of work, which a loop that keeps
// its P does not do, and sysmon does not poll for it either (it sleeps
// while the runtime sees no system call). So every netpollEvery the loop
// parks in the netpoller once, as a loop without ParkAfter does after every
// batch: the scheduler polls, runs what is ready, and the loop resumes at
// once if a datagram came meanwhile. (TestAdminAnswersUnderLoad in e2e
// checks the effect: without these passes the admin API of a one-P proxy
// did not answer while a SIPp stream lasted.)
const netpollEvery = 5 * time.Millisecond

// yielding reports whether goroutines of another transport may need the
// loop's P now (Config.Yield).
func (c *Conn) yielding() bool { return c.yield != nil && c.yield.Load() > 0 }

// netpollDue reports whether the loop should park in the netpoller now
// rather than wait in the kernel (see netpollEvery).
func (b *Batch) netpollDue() bool {
	return time.Since(b.lastPark) >= netpollEvery
}

// yieldEvery is how many kernel waits a ReadLoop makes between two
// runtime.Gosched calls. A waiting loop keeps its P (see doWait); yielding
// it now and then lets the goroutines queued behind it run within a
// fraction of a millisecond under load instead of waiting for the
// runtime's 10 ms preemption.
const yieldEvery = 32

// doWait is ReadLoop's wait in the kernel when Config.ParkAfter is set: a
// blocking recvmmsg(2) with MSG_WAITFORONE, which returns as soon as a
// datagram arrives, together with whatever else is queued by then, or
// fails with EAGAIN once the socket's SO_RCVTIMEO (ParkAfter) has passed
// without one.
//
// It is issued as a raw syscall, so the goroutine keeps its P while it
// waits: telling the scheduler (entersyscall) would let sysmon hand the P
// to another thread after 20 µs and wake threads back and forth on every
// datagram, which costs more than the netpoller round it replaces. The
// P is still never held for long: a signal (the runtime's preemption
// request, or a stop-the-world for GC) interrupts the wait with EINTR and
// doLoop yields, the loop yields every yieldEvery waits and parks in the
// netpoller every netpollEvery, and the wait ends after ParkAfter of
// silence.
func (b *Batch) doWait(fd uintptr) int {
	b.waits++
	if b.waits%yieldEvery == 0 {
		runtime.Gosched()
	}
	return b.recv(fd, unix.MSG_WAITFORONE)
}

// prepareRead points the kernel structures at the receive slots of the
// messages to read and returns how many that is.
func (b *Batch) prepareRead(c *Conn) int {
	n := min(len(b.Msgs), len(b.hdrs))
	var control *byte
	var controlLen int
	if c.rxqOvfl {
		controlLen = oobSize
	}
	for i := 0; i < n; i++ {
		setIovec(&b.iovs[i], b.Msgs[i].Buf[:cap(b.Msgs[i].Buf)])
		h := &b.hdrs[i]
		h.Hdr.Namelen = unix.SizeofSockaddrInet6
		if controlLen > 0 {
			control = &b.oob[i*oobSize]
		}
		h.Hdr.Control = control
		h.Hdr.SetControllen(controlLen)
		h.Hdr.Flags = 0
		h.Len = 0
	}
	b.vlen, b.got, b.errno = n, 0, 0
	return n
}

// setIovec points iov at buf (at nothing when buf is empty).
func setIovec(iov *unix.Iovec, buf []byte) {
	if len(buf) > 0 {
		iov.Base = &buf[0]
	} else {
		iov.Base = nil
	}
	iov.SetLen(len(buf))
}

// finishRead fills b.Msgs[:b.got] from what recvmmsg returned: lengths,
// source addresses, truncation, and the socket's drop counter.
func (b *Batch) finishRead(c *Conn) {
	var drops uint32
	var haveDrops bool
	for i := 0; i < b.got; i++ {
		h := &b.hdrs[i]
		m := &b.Msgs[i]
		ln := min(int(h.Len), cap(m.Buf))
		m.Buf = m.Buf[:ln]
		m.N = ln
		m.Addr = b.decodeAddr(&b.names[i], h.Hdr.Namelen)
		m.Err = nil
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			m.Err = ErrTruncated
			c.truncated.Add(1)
		}
		if c.rxqOvfl && h.Hdr.Controllen > 0 {
			oob := b.oob[i*oobSize : i*oobSize+min(int(h.Hdr.Controllen), oobSize)]
			if v, ok := rxqOvfl(oob); ok {
				drops, haveDrops = v, true
			}
		}
	}
	if haveDrops {
		c.noteDrops(drops)
	}
}

// doRead is the syscall.RawConn.Read callback of ReadBatch. Returning
// false on EAGAIN makes the runtime park the goroutine until the socket
// is readable and call it again.
//
// MSG_DONTWAIT makes recvmmsg return at once with data or EAGAIN, also
// when Config.ParkAfter made the socket blocking, so it is issued as a
// raw syscall: the scheduler need not be told about a call that cannot
// block, and telling it (entersyscall/exitsyscall) keeps the runtime's
// sysmon thread waking every 20 µs under load, which cost a quarter of the
// proxy's CPU.
func (b *Batch) doRead(fd uintptr) bool {
	for {
		switch b.recv(fd, unix.MSG_DONTWAIT) {
		case waitData:
			return true
		case waitQuiet:
			return false
		}
	}
}

// recv is one recvmmsg with flags: it records the datagrams received in
// b.got, or a failure in b.errno (both waitData), and reports EAGAIN as
// waitQuiet and EINTR as waitInterrupted.
func (b *Batch) recv(fd uintptr, flags int) int {
	r, e := b.recvmmsg(fd, flags)
	switch e {
	case 0:
		b.got = r
		return waitData
	case unix.EAGAIN:
		return waitQuiet
	case unix.EINTR:
		return waitInterrupted
	default:
		b.errno = e
		return waitData
	}
}

// recvmmsg is one raw recvmmsg(2) of up to b.vlen datagrams into the slots
// prepareRead set up, with flags; it returns the count or the errno.
func (b *Batch) recvmmsg(fd uintptr, flags int) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(b.vlen), uintptr(flags), 0, 0)
	return int(r), e
}

// WriteBatch sends b.Msgs[:n], each Buf[:N] to its Addr, with as few
// sendmmsg calls as the kernel allows (sendto for the last one left), in
// order, and returns how many datagrams the kernel accepted. The iovecs and addresses are rebuilt from
// Msgs on every call, so the caller may point each Buf anywhere. The
// kernel has copied every datagram when WriteBatch returns: the buffers
// may be reused at once (a read batch forwarded in place may be read into
// again).
//
// If the kernel refuses one datagram (EMSGSIZE for an oversized one,
// EINVAL for port 0, EAFNOSUPPORT for an IPv6 destination on an IPv4
// socket, EDESTADDRREQ for an invalid Addr, ENETUNREACH, EPERM from a
// firewall, ENOBUFS...), WriteBatch records the error in that message's
// Err, counts it in Conn.SendFailed, skips it and goes on with the rest:
// one bad datagram never holds up the others. ECONNREFUSED, which the
// kernel reports for an earlier datagram rather than the current one, gets
// the current datagram retried once. These per-message failures are not
// an error of the call: sent < n with a nil error means some messages
// carry an Err.
//
// WriteBatch returns an error only if the socket itself fails (it was
// closed, the write deadline passed, or the kernel reports EBADF,
// ENOTSOCK or EFAULT); messages not yet attempted then carry that error
// in Err. If the send buffer is full, the goroutine parks in the
// netpoller until there is room.
//
// WriteBatch panics if n is out of range or N exceeds cap(Buf), like an
// out-of-range slice expression.
func (c *Conn) WriteBatch(b *Batch, n int) (int, error) {
	if n < 0 || n > len(b.Msgs) || n > len(b.hdrs) {
		panic(fmt.Sprintf("udp: WriteBatch: %d messages, batch holds %d", n, min(len(b.Msgs), len(b.hdrs))))
	}
	if n == 0 {
		return 0, nil
	}
	for i := 0; i < n; i++ {
		m := &b.Msgs[i]
		setIovec(&b.iovs[i], m.Buf[:m.N])
		h := &b.hdrs[i]
		h.Hdr.Namelen = encodeAddr(&b.names[i], m.Addr, c.family)
		h.Hdr.Control = nil
		h.Hdr.SetControllen(0)
		h.Hdr.Flags = 0
		h.Len = 0
		m.Err = nil
	}
	b.off, b.end, b.sent, b.failed, b.retried, b.errno = 0, n, 0, 0, -1, 0
	err := c.rc.Write(b.writeFn)
	// Drop the references to the caller's buffers, so the batch does not
	// keep them alive after the call.
	for i := 0; i < n; i++ {
		b.iovs[i].Base = nil
	}
	if b.failed > 0 {
		c.sendFailed.Add(uint64(b.failed))
	}
	if err == nil && b.errno != 0 {
		err = os.NewSyscallError("sendmmsg", b.errno)
	}
	if err != nil {
		err = fmt.Errorf("udp: write batch on %v: %w", c.local, err)
		for i := b.off; i < n; i++ {
			b.Msgs[i].Err = err
		}
		return b.sent, err
	}
	return b.sent, nil
}

// doWrite is the syscall.RawConn.Write callback of WriteBatch. It loops
// over partial sendmmsg results, skips datagrams refused individually and
// returns false on EAGAIN so the runtime waits for the socket to be
// writable and calls it again; progress is kept in b.
//
// Like recvmmsg above, sendmmsg with MSG_DONTWAIT cannot block (a full
// send buffer is EAGAIN) and is issued as a raw syscall.
func (b *Batch) doWrite(fd uintptr) bool {
	for b.off < b.end {
		r, e := b.send(fd)
		switch e {
		case 0:
			if r == 0 {
				// Not expected from the kernel; skip rather than spin.
				b.Msgs[b.off].Err = io.ErrShortWrite
				b.failed++
				b.off++
				continue
			}
			b.off += int(r)
			b.sent += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EBADF, unix.ENOTSOCK, unix.EFAULT:
			b.errno = e
			return true
		case unix.ECONNREFUSED:
			// A pending error from an ICMP for an earlier datagram; the
			// kernel consumed it without sending this one.
			if b.retried != b.off {
				b.retried = b.off
				continue
			}
			fallthrough
		default:
			b.Msgs[b.off].Err = e
			b.failed++
			b.off++
		}
	}
	return true
}

// send is one raw sendmmsg(2) of the datagrams b.off to b.end, or
// sendto(2) when only one is left: the kernel then copies in no message
// header, which is cheaper, and a lightly loaded worker's batches are
// mostly of one datagram. It returns how many were sent, or the errno.
func (b *Batch) send(fd uintptr) (uintptr, syscall.Errno) {
	if b.end-b.off > 1 {
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.off])), uintptr(b.end-b.off), unix.MSG_DONTWAIT, 0, 0)
		return r, e
	}
	iov, nameLen := &b.iovs[b.off], b.hdrs[b.off].Hdr.Namelen
	var name unsafe.Pointer
	if nameLen > 0 { // no address: NULL, as sendmmsg passes it (EDESTADDRREQ)
		name = unsafe.Pointer(&b.names[b.off])
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(iov.Base)), uintptr(iov.Len), unix.MSG_DONTWAIT,
		uintptr(name), uintptr(nameLen))
	if e != 0 {
		return 0, e
	}
	return 1, 0
}

// decodeAddr converts the sockaddr recvmmsg wrote into sa (nameLen bytes)
// to a netip.AddrPort without allocating. IPv4-mapped IPv6 addresses are
// unmapped.
func (b *Batch) decodeAddr(sa *unix.RawSockaddrInet6, nameLen uint32) netip.AddrPort {
	switch {
	case sa.Family == unix.AF_INET && nameLen >= unix.SizeofSockaddrInet4:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), portOf(&sa4.Port))
	case sa.Family == unix.AF_INET6 && nameLen >= unix.SizeofSockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if sa.Scope_id != 0 {
			a = a.WithZone(b.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, portOf(&sa.Port))
	}
	return netip.AddrPort{}
}

// zone returns the numeric zone string for an interface index, cached for
// the last index seen so a steady link-local peer costs no allocation.
func (b *Batch) zone(id uint32) string {
	if id != b.zoneID || b.zoneStr == "" {
		b.zoneID, b.zoneStr = id, strconv.FormatUint(uint64(id), 10)
	}
	return b.zoneStr
}

// encodeAddr writes addr into sa as the sockaddr a socket of family takes
// and returns its length, or 0 (no address, so the kernel refuses the
// datagram with EDESTADDRREQ) if addr is invalid.
func encodeAddr(sa *unix.RawSockaddrInet6, addr netip.AddrPort, family int) uint32 {
	ip := addr.Addr()
	if !ip.IsValid() {
		return 0
	}
	if family == unix.AF_INET && (ip.Is4() || ip.Is4In6()) {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		putPort(&sa4.Port, addr.Port())
		return unix.SizeofSockaddrInet4
	}
	// An IPv6 destination, or any destination on an IPv6 socket: IPv4
	// goes out as IPv4-mapped (As16 maps it). On an IPv4 socket the
	// kernel refuses an AF_INET6 sockaddr with EAFNOSUPPORT.
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	putPort(&sa.Port, addr.Port())
	if z := ip.Zone(); z != "" {
		sa.Scope_id = zoneIndex(z)
	}
	return unix.SizeofSockaddrInet6
}

// zoneIndex returns the interface index of an IPv6 zone, numeric or an
// interface name (the latter is a rare, allocating lookup).
func zoneIndex(z string) uint32 {
	if id, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(id)
	}
	if ifi, err := net.InterfaceByName(z); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

// portOf reads a port stored in network byte order.
func portOf(p *uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(p))[:])
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(p))[:], port)
}

// rxqOvfl returns the SO_RXQ_OVFL drop counter from a control message
// buffer filled by recvmsg, if present. It walks the buffer by hand since
// unix.ParseSocketControlMessage allocates.
func rxqOvfl(oob []byte) (uint32, bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && l >= unix.CmsgLen(4) {
			d := unix.CmsgLen(0)
			return binary.NativeEndian.Uint32(oob[d : d+4]), true
		}
		next := unix.CmsgSpace(l - unix.SizeofCmsghdr)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0, false
}
