package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/viaduct-sip/viaduct/transport"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/parser"
)

// Responder modes.
const (
	modeAnswer    = iota // answer every request (200, or code for OPTIONS)
	modeSilent           // read and ignore everything (a dead server)
	modeNoOptions        // answer every request but OPTIONS (as SIPp's uas)
)

// responder is a UDP SIP server on 127.0.0.1:0 playing an upstream: it
// answers requests statelessly (OPTIONS with optionsCode, INVITE with 200
// and a To tag, anything else with 200), or stays silent.
type responder struct {
	t    testing.TB
	name string
	conn *net.UDPConn
	addr netip.AddrPort

	mode        atomic.Int32
	optionsCode atomic.Int32
	requestCode atomic.Int32 // answer to requests other than OPTIONS
	delay       atomic.Int64 // nanoseconds before answering OPTIONS
	dropFirst   atomic.Bool  // ignore the first copy of every OPTIONS

	mu       sync.Mutex
	options  []time.Time         // arrival of every OPTIONS (retransmissions included)
	requests map[string][]string // Call-ID -> methods received, in order (OPTIONS excluded)
	seen     map[string]bool     // OPTIONS Call-IDs already seen (dropFirst)
}

func newResponder(t testing.TB, name string) *responder {
	t.Helper()
	c, addr := testenv.ListenUDP(t)
	r := &responder{t: t, name: name, conn: c, addr: addr,
		requests: map[string][]string{}, seen: map[string]bool{}}
	r.optionsCode.Store(200)
	r.requestCode.Store(200)
	testenv.ServeSIP(t, c, r.handle)
	return r
}

// handle records request m and answers it as the responder's mode and
// settings say.
func (r *responder) handle(m *parser.Message, from netip.AddrPort) {
	if r.mode.Load() == modeSilent || !m.IsRequest() {
		return
	}
	code := 200
	if m.MethodID() == parser.MethodOPTIONS {
		r.mu.Lock()
		r.options = append(r.options, time.Now())
		first := !r.seen[string(m.CallID())]
		r.seen[string(m.CallID())] = true
		r.mu.Unlock()
		if first && r.dropFirst.Load() || r.mode.Load() == modeNoOptions {
			return
		}
		code = int(r.optionsCode.Load())
		if d := r.delay.Load(); d > 0 {
			time.Sleep(time.Duration(d))
		}
	} else {
		r.mu.Lock()
		id := string(m.CallID())
		r.requests[id] = append(r.requests[id], string(m.Method()))
		r.mu.Unlock()
		if m.MethodID() == parser.MethodACK {
			return
		}
		code = int(r.requestCode.Load())
	}
	resp := buildResponse(m, code, "tag-"+r.name)
	r.conn.WriteToUDPAddrPort(resp, from)
}

// optionsTimes returns the arrival times of the OPTIONS received so far.
func (r *responder) optionsTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.options...)
}

// got returns the methods received for a Call-ID.
func (r *responder) got(callID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests[callID]...)
}

// buildResponse answers request m statelessly: every Via, From, To (with
// toTag added when it has none), Call-ID and CSeq copied.
func buildResponse(m *parser.Message, code int, toTag string) []byte {
	return testenv.AppendResponse(nil, m, fmt.Sprintf("%d %s", code, reasonFor(code)), toTag)
}

func reasonFor(code int) string {
	switch code {
	case 200:
		return "OK"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 503:
		return "Service Unavailable"
	}
	return "Whatever"
}

// udpTransport is a Transport over its own loopback socket, standing in for
// the fast path in the checker's unit tests: its Via names its socket, and
// a reader hands every response whose top Via carries its branch prefix to
// the handler.
type udpTransport struct {
	conn    *net.UDPConn
	addr    netip.AddrPort
	handler atomic.Pointer[func(*parser.Message, netip.AddrPort)]
	sendErr atomic.Bool // make SendTo fail
}

func newUDPTransport(t testing.TB) *udpTransport {
	t.Helper()
	c, addr := testenv.ListenUDP(t)
	tr := &udpTransport{conn: c, addr: addr}
	testenv.ServeSIP(t, c, func(m *parser.Message, from netip.AddrPort) {
		if m.IsRequest() || !bytes.HasPrefix(m.TopVia().Branch, []byte("z9hG4bKtest")) {
			return
		}
		if h := tr.handler.Load(); h != nil {
			(*h)(m, from)
		}
	})
	return tr
}

func (tr *udpTransport) setHandler(h func(*parser.Message, netip.AddrPort)) { tr.handler.Store(&h) }

func (tr *udpTransport) AppendViaOver(dst []byte, _ netip.AddrPort, _ transport.Kind, key uint64) []byte {
	return fmt.Appendf(dst, "Via: SIP/2.0/UDP %s;branch=z9hG4bKtest%x\r\n", tr.addr, key)
}

func (tr *udpTransport) SendOver(b []byte, to netip.AddrPort, _ transport.Kind) error {
	if tr.sendErr.Load() {
		return errors.New("simulated send failure")
	}
	_, err := tr.conn.WriteToUDPAddrPort(b, to)
	return err
}

// event is one state change seen by a recordingSink.
type event struct {
	at     time.Time
	id     string
	health *balancer.Health
	admin  *balancer.AdminState
}

// recordingSink forwards to a balancer.Pool and records every change.
type recordingSink struct {
	pool *balancer.Pool
	mu   sync.Mutex
	evs  []event
}

func newRecordingSink(t testing.TB, targets ...*responder) *recordingSink {
	t.Helper()
	ts := make([]balancer.Target, len(targets))
	for i, r := range targets {
		ts[i] = balancer.Target{ID: r.name, Addr: r.addr, Transport: "udp", Weight: 1}
	}
	p, err := balancer.NewPool(ts, balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &recordingSink{pool: p}
}

func (s *recordingSink) SetHealth(id string, h balancer.Health) error {
	return s.record(id, func() error { return s.pool.SetHealth(id, h) }, event{health: &h})
}

func (s *recordingSink) SetAdmin(id string, a balancer.AdminState) error {
	return s.record(id, func() error { return s.pool.SetAdmin(id, a) }, event{admin: &a})
}

// record applies set, a change of target id, to the pool, and records ev
// when it changed the target's health or admin state.
func (s *recordingSink) record(id string, set func() error, ev event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.pool.Table().ByID(id)
	if err := set(); err != nil {
		return err
	}
	if cur, _ := s.pool.Table().ByID(id); ok && (cur.Health != old.Health || cur.Admin != old.Admin) {
		ev.at, ev.id = time.Now(), id
		s.evs = append(s.evs, ev)
	}
	return nil
}

// healthChanges returns the health events of id after since.
func (s *recordingSink) healthChanges(id string, since time.Time) []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []event
	for _, e := range s.evs {
		if e.id == id && e.health != nil && e.at.After(since) {
			out = append(out, e)
		}
	}
	return out
}

// waitHealth waits until the sink's health of id is h and returns when that
// change was recorded; it fails the test after limit.
func (s *recordingSink) waitHealth(t testing.TB, id string, h balancer.Health, since time.Time, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, e := range s.healthChanges(id, since) {
			if *e.health == h {
				return e.at
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s did not become %v within %v", id, h, limit)
	return time.Time{}
}

// poolHealth returns the pool's health of id.
func poolHealth(t testing.TB, p *balancer.Pool, id string) balancer.Health {
	t.Helper()
	tg, ok := p.Table().ByID(id)
	if !ok {
		t.Fatalf("pool has no target %q", id)
	}
	return tg.Health
}

// logBuffer is a concurrency-safe slog sink for assertions on log lines.
type logBuffer struct {
	testenv.SyncBuffer
}

// waitLog waits until the log holds every one of want.
func (l *logBuffer) waitLog(t testing.TB, want ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		out := l.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", missing, out)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// startChecker builds and starts a Checker over tr for the responders, with
// settings s, and stops it at the end of the test.
func startChecker(t testing.TB, tr *udpTransport, sink StateSink, s Settings, log *slog.Logger, rs ...*responder) *Checker {
	t.Helper()
	cfg := Config{Settings: s}
	for _, r := range rs {
		cfg.Targets = append(cfg.Targets, Target{ID: r.name, Addr: r.addr})
	}
	return runChecker(t, tr, sink, cfg, log)
}

// runChecker builds a Checker from cfg, hands it tr's responses, starts
// it, and stops it at the end of the test.
func runChecker(t testing.TB, tr *udpTransport, sink StateSink, cfg Config, log *slog.Logger) *Checker {
	t.Helper()
	c, err := New(cfg, tr, sink, log)
	if err != nil {
		t.Fatal(err)
	}
	tr.setHandler(func(m *parser.Message, from netip.AddrPort) { c.HandleResponse(m, from) })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// checkedPair is a checker probing two responders, a and b, through its
// own udpTransport, with the pool's changes recorded by sink and the
// checker's log in logs; p is the effective probe configuration.
type checkedPair struct {
	a, b *responder
	sink *recordingSink
	logs *logBuffer
	c    *Checker
	p    Probe
}

// startPair starts a checkedPair with settings s and returns once every
// target has had probed probes answered.
func startPair(t testing.TB, s Settings, probed uint64) *checkedPair {
	t.Helper()
	f := &checkedPair{a: newResponder(t, "a"), b: newResponder(t, "b"), logs: &logBuffer{}}
	f.sink = newRecordingSink(t, f.a, f.b)
	f.c = startChecker(t, newUDPTransport(t), f.sink, s, f.logs.logger(), f.a, f.b)
	f.p = f.c.Status()[0].Probe
	waitFor(t, 2*time.Second, "first probes answered", probedOK(f.c, probed))
	return f
}

// waitFor polls cond every few milliseconds until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		case <-time.After(2 * time.Millisecond):
		}
	}
}
