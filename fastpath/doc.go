// Package fastpath is Viaduct's stateless SIP forwarding core (RFC 3261
// 16.11, with the request processing of 16.3-16.6, the response rules of
// 18.2.2, RFC 3581 and RFC 2543 compatibility).
//
// An Engine holds the configuration, the balancer pool and the workers. A
// Worker's Handle is the whole per-message path without I/O: it takes one
// message and where it came from (address, transport, listener, connection)
// and writes what to send, and where, into an Output; it allocates nothing.
// The core knows no socket.
//
//	e, err := fastpath.New(cfg, logger)
//	w := e.NewWorker()
//	out := &fastpath.Output{Buf: make([]byte, 0, e.OutputBufferSize())}
//	src := transport.Peer{Addr: from, Kind: transport.UDP}
//	switch w.Handle(msg, src, out) {
//	case fastpath.ActionForward, fastpath.ActionReply:
//		// send out.Buf to out.Peer(): address, transport, listener, flow
//	}
//
// Engine.Start binds the listen addresses through Config.Transport (a
// transport.Binder such as udp.Bind) and gives each transport worker a
// Worker of its own, behind the transport.Handler interface (serve.go); a
// transport hands over the messages of one flow, and sends what they
// produce, in the order they came.
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
