//go:build !linux || portableudp

package udp

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// Batch is a reusable vector of messages. Off Linux a read fills one
// message per call (there is no recvmmsg) and a write sends its messages
// one system call each.
//
// A Batch belongs to one goroutine at a time; it may be used with any
// Conn, for reading and for writing.
type Batch struct {
	// Msgs are the messages. ReadBatch fills Msgs[0]; WriteBatch sends
	// the first n. The caller may change any field of any message between
	// calls.
	Msgs []Message

	size int // n given to NewBatch
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
	return &Batch{Msgs: newMessages(n, slotSize), size: n}
}

// Len returns the capacity of the batch in messages (n given to NewBatch).
func (b *Batch) Len() int { return b.size }

// ReadBatch receives one datagram into b.Msgs[0] and returns 1 (0 for a
// batch without messages): Buf resliced to the datagram, N, Addr and Err.
// When the socket has nothing to read, the goroutine parks in the
// netpoller until a datagram arrives, the read deadline passes or the
// Conn is closed.
//
// After Close the error wraps net.ErrClosed; after a read deadline it
// wraps os.ErrDeadlineExceeded. Any other error is transient and the
// caller may read again.
//
// A datagram longer than its slot is truncated to cap(Buf) bytes and
// marked with Err = ErrTruncated where the system reports it (MSG_TRUNC
// on Unix systems, WSAEMSGSIZE on Windows); Conn.Truncated counts them.
func (c *Conn) ReadBatch(b *Batch) (int, error) {
	n, err := c.readOne(b)
	if err != nil {
		return 0, fmt.Errorf("udp: read batch on %v: %w", c.local, err)
	}
	return n, nil
}

// ReadLoop receives datagrams into b and calls handle(n) after each, with
// b.Msgs[:n] holding them as ReadBatch leaves them, until handle returns
// false (ReadLoop then returns nil) or the socket fails: it returns an
// error wrapping net.ErrClosed after Close, os.ErrDeadlineExceeded after a
// read deadline, or a transient socket error after which the caller may
// call it again. handle may write to any Conn, this one included.
func (c *Conn) ReadLoop(b *Batch, handle func(n int) bool) error {
	for {
		n, err := c.readOne(b)
		if err != nil {
			return fmt.Errorf("udp: read loop on %v: %w", c.local, err)
		}
		if n == 0 || !handle(n) {
			return nil
		}
	}
}

// readOne reads one datagram into b.Msgs[0].
func (c *Conn) readOne(b *Batch) (int, error) {
	if min(len(b.Msgs), b.size) == 0 {
		return 0, nil
	}
	m := &b.Msgs[0]
	buf := m.Buf[:cap(m.Buf)]
	n, _, flags, from, err := c.uc.ReadMsgUDPAddrPort(buf, nil)
	truncated := readTruncated(flags, err)
	if err != nil && !truncated {
		return 0, err
	}
	n = min(n, len(buf))
	m.Buf, m.N, m.Err = buf[:n], n, nil
	m.Addr = from
	if from.Addr().Is4In6() {
		m.Addr = destination(from, true)
	}
	if truncated {
		m.Err = ErrTruncated
		c.truncated.Add(1)
	}
	return 1, nil
}

// WriteBatch sends b.Msgs[:n], each Buf[:N] to its Addr, in order, one
// system call each, and returns how many datagrams the kernel accepted.
// The buffers may be reused as soon as it returns.
//
// If the kernel refuses one datagram (too large, an invalid or
// unreachable destination, an IPv6 destination on an IPv4 socket...),
// WriteBatch records the error in that message's Err, counts it in
// Conn.SendFailed and goes on with the rest; sent < n with a nil error
// means some messages carry an Err. It returns an error only if the socket
// itself fails (it was closed or the write deadline passed); messages not
// yet attempted then carry that error in Err.
//
// WriteBatch panics if n is out of range or N exceeds cap(Buf), like an
// out-of-range slice expression.
func (c *Conn) WriteBatch(b *Batch, n int) (int, error) {
	if n < 0 || n > len(b.Msgs) || n > b.size {
		panic(fmt.Sprintf("udp: WriteBatch: %d messages, batch holds %d", n, min(len(b.Msgs), b.size)))
	}
	sent, failed := 0, 0
	defer func() { c.sendFailed.Add(uint64(failed)) }()
	for i := 0; i < n; i++ {
		m := &b.Msgs[i]
		_, err := c.uc.WriteToUDPAddrPort(m.Buf[:m.N], destination(m.Addr, c.v4))
		m.Err = err
		switch {
		case err == nil:
			sent++
		case errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("udp: write batch on %v: %w", c.local, err)
			for j := i; j < n; j++ {
				b.Msgs[j].Err = err
			}
			return sent, err
		default:
			failed++
		}
	}
	return sent, nil
}
