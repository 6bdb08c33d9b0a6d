// Package health watches Viaduct's upstream targets and keeps their health
// and admin states.
//
// # Active checks
//
// A Checker probes every target of a pool with an out-of-dialog request
// (OPTIONS by default) sent from Viaduct's own listen socket with Viaduct's
// Via only, through a Transport (*fastpath.Engine satisfies it). The reply
// comes back through the fast path, whose local response hook hands it to
// Checker.HandleResponse; the Call-ID names the probe. A probe fails when
// no final response arrives within the timeout or when the response code is
// not accepted (by default every final code but 408, 480 and 503 is). Over
// UDP an unanswered probe is retransmitted within its timeout as RFC 3261
// 17.1.2.2 prescribes.
//
// Failures consecutive failures mark an up target down; Successes
// consecutive successes mark a down target up. Targets start up: a target
// is presumed healthy until a check says otherwise. The first probe timeout
// of a target that has never answered a probe is logged (once) with a hint:
// some servers never answer OPTIONS, and never_probe is for them.
//
// # Evidence of life
//
// A target's own traffic shows it alive. The fast path reports every
// response it relays (ObserveResponse), and a check round (one per
// interval) passes when a response from the target, other than 503,
// arrives after the round started and within its timeout, exactly as an
// accepted reply to the probe would. A target that carried traffic during
// the previous round gets no probe at once: the round waits half its
// timeout for a response to that traffic, and sends the probe only if none
// came. A busy target is thus never probed, and one that answers calls but
// ignores OPTIONS (SIPp's built-in uas scenario, some gateway firmware) is
// not marked down while it carries traffic: only a round with neither a
// response to its traffic nor a reply to its probe fails. A target that
// ignores OPTIONS and carries less than about one call per timeout can
// still fail rounds: set never_probe for it. Responses that came before a
// round started do not count for it, so the detection bound below holds
// for a target that dies in the middle of its traffic. The cost on the
// fast path is a lookup of the source address in a small table, an atomic
// load, and one store per target and round (ObserveResponse).
//
// Probes are spread over the interval: the k-th of a pool's n targets is
// first probed k/n of an interval after Start, then every interval, so a
// pool of many targets sends a steady trickle rather than a burst.
//
// # Detection bound
//
// A target that stops answering is marked down within
//
//	interval x failures + timeout
//
// (Probe.DetectionBound; 5s x 3 + 2s = 17s with the defaults): the first
// round started after it died starts within one interval, the failures-th
// one failures-1 intervals later, and it fails timeout after it started
// (neither its traffic nor its probe answered). A
// probe answered with a code that is not accepted fails at once, so a
// target answering 503 goes down sooner. A down target that answers again
// is marked up within interval x successes + timeout
// (Probe.RecoveryBound). The bounds hold for the checker's
// decision; the balancer's new table is published synchronously with it.
//
// # Round-trip time
//
// Every probe answered without retransmission gives a round-trip time
// sample (Karn's rule: a retransmitted probe's answer is ambiguous); the
// last one and an exponentially weighted moving average (new samples
// weigh 1/8, as TCP's smoothed RTT) are kept per target (Status.RTT,
// Status.RTTAvg).
//
// # Passive check
//
// With passive_503 set, Checker.ObserveResponse, which the fast path calls
// for every response it receives (it costs one comparison for anything but
// a 503, and is lock-free and allocation-free for a 503), counts the 503
// responses of each target in a sliding window; count of them within window
// mark the target down (reason "passive 503 burst") until successes
// consecutive probes bring it back.
//
// # All down
//
// Config.AllDown goes to a sink that takes it (*balancer.Pool.SetAllDown):
// by default, when every upstream that is not disabled is down, the pool
// forwards to all of them anyway (panic mode, see package balancer). Their
// responses then count as evidence of life, so an upstream wrongly
// believed down comes back by itself. The checker logs at error level when
// every upstream goes down (and whether the pool forwards or answers 503),
// and logs when that ends.
//
// # Admin states
//
// Each target also has an admin state (balancer.Enabled, Draining,
// Disabled), changed at run time with Checker.SetAdmin (the admin package
// serves it over HTTP). Admin state and health are independent: probes go
// on whatever the admin state and never change it, an admin change keeps
// the health, and a reload (Checker.Update) keeps both for the targets that
// remain. A draining target gets no new dialog but still gets the
// in-dialog requests of its dialogs; the balancer implements that.
//
// Every change of either state goes to a StateSink (*balancer.Pool
// satisfies it, publishing a new lookup table: nothing is locked on the
// fast path) and is logged through log/slog with the target, the old and
// new state and the reason: probe timeout, probe reply code, traffic (its responses), probe send
// error, passive 503 burst, admin. Health changes are handed to the sink
// by a goroutine of their own, several at once in one Pool.Batch when they
// come together, so a table rebuild (tens of milliseconds for a hashed
// pool) never holds up a probe; the detection bound above is met by the
// decision, and the new table follows within a rebuild time.
package health
