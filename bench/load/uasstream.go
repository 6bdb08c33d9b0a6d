package load

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// The UAS on tcp and tls: an accept loop, and a goroutine per connection
// that frames requests (RFC 3261 18.3), answers them as a UDP worker
// does, and writes the responses back on that connection, all of one read
// in one write. A connection whose bytes cannot be framed is closed.

// handshakeTimeout bounds a TLS handshake on an accepted connection.
const handshakeTimeout = 10 * time.Second

// maxOpenFiles is the open-files limit a stream UAS asks for: Linux's
// default ceiling (fs.nr_open).
const maxOpenFiles = 1 << 20

// streamFlushAt is how many response bytes a connection's worker gathers
// before writing them out in the middle of a read's requests.
const streamFlushAt = 32 << 10

// uasStream is a UAS's listener and connections.
type uasStream struct {
	s      *UAS
	ln     net.Listener
	tls    *tls.Config
	shards []*uasStats // connection i counts into shard i % len
	sdp    []byte
	// contact is the Contact header field of our 2xx to INVITE.
	contact []byte
	open    atomic.Int64

	mu     sync.Mutex
	live   map[net.Conn]struct{}
	closed bool
}

// listenStream opens the listener and starts accepting.
func (s *UAS) listenStream() error {
	ln, err := net.Listen("tcp", s.cfg.Listen.String())
	if err != nil {
		return err
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	s.addr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	st := &uasStream{s: s, ln: ln, live: make(map[net.Conn]struct{})}
	if s.cfg.Transport == transport.TLS {
		st.tls = s.cfg.TLS
		if st.tls == nil {
			if st.tls, err = ServerTLSConfig("", "", s.addr.Addr().String()); err != nil {
				ln.Close()
				return err
			}
		}
	}
	// Best effort: a connection is a descriptor, and a responder for the
	// idle-connections benchmark holds tens of thousands; where the limit
	// cannot be raised, accepting beyond it waits and retries.
	_, _ = raiseOpenFiles(maxOpenFiles)
	st.shards = make([]*uasStats, 4*gomaxprocs())
	for i := range st.shards {
		st.shards[i] = &uasStats{shared: true}
	}
	st.sdp, st.contact = s.answerParts(s.addr)
	s.stream = st
	s.wg.Go(st.accept)
	return nil
}

// accept accepts connections until the listener closes.
func (st *uasStream) accept() {
	for i := 0; ; i++ {
		c, err := st.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, most likely
			continue
		}
		stats := st.shards[i%len(st.shards)]
		stats.inc(uAccepted)
		if !st.track(c) {
			c.Close()
			return
		}
		st.s.wg.Go(func() { st.serve(c, stats) })
	}
}

// track records c as live for Close; false once the UAS is closing.
func (st *uasStream) track(c net.Conn) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return false
	}
	st.live[c] = struct{}{}
	st.open.Add(1)
	return true
}

func (st *uasStream) untrack(c net.Conn) {
	st.mu.Lock()
	delete(st.live, c)
	st.mu.Unlock()
	st.open.Add(-1)
}

// serve answers the requests of one connection until it ends.
func (st *uasStream) serve(raw net.Conn, stats *uasStats) {
	defer func() {
		raw.Close()
		st.untrack(raw)
		stats.inc(uClosed)
	}()
	c := raw
	if st.tls != nil {
		tc := tls.Server(raw, st.tls)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			stats.inc(uTLSFail)
			return
		}
		c = tc
	}
	w := st.newWorker(c, stats)
	w.serveStream()
	w.forgetQueue()
}

// forgetQueue takes the INVITEs still waiting in the delay queue of a
// connection that ended out of the cancel table: their responses will not
// be sent, and a CANCEL for them gets its 200 only.
func (w *uasWorker) forgetQueue() {
	for ; w.qLen > 0; w.qLen-- {
		p := w.q[w.qHead]
		w.q[w.qHead] = nil
		w.qHead = (w.qHead + 1) % len(w.q)
		if p.key == 0 {
			continue
		}
		sh := &w.s.cancels.shards[w.s.cancels.shard(p.key)]
		sh.mu.Lock()
		if sh.m[p.key] == p {
			delete(sh.m, p.key)
		}
		sh.mu.Unlock()
	}
}

// newWorker returns the worker answering on connection c.
func (st *uasStream) newWorker(c net.Conn, stats *uasStats) *uasWorker {
	w := &uasWorker{s: st.s, st: stats, tag: make([]byte, 0, 24), sconn: c, sdp: st.sdp, contact: st.contact,
		fr: newFrameReader(c, 4096)}
	w.slotN = 4096 + len(w.sdp)
	w.wbuf = make([]byte, 0, w.slotN)
	if ap, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		w.peer = ap.AddrPort()
	}
	return w
}

// serveStream is a connection worker's loop: read, answer every whole
// request read, send the responses whose delay passed, write.
func (w *uasWorker) serveStream() {
	var deadline int64
	for !w.broken {
		if w.qLen > 0 {
			if due := w.q[w.qHead].due; deadline != due {
				deadline = due
				w.sconn.SetReadDeadline(w.s.epoch.Add(time.Duration(due)))
			}
		} else if deadline != 0 {
			deadline = 0
			w.sconn.SetReadDeadline(time.Time{})
		}
		err := w.fr.fill()
		w.now = w.s.nanotime()
		if err != nil {
			if !isTimeout(err) {
				return
			}
			deadline = -1 // force setting it again
		}
		if !w.answerFramed() {
			w.flush()
			return
		}
		w.fireDue()
		w.flush()
	}
}

// answerFramed answers every whole request in the read buffer; false on a
// framing error, after which the connection is closed.
func (w *uasWorker) answerFramed() bool {
	for {
		m, err := w.fr.frame()
		if err != nil {
			w.st.inc(uFraming)
			return false
		}
		if m == nil {
			return true
		}
		w.handle(m, w.peer)
	}
}

// nextStream returns room for the next response at the end of the write
// buffer, writing out what is gathered once it is large.
func (w *uasWorker) nextStream() []byte {
	if cap(w.wbuf)-len(w.wbuf) < w.slotN {
		if len(w.wbuf) >= streamFlushAt {
			w.flushStream()
		}
		if cap(w.wbuf)-len(w.wbuf) < w.slotN {
			nb := make([]byte, len(w.wbuf), 2*cap(w.wbuf)+w.slotN)
			copy(nb, w.wbuf)
			w.wbuf = nb
		}
	}
	n := len(w.wbuf)
	return w.wbuf[n : n : n+w.slotN]
}

// queueStream appends response b, built in nextStream's room, to what is
// to be written.
func (w *uasWorker) queueStream(b []byte) {
	n := len(w.wbuf)
	if len(b) > 0 && n+len(b) <= cap(w.wbuf) && &w.wbuf[:n+1][n] == &b[0] {
		w.wbuf = w.wbuf[:n+len(b)]
	} else {
		w.wbuf = append(w.wbuf, b...)
	}
	w.nOut++
}

// flushStream writes the gathered responses in one write; a failed write
// ends the connection.
func (w *uasWorker) flushStream() {
	if len(w.wbuf) == 0 {
		return
	}
	if w.sink != nil {
		w.sink(w.wbuf, w.peer)
	} else if !w.broken {
		if _, err := w.sconn.Write(w.wbuf); err != nil {
			w.broken = true
		}
	}
	if w.broken {
		w.st.add(uSendErr, uint64(w.nOut))
	}
	w.wbuf, w.nOut = w.wbuf[:0], 0
}

// close stops accepting and closes every connection.
func (st *uasStream) close() error {
	st.mu.Lock()
	st.closed = true
	for c := range st.live {
		c.Close()
	}
	st.mu.Unlock()
	return st.ln.Close()
}

// counts adds the connections' counters to c.
func (st *uasStream) counts(c *UASCounts) {
	f := c.fields()
	for _, sh := range st.shards {
		for k := range f {
			*f[k] += sh.c[k].Load()
		}
		for i := range c.Codes {
			c.Codes[i] += sh.codes[i].Load()
		}
	}
}

// Conns returns the connections open now (0 on udp).
func (s *UAS) Conns() int {
	if s.stream == nil {
		return 0
	}
	return int(s.stream.open.Load())
}
