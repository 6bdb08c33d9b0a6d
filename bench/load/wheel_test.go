package load

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestWheelAgainstReference arms, re-arms and stops timers at random over a
// simulated clock and checks that every timer fires exactly once, not
// before its deadline and no later than the next advance after it, and that
// nextDeadline never overshoots the earliest deadline.
func TestWheelAgainstReference(t *testing.T) {
	const n = 500
	r := rand.New(rand.NewPCG(7, 8))
	now := int64(1e9)
	w := newWheel(n, now)
	ref := make(map[int32]int64) // armed timers and their deadlines
	fired := 0
	for step := 0; step < 20000; step++ {
		switch op := r.IntN(10); {
		case op < 5:
			i := int32(r.IntN(n))
			var d int64
			switch r.IntN(4) {
			case 0:
				d = now + r.Int64N(5e6) // within a few ticks
			case 1:
				d = now + r.Int64N(10e9) // beyond one revolution
			case 2:
				d = now - r.Int64N(3e6) // already due
			default:
				d = now + r.Int64N(600e6)
			}
			w.set(i, d)
			ref[i] = d
		case op < 6:
			i := int32(r.IntN(n))
			w.stop(i)
			delete(ref, i)
		default:
			if nd := w.nextDeadline(); len(ref) > 0 {
				min := int64(math.MaxInt64)
				for _, d := range ref {
					min = int64(math.Min(float64(min), float64(d)))
				}
				// A past deadline is reported as the current tick, which
				// is never later than the clock.
				if nd > min && nd > w.cur<<wheelTickShift {
					t.Fatalf("nextDeadline %d is after the earliest deadline %d", nd, min)
				}
			} else if nd != math.MaxInt64 {
				t.Fatalf("nextDeadline %d with no timer armed", nd)
			}
			now += r.Int64N(40e6)
			w.advance(now, func(i int32) {
				d, ok := ref[i]
				if !ok {
					t.Fatalf("timer %d fired but was not armed", i)
				}
				if d > now {
					t.Fatalf("timer %d fired at %d before its deadline %d", i, now, d)
				}
				delete(ref, i)
				fired++
				if r.IntN(3) == 0 { // re-arm from inside fire
					nd := now + 1 + r.Int64N(50e6)
					w.set(i, nd)
					ref[i] = nd
				}
			})
			for i, d := range ref {
				if d <= now {
					t.Fatalf("timer %d with deadline %d not fired at %d", i, d, now)
				}
			}
		}
		if w.armed != len(ref) {
			t.Fatalf("wheel counts %d armed timers, reference %d", w.armed, len(ref))
		}
	}
	if fired < 1000 {
		t.Fatalf("only %d timers fired; test not exercising the wheel", fired)
	}
}

func TestWheelAllocs(t *testing.T) {
	w := newWheel(1024, 0)
	now := int64(0)
	var i int32
	fire := func(j int32) { w.set(j, now+500e6) }
	a := testing.AllocsPerRun(1000, func() {
		w.set(i%1024, now+int64(i%7)*1e6)
		if i%3 == 0 {
			w.stop((i + 5) % 1024)
		}
		now += 1e6
		w.advance(now, fire)
		_ = w.nextDeadline()
		i++
	})
	if a != 0 {
		t.Fatalf("wheel operations allocate %v times per run", a)
	}
}
