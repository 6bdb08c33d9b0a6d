package health

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/viaduct-sip/viaduct/balancer"
)

// passiveSlot is the passive 503 burst detector of one target. The ring
// holds the arrival times of the target's last len(ring) 503 responses
// (nanoseconds since Checker.base, plus one so that 0 means empty): when
// the one len(ring) arrivals ago is within the window of the current one,
// len(ring)+1 = Count 503s arrived within the window.
type passiveSlot struct {
	t       *target // read only by the checker's goroutine
	count   int
	window  time.Duration
	ring    []atomic.Int64
	n       atomic.Uint64
	tripped atomic.Bool
}

func newPassiveSlot(t *target) *passiveSlot {
	return &passiveSlot{
		t:      t,
		count:  t.probe.PassiveCount,
		window: t.probe.PassiveWindow,
		ring:   make([]atomic.Int64, t.probe.PassiveCount-1),
	}
}

// rearm clears the ring and allows the slot to trip again.
func (s *passiveSlot) rearm() {
	for i := range s.ring {
		s.ring[i].Store(0)
	}
	s.tripped.Store(false)
}

// record503 records a 503 from the slot's target: lock-free, allocation
// free; when Count of them arrived within Window the slot trips and the
// checker's goroutine marks the target down.
func (c *Checker) record503(s *passiveSlot) {
	if s.tripped.Load() {
		return
	}
	now := int64(time.Since(c.base)) + 1
	i := s.n.Add(1)
	old := s.ring[i%uint64(len(s.ring))].Swap(now)
	if old == 0 || now-old > int64(s.window) {
		return
	}
	if s.tripped.CompareAndSwap(false, true) {
		select {
		case c.trips <- s:
		default:
			s.tripped.Store(false) // retried on the next 503
		}
	}
}

// onTrip marks the target of a tripped slot down. Called with c.mu held.
func (c *Checker) onTrip(s *passiveSlot) {
	t := s.t
	if t.passive != s || c.byID[t.id] != t {
		return // replaced by a reload
	}
	t.passiveTrips++
	if t.health == balancer.Down {
		return
	}
	t.succs = 0
	c.setHealth(t, balancer.Down, fmt.Sprintf("passive 503 burst (%d responses 503 within %v)", s.count, s.window))
}
