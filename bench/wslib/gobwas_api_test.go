package wslib

import (
	"bytes"
	"io"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestGobwasAPIAllocs counts the allocations of each gobwas API Viaduct
// could call per message or per upgrade, fed from memory, and requires
// zero for the ones its design relies on (zero: true).
func TestGobwasAPIAllocs(t *testing.T) {
	frame := clientFrame(sipInvite)
	payload := append([]byte(nil), sipInvite...)
	hdr := make([]byte, ws.MaxHeaderSize)
	var rd bytes.Reader
	var out bytes.Buffer
	out.Grow(4096)
	respHeader := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(sipResponse))}
	checker := newHandshakeChecker()
	u := checker.upgrader()
	rw := &memRW{}
	rwFrame := &memRW{}

	cases := []struct {
		name string
		zero bool
		f    func() error
	}{
		{"ws.ReadHeaderBuffer", true, func() error {
			rd.Reset(frame)
			_, err := ws.ReadHeaderBuffer(&rd, hdr)
			return err
		}},
		{"ws.ReadHeader", false, func() error {
			rd.Reset(frame)
			_, err := ws.ReadHeader(&rd)
			return err
		}},
		{"ws.CheckHeader", true, func() error {
			return ws.CheckHeader(ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Length: 900}, ws.StateServerSide)
		}},
		{"ws.Cipher (900 B)", true, func() error {
			ws.Cipher(payload, clientMask, 0)
			return nil
		}},
		{"ws.HeaderSize", true, func() error {
			if ws.HeaderSize(respHeader) != 4 {
				return io.ErrShortWrite
			}
			return nil
		}},
		{"ws.WriteHeaderBuffer", true, func() error {
			out.Reset()
			return ws.WriteHeaderBuffer(&out, respHeader, hdr)
		}},
		{"ws.WriteHeader", false, func() error {
			out.Reset()
			return ws.WriteHeader(&out, respHeader)
		}},
		{"ws.WriteFrame (500 B)", false, func() error {
			out.Reset()
			return ws.WriteFrame(&out, ws.NewTextFrame(sipResponse))
		}},
		{"ws.Upgrader.Upgrade (checks)", false, func() error {
			checker.reset()
			rw.reset(chromeRequestBytes)
			_, err := u.Upgrade(rw)
			return err
		}},
		{"wsutil.ReadClientData", false, func() error {
			rwFrame.reset(frame)
			_, _, err := wsutil.ReadClientData(rwFrame)
			return err
		}},
		{"wsutil.WriteServerMessage", false, func() error {
			out.Reset()
			return wsutil.WriteServerMessage(&out, ws.OpText, sipResponse)
		}},
	}
	for _, c := range cases {
		var err error
		allocs := testing.AllocsPerRun(1000, func() {
			if e := c.f(); e != nil {
				err = e
			}
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		t.Logf("%-30s %4.1f allocs/call", c.name, allocs)
		if c.zero && allocs != 0 {
			t.Errorf("%s: %.1f allocs, want 0", c.name, allocs)
		}
	}
}

// BenchmarkUnmask measures unmasking the 900-byte INVITE in place:
// ws.Cipher (SSE2/AVX2 assembly on amd64) against the byte-by-byte loop one
// would write by hand.
func BenchmarkUnmask(b *testing.B) {
	p := append([]byte(nil), sipInvite...)
	b.Run("gobwas-Cipher", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for range b.N {
			ws.Cipher(p, clientMask, 0)
		}
	})
	b.Run("bytewise-loop", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for range b.N {
			for i := range p {
				p[i] ^= clientMask[i&3]
			}
		}
	})
}
