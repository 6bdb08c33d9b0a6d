package capture

import (
	"encoding/binary"
	"sync/atomic"
)

// ring is a bounded single-producer, single-consumer queue of records in
// one byte buffer: a transport worker's tap writes captured frames into
// it, the sender reads them out, and neither ever waits for the other.
// When a record does not fit, the producer drops it (the caller counts).
//
// A record is an 8-byte header (the body length, little-endian uint32, and
// a flags byte) and the body, padded to 8 bytes; a record never wraps:
// when it does not fit before the end of the buffer, a padding record
// fills the rest and the record starts at offset 0.
type ring struct {
	buf  []byte
	mask uint64

	// head is the consumer's position (everything before it is free),
	// tail the producer's (everything before it is published); both only
	// grow. Each side caches the other's position and its own
	// unpublished one in a cache line of its own.
	_    [64]byte
	head atomic.Uint64
	_    [56]byte
	tail atomic.Uint64
	_    [56]byte

	// Producer-only state.
	wpos      uint64 // position of the record being written
	headCache uint64
	_         [48]byte

	// Consumer-only state.
	rpos uint64 // position of the next record to read
}

const (
	recordHeader = 8
	flagPad      = 1 << 7 // a padding record: skip to the buffer's start
)

// newRing returns a ring of size bytes, a power of two and a multiple of 8.
func newRing(size int) *ring {
	return &ring{buf: make([]byte, size), mask: uint64(size - 1)}
}

// align8 rounds n up to a multiple of 8.
func align8(n int) uint64 { return (uint64(n) + 7) &^ 7 }

// reserve returns a slice of n bytes for the body of the next record, or
// nil when the ring lacks the room; commit publishes it. Producer only.
func (r *ring) reserve(n int) []byte {
	need := recordHeader + align8(n)
	size := uint64(len(r.buf))
	if need > size {
		return nil
	}
	tail := r.tail.Load()
	off := tail & r.mask
	pad := uint64(0)
	if size-off < need {
		pad = size - off // the record starts at offset 0
	}
	if tail+pad+need-r.headCache > size {
		r.headCache = r.head.Load()
		if tail+pad+need-r.headCache > size {
			return nil
		}
	}
	if pad > 0 {
		r.putHeader(off, uint32(pad-recordHeader), flagPad)
		off = 0
	}
	r.wpos = tail + pad
	return r.buf[off+recordHeader : off+recordHeader+uint64(n)]
}

// commit publishes the record reserve returned, with its body length n
// (at most what was reserved) and flags.
func (r *ring) commit(n int, flags uint8) {
	r.putHeader(r.wpos&r.mask, uint32(n), flags)
	r.tail.Store(r.wpos + recordHeader + align8(n))
}

func (r *ring) putHeader(off uint64, n uint32, flags uint8) {
	h := r.buf[off : off+recordHeader]
	binary.LittleEndian.PutUint32(h, n)
	h[4] = flags
}

// used returns the bytes the ring holds, as the producer sees them.
func (r *ring) used() uint64 { return r.tail.Load() - r.headCache }

// peek returns the body and flags of the next record the consumer has
// not read, and false when there is none; it stays the next record until
// skip. The body stays valid until release. Consumer only.
func (r *ring) peek() (body []byte, flags uint8, ok bool) {
	for {
		if r.rpos == r.tail.Load() {
			return nil, 0, false
		}
		off := r.rpos & r.mask
		h := r.buf[off : off+recordHeader]
		n, flags := binary.LittleEndian.Uint32(h), h[4]
		if flags&flagPad == 0 {
			return r.buf[off+recordHeader : off+recordHeader+uint64(n)], flags, true
		}
		r.rpos += recordHeader + align8(int(n))
	}
}

// skip moves past the record peek returned. Consumer only.
func (r *ring) skip() {
	n := binary.LittleEndian.Uint32(r.buf[r.rpos&r.mask:])
	r.rpos += recordHeader + align8(int(n))
}

// next is peek and skip.
func (r *ring) next() (body []byte, flags uint8, ok bool) {
	body, flags, ok = r.peek()
	if ok {
		r.skip()
	}
	return body, flags, ok
}

// release frees every record next returned. Consumer only.
func (r *ring) release() { r.head.Store(r.rpos) }
