package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/transport"
)

// hostileLimits is the streams block of TestBinaryHostileClients: the
// defaults lowered so that each hostile client meets its limit within
// seconds.
const hostileLimits = `streams:
  max_connections: 1000
  max_connections_per_ip: 50
  accept_rate: 1000
  accept_burst: 500
  first_message_timeout: 2s
  message_timeout: 1s
  write_queue: 65536
`

// Linux only: the clients bind addresses of 127.0.0.0/8 other than
// 127.0.0.1 (all of it is loopback on Linux), and the RSS is read from
// /proc.

// Issue #15: "Hostile clients: a slow sender, a connection flood from many
// source addresses, a client that never reads, garbage framing, a 100 MB
// Content-Length: each is stopped by its limit, counted, and calls from
// well-behaved clients in the same test keep completing." While
// viaduct-load's UAC places calls over TCP (one shared connection per
// source) and over UDP through the binary to a UAS, hostile clients on
// other source addresses meet the limits of the streams block; every one
// is closed (or refused) and counted under its reason in /metrics, no
// legitimate call fails, and the binary's RSS stays bounded by the flood.
func TestBinaryHostileClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	uas := newUAS(t)
	v := startStreamsViaduct(t, fmt.Sprintf("workers: 2\nupstreams: [\"%s\"]\n%s", uas.Addr(), hostileLimits))

	tcpUAC, err := load.NewUAC(load.UACConfig{Target: v.sip, Transport: transport.TCP, Sources: 4, CallHold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcpUAC.Close() })
	udpUAC := newUAC(t, v.sip)
	const rate, sending = 100, 10 * time.Second
	runs := map[string]chan *load.Result{}
	for name, u := range map[string]*load.UAC{"tcp": tcpUAC, "udp": udpUAC} {
		ran := make(chan *load.Result, 1)
		runs[name] = ran
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			r, err := u.Run(ctx, load.RunOptions{Rate: rate, Duration: sending, Drain: 5 * time.Second})
			if err != nil {
				t.Errorf("%s uac: %v", name, err)
			}
			ran <- r
		}()
	}
	// The UAC's connections open with its first calls; the flood comes
	// after, so that its refusals (accept_rate) cannot touch them.
	waitUACConnections(t, tcpUAC, 4)

	// Connections per address first, while the accept rate has tokens to
	// spare; then each other hostile client opens its connections, and
	// the flood begins once they are open.
	callsBegan := time.Now()
	runHostile(t, "connections per address", func() { hostilePerIP(t, v) })
	var wg, ready sync.WaitGroup
	for _, h := range []struct {
		name string
		run  func(t *testing.T, v *streamsViaduct, ready func())
	}{
		{"slow sender", hostileSlowSender},
		{"never reads", hostileNeverReads},
		{"garbage framing", hostileGarbage},
		{"100 MB Content-Length", hostileHugeContentLength},
	} {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			done := func() { once.Do(ready.Done) }
			defer done()
			runHostile(t, h.name, func() { h.run(t, v, done) })
		}()
	}
	ready.Wait()
	runHostile(t, "connection flood", func() { hostileFlood(t, v) })
	wg.Wait()
	t.Logf("hostile clients done %v into the %v of calls", time.Since(callsBegan).Round(time.Millisecond), sending)

	for name, ran := range runs {
		r := <-ran
		if r == nil {
			continue
		}
		rep := r.Report(0)
		t.Logf("%s uac: %d started, %d completed, %d failed %v, connections opened %d dropped %d", name,
			rep.Started, rep.Completed, rep.Failed, rep.FailedBy, r.Counts.ConnsOpened, r.Counts.ConnsDropped)
		if rep.Failed != 0 || rep.Completed != rep.Started || rep.Started < uint64(rate*sending.Seconds()*0.9) {
			t.Errorf("%s uac: %d started, %d completed, %d failed %v; want every call of %v at %d/s completed",
				name, rep.Started, rep.Completed, rep.Failed, rep.FailedBy, sending, rate)
		}
	}
	m := v.metrics(t)
	for _, k := range []string{"closed_total", "limit_hits_total"} {
		var parts []string
		for key, val := range m {
			if strings.HasPrefix(key, "viaduct_stream_"+k) && val != 0 {
				parts = append(parts, fmt.Sprintf("%s=%v", key[strings.IndexByte(key, '{'):], val))
			}
		}
		t.Logf("viaduct_stream_%s: %s", k, strings.Join(parts, " "))
	}
}

// runHostile runs one hostile client, logging how long it took.
func runHostile(t *testing.T, name string, run func()) {
	began := time.Now()
	run()
	t.Logf("%s: done in %v", name, time.Since(began).Round(time.Millisecond))
}

// waitUACConnections waits (10 s at most) until u has opened n connections.
func waitUACConnections(t *testing.T, u *load.UAC, n uint64) {
	t.Helper()
	var c load.Counts
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if u.Counts(&c); c.ConnsOpened >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tcp uac opened %d connections, want %d", c.ConnsOpened, n)
		}
	}
}

// dialFrom opens a TCP connection to to from the local address from (port
// chosen by the kernel), with SO_RCVBUF set to rcvbuf when not zero.
func dialFrom(from netip.Addr, to netip.AddrPort, rcvbuf int) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp4", to.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// closedWithin reads c until Viaduct closes it (EOF or reset), d at most,
// and reports whether it did and when.
func closedWithin(c net.Conn, d time.Duration) (bool, time.Duration) {
	began := time.Now()
	c.SetReadDeadline(began.Add(d))
	_, err := io.Copy(io.Discard, c)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return true, time.Since(began)
	}
	return false, time.Since(began)
}

// expectCounted waits (10 s) for name{labels} to reach want, failing the
// test otherwise.
func expectCounted(t *testing.T, v *streamsViaduct, want float64, name string, labels ...string) float64 {
	got := v.waitMetric(t, 10*time.Second, want, name, labels...)
	if got < want {
		t.Errorf("%s%v = %v, want at least %v", name, labels, got, want)
	}
	return got
}

// hostileSlowSender sends one OPTIONS (answered by Viaduct itself, so the
// connection is past its first message), then an INVITE one byte every
// 100 ms: Viaduct closes the connection once message_timeout (1s) has
// passed since the INVITE's first byte, counted as message_timeout.
func hostileSlowSender(t *testing.T, v *streamsViaduct, ready func()) {
	from := netip.MustParseAddr("127.0.0.10")
	c, err := dialFrom(from, v.sip, 0)
	if err != nil {
		t.Errorf("slow sender: %v", err)
		return
	}
	defer c.Close()
	ready()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if _, err := c.Write([]byte(sipRequest("OPTIONS", "sip:"+v.sip.String(), "TCP", local, "slow-options", 1, 0))); err != nil {
		t.Errorf("slow sender: %v", err)
		return
	}
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if msg, err := readSIP(r); err != nil || !strings.HasPrefix(msg, "SIP/2.0 200") {
		t.Errorf("slow sender: OPTIONS answered %q, %v", firstLine(msg), err)
		return
	}
	gone := make(chan time.Duration, 1)
	began := time.Now()
	go func() {
		ok, _ := closedWithin(readerConn{c, r}, 15*time.Second)
		if ok {
			gone <- time.Since(began)
		}
		close(gone)
	}()
	msg := sipRequest("INVITE", "sip:slow@example.com", "TCP", local, "slow", 2, 200)
	var took time.Duration
	sent := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
trickle:
	for ; sent < len(msg); sent++ {
		c.Write([]byte{msg[sent]})
		select {
		case took = <-gone:
			break trickle
		case <-tick.C:
		}
	}
	if took == 0 || took > 5*time.Second {
		t.Errorf("slow sender: %d of %d bytes sent, closed after %v (message_timeout 1s; 0: not closed)", sent, len(msg), took)
	}
	t.Logf("slow sender: closed by Viaduct %v after its first byte, %d of %d bytes sent", took.Round(time.Millisecond), sent, len(msg))
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="message_timeout"`)
}

// readerConn reads through a bufio.Reader already holding bytes of conn.
type readerConn struct {
	net.Conn
	r *bufio.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// hostileNeverReads sends OPTIONS addressed to Viaduct (answered 200 by
// Viaduct itself, on this connection) without ever reading the answers:
// the write queue (64 KiB) fills once the kernel's buffers are full, and
// Viaduct closes the connection, counted as write_queue.
func hostileNeverReads(t *testing.T, v *streamsViaduct, ready func()) {
	from := netip.MustParseAddr("127.0.0.11")
	c, err := dialFrom(from, v.sip, 4096)
	if err != nil {
		t.Errorf("never reads: %v", err)
		return
	}
	defer c.Close()
	ready()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	pad := strings.Repeat("p", 900)
	var batch strings.Builder
	for i := range 50 {
		batch.WriteString(sipRequest("OPTIONS", "sip:"+v.sip.String(), "TCP", local, pad, i+1, 0))
	}
	began, sent := time.Now(), 0
	for time.Since(began) < 20*time.Second && sent < 200<<20 {
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Write([]byte(batch.String()))
		sent += n
		if err != nil {
			break
		}
		if metricSum(v.metrics(t), "viaduct_stream_closed_total", `reason="write_queue"`) > 0 {
			break
		}
	}
	t.Logf("never reads: %d KiB of OPTIONS sent in %v", sent>>10, time.Since(began).Round(time.Millisecond))
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="write_queue"`)
}

// hostileGarbage sends a message whose Content-Length is not a number, and
// bytes that are no SIP at all: each connection is closed, counted as
// bad_framing.
func hostileGarbage(t *testing.T, v *streamsViaduct, ready func()) {
	junk := []string{
		"INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.12:5060;branch=z9hG4bKjunk\r\nContent-Length: 12x\r\n\r\n",
		"\x00\x01\x02\xff garbage \x7f\r\nContent-Length: -5\r\n\r\n",
	}
	var conns []net.Conn
	for range junk {
		c, err := dialFrom(netip.MustParseAddr("127.0.0.12"), v.sip, 0)
		if err != nil {
			t.Errorf("garbage: %v", err)
			return
		}
		defer c.Close()
		conns = append(conns, c)
	}
	ready()
	for i, c := range conns {
		c.Write([]byte(junk[i]))
		if gone, took := closedWithin(c, 5*time.Second); !gone {
			t.Errorf("garbage %d: still connected after %v", i, took)
		}
	}
	expectCounted(t, v, 2, "viaduct_stream_closed_total", `reason="bad_framing"`)
}

// hostileHugeContentLength announces a 100 MB body and sends its first
// MiB: Viaduct answers 513 at once and closes the connection (reading
// what follows for a moment, so that the answer is not lost to a reset),
// counted as too_large.
func hostileHugeContentLength(t *testing.T, v *streamsViaduct, ready func()) {
	c, err := dialFrom(netip.MustParseAddr("127.0.0.13"), v.sip, 0)
	if err != nil {
		t.Errorf("100 MB: %v", err)
		return
	}
	defer c.Close()
	ready()
	head := sipRequest("INVITE", "sip:huge@example.com", "TCP", netip.MustParseAddrPort("127.0.0.13:5060"), "huge", 1, 0)
	head = strings.Replace(head, "Content-Length: 0", "Content-Type: application/sdp\r\nContent-Length: 104857600", 1)
	began := time.Now()
	c.SetWriteDeadline(began.Add(5 * time.Second))
	c.Write(append([]byte(head), make([]byte, 1<<20)...))
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, err := readSIP(r)
	if err != nil || !strings.HasPrefix(msg, "SIP/2.0 513") {
		t.Errorf("100 MB Content-Length answered %q, %v; want 513 Message Too Large", firstLine(msg), err)
	}
	gone, _ := closedWithin(readerConn{c, r}, 5*time.Second)
	t.Logf("100 MB Content-Length: %q, closed %v after %v", firstLine(msg), gone, time.Since(began).Round(time.Millisecond))
	if !gone {
		t.Errorf("100 MB Content-Length: still connected after %v", time.Since(began))
	}
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="too_large"`)
}

// hostilePerIP opens 60 connections from one address: 50 are kept, the
// others refused and counted as max_connections_per_ip. A refused
// connection can end before its dial returns (connection reset): that is
// a refusal too.
func hostilePerIP(t *testing.T, v *streamsViaduct) {
	from := netip.MustParseAddr("127.0.0.14")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 60 {
		c, err := dialFrom(from, v.sip, 0)
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			// Refused (accepted and reset) before the dial saw it
			// connected.
		case err != nil:
			t.Errorf("per address: %v", err)
			return
		default:
			conns = append(conns, c)
		}
	}
	expectCounted(t, v, 10, "viaduct_stream_limit_hits_total", `limit="max_connections_per_ip"`)
	var open int
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	if open > 50 {
		t.Errorf("per address: %d of 60 connections from %v open, want 50 at most", open, from)
	}
}

// hostileFlood opens 3000 connections as fast as it can from 3000 source
// addresses (127.1.x.y) and keeps them without sending anything: the
// accept rate (1000/s, burst 500) and max_connections (1000) refuse the
// excess, first_message_timeout (2s) closes the rest, each counted; the
// binary's RSS is sampled meanwhile and must stay bounded.
func hostileFlood(t *testing.T, v *streamsViaduct) {
	const total, dialers = 3000, 32
	rss := newRSSSampler(v.p.cmd.Process.Pid)
	defer rss.stop()
	before := rss.now()
	var mu sync.Mutex
	var conns []net.Conn
	var failed int
	var firstErr error
	var wg sync.WaitGroup
	began := time.Now()
	for d := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := d; i < total && time.Since(began) < 15*time.Second; i += dialers {
				from := netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(1 + i%250)})
				c, err := dialFrom(from, v.sip, 0)
				mu.Lock()
				if err != nil {
					failed++
					firstErr = cmp.Or(firstErr, err)
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	dialled := time.Since(began)
	// Viaduct accepts from the kernel's queue after the dials return:
	// wait for its verdicts.
	var rate, most float64
	for deadline := time.Now().Add(10 * time.Second); rate+most == 0; time.Sleep(50 * time.Millisecond) {
		m := v.metrics(t)
		rate, most = metricSum(m, "viaduct_stream_limit_hits_total", `limit="accept_rate"`), metricSum(m, "viaduct_stream_limit_hits_total", `limit="max_connections"`)
		if time.Now().After(deadline) {
			t.Errorf("flood: nothing refused by accept_rate or max_connections")
			break
		}
	}
	expectCounted(t, v, 1, "viaduct_stream_closed_total", `reason="first_message_timeout"`)
	peak := rss.stop()
	for _, c := range conns {
		c.Close()
	}
	after := rss.now()
	t.Logf("flood: %d connections in %v (%d dial errors, the first %v), refused: %v by accept_rate, %v by max_connections; viaduct RSS %d MiB before, %d MiB at most during, %d MiB after",
		len(conns), dialled.Round(time.Millisecond), failed, firstErr, rate, most, before>>20, peak>>20, after>>20)
	if peak > 128<<20 {
		t.Errorf("viaduct RSS reached %d MiB during the flood", peak>>20)
	}
}

// rssSampler samples a process's resident set size every 50 ms and keeps
// the highest.
type rssSampler struct {
	pid  int
	done chan struct{}
	peak chan int
}

func newRSSSampler(pid int) *rssSampler {
	s := &rssSampler{pid: pid, done: make(chan struct{}), peak: make(chan int, 1)}
	go func() {
		peak := 0
		for {
			peak = max(peak, s.now())
			select {
			case <-s.done:
				s.peak <- peak
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return s
}

// now returns the process's VmRSS in bytes (0 when unreadable).
func (s *rssSampler) now() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb << 10
		}
	}
	return 0
}

// stop ends the sampling and returns the peak (the first call; later
// calls return it again).
func (s *rssSampler) stop() int {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	p := <-s.peak
	s.peak <- p
	return p
}

// A message whose Content-Length is over the maximum message size is
// refused with 513 Message Too Large (RFC 3261 21.5.14), as
// transport/stream's refuse says, not with a 400 about its body.
func TestBinaryTooLargeAnswered513(t *testing.T) {
	v := startStreamsViaduct(t, "upstreams: [\"127.0.0.1:9\"]\n")
	c, err := dialFrom(netip.MustParseAddr("127.0.0.1"), v.sip, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := sipRequest("INVITE", "sip:huge@example.com", "TCP", c.LocalAddr().(*net.TCPAddr).AddrPort(), "huge", 1, 0)
	c.Write([]byte(strings.Replace(head, "Content-Length: 0", "Content-Length: 104857600", 1)))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if msg, err := readSIP(bufio.NewReader(c)); err != nil || !strings.HasPrefix(msg, "SIP/2.0 513") {
		t.Errorf("Content-Length: 104857600 answered %q, %v; want 513 Message Too Large", firstLine(msg), err)
	}
}
