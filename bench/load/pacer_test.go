package load

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestPacerCountOverSimulatedClock drives the pacer with an irregular
// simulated clock and checks the count at every instant.
func TestPacerCountOverSimulatedClock(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, rate := range []float64{1, 7.5, 1000, 33333, 1e6} {
		var p Pacer
		start := int64(123456789)
		p.Start(start, rate)
		now := start
		end := start + 10e9
		for now < end {
			n := p.Due(now)
			p.Take(n)
			want := uint64(math.Floor(float64(now-start)*rate/1e9)) + 1
			if p.Taken() != want {
				t.Fatalf("rate %v at +%dns: taken %d, want %d", rate, now-start, p.Taken(), want)
			}
			now += 1 + r.Int64N(3_000_000)
		}
	}
}

// TestPacerIsSmooth checks that a caller polling every 100us never gets more
// than the events of one such interval (no once-a-second bursts), and that
// Next predicts exactly when the next event becomes due.
func TestPacerIsSmooth(t *testing.T) {
	const rate = 20000 // one event every 50us
	var p Pacer
	p.Start(0, rate)
	total := 0
	for now := int64(0); now <= 2e9; now += 100_000 {
		n := p.Due(now)
		if now > 0 && n > 2 {
			t.Fatalf("at %dns %d events due at once, want <= 2", now, n)
		}
		p.Take(n)
		total += n
		next := p.Next()
		if next <= now || p.Due(next) != 1 || p.Due(next-1) != 0 {
			t.Fatalf("Next()=%d at now=%d: Due(next)=%d Due(next-1)=%d", next, now, p.Due(next), p.Due(next-1))
		}
	}
	if total != 40001 {
		t.Fatalf("sent %d events in 2s at 20000/s, want 40001", total)
	}
}

// TestPacerCatchesUpAndChangesRate checks that events missed while the
// caller was busy stay due, and that SetRate keeps owed events.
func TestPacerCatchesUpAndChangesRate(t *testing.T) {
	var p Pacer
	p.Start(0, 1000)
	p.Take(p.Due(0))
	if d := p.Due(50e6); d != 50 { // busy for 50ms
		t.Fatalf("after a 50ms stall Due = %d, want 50", d)
	}
	p.Take(20)
	p.SetRate(50e6, 2000) // 30 still owed
	if d := p.Due(50e6); d != 30 {
		t.Fatalf("after SetRate Due = %d, want the 30 owed", d)
	}
	p.Take(30)
	if d := p.Due(50e6 + 1e9); d != 2000 {
		t.Fatalf("one second at the new rate gave %d events, want 2000", d)
	}
	p.Stop()
	if p.Due(1e12) != 0 || p.Next() != math.MaxInt64 {
		t.Fatal("stopped pacer still due")
	}
	p.Start(0, 0)
	if p.Due(0) != math.MaxInt {
		t.Fatal("unlimited rate should always be due")
	}
}
