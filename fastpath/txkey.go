package fastpath

import (
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/viaduct-sip/viaduct/parser"
)

// txKey3261 derives the transaction key of an RFC 3261 request from the
// client's branch and sent-by (17.2.3 items 1 and 2), without the method.
//
// The usual branch and host fit the worker's buffer and are hashed in one
// call; the streaming digest takes longer ones. Both hash the same bytes.
func (w *Worker) txKey3261(v *parser.Via) uint64 {
	if len(v.Branch)+len(v.Host)+7 > cap(w.txBuf) {
		return w.txKey3261Long(v)
	}
	b := append(w.txBuf[:0], v.Branch...)
	b = append(b, 0)
	n := len(b)
	b = b[:n+len(v.Host)]
	for i, c := range v.Host {
		b[n+i] = parser.Lower(c)
	}
	b = strconv.AppendUint(b, uint64(v.Port), 10)
	return xxhash.Sum64(b)
}

// txKey3261Long is txKey3261 for a branch and host too long for its buffer.
func (w *Worker) txKey3261Long(v *parser.Via) uint64 {
	d := w.xx
	d.Reset()
	d.Write(v.Branch)
	d.Write(sep)
	writeLower(d, v.Host)
	var p [8]byte
	d.Write(strconv.AppendUint(p[:0], uint64(v.Port), 10))
	return d.Sum64()
}

// txKey2543 derives the transaction key of an RFC 2543 request (no magic
// cookie) as RFC 3261 16.11 recommends: Request-URI, To tag, From tag,
// Call-ID, CSeq number and the top Via, never the method. The To tag is left
// out for ACK: the ACK of a non-2xx response carries the response's To tag,
// which the INVITE had not, and must still get the INVITE's branch (17.2.3
// matches it against the INVITE without the To tag). A re-INVITE rejected
// with a non-2xx response therefore gets an ACK branch different from its
// own; the downstream server retransmits its response until timer H, as
// with any lost ACK.
func (w *Worker) txKey2543(in []byte, top *parser.Via, toTag, fromTag []byte) uint64 {
	m := &w.m
	d := w.xx
	d.Reset()
	d.Write(m.RequestURI())
	d.Write(sep)
	if m.MethodID() != parser.MethodACK {
		d.Write(toTag)
	}
	d.Write(sep)
	d.Write(fromTag)
	d.Write(sep)
	d.Write(m.CallID())
	d.Write(sep)
	num, _ := m.CSeq()
	var p [12]byte
	d.Write(strconv.AppendUint(p[:0], uint64(num), 10))
	d.Write(sep)
	d.Write(in[top.Start:top.End])
	return d.Sum64()
}

var (
	sep               = []byte{0}
	branchPrefixBytes = []byte(branchPrefix)
)

func writeLower(d *xxhash.Digest, b []byte) {
	var buf [64]byte
	for len(b) > 0 {
		n := len(b)
		if n > len(buf) {
			n = len(buf)
		}
		for i := 0; i < n; i++ {
			buf[i] = parser.Lower(b[i])
		}
		d.Write(buf[:n])
		b = b[n:]
	}
}
