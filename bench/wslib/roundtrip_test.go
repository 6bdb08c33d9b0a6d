package wslib

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// pair is one loopback connection: the server side under test and a raw
// client that only writes pre-built bytes and reads into a fixed buffer, so
// that it allocates nothing and every allocation counted is the server's.
type pair struct {
	server stepper
	client net.Conn
	stop   func()
}

// openPair starts k's server on 127.0.0.1 and connects one client to it.
func openPair(k kind) (*pair, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	out := make(chan result, 1)
	stop := k.start(ln, out)
	client, err := dialPlain(ln.Addr().String(), k.handshake)
	if err != nil {
		stop()
		return nil, err
	}
	select {
	case r := <-out:
		if r.err != nil {
			client.Close()
			stop()
			return nil, r.err
		}
		return &pair{server: r.s, client: client, stop: stop}, nil
	case <-time.After(10 * time.Second):
		client.Close()
		stop()
		return nil, errors.New("server did not upgrade within 10s")
	}
}

func dialPlain(addr string, handshake bool) (net.Conn, error) {
	if handshake {
		return dialLoopback(addr)
	}
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		c.SetDeadline(time.Now().Add(ioTimeout))
	}
	return c, err
}

func (p *pair) close() {
	p.client.Close()
	p.server.close()
	p.stop()
}

// runClient sends n INVITE frames, each after the previous response, and
// checks every response byte for byte. It allocates nothing in the loop.
func runClient(c net.Conn, n int) error {
	req := clientFrame(sipInvite)
	want := serverFrame(sipResponse)
	got := make([]byte, len(want))
	for i := range n {
		if _, err := c.Write(req); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("response %d differs: %q", i, got)
		}
	}
	return nil
}

// BenchmarkRoundTrip measures one SIP message round trip over loopback TCP:
// the client writes a masked text frame holding a 900-byte INVITE, the
// server (the benchmark goroutine) reads and unmasks it and writes a
// 500-byte text frame back, the client reads it. ns/op is the whole round
// trip; allocs/op and B/op are the server's alone (the client allocates
// nothing, which the tcp-baseline row confirms).
func BenchmarkRoundTrip(b *testing.B) {
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) { benchRoundTrip(b, k) })
	}
}

func benchRoundTrip(b *testing.B, k kind) {
	p, err := openPair(k)
	if err != nil {
		b.Fatal(err)
	}
	defer p.close()
	done := make(chan error, 1)
	go func() { done <- runClient(p.client, b.N) }()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := p.server.step(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// TestServerStepAllocs counts, with testing.AllocsPerRun, the allocations of
// one server step (read one message, write one response) of every kind,
// and requires zero for Viaduct's intended path and the TCP floor.
func TestServerStepAllocs(t *testing.T) {
	const runs = 200
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			allocs := stepAllocs(t, k, runs)
			t.Logf("%-20s %5.1f allocs per server step", k.name, allocs)
			if (k.name == "tcp-baseline" || k.name == "gobwas-lowlevel") && allocs != 0 {
				t.Errorf("%s allocates %.1f per message, want 0", k.name, allocs)
			}
		})
	}
}

func stepAllocs(t *testing.T, k kind, runs int) float64 {
	p, err := openPair(k)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	done := make(chan error, 1)
	// AllocsPerRun calls the function once more as a warm-up.
	go func() { done <- runClient(p.client, runs+1) }()
	var stepErr error
	allocs := testing.AllocsPerRun(runs, func() {
		if err := p.server.step(); err != nil && stepErr == nil {
			stepErr = err
		}
	})
	if stepErr != nil {
		t.Fatal(stepErr)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return allocs
}
