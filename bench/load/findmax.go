package load

import (
	"context"
	"errors"
	"math"
	"time"
)

// FindMaxOptions configures a search for the highest sustainable rate.
type FindMaxOptions struct {
	// Start is the first rate tried. Default 500.
	Start float64
	// Limit is the highest rate tried. Default 1,000,000.
	Limit float64
	// Growth multiplies the rate after each passing step until one
	// fails. Default 1.5.
	Growth float64
	// Precision ends the bisection between the highest passing and the
	// lowest failing rate once they are within this fraction. Default 0.05.
	Precision float64
	// StepDuration is how long each rate is held. Default 5s.
	StepDuration time.Duration
	// Drain is how long a step waits for its calls to end after sending
	// stops; calls still going count as failed. Default: call hold + 3s.
	Drain time.Duration
	// Pause separates steps, so the target recovers from an overload.
	// Default 1s.
	Pause time.Duration
	// MaxFail is the failure ratio a step may have and pass. Default 0.001.
	MaxFail float64
	// MinAchieved is the fraction of the target rate the generator must
	// actually start for a step to pass. Default 0.97.
	MinAchieved float64
	// MaxP99, when positive, also fails a step whose 99th percentile of
	// request-to-first-response latency exceeds it (a target that only
	// keeps up thanks to retransmissions is then not counted as keeping
	// up). Default 0: failures alone decide.
	MaxP99 time.Duration
}

func (o *FindMaxOptions) defaults(hold time.Duration) {
	if o.Start <= 0 {
		o.Start = 500
	}
	if o.Limit <= 0 {
		o.Limit = 1e6
	}
	if o.Growth <= 1 {
		o.Growth = 1.5
	}
	if o.Precision <= 0 {
		o.Precision = 0.05
	}
	if o.StepDuration <= 0 {
		o.StepDuration = 5 * time.Second
	}
	if o.Drain <= 0 {
		o.Drain = hold + 3*time.Second
	}
	if o.Pause < 0 {
		o.Pause = 0
	} else if o.Pause == 0 {
		o.Pause = time.Second
	}
	if o.MaxFail <= 0 {
		o.MaxFail = 0.001
	}
	if o.MinAchieved <= 0 {
		o.MinAchieved = 0.97
	}
}

// Step is the outcome of one rate tried by FindMax.
type Step struct {
	Rate   float64 `json:"rate"`
	Passed bool    `json:"passed"`
	Report Report  `json:"report"`
	Result *Result `json:"-"`
}

// FindMaxResult is the outcome of FindMax.
type FindMaxResult struct {
	// MaxRate is the highest rate that passed (0 if none did).
	MaxRate float64 `json:"max_rate"`
	// Best is the report of the step at MaxRate.
	Best  *Report `json:"best,omitempty"`
	Steps []Step  `json:"steps"`
}

// FindMax ramps the rate up (multiplying by Growth while steps pass), then
// bisects between the highest passing and the lowest failing rate, and
// returns the highest rate sustained with failures at most MaxFail and at
// least MinAchieved of the rate actually sent. step, if not nil, is called
// after each step.
func FindMax(ctx context.Context, u *UAC, o FindMaxOptions, step func(Step)) (*FindMaxResult, error) {
	o.defaults(u.cfg.CallHold)
	res := &FindMaxResult{}
	try := func(rate float64) (bool, error) {
		r, err := u.Run(ctx, RunOptions{Rate: rate, Duration: o.StepDuration, Drain: o.Drain})
		if err != nil {
			return false, err
		}
		if r.Aborted {
			return false, ctx.Err()
		}
		rep := r.Report(o.MaxFail)
		ok := rep.Passed && r.Achieved() >= o.MinAchieved*rate
		if o.MaxP99 > 0 && r.Counts.Response.Percentile(99) > uint64(o.MaxP99) {
			ok = false
		}
		rep.Passed = ok
		s := Step{Rate: rate, Passed: ok, Report: rep, Result: r}
		res.Steps = append(res.Steps, s)
		if ok && rate > res.MaxRate {
			res.MaxRate = rate
			best := rep
			res.Best = &best
		}
		if step != nil {
			step(s)
		}
		if o.Pause > 0 {
			select {
			case <-ctx.Done():
				return ok, ctx.Err()
			case <-time.After(o.Pause):
			}
		}
		return ok, nil
	}
	lo, hi := 0.0, 0.0
	rate := o.Start
	// Grow until a step fails (or the limit passes); if the very first
	// step fails, shrink until one passes.
	for {
		ok, err := try(rate)
		if err != nil {
			return res, err
		}
		if ok {
			lo = rate
			if hi > 0 || rate >= o.Limit {
				break
			}
			rate = math.Round(min(rate*o.Growth, o.Limit))
			continue
		}
		hi = rate
		if lo > 0 {
			break
		}
		rate /= 2
		if rate < 1 {
			return res, errors.New("find-max: no rate of 1/s or more passed")
		}
	}
	for hi > 0 && (hi-lo)/lo > o.Precision {
		mid := math.Round((lo + hi) / 2)
		ok, err := try(mid)
		if err != nil {
			return res, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	return res, nil
}
