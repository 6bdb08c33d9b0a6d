package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/viaduct-sip/viaduct/internal/config"
	"github.com/viaduct-sip/viaduct/transport"
)

// Defaults and bounds of ServerConfig.
const (
	// DefaultSocketBuffer is the SO_RCVBUF and SO_SNDBUF size requested for
	// every socket. The kernel caps it at net.core.rmem_max / wmem_max.
	DefaultSocketBuffer = 4 << 20
	// DefaultServerBatch is the number of datagrams a server worker reads
	// or writes per recvmmsg/sendmmsg call.
	DefaultServerBatch = 32
	// MaxServerBatch is the largest ServerConfig.Batch accepted.
	MaxServerBatch = 256
	// MaxParkAfter bounds ServerConfig.ParkAfter: waiting longer for the
	// next datagram saves nothing more and only keeps a thread from parking.
	MaxParkAfter = time.Second
)

// ServerConfig is the UDP transport's configuration block. The zero value
// of every field selects its default. Field names in errors are the keys of
// Viaduct's YAML file.
type ServerConfig struct {
	// ReusePort lets the workers' sockets share the listen addresses with
	// other processes' SO_REUSEPORT sockets (other Viaduct instances of
	// the same user, each started with ReusePort): the kernel spreads the
	// traffic over all of them by 4-tuple. False, the default: binding
	// refuses an address that another socket holds (address already in
	// use), so a second instance started by mistake cannot take part of
	// the first one's traffic (see ListenGroup).
	ReusePort bool

	// RecvBuffer and SendBuffer are the SO_RCVBUF / SO_SNDBUF sizes asked
	// for, in bytes. Default DefaultSocketBuffer.
	RecvBuffer, SendBuffer int

	// Batch is the number of datagrams per recvmmsg/sendmmsg call.
	// Default DefaultServerBatch; at most MaxServerBatch.
	Batch int

	// ParkAfter is how long a worker whose socket ran empty keeps waiting
	// for the next datagram inside recvmmsg, holding its thread, before it
	// parks in the Go netpoller (Config.ParkAfter). Zero, the default,
	// parks at once; at most MaxParkAfter. A waiting worker keeps its P,
	// so the server only uses it when every worker can have one (workers
	// × listeners <= GOMAXPROCS); otherwise it logs so and parks at once
	// (Server.ParkAfter reports what it uses).
	ParkAfter time.Duration
}

// WithDefaults returns c with its defaults applied, or a
// *config.FieldError naming the first field out of range.
func (c ServerConfig) WithDefaults() (ServerConfig, error) {
	if c.RecvBuffer == 0 {
		c.RecvBuffer = DefaultSocketBuffer
	}
	if c.RecvBuffer < 0 {
		return c, config.Errorf("recv_buffer", "must be positive, got %d", c.RecvBuffer)
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = DefaultSocketBuffer
	}
	if c.SendBuffer < 0 {
		return c, config.Errorf("send_buffer", "must be positive, got %d", c.SendBuffer)
	}
	if c.Batch == 0 {
		c.Batch = DefaultServerBatch
	}
	if c.Batch < 1 || c.Batch > MaxServerBatch {
		return c, config.Errorf("batch", "must be between 1 and %d, got %d", MaxServerBatch, c.Batch)
	}
	if c.ParkAfter < 0 || c.ParkAfter > MaxParkAfter {
		return c, config.Errorf("park_after", "must be 0 (park at once) to %v, got %v", MaxParkAfter, c.ParkAfter)
	}
	return c, nil
}

// Bind returns the transport.Binder of UDP servers with configuration c
// (defaults applied when bound). log receives the server's notices; nil
// discards them.
func Bind(c ServerConfig, log *slog.Logger) transport.Binder {
	return func(ctx context.Context, l transport.Layout) (transport.Server, error) {
		return NewServer(ctx, l, c, log)
	}
}

// Server is a transport.Server for UDP: for each listen address a
// SO_REUSEPORT group of one socket per worker, each read in batches by its
// worker goroutine, which hands every datagram to its Handler and then
// writes what the handlers asked to send, in order, in one batch per
// listener from the socket of the same worker index there. Each listener
// also has an origin socket of its own on an ephemeral port, for requests
// the proxy originates (Originate), read by one more worker.
type Server struct {
	cfg       ServerConfig
	layout    transport.Layout
	parkAfter time.Duration
	log       *slog.Logger
	conns     [][]*Conn // [listener][worker]; the last of each is the origin socket
	wg        sync.WaitGroup
	mu        sync.Mutex
	closed    bool
}

// NewServer validates c, binds the sockets of layout l and returns the
// server, whose workers start with Serve. ctx bounds the socket setup.
func NewServer(ctx context.Context, l transport.Layout, c ServerConfig, log *slog.Logger) (*Server, error) {
	c, err := c.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if l.Workers < 1 || len(l.Addrs) == 0 || l.MaxMessage < 1 || l.OutputSize < 1 {
		return nil, fmt.Errorf("udp: invalid layout: %d workers, %d addresses, max message %d, output size %d",
			l.Workers, len(l.Addrs), l.MaxMessage, l.OutputSize)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: c, layout: l, log: log, parkAfter: c.ParkAfter}
	s.layout.Addrs = append([]netip.AddrPort(nil), l.Addrs...)
	if total, procs := l.Workers*len(l.Addrs), runtime.GOMAXPROCS(0); s.parkAfter > 0 && total > procs {
		log.Info("park_after not used: a worker waiting in recvmmsg keeps its P, and there are more workers than Ps",
			"park_after", s.parkAfter, "workers", total, "gomaxprocs", procs)
		s.parkAfter = 0
	}
	if err := s.bind(ctx); err != nil {
		s.closeSockets()
		return nil, err
	}
	return s, nil
}

// bind opens every listener's group and origin socket.
func (s *Server) bind(ctx context.Context) error {
	ucfg := Config{ShareAddress: s.cfg.ReusePort, RecvBuffer: s.cfg.RecvBuffer, SendBuffer: s.cfg.SendBuffer,
		BatchSize: s.cfg.Batch, ParkAfter: s.parkAfter, Yield: s.layout.Conns}
	s.conns = make([][]*Conn, len(s.layout.Addrs))
	for li, addr := range s.layout.Addrs {
		g, err := ListenGroup(ctx, addr, s.layout.Workers, ucfg)
		if err != nil {
			return fmt.Errorf("udp: listen[%d]: %w", li, err)
		}
		s.conns[li] = g
		s.layout.Addrs[li] = g[0].LocalAddr()
		ocfg := Config{RecvBuffer: s.cfg.RecvBuffer, SendBuffer: s.cfg.SendBuffer, BatchSize: s.cfg.Batch}
		origin, err := ListenAddrPort(ctx, originAddr(g[0].LocalAddr()), ocfg)
		if err != nil {
			return fmt.Errorf("udp: listen[%d]: origin socket: %w", li, err)
		}
		s.conns[li] = append(s.conns[li], origin)
	}
	return nil
}

// Kind implements transport.Server: UDP.
func (s *Server) Kind() transport.Kind { return transport.UDP }

// originAddr is where a listener's origin socket binds: the wildcard
// address of the listen address's family, port 0. The kernel then gives
// each probe the source address of the route it takes, the host's own
// even when the listen address is one that several hosts share (anycast,
// ECMP): a reply sent back to that source (rport) reaches this host and
// this socket.
func originAddr(listen netip.AddrPort) netip.AddrPort {
	if listen.Addr().Is4() {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.AddrPortFrom(netip.IPv6Unspecified(), 0)
}

// Addrs implements transport.Server.
func (s *Server) Addrs() []netip.AddrPort {
	return append([]netip.AddrPort(nil), s.layout.Addrs...)
}

// Origin implements transport.Server: the address of listener's origin
// socket.
func (s *Server) Origin(listener int) netip.AddrPort {
	return s.conns[listener][s.layout.Workers].LocalAddr()
}

// Originate implements transport.Server.
func (s *Server) Originate(b []byte, to transport.Peer) error {
	if to.Listener < 0 || to.Listener >= len(s.conns) {
		return fmt.Errorf("udp: send to %s: no listener %d", to.Addr, to.Listener)
	}
	if err := s.conns[to.Listener][s.layout.Workers].WriteTo(b, to.Addr); err != nil {
		return fmt.Errorf("udp: send to %s: %w", to.Addr, err)
	}
	return nil
}

// Send implements transport.Server: one sendto(2) from the listener's
// first socket (its port is the listen port).
func (s *Server) Send(b []byte, to transport.Peer) error {
	if to.Listener < 0 || to.Listener >= len(s.conns) {
		return fmt.Errorf("udp: send to %s: no listener %d", to.Addr, to.Listener)
	}
	return s.conns[to.Listener][0].WriteTo(b, to.Addr)
}

// KernelDrops implements transport.Server.
func (s *Server) KernelDrops(listener, worker int) uint64 {
	if listener < 0 || listener >= len(s.conns) || worker < 0 || worker >= len(s.conns[listener]) {
		return 0
	}
	return s.conns[listener][worker].Drops()
}

// ParkAfter returns the ParkAfter the workers use: ServerConfig.ParkAfter,
// or 0 when the workers outnumber GOMAXPROCS.
func (s *Server) ParkAfter() time.Duration { return s.parkAfter }

// LogValue implements slog.LogValuer: the settings in use.
func (s *Server) LogValue() slog.Value {
	c := s.conns[0][0]
	return slog.GroupValue(slog.Int("batch", s.cfg.Batch), slog.Duration("park_after", s.parkAfter),
		slog.Bool("reuse_port", s.cfg.ReusePort), slog.Int("recv_buffer", c.RecvBufferSize()),
		slog.Int("send_buffer", c.SendBufferSize()))
}

// Serve implements transport.Server: one goroutine per socket.
func (s *Server) Serve(newHandler func(listener, worker int) transport.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for li := range s.conns {
		for wi := range s.conns[li] {
			w := s.newWorker(li, wi, newHandler(li, wi))
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				w.run()
			}()
		}
	}
}

// Close implements transport.Server.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.closeSockets()
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) closeSockets() error {
	var errs []error
	for _, g := range s.conns {
		for _, c := range g {
			if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// worker is one socket's read loop: its batches, its handler, and the
// sockets it sends from (one per listener, same worker index).
type worker struct {
	s        *Server
	listener int
	conn     *Conn
	h        transport.Handler
	flusher  transport.Flusher // h, when it holds its sends until a batch is handled
	in       *Batch
	outv     []transport.Outbound // outv[i] is what in.Msgs[i] gave
	senders  []*Conn              // per listener
	outs     []*Batch             // per listener
	queued   [][]int              // per listener: indexes into outv, in order
	loop     func(n int) bool     // w.batch, bound once for ReadLoop
}

func (s *Server) newWorker(listener, index int, h transport.Handler) *worker {
	batch, nl := s.cfg.Batch, len(s.conns)
	w := &worker{s: s, listener: listener, conn: s.conns[listener][index], h: h,
		in:      NewBatch(batch, s.layout.MaxMessage+1),
		outv:    make([]transport.Outbound, batch),
		senders: make([]*Conn, nl), outs: make([]*Batch, nl), queued: make([][]int, nl)}
	for lj := range s.conns {
		w.senders[lj] = s.conns[lj][index]
		w.outs[lj] = NewBatch(batch, 0)
		w.queued[lj] = make([]int, 0, batch)
	}
	n := s.layout.OutputSize
	bufs := make([]byte, batch*n)
	for i := range w.outv {
		w.outv[i].Buf = bufs[i*n : i*n : (i+1)*n]
	}
	w.flusher, _ = h.(transport.Flusher)
	w.loop = w.batch
	return w
}

// run reads until the socket is closed.
func (w *worker) run() {
	for {
		err := w.conn.ReadLoop(w.in, w.loop)
		if err == nil || errors.Is(err, net.ErrClosed) {
			return
		}
		w.s.log.Debug("socket error", "listen", w.conn.LocalAddr(), "err", err)
	}
}

// batch is one turn of the loop, for the n datagrams just read: handle
// each, then write the outputs, one batch per sending socket, and let the
// handler send what it held. It always asks for more.
func (w *worker) batch(n int) bool {
	w.handle(n)
	for li, q := range w.queued {
		if len(q) > 0 {
			w.write(li, q)
		}
	}
	if w.flusher != nil {
		w.flusher.Flush()
	}
	return true
}

// handle hands in.Msgs[:n] to the handler and queues what it returns.
func (w *worker) handle(n int) {
	for li := range w.queued {
		w.queued[li] = w.queued[li][:0]
	}
	for i := range n {
		msg := &w.in.Msgs[i]
		o := &w.outv[i]
		o.Buf = o.Buf[:0]
		src := transport.Peer{Addr: msg.Addr, Kind: transport.UDP, Listener: w.listener}
		if !w.h.Handle(msg.Buf, src, o) {
			continue
		}
		if o.To.Listener < 0 || o.To.Listener >= len(w.queued) {
			w.h.Sent(o, fmt.Errorf("udp: no listener %d", o.To.Listener))
			continue
		}
		q := w.queued[o.To.Listener]
		w.outs[o.To.Listener].Msgs[len(q)].SetData(o.Buf, o.To.Addr)
		w.queued[o.To.Listener] = append(q, i)
	}
}

// write sends the queued outputs of one listener and reports each.
func (w *worker) write(li int, q []int) {
	ob := w.outs[li]
	_, err := w.senders[li].WriteBatch(ob, len(q))
	for k, i := range q {
		msg := &ob.Msgs[k]
		w.h.Sent(&w.outv[i], msg.Err)
		msg.Buf = nil
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		w.s.log.Debug("socket error", "listen", w.senders[li].LocalAddr(), "err", err)
	}
}
