package edge

import (
	"context"
	"testing"
	"time"
)

func TestClockTicksWhileReadAndStopsWhenIdle(t *testing.T) {
	c := newClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.run(ctx)
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s after 5 s", what)
			}
		}
	}
	before := c.precise()
	c.now() // wakes the ticker
	wait("tick", func() bool { return c.coarse.Load() != 0 })
	first := c.now()
	if first < before {
		t.Errorf("coarse time %d before the precise %d read earlier", first, before)
	}
	wait("advance while read", func() bool { return c.now() > first })
	wait("stop when idle", func() bool { return c.coarse.Load() == 0 })
	if p := c.now(); p <= first {
		t.Errorf("after the ticker stopped, now %d is not after %d", p, first)
	}
}
