//go:build linux && !portableudp

package udp

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// group opens size sockets with SO_REUSEPORT on one ephemeral loopback
// port.
func group(t *testing.T, size int) []*Conn {
	t.Helper()
	first := listen(t, "127.0.0.1:0", Config{ReusePort: true, RecvBuffer: 1 << 20})
	g := []*Conn{first}
	for len(g) < size {
		g = append(g, listen(t, first.LocalAddr().String(), Config{ReusePort: true, RecvBuffer: 1 << 20}))
	}
	for _, c := range g[1:] {
		if c.LocalAddr() != first.LocalAddr() {
			t.Fatalf("group member on %v, want %v", c.LocalAddr(), first.LocalAddr())
		}
	}
	return g
}

// receipt is one datagram as seen by a group member.
type receipt struct {
	socket int
	from   netip.AddrPort
	seq    string
}

// collect reads from every member of g concurrently until total
// datagrams arrived (or 5 s passed) and returns what each got.
func collect(t *testing.T, g []*Conn, total int) []receipt {
	t.Helper()
	var (
		mu  sync.Mutex
		got []receipt
		wg  sync.WaitGroup
	)
	done := make(chan struct{})
	deadline := time.Now().Add(5 * time.Second)
	for i, c := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := NewBatch(64, 256)
			for {
				// Short deadlines so readers notice when the others
				// have collected everything.
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				n, err := c.ReadBatch(b)
				mu.Lock()
				for _, m := range b.Msgs[:n] {
					got = append(got, receipt{i, m.Addr, string(m.Buf)})
				}
				if len(got) == total {
					select {
					case <-done:
					default:
						close(done)
					}
				}
				mu.Unlock()
				select {
				case <-done:
					return
				default:
				}
				if err != nil && time.Now().After(deadline) {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range g {
		c.SetReadDeadline(time.Time{})
	}
	if len(got) != total {
		t.Fatalf("group received %d of %d datagrams", len(got), total)
	}
	return got
}

// sendFrom sends perSource datagrams from each of sources new sockets to
// to, all with one WriteBatch per source.
func sendFrom(t *testing.T, sources, perSource int, to netip.AddrPort) []netip.AddrPort {
	t.Helper()
	var addrs []netip.AddrPort
	b := NewBatch(perSource, 0)
	for s := 0; s < sources; s++ {
		src := listen(t, "127.0.0.1:0", Config{})
		addrs = append(addrs, src.LocalAddr())
		for k := range b.Msgs {
			b.Msgs[k].SetData([]byte(fmt.Sprintf("%d/%d", s, k)), to)
		}
		if sent, err := src.WriteBatch(b, perSource); sent != perSource || err != nil {
			t.Fatalf("source %d: WriteBatch = %d, %v", s, sent, err)
		}
	}
	return addrs
}

// spread counts datagrams per socket and checks that each source landed
// on exactly one socket, in order.
func spread(t *testing.T, g []*Conn, got []receipt) (perSocket []int) {
	t.Helper()
	perSocket = make([]int, len(g))
	home := map[netip.AddrPort]int{}
	next := map[netip.AddrPort]int{}
	for _, r := range got {
		perSocket[r.socket]++
		if s, ok := home[r.from]; ok && s != r.socket {
			t.Errorf("source %v reached sockets %d and %d; the 4-tuple hash must keep it on one", r.from, s, r.socket)
		}
		home[r.from] = r.socket
		var src, k int
		fmt.Sscanf(r.seq, "%d/%d", &src, &k)
		if k != next[r.from] {
			t.Errorf("source %v: datagram %d arrived when %d was due", r.from, k, next[r.from])
		}
		next[r.from] = k + 1
	}
	return perSocket
}

// TestReusePortShared checks that two sockets sharing a port both take
// traffic when several sources send to it.
func TestReusePortShared(t *testing.T) {
	g := group(t, 2)
	const sources, each = 32, 4
	sendFrom(t, sources, each, g[0].LocalAddr())
	per := spread(t, g, collect(t, g, sources*each))
	t.Logf("2 sockets, %d sources x %d datagrams: per socket %v", sources, each, per)
	for i, n := range per {
		if n == 0 {
			// With 32 sources the chance of this is 2^-31.
			t.Errorf("socket %d received nothing: %v", i, per)
		}
	}
}

// TestReusePortSpreading measures the kernel's 4-tuple spreading over a
// group of 4 sockets: a source always lands on a single socket; 4 sources
// usually leave a socket idle; 64 sources reach every socket, roughly
// evenly. Run with -v to see the counts.
func TestReusePortSpreading(t *testing.T) {
	g := group(t, 4)
	for _, tc := range []struct{ sources, each int }{{1, 256}, {4, 64}, {64, 4}} {
		sendFrom(t, tc.sources, tc.each, g[0].LocalAddr())
		got := collect(t, g, tc.sources*tc.each)
		per := spread(t, g, got)
		sources := make([]int, len(g))
		seen := map[netip.AddrPort]bool{}
		busy := 0
		for _, r := range got {
			if !seen[r.from] {
				seen[r.from] = true
				sources[r.socket]++
			}
		}
		for _, n := range per {
			if n > 0 {
				busy++
			}
		}
		t.Logf("4 sockets, %2d sources x %3d datagrams: datagrams per socket %v, sources per socket %v, %d of 4 sockets busy",
			tc.sources, tc.each, per, sources, busy)
		switch tc.sources {
		case 1:
			if busy != 1 {
				t.Errorf("one source reached %d sockets, want 1: %v", busy, per)
			}
		case 64:
			// A socket missing all 64 sources has probability 4*(3/4)^64.
			if busy != len(g) {
				t.Errorf("64 sources reached only %d of %d sockets: %v", busy, len(g), per)
			}
		}
	}
}
