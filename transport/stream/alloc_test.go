package stream

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/viaduct-sip/viaduct/transport"
)

// echoHandler sends every message back on its connection; it keeps nothing.
type echoHandler struct{}

func (echoHandler) Handle(msg []byte, src transport.Peer, out *transport.Outbound) bool {
	out.Buf = append(out.Buf, msg...)
	out.To = src
	return true
}

func (echoHandler) Sent(*transport.Outbound, error) {}

// roundTrips returns a function that writes msg on c and reads the echo.
func roundTrip(c net.Conn, msg []byte) func() {
	back := make([]byte, len(msg))
	return func() {
		if _, err := c.Write(msg); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			panic(err)
		}
	}
}

// Steady state, a message read, handled and its answer written allocate
// nothing in the server (the client's Write and Read allocate nothing
// either), also when it is split across reads, also over TLS.
func TestSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("AllocsPerRun counts every goroutine; slow under -race")
	}
	ca := newTestCA(t)
	for _, kind := range []transport.Kind{transport.TCP, transport.TLS} {
		t.Run(kind.String(), func(t *testing.T) {
			var c net.Conn
			if kind == transport.TLS {
				s := tlsServer(t, ca, ServerConfig{}, echoHandler{})
				tc, err := tlsDial(t, s, ca, nil)
				if err != nil {
					t.Fatal(err)
				}
				c = tc
			} else {
				s := serve(t, transport.TCP, ServerConfig{}, testLayout(), echoHandler{})
				c = dialFrom(t, "", s.Addrs()[0])
			}
			c.SetDeadline(time.Now().Add(time.Minute))
			msg := sipMsg(1)
			rt := roundTrip(c, msg)
			for range 100 { // warm up: buffers, pools, the idle deadline
				rt()
			}
			a := testing.AllocsPerRun(500, rt)
			if kind == transport.TLS {
				// crypto/tls allocates its atLeastReader in each
				// readFromUntil, on both ends: not ours to remove.
				t.Logf("%v allocations per round trip, client and server, all in crypto/tls", a)
				if a > 6 { // -race drops sync.Pool items at random: a little slack
					t.Errorf("%v allocations per message round trip, want at most 6", a)
				}
				return
			}
			if a != 0 {
				t.Errorf("%v allocations per message round trip, want 0", a)
			}
			back := make([]byte, len(msg))
			split := func() { // two reads: the message's start waits in a pooled buffer
				c.Write(msg[:20])
				time.Sleep(time.Millisecond)
				c.Write(msg[20:])
				if _, err := io.ReadFull(c, back); err != nil {
					panic(err)
				}
			}
			split()
			if a := testing.AllocsPerRun(100, split); a != 0 {
				t.Errorf("%v allocations per message split across reads, want 0", a)
			}
		})
	}
}

// Over WebSocket too: a frame read, unmasked, handled and its answer
// framed and written allocate nothing, and neither does a send to the
// connection's flow from elsewhere (its frame put together in a pooled
// buffer).
func TestWebSocketSteadyStateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("AllocsPerRun counts every goroutine; slow under -race")
	}
	s := serve(t, transport.WS, wsConfig(), testLayout(), echoHandler{})
	wc := wsUpgrade(t, s)
	wc.c.SetDeadline(time.Now().Add(time.Minute))
	msg := sipMsg(1)
	frame := clientFrame(true, opText, msg)
	back := make([]byte, wsHeaderLen(len(msg))+len(msg))
	rt := func() {
		if _, err := wc.c.Write(frame); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(wc.br, back); err != nil {
			panic(err)
		}
	}
	for range 100 {
		rt()
	}
	if a := testing.AllocsPerRun(500, rt); a != 0 {
		t.Errorf("%v allocations per WebSocket round trip, want 0", a)
	}
	flow := transport.Peer{Kind: transport.WS, Listener: 0, Flow: s.table.all()[0].id}
	send := func() {
		if err := s.Send(msg, flow); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(wc.br, back); err != nil {
			panic(err)
		}
	}
	for range 100 {
		send()
	}
	if a := testing.AllocsPerRun(500, send); a > 0.5 { // -race drops sync.Pool items at random
		t.Errorf("%v allocations per send to a WebSocket flow, want 0", a)
	}
}
