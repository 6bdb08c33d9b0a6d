// Package load is Viaduct's SIP load generator (UAC) and responder (UAS),
// the engine behind the viaduct-load command.
//
// # UAC
//
// A UAC drives one scenario (ScenarioCall: INVITE, 100, 180, 200, ACK,
// hold, BYE, 200; or a single REGISTER, OPTIONS or MESSAGE transaction) at
// a target:
//
//	u, err := load.NewUAC(load.UACConfig{Target: netip.MustParseAddrPort("127.0.0.1:5060")})
//	...
//	res, err := u.Run(ctx, load.RunOptions{Rate: 5000, Duration: 30 * time.Second})
//	rep := res.Report(0.001)
//	rep.WriteTable(os.Stdout)
//
// The UAC opens Sources local sockets (one source address and port each)
// and gives each to its own goroutine, which owns everything its calls
// need: a preallocated call table, a Pacer for its share of the rate, a
// timer wheel for retransmissions (RFC 3261 Timers A and E), hold times and
// timeouts (Timers B and F), and batched recvmmsg/sendmmsg I/O through
// transport/udp. A call's slot number and generation are encoded in its
// Call-ID ("<slot>-<gen>-<source>-<run>@vl"), so a response finds its call
// with no map lookup, and a late response to an earlier use of the slot is
// recognised. Requests are built into per-source buffers and responses are
// read with the parser package, so the message path allocates nothing.
//
// Counters and two latency histograms (request to first response, INVITE to
// 200; see package hist) are written by the owning goroutine only and read
// by anyone with Counts, which is how the live progress line is made.
// FindMax ramps the rate to find the highest one sustained with failures
// under a threshold.
//
// # UAS
//
// A UAS answers every request statelessly from the request's own headers
// (Via, From, To, Call-ID and CSeq copied, a To tag derived from Call-ID
// and From added): INVITE with 100, 180 and 200 with SDP, ACK silently, BYE
// and OPTIONS with 200, REGISTER with 200 echoing Contact and Expires,
// CANCEL with 200 (and 487 for the INVITE when it is still waiting for
// UASConfig.Delay), unknown methods with 501. A share of requests can be
// failed with a chosen code or left unanswered, decided by a hash of
// Call-ID and CSeq so that retransmissions are treated alike. Workers each
// own a socket of one SO_REUSEPORT group; a classic BPF program spreads
// datagrams over them at random (UASConfig.Spread), so a few heavy sources
// do not land on one worker.
//
// # TCP and TLS
//
// With UACConfig.Transport and UASConfig.Transport set to transport.TCP or
// transport.TLS, both speak SIP over streams, each message framed by its
// Content-Length (RFC 3261 18.3, parser.FrameStream) and CR LF keepalives
// between messages skipped. A UAC source owns its connections: one shared
// by its calls (ConnShared, SIPp's -t t1), reopened when it drops, or one
// per call (ConnPerCall, -t tn), closed after the call's last transaction.
// A reader goroutine per connection frames what arrives into the source's
// inbox, which the source drains where it would read datagrams, so the
// call state keeps its single owner. Requests are not retransmitted; a
// call whose connection drops fails as "connection lost". The UAS accepts
// connections and answers each request on the one it came on, a goroutine
// per connection, and closes a connection whose bytes cannot be framed.
//
// HoldConns opens many idle connections and holds them, for measuring what
// idle connections cost a server.
package load
