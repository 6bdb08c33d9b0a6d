package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/bench/load"
	"github.com/viaduct-sip/viaduct/transport"
)

// Issue #15 through the real binary, with Go peers on loopback: requests
// through a flow token reach a phone over its own TCP connection (430 once
// it is gone), large requests for a UDP upstream that accepts TCP go over
// TCP, responses of a flow keep their order under load, and hostile TCP
// clients are stopped by their limits while well-behaved calls keep
// completing (streams_hostile_e2e_linux_test.go).

// streamsViaduct is a binary started for these tests: its SIP address
// (UDP and TCP), its admin address and the process.
type streamsViaduct struct {
	sip, admin netip.AddrPort
	p          *proc
}

// startStreamsViaduct runs the binary with the YAML cfg, to which the
// listen address (UDP and TCP on one port), the listen entries extra and
// the admin API are added, and waits until both answer.
func startStreamsViaduct(t *testing.T, cfg string, extra ...string) *streamsViaduct {
	t.Helper()
	bin := viaductBinary(t)
	dir := t.TempDir()
	v := &streamsViaduct{sip: freePort(t), admin: freeTCPPort(t)}
	listen := fmt.Sprintf("%q", v.sip.String())
	for _, e := range extra {
		listen += fmt.Sprintf(", %q", e)
	}
	head := fmt.Sprintf("listen: [%s]\nadmin: {listen: \"%s\"}\n", listen, v.admin)
	path := filepath.Join(dir, "viaduct.yaml")
	if err := os.WriteFile(path, []byte(head+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	v.p = start(t, dir, bin, "--config", path, "--shutdown-drain", "0", "--health=false")
	waitListening(t, v.sip, "tcp", v.p)
	waitStatus(t, "http://"+v.admin.String()+"/metrics", 200, 10*time.Second, v.p)
	return v
}

// metrics scrapes /metrics: every sample by its line up to the value
// (name{labels}).
func (v *streamsViaduct) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + v.admin.String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if f, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = f
		}
	}
	return out
}

// metricSum sums the samples of the metric name having every label
// (`key="value"`) given.
func metricSum(m map[string]float64, name string, labels ...string) float64 {
	var sum float64
next:
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue next
			}
		}
		sum += v
	}
	return sum
}

// waitMetric waits (up to d) until the sum of name{labels} reaches at
// least want, and returns its last value.
func (v *streamsViaduct) waitMetric(t *testing.T, d time.Duration, want float64, name string, labels ...string) float64 {
	t.Helper()
	var got float64
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if got = metricSum(v.metrics(t), name, labels...); got >= want || time.Now().After(deadline) {
			return got
		}
	}
}

// sipRequest is a request with a Via of transport tr sent by sentBy, and a
// body of bodySize bytes (an SDP-looking filler).
func sipRequest(method, ruri, tr string, sentBy netip.AddrPort, callID string, cseq int, bodySize int, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK%s-%d;rport\r\nMax-Forwards: 70\r\n", method, ruri, tr, sentBy, callID, cseq)
	fmt.Fprintf(&b, "From: <sip:caller@example.com>;tag=c%d\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: %d %s\r\n", cseq, ruri, callID, cseq, method)
	fmt.Fprintf(&b, "Contact: <sip:caller@%s;transport=%s>\r\n", sentBy, strings.ToLower(tr))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	body := sdpFiller(bodySize)
	if body != "" {
		b.WriteString("Content-Type: application/sdp\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

// sdpFiller returns an SDP-looking body of n bytes (none for 0).
func sdpFiller(n int) string {
	if n == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
	for b.Len() < n {
		b.WriteString("a=x-filler:0123456789abcdef0123456789abcdef0123456789\r\n")
	}
	return b.String()[:n-2] + "\r\n"
}

// readSIP reads one message from a stream: headers to the blank line and
// as many body bytes as Content-Length says.
func readSIP(r *bufio.Reader) (string, error) {
	var b strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), err
		}
		b.WriteString(line)
		h := strings.TrimRight(line, "\r\n")
		if h == "" {
			if b.Len() == len(line) { // keepalive CRLF before a message
				b.Reset()
				continue
			}
			break
		}
		if name, val, ok := strings.Cut(h, ":"); ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.EqualFold(strings.TrimSpace(name), "l")) {
			length, _ = strconv.Atoi(strings.TrimSpace(val))
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return b.String(), err
	}
	return b.String() + string(body), nil
}

// header returns the value of the first header line named name in msg.
func header(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
		if line == "" {
			break
		}
	}
	return ""
}

// headerLines returns every line of the headers named name, as they stand.
func headerLines(msg, name string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\r\n") {
		if line == "" {
			break
		}
		if n, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(n), name) {
			out = append(out, line)
		}
	}
	return out
}

// response builds a response to request req: its Via, Record-Route, From,
// Call-ID and CSeq lines, its To with a tag.
func response(req, status string) string {
	var b strings.Builder
	b.WriteString("SIP/2.0 " + status + "\r\n")
	for _, name := range []string{"Via", "Record-Route", "From"} {
		for _, l := range headerLines(req, name) {
			b.WriteString(l + "\r\n")
		}
	}
	to := header(req, "To")
	if !strings.Contains(to, ";tag=") {
		to += ";tag=callee"
	}
	fmt.Fprintf(&b, "To: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n", to, header(req, "Call-ID"), header(req, "CSeq"))
	return b.String()
}

// firstLine returns the start line of msg.
func firstLine(msg string) string { return strings.SplitN(msg, "\r\n", 2)[0] }

// udpPeer is a UDP socket on loopback that queues the messages it reads.
type udpPeer struct {
	c   *net.UDPConn
	got chan udpMsg
}

type udpMsg struct {
	text string
	from netip.AddrPort
}

// listenUDPPeer opens a udpPeer on addr (port 0: any).
func listenUDPPeer(t *testing.T, addr netip.AddrPort) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	u := &udpPeer{c: c, got: make(chan udpMsg, 1024)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(u.got)
				return
			}
			select {
			case u.got <- udpMsg{string(buf[:n]), from}:
			default:
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return u
}

func (u *udpPeer) addr() netip.AddrPort { return u.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (u *udpPeer) send(t *testing.T, msg string, to netip.AddrPort) {
	t.Helper()
	if _, err := u.c.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
}

// recv waits (up to d) for a message whose start line has prefix, skipping
// others (provisional responses, retransmissions); ok false on timeout.
func (u *udpPeer) recv(d time.Duration, prefix string) (udpMsg, bool) {
	timeout := time.After(d)
	for {
		select {
		case m, open := <-u.got:
			if !open {
				return udpMsg{}, false
			}
			if strings.HasPrefix(m.text, prefix) {
				return m, true
			}
		case <-timeout:
			return udpMsg{}, false
		}
	}
}

// tcpPeer is a TCP listener on loopback that queues the messages read on
// any connection it accepts, and answers each INVITE 200 on its
// connection.
type tcpPeer struct {
	l   *net.TCPListener
	got chan string
}

func listenTCPPeer(t *testing.T, addr netip.AddrPort) *tcpPeer {
	t.Helper()
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpPeer{l: l, got: make(chan string, 1024)}
	var conns []*net.TCPConn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return p
}

func (p *tcpPeer) serve(c *net.TCPConn) {
	r := bufio.NewReader(c)
	for {
		msg, err := readSIP(r)
		if err != nil {
			return
		}
		if strings.HasPrefix(msg, "INVITE ") {
			c.Write([]byte(response(msg, "200 OK")))
		}
		select {
		case p.got <- msg:
		default:
		}
	}
}

// Issue #15: "A large INVITE (3 KB) from a UDP client reaches a
// TCP-capable upstream over TCP." The upstream listens on UDP and TCP at
// one port. With accepts_tcp a small INVITE from a UDP client reaches it
// over UDP and a 3 KB one over TCP (its 200 comes back to the client over
// UDP); without accepts_tcp the 3 KB one stays on UDP, counted.
func TestBinaryLargeRequestOverTCP(t *testing.T) {
	for _, acceptsTCP := range []bool{true, false} {
		t.Run(fmt.Sprintf("accepts_tcp=%v", acceptsTCP), func(t *testing.T) {
			up := freePort(t)
			upUDP, upTCP := listenUDPPeer(t, up), listenTCPPeer(t, up)
			v := startStreamsViaduct(t, fmt.Sprintf("workers: 1\nupstreams: [{address: \"%s\", accepts_tcp: %v}]\n", up, acceptsTCP))
			client := listenUDPPeer(t, netip.MustParseAddrPort("127.0.0.1:0"))

			small := sipRequest("INVITE", "sip:callee@example.com", "UDP", client.addr(), fmt.Sprintf("small-%d", time.Now().UnixNano()), 1, 200)
			client.send(t, small, v.sip)
			if m, ok := upUDP.recv(10*time.Second, "INVITE "); !ok {
				t.Fatalf("the small INVITE did not reach the upstream over UDP:\n%s", lastLines(v.p.out.String(), 20))
			} else if via := header(m.text, "Via"); !strings.HasPrefix(via, "SIP/2.0/UDP ") {
				t.Errorf("small INVITE over UDP with the top Via %q", via)
			}

			large := sipRequest("INVITE", "sip:callee@example.com", "UDP", client.addr(), fmt.Sprintf("large-%d", time.Now().UnixNano()), 1, 3000)
			if len(large) < 3000 {
				t.Fatalf("large INVITE has %d bytes", len(large))
			}
			client.send(t, large, v.sip)
			if acceptsTCP {
				select {
				case m := <-upTCP.got:
					if via := header(m, "Via"); !strings.HasPrefix(via, "SIP/2.0/TCP ") || header(m, "Call-ID") != header(large, "Call-ID") {
						t.Errorf("the INVITE over TCP has the top Via %q, Call-ID %q", via, header(m, "Call-ID"))
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("the 3 KB INVITE did not reach the upstream over TCP:\n%s", lastLines(v.p.out.String(), 20))
				}
				if m, ok := client.recv(10*time.Second, "SIP/2.0 200"); !ok || header(m.text, "Call-ID") != header(large, "Call-ID") {
					t.Errorf("the upstream's 200 over TCP did not reach the UDP client (got %q)", firstLine(m.text))
				}
				if m, ok := upUDP.recv(200*time.Millisecond, "INVITE "); ok {
					t.Errorf("the 3 KB INVITE also came over UDP: %s", header(m.text, "Call-ID"))
				}
			} else {
				if m, ok := upUDP.recv(10*time.Second, "INVITE "); !ok || header(m.text, "Call-ID") != header(large, "Call-ID") {
					t.Fatalf("the 3 KB INVITE did not reach the upstream over UDP:\n%s", lastLines(v.p.out.String(), 20))
				}
				select {
				case m := <-upTCP.got:
					t.Errorf("without accepts_tcp a request came over TCP: %s", firstLine(m))
				default:
				}
			}
			m := v.metrics(t)
			over, stayed := metricSum(m, "viaduct_large_requests_total", `transport="tcp"`), metricSum(m, "viaduct_large_requests_total", `transport="udp"`)
			t.Logf("viaduct_large_requests_total: tcp %v, udp %v", over, stayed)
			if want := map[bool][2]float64{true: {1, 0}, false: {0, 1}}[acceptsTCP]; over != want[0] || stayed != want[1] {
				t.Errorf("viaduct_large_requests_total tcp %v udp %v, want %v", over, stayed, want)
			}
		})
	}
}

// Issue #15: "Messages of one flow leave in the order they came ... a
// call's 180 never overtakes its 200 on the client's connection", under
// load: viaduct-load's UAC over TCP (two shared connections) through the
// binary (two workers) to its UAS over TCP, which answers every INVITE 100,
// 180, 200 back to back on one connection. On TCP nothing is
// retransmitted, so a response the UAC takes for a duplicate (a 1xx or
// 200 arriving when the call already has its 200) is one that overtook:
// none may, and every call completes. The UAC has no counter of
// reordered 1xx of its own; Duplicates is where a 180 after its 200 counts.
func TestBinaryStreamOrderUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	uas, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Transport: transport.TCP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uas.Close() })
	v := startStreamsViaduct(t, fmt.Sprintf("workers: 2\nupstreams: [\"tcp:%s\"]\n", uas.Addr()))
	uac, err := load.NewUAC(load.UACConfig{Target: v.sip, Transport: transport.TCP, Sources: 2, CallHold: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uac.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	const rate, sending = 600, 5 * time.Second
	r, err := uac.Run(ctx, load.RunOptions{Rate: rate, Duration: sending, Drain: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Counts
	t.Logf("%d calls started, %d completed, %d failed %v; %d responses received, duplicates %d, unexpected %d",
		c.Started, c.Completed, c.Failed, c.FailedBy(), c.Received, c.Duplicates, c.Unexpected)
	if c.Failed != 0 || c.Completed != c.Started || c.Started < uint64(rate*sending.Seconds()*0.9) {
		t.Errorf("%d calls started, %d completed, %d failed %v; want all of about %d completed", c.Started, c.Completed, c.Failed, c.FailedBy(), int(rate*sending.Seconds()))
	}
	if c.Duplicates != 0 || c.Unexpected != 0 {
		t.Errorf("responses out of order: %d taken for duplicates (a 1xx or 200 after the call's 200), %d unexpected", c.Duplicates, c.Unexpected)
	}
}

// A message over TCP is forwarded at once even where a UDP worker keeps
// its P waiting in recvmmsg (park_after, the default) and no other P is
// free: with GOMAXPROCS 1, the connection's goroutine used to wait until
// that worker next passed through the netpoller, 5 to 10 ms per message
// (a first-response latency of 11 ms at the median); the workers now park
// in the netpoller while a connection is open.
func TestBinaryTCPLatencyWithParkAfter(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	uas, err := load.NewUAS(load.UASConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uas.Close() })
	t.Setenv("GOMAXPROCS", "1") // inherited by the binary: one UDP worker, no spare P
	v := startStreamsViaduct(t, fmt.Sprintf("upstreams: [\"%s\"]\n", uas.Addr()))
	uac, err := load.NewUAC(load.UACConfig{Target: v.sip, Transport: transport.TCP, Sources: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uac.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := uac.Run(ctx, load.RunOptions{Rate: 200, Duration: 3 * time.Second, Drain: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Counts
	p50, p90 := time.Duration(c.Response.Percentile(50)), time.Duration(c.Response.Percentile(90))
	t.Logf("%d calls completed of %d; first response p50 %v, p90 %v", c.Completed, c.Started, p50, p90)
	if c.Completed == 0 || c.Failed != 0 {
		t.Fatalf("%d calls completed, %d failed %v", c.Completed, c.Failed, c.FailedBy())
	}
	if p50 > 3*time.Millisecond {
		t.Errorf("first-response latency over TCP: median %v, want under 3 ms (the loopback round trip is about 0.2 ms)", p50)
	}
}
