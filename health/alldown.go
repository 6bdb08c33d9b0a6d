package health

import (
	"fmt"

	"github.com/viaduct-sip/viaduct/balancer"
)

// allDownSink is implemented by *balancer.Pool: it takes the policy for
// when every target is down.
type allDownSink interface {
	SetAllDown(a balancer.AllDown) error
}

// tableSink is implemented by *balancer.Pool: the checker reads the
// published table to tell when every target is down.
type tableSink interface {
	Table() *balancer.Table
}

// allDownState is what reportAllDown last logged.
type allDownState uint8

const (
	someUp        allDownState = iota // at least one target in service is up
	allDownPanic                      // all down, forwarding to all of them
	allDownReject                     // all down, answering 503
)

// pushAllDown hands the all-down policy to the sink, if it takes one.
// Called with c.mu held.
func (c *Checker) pushAllDown() error {
	s, ok := c.sink.(allDownSink)
	if !ok {
		return nil
	}
	if err := s.SetAllDown(c.allDown); err != nil {
		return fmt.Errorf("all_down: %w", err)
	}
	return nil
}

// reportAllDown logs, when the sink's table says so, that every target in
// service is down (loudly: traffic now goes to servers believed dead, or
// gets 503) and when that ends. It logs transitions only.
func (c *Checker) reportAllDown() {
	ts, ok := c.sink.(tableSink)
	if !ok {
		return
	}
	c.allDownMu.Lock()
	defer c.allDownMu.Unlock()
	tab := ts.Table()
	now := someUp
	switch {
	case tab.Panic():
		now = allDownPanic
	case tab.AllDown():
		now = allDownReject
	}
	if now == c.allDownLast {
		return
	}
	prev := c.allDownLast
	c.allDownLast = now
	inService := 0
	for i := 0; i < tab.Len(); i++ {
		if tab.Target(i).Admin != balancer.Disabled {
			inService++
		}
	}
	switch now {
	case allDownPanic:
		c.log.Error("every upstream is down: forwarding to all of them anyway (panic mode), health ignored; check the upstreams, and their health probes (an upstream that does not answer OPTIONS needs never_probe); health.all_down: reject answers 503 instead",
			"upstreams", inService, "all_down", "forward")
	case allDownReject:
		c.log.Error("every upstream is down: new requests are answered 503 (health.all_down: reject)",
			"upstreams", inService, "all_down", "reject")
	default:
		what := "panic mode over"
		if prev == allDownReject {
			what = "no more 503 for lack of an upstream"
		}
		c.log.Warn("not every upstream is down any more: "+what, "up_and_enabled", upEnabled(tab))
	}
}

// upEnabled counts the targets of tab that are up and enabled.
func upEnabled(tab *balancer.Table) int {
	n := 0
	for i := 0; i < tab.Len(); i++ {
		if t := tab.Target(i); t.Health == balancer.Up && t.Admin == balancer.Enabled {
			n++
		}
	}
	return n
}
