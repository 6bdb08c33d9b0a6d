package stream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// phase is where a connection's reader is, for its read deadline and for
// naming a timeout.
type phase uint8

const (
	phaseFirst   phase = iota // no complete message yet: FirstMessageTimeout from the start
	phaseIdle                 // between messages: the idle timeout
	phaseMessage              // inside a message: MessageTimeout from its first byte
	phaseUpgrade              // WebSocket: waiting for the upgrade request, HandshakeTimeout from the accept
)

// Errors of a send.
var (
	errWriteQueue = errors.New("stream: write queue full: connection closed")
	errBackingOff = errors.New("stream: reconnect backoff after a failed dial")
	errNotServing = errors.New("stream: server not serving")
	// errWouldBlock is what a TLS connection's wire returns when the
	// socket has nothing to read: a net.Error crypto/tls takes as
	// temporary, so the connection stays usable.
	errWouldBlock net.Error = wouldBlock{}
)

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "stream: read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// conn is one TCP or TLS connection, accepted or dialled. One goroutine
// reads it, parked in the netpoller with no buffer while the socket is
// empty; the bytes are read into its worker's buffer under the worker's
// mutex, and only the tail of a message split across reads is kept, in a
// buffer of the worker's pool, until the message is complete.
type conn struct {
	s        *Server
	id       uint64
	listener int
	peer     netip.AddrPort
	outbound bool
	src      transport.Peer // what the handler is told about a message from here
	w        *worker

	tcp atomic.Pointer[net.TCPConn] // nil while dialling
	rc  syscall.RawConn
	tls *tls.Conn // TLS only

	closed atomic.Bool
	reason CloseReason // set once by close, after closed

	// The reader's state, touched by the reader alone (under w.mu once
	// it reads).
	pending       []byte // the start of a message split across reads; nil between messages
	lfs           int    // LFs since the last message: 2 is a CRLF CRLF ping
	phase         phase
	delivered     bool      // a message was delivered since the deadline was last set
	deadlineSetAt time.Time // when the idle deadline was last pushed
	rerr          error     // what the last read met (io.EOF, an errno)
	rawFD         int       // TLS: the socket during a read callback, for wire.Read; -1 outside
	linger        bool      // closed for its framing: drain before closing the socket
	readFn        func(uintptr) bool

	// WebSocket (WS, WSS) reader state, under w.mu like the above.
	wsState  wsState
	wsBinary atomic.Bool // the client's last data frame was binary: so are the messages to it
	wsFrag   []byte      // a fragmented message being assembled (a pool buffer), or nil
	wsCheck  wsCheck     // what the upgrade request showed
	lastRead time.Time   // when the last bytes came (WebSocket keepalive)

	// Writing. wmu orders the senders; qmu guards the write queue and
	// the direct write, which tls.Conn.Write reaches through wire.
	wmu           sync.Mutex
	established   bool   // under wmu: false while dialling or handshaking
	early         []byte // under wmu: what was sent before established
	qmu           sync.Mutex
	wq            []byte // under qmu: bytes the socket did not take yet
	flushing      bool   // under qmu: a flusher goroutine owns the socket's writes
	finAfterFlush bool   // under qmu: closed for its framing; the flusher shuts the socket's writing once the queue is out
	wbuf          []byte // writeNow's argument, under qmu
	wn            int
	werr          error
	writeFn       func(uintptr) bool
	fbuf          []byte // the flusher's snapshot of wq
	fn            int
	ferr          error
	flushFn       func(uintptr) bool
	nonblockW     atomic.Bool // wire.Write queues (after the TLS handshake)
}

func (s *Server) newConn(listener int, peer netip.AddrPort, outbound bool) *conn {
	c := &conn{s: s, id: s.nextFlow.Add(1), listener: listener, peer: peer, outbound: outbound, rawFD: -1}
	c.src = transport.Peer{Addr: peer, Kind: s.kind, Listener: listener, Flow: c.id}
	c.writeFn, c.flushFn = c.writeNowFn, c.flushNowFn
	if s.kind.Secure() {
		c.readFn = c.readTLS
	} else {
		c.readFn = c.readTCP
	}
	return c
}

// attach makes nc the connection's socket.
func (c *conn) attach(nc *net.TCPConn) error {
	rc, err := nc.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw conn: %w", err)
	}
	c.rc = rc
	c.tcp.Store(nc)
	if c.closed.Load() { // closed while dialling: close saw no socket
		c.shutdown(unix.SHUT_RDWR)
	}
	return nil
}

// handshake runs the TLS handshake (a no-op on TCP), after a trusted
// proxy's PROXY protocol header on a wss: listener that asks for one, both
// bounded by HandshakeTimeout, the socket in blocking mode.
func (c *conn) handshake() error {
	if !c.s.kind.Secure() {
		return nil
	}
	nc := c.tcp.Load()
	if err := nc.SetDeadline(time.Now().Add(c.s.cfg.HandshakeTimeout)); err != nil {
		return err
	}
	if !c.outbound && c.s.cfg.WebSocket.ClientAddress == ClientAddressProxyProtocol && c.s.ws && c.trustedProxy() {
		src, err := readProxyHeader(nc) // before the TLS handshake, which the proxy passed through
		if err != nil {
			return fmt.Errorf("websocket: PROXY protocol header of a trusted proxy: %w", err)
		}
		c.clientFrom(src)
	}
	w := &wire{TCPConn: nc, c: c}
	if c.outbound {
		c.tls = tls.Client(w, c.s.tls.clientConfig(c.s.serverName(c.peer)))
	} else {
		c.tls = tls.Server(w, c.s.tls.serverConfig)
	}
	if err := c.tls.Handshake(); err != nil {
		if !c.closed.Load() { // not Close cutting it short
			c.s.count.handshakeFailures.Add(1)
		}
		return fmt.Errorf("tls handshake: %w", err)
	}
	c.nonblockW.Store(true)
	return nc.SetDeadline(time.Time{})
}

// start sets the first read deadline; the connection is then ready to read.
func (c *conn) start() {
	c.phase = phaseFirst
	d := c.s.cfg.FirstMessageTimeout
	switch {
	case c.outbound: // an upstream speaks when it has something to say
		c.phase = phaseIdle
		d = c.s.cfg.idleTimeout(true)
	case c.s.ws:
		c.phase = phaseUpgrade
		d = c.s.cfg.HandshakeTimeout
		c.lastRead = time.Now()
		if c.s.cfg.WebSocket.ClientAddress == ClientAddressProxyProtocol && !c.s.kind.Secure() && c.trustedProxy() {
			c.wsState = wsProxied
		}
	}
	c.setDeadline(time.Now(), d)
}

// readLoop reads the connection until it is closed, then releases it.
func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.release()
	for !c.closed.Load() {
		if err := c.rc.Read(c.readFn); err != nil {
			if c.s.ws && errors.Is(err, os.ErrDeadlineExceeded) && c.wsKeepalive() {
				continue
			}
			c.close(c.readFailure(err))
			return
		}
		if c.rerr != nil {
			c.close(c.readFailure(c.rerr))
			return
		}
	}
	if c.linger {
		c.drain()
	}
}

// lingerTime bounds the draining of a connection closed for its framing.
const lingerTime = time.Second

// drain reads and drops what the peer still sends, until it closes its
// side or lingerTime has passed: closing a socket with unread bytes sends
// a reset, which can make the peer lose the answer to the refused message.
func (c *conn) drain() {
	nc := c.tcp.Load()
	nc.SetReadDeadline(time.Now().Add(lingerTime))
	var buf [512]byte
	for {
		if _, err := nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// readFailure names the reason of a failed read.
func (c *conn) readFailure(err error) CloseReason {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return [...]CloseReason{phaseFirst: ClosedFirstMessage, phaseIdle: ClosedIdle, phaseMessage: ClosedMessageTimeout,
			phaseUpgrade: ClosedHandshake}[c.phase]
	case errors.Is(err, io.EOF), errors.Is(err, unix.ECONNRESET):
		return ClosedByPeer
	}
	return ClosedReadError
}

// readTCP is the read callback of a TCP connection: one read into the
// worker's buffer (or the pending message's), and the messages it
// completes handled. It asks to wait (false) only when the socket is
// empty: on EAGAIN, or after a short read, which drained it (edge
// triggered readiness reports any byte that comes later).
func (c *conn) readTCP(fd uintptr) bool {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := c.readBuffer()
	room := buf[len(buf):cap(buf)]
	n, err := readNB(int(fd), room)
	switch {
	case err == unix.EAGAIN:
		return false
	case err == unix.EINTR:
		return true
	case err != nil:
		c.rerr = err
		return true
	case n == 0:
		c.rerr = io.EOF
		return true
	}
	c.s.count.bytesIn.Add(uint64(n))
	c.ingest(buf[:len(buf)+n])
	return n == len(room) || c.closed.Load()
}

// maxTLSReads bounds the records one TLS read callback decrypts, so that a
// fast sender does not keep its worker from the others.
const maxTLSReads = 16

// readTLS is the read callback of a TLS connection: records read and
// decrypted (wire.Read reading fd without blocking) until the socket is
// empty, and the messages they complete handled.
func (c *conn) readTLS(fd uintptr) bool {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c.rawFD = int(fd)
	defer func() { c.rawFD = -1 }()
	for range maxTLSReads {
		buf := c.readBuffer()
		n, err := c.tls.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			c.s.count.bytesIn.Add(uint64(n))
			c.ingest(buf[:len(buf)+n])
			if c.closed.Load() {
				return true
			}
		}
		switch {
		case err == errWouldBlock:
			return false
		case err != nil:
			c.rerr = err
			return true
		}
	}
	return true
}

// readBuffer returns the worker's buffer holding a copy of the pending
// start of a message, if there is one: the next read goes after it.
func (c *conn) readBuffer() []byte {
	return append(c.w.rbuf[:0], c.pending...)
}

// ingest handles the messages data completes and keeps the rest.
func (c *conn) ingest(data []byte) {
	var rest []byte
	if c.s.ws {
		rest = c.consumeWS(data)
	} else {
		rest = c.consume(data)
	}
	c.flushReplies()
	c.flushHeld()
	c.keep(rest)
	if !c.closed.Load() {
		c.advance(len(rest) > 0 || c.wsFrag != nil) // a message in fragments is one message: MessageTimeout
	}
}

// consume hands every complete message at the start of b to the handler,
// answers CRLF CRLF pings, and returns the start of an incomplete message
// (nil when there is none, or when a framing error closed the connection).
func (c *conn) consume(b []byte) []byte {
	for {
		for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			if b[0] == '\n' {
				if c.lfs++; c.lfs == 2 { // RFC 5626 4.4.1: a pong for a ping
					c.lfs = 0
					c.reply(crlf)
				}
			}
			b = b[1:]
		}
		if len(b) == 0 {
			return nil
		}
		c.lfs = 0
		max := c.s.layout.MaxMessage
		f, err := parser.FrameStream(b[:min(len(b), max+1)], max) // what a read of any size would see
		if err != nil {
			c.refuse(b, f, err)
			return nil
		}
		if f.Len == 0 {
			return b
		}
		c.deliver(b[:f.Len])
		if c.closed.Load() {
			return nil
		}
		b = b[f.Len:]
	}
}

var crlf = []byte("\r\n")

// flushHeld lets the handler send what it holds from this read's messages
// (transport.Flusher): at the end of the read, and before the reader
// closes the connection, so that the answers to the messages before the
// close still go. The worker's mutex is held.
func (c *conn) flushHeld() {
	if c.w.flusher != nil {
		c.w.flusher.Flush()
	}
}

// keep keeps rest, the start of a message in the worker's buffer, in a
// pending buffer of the worker's pool just large enough.
func (c *conn) keep(rest []byte) {
	if c.pending != nil {
		c.w.putBuf(c.pending)
		c.pending = nil
	}
	if len(rest) > 0 && !c.closed.Load() {
		c.pending = append(c.w.getBuf(len(rest)), rest...)
	}
}

// deliver hands msg to the worker's handler and sends what it returns.
func (c *conn) deliver(msg []byte) {
	w := c.w
	c.s.count.msgsIn.Add(1)
	c.delivered = true
	out := &w.out
	out.Buf, out.To = out.Buf[:0], transport.Peer{}
	if !w.h.Handle(msg, c.src, out) {
		return
	}
	w.h.Sent(out, c.output(out))
}

// output sends the handler's output for a message from c: an answer on c
// joins the batch of c's answers to this read (and is reported sent: a
// failure of the batch's write closes c, counted); anything else leaves at
// once, after the batch so far, keeping the order of the outputs.
func (c *conn) output(out *transport.Outbound) error {
	if out.To.Flow != c.id {
		c.flushReplies() // a failure closed c; the output may go elsewhere
		return c.s.Send(out.Buf, out.To)
	}
	if err := c.reply(out.Buf); err != nil {
		return err
	}
	c.s.count.msgsOut.Add(1)
	c.s.count.bytesOut.Add(uint64(len(out.Buf)))
	return nil
}

// refuse handles a framing error: the header block, when there is one,
// goes to the handler (which answers 400 or 513 on this connection), then
// the connection is closed.
func (c *conn) refuse(b []byte, f parser.Frame, err error) {
	reason := ClosedBadFraming
	if errors.Is(err, parser.ErrFrameTooLarge) || errors.Is(err, parser.ErrHeadersTooLarge) {
		reason = ClosedTooLarge
	}
	if f.Headers > 0 {
		c.deliver(b[:f.Headers])
	}
	c.flushHeld()
	c.flushReplies()
	c.linger = true
	c.closeHow(reason, unix.SHUT_WR) // the answer goes, then a FIN; the reader drains
}

// advance moves the read deadline on after a read: a message begun starts
// MessageTimeout, a connection between messages gets its idle timeout
// (pushed at most every idle/8, a deadline being a timer update).
func (c *conn) advance(partial bool) {
	delivered := c.delivered
	c.delivered = false
	cfg := &c.s.cfg
	switch {
	case c.phase == phaseUpgrade, c.phase == phaseFirst && !delivered:
		return // the upgrade's or the first message's deadline stands
	case partial && (c.phase != phaseMessage || delivered):
		c.phase = phaseMessage
		c.setDeadline(time.Now(), cfg.MessageTimeout)
	case partial:
		return // the message's deadline stands
	default:
		idle := c.idleTimeout()
		now := time.Now()
		if c.phase == phaseIdle && now.Sub(c.deadlineSetAt) < idle/8 {
			return
		}
		c.phase = phaseIdle
		c.setDeadline(now, idle)
	}
}

// idleTimeout is how long the connection may be silent before its read
// deadline passes: the idle timeout, or for WebSocket the keepalive
// interval when it is shorter (the deadline then sends a ping).
func (c *conn) idleTimeout() time.Duration {
	idle := c.s.cfg.idleTimeout(c.outbound)
	if ka := c.s.cfg.WebSocket.Keepalive; c.s.ws && ka > 0 && (idle <= 0 || ka < idle) {
		return ka
	}
	return idle
}

// setDeadline sets the read deadline d after now; 0 is none.
func (c *conn) setDeadline(now time.Time, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = now.Add(d)
	}
	c.deadlineSetAt = now
	c.tcp.Load().SetReadDeadline(t)
}

// close closes the connection for reason (the first reason given counts):
// it leaves the table at once, so no send finds it any more, and its
// socket is shut down, which wakes its reader and flusher; the reader
// releases the rest. It never blocks, so any goroutine may call it,
// holding any lock of this package.
func (c *conn) close(reason CloseReason) { c.closeHow(reason, unix.SHUT_RDWR) }

// closeHow is close with the shutdown(2) mode how.
func (c *conn) closeHow(reason CloseReason, how int) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.reason = reason
	c.s.table.remove(c)
	c.s.count.closed[reason].Add(1)
	if c.tcp.Load() == nil {
		return
	}
	if how == unix.SHUT_WR {
		c.qmu.Lock()
		later := c.flushing
		c.finAfterFlush = later // the flusher writes the queue first
		c.qmu.Unlock()
		if later {
			return
		}
	}
	c.shutdown(how)
}

func (c *conn) shutdown(how int) {
	c.rc.Control(func(fd uintptr) { shutdownNB(int(fd), how) })
}

// release frees what the closed connection holds: its socket, its
// pending buffer and write queue, its place in the gauges.
func (c *conn) release() {
	if nc := c.tcp.Load(); nc != nil {
		nc.Close()
	}
	if c.w != nil {
		c.w.mu.Lock()
		if c.pending != nil {
			c.w.putBuf(c.pending)
			c.pending = nil
		}
		if c.wsFrag != nil {
			c.w.putBuf(c.wsFrag)
			c.wsFrag = nil
		}
		c.w.mu.Unlock()
	}
	c.wmu.Lock()
	c.early = nil
	c.wmu.Unlock()
	c.qmu.Lock()
	c.wq = nil
	c.qmu.Unlock()
	c.s.countOpen(c, -1)
}

// gone is the error of a send to the closed connection.
func (c *conn) gone() error {
	return fmt.Errorf("stream: %s flow %d to %s: %w", c.s.kind, c.id, c.peer, transport.ErrFlowGone)
}

// wire is the net.Conn under a tls.Conn: blocking during the handshake;
// then reads go straight to the socket without blocking (wire.Read runs
// inside the read callback) and writes go through the write queue.
type wire struct {
	*net.TCPConn
	c *conn
}

func (w *wire) Read(p []byte) (int, error) {
	c := w.c
	if c.rawFD < 0 {
		return w.TCPConn.Read(p)
	}
	for {
		n, err := readNB(c.rawFD, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (w *wire) Write(p []byte) (int, error) {
	if !w.c.nonblockW.Load() {
		return w.TCPConn.Write(p)
	}
	if err := w.c.writeRaw(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
