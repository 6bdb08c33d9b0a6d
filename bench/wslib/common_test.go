package wslib

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gobwas/ws"
)

// Fixed inputs shared by every benchmark.
const (
	wsPath        = "/ws"
	allowedOrigin = "https://www.example.com"
	originHost    = "www.example.com"
	subprotocol   = "sip"

	// ioTimeout bounds every blocking read or write in tests and benchmarks.
	ioTimeout = 2 * time.Minute
)

// chromeRequest is the upgrade request Chrome sends for
// new WebSocket("wss://sip.example.com/ws", "sip") (TLS terminated before).
const chromeRequest = "GET /ws HTTP/1.1\r\n" +
	"Host: sip.example.com\r\n" +
	"Connection: Upgrade\r\n" +
	"Pragma: no-cache\r\n" +
	"Cache-Control: no-cache\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n" +
	"Upgrade: websocket\r\n" +
	"Origin: https://www.example.com\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
	"Sec-WebSocket-Protocol: sip\r\n" +
	"\r\n"

// chromeRequestBytes is chromeRequest as bytes, converted once.
var chromeRequestBytes = []byte(chromeRequest)

// clientMask is the masking key of every client frame (any value will do:
// the server cannot tell a fixed key from a random one).
var clientMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// sipInvite is a ~900-byte SIP INVITE as a browser (JsSIP/SIP.js) sends it.
var sipInvite = padTo(900, "INVITE sip:bob@example.com SIP/2.0\r\n"+
	"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;rport\r\n"+
	"Max-Forwards: 70\r\n"+
	"To: <sip:bob@example.com>\r\n"+
	"From: \"Alice\" <sip:alice@example.com>;tag=ab7sd9f0\r\n"+
	"Call-ID: asidkj3ss8d7f6g5h4j3k2l1\r\n"+
	"CSeq: 1 INVITE\r\n"+
	"Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws;ob>\r\n"+
	"Allow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n"+
	"Supported: timer,ice,replaces,outbound\r\n"+
	"User-Agent: JsSIP 3.10.1\r\n"+
	"Content-Type: application/sdp\r\n", "v=0\r\n")

// sipResponse is a ~500-byte SIP response to sipInvite.
var sipResponse = padTo(500, "SIP/2.0 100 Trying\r\n"+
	"Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK56sdasks;rport=53421;received=192.0.2.10\r\n"+
	"To: <sip:bob@example.com>\r\n"+
	"From: \"Alice\" <sip:alice@example.com>;tag=ab7sd9f0\r\n"+
	"Call-ID: asidkj3ss8d7f6g5h4j3k2l1\r\n"+
	"CSeq: 1 INVITE\r\n"+
	"Server: Viaduct\r\n", "")

// padTo returns head followed by SDP-like lines and a body marker, exactly n
// bytes long.
func padTo(n int, head, body string) []byte {
	var b strings.Builder
	b.WriteString(head)
	b.WriteString("Content-Length: 000\r\n\r\n")
	b.WriteString(body)
	for b.Len() < n {
		b.WriteString("a=candidate:1 1 udp 2113937151 192.0.2.10 54400 typ host\r\n")
	}
	return []byte(b.String()[:n])
}

// clientFrame returns a masked text frame carrying p, as a browser sends it.
func clientFrame(p []byte) []byte {
	return encodeFrame(p, true)
}

// serverFrame returns an unmasked text frame carrying p.
func serverFrame(p []byte) []byte {
	return encodeFrame(p, false)
}

func encodeFrame(p []byte, masked bool) []byte {
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p)), Masked: masked}
	if masked {
		h.Mask = clientMask
	}
	var buf bytes.Buffer
	if err := ws.WriteHeader(&buf, h); err != nil {
		panic(err)
	}
	payload := append([]byte(nil), p...)
	if masked {
		ws.Cipher(payload, h.Mask, 0)
	}
	buf.Write(payload)
	return buf.Bytes()
}

// isInvite is the stand-in for handing the message to the SIP parser: it
// checks that the payload was unmasked.
func isInvite(p []byte) bool {
	return len(p) == len(sipInvite) && bytes.HasPrefix(p, []byte("INVITE "))
}

// errNotInvite reports a payload that did not unmask to sipInvite.
var errNotInvite = errors.New("payload is not the unmasked INVITE")

// clientHandshake writes chromeRequest on c and reads the response head byte
// by byte, so that nothing past it is consumed. It checks for 101 and sip.
func clientHandshake(c net.Conn) error {
	if _, err := io.WriteString(c, chromeRequest); err != nil {
		return err
	}
	var head []byte
	one := make([]byte, 1)
	for len(head) < 4096 && !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := io.ReadFull(c, one); err != nil {
			return fmt.Errorf("reading handshake response: %w", err)
		}
		head = append(head, one[0])
	}
	resp := string(head)
	if !strings.HasPrefix(resp, "HTTP/1.1 101 ") {
		return fmt.Errorf("handshake refused: %q", resp)
	}
	if !strings.Contains(strings.ToLower(resp), "\r\nsec-websocket-protocol: sip\r\n") {
		return fmt.Errorf("sip subprotocol not selected: %q", resp)
	}
	return nil
}

// listenLoopback listens on an ephemeral port of 127.0.0.1.
func listenLoopback() (net.Listener, error) {
	return net.Listen("tcp", "127.0.0.1:0")
}

// dialLoopback dials addr, sets a deadline of ioTimeout and does the
// WebSocket handshake.
func dialLoopback(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	if err := clientHandshake(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// closeAbortive closes c with SO_LINGER 0 (RST), so that thousands of test
// connections leave no TIME_WAIT behind on the loopback port range.
func closeAbortive(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// memConn is a net.Conn stub for handshakes fed from memory: reads return
// io.EOF, writes go to out.
type memConn struct {
	out bytes.Buffer
}

func (c *memConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return stubAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return stubAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

type stubAddr struct{}

func (stubAddr) Network() string { return "tcp" }
func (stubAddr) String() string  { return "127.0.0.1:5060" }

// hijackWriter is the smallest http.ResponseWriter + http.Hijacker that
// gorilla and coder accept; it writes the response head on conn like
// net/http does, and hijacks to conn and brw.
type hijackWriter struct {
	header http.Header
	head   bytes.Buffer
	conn   net.Conn
	brw    *bufio.ReadWriter
}

func (w *hijackWriter) Header() http.Header { return w.header }

func (w *hijackWriter) Write(p []byte) (int, error) { return w.conn.Write(p) }

func (w *hijackWriter) WriteHeader(code int) {
	w.head.Reset()
	fmt.Fprintf(&w.head, "HTTP/1.1 %03d %s\r\n", code, http.StatusText(code))
	w.header.Write(&w.head)
	w.head.WriteString("\r\n")
	w.conn.Write(w.head.Bytes())
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.conn, w.brw, nil
}

// streamConn is a net.Conn stub whose reads return the same frame over and
// over, at most one frame per read as from a socket, and whose writes are
// dropped: the pre-built client byte stream of BenchmarkServerCodec.
type streamConn struct {
	memConn
	frame []byte
	off   int
}

func (c *streamConn) Read(p []byte) (int, error) {
	n := copy(p, c.frame[c.off:])
	c.off = (c.off + n) % len(c.frame)
	return n, nil
}

func (c *streamConn) Write(p []byte) (int, error) { return len(p), nil }
