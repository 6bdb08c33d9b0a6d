//go:build linux && !portableudp

package udp

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestListenParkAfter checks what Config.ParkAfter does to the socket: it
// is blocking with SO_RCVTIMEO set, yet ReadBatch and WriteBatch do not
// block (a read deadline still ends an empty ReadBatch on time).
func TestListenParkAfter(t *testing.T) {
	if _, err := Listen(context.Background(), "127.0.0.1:0", Config{ParkAfter: -time.Millisecond}); err == nil {
		t.Error("Listen with a negative ParkAfter succeeded, want an error")
	}
	plainConn := listen(t, "127.0.0.1:0", Config{})
	if d := plainConn.ParkAfter(); d != 0 {
		t.Errorf("ParkAfter() = %v without Config.ParkAfter, want 0", d)
	}
	if flags := fdFlags(t, plainConn); flags&unix.O_NONBLOCK == 0 {
		t.Error("socket without ParkAfter is blocking, want O_NONBLOCK")
	}

	const park = 50 * time.Millisecond
	c := listen(t, "127.0.0.1:0", Config{ParkAfter: park})
	if d := c.ParkAfter(); d != park {
		t.Errorf("ParkAfter() = %v, want %v", d, park)
	}
	if flags := fdFlags(t, c); flags&unix.O_NONBLOCK != 0 {
		t.Error("socket with ParkAfter is non-blocking, want blocking")
	}
	var tv *unix.Timeval
	var gerr error
	rc, _ := c.SyscallConn()
	rc.Control(func(fd uintptr) { tv, gerr = unix.GetsockoptTimeval(int(fd), unix.SOL_SOCKET, unix.SO_RCVTIMEO) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	// The kernel rounds the timeout up to its clock tick (at most 10 ms).
	if got := time.Duration(tv.Nano()); got < park || got > park+10*time.Millisecond {
		t.Errorf("SO_RCVTIMEO = %v, want %v rounded up to a clock tick", got, park)
	}

	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	b := NewBatch(4, 2048)
	start := time.Now()
	_, err := c.ReadBatch(b)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadBatch on an empty socket past its deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("ReadBatch took %v to see a 20 ms deadline: it blocked in the kernel", el)
	}
	c.SetReadDeadline(time.Time{})

	peer := plain(t, "udp4", "127.0.0.1:0")
	out := NewBatch(1, 0)
	out.Msgs[0].SetData([]byte("hello"), addrOf(peer))
	if n, err := c.WriteBatch(out, 1); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, err := peer.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("peer read %q, %v; want hello", buf[:n], err)
	}
}

func fdFlags(t *testing.T, c *Conn) int {
	t.Helper()
	rc, _ := c.SyscallConn()
	var flags int
	var err error
	rc.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if err != nil {
		t.Fatal(err)
	}
	return flags
}

// TestParkAfterCloseEndsWait closes the socket while ReadLoop waits in
// recvmmsg: Close must end the wait at once, not after ParkAfter. (Close
// shuts the socket down to wake the wait; without that, the runtime's
// preemption signal would still end it within about 10-20 ms, as it
// interrupts any goroutine that has held its P for 10 ms.)
func TestParkAfterCloseEndsWait(t *testing.T) {
	c, err := Listen(context.Background(), "127.0.0.1:0", Config{ParkAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	src := plain(t, "udp4", "127.0.0.1:0")
	handled := make(chan struct{}, 1)
	b := NewBatch(4, 2048)
	done := runLoop(c, b, func(n int) bool { handled <- struct{}{}; return true })
	if _, err := src.WriteToUDPAddrPort([]byte("one"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(5 * time.Second):
		t.Fatal("datagram not handled within 5 s")
	}
	time.Sleep(20 * time.Millisecond) // the loop is back in recvmmsg
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	err = wait(t, done, "Close")
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Errorf("ReadLoop returned %v after Close, want well under ParkAfter (1 s)", el)
	}
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadLoop after Close = %v, want net.ErrClosed", err)
	}
}

// TestParkAfterParksWhenQuiet checks that an idle loop holds no thread:
// once its socket has been quiet for ParkAfter, the loop's goroutine is
// parked in the netpoller ("IO wait" in a goroutine dump); within
// ParkAfter it is still in recvmmsg, which the runtime does not see as a
// wait. Taking the dump stops the world, which the waiting loop must also
// allow.
func TestParkAfterParksWhenQuiet(t *testing.T) {
	for _, tc := range []struct {
		name      string
		parkAfter time.Duration
		yield     int64 // Config.Yield's count
		quiet     time.Duration
		parked    bool
	}{
		{"no ParkAfter", 0, 0, 100 * time.Millisecond, true},
		{"quiet past ParkAfter", 20 * time.Millisecond, 0, 300 * time.Millisecond, true},
		{"quiet within ParkAfter", time.Second, 0, 100 * time.Millisecond, false},
		{"quiet within ParkAfter, connections open", time.Second, 1, 100 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var yield atomic.Int64
			yield.Store(tc.yield)
			c := listen(t, "127.0.0.1:0", Config{ParkAfter: tc.parkAfter, Yield: &yield})
			src := plain(t, "udp4", "127.0.0.1:0")
			ids := make(chan string, 1)
			b := NewBatch(4, 2048)
			done := runLoop(c, b, func(n int) bool { ids <- goroutineID(); return true })
			if _, err := src.WriteToUDPAddrPort([]byte("one"), c.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			var id string
			select {
			case id = <-ids:
			case <-time.After(5 * time.Second):
				t.Fatal("datagram not handled within 5 s")
			}
			time.Sleep(tc.quiet)
			state := goroutineState(t, id)
			if parked := strings.HasPrefix(state, "IO wait"); parked != tc.parked {
				t.Errorf("after %v of quiet with ParkAfter %v the loop's goroutine is %q; parked in the netpoller: %v, want %v",
					tc.quiet, tc.parkAfter, state, parked, tc.parked)
			}
			c.Close()
			if err := wait(t, done, "Close"); !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadLoop after Close = %v, want net.ErrClosed", err)
			}
		})
	}
}

// goroutineID returns the calling goroutine's number as runtime.Stack
// prints it.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// goroutineState returns the state runtime.Stack prints for goroutine id
// ("IO wait", "running", "runnable"...).
func goroutineState(t *testing.T, id string) string {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	prefix := "goroutine " + id + " ["
	for _, block := range strings.Split(string(buf), "\n\n") {
		if rest, ok := strings.CutPrefix(block, prefix); ok {
			state, _, _ := strings.Cut(rest, "]")
			return state
		}
	}
	t.Fatalf("goroutine %s not in the dump", id)
	return ""
}

// TestParkAfterYields runs, on a single P, a loop that never runs out of
// datagrams (each one handled sends the next to itself) and so waits in
// recvmmsg, keeping the P, all the time. A goroutine reading a 1 ms
// ticker must still get most of its ticks: the loop yields every few
// dozen waits, not only when the runtime preempts it after 10 ms (which
// would leave about 30 ticks of 300).
func TestParkAfterYields(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	c := listen(t, "127.0.0.1:0", Config{ParkAfter: time.Second})
	src := plain(t, "udp4", "127.0.0.1:0")
	var stop atomic.Bool
	var batches atomic.Int64
	b := NewBatch(4, 2048)
	out := NewBatch(1, 0)
	done := runLoop(c, b, func(n int) bool {
		batches.Add(1)
		if stop.Load() {
			return false
		}
		out.Msgs[0].SetData(b.Msgs[0].Buf, c.LocalAddr())
		if _, err := c.WriteBatch(out, 1); err != nil {
			t.Errorf("WriteBatch: %v", err)
			return false
		}
		return true
	})
	if _, err := src.WriteToUDPAddrPort([]byte("feed"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	end := time.After(300 * time.Millisecond)
	ticks := 0
	for running := true; running; {
		select {
		case <-ticker.C:
			ticks++
		case <-end:
			running = false
		}
	}
	stop.Store(true)
	if err := wait(t, done, "stop"); err != nil {
		t.Fatalf("ReadLoop = %v, want nil", err)
	}
	if n := batches.Load(); n < 1000 {
		t.Fatalf("the loop handled %d batches in 300 ms; it was meant to be busy all along", n)
	}
	if ticks < 75 {
		t.Errorf("the ticker goroutine got %d of 300 ticks while the loop waited in recvmmsg, want at least 75", ticks)
	}
	t.Logf("%d batches, %d ticks", batches.Load(), ticks)
}
