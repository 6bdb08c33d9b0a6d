package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"time"

	"github.com/viaduct-sip/viaduct/transport/udp"
)

// The engine's lifecycle (Start, Run, Close) and the socket loop each
// worker runs.

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

// ParkAfter returns how long the workers wait in recvmmsg before they park
// in the netpoller: Config.ParkAfter, or 0 if the engine does not use it
// because its workers outnumber GOMAXPROCS (see Config.ParkAfter). It is
// only meaningful once the engine has started.
func (e *Engine) ParkAfter() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.parkAfter
}

// ListenAddrs returns the listen addresses, with the ports the kernel chose
// for port 0 once Start has run.
func (e *Engine) ListenAddrs() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.listen...)
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
