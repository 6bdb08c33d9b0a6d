package fastpath

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
)

// Viaduct's branch parameter (RFC 3261 16.6 item 8, 16.11), fixed length:
//
//	z9hG4bK vd1 L KKKKKKKKKKKKK HHHHHHHH MMMMMMMMMMMMM
//	cookie  mark|  key (64 bit) loop(40) MAC (64 bit)
//	           listen index (0-31)
//
// All parts after the cookie are lower-case base32 digits (0-9a-v), so the
// branch is a token. The parts are:
//
//   - key: the transaction key, a 64-bit hash of what identifies the
//     client transaction (see txKey3261 / txKey2543). Derived only from the
//     request and never from the method, so a retransmission, a CANCEL and
//     the ACK of a non-2xx response get the INVITE's branch.
//   - loop: a 40-bit hash of the fields that change when a request spirals
//     (Request-URI, Route, Proxy-Require, Proxy-Authorization). A request
//     that carries a Via of ours with the same loop hash has looped (482);
//     one with a different loop hash is a spiral and is forwarded (16.3
//     item 4).
//   - listen: the index of the listen address the request came in on, so the
//     response leaves from the same socket (RFC 3581 section 4).
//   - MAC: SipHash-2-4 (see siphash.go) keyed with 128 bits derived from
//     the secret, over branch[:32] || next, where next is the previous hop's
//     via-parm exactly as Viaduct forwarded it (with received and rport
//     added). A response is forwarded only when its top Via carries
//     Viaduct's sent-by and a branch whose MAC matches the via-parm below
//     it, so a response cannot be made to go anywhere except to a Via that
//     Viaduct itself forwarded: Viaduct is not a reflector for forged
//     responses. Responses to requests Viaduct originated itself have no
//     via-parm below and are MACed over an empty next.
//
// A request that came over a connection (a TCP or TLS flow) gets a longer
// branch, marked vd2, that also names the connection, so that its responses
// find it without any per-transaction state:
//
//	z9hG4bK vd2 L KKKKKKKKKKKKK HHHHHHHH BBBBBBB FFFFFFFFFFFFF MMMMMMMMMMMMM
//	                                     boot(35) flow (64 bit) MAC (64 bit)
//
// flow is the connection's transport.Peer.Flow, which its transport never
// reuses, and boot 35 random bits drawn when the engine was made: the MAC
// covers both, so a response cannot be steered onto another connection,
// and one that reaches another instance (same secret) or this one after a
// restart is recognised as not naming a connection of this process.
//
// SipHash over a typical 120-byte input costs about 70 ns here
// (BenchmarkMAC), HMAC-SHA256 (the first choice, with a reused hash.Hash)
// about 225 ns.
const (
	branchCookie  = "z9hG4bK"
	branchMark    = "vd1"
	branchPrefix  = branchCookie + branchMark
	flowMark      = "vd2"
	flowPrefix    = branchCookie + flowMark
	offListen     = len(branchPrefix)      // 10
	offKey        = offListen + 1          // 11
	offLoop       = offKey + 13            // 24
	offMAC        = offLoop + 8            // 32
	macDigits     = 13                     // 64 bits
	branchLen     = offMAC + macDigits     // 45
	offBoot       = offMAC                 // 32, in a vd2 branch
	bootDigits    = 7                      // 35 bits
	offFlow       = offBoot + bootDigits   // 39
	offFlowMAC    = offFlow + 13           // 52
	flowBranchLen = offFlowMAC + macDigits // 65
	bootMask      = 1<<35 - 1
	b32           = "0123456789abcdefghijklmnopqrstuv"
	loopMask      = 1<<40 - 1
)

// flowRef names a connection in a branch or a flow token: the boot ID of
// the engine whose transport holds it, and its transport.Peer.Flow.
type flowRef struct {
	boot, flow uint64
}

// b32val maps a base32 digit to its value, or 0xff.
var b32val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(b32); i++ {
		t[b32[i]] = byte(i)
	}
	return
}()

// macer computes branch MACs. It holds only the key; it is safe to copy and
// each worker has its own.
type macer struct {
	k0, k1 uint64
}

// macKeyLabel separates the MAC key derivation from any other use of the
// secret.
const macKeyLabel = "viaduct branch MAC v1\x00"

func newMacer(secret []byte) *macer {
	h := sha256.New()
	h.Write([]byte(macKeyLabel))
	h.Write(secret)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return &macer{k0: binary.LittleEndian.Uint64(sum[:8]), k1: binary.LittleEndian.Uint64(sum[8:16])}
}

// mac returns SipHash-2-4(key, prefix || next).
func (m *macer) mac(prefix, next []byte) uint64 {
	var s sipState
	s.init(m.k0, m.k1)
	s.write(prefix)
	s.write(next)
	return s.sum64()
}

// appendB32 appends the low n*5 bits of v as n base32 digits (n <= 13, the
// digits of 64 bits), most significant first. The digits are written into
// an array and appended at once: one capacity check instead of n.
func appendB32(dst []byte, v uint64, n int) []byte {
	var digits [13]byte
	n = min(n, len(digits))
	for i := n - 1; i >= 0; i-- {
		digits[i] = b32[v&31]
		v >>= 5
	}
	return append(dst, digits[:n]...)
}

// parseB32 decodes n base32 digits; ok is false on a non-digit.
func parseB32(b []byte) (v uint64, ok bool) {
	for _, c := range b {
		d := b32val[c]
		if d == 0xff {
			return 0, false
		}
		v = v<<5 | uint64(d)
	}
	return v, true
}

// appendBranch appends a complete branch value for the given listen index,
// transaction key and loop hash, MACed over next (the previous hop's
// via-parm as forwarded; empty for a locally originated request).
func (m *macer) appendBranch(dst []byte, listen int, key, loop uint64, next []byte) []byte {
	start := len(dst)
	dst = append(dst, branchPrefix...)
	dst = append(dst, b32[listen&31])
	dst = appendB32(dst, key, 13)
	dst = appendB32(dst, loop&loopMask, 8)
	return appendB32(dst, m.mac(dst[start:], next), macDigits)
}

// isOurBranch reports whether b has the shape of a Viaduct branch, vd1 or
// vd2 (it does not check the MAC).
func isOurBranch(b []byte) bool {
	switch {
	case len(b) == branchLen && string(b[:offListen]) == branchPrefix:
	case len(b) == flowBranchLen && string(b[:offListen]) == flowPrefix:
	default:
		return false
	}
	for _, c := range b[offListen:] {
		if b32val[c] == 0xff {
			return false
		}
	}
	return true
}

// macAt returns where the MAC digits of a branch of our shape start.
func macAt(b []byte) int {
	if len(b) == flowBranchLen {
		return offFlowMAC
	}
	return offMAC
}

// branchLoop returns the loop hash of a Viaduct branch (shape checked by the
// caller with isOurBranch).
func branchLoop(b []byte) uint64 {
	v, _ := parseB32(b[offLoop:offMAC])
	return v
}

// verify checks a branch found in a response's top Via against the via-parm
// below it (next; empty when there is none) and returns the listen index
// and, for a vd2 branch, the connection it carries.
func (m *macer) verify(b, next []byte) (listen int, conn flowRef, ok bool) {
	if !isOurBranch(b) {
		return 0, conn, false
	}
	at := macAt(b)
	var enc [macDigits]byte
	e := appendB32(enc[:0], m.mac(b[:at], next), macDigits)
	if subtle.ConstantTimeCompare(e, b[at:]) != 1 {
		return 0, conn, false
	}
	if at == offFlowMAC {
		conn.boot, _ = parseB32(b[offBoot:offFlow])
		conn.flow, _ = parseB32(b[offFlow:offFlowMAC])
	}
	return int(b32val[b[offListen]]), conn, true
}

// appendBranchNoMAC appends a branch whose MAC digits are placeholders, for
// the request path, which computes the MAC once the forwarded via-parm
// exists (see Worker.request): a vd2 branch naming conn when conn.flow is
// set, else a vd1 branch.
func (m *macer) appendBranchNoMAC(dst []byte, listen int, key, loop uint64, conn flowRef) []byte {
	if conn.flow == 0 {
		dst = append(dst, branchPrefix...)
	} else {
		dst = append(dst, flowPrefix...)
	}
	dst = append(dst, b32[listen&31])
	dst = appendB32(dst, key, 13)
	dst = appendB32(dst, loop&loopMask, 8)
	if conn.flow != 0 {
		dst = appendB32(dst, conn.boot&bootMask, bootDigits)
		dst = appendB32(dst, conn.flow, 13)
	}
	return append(dst, "0000000000000"...)
}
