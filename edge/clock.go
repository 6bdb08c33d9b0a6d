package edge

import (
	"context"
	"sync/atomic"
	"time"
)

// The coarse clock's tick, and the ticks without a reader after which it
// stops (an idle Viaduct wakes for nothing). 5 ms is finer than any
// interval the default limits count in (5 ms at other's 200/s); 200
// wake-ups a second (a few us each) cost what a system clock read per
// message (about 25 ns here) costs at some tens of thousands of messages
// a second, and less above.
const (
	clockTick      = 5 * time.Millisecond
	clockIdleTicks = 20
)

// clock is the Guard's time: ns since it started, on the monotonic clock,
// never 0 (0 marks free table entries). Reading the system clock costs
// about as much as the rate check itself, so while messages flow a
// goroutine (run) stores the time every clockTick and the workers read
// that; it stops after 100 ms without a reader and the next reader wakes
// it, reading the system clock meanwhile. Without run every read is
// precise.
type clock struct {
	base   time.Time
	coarse atomic.Int64 // the time at the last tick; 0 while not ticking
	used   atomic.Bool  // read since the last tick
	wake   chan struct{}
}

func newClock() clock { return clock{base: time.Now(), wake: make(chan struct{}, 1)} }

func (c *clock) now() int64 {
	if v := c.coarse.Load(); v != 0 {
		if !c.used.Load() {
			c.used.Store(true)
		}
		return v
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return c.precise()
}

func (c *clock) precise() int64 { return int64(time.Since(c.base)) + 1 }

// wall returns the wall-clock time of t.
func (c *clock) wall(t int64) time.Time {
	return c.base.Add(time.Duration(t)).Round(time.Millisecond).UTC()
}

// run ticks while the clock is read, until ctx is done.
func (c *clock) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
			c.tickWhileRead(ctx)
		}
	}
}

func (c *clock) tickWhileRead(ctx context.Context) {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	defer c.coarse.Store(0)
	c.coarse.Store(c.precise())
	for idle := 0; idle < clockIdleTicks; {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.coarse.Store(c.precise())
		if c.used.Swap(false) {
			idle = 0
		} else {
			idle++
		}
	}
}
