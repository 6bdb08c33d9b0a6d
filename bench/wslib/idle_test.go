package wslib

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	coder "github.com/coder/websocket"
)

// idleLimit bounds the time spent opening the connections of one variant.
const idleLimit = 2 * time.Minute

// idleVariant is one way of keeping an upgraded, idle server connection:
// start serves ln and passes every upgraded connection to hold.
type idleVariant struct {
	name      string
	handshake bool
	start     func(ln net.Listener, hold func(io.Closer)) (stop func())
}

var idleVariants = []idleVariant{
	{"tcp-baseline", false, idleRaw(false)},
	{"gobwas (net.Conn only)", true, idleRaw(true)},
	{"gorilla (*Conn held)", true, idleHTTP(gorillaIdle(false))},
	{"gorilla (+ handler blocked in NextReader)", true, idleHTTP(gorillaIdle(true))},
	{"coder (*Conn held)", true, idleHTTP(coderIdle(false))},
	{"coder (+ handler blocked in Reader)", true, idleHTTP(coderIdle(true))},
}

// TestIdleConnections measures the server-side memory and goroutines of N
// idle upgraded connections (default 10,000; WSLIB_IDLE_N overrides) per
// library over loopback. It opens 2N sockets, so it only runs with
// WSLIB_IDLE=1. The clients live in a child process (this test binary
// running TestIdleClientHelper), so the figures (heap and goroutine-stack
// bytes per connection after GC) are the server's alone; the tcp-baseline
// row is the floor of a plain accepted net.Conn.
func TestIdleConnections(t *testing.T) {
	if os.Getenv("WSLIB_IDLE") != "1" {
		t.Skip("set WSLIB_IDLE=1 to run: opens 2*N loopback sockets")
	}
	n := 10000
	if s := os.Getenv("WSLIB_IDLE_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			t.Fatalf("bad WSLIB_IDLE_N %q", s)
		}
	}
	raiseNoFile(t, uint64(n+1024))
	for _, v := range idleVariants {
		t.Run(v.name, func(t *testing.T) { measureIdle(t, v, n) })
	}
}

// raiseNoFile raises RLIMIT_NOFILE to at least want (the hard limit too,
// which needs root or CAP_SYS_RESOURCE).
func raiseNoFile(t *testing.T, want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = want
	lim.Max = max(lim.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("cannot raise RLIMIT_NOFILE to %d: %v (lower WSLIB_IDLE_N)", want, err)
	}
}

// memSnapshot is the live heap, goroutine stacks and goroutine count.
type memSnapshot struct {
	heap, stack uint64
	goroutines  int
}

func snapshot() memSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnapshot{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// holder keeps the server side of every connection.
type holder struct {
	mu    sync.Mutex
	items []io.Closer
}

func (h *holder) hold(c io.Closer) {
	h.mu.Lock()
	h.items = append(h.items, c)
	h.mu.Unlock()
}

func (h *holder) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.items)
}

func (h *holder) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.items {
		c.Close()
	}
	h.items = h.items[:0]
}

func measureIdle(t *testing.T, v idleVariant, n int) {
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{items: make([]io.Closer, 0, n)}
	stop := v.start(ln, h.hold)
	defer stop()
	before := snapshot()
	client, err := startClients(ln.Addr().String(), v.handshake, n)
	if err != nil {
		t.Fatal(err)
	}
	defer closeIdle(t, client, h, before.goroutines)
	if err := waitFor(func() bool { return h.len() == n }, 30*time.Second); err != nil {
		t.Fatalf("server holds %d of %d connections: %v", h.len(), n, err)
	}
	settleGoroutines(before.goroutines+n, 5*time.Second)
	after := snapshot()
	t.Logf("%-42s n=%d heap %6d B/conn, stacks %6d B/conn, goroutines %.2f/conn",
		v.name, n,
		int64(after.heap-before.heap)/int64(n),
		int64(after.stack-before.stack)/int64(n),
		float64(after.goroutines-before.goroutines)/float64(n))
}

// clientProc is the child process that holds the client connections.
type clientProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startClients runs TestIdleClientHelper in a child process that opens n
// connections to addr, and waits (bounded) until it reports them open.
func startClients(addr string, handshake bool, n int) (*clientProc, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"WSLIB_IDLE_CLIENT="+addr,
		"WSLIB_IDLE_N="+strconv.Itoa(n),
		"WSLIB_IDLE_HANDSHAKE="+strconv.FormatBool(handshake))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &clientProc{cmd: cmd, stdin: stdin}
	timer := time.AfterFunc(idleLimit, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out := bufio.NewScanner(stdout)
	for out.Scan() {
		if out.Text() == "READY" {
			go io.Copy(io.Discard, stdout)
			return p, nil
		}
	}
	p.stop()
	return nil, errors.New("client process ended before opening its connections")
}

// stop closes the child's stdin, which makes it reset its connections and
// exit, and waits for it (killing it after 30s).
func (p *clientProc) stop() {
	p.stdin.Close()
	timer := time.AfterFunc(30*time.Second, func() { p.cmd.Process.Kill() })
	defer timer.Stop()
	p.cmd.Wait()
}

// TestIdleClientHelper is the client side of TestIdleConnections, run in a
// child process: it opens the connections, prints READY, waits for stdin to
// close (at most idleLimit) and resets them.
func TestIdleClientHelper(t *testing.T) {
	addr := os.Getenv("WSLIB_IDLE_CLIENT")
	if addr == "" {
		t.Skip("child process of TestIdleConnections only")
	}
	n, err := strconv.Atoi(os.Getenv("WSLIB_IDLE_N"))
	if err != nil {
		t.Fatal(err)
	}
	raiseNoFile(t, uint64(n+1024))
	clients, err := dialMany(addr, os.Getenv("WSLIB_IDLE_HANDSHAKE") == "true", n)
	defer func() {
		for _, c := range clients {
			closeAbortive(c)
		}
	}()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY")
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(idleLimit):
	}
}

// dialMany opens n client connections one after the other within idleLimit.
func dialMany(addr string, handshake bool, n int) ([]net.Conn, error) {
	clients := make([]net.Conn, 0, n)
	deadline := time.Now().Add(idleLimit)
	for i := range n {
		if time.Now().After(deadline) {
			return clients, fmt.Errorf("only %d connections opened in %v", i, idleLimit)
		}
		c, err := dialPlain(addr, handshake)
		if err != nil {
			return clients, fmt.Errorf("connection %d: %w", i, err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// closeIdle stops the client process, closes the server sides and waits
// (bounded) for the goroutines to fall back to floor.
func closeIdle(t *testing.T, p *clientProc, h *holder, floor int) {
	p.stop()
	h.closeAll()
	if err := waitFor(func() bool { return runtime.NumGoroutine() <= floor+8 }, 10*time.Second); err != nil {
		t.Logf("goroutines still running after close: %d", runtime.NumGoroutine())
	}
}

// waitFor polls cond every 10ms until it holds or limit passes.
func waitFor(cond func() bool, limit time.Duration) error {
	for range int(limit / (10 * time.Millisecond)) {
		if cond() {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cond() {
		return nil
	}
	return errors.New("timed out")
}

// settleGoroutines waits (bounded) until the goroutine count stops falling
// or reaches floor, so that finished handler goroutines are not counted.
func settleGoroutines(floor int, limit time.Duration) {
	prev := -1
	for range int(limit / (50 * time.Millisecond)) {
		g := runtime.NumGoroutine()
		if g <= floor || g == prev {
			return
		}
		prev = g
		time.Sleep(50 * time.Millisecond)
	}
}

// idleRaw accepts in one goroutine and keeps only the net.Conn, upgraded
// with gobwas when upgrade is set: Viaduct's model.
func idleRaw(upgrade bool) func(net.Listener, func(io.Closer)) func() {
	return func(ln net.Listener, hold func(io.Closer)) func() {
		go func() {
			c := newHandshakeChecker()
			u := c.upgrader()
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				c.reset()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if upgrade {
					if _, err := u.Upgrade(conn); err != nil {
						conn.Close()
						continue
					}
				}
				conn.SetDeadline(time.Time{})
				hold(conn)
			}
		}()
		return func() { ln.Close() }
	}
}

// idleHTTP serves ln with net/http; upgrade runs in the handler.
func idleHTTP(upgrade func(http.ResponseWriter, *http.Request, func(io.Closer))) func(net.Listener, func(io.Closer)) func() {
	return func(ln net.Listener, hold func(io.Closer)) func() {
		h := func(w http.ResponseWriter, r *http.Request) { upgrade(w, r, hold) }
		srv := &http.Server{Handler: http.HandlerFunc(h), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		return func() { srv.Close() }
	}
}

// gorillaIdle upgrades and holds the *Conn; with read, the handler stays
// in the idiomatic read loop.
func gorillaIdle(read bool) func(http.ResponseWriter, *http.Request, func(io.Closer)) {
	return func(w http.ResponseWriter, r *http.Request, hold func(io.Closer)) {
		c, err := gorillaUpgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		hold(c)
		for range maxReads {
			if !read {
				return
			}
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}
}

// coderConn lets a *coder.Conn be held as an io.Closer.
type coderConn struct{ *coder.Conn }

func (c coderConn) Close() error { return c.CloseNow() }

// coderIdle upgrades and holds the *Conn; with read, the handler stays in
// the idiomatic read loop.
func coderIdle(read bool) func(http.ResponseWriter, *http.Request, func(io.Closer)) {
	return func(w http.ResponseWriter, r *http.Request, hold func(io.Closer)) {
		c, err := coder.Accept(w, r, coderOptions)
		if err != nil {
			return
		}
		hold(coderConn{c})
		for range maxReads {
			if !read {
				return
			}
			if _, _, err := c.Reader(context.Background()); err != nil {
				return
			}
		}
	}
}
