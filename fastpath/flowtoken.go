package fastpath

import "crypto/subtle"

// Flow tokens (RFC 5626 section 5.2 in spirit): the Path entry Viaduct adds
// to a REGISTER, and the Record-Route entry facing the client of a dialog,
// carry a "vf" URI parameter naming the client's connection when it came
// over a stream, so that requests towards the client (the registrar's
// INVITE, the callee's BYE) go back over that connection:
//
//	L BBBBBBB FFFFFFFFFFFFF MMMMMMMMMMMMM
//	listener, boot (35 bits), flow (64 bits), MAC (64 bits)
//
// all base32 digits as in a branch (branch.go). The MAC, keyed with the
// secret, covers the first 21 digits: a token cannot be made up or moved
// onto another connection, and instances sharing the secret can check each
// other's. The boot ID says which process holds the connection; a request
// for a flow of another process, or for one that is closed, gets 430 Flow
// Failed (RFC 5626 section 5.3).
const (
	flowTokenParam  = ";vf="
	tokenListen     = 0
	tokenBoot       = 1
	tokenFlow       = tokenBoot + bootDigits // 8
	tokenMAC        = tokenFlow + 13         // 21
	flowTokenLen    = tokenMAC + macDigits   // 34
	flowTokenPrefix = "vf"
)

// appendFlowToken appends ";vf=" and the token of connection conn on
// listener.
func (m *macer) appendFlowToken(dst []byte, listener int, conn flowRef) []byte {
	dst = append(dst, flowTokenParam...)
	start := len(dst)
	dst = append(dst, b32[listener&31])
	dst = appendB32(dst, conn.boot&bootMask, bootDigits)
	dst = appendB32(dst, conn.flow, 13)
	return appendB32(dst, m.tokenMAC(dst[start:]), macDigits)
}

// tokenMAC is the MAC of a token's first digits.
func (m *macer) tokenMAC(digits []byte) uint64 {
	return m.mac([]byte(flowTokenPrefix), digits)
}

// verifyFlowToken checks a token (the vf parameter's value) and returns the
// listener and connection it names.
func (m *macer) verifyFlowToken(tok []byte) (listener int, conn flowRef, ok bool) {
	if len(tok) != flowTokenLen {
		return 0, conn, false
	}
	for _, c := range tok {
		if b32val[c] == 0xff {
			return 0, conn, false
		}
	}
	var enc [macDigits]byte
	e := appendB32(enc[:0], m.tokenMAC(tok[:tokenMAC]), macDigits)
	if subtle.ConstantTimeCompare(e, tok[tokenMAC:]) != 1 {
		return 0, conn, false
	}
	conn.boot, _ = parseB32(tok[tokenBoot:tokenFlow])
	conn.flow, _ = parseB32(tok[tokenFlow:tokenMAC])
	return int(b32val[tok[tokenListen]]), conn, true
}
