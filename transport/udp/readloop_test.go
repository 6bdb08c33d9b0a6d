//go:build linux && !portableudp

package udp

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// forEachWaitMode runs test once per way a ReadLoop waits after its
// socket ran empty: parked in the netpoller at once, or first in recvmmsg
// for Config.ParkAfter.
func forEachWaitMode(t *testing.T, test func(t *testing.T, parkAfter time.Duration)) {
	t.Run("netpoller", func(t *testing.T) { test(t, 0) })
	t.Run("recvmmsg", func(t *testing.T) { test(t, 200*time.Millisecond) })
}

// runLoop runs c.ReadLoop in a goroutine and returns the channel its
// result arrives on.
func runLoop(c *Conn, b *Batch, handle func(n int) bool) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.ReadLoop(b, handle) }()
	return done
}

// TestReadLoopBurstsInOrder queues bursts larger than the batch and checks
// that ReadLoop hands over every datagram once, in order, in full and
// partial batches, and returns nil when handle says stop. Each burst is
// queued whole before the loop reads it (the handler holds the loop at the
// end of a burst until the next one is sent), so full batches do not depend
// on how the two goroutines happen to be scheduled.
func TestReadLoopBurstsInOrder(t *testing.T) { forEachWaitMode(t, testReadLoopBurstsInOrder) }

func testReadLoopBurstsInOrder(t *testing.T, parkAfter time.Duration) {
	c := listen(t, "127.0.0.1:0", Config{RecvBuffer: 1 << 20, ParkAfter: parkAfter})
	src := plain(t, "udp4", "127.0.0.1:0")
	const bursts, per = 5, 100
	var got []string
	var sizes []int
	next, resume := make(chan struct{}, 1), make(chan struct{})
	send := func(k int) {
		for i := 0; i < per; i++ {
			if _, err := src.WriteToUDPAddrPort([]byte(fmt.Sprintf("msg %d", k*per+i)), c.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := NewBatch(32, 2048)
	send(0)
	done := runLoop(c, b, func(n int) bool {
		sizes = append(sizes, n)
		for _, m := range b.Msgs[:n] {
			got = append(got, string(m.Buf))
		}
		if len(got)%per == 0 {
			next <- struct{}{}
			if len(got) < bursts*per {
				<-resume // the next burst is queued whole
			}
		}
		return len(got) < bursts*per
	})
	for k := 0; k < bursts; k++ {
		select {
		case <-next:
		case <-time.After(5 * time.Second):
			t.Fatalf("burst %d: %d of %d datagrams after 5 s (batches %v)", k, len(got), (k+1)*per, sizes)
		}
		if k+1 < bursts {
			send(k + 1)
			resume <- struct{}{}
		}
	}
	if err := wait(t, done, "the last datagram"); err != nil {
		t.Fatalf("ReadLoop = %v, want nil after handle returned false", err)
	}
	for i, g := range got {
		if want := fmt.Sprintf("msg %d", i); g != want {
			t.Fatalf("datagram %d = %q, want %q", i, g, want)
		}
	}
	full := 0
	for _, n := range sizes {
		if n == b.Len() {
			full++
		}
	}
	if full == 0 {
		t.Errorf("no full batch in %v: the bursts should fill some", sizes)
	}
}

// TestReadLoopPingPong sends each datagram only after the previous one was
// handled, so ReadLoop parks after every (one-datagram, partial) batch
// without asking the kernel again: a wake-up lost that way would stall the
// exchange.
func TestReadLoopPingPong(t *testing.T) { forEachWaitMode(t, testReadLoopPingPong) }

func testReadLoopPingPong(t *testing.T, parkAfter time.Duration) {
	c := listen(t, "127.0.0.1:0", Config{ParkAfter: parkAfter})
	src := plain(t, "udp4", "127.0.0.1:0")
	const rounds = 300
	handled := make(chan string, 1)
	b := NewBatch(8, 2048)
	done := runLoop(c, b, func(n int) bool {
		for _, m := range b.Msgs[:n] {
			handled <- string(m.Buf)
		}
		return true
	})
	for i := 0; i < rounds; i++ {
		want := fmt.Sprintf("ping %d", i)
		if _, err := src.WriteToUDPAddrPort([]byte(want), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-handled:
			if got != want {
				t.Fatalf("round %d: handled %q, want %q", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: datagram not handled within 5 s", i)
		}
	}
	c.Close()
	if err := wait(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadLoop after Close = %v, want net.ErrClosed", err)
	}
}

// TestReadLoopCloseWhileBusy closes the socket while a sender keeps the
// queue full, so ReadLoop never waits: it must still stop between batches.
func TestReadLoopCloseWhileBusy(t *testing.T) { forEachWaitMode(t, testReadLoopCloseWhileBusy) }

func testReadLoopCloseWhileBusy(t *testing.T, parkAfter time.Duration) {
	c, err := Listen(t.Context(), "127.0.0.1:0", Config{RecvBuffer: 1 << 20, ParkAfter: parkAfter})
	if err != nil {
		t.Fatal(err)
	}
	src := plain(t, "udp4", "127.0.0.1:0")
	var handled atomic.Int64
	b := NewBatch(16, 2048)
	done := runLoop(c, b, func(n int) bool {
		handled.Add(int64(n))
		time.Sleep(100 * time.Microsecond) // slower than the sender
		return true
	})
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		msg := []byte("flood")
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			src.WriteToUDPAddrPort(msg, c.LocalAddr())
		}
	}()
	for handled.Load() < 1000 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	err = wait(t, done, "Close")
	close(stop)
	<-sent
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadLoop after Close = %v, want net.ErrClosed", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestReadLoopAllowsWritesOnSameConn answers every datagram from inside
// handle on the same socket, as the proxy does.
func TestReadLoopAllowsWritesOnSameConn(t *testing.T) {
	forEachWaitMode(t, testReadLoopAllowsWritesOnSameConn)
}

func testReadLoopAllowsWritesOnSameConn(t *testing.T, parkAfter time.Duration) {
	c := listen(t, "127.0.0.1:0", Config{ParkAfter: parkAfter})
	peer := plain(t, "udp4", "127.0.0.1:0")
	b := NewBatch(8, 2048)
	out := NewBatch(8, 0)
	done := runLoop(c, b, func(n int) bool {
		for i, m := range b.Msgs[:n] {
			out.Msgs[i].SetData(append([]byte("echo "), m.Buf...), m.Addr)
		}
		if _, err := c.WriteBatch(out, n); err != nil {
			t.Errorf("WriteBatch inside ReadLoop: %v", err)
			return false
		}
		return true
	})
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 20; i++ {
		msg := fmt.Sprintf("x%d", i)
		if _, err := peer.WriteToUDPAddrPort([]byte(msg), c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if got := string(buf[:n]); got != "echo "+msg {
			t.Fatalf("echo %d = %q, want %q", i, got, "echo "+msg)
		}
	}
	c.Close()
	if err := wait(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadLoop after Close = %v, want net.ErrClosed", err)
	}
}
