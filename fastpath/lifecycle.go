package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/viaduct-sip/viaduct/transport"
)

// The engine's lifecycle: Start binds one transport.Server per transport
// the listeners name and serves each with one Worker per transport worker;
// Close stops them.

// boundServer is one transport's Server and the engine's numbers of its
// listeners (the server numbers them from 0).
type boundServer struct {
	srv       transport.Server
	coalescer transport.Coalescer // srv, if it sends several messages in one write
	kind      transport.Kind
	globals   []int // per server listener: the engine's listener index
}

// listenerSite is where one of the engine's listeners lives.
type listenerSite struct {
	server, local int
}

// Start binds the listen addresses, one transport.Server per transport
// (Config.Transport for UDP, Config.Transports for the others), and starts
// their workers, each with a Worker of its own. ctx bounds the setup only;
// stop the engine with Close.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return errors.New("fastpath: Start: engine already started")
	}
	if err := e.bindAllRetrying(ctx); err != nil {
		return err
	}
	e.bound()
	for si := range e.servers {
		e.servers[si].srv.Serve(func(listener, worker int) transport.Handler {
			return e.newSocketHandler(si, listener, worker)
		})
	}
	e.state = 1
	e.log.Info("fastpath started", "listen", fmt.Sprint(e.listeners()), "advertise", e.adv.sentBy,
		"workers_per_listen", e.cfg.Workers, "upstreams", len(e.route.Load().targets), "balance", e.cfg.Balance.String(),
		"record_route", e.cfg.RecordRoute, "path", e.cfg.Path, "max_message_size", e.cfg.MaxMessageSize)
	return nil
}

// bindAllRetrying is bindAll, tried again a few times when a listener on
// port 0 could not have the port its twin of another transport got (UDP
// and TCP on one ip:0: the port the kernel gave UDP may be taken on TCP).
func (e *Engine) bindAllRetrying(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := e.bindAll(ctx)
		if err == nil || attempt == maxTwinAttempts || !e.hasTwins() || !errors.Is(err, syscall.EADDRINUSE) {
			return err
		}
		e.listen = e.configuredListen()
	}
}

// maxTwinAttempts bounds bindAllRetrying.
const maxTwinAttempts = 16

// hasTwins reports whether a listener on port 0 shares its configured
// address with one of another transport.
func (e *Engine) hasTwins() bool {
	for g, a := range e.cfg.Listen {
		for j, b := range e.cfg.Listen {
			if a.Port() == 0 && a == b && e.kinds[j] != e.kinds[g] {
				return true
			}
		}
	}
	return false
}

// configuredListen returns the listen addresses as configured (unmapped).
func (e *Engine) configuredListen() []netip.AddrPort {
	out := make([]netip.AddrPort, len(e.cfg.Listen))
	for i, l := range e.cfg.Listen {
		out[i] = netip.AddrPortFrom(l.Addr().Unmap(), l.Port())
	}
	return out
}

// bindAll groups the listeners by transport, in the order each transport
// first appears, and binds one Server per group. On an error it closes
// what it bound. e.mu is held.
func (e *Engine) bindAll(ctx context.Context) error {
	e.servers = nil
	e.where = make([]listenerSite, len(e.listen))
	for i, k := range e.kinds {
		si := e.serverFor(k)
		bs := &e.servers[si]
		e.where[i] = listenerSite{server: si, local: len(bs.globals)}
		bs.globals = append(bs.globals, i)
	}
	for si := range e.servers {
		if err := e.bindServer(ctx, &e.servers[si]); err != nil {
			e.closeServers()
			e.servers = nil
			return err
		}
	}
	return nil
}

// serverFor returns the index of kind's entry in e.servers, adding one.
func (e *Engine) serverFor(k transport.Kind) int {
	for si := range e.servers {
		if e.servers[si].kind == k {
			return si
		}
	}
	e.servers = append(e.servers, boundServer{kind: k})
	return len(e.servers) - 1
}

// bindServer opens bs's listeners with the Binder of its transport.
func (e *Engine) bindServer(ctx context.Context, bs *boundServer) error {
	bind := e.cfg.Transports[bs.kind]
	if bs.kind == transport.UDP && e.cfg.Transport != nil {
		bind = e.cfg.Transport
	}
	if bind == nil {
		return fmt.Errorf("fastpath: Start: no transport for the %s listeners (Config.Transport, Config.Transports)", bs.kind)
	}
	addrs := make([]netip.AddrPort, len(bs.globals))
	for k, g := range bs.globals {
		addrs[k] = e.twinPort(g)
	}
	srv, err := bind(ctx, transport.Layout{Addrs: addrs, Workers: e.cfg.Workers,
		MaxMessage: e.cfg.MaxMessageSize, OutputSize: e.OutputBufferSize(), Gate: e.cfg.Gate, Conns: &e.conns})
	if err != nil {
		return fmt.Errorf("fastpath: %s: %w", bs.kind, err)
	}
	bs.srv = srv
	bs.coalescer, _ = srv.(transport.Coalescer)
	for k, a := range srv.Addrs() {
		e.listen[bs.globals[k]] = a
	}
	return nil
}

// twinPort returns the address listener g binds: its own, except that a
// port 0 shared with a listener of another transport already bound (UDP
// and TCP on one ip:port) becomes the port that one got, so that both
// transports listen on the same port.
func (e *Engine) twinPort(g int) netip.AddrPort {
	a := e.listen[g]
	if a.Port() != 0 {
		return a
	}
	for j, c := range e.cfg.Listen {
		if j != g && c == e.cfg.Listen[g] && e.listen[j].Port() != 0 && e.kinds[j] != e.kinds[g] {
			return netip.AddrPortFrom(a.Addr(), e.listen[j].Port())
		}
	}
	return a
}

// bound takes the addresses the servers bound: with port 0 the advertised
// port is only known now. e.mu is held.
func (e *Engine) bound() {
	e.origin = make([]netip.AddrPort, len(e.listen))
	for _, bs := range e.servers {
		addrs := bs.srv.Addrs()
		for k, g := range bs.globals {
			e.listen[g] = addrs[k]
			e.origin[g] = bs.srv.Origin(k)
		}
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
// Config.Stages and, outermost, the dispatcher that numbers listeners as
// the engine does and sends what crosses transports (Server.Serve calls it
// from Start, with e.mu held).
func (e *Engine) newSocketHandler(server, listener, index int) transport.Handler {
	bs := &e.servers[server]
	global := bs.globals[listener]
	w := e.newWorker()
	w.server, w.listener, w.index = bs.srv, listener, index
	at := transport.Position{Kind: bs.kind, Listener: global, Worker: index}
	h := &socketHandler{w: w, at: at, dlog: e.newDropLog(w.c, e.cfg.Workers*len(e.listen))}
	e.handlers = append(e.handlers, h)
	var th transport.Handler = h
	for i := len(e.cfg.Stages) - 1; i >= 0; i-- {
		th = e.cfg.Stages[i](th, at)
	}
	return &dispatcher{e: e, server: server, globals: bs.globals, next: th, core: h}
}

// Run starts the engine and blocks until ctx is cancelled, then closes it.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return e.Close()
}

// Close stops the workers and closes the transports. It waits for the
// workers to finish the batch they are handling.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.state == 2 {
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	e.mu.Unlock()
	return e.closeServers()
}

// closeServers closes every bound server.
func (e *Engine) closeServers() error {
	var errs []error
	for _, bs := range e.servers {
		if bs.srv != nil {
			errs = append(errs, bs.srv.Close())
		}
	}
	return errors.Join(errs...)
}

// ListenAddrs returns the listen addresses, with the ports the kernel chose
// for port 0 once Start has run.
func (e *Engine) ListenAddrs() []netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]netip.AddrPort(nil), e.listen...)
}

// Listeners returns the listeners with their transports and the addresses
// ListenAddrs returns.
func (e *Engine) Listeners() []Listener {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listeners()
}

// listeners is Listeners with e.mu held.
func (e *Engine) listeners() []Listener {
	ls := make([]Listener, len(e.listen))
	for i, a := range e.listen {
		ls[i] = Listener{Kind: e.kinds[i], Addr: a}
	}
	return ls
}
