//go:build linux && !portableudp

package udp

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// The workers wait in recvmmsg only when each can keep a P of its own:
// with more workers than GOMAXPROCS every socket parks at once.
func TestServerParkAfterNeedsAPPerWorker(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	const park = 30 * time.Millisecond
	for _, tc := range []struct {
		workers int
		want    time.Duration
	}{
		{procs, park},
		{procs + 1, 0},
	} {
		s, err := NewServer(context.Background(), loopbackLayout(tc.workers), ServerConfig{ParkAfter: park}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.ParkAfter(); got != tc.want {
			t.Errorf("%d workers, GOMAXPROCS %d: ParkAfter() = %v, want %v", tc.workers, procs, got, tc.want)
		}
		for _, c := range s.conns[0][:tc.workers] {
			if got := c.ParkAfter(); got != tc.want {
				t.Errorf("%d workers, GOMAXPROCS %d: socket ParkAfter = %v, want %v", tc.workers, procs, got, tc.want)
			}
		}
		s.Close()
	}
}
