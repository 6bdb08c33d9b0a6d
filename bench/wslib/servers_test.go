package wslib

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	gorilla "github.com/gorilla/websocket"
)

// stepper is the server side of one connection: step reads one client
// message and answers it with sipResponse.
type stepper interface {
	step() error
	close() error
}

// kind is one way of serving a connection: how it is accepted and upgraded
// (start) and whether the client does a WebSocket handshake first.
type kind struct {
	name      string
	handshake bool
	start     func(ln net.Listener, out chan<- result) (stop func())
}

// result carries the upgraded server side of one connection, or why the
// upgrade failed.
type result struct {
	s   stepper
	err error
}

// maxReads bounds the read calls spent on one message.
const maxReads = 1024

// errTooBig reports a message larger than the server's buffer.
var errTooBig = errors.New("message larger than the read buffer")

// kinds lists the server read/write paths measured, the TCP floor first.
var kinds = []kind{
	{name: "tcp-baseline", start: acceptRaw(newTCPBaseline)},
	{name: "gobwas-lowlevel", handshake: true, start: acceptRaw(newGobwasRaw)},
	{name: "gobwas-wsutil", handshake: true, start: acceptRaw(newGobwasWsutil)},
	{name: "gorilla-NextReader", handshake: true, start: serveHTTP(newGorilla(false))},
	{name: "gorilla-ReadMessage", handshake: true, start: serveHTTP(newGorilla(true))},
	{name: "coder-Reader", handshake: true, start: serveHTTP(newCoder(false))},
	{name: "coder-Read", handshake: true, start: serveHTTP(newCoder(true))},
}

// acceptRaw serves every connection of ln in the accept goroutine, the way
// Viaduct's transport does: no goroutine per connection.
func acceptRaw(wrap func(net.Conn) (stepper, error)) func(net.Listener, chan<- result) func() {
	return func(ln net.Listener, out chan<- result) func() {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.SetDeadline(time.Now().Add(ioTimeout))
				s, err := wrap(c)
				if err != nil {
					c.Close()
				}
				out <- result{s: s, err: err}
			}
		}()
		return func() { ln.Close() }
	}
}

// serveHTTP serves ln with net/http, the idiomatic way for gorilla and
// coder; the handler upgrades and hands the connection over.
func serveHTTP(upgrade func(http.ResponseWriter, *http.Request) (stepper, error)) func(net.Listener, chan<- result) func() {
	return func(ln net.Listener, out chan<- result) func() {
		h := func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != wsPath {
				http.NotFound(w, r)
				return
			}
			s, err := upgrade(w, r)
			out <- result{s: s, err: err}
		}
		srv := &http.Server{Handler: http.HandlerFunc(h), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		return func() { srv.Close() }
	}
}

// tcpBaseline does no WebSocket work: it reads the client frame's bytes and
// writes pre-encoded response bytes, the floor set by loopback TCP.
type tcpBaseline struct {
	conn net.Conn
	in   []byte
	out  []byte
}

func newTCPBaseline(c net.Conn) (stepper, error) {
	return &tcpBaseline{conn: c, in: make([]byte, len(clientFrame(sipInvite))), out: serverFrame(sipResponse)}, nil
}

func (s *tcpBaseline) step() error {
	if _, err := io.ReadFull(s.conn, s.in); err != nil {
		return err
	}
	_, err := s.conn.Write(s.out)
	return err
}

func (s *tcpBaseline) close() error { return s.conn.Close() }

// gobwasUpgrader returns the zero-copy upgrader with Viaduct's checks, bound
// once to a reusable checker (see handshake_test.go).
func gobwasUpgrader() ws.Upgrader {
	return newHandshakeChecker().upgrader()
}

// gobwasRaw is Viaduct's intended design: its own read buffer filled by
// plain reads, ws.ReadHeaderBuffer over it, ws.Cipher in place, and one
// write of a header encoded by ws.WriteHeaderBuffer plus the payload.
// buf[off:end] holds the bytes received and not yet consumed.
type gobwasRaw struct {
	conn net.Conn
	buf  []byte
	off  int
	end  int
	rd   bytes.Reader
	hdr  [ws.MaxHeaderSize]byte
	out  bytes.Buffer
}

func newGobwasRaw(c net.Conn) (stepper, error) {
	u := gobwasUpgrader()
	if _, err := u.Upgrade(c); err != nil {
		return nil, err
	}
	return newGobwasRawConn(c), nil
}

// newGobwasRawConn wraps an already upgraded connection.
func newGobwasRawConn(c net.Conn) *gobwasRaw {
	s := &gobwasRaw{conn: c, buf: make([]byte, 64<<10)}
	s.out.Grow(ws.MaxHeaderSize + 64<<10)
	return s
}

func (s *gobwasRaw) step() error {
	p, err := s.nextFrame()
	if err != nil {
		return err
	}
	if !isInvite(p) {
		return errNotInvite
	}
	return s.writeText(sipResponse)
}

// nextFrame returns the unmasked payload of the next client frame, reading
// until the whole frame is buffered, and consumes it from the buffer.
func (s *gobwasRaw) nextFrame() ([]byte, error) {
	for range maxReads {
		h, hlen, err := s.parseHeader()
		switch {
		case err == nil:
			if err := checkClientHeader(h); err != nil {
				return nil, err
			}
			if hlen+int(h.Length) > len(s.buf) {
				return nil, errTooBig
			}
			if start, end := s.off+hlen, s.off+hlen+int(h.Length); end <= s.end {
				p := s.buf[start:end]
				ws.Cipher(p, h.Mask, 0)
				s.off = end
				return p, nil
			}
		case !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
			return nil, err
		}
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
	return nil, errTooBig
}

// parseHeader decodes the frame header at s.buf[s.off:]; io.EOF or
// io.ErrUnexpectedEOF mean that more bytes are needed.
func (s *gobwasRaw) parseHeader() (ws.Header, int, error) {
	s.rd.Reset(s.buf[s.off:s.end])
	h, err := ws.ReadHeaderBuffer(&s.rd, s.hdr[:])
	return h, s.end - s.off - s.rd.Len(), err
}

// fill moves the unconsumed bytes to the front if the buffer is full, and
// reads once from the socket.
func (s *gobwasRaw) fill() error {
	if s.end == len(s.buf) {
		s.end = copy(s.buf, s.buf[s.off:s.end])
		s.off = 0
	}
	n, err := s.conn.Read(s.buf[s.end:])
	s.end += n
	return err
}

// checkClientHeader applies RFC 6455 section 5 to a client frame with
// ws.CheckHeader (mask, RSV, opcode, control frame rules), then accepts
// only whole data frames, as this benchmark sends.
func checkClientHeader(h ws.Header) error {
	if err := ws.CheckHeader(h, ws.StateServerSide); err != nil {
		return err
	}
	if !h.Fin || (h.OpCode != ws.OpText && h.OpCode != ws.OpBinary) {
		return fmt.Errorf("unexpected frame: fin=%v opcode=%v", h.Fin, h.OpCode)
	}
	return nil
}

// writeText encodes an unmasked text frame into s.out and writes it once.
func (s *gobwasRaw) writeText(p []byte) error {
	s.out.Reset()
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p))}
	if err := ws.WriteHeaderBuffer(&s.out, h, s.hdr[:]); err != nil {
		return err
	}
	s.out.Write(p)
	_, err := s.conn.Write(s.out.Bytes())
	return err
}

func (s *gobwasRaw) close() error { return s.conn.Close() }

// gobwasWsutil is gobwas' convenient API straight on the net.Conn.
type gobwasWsutil struct {
	conn net.Conn
}

func newGobwasWsutil(c net.Conn) (stepper, error) {
	u := gobwasUpgrader()
	if _, err := u.Upgrade(c); err != nil {
		return nil, err
	}
	return &gobwasWsutil{conn: c}, nil
}

func (s *gobwasWsutil) step() error {
	p, op, err := wsutil.ReadClientData(s.conn)
	if err != nil {
		return err
	}
	if op != ws.OpText || !isInvite(p) {
		return errNotInvite
	}
	return wsutil.WriteServerMessage(s.conn, ws.OpText, sipResponse)
}

func (s *gobwasWsutil) close() error { return s.conn.Close() }

// gorillaUpgrader has Viaduct's checks: Origin and the sip subprotocol.
var gorillaUpgrader = gorilla.Upgrader{
	Subprotocols: []string{subprotocol},
	CheckOrigin:  func(r *http.Request) bool { return r.Header.Get("Origin") == allowedOrigin },
}

// gorillaServer reads with NextReader into its own buffer, or with
// ReadMessage (whole) when readMessage is set, and writes with WriteMessage.
type gorillaServer struct {
	conn        *gorilla.Conn
	readMessage bool
	buf         []byte
}

func newGorilla(readMessage bool) func(http.ResponseWriter, *http.Request) (stepper, error) {
	return func(w http.ResponseWriter, r *http.Request) (stepper, error) {
		c, err := gorillaUpgrader.Upgrade(w, r, nil)
		if err != nil {
			return nil, err
		}
		return newGorillaServer(c, readMessage), nil
	}
}

func newGorillaServer(c *gorilla.Conn, readMessage bool) *gorillaServer {
	return &gorillaServer{conn: c, readMessage: readMessage, buf: make([]byte, 64<<10)}
}

func (s *gorillaServer) step() error {
	p, err := s.read()
	if err != nil {
		return err
	}
	if !isInvite(p) {
		return errNotInvite
	}
	return s.conn.WriteMessage(gorilla.TextMessage, sipResponse)
}

func (s *gorillaServer) read() ([]byte, error) {
	if s.readMessage {
		_, p, err := s.conn.ReadMessage()
		return p, err
	}
	_, r, err := s.conn.NextReader()
	if err != nil {
		return nil, err
	}
	return readInto(r, s.buf)
}

func (s *gorillaServer) close() error { return s.conn.Close() }

// coderServer reads with Conn.Reader into its own buffer, or with Conn.Read
// (whole) when readWhole is set, and writes with Conn.Write.
type coderServer struct {
	conn      *coder.Conn
	readWhole bool
	buf       []byte
}

// coderOptions has Viaduct's checks: Origin and the sip subprotocol.
var coderOptions = &coder.AcceptOptions{
	Subprotocols:   []string{subprotocol},
	OriginPatterns: []string{originHost},
}

func newCoder(readWhole bool) func(http.ResponseWriter, *http.Request) (stepper, error) {
	return func(w http.ResponseWriter, r *http.Request) (stepper, error) {
		c, err := coder.Accept(w, r, coderOptions)
		if err != nil {
			return nil, err
		}
		if c.Subprotocol() != subprotocol {
			c.Close(coder.StatusProtocolError, "sip subprotocol required")
			return nil, errors.New("no sip subprotocol")
		}
		return newCoderServer(c, readWhole), nil
	}
}

func newCoderServer(c *coder.Conn, readWhole bool) *coderServer {
	return &coderServer{conn: c, readWhole: readWhole, buf: make([]byte, 64<<10)}
}

func (s *coderServer) step() error {
	p, err := s.read()
	if err != nil {
		return err
	}
	if !isInvite(p) {
		return errNotInvite
	}
	return s.conn.Write(context.Background(), coder.MessageText, sipResponse)
}

func (s *coderServer) read() ([]byte, error) {
	if s.readWhole {
		_, p, err := s.conn.Read(context.Background())
		return p, err
	}
	_, r, err := s.conn.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	return readInto(r, s.buf)
}

func (s *coderServer) close() error { return s.conn.CloseNow() }

// readInto reads a message reader to its end into buf, in a bounded number
// of reads.
func readInto(r io.Reader, buf []byte) ([]byte, error) {
	n := 0
	for range maxReads {
		if n == len(buf) {
			return nil, errTooBig
		}
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, errTooBig
}
