package load

import (
	"sync/atomic"

	"github.com/viaduct-sip/viaduct/bench/load/hist"
)

// counter indexes the per-source UAC counters.
type counter int

const (
	cStarted     counter = iota // calls (or requests) started
	cCompleted                  // calls that ended successfully
	cFailed                     // calls that failed, for any reason
	cTimeout                    // no final response to the initial request in time
	cByeTimeout                 // no final response to the BYE in time
	cRejected                   // 3xx-6xx final response to the initial request
	cByeRejected                // non-2xx final response to the BYE
	cUnfinished                 // still in progress when the run ended
	cSendErr                    // datagrams the kernel refused
	cRetrans                    // retransmissions sent
	cSent                       // datagrams sent (including retransmissions)
	cRecv                       // datagrams received
	cParseErr                   // received datagrams that are not valid SIP
	cStray                      // responses whose Call-ID is not one of ours
	cLate                       // responses for a call that has already ended
	cDup                        // retransmitted responses (e.g. 200 to INVITE again)
	cUnexpected                 // requests, or responses not fitting the call's state
	cReadCalls                  // recvmmsg calls that returned datagrams
	cWriteCalls                 // sendmmsg batches (or stream writes)
	cConnLost                   // calls failed because their connection closed under them
	cConnectFail                // calls failed because their connection could not be opened
	cConnOpened                 // connections opened (tcp, tls)
	cConnFailed                 // connections that could not be opened
	cReconnects                 // shared connections reopened after dropping
	cConnDropped                // connections that ended without the UAC closing them
	cResumed                    // TLS connections that resumed a session
	numCounters
)

// maxCode bounds the status codes counted individually.
const maxCode = 700

// sourceStats are the counters and histograms of one UAC source. The
// source's goroutine is the only writer; readers use atomic loads, so a
// snapshot can be taken at any time without stopping the source.
type sourceStats struct {
	c        [numCounters]atomic.Uint64
	codes    [maxCode]atomic.Uint64 // final codes failing the initial request
	byeCodes [maxCode]atomic.Uint64 // final codes failing the BYE
	resp     hist.Histogram         // request to first response, every transaction
	setup    hist.Histogram         // INVITE to 200
	_        [64]byte               // keep the next source's counters off this cache line
}

// inc adds one to counter k (single writer: no read-modify-write atomic).
func (s *sourceStats) inc(k counter) { s.c[k].Store(s.c[k].Load() + 1) }

// add adds n to counter k.
func (s *sourceStats) add(k counter, n uint64) { s.c[k].Store(s.c[k].Load() + n) }

func incCode(a *[maxCode]atomic.Uint64, code int) {
	if code < 0 || code >= maxCode {
		code = 0
	}
	a[code].Store(a[code].Load() + 1)
}

// Counts is a snapshot of UAC counters, summed over sources.
type Counts struct {
	Started, Completed, Failed           uint64
	Timeouts, ByeTimeouts, Rejected      uint64
	ByeRejected, Unfinished, SendErrors  uint64
	Retransmissions, Sent, Received      uint64
	ParseErrors, Stray, Late, Duplicates uint64
	Unexpected                           uint64
	// ReadCalls and WriteCalls count the batched system calls (recvmmsg
	// returning data, sendmmsg batches): Received/ReadCalls and
	// Sent/WriteCalls are the average batch sizes.
	ReadCalls, WriteCalls uint64
	// ConnLost and ConnectFailed are calls failed because their
	// connection closed under them or could not be opened (tcp, tls).
	ConnLost, ConnectFailed uint64
	// ConnsOpened, ConnsFailed, ConnsDropped and Reconnects count
	// connections opened, connection attempts that failed, connections
	// that ended without the UAC closing them (the peer closed, a read or
	// write failed), and shared connections reopened after they dropped
	// (tcp, tls).
	ConnsOpened, ConnsFailed, ConnsDropped, Reconnects uint64
	// Resumed counts the TLS connections that resumed an earlier session
	// (TLS.ClientSessionCache set) instead of a full handshake.
	Resumed uint64
	// KernelDrops counts datagrams the kernel dropped on the sources'
	// sockets (receive buffer full): responses lost before we saw them.
	KernelDrops     uint64
	Codes, ByeCodes [maxCode]uint64
	Response, Setup hist.Snapshot
}

// Outstanding returns the calls in progress.
func (c *Counts) Outstanding() uint64 {
	done := c.Completed + c.Failed
	if done > c.Started {
		return 0
	}
	return c.Started - done
}

func (c *Counts) fields() [numCounters]*uint64 {
	return [numCounters]*uint64{
		cStarted: &c.Started, cCompleted: &c.Completed, cFailed: &c.Failed,
		cTimeout: &c.Timeouts, cByeTimeout: &c.ByeTimeouts, cRejected: &c.Rejected,
		cByeRejected: &c.ByeRejected, cUnfinished: &c.Unfinished, cSendErr: &c.SendErrors,
		cRetrans: &c.Retransmissions, cSent: &c.Sent, cRecv: &c.Received,
		cParseErr: &c.ParseErrors, cStray: &c.Stray, cLate: &c.Late, cDup: &c.Duplicates,
		cUnexpected: &c.Unexpected, cReadCalls: &c.ReadCalls, cWriteCalls: &c.WriteCalls,
		cConnLost: &c.ConnLost, cConnectFail: &c.ConnectFailed, cConnOpened: &c.ConnsOpened,
		cConnFailed: &c.ConnsFailed, cReconnects: &c.Reconnects, cConnDropped: &c.ConnsDropped,
		cResumed: &c.Resumed,
	}
}

// addSource adds the current values of s to c.
func (c *Counts) addSource(s *sourceStats) {
	f := c.fields()
	for k := range f {
		*f[k] += s.c[k].Load()
	}
	for i := range s.codes {
		c.Codes[i] += s.codes[i].Load()
		c.ByeCodes[i] += s.byeCodes[i].Load()
	}
	s.resp.Merge(&c.Response)
	s.setup.Merge(&c.Setup)
}

// Sub sets c to cur - prev, the activity between two snapshots.
func (c *Counts) Sub(cur, prev *Counts) {
	f, fc, fp := c.fields(), cur.fields(), prev.fields()
	for k := range f {
		*f[k] = sub0(*fc[k], *fp[k])
	}
	for i := range c.Codes {
		c.Codes[i] = sub0(cur.Codes[i], prev.Codes[i])
		c.ByeCodes[i] = sub0(cur.ByeCodes[i], prev.ByeCodes[i])
	}
	c.KernelDrops = sub0(cur.KernelDrops, prev.KernelDrops)
	c.Response.Sub(&cur.Response, &prev.Response)
	c.Setup.Sub(&cur.Setup, &prev.Setup)
}

func sub0(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
