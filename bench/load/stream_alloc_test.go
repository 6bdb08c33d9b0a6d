package load

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/parser"
	"github.com/viaduct-sip/viaduct/transport"
)

// memConn is a connection that keeps what is written to it (reusing its
// buffer) and reads from next, for socketless stream tests.
type memConn struct {
	net.Conn // nil: only the methods below are used
	wrote    []byte
	next     []byte
}

func (c *memConn) Write(b []byte) (int, error) { c.wrote = append(c.wrote, b...); return len(b), nil }

func (c *memConn) Read(b []byte) (int, error) {
	if len(c.next) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.next)
	c.next = c.next[n:]
	return n, nil
}

func (c *memConn) SetWriteDeadline(time.Time) error { return nil }
func (c *memConn) RemoteAddr() net.Addr             { return net.TCPAddrFromAddrPort(client) }

// take returns what was written since the last take, split into messages.
func (c *memConn) take(t *testing.T) []string {
	t.Helper()
	b := c.wrote
	var msgs []string
	for len(b) > 0 {
		f, err := parser.FrameStream(b, maxStreamMessage)
		if err != nil || f.Len == 0 {
			t.Fatalf("written bytes do not frame (%v): %q", err, b)
		}
		msgs = append(msgs, string(b[:f.Len]))
		b = b[f.Len:]
	}
	c.wrote = c.wrote[:0]
	return msgs
}

// TestStreamUACMessagePathDoesNotAllocate runs whole calls through a
// source on a shared tcp connection, responses coming through the framer
// and the inbox as from a reader goroutine: in steady state nothing is
// allocated.
func TestStreamUACMessagePathDoesNotAllocate(t *testing.T) {
	ts, call := replayableStreamCall(t)
	if a := testing.AllocsPerRun(500, call); a != 0 {
		t.Fatalf("a call over tcp allocates %v times on the message path", a)
	}
	if c := ts.counter(cCompleted); c != 502 || ts.counter(cFailed) != 0 {
		t.Fatalf("completed %d failed %d, want 502 and 0", c, ts.counter(cFailed))
	}
}

// replayableStreamCall is replayableCall on a shared tcp connection:
// responses go through the framer and the inbox as from a reader
// goroutine, requests are written to a connection that keeps nothing.
// It checks the first call's messages on the way.
func replayableStreamCall(t *testing.T) (*testSource, func()) {
	ts := newTestSource(t, UACConfig{Transport: transport.TCP})
	var readers sync.WaitGroup
	ts.stream = newUACStream(ts.cfg, netip.MustParseAddr("127.0.0.1"), 0, len(ts.calls), ts.slotN, &readers)
	conn := &memConn{}
	ts.stream.shared = &streamConn{c: conn, slot: -1, sentBy: []byte("127.0.0.1:40000")}
	fr := newFrameReader(conn, 4096)
	deliver := func(b []byte) {
		conn.next = b
		for len(conn.next) > 0 {
			if err := fr.fill(); err != nil {
				t.Fatal(err)
			}
			if err := ts.stream.in.deliver(fr); err != nil {
				t.Fatal(err)
			}
		}
		ts.stream.receive(ts.uacSource)
		ts.flush()
	}

	slot := ts.free[len(ts.free)-1]
	ts.startCall()
	ts.flush()
	inv := conn.take(t)[0]
	if !strings.HasPrefix(header(t, inv, "Via"), "SIP/2.0/TCP 127.0.0.1:40000;") {
		t.Fatalf("INVITE Via %q", header(t, inv, "Via"))
	}
	// Keepalives between responses are skipped.
	answers := []byte("\r\n\r\n" + reply(t, inv, 180, "t") + "\r\n" +
		reply(t, inv, 200, "t", "Contact: <sip:uas@127.0.0.1:5071;transport=tcp>"))
	deliver(answers)
	ackBye := conn.take(t)
	if len(ackBye) != 2 || startLine(ackBye[1]) != "BYE sip:uas@127.0.0.1:5071;transport=tcp SIP/2.0" {
		t.Fatalf("after the 200: %q", ackBye)
	}
	byeOK := []byte(reply(t, ackBye[1], 200, ""))
	deliver(byeOK)
	if ts.counter(cCompleted) != 1 {
		t.Fatalf("first call: completed %d, failed %d", ts.counter(cCompleted), ts.counter(cFailed))
	}
	gen := ts.calls[slot].gen
	return ts, func() {
		ts.calls[slot].gen = gen - 1
		ts.startCall()
		deliver(answers)
		deliver(byeOK)
		ts.flush()
		conn.wrote = conn.wrote[:0]
	}
}

// TestStreamUASDoesNotAllocate answers a call's requests, read from a
// connection in one piece with keepalives between them, and writes the
// responses: in steady state nothing is allocated.
func TestStreamUASDoesNotAllocate(t *testing.T) {
	step, conn := streamUASStep(t)
	step()
	got := conn.take(t)
	if len(got) != 4 || codes(sentOf(got)) != "100 180 200 200" {
		t.Fatalf("responses %q", got)
	}
	if ct := header(t, got[2], "Contact"); ct != "<sip:uas@127.0.0.1:5071;transport=tcp>" {
		t.Fatalf("200 Contact %q", ct)
	}
	a := testing.AllocsPerRun(500, func() { step(); conn.wrote = conn.wrote[:0] })
	if a != 0 {
		t.Fatalf("answering a call over tcp allocates %v times", a)
	}
}

// streamUASStep returns a function that has a tcp UAS connection worker
// read a call's requests (INVITE, ACK, BYE, a keepalive between) from
// conn and write the responses to it.
func streamUASStep(t *testing.T) (func(), *memConn) {
	tu := newTestUAS(t, 0, UASConfig{Transport: transport.TCP})
	st := &uasStream{s: tu.s}
	st.sdp, st.contact = tu.s.answerParts(tu.s.addr)
	conn := &memConn{}
	w := st.newWorker(conn, &uasStats{shared: true})
	reqs := []byte(invite + "\r\n\r\n" + inDialog("ACK", 7) + inDialog("BYE", 8))
	step := func() {
		conn.next = reqs
		for len(conn.next) > 0 {
			if err := w.fr.fill(); err != nil {
				t.Fatal(err)
			}
			if !w.answerFramed() {
				t.Fatal("framing error")
			}
		}
		w.flush()
	}
	return step, conn
}

func sentOf(msgs []string) []sentResp {
	r := make([]sentResp, len(msgs))
	for i, m := range msgs {
		r[i].msg = m
	}
	return r
}

// BenchmarkUACCallTCP is BenchmarkUACCall on a shared tcp connection:
// the UAC's work for one call, framing and the inbox included, without
// sockets.
func BenchmarkUACCallTCP(b *testing.B) {
	ts, call := replayableStreamCall(&testing.T{})
	benchCalls(b, ts, call)
}

// BenchmarkUASCallTCP is BenchmarkUASCall on a tcp connection: reading and
// framing a call's requests, answering them, one write, without sockets.
func BenchmarkUASCallTCP(b *testing.B) {
	step, conn := streamUASStep(&testing.T{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		step()
		conn.wrote = conn.wrote[:0]
	}
}
