package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// The UAC on tcp and tls. A source owns its connections: it writes to
// them and closes them from its goroutine. It opens a shared connection
// itself; a call's own connection is opened by a goroutine of its own, so
// that the source goes on with its other calls meanwhile, and the call's
// first request leaves when the source hears it is open. Each connection
// has a reader goroutine that frames the responses and hands them to the
// source's inbox, where the source's loop picks them up as it picks up
// datagrams on udp; a reader whose connection ends says so through the
// inbox too, and the source then fails the calls that were waiting on it
// ("connection lost") and, for a shared connection, reopens it.

// connState is where a source's connection is.
type connState uint8

const (
	connOpen    connState = iota
	connBroken            // a write failed; its reader will report the end
	connClosed            // closed by the source: its end is no news
	connOpening           // a call's connection being opened
)

// streamConn is one connection of a UAC source.
type streamConn struct {
	c      net.Conn // nil while opening
	slot   int32    // the call it carries (per call), -1 when shared
	sentBy []byte   // its local address, for Via and Contact
	state  connState
	wdl    int64 // when the write deadline was last pushed (source clock)
}

// outMsg is a queued message: it ends at end in the write buffer and goes
// on conn.
type outMsg struct {
	end  int
	conn *streamConn
}

// uacStream is a source's connection state on a stream transport.
type uacStream struct {
	kind    transport.Kind
	perCall bool
	tls     *tls.Config
	dialer  net.Dialer
	target  string
	timeout time.Duration
	readers *sync.WaitGroup // the UAC's: Close waits for every reader and opener
	ctx     context.Context // ends the openings in progress at close
	cancel  context.CancelFunc

	in      *inbox
	batch   inboxBatch
	timer   *time.Timer
	shared  *streamConn
	dropped bool  // the shared connection dropped: the next open is a reconnect
	retryAt int64 // no new attempt at the shared connection before this
	conns   []*streamConn
	toClose []*streamConn
	wbuf    []byte
	queue   []outMsg
	batchN  int
	slotN   int
}

// writeTimeout bounds a write to a connection whose peer stopped reading.
const writeTimeout = 5 * time.Second

// reconnectPause is how long a source waits between attempts to reopen its
// shared connection.
const reconnectPause = 200 * time.Millisecond

func newUACStream(cfg *UACConfig, local netip.Addr, port int, maxCalls, slotN int, readers *sync.WaitGroup) *uacStream {
	st := &uacStream{
		kind: cfg.Transport, perCall: cfg.Connections == ConnPerCall, target: cfg.Target.String(),
		timeout: cfg.DialTimeout, readers: readers, in: newInbox(), timer: time.NewTimer(time.Hour),
		batchN: cfg.BatchSize, slotN: slotN, wbuf: make([]byte, 0, cfg.BatchSize*slotN),
		queue: make([]outMsg, 0, cfg.BatchSize),
	}
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.dialer.LocalAddr = &net.TCPAddr{IP: local.AsSlice(), Port: port}
	if port == 0 {
		// Choose the port at connect time, by the whole 4-tuple: a bind
		// to port 0 searches the range for a port free for the address
		// alone, slowly once many connections sit in TIME_WAIT.
		st.dialer.Control = bindNoPort
	}
	if st.kind.Secure() {
		st.tls = clientTLS(cfg.TLS, cfg.Target.Addr().String())
	}
	if st.perCall {
		st.conns = make([]*streamConn, maxCalls)
	}
	return st
}

// dial opens a connection to the target, TLS handshake included. Any
// goroutine may call it.
func (st *uacStream) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	c, err := st.dialer.DialContext(ctx, "tcp", st.target)
	if err == nil && st.tls != nil {
		tc := tls.Client(c, st.tls)
		if err = tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		c = tc
	}
	if err == nil && isWebSocket(st.kind) {
		var w *wsClient
		if w, err = wsUpgrade(c, st.target, st.timeout); err != nil {
			c.Close()
			return nil, err
		}
		c = w
	}
	return c, err
}

// open opens the shared connection and starts its reader.
func (st *uacStream) open(s *uacSource) (*streamConn, error) {
	c, err := st.dial(st.ctx)
	if err != nil {
		s.st.inc(cConnFailed)
		return nil, err
	}
	sc := &streamConn{slot: -1}
	st.adopt(s, sc, c)
	st.readers.Go(func() { st.read(sc, c) })
	return sc, nil
}

// adopt makes c, just opened, sc's connection.
func (st *uacStream) adopt(s *uacSource, sc *streamConn, c net.Conn) {
	s.st.inc(cConnOpened)
	if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().DidResume {
		s.st.inc(cResumed)
	}
	sc.c, sc.state, sc.wdl = c, connOpen, s.now
	ap := c.LocalAddr().(*net.TCPAddr).AddrPort()
	sc.sentBy = []byte(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String())
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
}

// read is a connection's reader: it frames what arrives on c into the
// inbox until the connection ends.
func (st *uacStream) read(sc *streamConn, c net.Conn) {
	f := newFrameReader(c, 4096)
	for {
		err := f.fill()
		if err == nil {
			err = st.in.deliver(f)
		}
		if err != nil {
			if !errors.Is(err, errInboxStopped) {
				st.in.connEnded(sc)
			}
			return
		}
	}
}

// canStart reports whether a new call has a connection to go on: on a
// shared connection that dropped, it tries to reopen it (at most every
// reconnectPause).
func (st *uacStream) canStart(s *uacSource) bool {
	if st.perCall || st.shared != nil {
		return true
	}
	if s.now < st.retryAt {
		return false
	}
	sc, err := st.open(s)
	if err != nil {
		st.retryAt = s.now + int64(reconnectPause)
		return false
	}
	st.shared = sc
	if st.dropped {
		s.st.inc(cReconnects)
		st.dropped = false
	}
	return true
}

// openFor starts opening call slot's own connection; its goroutine then
// reads from it. The source hears the outcome through the inbox (opened).
func (st *uacStream) openFor(slot int32) {
	sc := &streamConn{slot: slot, state: connOpening}
	st.conns[slot] = sc
	st.readers.Go(func() {
		c, err := st.dial(st.ctx)
		if !st.in.connOpened(opening{sc, c, err}) {
			if c != nil {
				c.Close()
			}
			return
		}
		if err == nil {
			st.read(sc, c)
		}
	})
}

// opened handles the outcome of opening a call's connection: the call's
// first request leaves on it, or the call fails ("connect failed"); a
// connection whose call has ended meanwhile is closed.
func (st *uacStream) opened(s *uacSource, o opening) {
	sc := o.sc
	if o.err != nil {
		s.st.inc(cConnFailed)
	} else {
		st.adopt(s, sc, o.conn)
	}
	if st.conns[sc.slot] != sc {
		st.close(sc) // the call ended (aborted) while it was opening
		return
	}
	c := &s.calls[sc.slot]
	if o.err != nil {
		st.conns[sc.slot] = nil
		sc.state = connClosed
		s.finish(sc.slot, c, false, cConnectFail, 0)
		return
	}
	s.sendInitial(sc.slot, c)
}

// connFor returns the connection call slot's messages go on.
func (st *uacStream) connFor(slot int32) *streamConn {
	if st.perCall {
		if slot < 0 {
			return nil
		}
		return st.conns[slot]
	}
	return st.shared
}

// callEnded closes call slot's own connection once what is queued for it
// has been written.
func (st *uacStream) callEnded(slot int32) {
	if !st.perCall {
		return
	}
	if sc := st.conns[slot]; sc != nil {
		st.conns[slot] = nil
		st.toClose = append(st.toClose, sc)
	}
}

// sentBy returns the address our Via and Contact name for call slot: the
// local address of its connection on a stream.
func (s *uacSource) sentBy(slot int32) []byte {
	if s.stream != nil {
		if sc := s.stream.connFor(slot); sc != nil {
			return sc.sentBy
		}
	}
	return s.hostport
}

// next returns room for the next message at the end of the write buffer,
// writing out the queue first when it is full.
func (st *uacStream) next(s *uacSource) []byte {
	if len(st.queue) == st.batchN || cap(st.wbuf)-len(st.wbuf) < st.slotN {
		st.flush(s)
	}
	n := len(st.wbuf)
	return st.wbuf[n:n:min(cap(st.wbuf), n+st.slotN)]
}

// send queues b, built by next's buffer, for call slot's connection.
func (st *uacStream) send(s *uacSource, slot int32, b []byte) {
	sc := st.connFor(slot)
	if sc == nil || sc.state != connOpen {
		s.st.inc(cSendErr) // no connection: the transaction will fail
		return
	}
	n := len(st.wbuf)
	if len(b) > 0 && n+len(b) <= cap(st.wbuf) && &st.wbuf[:n+1][n] == &b[0] {
		st.wbuf = st.wbuf[:n+len(b)]
	} else {
		st.wbuf = append(st.wbuf, b...) // outgrew its room: copied
	}
	st.queue = append(st.queue, outMsg{len(st.wbuf), sc})
	s.st.inc(cSent)
}

// flush writes the queued messages, consecutive ones for the same
// connection in one write, then closes the connections of ended calls.
func (st *uacStream) flush(s *uacSource) {
	start, first := 0, 0
	for i, m := range st.queue {
		if i+1 < len(st.queue) && st.queue[i+1].conn == m.conn {
			continue
		}
		st.write(s, m.conn, st.wbuf[start:m.end], i+1-first)
		start, first = m.end, i+1
	}
	st.wbuf, st.queue = st.wbuf[:0], st.queue[:0]
	for i, sc := range st.toClose {
		st.close(sc)
		st.toClose[i] = nil
	}
	st.toClose = st.toClose[:0]
}

// write writes b (n messages) to sc, pushing its write deadline forward
// at most once a second; a failed write breaks the connection.
func (st *uacStream) write(s *uacSource, sc *streamConn, b []byte, n int) {
	if sc.state != connOpen {
		s.st.add(cSendErr, uint64(n))
		return
	}
	if s.now-sc.wdl > int64(time.Second) {
		sc.wdl = s.now
		sc.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	s.st.inc(cWriteCalls)
	if _, err := sc.c.Write(b); err != nil {
		s.st.add(cSendErr, uint64(n))
		sc.state = connBroken
		sc.c.Close() // the reader reports the end; the calls fail then
	}
}

// close closes sc on purpose.
func (st *uacStream) close(sc *streamConn) {
	if sc.state != connClosed {
		sc.state = connClosed
		if sc.c != nil {
			sc.c.Close()
		}
	}
}

// closeAll closes every connection (the source has stopped) and lets the
// readers go.
func (st *uacStream) closeAll() {
	st.cancel()
	st.in.shutdown()
	if st.shared != nil {
		st.close(st.shared)
	}
	for _, sc := range st.conns {
		if sc != nil {
			st.close(sc)
		}
	}
	for _, sc := range st.toClose {
		st.close(sc)
	}
}

// wait sleeps until a message or a connection's end arrives in the inbox,
// or until wake (source clock), then handles what arrived.
func (st *uacStream) wait(s *uacSource, wake int64) {
	st.timer.Reset(time.Duration(wake - s.now))
	select {
	case <-st.in.wake:
	case <-st.timer.C:
	}
	s.now = s.u.nanotime()
	st.receive(s)
}

// receive handles what arrived in the inbox: connections opened, messages,
// then the ends of connections.
func (st *uacStream) receive(s *uacSource) {
	st.in.take(&st.batch)
	for i, o := range st.batch.opened {
		st.opened(s, o)
		st.batch.opened[i] = opening{}
	}
	if len(st.batch.refs) > 0 {
		s.st.inc(cReadCalls)
	}
	start := 0
	for _, r := range st.batch.refs {
		s.onDatagram(st.batch.buf[start:r.end])
		start = r.end
	}
	for i, sc := range st.batch.closed {
		st.ended(s, sc)
		st.batch.closed[i] = nil
	}
}

// ended handles the end of sc reported by its reader: unless the source
// closed it, the calls waiting on it fail, and a shared connection is
// reopened when the next call is due.
func (st *uacStream) ended(s *uacSource, sc *streamConn) {
	if sc.state == connClosed {
		return
	}
	st.close(sc)
	s.st.inc(cConnDropped)
	if st.perCall {
		if st.conns[sc.slot] != sc {
			return
		}
		st.conns[sc.slot] = nil
		if c := &s.calls[sc.slot]; c.state != stFree {
			s.finish(sc.slot, c, false, cConnLost, 0)
		}
		return
	}
	if st.shared != sc {
		return
	}
	st.shared, st.dropped, st.retryAt = nil, true, 0
	for i := range s.calls {
		if c := &s.calls[i]; c.state != stFree && c.state != stHolding {
			s.finish(int32(i), c, false, cConnLost, 0)
		}
	}
}
