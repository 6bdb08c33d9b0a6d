// Package health watches Viaduct's upstream targets and keeps their health
// and admin states.
//
// A Checker probes every target of a pool with an out-of-dialog request
// (OPTIONS by default) carrying Viaduct's Via only, sent through a
// Transport (*fastpath.Engine satisfies it: AppendVia and SendTo, from an
// address of this process alone). The reply comes back through the fast
// path, whose local response hook hands it to Checker.HandleResponse; the
// Call-ID names the probe. Over UDP an unanswered probe is retransmitted
// within its timeout (RFC 3261 17.1.2.2). Responses the fast path relays
// count as evidence of life (Checker.ObserveResponse), so a busy target is
// never probed, and with passive_503 a burst of 503s marks a target down.
//
// Failures consecutive failed rounds mark an up target down, Successes
// consecutive good ones mark it up; targets start up. Probe.DetectionBound
// and Probe.RecoveryBound give how long that takes. Every probe answered
// without retransmission gives a round-trip time sample (Status.RTT and
// the smoothed Status.RTTAvg).
//
// Admin states (balancer.Enabled, Draining, Disabled) are changed with
// Checker.SetAdmin and are independent of health. Every change of either
// goes to a StateSink (*balancer.Pool satisfies it) and is logged with its
// reason; health changes are handed over by a goroutine of their own, so a
// table rebuild never holds up a probe. Config.AllDown goes to a sink that
// takes it (panic mode, see package balancer).
//
// The README's "Health checks and admin states" section gives the rules,
// the defaults and the measured bounds.
package health
