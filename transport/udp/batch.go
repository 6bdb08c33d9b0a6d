package udp

import (
	"fmt"
	"net/netip"
)

// Message is one datagram of a Batch.
type Message struct {
	// Buf holds the datagram. ReadBatch receives into Buf[:cap(Buf)] and
	// leaves Buf resliced to the datagram's length. WriteBatch sends
	// Buf[:N]. The caller may point Buf at any memory it owns (a write
	// batch usually points it into the worker's output buffers); the
	// batch keeps no copy of the slice between calls.
	Buf []byte

	// N is the datagram length in bytes: set by ReadBatch (equal to
	// len(Buf)), read by WriteBatch.
	N int

	// Addr is the peer: the source address after ReadBatch, the
	// destination for WriteBatch. IPv4 peers are always reported in their
	// 4-byte form, also on IPv6 sockets; WriteBatch accepts either form.
	// An IPv6 link-local source carries its interface index as a numeric
	// zone ("fe80::1%2").
	Addr netip.AddrPort

	// Err is the outcome of this message. After ReadBatch it is nil or
	// ErrTruncated. After WriteBatch it is nil if the datagram was handed
	// to the kernel, the syscall.Errno that made the kernel refuse this
	// datagram alone (for example EMSGSIZE), or, for messages not
	// attempted because the whole batch failed, the error WriteBatch
	// returned.
	Err error
}

// SetData points m at b for sending to addr: Buf = b, N = len(b),
// Addr = addr. Nothing is copied.
func (m *Message) SetData(b []byte, addr netip.AddrPort) {
	m.Buf, m.N, m.Addr = b, len(b), addr
}

// newMessages returns the n messages of a new Batch, each with its own
// slotSize-byte receive slot cut from one allocation (none when slotSize
// is 0). It panics on a size NewBatch does not accept.
func newMessages(n, slotSize int) []Message {
	if n < 1 || n > MaxBatchSize {
		panic(fmt.Sprintf("udp: NewBatch: size %d out of range 1..%d", n, MaxBatchSize))
	}
	if slotSize < 0 {
		panic(fmt.Sprintf("udp: NewBatch: negative slot size %d", slotSize))
	}
	msgs := make([]Message, n)
	if slotSize > 0 {
		slab := make([]byte, n*slotSize)
		for i := range msgs {
			msgs[i].Buf = slab[i*slotSize : (i+1)*slotSize : (i+1)*slotSize]
		}
	}
	return msgs
}
