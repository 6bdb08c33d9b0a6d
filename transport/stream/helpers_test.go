package stream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// wait is the bound of every wait for something to happen in these
// tests: generous, for a loaded CI machine.
const wait = 10 * time.Second

// sipMsg returns a SIP request framed by its Content-Length, its body
// naming i.
func sipMsg(i int) []byte {
	body := fmt.Sprintf("body %d", i)
	return fmt.Appendf(nil, "OPTIONS sip:x@example.com SIP/2.0\r\nCall-ID: c%d\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
}

// recorder is a Handler that remembers what it got and, with echo, sends
// each message back where it came from (prefix prepended).
type recorder struct {
	echo   bool
	prefix string
	mu     sync.Mutex
	msgs   [][]byte
	srcs   []transport.Peer
	errs   []error
	got    chan struct{} // a token per message
}

func newRecorder(echo bool) *recorder { return &recorder{echo: echo, got: make(chan struct{}, 1<<16)} }

func (r *recorder) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	r.mu.Lock()
	r.msgs = append(r.msgs, bytes.Clone(msg))
	r.srcs = append(r.srcs, src)
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
	if !r.echo {
		return false
	}
	out.Buf = append(append(out.Buf, r.prefix...), msg...)
	out.To = src
	return true
}

func (r *recorder) Sent(out *transport.Outbound, err error) {
	if err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
}

// waitMsgs waits for n messages in all and returns them with their sources.
func (r *recorder) waitMsgs(t *testing.T, n int) ([][]byte, []transport.Peer) {
	t.Helper()
	deadline := time.After(wait)
	for {
		r.mu.Lock()
		if len(r.msgs) >= n {
			msgs, srcs := slices.Clone(r.msgs), slices.Clone(r.srcs)
			r.mu.Unlock()
			return msgs, srcs
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("got %d messages, want %d", len(r.msgs), n)
		}
	}
}

func testLayout() transport.Layout {
	return transport.Layout{Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}, Workers: 2,
		MaxMessage: 4096, OutputSize: 8192}
}

// serve starts a server of kind with cfg and the layout, every worker
// using h; the test's cleanup closes it.
func serve(t testing.TB, kind transport.Kind, cfg ServerConfig, l transport.Layout, h transport.Handler) *Server {
	t.Helper()
	s, err := NewServer(context.Background(), l, cfg, kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(func(int, int) transport.Handler { return h })
	t.Cleanup(func() { s.Close() })
	return s
}

// dialFrom connects to addr from local IP from (any port).
func dialFrom(t testing.TB, from string, addr netip.AddrPort) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: wait}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// readFull reads exactly n bytes from c within wait.
func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// readMsgs reads n framed messages from c.
func readMsgs(t testing.TB, c net.Conn, n int) [][]byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	var msgs [][]byte
	var buf []byte
	tmp := make([]byte, 4096)
	for len(msgs) < n {
		f, err := parser.FrameStream(buf, 1<<20)
		if err != nil {
			t.Fatalf("framing what came back: %v (%q)", err, buf)
		}
		if f.Len > 0 {
			msgs = append(msgs, bytes.Clone(buf[:f.Len]))
			buf = buf[f.Len:]
			continue
		}
		k, err := c.Read(tmp)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(msgs), n, err)
		}
		buf = append(buf, tmp[:k]...)
	}
	return msgs
}

// expectClosed waits for the server to close c: a read ends with EOF or
// a reset within wait, after any bytes still coming.
func expectClosed(t testing.TB, c net.Conn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", wait)
	}
	return b
}

// eventually waits for cond within wait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echoInOrder writes sipMsg(0) to sipMsg(n-1) on c in one write and checks
// that the server sends them back in that order.
func echoInOrder(t testing.TB, c net.Conn, n int) {
	t.Helper()
	var all []byte
	for i := range n {
		all = append(all, sipMsg(i)...)
	}
	c.Write(all)
	expectMsgs(t, c, 0, n)
}

// expectMsgs reads n messages from c and checks that they are sipMsg(first)
// and the ones after it, in order.
func expectMsgs(t testing.TB, c net.Conn, first, n int) {
	t.Helper()
	for i, m := range readMsgs(t, c, n) {
		if !bytes.Equal(m, sipMsg(first+i)) {
			t.Fatalf("message %d back = %q", first+i, m)
		}
	}
}
