package fastpath

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// Engine is Viaduct's stateless forwarding core: the configuration, the
// balancer pool and the workers that parse, check, choose a destination for
// and rewrite every message on the goroutine that read it. Its methods by
// role:
//
//   - lifecycle (lifecycle.go): New, Start, Run, Close; ListenAddrs and
//     OutputBufferSize;
//   - configuration and updates (engine.go, update.go): Config, Advertise,
//     Targets, Keys, Pool, Update;
//   - hooks (hooks.go): SetLocalResponseHandler, SetResponseObserver;
//   - origination, for health probes (origin.go): AppendVia, SendTo;
//   - workers driven without a transport (worker.go): NewWorker;
//   - statistics (stats.go, upstream_stats.go): Stats, WorkerStats,
//     AppendUpstreamForwarded, AppendUpstreamResponses.
type Engine struct {
	cfg       Config
	adv       advertise
	viaPrefix [][]byte         // per listen index: "Via: SIP/2.0/<transport> <sent-by>;branch="
	rrLine    [][]byte         // per listen index: "Record-Route: <sip:<sent-by>;lr>\r\n"
	rrStart   [][]byte         // per listen index: "Record-Route: <sip:<sent-by>;lr;received="
	pathStart [][]byte         // per listen index: "Path: <sip:<sent-by>;lr;received="
	picker    Picker           // Config.Picker; nil: pick from pool
	pool      *balancer.Pool   // the default pool, nil with Config.Picker
	listen    []netip.AddrPort // bound addresses (real ports after Start)
	kinds     []transport.Kind // per listener: its transport
	selfPorts []int            // ports besides the advertised one at which the advertised host is Viaduct's
	growth    int              // what forward may add to a request at most (boundGrowth)
	boot      uint64           // 35 random bits naming this engine's connections (branch.go)
	log       *slog.Logger

	// route is what a reload replaces (Update): the upstream set and the
	// key policy, immutable once published, loaded once per request.
	route    atomic.Pointer[routing]
	updateMu sync.Mutex // serializes Update

	localHandler atomic.Pointer[LocalResponseHandler]
	respObserver atomic.Pointer[ResponseObserver]
	callAdmitter atomic.Pointer[CallAdmitter]
	nextCursor   atomic.Uint64 // seeds the workers' round-robin cursors

	mu         sync.Mutex       // guards what follows
	viaMac     *macer           // for AppendVia
	servers    []boundServer    // bound by Start, one per transport
	conns      atomic.Int64     // the open connections of every server (transport.Layout.Conns)
	where      []listenerSite   // per listener: its server and its index there
	origin     []netip.AddrPort // per listener: where originated requests leave from
	originVia  [][]byte         // per listener: the Via prefix of originated requests
	originHost []string         // per listener: its sent-by host, lower case
	handlers   []*socketHandler // one per transport worker, in Serve's order
	dropClock  func() time.Time // the drop logs' clock (time.Now; tests set it before Start)
	state      int              // 0 new, 1 started, 2 closed
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
		cfg:  c,
		adv:  adv,
		log:  logger,
		boot: randomBoot(),
	}
	e.kinds = make([]transport.Kind, len(c.Listeners))
	for i, l := range c.Listeners {
		e.kinds[i] = l.Kind
	}
	e.listen = e.configuredListen()
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

// randomBoot draws the boot ID that tells this engine's connections from
// another process's (branch.go).
func randomBoot() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("fastpath: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return binary.LittleEndian.Uint64(b[:])&bootMask | 1
}

// buildAdvertise renders the Via prefix, Record-Route line and Path start
// of every listen address, with the listener's transport (the Via token,
// and a transport parameter in URIs for TCP and TLS).
func (e *Engine) buildAdvertise() {
	e.viaPrefix = make([][]byte, len(e.listen))
	e.rrLine = make([][]byte, len(e.listen))
	e.rrStart = make([][]byte, len(e.listen))
	e.pathStart = make([][]byte, len(e.listen))
	e.selfPorts = e.selfPorts[:0]
	for i := range e.listen {
		sentBy, ownPort := e.listenSentBy(i)
		if ownPort {
			e.selfPorts = append(e.selfPorts, int(e.listen[i].Port()))
		}
		k := e.listenKind(i)
		e.viaPrefix[i] = []byte("Via: SIP/2.0/" + k.ViaToken() + " " + sentBy + ";branch=")
		e.rrLine[i] = []byte("Record-Route: <sip:" + sentBy + uriTransport(k) + ";lr>\r\n")
		e.rrStart[i] = []byte("Record-Route: <sip:" + sentBy + uriTransport(k) + ";lr;received=")
		e.pathStart[i] = []byte("Path: <sip:" + sentBy + uriTransport(k) + ";lr;received=")
	}
	e.boundGrowth()
}

// listenSentBy returns the sent-by of listener i: the advertised address,
// except that a listener of the other IP family than an advertised IP
// literal carries its own address (when it is a specific one: an IPv6 next
// hop must be able to answer over IPv6), and that a listener of another
// transport than the first listener's on a port of its own carries its own
// port (TLS on 5061 next to UDP and TCP on 5060): ownPort reports that
// case, where the advertised host is Viaduct's at that port too.
func (e *Engine) listenSentBy(i int) (sentBy string, ownPort bool) {
	l := e.listen[i]
	if e.adv.addr.IsValid() && e.adv.addr.Is4() != l.Addr().Is4() && !l.Addr().IsUnspecified() {
		return l.String(), false
	}
	if e.kinds[i] == e.kinds[0] || l.Port() == e.listen[0].Port() || l.Port() == 0 {
		return e.adv.sentBy, false
	}
	if e.adv.isIPv6 {
		return "[" + e.adv.host + "]:" + strconv.Itoa(int(l.Port())), true
	}
	return e.adv.host + ":" + strconv.Itoa(int(l.Port())), true
}

// uriTransport returns the transport parameter of a SIP URI that names a
// listener of kind k: none for UDP, the default.
func uriTransport(k transport.Kind) string {
	if k == transport.UDP || !k.Valid() {
		return ""
	}
	return ";transport=" + k.String()
}

// listenKind returns the transport of listener i: the bound transport's
// (transport.Server.Kind), UDP before Start.
func (e *Engine) listenKind(i int) transport.Kind { return e.kinds[i] }

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

// isSelf reports whether host:port (port 0 meaning 5060) names Viaduct: its
// advertised address, one of its specific listen addresses or an origin
// address.
func (e *Engine) isSelf(host []byte, port int) bool {
	if port == 0 {
		port = 5060
	}
	ip, isIP := parser.ParseIP(host)
	if isIP {
		if e.adv.addr.IsValid() && ip == e.adv.addr && e.isAdvertisedPort(port) {
			return true
		}
		for _, l := range e.listen {
			if int(l.Port()) == port && l.Addr() == ip {
				return true
			}
		}
	} else if e.isAdvertisedPort(port) && parser.EqualFold(host, e.adv.hostLow) {
		return true
	}
	return e.isOrigin(host, port)
}

// isAdvertisedPort reports whether port is the advertised one, or the port
// of a listener that advertises its own (listenSentBy).
func (e *Engine) isAdvertisedPort(port int) bool {
	if port == e.adv.port {
		return true
	}
	for _, p := range e.selfPorts {
		if p == port {
			return true
		}
	}
	return false
}

// routing is the part of an engine's configuration that Update replaces
// while the workers run. It is immutable once published: a worker loads
// the current one once per request (one atomic load) and uses it for the
// whole request, so a request never sees half of a reload.
type routing struct {
	targets   []balancer.Target                 // normalized, in configuration order
	upstreams map[netip.AddrPort]transport.Kind // by address, the transport each is reached over
	policy    *balancer.Policy
	keys      keyPolicy // policy, compiled
}

func newRouting(targets []balancer.Target, keys *balancer.Policy) *routing {
	r := &routing{
		targets:   targets,
		upstreams: make(map[netip.AddrPort]transport.Kind, len(targets)),
		policy:    keys,
		keys:      compilePolicy(keys),
	}
	for _, t := range targets {
		r.upstreams[t.Addr] = targetKind(t.Transport)
	}
	return r
}

// isUpstream reports whether a message from addr over kind comes from one
// of r's upstreams: its address and port, over its transport. A client on
// TCP whose ephemeral port happens to equal a UDP upstream's port is not
// that upstream.
func (r *routing) isUpstream(addr netip.AddrPort, kind transport.Kind) bool {
	k, ok := r.upstreams[addr]
	return ok && k == kind
}

// reopensFor reports whether a response whose client connection on
// listener is gone may go to its Via's address over a new connection: on
// TCP and TLS, unless Config.DropOrphanResponses.
func (e *Engine) reopensFor(listener int) bool {
	if e.cfg.DropOrphanResponses || listener < 0 || listener >= len(e.kinds) {
		return false
	}
	k := e.kinds[listener]
	return k == transport.TCP || k == transport.TLS
}

// listenFor returns the listen index to send to dst from: pref if its family
// fits, else the first listen address of dst's family and pref's
// transport, else -1.
func (e *Engine) listenFor(pref int, dst netip.Addr) int {
	kind := transport.UDP
	if pref >= 0 && pref < len(e.listen) {
		kind = e.kinds[pref]
	}
	return e.listenForKind(kind, pref, dst)
}

// listenForKind returns the listen index to send to dst over kind from:
// pref if its family and transport fit, else the first listener of dst's
// family and of kind, else -1.
func (e *Engine) listenForKind(kind transport.Kind, pref int, dst netip.Addr) int {
	want4 := dst.Is4()
	if pref >= 0 && pref < len(e.listen) && e.listen[pref].Addr().Is4() == want4 && e.kinds[pref] == kind {
		return pref
	}
	for i, l := range e.listen {
		if l.Addr().Is4() == want4 && e.kinds[i] == kind {
			return i
		}
	}
	return -1
}
