package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// Messages pipelined on one connection reach the handler in order with
// the connection's flow, and the responses come back in order on it, also
// when the client writes them a byte at a time.
func TestRelayPipelined(t *testing.T) {
	r := newRecorder(true)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	c.SetNoDelay(true)
	var all []byte
	const n = 50
	for i := range n {
		all = append(all, sipMsg(i)...)
	}
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	tail := append(sipMsg(n), sipMsg(n+1)...)
	for i := range tail { // one byte per write, with pauses: a read per byte, or nearly
		if _, err := c.Write(tail[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	got := readMsgs(t, c, n+2)
	for i, m := range got {
		if !bytes.Equal(m, sipMsg(i)) {
			t.Fatalf("response %d = %q, want %q", i, m, sipMsg(i))
		}
	}
	_, srcs := r.waitMsgs(t, n+2)
	flow := srcs[0].Flow
	if flow == 0 {
		t.Fatal("flow 0 for a connection")
	}
	local := c.LocalAddr().String()
	for i, src := range srcs {
		if src.Flow != flow || src.Kind != transport.TCP || src.Addr.String() != local || src.Listener != 0 {
			t.Fatalf("source %d = %+v, want flow %d from %s over TCP", i, src, flow, local)
		}
	}
	eventually(t, "stats", func() bool { // counted just after the write
		st := s.Stats()
		return st.MessagesIn == n+2 && st.MessagesOut == n+2 && st.Accepted == 1 && st.OpenIn[0] == 1
	})
}

// Two connections get two flows; a closed connection's flow is gone, and
// so is a flow that never was.
func TestSendFlowGone(t *testing.T) {
	r := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c1 := dialFrom(t, "", s.Addrs()[0])
	c2 := dialFrom(t, "", s.Addrs()[0])
	c1.Write(sipMsg(1))
	_, srcs := r.waitMsgs(t, 1)
	c2.Write(sipMsg(2))
	_, srcs = r.waitMsgs(t, 2)
	f1, f2 := srcs[0].Flow, srcs[1].Flow
	if f1 == f2 || f1 == 0 || f2 == 0 {
		t.Fatalf("flows %d, %d", f1, f2)
	}
	if err := s.Send(sipMsg(3), transport.Peer{Flow: f1}); err != nil {
		t.Fatal(err)
	}
	if got := readFull(t, c1, len(sipMsg(3))); !bytes.Equal(got, sipMsg(3)) {
		t.Fatalf("got %q", got)
	}
	c1.Close()
	eventually(t, "close seen", func() bool { return s.Stats().Closed[ClosedByPeer] == 1 })
	if err := s.Send(sipMsg(4), transport.Peer{Flow: f1}); !errors.Is(err, transport.ErrFlowGone) {
		t.Errorf("send to closed flow: %v, want ErrFlowGone", err)
	}
	if err := s.Send(sipMsg(4), transport.Peer{Flow: f2 + 1000}); !errors.Is(err, transport.ErrFlowGone) {
		t.Errorf("send to unknown flow: %v, want ErrFlowGone", err)
	}
}

// A CRLF CRLF ping gets a CRLF pong, and messages go on after it.
func TestKeepalivePong(t *testing.T) {
	r := newRecorder(true)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write([]byte("\r\n\r\n"))
	if got := readFull(t, c, 2); string(got) != "\r\n" {
		t.Fatalf("pong %q", got)
	}
	c.Write(append([]byte("\r\n\r\n"), sipMsg(1)...))
	if got := readFull(t, c, 2+len(sipMsg(1))); !bytes.Equal(got, append([]byte("\r\n"), sipMsg(1)...)) {
		t.Fatalf("got %q", got)
	}
}

// A message without Content-Length: the handler gets its header block,
// its answer is written, and the connection is closed.
func TestMissingContentLength(t *testing.T) {
	r := newRecorder(true)
	r.prefix = "400 for: "
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	head := "OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n"
	c.Write([]byte(head + "trailing bytes"))
	if got := string(expectClosed(t, c)); got != "400 for: "+head {
		t.Errorf("got %q", got)
	}
	if n := s.Stats().Closed[ClosedBadFraming]; n != 1 {
		t.Errorf("closed for bad framing %d, want 1", n)
	}
}

// The answer to a refused message reaches a client that goes on sending,
// followed by an orderly close: the connection is drained, not reset (a
// reset can destroy an answer the peer has not read yet).
func TestRefusedAnswerSurvivesTrailingBytes(t *testing.T) {
	r := newRecorder(true)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	head := "INVITE sip:x SIP/2.0\r\nContent-Length: 100000000\r\n\r\n"
	c.Write([]byte(head))
	go func() { // a body the server refuses to read
		chunk := make([]byte, 32<<10)
		for range 64 {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
		c.CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(c)
	if string(got) != head || err != nil {
		t.Errorf("got %q, %v; want the answer %q, then EOF and no reset", got, err, head)
	}
}

// A refused message's answer larger than the client's window and the
// server's socket buffer all reaches the client, queue included, before an
// orderly close, although the client sent more than the server read.
func TestRefusedLargeAnswer(t *testing.T) {
	r := newRecorder(true)
	r.prefix = string(bytes.Repeat([]byte("a"), 8<<20)) // over the kernel's socket buffer: the queue is used
	s := serve(t, transport.TCP, ServerConfig{WriteQueue: 16 << 20}, testLayout(), r)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
	}}
	nc, err := d.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	head := "INVITE sip:x SIP/2.0\r\nContent-Length: 100000000\r\n\r\n"
	c.Write(append([]byte(head), make([]byte, 256<<10)...))
	c.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(c)
	if len(got) != len(r.prefix)+len(head) || err != nil {
		t.Errorf("got %d bytes, %v; want the %d bytes of the answer, then EOF", len(got), err, len(r.prefix)+len(head))
	}
}

// A Content-Length of 100 MB: refused from its headers, never read.
func TestTooLarge(t *testing.T) {
	r := newRecorder(true)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	head := "INVITE sip:x SIP/2.0\r\nContent-Length: 100000000\r\n\r\n"
	c.Write([]byte(head))
	if got := string(expectClosed(t, c)); got != head {
		t.Errorf("got %q", got)
	}
	if n := s.Stats().Closed[ClosedTooLarge]; n != 1 {
		t.Errorf("closed as too large %d, want 1", n)
	}
}

// A sender of one byte per interval is closed by the message deadline.
func TestSlowSender(t *testing.T) {
	r := newRecorder(true)
	s := serve(t, transport.TCP, ServerConfig{MessageTimeout: 300 * time.Millisecond}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(sipMsg(0)) // past the first message
	readFull(t, c, len(sipMsg(0)))
	m := sipMsg(1)
	start := time.Now()
	for i := 0; i < len(m) && s.Stats().Closed[ClosedMessageTimeout] == 0; i++ {
		if _, err := c.Write(m[i : i+1]); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, "message timeout", func() bool { return s.Stats().Closed[ClosedMessageTimeout] == 1 })
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed after %v, before the deadline", d)
	}
	expectClosed(t, c)
	if _, srcs := r.waitMsgs(t, 1); len(srcs) != 1 {
		t.Errorf("%d messages handled, want 1", len(srcs))
	}
}

// A connection that sends nothing is closed by the first-message deadline.
func TestFirstMessageTimeout(t *testing.T) {
	s := serve(t, transport.TCP, ServerConfig{FirstMessageTimeout: 200 * time.Millisecond}, testLayout(), newRecorder(false))
	c := dialFrom(t, "", s.Addrs()[0])
	expectClosed(t, c)
	eventually(t, "counted", func() bool { return s.Stats().Closed[ClosedFirstMessage] == 1 })
}

// A client that never reads is closed when its write queue is full.
func TestNonReaderClosed(t *testing.T) {
	r := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{WriteQueue: 64 << 10}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	c.SetReadBuffer(4096)
	c.Write(sipMsg(0))
	_, srcs := r.waitMsgs(t, 1)
	big := make([]byte, 16<<10)
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = s.Send(big, srcs[0])
	}
	if err == nil {
		t.Fatal("100000 sends of 16 KiB to a client that reads nothing all succeeded")
	}
	if n := s.Stats().Closed[ClosedWriteQueue]; n != 1 {
		t.Errorf("closed for write queue %d, want 1 (last error %v)", n, err)
	}
	if err := s.Send(big, srcs[0]); !errors.Is(err, transport.ErrFlowGone) {
		t.Errorf("send after close: %v", err)
	}
}

// A connection that stays silent after a message is closed at the idle
// timeout.
func TestIdleTimeout(t *testing.T) {
	s := serve(t, transport.TCP, ServerConfig{IdleTimeout: 300 * time.Millisecond}, testLayout(), newRecorder(true))
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(sipMsg(1))
	readFull(t, c, len(sipMsg(1)))
	start := time.Now()
	expectClosed(t, c)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %v, idle timeout 300ms", d)
	}
	eventually(t, "counted", func() bool { return s.Stats().Closed[ClosedIdle] == 1 })
}

// Close closes every connection, inbound and outbound, and returns once
// their goroutines are done; the gauges are back at zero.
func TestCloseClosesConnections(t *testing.T) {
	l := testLayout()
	var conns atomic.Int64 // the process's count, Layout.Conns
	l.Conns = &conns
	s, err := NewServer(t.Context(), l, ServerConfig{}, transport.TCP, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder(true)
	s.Serve(func(int, int) transport.Handler { return r })
	in := dialFrom(t, "", s.Addrs()[0])
	in.Write(sipMsg(1))
	readFull(t, in, len(sipMsg(1)))
	ln, up := upstream(t, "127.0.0.1:0")
	s.Send(sipMsg(2), transport.Peer{Addr: up})
	out := acceptWithin(t, ln)
	readFull(t, out, len(sipMsg(2)))
	if n := conns.Load(); n != 2 {
		t.Errorf("Layout.Conns = %d with one accepted and one dialled connection open, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, in)
	expectClosed(t, out)
	if n := conns.Load(); n != 0 {
		t.Errorf("Layout.Conns = %d after Close, want 0", n)
	}
	st := s.Stats()
	if st.Closed[ClosedShutdown] != 2 || st.OpenIn[0] != 0 || st.OpenOut[0] != 0 {
		t.Errorf("after Close: shutdown closes %d, open in %d out %d", st.Closed[ClosedShutdown], st.OpenIn[0], st.OpenOut[0])
	}
	if err := s.Send(sipMsg(3), transport.Peer{Addr: up}); err == nil {
		t.Error("send after Close succeeded")
	}
}

// alternator answers even messages over their flow and odd ones by
// address (Flow 0), which reaches the same connection.
type alternator struct{ n int }

func (a *alternator) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	out.Buf = append(out.Buf, msg...)
	out.To = src
	if a.n++; a.n%2 == 0 {
		out.To.Flow = 0
	}
	return true
}

func (a *alternator) Sent(*transport.Outbound, error) {}

// Answers leave in the order the handler gave them, whether they go by
// flow (batched per read) or by address.
func TestOutputOrder(t *testing.T) {
	l := testLayout()
	l.Workers = 1
	s := serve(t, transport.TCP, ServerConfig{}, l, &alternator{})
	c := dialFrom(t, "", s.Addrs()[0])
	echoInOrder(t, c, 40)
}

// Sends from several goroutines to one flow leave in each goroutine's
// order.
func TestSendOrderPerGoroutine(t *testing.T) {
	r := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), r)
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(sipMsg(0))
	_, srcs := r.waitMsgs(t, 1)
	const senders, each = 4, 200
	done := make(chan error, senders)
	for g := range senders {
		go func() {
			var err error
			for i := range each {
				if err == nil {
					err = s.Send(sipMsg(g*1000+i), srcs[0])
				}
			}
			done <- err
		}()
	}
	last := map[int]int{}
	for _, m := range readMsgs(t, c, senders*each) {
		var n int
		fmt.Sscanf(string(m[bytes.Index(m, []byte("Call-ID: c"))+len("Call-ID: c"):]), "%d", &n)
		g, i := n/1000, n%1000
		if prev, ok := last[g]; ok && i != prev+1 {
			t.Fatalf("sender %d: message %d after %d", g, i, prev)
		}
		last[g] = i
	}
	for range senders {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// SendAll writes several messages for one connection in one write, counted
// one by one; over WebSocket each is a frame of its own.
func TestSendAllOneWrite(t *testing.T) {
	rec := newRecorder(false)
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), rec)
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(sipMsg(1))
	_, srcs := rec.waitMsgs(t, 1)
	two := append(sipMsg(2), sipMsg(3)...)
	if err := s.SendAll(two, []int{len(sipMsg(2)), len(two)}, srcs[0]); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2*len(two))
	if n, err := c.Read(buf); err != nil || !bytes.Equal(buf[:n], two) {
		t.Fatalf("one read got %q (%v), want both messages", buf[:n], err)
	}
	if st := s.Stats(); st.MessagesOut != 2 || st.BytesOut != uint64(len(two)) {
		t.Errorf("messages out %d, bytes out %d; want 2 and %d", st.MessagesOut, st.BytesOut, len(two))
	}
	if !s.FlowOpen(srcs[0].Flow) {
		t.Error("FlowOpen: the open connection's flow is not open")
	}
	c.Close()
	eventually(t, "flow closed", func() bool { return !s.FlowOpen(srcs[0].Flow) })
	if err := s.SendAll(two, []int{len(sipMsg(2)), len(two)}, srcs[0]); !errors.Is(err, transport.ErrFlowGone) {
		t.Errorf("SendAll to a closed flow: %v, want ErrFlowGone", err)
	}

	ws := serve(t, transport.WS, wsConfig(), testLayout(), rec)
	wc := wsUpgrade(t, ws)
	wc.send(t, clientFrame(true, opText, sipMsg(4)))
	_, srcs = rec.waitMsgs(t, 2)
	if err := ws.SendAll(two, []int{len(sipMsg(2)), len(two)}, srcs[1]); err != nil {
		t.Fatal(err)
	}
	for _, want := range [][]byte{sipMsg(2), sipMsg(3)} {
		if op, p := wc.readFrame(t); op != opText || !bytes.Equal(p, want) {
			t.Fatalf("frame: opcode %d %q, want a text frame of %q", op, p, want)
		}
	}
}

// flushRecorder is a recorder that is a transport.Flusher: it notes, at
// each Flush, how many messages it had been handed.
type flushRecorder struct {
	*recorder
	flushes chan int
}

func (f *flushRecorder) Flush() {
	f.mu.Lock()
	n := len(f.msgs)
	f.mu.Unlock()
	f.flushes <- n
}

// A Handler that is a Flusher gets Flush after the messages of each read,
// all of them handled first.
func TestFlushAfterEachRead(t *testing.T) {
	h := &flushRecorder{recorder: newRecorder(false), flushes: make(chan int, 16)}
	s := serve(t, transport.TCP, ServerConfig{}, testLayout(), h)
	c := dialFrom(t, "", s.Addrs()[0])
	c.Write(append(append(sipMsg(1), sipMsg(2)...), sipMsg(3)...))
	for want := 3; ; {
		select {
		case n := <-h.flushes:
			if n == want {
				return
			}
			if n > want {
				t.Fatalf("Flush after %d messages, want after all %d of the read", n, want)
			}
		case <-time.After(wait):
			t.Fatal("no Flush after the read")
		}
	}
}

// holdingEcho echoes each message as the core's dispatcher does: held
// until Flush, then sent with Server.Send. It serves one worker.
type holdingEcho struct {
	s    atomic.Pointer[Server]
	held [][]byte
	to   []transport.Peer
}

func (h *holdingEcho) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	h.held, h.to = append(h.held, bytes.Clone(msg)), append(h.to, src)
	return false
}

func (h *holdingEcho) Sent(*transport.Outbound, error) {}

func (h *holdingEcho) Flush() {
	for i, msg := range h.held {
		h.s.Load().Send(msg, h.to[i])
	}
	h.held, h.to = h.held[:0], h.to[:0]
}

// The answers a Flusher holds go before the reader closes the connection:
// the answer to a refused message before the FIN, the answer to a
// WebSocket message before the close frame of a protocol error read with
// it.
func TestHeldAnswersGoBeforeClose(t *testing.T) {
	l := testLayout()
	l.Workers = 1
	h := &holdingEcho{}
	h.s.Store(serve(t, transport.TCP, ServerConfig{}, l, h))
	c := dialFrom(t, "", h.s.Load().Addrs()[0])
	head := "INVITE sip:x SIP/2.0\r\nContent-Length: 100000000\r\n\r\n"
	c.Write([]byte(head))
	if got := string(expectClosed(t, c)); got != head {
		t.Errorf("refused message: got %q before the close, want its answer", got)
	}

	hw := &holdingEcho{}
	hw.s.Store(serve(t, transport.WS, wsConfig(), l, hw))
	wc := wsUpgrade(t, hw.s.Load())
	unmasked := clientFrame(true, opText, sipMsg(2))
	unmasked[1] &^= 0x80
	wc.send(t, append(clientFrame(true, opText, sipMsg(1)), unmasked...))
	if op, p := wc.readFrame(t); op != opText || !bytes.Equal(p, sipMsg(1)) {
		t.Fatalf("first frame: opcode %d %q, want the answer to the message before the error", op, p)
	}
	if op, p := wc.readFrame(t); op != opClose || len(p) < 2 || binary.BigEndian.Uint16(p) != closeProtocolError {
		t.Fatalf("then opcode %d %x, want a close with 1002", op, p)
	}
}
