package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/viaduct-sip/viaduct/transport"
)

// The engine's lifecycle: Start binds the transport and serves it with one
// Worker per transport worker; Close stops it.

// Start binds the listen addresses through Config.Transport and starts its
// workers, each with a Worker of its own. ctx bounds the setup only; stop
// the engine with Close.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return errors.New("fastpath: Start: engine already started")
	}
	if e.cfg.Transport == nil {
		return errors.New("fastpath: Start: no Config.Transport")
	}
	srv, err := e.cfg.Transport(ctx, transport.Layout{Addrs: e.listen, Workers: e.cfg.Workers,
		MaxMessage: e.cfg.MaxMessageSize, OutputSize: e.OutputBufferSize(), Gate: e.cfg.Gate})
	if err != nil {
		return fmt.Errorf("fastpath: %w", err)
	}
	e.bound(srv)
	srv.Serve(e.newSocketHandler)
	e.state = 1
	e.log.Info("fastpath started", "listen", fmt.Sprint(e.listen), "advertise", e.adv.sentBy,
		"workers_per_listen", e.cfg.Workers, "upstreams", len(e.route.Load().targets), "balance", e.cfg.Balance.String(),
		"record_route", e.cfg.RecordRoute, "path", e.cfg.Path, "max_message_size", e.cfg.MaxMessageSize, "transport", srv)
	return nil
}

// bound takes the addresses srv bound: with port 0 the advertised port is
// only known now. e.mu is held.
func (e *Engine) bound(srv transport.Server) {
	e.server = srv
	e.listen = srv.Addrs()
	e.origin = make([]netip.AddrPort, len(e.listen))
	for i := range e.listen {
		e.origin[i] = srv.Origin(i)
		e.kinds[i] = srv.Kind()
	}
	if e.adv.port == 0 {
		e.adv.port = int(e.listen[0].Port())
		if e.adv.isIPv6 {
			e.adv.sentBy = "[" + e.adv.host + "]:" + strconv.Itoa(e.adv.port)
		} else {
			e.adv.sentBy = e.adv.host + ":" + strconv.Itoa(e.adv.port)
		}
	}
	e.buildAdvertise()
	e.buildOriginVia()
}

// newSocketHandler makes the Worker of one transport worker, wrapped in
// Config.Stages (Server.Serve calls it from Start, with e.mu held).
func (e *Engine) newSocketHandler(listener, index int) transport.Handler {
	w := e.newWorker()
	w.server, w.listener, w.index = e.server, listener, index
	h := &socketHandler{w: w, dlog: e.newDropLog(w.c, e.cfg.Workers*len(e.listen))}
	e.handlers = append(e.handlers, h)
	at := transport.Position{Kind: e.kinds[listener], Listener: listener, Worker: index}
	var th transport.Handler = h
	for i := len(e.cfg.Stages) - 1; i >= 0; i-- {
		th = e.cfg.Stages[i](th, at)
	}
	return th
}

// Run starts the engine and blocks until ctx is cancelled, then closes it.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return e.Close()
}

// Close stops the workers and closes the transport. It waits for the
// workers to finish the batch they are handling.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.state == 2 {
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	srv := e.server
	e.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// ListenAddrs returns the listen addresses, with the ports the kernel chose
// for port 0 once Start has run.
func (e *Engine) ListenAddrs() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.listen...)
}
