package stream

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// BenchmarkPipelined measures messages per second over one connection: the
// client writes messages in bursts of 64 while reading the echoes.
func BenchmarkPipelined(b *testing.B) {
	for _, kind := range []transport.Kind{transport.TCP, transport.TLS, transport.WS, transport.WSS} {
		b.Run(kind.String(), func(b *testing.B) {
			// The reader can fall behind a server this fast (WebSocket's
			// framing is cheaper than finding a Content-Length): a
			// write queue that holds what it has not read yet.
			c := benchConn(b, kind, ServerConfig{WriteQueue: 64 << 20}, echoHandler{})
			msg, back := sipMsg(1), len(sipMsg(1))
			if kind == transport.WS || kind == transport.WSS {
				msg, back = clientFrame(true, opText, msg), wsHeaderLen(back)+back
			}
			const burst = 64
			batch := make([]byte, 0, burst*len(msg))
			for range burst {
				batch = append(batch, msg...)
			}
			done := make(chan error, 1)
			go func() { // the reader
				buf := make([]byte, 64<<10)
				var err error
				for got, n := 0, 0; got < b.N*back && err == nil; got += n {
					n, err = c.Read(buf)
				}
				done <- err
			}()
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += burst {
				if _, err := c.Write(batch[:min(burst, b.N-sent)*len(msg)]); err != nil {
					b.Fatal(err)
				}
			}
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRoundTrips measures messages per second over 64 connections,
// each waiting for the answer before it sends the next message (a phone's
// pattern: one message per read).
func BenchmarkRoundTrips(b *testing.B) {
	s := serve(b, transport.TCP, ServerConfig{}, testLayout(), echoHandler{})
	const conns = 64
	cs := make([]net.Conn, conns)
	for i := range cs {
		cs[i] = dialFrom(b, "", s.Addrs()[0])
	}
	msg := sipMsg(1)
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		rt := roundTrip(c, msg)
		wg.Go(func() {
			for range n {
				rt()
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// benchConn serves kind with cfg and h and returns a client connection,
// upgraded for WS and WSS (whose bytes then go in frames).
func benchConn(b *testing.B, kind transport.Kind, cfg ServerConfig, h transport.Handler) net.Conn {
	var c net.Conn
	if kind.Secure() {
		ca := newTestCA(b)
		cfg.CertFile, cfg.KeyFile, _ = ca.issue(b, "server", 100)
		s := serve(b, kind, cfg, testLayout(), h)
		tc, err := tlsDial(b, s, ca, nil)
		if err != nil {
			b.Fatal(err)
		}
		c = tc
	} else {
		s := serve(b, kind, cfg, testLayout(), h)
		c = dialFrom(b, "", s.Addrs()[0])
	}
	if kind == transport.WS || kind == transport.WSS {
		if err := clientUpgrade(c); err != nil {
			b.Fatal(err)
		}
	}
	c.SetDeadline(time.Time{})
	return c
}

// clientUpgrade upgrades c as a browser does, and reads the 101 (whose
// head is all the server sends).
func clientUpgrade(c net.Conn) error {
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, upgradeRequest("/", "https://app.example.com", "sip")); err != nil {
		return err
	}
	var head []byte
	for one := make([]byte, 1); !strings.HasSuffix(string(head), "\r\n\r\n"); head = append(head, one[0]) {
		if _, err := io.ReadFull(c, one); err != nil {
			return fmt.Errorf("upgrade response after %q: %w", head, err)
		}
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 101 ") {
		return fmt.Errorf("upgrade answered %q", head)
	}
	return nil
}

// BenchmarkIdleConnMemory measures what an idle connection costs the
// server: a client process (this test binary, TestIdleClientProcess) opens
// N connections, sends one message on each and reads its answer, then
// leaves them open; the server's RSS, heap and goroutine stacks are
// measured before and after (after a GC and returning free memory to the
// OS). N is 20,000, or fewer when the descriptor limit is lower; run with
// -benchtime=1x.
//
// The deep variant's handler uses some 12 KiB of stack per message, as a
// core deeper than echoHandler may: the connection's goroutine stack grows
// while handling and the GCs shrink it back once the connection is idle.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, v := range []struct {
		name string
		kind transport.Kind
		h    transport.Handler
	}{
		{"tcp", transport.TCP, echoHandler{}},
		{"tls", transport.TLS, echoHandler{}},
		{"ws", transport.WS, echoHandler{}},
		{"wss", transport.WSS, echoHandler{}},
		{"tcp-deep-handler", transport.TCP, deepHandler{}},
	} {
		kind := v.kind
		b.Run(v.name, func(b *testing.B) {
			n := idleConnCount(b)
			cfg := ServerConfig{MaxConnections: n + 100, MaxConnectionsPerIP: n + 100, AcceptRate: 1e9, AcceptBurst: n + 100,
				FirstMessageTimeout: time.Hour, IdleTimeout: time.Hour, HandshakeTimeout: time.Minute}
			ca := newTestCA(b)
			if kind.Secure() {
				cfg.CertFile, cfg.KeyFile, _ = ca.issue(b, "server", 100)
			}
			s := serve(b, kind, cfg, testLayout(), v.h)
			before := memNow()
			stop := startIdleClients(b, kind, s, n, filepath.Join(ca.dir, "ca.pem"))
			defer stop()
			after := memNow()
			if open := s.Stats().OpenIn[0]; open != int64(n) {
				b.Fatalf("%d connections open, want %d", open, n)
			}
			per := func(a, z uint64) float64 { return (float64(z) - float64(a)) / float64(n) }
			b.ReportMetric(float64(n), "conns")
			b.ReportMetric(per(before.rss, after.rss), "rss-B/conn")
			b.ReportMetric(per(before.heap, after.heap), "heap-B/conn")
			b.ReportMetric(per(before.stacks, after.stacks), "stack-B/conn")
		})
	}
}

// deepHandler is echoHandler with some 12 KiB of stack in use.
type deepHandler struct{}

func (deepHandler) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	var pad [12 << 10]byte
	return deepEcho(msg, src, out, pad[:])
}

//go:noinline
func deepEcho(msg []byte, src transport.Peer, out *transport.Outbound, pad []byte) bool {
	pad[len(pad)-1] = msg[0]
	return echoHandler{}.Handle(msg, src, out)
}

func (deepHandler) Sent(*transport.Outbound, error) {}

// idleConnCount is 20,000 or what the descriptor limit allows.
func idleConnCount(b *testing.B) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	n := min(20000, int(lim.Cur)-200)
	if n < 1000 {
		b.Skipf("descriptor limit %d: too low to measure", lim.Cur)
	}
	if n < 20000 {
		b.Logf("descriptor limit %d: measuring %d connections", lim.Cur, n)
	}
	return n
}

type memSample struct{ rss, heap, stacks uint64 }

func memNow() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	ms := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(ms)
	return memSample{rss: vmRSS(), heap: ms[0].Value.Uint64(), stacks: ms[1].Value.Uint64()}
}

// vmRSS reads the process's resident set from /proc (0 without it).
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// startIdleClients runs the client process and waits until its n
// connections are served; stop ends it.
func startIdleClients(b *testing.B, kind transport.Kind, s *Server, n int, caFile string) (stop func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("STREAM_IDLE_CLIENT=%s,%s,%d,%s", kind, s.Addrs()[0], n, caFile))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() { stdin.Close(); cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		stop()
		b.Fatalf("client process: %q, %v", line, err)
	}
	return stop
}

// TestIdleClientProcess is the client process of BenchmarkIdleConnMemory;
// it does nothing without STREAM_IDLE_CLIENT=kind,addr,n,cafile.
func TestIdleClientProcess(t *testing.T) {
	spec := os.Getenv("STREAM_IDLE_CLIENT")
	if spec == "" {
		t.Skip("the client process of BenchmarkIdleConnMemory")
	}
	f := strings.Split(spec, ",")
	kind, _ := transport.ParseKind(f[0])
	addr := f[1]
	n, _ := strconv.Atoi(f[2])
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(f[3])
	pool.AppendCertsFromPEM(pem)
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const dialers = 16
	for d := range dialers {
		wg.Go(func() {
			for i := d; i < n; i += dialers {
				c, err := idleClient(kind, addr, pool, i)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it
}

// idleClient dials, sends message i and reads its echo.
func idleClient(kind transport.Kind, addr string, pool *x509.CertPool, i int) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Minute)
	if err != nil {
		return nil, err
	}
	if kind.Secure() {
		c = tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "viaduct.test"})
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	msg, back := sipMsg(i), len(sipMsg(i))
	if kind == transport.WS || kind == transport.WSS {
		if err := clientUpgrade(c); err != nil {
			return nil, err
		}
		msg, back = clientFrame(true, opText, msg), wsHeaderLen(back)+back
	}
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(c, make([]byte, back)); err != nil {
		return nil, err
	}
	return c, c.SetDeadline(time.Time{})
}
