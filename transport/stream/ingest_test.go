package stream

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/viaduct-sip/viaduct/transport"
)

// harness is a server's connection driven without its reader: the test
// hands it bytes as reads would (feed), the other end of the socket is
// client.
type harness struct {
	s      *Server
	c      *conn
	client net.Conn
	h      *recorder
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	return newHarnessOn(t, harnessServer(t))
}

// harnessServer is a server that does not serve: harnesses accept from
// its listener themselves.
func harnessServer(t testing.TB) *Server { return harnessServerOf(t, transport.TCP) }

// harnessServerOf is harnessServer of kind (TCP or WS).
func harnessServerOf(t testing.TB, kind transport.Kind) *Server {
	t.Helper()
	s, err := NewServer(context.Background(), testLayout(), ServerConfig{}, kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newHarnessOn(t testing.TB, s *Server) *harness {
	t.Helper()
	client, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	nc, err := s.lns[0].AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() }) // first: the TIME_WAIT is the server's, not an ephemeral port's
	h := newRecorder(false)
	c := s.newConn(0, client.LocalAddr().(*net.TCPAddr).AddrPort(), false)
	c.w = newWorker(h, s.layout.MaxMessage, s.layout.OutputSize)
	if err := c.attach(nc); err != nil {
		t.Fatal(err)
	}
	c.established = !s.ws // a WebSocket is established by its upgrade
	c.start()
	return &harness{s: s, c: c, client: client, h: h}
}

// feed hands chunk to the connection as reads of it would.
func (x *harness) feed(chunk []byte) {
	c := x.c
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	for len(chunk) > 0 && !c.closed.Load() {
		buf := c.readBuffer()
		n := copy(buf[len(buf):cap(buf)], chunk)
		chunk = chunk[n:]
		c.ingest(buf[:len(buf)+n])
	}
}

// outcome is what a connection made of its bytes.
type outcome struct {
	msgs   [][]byte
	closed bool
	reason CloseReason
}

func (x *harness) outcome() outcome {
	x.h.mu.Lock()
	defer x.h.mu.Unlock()
	return outcome{msgs: x.h.msgs, closed: x.c.closed.Load(), reason: x.c.reason}
}

func (o outcome) equal(p outcome) bool {
	if len(o.msgs) != len(p.msgs) || o.closed != p.closed || o.reason != p.reason {
		return false
	}
	for i := range o.msgs {
		if !bytes.Equal(o.msgs[i], p.msgs[i]) {
			return false
		}
	}
	return true
}

// A stream split at any byte gives the handler the same messages as the
// stream in one read, and the pings their pongs.
func TestIngestEverySplit(t *testing.T) {
	var stream []byte
	stream = append(stream, "\r\n\r\n"...)
	stream = append(stream, sipMsg(1)...)
	stream = append(stream, sipMsg(2)...)
	stream = append(stream, "\r\n\r\n"...)
	stream = append(stream, sipMsg(3)...)
	for k := range len(stream) + 1 {
		x := newHarness(t)
		x.feed(stream[:k])
		x.feed(stream[k:])
		o := x.outcome()
		if len(o.msgs) != 3 || o.closed {
			t.Fatalf("split at %d: %d messages, closed %v", k, len(o.msgs), o.closed)
		}
		for i, m := range o.msgs {
			if !bytes.Equal(m, sipMsg(i+1)) {
				t.Fatalf("split at %d: message %d = %q", k, i, m)
			}
		}
		if x.c.pending != nil {
			t.Fatalf("split at %d: a pending buffer held after the last message", k)
		}
		if got := readFull(t, x.client, 4); string(got) != "\r\n\r\n" {
			t.Fatalf("split at %d: pongs %q", k, got)
		}
	}
}

// Headers longer than MaxMessage are refused the same whether they come
// in one read or many, and never handed over whole.
func TestIngestLongHeaders(t *testing.T) {
	long := append([]byte("OPTIONS sip:x SIP/2.0\r\nX: "), bytes.Repeat([]byte("a"), 5000)...)
	long = append(long, "\r\nContent-Length: 0\r\n\r\n"...)
	one, many := newHarness(t), newHarness(t)
	one.feed(long)
	for i := range long {
		many.feed(long[i : i+1])
	}
	o, m := one.outcome(), many.outcome()
	if !o.equal(m) || !o.closed || o.reason != ClosedTooLarge || len(o.msgs) != 0 {
		t.Errorf("one read %d messages closed %v %v; byte by byte %d messages closed %v %v",
			len(o.msgs), o.closed, o.reason, len(m.msgs), m.closed, m.reason)
	}
}

// FuzzIngest: any bytes, cut anywhere, give the same outcome as in one
// read, and nothing over MaxMessage+1 bytes reaches the handler.
func FuzzIngest(f *testing.F) {
	f.Add(append(sipMsg(1), sipMsg(2)...), uint64(7))
	f.Add([]byte("\r\n\r\nINVITE sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc\r\n"), uint64(3))
	f.Add([]byte("INVITE sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab"), uint64(1))
	f.Add([]byte("INVITE sip:a SIP/2.0\nContent-Length: 99999999\n\n"), uint64(5))
	s := harnessServer(f)
	f.Fuzz(func(t *testing.T, data []byte, cuts uint64) {
		if len(data) > 16<<10 {
			return
		}
		for _, msg := range oneAndCut(t, s, data, cuts).msgs {
			if len(msg) > s.layout.MaxMessage+1 {
				t.Fatalf("handed %d bytes, max message %d", len(msg), s.layout.MaxMessage)
			}
		}
	})
}

// oneAndCut feeds data to a connection of s in one read and to another in
// reads cut where cuts says; the outcomes must be the same, and it returns
// it.
func oneAndCut(t *testing.T, s *Server, data []byte, cuts uint64) outcome {
	one, many := newHarnessOn(t, s), newHarnessOn(t, s)
	one.feed(data)
	for rest := data; len(rest) > 0; {
		n := 1 + int(cuts%7)
		cuts = cuts/7 + uint64(len(rest))
		n = min(n*int(1+cuts%61), len(rest))
		many.feed(rest[:n])
		rest = rest[n:]
	}
	o, m := one.outcome(), many.outcome()
	if !o.equal(m) {
		t.Fatalf("one read: %d messages, closed %v %v; cut: %d messages, closed %v %v",
			len(o.msgs), o.closed, o.reason, len(m.msgs), m.closed, m.reason)
	}
	return o
}
