package fastpath

import (
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/parser"
)

// DropReason says why a message was not forwarded. A request refused with a
// local reply (483, 482, 513, ...) is counted both as a drop with its reason
// and as a local reply with its code.
type DropReason uint8

// The drop reasons.
const (
	DropNone              DropReason = iota // not dropped
	DropParseError                          // the parser refused the message
	DropForgedResponse                      // response whose top Via is not provably Viaduct's
	DropTooBig                              // larger than MaxMessageSize
	DropLoop                                // request that looped back (482)
	DropTooManyHops                         // Max-Forwards reached 0 (483)
	DropNoUpstream                          // no upstream available, or unroutable request target (503)
	DropUnroutable                          // response whose next Via gives no usable address
	DropSendError                           // the kernel refused to send it
	DropNextHopPending                      // request whose next hop's host name is being resolved (its retransmission will go)
	DropKeepalive                           // a datagram of nothing but CR LF (a keepalive, not an error)
	DropUnsafeDestination                   // next hop or response destination is unspecified, multicast or broadcast (requests get 403)
	DropCallRate                            // a new call over its upstream's call-rate cap (503 with Retry-After, see CallAdmitter)
	DropFlowGone                            // for a connection that is closed: a response not reopened (Config.DropOrphanResponses), a request answered 430, a held message whose connection closed before its batch ended
	NumDropReasons                          // number of drop reasons
)

var dropNames = [NumDropReasons]string{
	DropNone: "none", DropParseError: "parse_error", DropForgedResponse: "forged_response",
	DropTooBig: "too_big", DropLoop: "loop", DropTooManyHops: "too_many_hops",
	DropNoUpstream: "no_upstream", DropUnroutable: "unroutable_response", DropSendError: "send_error",
	DropNextHopPending: "next_hop_pending", DropKeepalive: "keepalive", DropUnsafeDestination: "unsafe_destination",
	DropCallRate: "call_rate", DropFlowGone: "flow_gone",
}

// String returns the reason as a snake_case label, e.g. "forged_response".
func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// LocalCode indexes Stats.LocalReplies: the status codes Viaduct answers with
// on its own.
type LocalCode uint8

// The local reply codes.
const (
	Local200      LocalCode = iota // OPTIONS addressed to Viaduct (keepalive)
	Local400                       // malformed request
	Local403                       // next hop is an address Viaduct never sends to
	Local430                       // the flow (connection) a request is to take is gone (RFC 5626)
	Local482                       // loop detected
	Local483                       // too many hops
	Local503                       // no upstream / unroutable target
	Local505                       // unsupported SIP version
	Local513                       // message too large
	NumLocalCodes                  // number of local reply codes
)

var localStatus = [NumLocalCodes]int{200, 400, 403, 430, 482, 483, 503, 505, 513}

// Status returns the SIP status code, e.g. 483.
func (c LocalCode) Status() int {
	if c < NumLocalCodes {
		return localStatus[c]
	}
	return 0
}

// NumMethods is the size of Stats.RequestsByMethod: indexed by parser.Method,
// with index 0 (parser.MethodOther) for every method the parser does not name.
const NumMethods = 16

// Stats is a snapshot of a worker's counters, or their sum over workers. All
// counters only grow (Prometheus counters), except on overflow.
type Stats struct {
	// RequestsByMethod counts requests received (parsed), by
	// parser.Method; parser.Method(i).String() names index i ("" = other).
	RequestsByMethod [NumMethods]uint64
	// RequestsForwarded counts requests sent on to a next hop.
	RequestsForwarded uint64
	// ResponsesReceived counts parsed responses received.
	ResponsesReceived uint64
	// ResponsesForwarded counts responses relayed, by status class:
	// index 1 for 1xx ... 6 for 6xx (index 0 unused).
	ResponsesForwarded [7]uint64
	// LocalResponses counts responses addressed to Viaduct itself, handed
	// to the local response handler.
	LocalResponses uint64
	// LocalReplies counts responses Viaduct generated, by LocalCode.
	LocalReplies [NumLocalCodes]uint64
	// Drops counts messages not forwarded, by DropReason.
	Drops [NumDropReasons]uint64
	// DatagramsIn/Out and BytesIn/Out count UDP payloads received and
	// sent (forwarded and local replies).
	DatagramsIn, DatagramsOut, BytesIn, BytesOut uint64
	// KernelDrops counts datagrams the kernel dropped on Viaduct's
	// sockets (receive buffer overflow), as reported by the socket layer.
	KernelDrops uint64
	// KeyFallbacks counts balanced requests that lacked the key Config.Keys
	// names for their method (no such header, a URI without a user part or
	// that does not parse, ...) and were hashed on their Call-ID instead.
	KeyFallbacks uint64
	// DialogRouted counts in-dialog requests sent to the upstream that
	// their next hop (next Route, else Request-URI) names, instead of the
	// one balancing would pick (see Config.Upstreams).
	DialogRouted uint64
	// FlowsReopened counts responses whose client's TCP or TLS connection
	// was gone and that were sent to their Via's address over a new
	// connection instead (see Config.DropOrphanResponses).
	FlowsReopened uint64
	// LargeToTCP counts requests for a UDP next hop sent over TCP because
	// they were larger than Config.UDPMTU; LargeOverUDP those sent over
	// UDP anyway, for want of a TCP listener of their family.
	LargeToTCP, LargeOverUDP uint64
	// DropLogsSuppressed counts the debug log lines about dropped and
	// refused messages that the rate limit suppressed (see DropLogRate);
	// always 0 when the logger is not enabled at debug level.
	DropLogsSuppressed uint64
}

// Add adds every counter of o to s.
func (s *Stats) Add(o *Stats) {
	for i := range s.RequestsByMethod {
		s.RequestsByMethod[i] += o.RequestsByMethod[i]
	}
	s.RequestsForwarded += o.RequestsForwarded
	s.ResponsesReceived += o.ResponsesReceived
	for i := range s.ResponsesForwarded {
		s.ResponsesForwarded[i] += o.ResponsesForwarded[i]
	}
	s.LocalResponses += o.LocalResponses
	for i := range s.LocalReplies {
		s.LocalReplies[i] += o.LocalReplies[i]
	}
	for i := range s.Drops {
		s.Drops[i] += o.Drops[i]
	}
	s.DatagramsIn += o.DatagramsIn
	s.DatagramsOut += o.DatagramsOut
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.KernelDrops += o.KernelDrops
	s.KeyFallbacks += o.KeyFallbacks
	s.DialogRouted += o.DialogRouted
	s.FlowsReopened += o.FlowsReopened
	s.LargeToTCP += o.LargeToTCP
	s.LargeOverUDP += o.LargeOverUDP
	s.DropLogsSuppressed += o.DropLogsSuppressed
}

// counter is a counter with a single writer (its worker goroutine) and any
// number of concurrent readers. inc is a plain load and store (no locked
// instruction on amd64/arm64), which is correct because only the owner
// writes; readers see a value that is at most a few increments old.
type counter struct{ v atomic.Uint64 }

func (c *counter) inc()         { c.v.Store(c.v.Load() + 1) }
func (c *counter) add(n uint64) { c.v.Store(c.v.Load() + n) }
func (c *counter) set(n uint64) { c.v.Store(n) }
func (c *counter) load() uint64 { return c.v.Load() }

// counters are one worker's counters. The padding keeps two workers'
// counters off each other's cache lines (they are allocated separately, but
// the allocator may place them next to each other).
type counters struct {
	_            [64]byte
	byMethod     [NumMethods]counter
	reqFwd       counter
	respIn       counter
	respFwd      [7]counter
	localResp    counter
	local        [NumLocalCodes]counter
	drops        [NumDropReasons]counter
	dgIn         counter
	dgOut        counter
	bytesIn      counter
	bytesOut     counter
	kernelDrop   counter
	keyFallback  counter
	dialogRouted counter
	flowReopened counter
	largeToTCP   counter
	largeOverUDP counter
	// dropLogSuppressed is written by the worker's dropLog.
	dropLogSuppressed counter
	_                 [64]byte
}

func (c *counters) method(m parser.Method) {
	if int(m) >= NumMethods {
		m = parser.MethodOther
	}
	c.byMethod[m].inc()
}

func (c *counters) respClass(status int) {
	k := status / 100
	if k < 1 || k > 6 {
		k = 0
	}
	c.respFwd[k].inc()
}

// snapshot copies the counters into s (overwriting it).
func (c *counters) snapshot(s *Stats) {
	for i := range s.RequestsByMethod {
		s.RequestsByMethod[i] = c.byMethod[i].load()
	}
	s.RequestsForwarded = c.reqFwd.load()
	s.ResponsesReceived = c.respIn.load()
	for i := range s.ResponsesForwarded {
		s.ResponsesForwarded[i] = c.respFwd[i].load()
	}
	s.LocalResponses = c.localResp.load()
	for i := range s.LocalReplies {
		s.LocalReplies[i] = c.local[i].load()
	}
	for i := range s.Drops {
		s.Drops[i] = c.drops[i].load()
	}
	s.DatagramsIn = c.dgIn.load()
	s.DatagramsOut = c.dgOut.load()
	s.BytesIn = c.bytesIn.load()
	s.BytesOut = c.bytesOut.load()
	s.KernelDrops = c.kernelDrop.load()
	s.KeyFallbacks = c.keyFallback.load()
	s.DialogRouted = c.dialogRouted.load()
	s.FlowsReopened = c.flowReopened.load()
	s.LargeToTCP = c.largeToTCP.load()
	s.LargeOverUDP = c.largeOverUDP.load()
	s.DropLogsSuppressed = c.dropLogSuppressed.load()
}

// Stats returns the sum of every worker's counters, with the kernel drops of
// every socket. It is safe to call concurrently with the workers.
func (e *Engine) Stats() Stats {
	var sum Stats
	for _, s := range e.WorkerStats(nil) {
		sum.Add(&s)
	}
	return sum
}

// WorkerStats appends one Stats per transport worker to dst, in listen,
// then worker order (the last of each listener reads its origin socket,
// where the replies to health probes arrive), and returns it.
func (e *Engine) WorkerStats(dst []Stats) []Stats {
	for _, w := range e.workerList() {
		dst = append(dst, w.Stats())
	}
	return dst
}
