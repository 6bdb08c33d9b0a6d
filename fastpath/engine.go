package fastpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// LocalResponseHandler receives responses addressed to Viaduct itself: those
// whose only Via is Viaduct's, with a valid MAC (replies to requests built
// with Engine.AppendVia, such as health probes). It is called synchronously
// on the worker goroutine that received the response, so it must be quick
// and must not block; m and its bytes are reused as soon as it returns and
// must not be retained (copy what is needed).
type LocalResponseHandler func(m *parser.Message, from netip.AddrPort)

// Engine is Viaduct's stateless forwarding engine: a set of workers, each
// owning one SO_REUSEPORT socket per listen address, that parse, check,
// choose a destination for and rewrite every datagram on the worker
// goroutine that read it. Create it with New, start it with Start (or Run)
// and stop it with Close.
type Engine struct {
	cfg       Config
	adv       advertise
	viaPrefix [][]byte         // per listen index: "Via: SIP/2.0/<transport> <sent-by>;branch="
	rrLine    [][]byte         // per listen index: "Record-Route: <sip:<sent-by>;lr>\r\n"
	pathStart [][]byte         // per listen index: "Path: <sip:<sent-by>;lr;received="
	picker    Picker           // Config.Picker; nil: pick from pool
	pool      *balancer.Pool   // the default pool, nil with Config.Picker
	listen    []netip.AddrPort // bound addresses (real ports after Start)
	log       *slog.Logger

	// route is what a reload replaces (Update): the upstream set and the
	// key policy, immutable once published, loaded once per request.
	route    atomic.Pointer[routing]
	updateMu sync.Mutex // serializes Update

	localHandler atomic.Pointer[LocalResponseHandler]
	respObserver atomic.Pointer[ResponseObserver]
	nextCursor   atomic.Uint64 // seeds the workers' round-robin cursors

	mu        sync.Mutex // guards what follows
	viaMac    *macer     // for AppendVia
	conns     [][]*udp.Conn
	workers   []*Worker
	parkAfter time.Duration // Config.ParkAfter as used (0 if there are more workers than Ps)
	state     int           // 0 new, 1 started, 2 closed
	wg        sync.WaitGroup
}

// New validates cfg, applies its defaults and returns an Engine that is not
// yet listening. A bad configuration is reported as a *FieldError naming the
// field. logger may be nil (no logging).
func New(cfg Config, logger *slog.Logger) (*Engine, error) {
	c, adv, err := cfg.withDefaults(true)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:    c,
		adv:    adv,
		log:    logger,
		listen: append([]netip.AddrPort(nil), c.Listen...),
	}
	for i, l := range e.listen {
		e.listen[i] = netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
	}
	targets := poolTargets(&c)
	e.route.Store(newRouting(targets, c.Keys))
	e.picker = c.Picker
	if e.picker == nil {
		pool, err := balancer.NewPool(targets, balancer.Options{Mode: c.Balance})
		if err != nil {
			return nil, fmt.Errorf("fastpath: upstreams: %w", err)
		}
		e.pool = pool
	}
	e.buildAdvertise()
	e.viaMac = newMacer(c.Secret)
	return e, nil
}

// buildAdvertise renders the Via prefix, Record-Route line and Path start
// of every listen address. They carry the advertised address, except that a message
// sent from a listen address of the other IP family than an advertised IP
// literal carries that listen address (when it is a specific one): an IPv6
// next hop must be able to answer over IPv6.
func (e *Engine) buildAdvertise() {
	e.viaPrefix = make([][]byte, len(e.listen))
	e.rrLine = make([][]byte, len(e.listen))
	e.pathStart = make([][]byte, len(e.listen))
	for i, l := range e.listen {
		sentBy := e.adv.sentBy
		if e.adv.addr.IsValid() && e.adv.addr.Is4() != l.Addr().Is4() && !l.Addr().IsUnspecified() {
			sentBy = l.String()
		}
		e.viaPrefix[i] = []byte("Via: SIP/2.0/" + e.listenKind(i).ViaToken() + " " + sentBy + ";branch=")
		e.rrLine[i] = []byte("Record-Route: <sip:" + sentBy + ";lr>\r\n")
		e.pathStart[i] = []byte("Path: <sip:" + sentBy + ";lr;received=")
	}
}

// listenKind returns the transport of listen address i: UDP, the only
// one so far.
func (e *Engine) listenKind(int) transport.Kind { return transport.UDP }

// Pool returns the balancer pool built from Config.Upstreams or
// Config.Targets, through which health checks and admin actions steer the
// choice of upstream; nil when Config.Picker was given. Its target IDs are
// those of Config.Targets, or balancer.DefaultID("udp", addr).
func (e *Engine) Pool() *balancer.Pool { return e.pool }

// Targets returns the upstream targets as configured (defaults applied,
// initial states), in configuration order: the pool's targets, or the
// configured upstreams when Config.Picker was given. After an Update they
// are the targets it installed.
func (e *Engine) Targets() []balancer.Target {
	return append([]balancer.Target(nil), e.route.Load().targets...)
}

// Keys returns the key policy in use: Config.Keys (defaults applied), or
// the one the last Update installed.
func (e *Engine) Keys() *balancer.Policy { return e.route.Load().policy }

// Advertise returns the sent-by Viaduct puts in its Via ("host:port").
func (e *Engine) Advertise() string { return e.adv.sentBy }

// Config returns the configuration the engine was created with, defaults
// applied. Update does not change it: Targets and Keys return what is in
// use.
func (e *Engine) Config() Config { return e.cfg }

// ListenAddrs returns the listen addresses, with the ports the kernel chose
// for port 0 once Start has run.
func (e *Engine) ListenAddrs() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.listen...)
}

// SetLocalResponseHandler sets the handler for responses addressed to Viaduct
// itself (see LocalResponseHandler); nil removes it, and such responses are
// then counted and dropped. It may be called at any time.
func (e *Engine) SetLocalResponseHandler(h LocalResponseHandler) {
	if h == nil {
		e.localHandler.Store(nil)
		return
	}
	e.localHandler.Store(&h)
}

// ResponseObserver is told the source address and status code of every
// response Viaduct relays (one whose top Via was provably Viaduct's and that
// goes on to a previous hop), on the worker goroutine, before the response
// is forwarded. It must be quick, must not block and should not allocate:
// the passive health check (health.Checker.ObserveResponse) is one.
type ResponseObserver = func(from netip.AddrPort, status int)

// SetResponseObserver sets the response observer; nil removes it. It may
// be called at any time.
func (e *Engine) SetResponseObserver(o ResponseObserver) {
	if o == nil {
		e.respObserver.Store(nil)
		return
	}
	e.respObserver.Store(&o)
}

// AppendVia appends a complete Via header line ("Via: ...\r\n") for a
// request Viaduct originates itself (a health probe) to `to`, sent with
// SendTo: the response to such a request carries this Via alone, passes the
// MAC check and goes to the LocalResponseHandler. key distinguishes
// transactions (a probe counter, say) and ends up in the branch.
func (e *Engine) AppendVia(dst []byte, to netip.AddrPort, key uint64) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	listen := max(e.listenFor(0, to.Addr().Unmap()), 0)
	dst = append(dst, e.viaPrefix[listen]...)
	dst = e.viaMac.appendBranch(dst, listen, key, 0, nil)
	return append(dst, "\r\n"...)
}

// ParkAfter returns how long the workers wait in recvmmsg before they park
// in the netpoller: Config.ParkAfter, or 0 if the engine does not use it
// because its workers outnumber GOMAXPROCS (see Config.ParkAfter). It is
// only meaningful once the engine has started.
func (e *Engine) ParkAfter() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.parkAfter
}

// SendTo sends a request built with AppendVia to `to`, outside the workers'
// batches, from the listen address AppendVia chose (the first one of to's
// address family). The engine must be started.
func (e *Engine) SendTo(b []byte, to netip.AddrPort) error {
	e.mu.Lock()
	if e.state != 1 {
		e.mu.Unlock()
		return errors.New("fastpath: SendTo: engine not running")
	}
	listen := e.listenFor(0, to.Addr().Unmap())
	if listen < 0 {
		e.mu.Unlock()
		return fmt.Errorf("fastpath: SendTo %s: no listen address of its family", to)
	}
	c := e.conns[listen][0]
	e.mu.Unlock()
	if err := c.WriteTo(b, to); err != nil {
		return fmt.Errorf("fastpath: send to %s: %w", to, err)
	}
	return nil
}

// isSelf reports whether host:port (port 0 meaning 5060) names Viaduct: its
// advertised address or one of its specific listen addresses.
func (e *Engine) isSelf(host []byte, port int) bool {
	if port == 0 {
		port = 5060
	}
	if ip, ok := parser.ParseIP(host); ok {
		if e.adv.addr.IsValid() && ip == e.adv.addr && port == e.adv.port {
			return true
		}
		for _, l := range e.listen {
			if int(l.Port()) == port && l.Addr() == ip {
				return true
			}
		}
		return false
	}
	return port == e.adv.port && parser.EqualFold(host, e.adv.hostLow)
}

// isUpstream reports whether addr is a configured upstream.
func (e *Engine) isUpstream(addr netip.AddrPort) bool {
	return e.route.Load().isUpstream(addr)
}

// routing is the part of an engine's configuration that Update replaces
// while the workers run. It is immutable once published: a worker loads
// the current one once per request (one atomic load) and uses it for the
// whole request, so a request never sees half of a reload.
type routing struct {
	targets   []balancer.Target // normalized, in configuration order
	upstreams map[netip.AddrPort]struct{}
	policy    *balancer.Policy
	keys      keyPolicy // policy, compiled
}

func newRouting(targets []balancer.Target, keys *balancer.Policy) *routing {
	r := &routing{
		targets:   targets,
		upstreams: make(map[netip.AddrPort]struct{}, len(targets)),
		policy:    keys,
		keys:      compilePolicy(keys),
	}
	for _, t := range targets {
		r.upstreams[t.Addr] = struct{}{}
	}
	return r
}

// isUpstream reports whether addr is one of r's upstreams.
func (r *routing) isUpstream(addr netip.AddrPort) bool {
	_, ok := r.upstreams[addr]
	return ok
}

// listenFor returns the listen index to send to dst from: pref if its family
// fits, else the first listen address of dst's family, else -1.
func (e *Engine) listenFor(pref int, dst netip.Addr) int {
	want4 := dst.Is4()
	if pref >= 0 && pref < len(e.listen) && e.listen[pref].Addr().Is4() == want4 {
		return pref
	}
	for i, l := range e.listen {
		if l.Addr().Is4() == want4 {
			return i
		}
	}
	return -1
}

// Worker is the per-goroutine state of the fast path: a parser.Message, the
// MAC state, edit lists and scratch buffers, its counters, and (when started
// by the Engine) its socket and batches. A Worker is not safe for concurrent
// use.
type Worker struct {
	e       *Engine
	listen  int
	c       *counters
	m       parser.Message
	mac     *macer
	prevMac *macer // Config.PreviousSecret's, or nil
	xx      *xxhash.Digest
	edits   editList
	redits  editList
	scratch []byte
	keyBuf  []byte   // unescaped URI user parts for key hashing
	aorBuf  []byte   // user@host of an AOR key
	rr      uint64   // round-robin cursor (balancer.Table.Select)
	rt      *routing // the engine's routing, loaded at the start of each request
	req     reqState // the request being handled

	replyLines replyLines // the lines of a request being answered (reply.go)
	replyVia   parser.Via // its top Via
	up         *upCounters
	dlog       *dropLog // nil unless the logger is enabled at debug level (socket workers only)

	// socket loop (nil for workers made by NewWorker)
	conn   *udp.Conn   // the socket this worker reads
	peers  []*udp.Conn // same worker index, one per listen address (for sending)
	in     *udp.Batch
	outs   []*udp.Batch
	counts []int
	outv   []Output
	// batchFn is w.batch, bound once for ReadLoop.
	batchFn func(n int) bool
}

// NewWorker returns a Worker for listen address index listen that is not
// attached to any socket: Handle can be driven directly (tests, benchmarks,
// fuzzing). Its counters are its own (Worker.Stats), not part of
// Engine.Stats.
func (e *Engine) NewWorker(listen int) *Worker {
	if listen < 0 || listen >= len(e.listen) {
		panic("fastpath: NewWorker: listen index out of range")
	}
	return e.newWorker(listen)
}

// previousMacer returns the macer of Config.PreviousSecret, or nil if there
// is none.
func (e *Engine) previousMacer() *macer {
	if e.cfg.PreviousSecret == nil {
		return nil
	}
	return newMacer(e.cfg.PreviousSecret)
}

func (e *Engine) newWorker(listen int) *Worker {
	return &Worker{
		e:       e,
		listen:  listen,
		c:       new(counters),
		mac:     newMacer(e.cfg.Secret),
		prevMac: e.previousMacer(),
		xx:      xxhash.New(),
		scratch: make([]byte, 0, 1024+len(e.adv.sentBy)+len(e.listen[listen].String())),
		keyBuf:  make([]byte, 0, maxKeyUnescape),
		aorBuf:  make([]byte, 0, 2*maxKeyUnescape),
		rr:      e.nextCursor.Add(1) - 1,
		rt:      e.route.Load(),
		up:      newUpCounters(e.numTargets()),
	}
}

// numTargets is the number of targets of the default pool (0 with a
// Picker), to size the per-upstream counters.
func (e *Engine) numTargets() int {
	if e.pool == nil {
		return 0
	}
	return e.pool.Table().Len()
}

// Stats returns a snapshot of the worker's counters.
func (w *Worker) Stats() Stats {
	var s Stats
	w.c.snapshot(&s)
	if w.conn != nil {
		s.KernelDrops = w.conn.Drops()
	}
	return s
}

// OutputBufferSize is the capacity an Output.Buf needs so that Handle never
// grows it: MaxMessageSize plus room for what a rewrite adds.
func (e *Engine) OutputBufferSize() int { return e.cfg.MaxMessageSize + headroom }

// Start binds Workers sockets on every listen address (SO_REUSEPORT; an
// address another socket holds is an error wrapping syscall.EADDRINUSE
// unless Config.ReusePort, see udp.ListenGroup) and starts the workers. ctx bounds the socket setup only; stop the engine with
// Close.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.bindLocked(ctx); err != nil {
		return err
	}
	for _, w := range e.workers {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			w.run()
		}()
	}
	e.state = 1
	e.log.Info("fastpath started", "listen", fmt.Sprint(e.listen), "advertise", e.adv.sentBy,
		"workers_per_listen", e.cfg.Workers, "upstreams", len(e.route.Load().targets), "balance", e.cfg.Balance.String(), "record_route", e.cfg.RecordRoute, "path", e.cfg.Path,
		"max_message_size", e.cfg.MaxMessageSize, "batch", e.cfg.Batch, "park_after", e.parkAfter,
		"recv_buffer", e.conns[0][0].RecvBufferSize(), "send_buffer", e.conns[0][0].SendBufferSize())
	return nil
}

// bindLocked opens the sockets and builds the workers, without starting
// them. e.mu is held.
func (e *Engine) bindLocked(ctx context.Context) error {
	if e.state != 0 || e.conns != nil {
		return errors.New("fastpath: Start: engine already started")
	}
	nw := e.cfg.Workers
	e.parkAfter = e.cfg.ParkAfter
	if total, procs := nw*len(e.listen), runtime.GOMAXPROCS(0); e.parkAfter > 0 && total > procs {
		e.log.Info("park_after not used: a worker waiting in recvmmsg keeps its P, and there are more workers than Ps",
			"park_after", e.parkAfter, "workers", total, "gomaxprocs", procs)
		e.parkAfter = 0
	}
	ucfg := udp.Config{ShareAddress: e.cfg.ReusePort, RecvBuffer: e.cfg.RecvBuffer, SendBuffer: e.cfg.SendBuffer, BatchSize: e.cfg.Batch, ParkAfter: e.parkAfter}
	conns := make([][]*udp.Conn, len(e.listen))
	closeAll := func() {
		for _, cs := range conns {
			for _, c := range cs {
				c.Close()
			}
		}
	}
	for li, addr := range e.listen {
		g, err := udp.ListenGroup(ctx, addr, nw, ucfg)
		if err != nil {
			closeAll()
			return fmt.Errorf("fastpath: listen[%d]: %w", li, err)
		}
		e.listen[li] = g[0].LocalAddr()
		conns[li] = g
	}
	// With port 0 the advertised port is only known now.
	if e.adv.port == 0 {
		e.adv.port = int(e.listen[0].Port())
		if e.adv.isIPv6 {
			e.adv.sentBy = "[" + e.adv.host + "]:" + strconv.Itoa(e.adv.port)
		} else {
			e.adv.sentBy = e.adv.host + ":" + strconv.Itoa(e.adv.port)
		}
	}
	e.buildAdvertise()
	e.conns = conns
	slot := e.cfg.MaxMessageSize + 1 // one more byte than the limit: oversize is detectable
	for li := range e.listen {
		for wi := 0; wi < nw; wi++ {
			w := e.newWorker(li)
			w.conn = conns[li][wi]
			w.dlog = e.newDropLog(w.c, nw*len(e.listen))
			w.peers = make([]*udp.Conn, len(e.listen))
			w.outs = make([]*udp.Batch, len(e.listen))
			for lj := range e.listen {
				w.peers[lj] = conns[lj][wi]
				w.outs[lj] = udp.NewBatch(e.cfg.Batch, 0)
			}
			w.counts = make([]int, len(e.listen))
			w.in = udp.NewBatch(e.cfg.Batch, slot)
			w.batchFn = w.batch
			w.outv = make([]Output, e.cfg.Batch)
			n := e.OutputBufferSize()
			bufs := make([]byte, e.cfg.Batch*n)
			for i := range w.outv {
				w.outv[i].Buf = bufs[i*n : i*n : (i+1)*n]
			}
			e.workers = append(e.workers, w)
		}
	}
	return nil
}

// Run starts the engine and blocks until ctx is cancelled, then closes it.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return e.Close()
}

// Close stops the workers and closes every socket. It waits for the workers
// to finish the batch they are processing.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.state == 2 {
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	var errs []error
	for _, cs := range e.conns {
		for _, c := range cs {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	e.mu.Unlock()
	e.wg.Wait()
	return errors.Join(errs...)
}

// Stats returns the sum of every worker's counters, with the kernel drops of
// every socket. It is safe to call concurrently with the workers.
func (e *Engine) Stats() Stats {
	var sum Stats
	for _, s := range e.WorkerStats(nil) {
		sum.Add(&s)
	}
	return sum
}

// WorkerStats appends one Stats per worker to dst (in listen, then worker
// order) and returns it.
func (e *Engine) WorkerStats(dst []Stats) []Stats {
	e.mu.Lock()
	ws := e.workers
	e.mu.Unlock()
	for _, w := range ws {
		dst = append(dst, w.Stats())
	}
	return dst
}

// run is the worker loop; it returns when the socket is closed. The
// socket's ReadLoop hands each received batch to w.batch.
func (w *Worker) run() {
	for {
		err := w.conn.ReadLoop(w.in, w.batchFn)
		if err == nil || errors.Is(err, net.ErrClosed) {
			return
		}
		w.e.log.Debug("socket error", "listen", w.e.listen[w.listen], "err", err)
	}
}

// batch is one turn of the worker loop, for the n datagrams just received
// into w.in: handle each into its own output buffer, then write the
// outputs in order, one batch per sending socket. It always asks for more.
func (w *Worker) batch(n int) bool {
	w.processBatch(n)
	for li, k := range w.counts {
		if k == 0 {
			continue
		}
		ob := w.outs[li]
		_, err := w.peers[li].WriteBatch(ob, k)
		for i := 0; i < k; i++ {
			msg := &ob.Msgs[i]
			if msg.Err == nil {
				// Bytes first: a reader that sees the datagram counted
				// sees its bytes too.
				w.c.bytesOut.add(uint64(msg.N))
				w.c.dgOut.inc()
			} else {
				w.c.drops[DropSendError].inc()
				if w.dlog != nil {
					w.dlog.logSendError(msg.Buf[:msg.N], msg.Addr, msg.Err)
				}
			}
			msg.Buf = nil
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			w.e.log.Debug("socket error", "listen", w.e.listen[li], "err", err)
		}
	}
	if w.dlog != nil {
		w.dlog.logBatch(w.in.Msgs[:n], w.outv[:n])
	}
	return true
}

// processBatch handles w.in.Msgs[:n] and queues the outputs in w.outs.
func (w *Worker) processBatch(n int) {
	for i := range w.counts {
		w.counts[i] = 0
	}
	for i := 0; i < n; i++ {
		msg := &w.in.Msgs[i]
		o := &w.outv[i]
		switch w.Handle(msg.Buf, msg.Addr, o) {
		case ActionForward, ActionReply:
			li := o.Listen
			w.outs[li].Msgs[w.counts[li]].SetData(o.Buf, o.To)
			w.counts[li]++
		}
	}
}
