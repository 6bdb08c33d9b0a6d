package load

import "math"

// Pacer spreads events evenly over time: at rate r per second the k-th event
// (counting from 0) is due at start + k/r seconds, so a generator that asks
// often sends one event every 1/r seconds instead of a burst once a second.
// When the caller falls behind, the events it missed stay due and are
// returned by the next calls to Due (the long-run rate is kept); the caller
// bounds how many it takes at once.
//
// A Pacer reads no clock: every method takes the current time in
// nanoseconds on any monotonic scale, which makes it testable with a
// simulated clock. The zero value is stopped (Due returns 0). A Pacer is not
// safe for concurrent use.
type Pacer struct {
	rate  float64 // events per second; <= 0 means unlimited
	start int64   // time of event 0 at the current rate
	taken uint64  // events taken since start
	on    bool
}

// Start (re)starts the pacer at the given rate with the first event due at
// now. A rate <= 0 means unlimited: every call to Due returns math.MaxInt.
func (p *Pacer) Start(now int64, rate float64) {
	p.rate, p.start, p.taken, p.on = rate, now, 0, true
}

// Stop stops the pacer; Due then returns 0.
func (p *Pacer) Stop() { p.on = false }

// Rate returns the current rate in events per second.
func (p *Pacer) Rate() float64 { return p.rate }

// SetRate changes the rate from now on, keeping the events already due but
// not yet taken, so a change does not produce a burst or a gap.
func (p *Pacer) SetRate(now int64, rate float64) {
	if !p.on {
		p.Start(now, rate)
		return
	}
	owed := 0
	if p.rate > 0 {
		owed = p.Due(now)
	}
	p.rate, p.start, p.taken = rate, now, 0
	if rate > 0 && owed > 0 {
		// Keep what was owed by moving the origin back by that many
		// intervals; the first of them is due at once.
		p.start -= int64(float64(owed-1) * 1e9 / rate)
	}
}

// Due returns how many events are due at time now and not taken yet.
func (p *Pacer) Due(now int64) int {
	if !p.on {
		return 0
	}
	if p.rate <= 0 {
		return math.MaxInt
	}
	if now < p.start {
		return 0
	}
	allowed := uint64(float64(now-p.start)*p.rate/1e9) + 1
	if allowed <= p.taken {
		return 0
	}
	d := allowed - p.taken
	if d > math.MaxInt32 {
		d = math.MaxInt32
	}
	return int(d)
}

// Take records that n events were sent.
func (p *Pacer) Take(n int) { p.taken += uint64(n) }

// Taken returns the number of events taken since the last Start or SetRate.
func (p *Pacer) Taken() uint64 { return p.taken }

// Next returns the time at which the next event is due (which may be in the
// past if events are owed), or math.MaxInt64 when the pacer is stopped.
// With an unlimited rate it returns the start time.
func (p *Pacer) Next() int64 {
	if !p.on {
		return math.MaxInt64
	}
	if p.rate <= 0 {
		return p.start
	}
	return p.start + int64(math.Ceil(float64(p.taken)*1e9/p.rate))
}
