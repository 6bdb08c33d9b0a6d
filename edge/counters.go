package edge

import "sync/atomic"

// rule names a fixed rule a drop is counted under; the scanner patterns
// and the gateway caps, which the configuration names, are counted apart
// (labelCounter).
type rule uint8

const (
	ruleAllow rule = iota
	ruleDeny
	ruleBlocklist
	ruleBanManual
	ruleBanRate
	ruleBanScanner
	ruleRateRegister
	ruleRateInvite
	ruleRateOther
	ruleNewSource
	numRules
)

// ruleLabels are the reason and rule labels of each rule's drops.
var ruleLabels = [numRules][2]string{
	{"access", "allow"}, {"access", "deny"}, {"access", "blocklist"},
	{"ban", "manual"}, {"ban", "rate"}, {"ban", "scanner"},
	{"rate", "register"}, {"rate", "invite"}, {"rate", "other"},
	{"new_source", "table"},
}

func banRule(o Origin) rule   { return ruleBanManual + rule(o) }
func rateRule(c Class) rule   { return ruleRateRegister + rule(c) }
func (r rule) reason() string { return ruleLabels[r][0] }
func (r rule) name() string   { return ruleLabels[r][1] }

// The two counts of a rule: what it dropped (enforced) and what it would
// have dropped (log_only).
const (
	enforced = iota
	wouldDrop
)

// counters are one worker's drop counts, written by it alone (atomic adds
// without contention) and read by the collector.
type counters struct {
	drops    [2][numRules]atomic.Uint64
	replies  atomic.Uint64 // 503s to requests over a limit
	admitted atomic.Uint64
	_        [64]byte
}

// labelCounter is the count of a rule named by the configuration (a
// scanner pattern, a gateway cap), shared by the workers.
type labelCounter struct {
	reason, rule string
	n            [2]atomic.Uint64
}

// count records a drop by r in mode m and reports whether the message is
// to be dropped (m is Enforce).
func (c *counters) count(r rule, m Mode) bool {
	if m == LogOnly {
		c.drops[wouldDrop][r].Add(1)
		return false
	}
	c.drops[enforced][r].Add(1)
	return true
}

// countLabel is count for a labelled rule.
func countLabel(l *labelCounter, m Mode) bool {
	if m == LogOnly {
		l.n[wouldDrop].Add(1)
		return false
	}
	l.n[enforced].Add(1)
	return true
}
