// Package resolve turns Viaduct's configured upstreams into balancer
// targets: IP addresses as they are, host names through their A and AAAA
// records, SRV names (RFC 2782, RFC 3263 4.2) through their records and the
// addresses of the records' target hosts. It resolves with the standard
// library's net.Resolver on its own goroutines, never on the fast path,
// and refreshes the answers periodically.
//
// # Upstream syntax
//
// ParseSource reads an upstream as written in the config:
//
//	10.0.0.1:5060 or [2001:db8::1]:5060  one target
//	10.0.0.1                              one target on port 5060
//	sip.example.com:5080                  every A/AAAA address, port 5080
//	sip.example.com                       every A/AAAA address, port 5060
//	_sip._udp.example.com                 every SRV record's target's addresses
//
// Names are looked up as written, so they resolve as they do for the
// system's resolver: "localhost" or a name in /etc/hosts is found there
// (the standard library's resolver follows nsswitch.conf's hosts order),
// other names in DNS with resolv.conf's search rules. A trailing dot
// ("sip.example.com.") makes a name absolute: it is asked of DNS as such,
// with no search domain, and the hosts file does not match it. The
// targets of SRV records are absolute names from DNS and are asked as
// such.
//
// # Targets from DNS
//
// A host name gives one target per address, each with the source's weight
// and priority. An SRV name gives, for each record, one target per address
// of the record's target host, on the record's port; the record's priority
// (plus the source's configured priority) becomes the balancer priority, so
// a lower-priority record's servers take traffic only when every server of
// the preferred priority is down or disabled, as RFC 2782 prescribes; the
// record's weight becomes the balancer weight as SRVWeights describes
// (weight 0 maps to about 1% of its group; ratios are kept), split evenly
// over the target host's addresses. A record whose target is "." (service
// not available) or whose port is 0 gives no target.
//
// Every target found in DNS gets the default ID, transport:ip:port (e.g.
// "udp:10.0.0.7:5060"). The ID is what the balancer hashes and what health
// and admin states are kept by, so a server keeps its state and its calls
// across refreshes and reloads, whichever name led to it, and two Viaduct
// instances resolving the same names map calls alike. An address (or ID)
// found twice (two names, or a name and a literal) is used once, from the
// first upstream in config order.
//
// # Refresh and failures
//
// Watcher.Run resolves every name again each Config.Interval (the standard
// resolver does not expose TTLs, so the interval is configured; default 30s)
// and applies the result only when it differs from the one applied. A
// lookup that fails (timeout, SERVFAIL, NXDOMAIN, no usable address) keeps
// the last good answer of that name, and the failure is logged; a name that
// has never resolved gives no target and is retried every Config.Retry.
// The apply function (the caller's: balancer.Pool.Update, then
// health.Checker.Update, then the fast path's upstream set) runs under the
// Watcher's lock, so a periodic refresh and a config reload (Watcher.Set)
// never interleave.
package resolve
