// Package balancer selects the upstream target of a SIP request: weighted
// consistent hashing (or weighted round robin) over a pool of targets with
// priority groups, health and admin states.
//
// The package knows no sockets and no SIP parser. The fast path extracts the
// key that a Policy names for the request's method (Call-ID by default, the
// To AOR for REGISTER), hashes it with HashKey, loads the pool's current
// Table and calls Pick:
//
//	rule := policy.For(method)              // no allocation
//	key := extract(msg, rule)               // fast path; Call-ID if missing
//	tab := pool.Table()                     // one atomic load
//	t, ok := tab.Pick(balancer.HashKey(key), inDialog)
//	if !ok { /* 503: no target selectable */ }
//	send(t.Addr, t.Transport)
//
// # Reads and writes
//
// A Table is immutable. Pool keeps the current one in an atomic.Pointer;
// readers never lock. Health checks (SetHealth), the admin API (SetAdmin,
// Batch) and reloads (Update) serialize on a mutex, build a new Table
// (reusing what they can of the old one) and swap it in. A table that a
// reader still holds keeps working: it is garbage once nobody holds it.
//
// # Selection sets and priority groups
//
// Each table serves two kinds of request. New dialogs (Pick with inDialog
// false) go to targets that are up and enabled. In-dialog requests (inDialog
// true) go to targets that are up and enabled or draining, so that the
// dialogs a draining target already holds keep reaching it. Each kind uses
// the lowest-numbered priority group that has a selectable target of that
// kind; a higher group takes traffic only when every target of the lower
// ones is out. The table precomputes one lookup per kind and shares it when
// no draining target makes them differ.
//
// Being stateless, the balancer cannot tell a dialog established before a
// drain from one established during it: an in-dialog request is routed as
// if the draining targets were still enabled. Dialogs created during the
// drain whose key hashes to the draining target therefore send their
// in-dialog requests to the draining target, not to the target that got
// their INVITE, unless the caller routes them by their Route set or
// Request-URI: Table.ByAddr finds the target a next hop names, and
// Target.Selectable(true) tells whether it still takes in-dialog requests
// (the fast path does this for every in-dialog request).
// CANCEL is not an in-dialog request here: it must follow its INVITE, so
// pick it with inDialog false.
//
// # All down: panic mode
//
// When every target that is not disabled is down (Table.AllDown), health
// checks are more likely wrong than every server dead at once: an upstream
// may answer calls but not the probes, or the probes' path may be cut
// while the traffic's is not. With the default policy AllDownForward the
// table then ignores health (Table.Panic): every enabled target of every
// priority group takes new dialogs, by weight, and every enabled or
// draining one in-dialog requests, so the calls that can succeed do, and
// the responses they bring back can prove an upstream alive again (package
// health counts them as evidence of life). Admin states still hold: a
// disabled target is never selected and a draining one takes no new
// dialog, as outside panic mode (a pool drained by its operator answers
// 503 to new dialogs whatever the health of its targets). Priority groups
// are merged because nothing tells which group is alive, and the group
// that is alive must get traffic to show it. Panic mode is decided when a
// table is built, so Pick costs the same in it; it ends with the first
// table in which a target is up. AllDownReject keeps the strict
// behaviour: nothing is selected and requests get 503.
//
// # The consistent hashing scheme
//
// Requirements: (1) when a target leaves, only its keys move, and they
// spread over the survivors in proportion to weight; when it returns they
// all go back; (2) adding a target moves only about weight/total of the
// keys; (3) the mapping is a pure function of the configuration (target IDs
// and weights) and the current states, so independent instances agree
// (active/active without shared state) and a table reached through any
// history of changes equals one built from scratch; (4) Pick costs a few
// nanoseconds and no allocation at 1000 targets; (5) ±5% spread at 100
// targets.
//
// The scheme is weighted rendezvous (highest-random-weight) hashing,
// evaluated per bucket into a lookup table. The top 20 bits of the key hash
// select one of NumBuckets = 2^20 buckets (a constant: it never depends on
// the number of targets). Each unit of weight of a target is a replica
// with its own keyed pseudo-random permutation of the buckets (a 4-round
// Feistel network over the 20-bit bucket number, keyed by xxhash(ID) and
// the replica number); a bucket belongs to the replica that ranks it first,
// ties broken by a second hash. A target of weight w thus draws w uniform
// ranks and keeps the best, and wins each bucket with probability exactly
// w/W, using integer arithmetic only (no floating point whose rounding
// could differ between CPUs). Because a bucket's owner is the minimum of a
// total order over the set's replicas, removing a target reassigns only the
// buckets it owned, each to its runner-up (spread by weight), and adding a
// target takes from each other target only the buckets where it ranks
// first: the requirements hold exactly, not approximately, and
// TestRemovalMovesOnlyItsKeys checks every one of the 2^20 buckets.
//
// Building a table by evaluating every replica for every bucket costs
// NumBuckets*W permutation steps (10^9 at 1000 targets). The permutations
// make a faster exact build possible: phase 1 walks ranks level by level
// (every replica's 1st-choice bucket, then every 2nd choice, ...), and the
// first level that reaches a bucket decides it; when the buckets left
// undecided are few, phase 2 evaluates them directly. That is about
// NumBuckets*(1+ln W) steps. A rebuild after a state change derives the
// new bucket array from the previous one when the member sets differ by a
// little: buckets of a removed target are re-evaluated against the
// remaining replicas; an added target can only take buckets it ranks at
// least as well as their current owner does, and every owner ranks its
// buckets within a bound the table keeps, so derive enumerates just the
// newcomer's best-ranked buckets. Derived and full builds are checked to be
// equal, bucket for bucket, along random walks of state changes.
//
// Build time grows with the total weight W (one replica per unit of
// weight): configure the smallest integers that express the ratios (1..100
// is plenty); weights are not reduced by their gcd, because that would
// reshuffle every key whenever one weight changed the gcd. The README's
// "Design" section has the measured costs, the spread and the alternatives
// that were measured before this scheme was chosen.
//
// # Round robin
//
// ModeRoundRobin pools build no hash lookups. PickRR walks a precomputed
// smooth weighted cycle (stride scheduling; weights reduced by their gcd)
// with a cursor that the caller owns, one per worker, so the hot path
// shares no counter between cores. Pick on a round-robin table maps the key
// hash onto the same cycle (weighted, not consistent).
//
// # Compatibility
//
// The mapping from (key hash, target IDs, weights) to target is part of the
// wire behaviour of an active/active pair: TestGoldenMapping pins it. A
// change to NumBuckets, the permutation or the tie-break moves calls between
// versions during a rolling upgrade.
package balancer
