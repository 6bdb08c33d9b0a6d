// Package fastpath is Viaduct's stateless SIP forwarding core (RFC 3261
// 16.11, with the request processing of 16.3-16.6, the response rules of
// 18.2.2, RFC 3581 and RFC 2543 compatibility).
//
// An Engine holds the configuration, the balancer pool and the workers. A
// Worker's Handle is the whole per-message path without the socket: it takes
// one datagram and its source address and writes what to send, and where,
// into an Output; it allocates nothing.
//
//	e, err := fastpath.New(cfg, logger)
//	w := e.NewWorker(0)
//	out := &fastpath.Output{Buf: make([]byte, 0, e.OutputBufferSize())}
//	switch w.Handle(datagram, from, out) {
//	case fastpath.ActionForward, fastpath.ActionReply:
//		// send out.Buf to out.To from listen address out.Listen
//	}
//
// Engine.Start runs one such worker per socket, which reads and writes in
// batches (package transport/udp); messages of one flow are handled and sent
// in the order they came.
//
// A request goes through phases, one file each: checkRequest and
// answerOrStop (request.go: what Viaduct refuses, OPTIONS to itself,
// Max-Forwards, loops in loop.go), preprocessRoutes (route.go, RFC 3261
// 16.4), chooseDestination (destination.go: an upstream's next hop, the
// dialog's upstream, or balancing in picker.go), transactionKey (txkey.go)
// and forward (rewrite.go: Via, Record-Route, Path, received and rport,
// Max-Forwards, the branch's MAC in branch.go). A response is relayed only
// when its top Via carries Viaduct's sent-by and a branch whose MAC matches
// (response.go). Requests Viaduct refuses get a stateless reply (reply.go).
//
// Health checks and admin actions change targets through the pool
// (Engine.Pool); Engine.Update replaces targets and keys while the workers
// run. Hooks connect the rooms that the core does not import: a
// LocalResponseHandler receives the replies to requests Viaduct sent itself
// (health probes, through Engine.AppendVia and Engine.SendTo), a
// ResponseObserver sees every relayed response, and a NextHopResolver
// resolves the host names of upstreams' next hops.
//
// The README's "Upstreams and balancing", "What Viaduct refuses" and
// "Design" sections give the rules and the reasons behind them.
package fastpath
