package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// HEPv3 (the format of heplify, heplify-server and Homer): "HEP3", the
// frame's total length, then chunks, each a vendor ID (0: generic), a type
// and a length counting its own 6-byte header, all big-endian.

// The generic chunk types Viaduct writes.
const (
	chunkFamily    = 1  // IP family: 2 (AF_INET) or 10 (AF_INET6), 1 byte
	chunkProto     = 2  // IP protocol: 17 (UDP) or 6 (TCP), 1 byte
	chunkSrcIPv4   = 3  // 4 bytes
	chunkDstIPv4   = 4  // 4 bytes
	chunkSrcIPv6   = 5  // 16 bytes
	chunkDstIPv6   = 6  // 16 bytes
	chunkSrcPort   = 7  // 2 bytes
	chunkDstPort   = 8  // 2 bytes
	chunkTimeSec   = 9  // 4 bytes, seconds since the Unix epoch
	chunkTimeUsec  = 10 // 4 bytes, microseconds within the second
	chunkProtoType = 11 // 1 byte: 1 is SIP
	chunkAgentID   = 12 // 4 bytes, the capture agent (node) ID
	chunkAuthKey   = 14 // the collector's password
	chunkPayload   = 15 // the captured message
	chunkCorrID    = 17 // the correlation ID: the Call-ID
)

// IP protocols and families as HEP carries them.
const (
	ProtoUDP = 17
	ProtoTCP = 6

	familyIPv4 = 2
	familyIPv6 = 10

	hepProtoSIP = 1
)

const (
	hepHeaderLen   = 6 // "HEP3" and the total length
	chunkHeaderLen = 6 // vendor, type, length
	// MaxFrame is the largest HEP frame: its length field has 16 bits.
	MaxFrame = 65535
)

// Frame is one captured message with its HEP metadata.
type Frame struct {
	// Src and Dst are the addresses on the wire. Both are written in one
	// family: IPv6 when either is IPv6 (an IPv4 address then as
	// IPv4-mapped).
	Src, Dst netip.AddrPort
	// Proto is the IP protocol: ProtoUDP or ProtoTCP.
	Proto uint8
	// Sec and Usec are the capture time (Unix seconds, microseconds).
	Sec, Usec uint32
	// AgentID is the capture agent ID (capture.hep.agent_id).
	AgentID uint32
	// AuthKey is the collector's password; empty: no chunk.
	AuthKey []byte
	// Payload is the SIP message.
	Payload []byte
	// CallID is the correlation ID; empty: no chunk.
	CallID []byte
}

// ipv6 reports whether f is written with IPv6 addresses.
func (f *Frame) ipv6() bool {
	return !f.Src.Addr().Unmap().Is4() || !f.Dst.Addr().Unmap().Is4()
}

// Size returns the length of f's HEP frame in bytes.
func (f *Frame) Size() int {
	addr := 4
	if f.ipv6() {
		addr = 16
	}
	n := hepHeaderLen +
		2*(chunkHeaderLen+1) + // family, protocol
		2*(chunkHeaderLen+addr) + // addresses
		2*(chunkHeaderLen+2) + // ports
		2*(chunkHeaderLen+4) + // time
		chunkHeaderLen + 1 + // protocol type
		chunkHeaderLen + 4 + // agent ID
		chunkHeaderLen + len(f.Payload)
	if len(f.AuthKey) > 0 {
		n += chunkHeaderLen + len(f.AuthKey)
	}
	if len(f.CallID) > 0 {
		n += chunkHeaderLen + len(f.CallID)
	}
	return n
}

// Encode writes f's HEP frame into b, which must hold f.Size() bytes, and
// returns its length. It panics if b is too short; the caller checks
// Size against MaxFrame.
func (f *Frame) Encode(b []byte) int {
	n := f.Size()
	b = b[:n]
	binary.BigEndian.PutUint32(b, 0x48455033) // "HEP3"
	binary.BigEndian.PutUint16(b[4:], uint16(n))
	w := chunkWriter{b: b, off: hepHeaderLen}
	if f.ipv6() {
		w.u8(chunkFamily, familyIPv6)
		w.u8(chunkProto, f.Proto)
		s, d := f.Src.Addr().As16(), f.Dst.Addr().As16()
		w.bytes(chunkSrcIPv6, s[:])
		w.bytes(chunkDstIPv6, d[:])
	} else {
		w.u8(chunkFamily, familyIPv4)
		w.u8(chunkProto, f.Proto)
		s, d := f.Src.Addr().Unmap().As4(), f.Dst.Addr().Unmap().As4()
		w.bytes(chunkSrcIPv4, s[:])
		w.bytes(chunkDstIPv4, d[:])
	}
	w.u16(chunkSrcPort, f.Src.Port())
	w.u16(chunkDstPort, f.Dst.Port())
	w.u32(chunkTimeSec, f.Sec)
	w.u32(chunkTimeUsec, f.Usec)
	w.u8(chunkProtoType, hepProtoSIP)
	w.u32(chunkAgentID, f.AgentID)
	if len(f.AuthKey) > 0 {
		w.bytes(chunkAuthKey, f.AuthKey)
	}
	w.bytes(chunkPayload, f.Payload)
	if len(f.CallID) > 0 {
		w.bytes(chunkCorrID, f.CallID)
	}
	return n
}

// frameTime returns the capture time of a frame Encode wrote, in
// microseconds since the epoch, read at the fixed offsets of its time
// chunks (Encode writes family, protocol, two addresses and two ports
// before them).
func frameTime(b []byte) uint64 {
	off := hepHeaderLen + 2*(chunkHeaderLen+1) + 2*(chunkHeaderLen+4) + 2*(chunkHeaderLen+2)
	if b[hepHeaderLen+chunkHeaderLen] == familyIPv6 {
		off += 2 * (16 - 4)
	}
	sec := binary.BigEndian.Uint32(b[off+chunkHeaderLen:])
	usec := binary.BigEndian.Uint32(b[off+2*chunkHeaderLen+4:])
	return uint64(sec)*1e6 + uint64(usec)
}

// chunkWriter appends generic chunks to a frame.
type chunkWriter struct {
	b   []byte
	off int
}

func (w *chunkWriter) head(typ uint16, n int) []byte {
	c := w.b[w.off : w.off+chunkHeaderLen+n]
	binary.BigEndian.PutUint16(c, 0)
	binary.BigEndian.PutUint16(c[2:], typ)
	binary.BigEndian.PutUint16(c[4:], uint16(chunkHeaderLen+n))
	w.off += chunkHeaderLen + n
	return c[chunkHeaderLen:]
}

func (w *chunkWriter) u8(typ uint16, v uint8)     { w.head(typ, 1)[0] = v }
func (w *chunkWriter) u16(typ uint16, v uint16)   { binary.BigEndian.PutUint16(w.head(typ, 2), v) }
func (w *chunkWriter) u32(typ uint16, v uint32)   { binary.BigEndian.PutUint32(w.head(typ, 4), v) }
func (w *chunkWriter) bytes(typ uint16, v []byte) { copy(w.head(typ, len(v)), v) }

// Errors of Decode.
var (
	ErrNotHEP3    = errors.New("capture: not a HEPv3 frame")
	ErrBadLength  = errors.New("capture: HEP length does not match the data")
	ErrBadChunk   = errors.New("capture: malformed HEP chunk")
	ErrMissingHEP = errors.New("capture: HEP frame lacks a required chunk")
)

// Decode reads one HEPv3 frame from b into f (whose byte slices then point
// into b) and returns its length; b may hold more frames after it (HEP
// over TCP). Chunks of other vendors and unknown types are skipped.
func Decode(b []byte, f *Frame) (int, error) {
	if len(b) < hepHeaderLen || string(b[:4]) != "HEP3" {
		return 0, ErrNotHEP3
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	if n < hepHeaderLen || n > len(b) {
		return 0, fmt.Errorf("%w: total %d, have %d", ErrBadLength, n, len(b))
	}
	*f = Frame{}
	var srcIP, dstIP netip.Addr
	var srcPort, dstPort uint16
	var seen uint32
	for off := hepHeaderLen; off < n; {
		if n-off < chunkHeaderLen {
			return 0, fmt.Errorf("%w: %d trailing bytes", ErrBadChunk, n-off)
		}
		vendor := binary.BigEndian.Uint16(b[off:])
		typ := binary.BigEndian.Uint16(b[off+2:])
		clen := int(binary.BigEndian.Uint16(b[off+4:]))
		if clen < chunkHeaderLen || off+clen > n {
			return 0, fmt.Errorf("%w: type %d length %d at %d", ErrBadChunk, typ, clen, off)
		}
		v := b[off+chunkHeaderLen : off+clen]
		off += clen
		if vendor != 0 {
			continue
		}
		if err := f.decodeChunk(typ, v, &srcIP, &dstIP, &srcPort, &dstPort); err != nil {
			return 0, err
		}
		if typ < 32 {
			seen |= 1 << typ
		}
	}
	const required = 1<<chunkFamily | 1<<chunkProto | 1<<chunkSrcPort | 1<<chunkDstPort | 1<<chunkPayload
	if seen&required != required || !srcIP.IsValid() || !dstIP.IsValid() {
		return 0, ErrMissingHEP
	}
	f.Src, f.Dst = netip.AddrPortFrom(srcIP, srcPort), netip.AddrPortFrom(dstIP, dstPort)
	return n, nil
}

// chunkSizes holds the value length of the fixed-size generic chunks.
var chunkSizes = [...]uint8{chunkFamily: 1, chunkProto: 1, chunkSrcIPv4: 4, chunkDstIPv4: 4, chunkSrcIPv6: 16, chunkDstIPv6: 16,
	chunkSrcPort: 2, chunkDstPort: 2, chunkTimeSec: 4, chunkTimeUsec: 4, chunkProtoType: 1, chunkAgentID: 4}

// decodeChunk stores the value v of a generic chunk of type typ.
func (f *Frame) decodeChunk(typ uint16, v []byte, srcIP, dstIP *netip.Addr, srcPort, dstPort *uint16) error {
	if w := int(chunkSizes[typ%uint16(len(chunkSizes))]); typ < uint16(len(chunkSizes)) && w > 0 && len(v) != w {
		return fmt.Errorf("%w: type %d has %d bytes, want %d", ErrBadChunk, typ, len(v), w)
	}
	switch typ {
	case chunkProto:
		f.Proto = v[0]
	case chunkSrcIPv4, chunkSrcIPv6:
		*srcIP, _ = netip.AddrFromSlice(v)
	case chunkDstIPv4, chunkDstIPv6:
		*dstIP, _ = netip.AddrFromSlice(v)
	case chunkSrcPort:
		*srcPort = binary.BigEndian.Uint16(v)
	case chunkDstPort:
		*dstPort = binary.BigEndian.Uint16(v)
	case chunkTimeSec:
		f.Sec = binary.BigEndian.Uint32(v)
	case chunkTimeUsec:
		f.Usec = binary.BigEndian.Uint32(v)
	case chunkAgentID:
		f.AgentID = binary.BigEndian.Uint32(v)
	case chunkAuthKey:
		f.AuthKey = v
	case chunkPayload:
		f.Payload = v
	case chunkCorrID:
		f.CallID = v
	}
	return nil
}
