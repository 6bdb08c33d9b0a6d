package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// Bind returns the transport.Binder of stream servers of kind (TCP or
// TLS) with configuration c (defaults applied when bound). log receives
// the server's notices; nil discards them.
func Bind(c ServerConfig, kind transport.Kind, log *slog.Logger) transport.Binder {
	return func(ctx context.Context, l transport.Layout) (transport.Server, error) {
		return NewServer(ctx, l, c, kind, log)
	}
}

// Server is a transport.Server for TCP or TLS: a listener per address,
// Layout.Workers handlers per listener, and the connections, accepted and
// dialled, each bound to one worker for its life.
type Server struct {
	cfg    ServerConfig
	kind   transport.Kind
	ws     bool      // WS or WSS: an HTTP upgrade, then WebSocket frames (ws.go)
	frames sync.Pool // *[]byte: WebSocket frames being put together (writeFramed)
	layout transport.Layout
	log    *slog.Logger
	lns    []*net.TCPListener
	addrs  []netip.AddrPort
	tls    *tlsMaterial // TLS only

	table    *table
	bucket   *tokenBucket
	warnings *tokenBucket // failed dials logged as warnings: one a second, bursts of 10
	count    counters
	nextFlow atomic.Uint64

	ctx    context.Context // cancelled by Close: ends dials
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	workers [][]*worker // [listener][worker], set by Serve
	rr      []atomic.Uint32
	closed  bool
	names   map[netip.AddrPort]string // SetServerName
}

// worker is one handler and what its connections share: the read buffer,
// the output, the pools of pending-message buffers. Its mutex makes the
// handler's calls one at a time.
type worker struct {
	mu      sync.Mutex
	h       transport.Handler
	flusher transport.Flusher // h, when it holds its sends until a read's messages are handled
	rbuf    []byte            // every read of the worker's connections lands here
	out     transport.Outbound
	replies []byte     // the answers to one read's messages, written together
	sizes   []int      // the pending buffers' size classes, ascending, the last MaxMessage+1
	free    [][][]byte // per size class
}

// maxReplies is the size of a worker's batch of answers (at least
// Layout.OutputSize).
const maxReplies = 64 << 10

// maxFreeBufs bounds the pending-message buffers a worker keeps for reuse
// per size class.
const maxFreeBufs = 64

// newWorker makes the worker of handler h for messages of up to
// maxMessage bytes and outputs of outputSize.
func newWorker(h transport.Handler, maxMessage, outputSize int) *worker {
	w := &worker{h: h, rbuf: make([]byte, max(maxMessage+1, 64<<10))}
	w.flusher, _ = h.(transport.Flusher)
	for _, size := range []int{1 << 10, 4 << 10, 16 << 10} {
		if size < maxMessage+1 {
			w.sizes = append(w.sizes, size)
		}
	}
	w.sizes = append(w.sizes, maxMessage+1)
	w.free = make([][][]byte, len(w.sizes))
	w.out.Buf = make([]byte, 0, outputSize)
	w.replies = make([]byte, 0, max(outputSize, maxReplies))
	return w
}

// getBuf returns an empty buffer of at least n bytes of capacity (n is at
// most MaxMessage+1): the smallest size class that holds n, so that a
// connection with the first bytes of a message pending holds little.
func (w *worker) getBuf(n int) []byte {
	for i, size := range w.sizes {
		if n > size {
			continue
		}
		if k := len(w.free[i]); k > 0 {
			b := w.free[i][k-1]
			w.free[i] = w.free[i][:k-1]
			return b
		}
		return make([]byte, 0, size)
	}
	panic(fmt.Sprintf("stream: pending buffer of %d bytes, over the largest class %d", n, w.sizes[len(w.sizes)-1]))
}

// putBuf gives a buffer of getBuf back.
func (w *worker) putBuf(b []byte) {
	for i, size := range w.sizes {
		if cap(b) == size && len(w.free[i]) < maxFreeBufs {
			w.free[i] = append(w.free[i], b[:0])
			return
		}
	}
}

// NewServer validates c, listens on the addresses of layout l and returns
// the server of kind (TCP or TLS), which accepts from Serve on. ctx bounds
// the setup.
func NewServer(ctx context.Context, l transport.Layout, c ServerConfig, kind transport.Kind, log *slog.Logger) (*Server, error) {
	if !kind.Reliable() {
		return nil, fmt.Errorf("stream: kind %v is not a stream transport of this package", kind)
	}
	c, err := c.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if l.Workers < 1 || len(l.Addrs) == 0 || l.MaxMessage < 1 || l.OutputSize < 1 {
		return nil, fmt.Errorf("%s: invalid layout: %d workers, %d addresses, max message %d, output size %d",
			kind, l.Workers, len(l.Addrs), l.MaxMessage, l.OutputSize)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: c, kind: kind, layout: l, log: log, table: newTable(),
		bucket: newTokenBucket(c.AcceptRate, c.AcceptBurst), warnings: newTokenBucket(1, 10), names: make(map[netip.AddrPort]string)}
	s.ws = kind == transport.WS || kind == transport.WSS
	s.frames.New = func() any { b := make([]byte, 0, 2<<10); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.count.openIn, s.count.openOut = make([]atomic.Int64, len(l.Addrs)), make([]atomic.Int64, len(l.Addrs))
	s.rr = make([]atomic.Uint32, len(l.Addrs))
	if kind.Secure() {
		if c.CertFile == "" {
			return nil, fmt.Errorf("%s: tls: cert_file: required to listen", kind)
		}
		if s.tls, err = loadTLS(c); err != nil {
			return nil, fmt.Errorf("%s: tls: %w", kind, err)
		}
	}
	if err := s.listen(ctx); err != nil {
		s.closeListeners()
		return nil, err
	}
	return s, nil
}

// listen opens a listener per address.
func (s *Server) listen(ctx context.Context) error {
	// No TCP keepalive (four setsockopt calls per accepted connection):
	// the idle timeout closes connections whose peer went silent. No
	// MPTCP, the default since Go 1.24: its accept path and the check for
	// a fallen-back connection cost every plain TCP client.
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	if s.cfg.ReusePort {
		lc.Control = reusePort
	}
	for li, addr := range s.layout.Addrs {
		ln, err := lc.Listen(ctx, "tcp", addr.String())
		if err != nil {
			return fmt.Errorf("%s: listen[%d]: %w", s.kind, li, err)
		}
		tl := ln.(*net.TCPListener)
		s.lns = append(s.lns, tl)
		s.addrs = append(s.addrs, unmap(tl.Addr().(*net.TCPAddr).AddrPort()))
	}
	return nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// Kind implements transport.Server: TCP or TLS.
func (s *Server) Kind() transport.Kind { return s.kind }

// Addrs implements transport.Server.
func (s *Server) Addrs() []netip.AddrPort { return append([]netip.AddrPort(nil), s.addrs...) }

// Origin implements transport.Server: a stream transport has no origin
// socket of its own; a probe leaves over a connection like any other
// request (see Originate), so this is the listener's address.
func (s *Server) Origin(listener int) netip.AddrPort { return s.addrs[listener] }

// Originate implements transport.Server: Send with Flow 0, over an open
// connection to to.Addr on to.Listener or a new one dialled from the
// listener's address. Its responses come back on that connection to the
// listener's handlers.
func (s *Server) Originate(b []byte, to transport.Peer) error {
	to.Flow = 0
	return s.Send(b, to)
}

// KernelDrops implements transport.Server: 0, a stream loses nothing
// without closing.
func (s *Server) KernelDrops(listener, worker int) uint64 { return 0 }

// LogValue implements slog.LogValuer: the settings in use.
func (s *Server) LogValue() slog.Value {
	c := &s.cfg
	return slog.GroupValue(slog.String("kind", s.kind.String()), slog.Int("max_connections", c.MaxConnections),
		slog.Int("max_connections_per_ip", c.MaxConnectionsPerIP), slog.Duration("idle_timeout", c.IdleTimeout),
		slog.Duration("message_timeout", c.MessageTimeout), slog.Int("write_queue", c.WriteQueue))
}

// SetServerName sets the name outbound TLS connections to addr verify the
// server's certificate against (and send as SNI); without one, the
// certificate must name addr's IP.
func (s *Server) SetServerName(addr netip.AddrPort, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[unmap(addr)] = name
}

func (s *Server) serverName(addr netip.AddrPort) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n, ok := s.names[addr]; ok {
		return n
	}
	return addr.Addr().String()
}

// Reload re-reads the TLS certificate, key and CA files for the
// handshakes to come; established connections keep theirs. On an error
// the files in use stay. A TCP server has nothing to reload.
func (s *Server) Reload() error {
	if s.tls == nil {
		return nil
	}
	return s.tls.load()
}

// Serve implements transport.Server: it makes the handlers and starts
// accepting.
func (s *Server) Serve(newHandler func(listener, worker int) transport.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.workers != nil {
		return
	}
	s.workers = make([][]*worker, len(s.lns))
	for li := range s.lns {
		for wi := range s.layout.Workers {
			s.workers[li] = append(s.workers[li], newWorker(newHandler(li, wi), s.layout.MaxMessage, s.layout.OutputSize))
		}
	}
	for li, ln := range s.lns {
		s.wg.Add(1)
		go s.accept(li, ln)
	}
}

// pick returns the worker of listener li a new connection is bound to,
// round robin; nil before Serve or after Close.
func (s *Server) pick(li int) *worker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.workers == nil || s.closed {
		return nil
	}
	ws := s.workers[li]
	return ws[int(s.rr[li].Add(1)-1)%len(ws)]
}

// accept accepts listener li's connections until it is closed.
func (s *Server) accept(li int, ln *net.TCPListener) {
	defer s.wg.Done()
	var pause time.Duration
	for {
		nc, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pause = clamp(pause*2, 5*time.Millisecond, time.Second) // out of descriptors: let some close
			s.log.Warn("accept failed", "transport", s.kind, "listen", s.addrs[li], "err", err, "pause", pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		s.admit(li, nc)
	}
}

// admit applies the limits to a new connection and serves it.
func (s *Server) admit(li int, nc *net.TCPConn) {
	peer := unmap(nc.RemoteAddr().(*net.TCPAddr).AddrPort())
	refuse := func(l Limit) {
		s.count.limits[l].Add(1)
		nc.SetLinger(0)
		nc.Close()
	}
	if !s.bucket.take(time.Now()) {
		refuse(LimitAcceptRate)
		return
	}
	if g := s.layout.Gate; g != nil && !g(peer) {
		refuse(LimitGate)
		return
	}
	w := s.pick(li)
	if w == nil {
		nc.Close()
		return
	}
	c := s.newConn(li, peer, false)
	c.w = w
	if err := c.attach(nc); err != nil {
		s.log.Warn("accept failed", "transport", s.kind, "peer", peer, "err", err)
		nc.Close()
		return
	}
	c.established = s.kind == transport.TCP // TLS: once the handshake is done; WebSocket: once upgraded
	if l, ok := s.table.admit(c, &s.cfg); !ok {
		refuse(l)
		return
	}
	s.countOpen(c, 1)
	s.count.accepted.Add(1)
	s.wg.Add(1)
	if s.kind.Secure() {
		go s.handshakeThenRead(c)
		return
	}
	c.start()
	go c.readLoop()
}

// handshakeThenRead runs an inbound TLS handshake, then starts the reader
// on a goroutine of its own, whose stack did not grow in the handshake.
func (s *Server) handshakeThenRead(c *conn) {
	if err := c.handshake(); err != nil {
		s.log.Debug("tls handshake failed", "peer", c.peer, "err", err)
		c.close(ClosedHandshake)
		c.release()
		s.wg.Done()
		return
	}
	if !s.ws { // a WebSocket is established by its upgrade
		if err := c.establish(); err != nil {
			c.close(ClosedWriteError)
		}
	}
	c.start()
	go c.readLoop() // inherits this goroutine's place in s.wg
}

// Send implements transport.Server: over connection to.Flow, or with
// Flow 0 over an open connection to to.Addr on listener to.Listener
// (dialled, or accepted from that address and port), or a new one dialled
// from the listener's address, b waiting in its queue until it connects.
// After a failed dial, sends to that address fail at once until the
// backoff has passed.
func (s *Server) Send(b []byte, to transport.Peer) error { return s.SendAll(b, nil, to) }

// SendAll implements transport.Coalescer: one write of every message (a
// WebSocket frame each), nil ends being one message.
func (s *Server) SendAll(b []byte, ends []int, to transport.Peer) error {
	if to.Listener < 0 || to.Listener >= len(s.lns) {
		return fmt.Errorf("%s: send to %s: no listener %d", s.kind, to.Addr, to.Listener)
	}
	if to.Flow == 0 && !to.Addr.IsValid() {
		return fmt.Errorf("%s: send without a flow or an address", s.kind)
	}
	if to.Kind != 0 && to.Kind != s.kind {
		return fmt.Errorf("%s: send to %s: peer is %s", s.kind, to.Addr, to.Kind)
	}
	c, err := s.route(to, b, msgs(ends))
	if err != nil || c == nil { // c nil: b went with a new connection
		return err
	}
	err = c.sendAll(b, ends)
	if err != nil && to.Flow == 0 && c.closed.Load() { // it closed under us: once more, over another
		if c, err = s.route(to, b, msgs(ends)); err == nil && c != nil {
			err = c.sendAll(b, ends)
		}
	}
	return err
}

var _ transport.Coalescer = (*Server)(nil)

// FlowOpen implements transport.Coalescer.
func (s *Server) FlowOpen(flow uint64) bool { return s.table.flow(flow) != nil }

// msgs is the number of messages a send of ends holds: nil is one.
func msgs(ends []int) int { return max(len(ends), 1) }

// route finds the connection a send of b (n messages) to `to` goes over;
// or dials one, b queued on it, and returns nil.
func (s *Server) route(to transport.Peer, b []byte, n int) (*conn, error) {
	if to.Flow != 0 {
		if c := s.table.flow(to.Flow); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("%s: send to %s: flow %d: %w", s.kind, to.Addr, to.Flow, transport.ErrFlowGone)
	}
	k := connKey{to.Listener, unmap(to.Addr)}
	if c := s.table.peer(k); c != nil {
		return c, nil
	}
	if s.ws { // a browser cannot be dialled
		return nil, fmt.Errorf("%s: send to %s: no connection from it: %w", s.kind, to.Addr, transport.ErrFlowGone)
	}
	return s.dialFor(k, b, n)
}

// Close implements transport.Server: it stops accepting, closes every
// connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.closeListeners()
	s.table.mu.Lock()
	s.table.closed = true
	s.table.mu.Unlock()
	for _, c := range s.table.all() {
		c.close(ClosedShutdown)
	}
	s.wg.Wait()
	return nil
}

// OpenTo reports how many connections are open to addr, over every
// listener, accepted or dialled (the persistent connection to an upstream).
func (s *Server) OpenTo(addr netip.AddrPort) int {
	addr = unmap(addr)
	n := 0
	for li := range s.addrs {
		if s.table.peer(connKey{li, addr}) != nil {
			n++
		}
	}
	return n
}
