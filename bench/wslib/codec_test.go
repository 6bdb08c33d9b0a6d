package wslib

import (
	"bufio"
	"errors"
	"net/http"
	"testing"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
)

// codecKinds builds each server path on a streamConn, without a socket.
var codecKinds = []struct {
	name string
	make func(c *streamConn) (stepper, error)
}{
	{"gobwas-lowlevel", func(c *streamConn) (stepper, error) { return newGobwasRawConn(c), nil }},
	{"gobwas-wsutil", func(c *streamConn) (stepper, error) { return &gobwasWsutil{conn: c}, nil }},
	{"gorilla-NextReader", gorillaOnStream(false)},
	{"gorilla-ReadMessage", gorillaOnStream(true)},
	{"coder-Reader", coderOnStream(false)},
	{"coder-Read", coderOnStream(true)},
}

// BenchmarkServerCodec measures the server's CPU and allocations per
// message without the network: each read returns the next pre-built masked
// client frame (900-byte INVITE) from memory, the server decodes, unmasks
// and checks it and encodes a 500-byte response frame that is dropped.
func BenchmarkServerCodec(b *testing.B) {
	for _, k := range codecKinds {
		b.Run(k.name, func(b *testing.B) {
			s, err := k.make(&streamConn{frame: clientFrame(sipInvite)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(sipInvite) + len(sipResponse)))
			b.ResetTimer()
			for range b.N {
				if err := s.step(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// upgradeOnStream upgrades chromeRequest with up and returns the hijacked
// connection's stream, that the library then reads frames from.
func upgradeOnStream(c *streamConn, up func(*hijackWriter, *http.Request) error) error {
	h := newHTTPHarness()
	h.bw.Reset(c)
	h.w.conn = c
	h.rd.Reset(chromeRequestBytes)
	r, err := http.ReadRequest(h.br)
	if err != nil {
		return err
	}
	h.br.Reset(c)
	h.w.brw = bufio.NewReadWriter(h.br, h.bw)
	return up(h.w, r)
}

func gorillaOnStream(readMessage bool) func(*streamConn) (stepper, error) {
	return func(c *streamConn) (stepper, error) {
		var conn *gorilla.Conn
		err := upgradeOnStream(c, func(w *hijackWriter, r *http.Request) error {
			var err error
			conn, err = gorillaUpgrader.Upgrade(w, r, nil)
			return err
		})
		if err != nil {
			return nil, err
		}
		return newGorillaServer(conn, readMessage), nil
	}
}

func coderOnStream(readWhole bool) func(*streamConn) (stepper, error) {
	return func(c *streamConn) (stepper, error) {
		var conn *coder.Conn
		err := upgradeOnStream(c, func(w *hijackWriter, r *http.Request) error {
			var err error
			conn, err = coder.Accept(w, r, coderOptions)
			if err == nil && conn.Subprotocol() != subprotocol {
				err = errors.New("no sip subprotocol")
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		return newCoderServer(conn, readWhole), nil
	}
}
