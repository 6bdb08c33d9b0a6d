package load

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/viaduct-sip/viaduct/parser"
)

// wsOrigin is the Origin the generator's upgrades carry, as a page's would.
const wsOrigin = "https://viaduct-load.invalid"

// wsClient is a connection speaking SIP over WebSocket (RFC 7118) as a
// browser does, behind the net.Conn the rest of the generator uses: a
// Write of SIP messages sends each in a masked text frame, a Read returns
// the payloads of the server's data frames as one byte stream (each holds
// a whole message with its Content-Length, which the stream's frameReader
// frames as over TCP); pings are answered, a close ends the stream.
type wsClient struct {
	net.Conn
	br *bufio.Reader

	rmu  sync.Mutex
	left int    // payload bytes of the current data frame still to read
	ctrl []byte // a control frame's payload

	wmu  sync.Mutex
	wbuf []byte
	key  uint32 // the masking keys' generator (xorshift)
}

// wsUpgrade upgrades c to a WebSocket with the sip subprotocol: the
// request a browser sends for wss://host/, the 101 checked.
func wsUpgrade(c net.Conn, host string, timeout time.Duration) (*wsClient, error) {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	req := fmt.Sprintf("GET / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\n"+
		"Origin: %s\r\n\r\n", host, wsOrigin)
	if _, err := io.WriteString(c, req); err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	w := &wsClient{Conn: c, br: bufio.NewReaderSize(c, 4096), key: uint32(time.Now().UnixNano()) | 1}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != "sip" {
		return nil, fmt.Errorf("websocket upgrade refused: %s (subprotocol %q)", resp.Status, resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	return w, nil
}

// Read returns payload bytes of the server's data frames.
func (w *wsClient) Read(p []byte) (int, error) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	for w.left == 0 {
		if err := w.nextFrame(); err != nil {
			return 0, err
		}
	}
	n, err := w.br.Read(p[:min(len(p), w.left)])
	w.left -= n
	return n, err
}

// nextFrame reads a frame header: a data frame's payload is then read by
// Read; a control frame is handled here.
func (w *wsClient) nextFrame() error {
	var h [10]byte
	if _, err := io.ReadFull(w.br, h[:2]); err != nil {
		return err
	}
	op, n := h[0]&0x0F, int(h[1]&0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(w.br, h[2:4]); err != nil {
			return err
		}
		n = int(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(w.br, h[2:10]); err != nil {
			return err
		}
		n = int(binary.BigEndian.Uint64(h[2:10]))
	}
	if op < 0x8 {
		w.left = n
		return nil
	}
	w.ctrl = slices.Grow(w.ctrl[:0], n)[:n] // a control payload is at most 125 bytes: one buffer serves them all
	if _, err := io.ReadFull(w.br, w.ctrl); err != nil {
		return err
	}
	switch op {
	case 0x8:
		return io.EOF
	case 0x9:
		return w.writeFrame(0xA, w.ctrl)
	}
	return nil
}

// Write sends the SIP messages in b, one masked text frame each; CR LF
// keepalives go as a WebSocket ping (RFC 7118 has no CR LF keepalive).
func (w *wsClient) Write(b []byte) (int, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.wbuf = w.wbuf[:0]
	for rest := b; len(rest) > 0; {
		if rest[0] == '\r' || rest[0] == '\n' {
			for len(rest) > 0 && (rest[0] == '\r' || rest[0] == '\n') {
				rest = rest[1:]
			}
			w.wbuf = w.appendFrame(w.wbuf, 0x9, nil)
			continue
		}
		f, err := parser.FrameStream(rest, maxStreamMessage)
		if err != nil || f.Len == 0 {
			return 0, errors.New("websocket: write of a partial or unframed SIP message")
		}
		w.wbuf = w.appendFrame(w.wbuf, 0x1, rest[:f.Len])
		rest = rest[f.Len:]
	}
	if _, err := w.Conn.Write(w.wbuf); err != nil {
		return 0, err
	}
	return len(b), nil
}

// writeFrame sends one control frame.
func (w *wsClient) writeFrame(op byte, payload []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.wbuf = w.appendFrame(w.wbuf[:0], op, payload)
	_, err := w.Conn.Write(w.wbuf)
	return err
}

// appendFrame appends a final, masked client frame.
func (w *wsClient) appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = binary.BigEndian.AppendUint16(append(dst, 0x80|126), uint16(n))
	default:
		dst = binary.BigEndian.AppendUint64(append(dst, 0x80|127), uint64(n))
	}
	w.key ^= w.key << 13
	w.key ^= w.key >> 17
	w.key ^= w.key << 5
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], w.key)
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
