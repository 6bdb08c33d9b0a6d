package fastpath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/internal/testenv"
	"github.com/viaduct-sip/viaduct/transport"
	"github.com/viaduct-sip/viaduct/transport/udp"
)

// logLine is one decoded line of a JSON log.
type logLine map[string]any

// dropLines returns the drop log lines (dropped, refused, not sent) of a
// JSON log.
func dropLines(t *testing.T, log string) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l == "" {
			continue
		}
		var m logLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		switch m["msg"] {
		case "message dropped", "request refused", "message not sent":
			out = append(out, m)
		}
	}
	return out
}

// suppressed returns the suppressed count a line reports (0 without).
func (l logLine) suppressed() uint64 {
	n, _ := l["suppressed"].(float64)
	return uint64(n)
}

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// debugWorker returns the handler a transport would drive, without a
// transport (Handle called directly), whose drop log writes JSON lines to
// the returned buffer on a fake clock, as one of workers workers.
func debugWorker(t *testing.T, workers int) (*socketHandler, *testenv.SyncBuffer, *fakeClock) {
	t.Helper()
	var buf testenv.SyncBuffer
	e, err := New(testConfig(), slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	e.dropClock = clock.now
	w := e.NewWorker()
	h := &socketHandler{w: w, dlog: e.newDropLog(w.c, workers)}
	if h.dlog == nil {
		t.Fatal("no drop log at debug level")
	}
	return h, &buf, clock
}

// feed hands datagrams from `from` to h, as a transport does.
func feed(h *socketHandler, from netip.AddrPort, dgs ...[]byte) {
	out := transport.Outbound{Buf: make([]byte, 0, h.w.e.OutputBufferSize())}
	for _, b := range dgs {
		out.Buf = out.Buf[:0]
		h.Handle(b, udpFrom(from), &out)
	}
}

// Bad datagrams of every kind, each with what its drop log line must say.
func TestDropLogLines(t *testing.T) {
	h, buf, _ := debugWorker(t, 1)
	long := strings.Repeat("x", 200)
	cases := []struct {
		name string
		in   []byte
		want map[string]any
	}{
		{"483", replace(invite3261, "Max-Forwards: 70", "Max-Forwards: 0"), map[string]any{
			"msg": "request refused", "reason": "too_many_hops", "code": 483.0, "phrase": "Too Many Hops",
			"method": "INVITE", "call_id": "a84b4c76e66710@pc33.atlanta.example.com"}},
		{"400 naming the fault", replace(invite3261, "CSeq: 314159 INVITE", "CSeq: x INVITE"), map[string]any{
			"msg": "request refused", "reason": "parse_error", "code": 400.0, "method": "INVITE"}},
		{"forged response", replace(replace(invite3261, "INVITE sip:bob@biloxi.example.com SIP/2.0", "SIP/2.0 503 Service Unavailable"),
			"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKvd1forged\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds"),
			map[string]any{"msg": "message dropped", "reason": "forged_response", "status": "503", "call_id": "a84b4c76e66710@pc33.atlanta.example.com"}},
		{"ACK not answered", replace(replace(replace(invite3261, "INVITE sip:bob", "ACK sip:bob"), "314159 INVITE", "314159 ACK"), "Max-Forwards: 70", "Max-Forwards: 0"), map[string]any{
			"msg": "message dropped", "reason": "too_many_hops", "method": "ACK"}},
		{"control characters", []byte("INVITE sip:x SIP/2.0\r\ni: \x1b[2Jevil\rtime=0 level=ERROR\x00\xff\\\r\n\r\n"), map[string]any{
			"msg": "message dropped", "reason": "parse_error", "method": "INVITE", "call_id": `\x1b[2Jevil\x0dtime=0 level=ERROR\x00\xff\\`}},
		{"long Call-ID", replace(replace(invite3261, "a84b4c76e66710@pc33.atlanta.example.com", long), "Max-Forwards: 70", "Max-Forwards: 0"), map[string]any{
			"call_id": long[:maxLoggedCallID] + "..."}},
		{"long method", []byte(long + " sip:x SIP/2.0\r\n\r\n"), map[string]any{
			"method": long[:maxLoggedMethod] + "...", "call_id": ""}},
	}
	for _, c := range cases {
		feed(h, alice, c.in)
	}
	lines := dropLines(t, buf.String())
	if len(lines) != len(cases) {
		t.Fatalf("%d lines for %d bad datagrams:\n%s", len(lines), len(cases), buf.String())
	}
	for i, c := range cases {
		l := lines[i]
		if l["level"] != "DEBUG" || l["from"] != alice.String() || l["reason"] == nil || l["call_id"] == nil || (l["method"] == nil) == (l["status"] == nil) {
			t.Errorf("%s: a field is missing: %v", c.name, l)
		}
		if (l["msg"] == "request refused") != (l["code"] != nil && l["phrase"] != nil) {
			t.Errorf("%s: code and phrase go with refused requests: %v", c.name, l)
		}
		for k, v := range c.want {
			if l[k] != v {
				t.Errorf("%s: %s = %#v, want %#v", c.name, k, l[k], v)
			}
		}
		if l["suppressed"] != nil {
			t.Errorf("%s: suppressed before the limit: %v", c.name, l)
		}
	}
	if strings.ContainsAny(buf.String(), "\x1b\x00\r") {
		t.Errorf("control characters reached the log:\n%q", buf.String())
	}
}

// A flood gives at most the bucket's lines; the next line allowed says
// how many were suppressed, and the counter has them all.
func TestDropLogRateLimit(t *testing.T) {
	const workers = 2 // each gets 5 lines at once and one every 200 ms
	h, buf, clock := debugWorker(t, workers)
	burst, interval := DropLogRate/workers, workers*time.Second/DropLogRate
	bad := replace(invite3261, "Max-Forwards: 70", "Max-Forwards: 0")
	const flood = 60
	for range flood / 6 {
		feed(h, alice, bad, bad, bad, bad, bad, bad)
	}
	lines := dropLines(t, buf.String())
	if len(lines) != burst {
		t.Fatalf("%d lines for %d drops, want the burst of %d", len(lines), flood, burst)
	}
	if s := h.w.Stats(); s.DropLogsSuppressed != flood-uint64(burst) || s.Drops[DropTooManyHops] != flood {
		t.Errorf("suppressed %d, dropped %d; want %d, %d", s.DropLogsSuppressed, s.Drops[DropTooManyHops], flood-burst, flood)
	}

	clock.t = clock.t.Add(interval - 1)
	feed(h, alice, bad)
	if n := len(dropLines(t, buf.String())); n != burst {
		t.Fatalf("a line before the bucket gained a token (%d lines)", n)
	}
	clock.t = clock.t.Add(1)
	feed(h, alice, bad, bad)
	lines = dropLines(t, buf.String())
	if len(lines) != burst+1 {
		t.Fatalf("%d lines once a token came, want %d", len(lines), burst+1)
	}
	if got, want := lines[burst].suppressed(), uint64(flood-burst+1); got != want {
		t.Errorf("the line after the flood reports %d suppressed, want %d: %v", got, want, lines[burst])
	}

	// Long quiet: the bucket is full again, not fuller.
	clock.t = clock.t.Add(time.Hour)
	for range 3 {
		feed(h, alice, bad, bad, bad, bad)
	}
	lines = dropLines(t, buf.String())
	if len(lines) != 2*burst+1 {
		t.Fatalf("%d lines after an hour's quiet and 12 drops, want %d", len(lines), 2*burst+1)
	}
	if got := lines[burst+1].suppressed(); got != 1 {
		t.Errorf("first line after the quiet reports %d suppressed, want 1 (the drop after the last line)", got)
	}
	if s := h.w.Stats(); s.DropLogsSuppressed != flood-uint64(burst)+2+12-uint64(burst) {
		t.Errorf("suppressed counter %d", s.DropLogsSuppressed)
	}
}

func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	b := newTokenBucket(100*time.Millisecond, 3)
	at := func(d time.Duration) bool { return b.take(t0.Add(d)) }
	for i, c := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, // the burst
		{99 * time.Millisecond, false},
		{100 * time.Millisecond, true}, {100 * time.Millisecond, false},
		{250 * time.Millisecond, true}, // one token at 200 ms
		{299 * time.Millisecond, false},
		{300 * time.Millisecond, true},
		{10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, true}, {10 * time.Second, false}, // full, not fuller
		{10*time.Second + 100*time.Millisecond, true},
	} {
		if got := at(c.at); got != c.want {
			t.Errorf("take %d at %v: %v, want %v", i, c.at, got, c.want)
		}
	}
}

// The rate is shared among the workers: their buckets add up to at most
// DropLogRate lines a second.
func TestDropLogShare(t *testing.T) {
	e, err := New(testConfig(), slog.New(slog.NewTextHandler(nil, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	c := new(counters)
	for _, workers := range []int{1, 2, 3, 10, 64} {
		d := e.newDropLog(c, workers)
		perSecond := float64(time.Second) / float64(d.bucket.interval)
		if total := perSecond * float64(workers); total > DropLogRate+1e-9 || total < DropLogRate-1e-6 {
			t.Errorf("%d workers: %v lines a second in all, want %d", workers, total, DropLogRate)
		}
		if want := max(1, DropLogRate/workers); d.bucket.burst != want {
			t.Errorf("%d workers: burst %d, want %d", workers, d.bucket.burst, want)
		}
	}
	info, err := New(testConfig(), slog.New(slog.NewTextHandler(nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if d := info.newDropLog(c, 1); d != nil {
		t.Error("a drop log at info level")
	}
}

// startLoggingEngine starts a one-worker engine on loopback whose logger
// writes JSON at level to the returned buffer.
func startLoggingEngine(t *testing.T, level slog.Level, workers int) (*Engine, *testenv.SyncBuffer) {
	t.Helper()
	up := newResponder(t)
	return startLoggingEngineWith(t, level, Config{Upstreams: []netip.AddrPort{up.addr}, Workers: workers}, nil)
}

// startLoggingEngineWith starts an engine with cfg on an ephemeral loopback
// port, logging at level into the buffer it returns, with the drop logs'
// clock (nil: time.Now).
func startLoggingEngineWith(t *testing.T, level slog.Level, cfg Config, clock func() time.Time) (*Engine, *testenv.SyncBuffer) {
	t.Helper()
	var buf testenv.SyncBuffer
	cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	if cfg.Transport == nil {
		cfg.Transport = udp.Bind(udp.ServerConfig{}, nil)
	}
	e, err := New(cfg, slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatal(err)
	}
	e.dropClock = clock
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, &buf
}

// badDatagrams are n bad datagrams from c: forged responses and requests
// with Max-Forwards 0 (answered with 483 at c's address), alternating.
func badDatagrams(c *client, n int) [][]byte {
	var out [][]byte
	for i := range n {
		id := fmt.Sprintf("flood-%d@test", i)
		req := c.request("MESSAGE", "sip:x@example.com", id, 1, fmt.Sprintf("f%d", i), "")
		if i%2 == 0 {
			out = append(out, replace(req, "Max-Forwards: 70", "Max-Forwards: 0"))
			continue
		}
		resp := replace(req, "MESSAGE sip:x@example.com SIP/2.0", "SIP/2.0 200 OK")
		out = append(out, replace(resp, "Via: ", "Via: SIP/2.0/UDP "+c.proxy.String()+";branch=z9hG4bKvd1forged\r\nVia: "))
	}
	return out
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Over real sockets at debug level: a flood of bad datagrams gives at most
// the rate's lines, each with its fields; one more drop once the bucket has
// a token again reports the suppressed lines, which add up to the counter.
func TestDropLogFlood(t *testing.T) {
	const workers = 2
	e, buf := startLoggingEngine(t, slog.LevelDebug, workers)
	c := newClient(t, e.ListenAddrs()[0])
	const flood = 60
	start := time.Now()
	for _, b := range badDatagrams(c, flood) {
		c.send(b)
	}
	accounted := func(n uint64) func() bool {
		return func() bool { return uint64(len(dropLines(t, buf.String())))+e.Stats().DropLogsSuppressed == n }
	}
	waitFor(t, "every drop logged or suppressed", accounted(flood))
	elapsed := time.Since(start)
	lines := dropLines(t, buf.String())
	burst, interval := DropLogRate/workers, workers*time.Second/DropLogRate
	if limit := burst + int(elapsed/interval) + 1; len(lines) > limit || len(lines) == 0 {
		t.Errorf("%d lines in %v for %d drops, want 1 to %d", len(lines), elapsed, flood, limit)
	}
	for _, l := range lines {
		if l["from"] != c.addr.String() || l["call_id"] == nil || !strings.HasPrefix(l["call_id"].(string), "flood-") ||
			(l["reason"] != "forged_response" || l["status"] != "200") && (l["reason"] != "too_many_hops" || l["code"] != 483.0 || l["method"] != "MESSAGE") {
			t.Errorf("line lacks a field or has a wrong one: %v", l)
		}
	}
	if e.Stats().DropLogsSuppressed == 0 {
		t.Fatalf("nothing suppressed out of %d drops in %v", flood, elapsed)
	}
	// One more bad datagram at a time until one is logged: that line
	// reports the lines suppressed since the previous one.
	sent := uint64(flood)
	for before := len(lines); len(dropLines(t, buf.String())) == before; {
		time.Sleep(interval / 4)
		c.send(badDatagrams(c, 1)[0])
		sent++
		waitFor(t, "the drop logged or suppressed", accounted(sent))
	}
	var reported uint64
	for _, l := range dropLines(t, buf.String()) {
		reported += l.suppressed()
	}
	if s := e.Stats(); reported != s.DropLogsSuppressed || reported == 0 {
		t.Errorf("the lines report %d suppressed, the counter says %d", reported, s.DropLogsSuppressed)
	}
}

// At info level nothing is logged per drop, and nothing is suppressed.
func TestDropLogInfoLevel(t *testing.T) {
	e, buf := startLoggingEngine(t, slog.LevelInfo, 1)
	c := newClient(t, e.ListenAddrs()[0])
	const n = 20
	for _, b := range badDatagrams(c, n) {
		c.send(b)
	}
	waitFor(t, "the drops counted", func() bool {
		s := e.Stats()
		return s.Drops[DropForgedResponse]+s.Drops[DropTooManyHops] == n
	})
	if lines := dropLines(t, buf.String()); len(lines) != 0 || e.Stats().DropLogsSuppressed != 0 {
		t.Errorf("at info: %d drop lines, %d suppressed:\n%s", len(lines), e.Stats().DropLogsSuppressed, buf.String())
	}
	for _, h := range e.handlers {
		if h.dlog != nil {
			t.Error("a worker has a drop log at info level")
		}
	}
}

// At debug level, a flood whose lines the bucket suppresses costs no
// allocation: bad datagrams over real sockets (recvmmsg, handle, the drop
// log's bucket, sendmmsg of the 483s) allocate nothing, in the worker or
// anywhere else in the process.
func TestDropLogFloodAllocatesNothing(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)} // frozen: no token after the burst
	e, buf := startLoggingEngineWith(t, slog.LevelDebug, Config{
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")},
		Workers:   1,
		Transport: udp.Bind(udp.ServerConfig{Batch: 16}, nil),
	}, clock.now)
	h := e.handlers[0]
	if h.dlog == nil {
		t.Fatal("no drop log at debug level")
	}
	conn, addr := testenv.ListenUDP(t)
	c := &client{t: t, conn: conn, addr: addr, proxy: e.ListenAddrs()[0]}
	const k = 8
	flood := badDatagrams(c, k)
	drops := func() uint64 {
		return h.w.c.drops[DropForgedResponse].load() + h.w.c.drops[DropTooManyHops].load()
	}
	var done uint64
	reply := make([]byte, 65536)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	round := func() {
		for _, b := range flood {
			if _, err := conn.WriteToUDPAddrPort(b, c.proxy); err != nil {
				t.Fatal(err)
			}
		}
		done += k
		for range k / 2 { // the 483s
			if _, _, err := conn.ReadFromUDPAddrPort(reply); err != nil {
				t.Fatal(err)
			}
		}
		for drops() < done { // the forged responses, counted after the 483s went out
			runtime.Gosched()
		}
	}
	for range (DropLogRate + k - 1) / k { // warm up and use up the burst
		round()
	}
	logged := len(dropLines(t, buf.String()))
	if n := testing.AllocsPerRun(50, round); n != 0 {
		t.Errorf("%.2f allocations per batch of %d suppressed drops, want 0", n, k)
	}
	if got := len(dropLines(t, buf.String())); logged != DropLogRate || got != logged {
		t.Errorf("%d lines after the warm-up, %d after the flood; want %d, no more", logged, got, DropLogRate)
	}
	if n := h.w.c.dropLogSuppressed.load(); n != done-DropLogRate {
		t.Errorf("%d suppressed of %d drops, want %d", n, done, done-DropLogRate)
	}
}

// A datagram the kernel refused to send is logged with its destination,
// the error and what it is, within the same bucket.
func TestDropLogSendError(t *testing.T) {
	h, buf, _ := debugWorker(t, DropLogRate) // a burst of 1
	_, fwd := handle(t, h.w, invite3261, alice)
	sendErr := errors.New("sendmmsg: invalid argument")
	out := transport.Outbound{Buf: fwd.Buf, To: fwd.Peer()}
	h.Sent(&out, sendErr)
	h.Sent(&out, sendErr)
	lines := dropLines(t, buf.String())
	if len(lines) != 1 {
		t.Fatalf("%d lines for two send errors with a burst of 1", len(lines))
	}
	want := logLine{"msg": "message not sent", "to": fwd.To.String(), "reason": "send_error", "method": "INVITE",
		"call_id": "a84b4c76e66710@pc33.atlanta.example.com", "err": sendErr.Error()}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %#v, want %#v", k, lines[0][k], v)
		}
	}
	if n := h.w.Stats().DropLogsSuppressed; n != 1 {
		t.Errorf("%d suppressed, want 1", n)
	}
}
