// Package udp is Viaduct's UDP transport: Server, the transport.Server the
// proxy's core is bound to (udp.Bind), and below it the socket layer it
// shares with the load generator (bench/load): sockets read and written in
// batches, with no allocation per datagram.
//
// What it offers:
//
//   - Server (NewServer, Bind): per listen address a ListenGroup of one
//     socket per worker plus an origin socket on an ephemeral port of its
//     own (health probes leave from it, so their replies come back to
//     this process even when other processes share the listen address);
//     each worker reads a batch, hands every datagram to its
//     transport.Handler, and writes the outputs in one WriteBatch per
//     listener, in the order they came. ServerConfig is the transport's
//     configuration block.
//   - Listen and ListenAddrPort open one socket (Config sets the buffer
//     sizes, the batch size, SO_REUSEPORT and ParkAfter).
//   - ListenGroup opens a SO_REUSEPORT group of n sockets on one address,
//     one per worker, and makes sure no other process shares the address
//     unless Config.ShareAddress says so. The kernel spreads datagrams over
//     the group by their 4-tuple, so one source always reaches the same
//     socket (see "One busy peer lands on one worker" in the README's
//     Design section).
//   - Batch, read with Conn.ReadBatch (recvmmsg(2)) and written with
//     Conn.WriteBatch (sendmmsg(2), or sendto(2) for one datagram); a
//     datagram the kernel refuses is marked in its Message and skipped,
//     never holding up the rest.
//   - Conn.ReadLoop, a reader that stays inside one netpoller read and
//     parks straight after a batch that was not full; with
//     Config.ParkAfter it first waits for the next datagram inside a
//     blocking recvmmsg (park_after in the README's Performance section
//     has the costs and figures).
//   - Counters: Conn.Drops (the kernel's drop counter, from SO_RXQ_OVFL and
//     SO_MEMINFO), Conn.Truncated and Conn.SendFailed.
//
// A worker owns one Batch for reading and one for writing:
//
//	g, err := udp.ListenGroup(ctx, netip.MustParseAddrPort("127.0.0.1:5060"), workers, udp.Config{RecvBuffer: 8 << 20})
//	c := g[i] // worker i's socket
//	in := c.NewBatch(65535) // receive slots
//	out := c.NewBatch(0)    // Buf points at the worker's output buffers
//	err = c.ReadLoop(in, func(n int) bool {
//		k := 0
//		for _, m := range in.Msgs[:n] {
//			out.Msgs[k].SetData(rewrite(m.Buf), nextHop)
//			k++
//		}
//		c.WriteBatch(out, k) // per-message failures are in out.Msgs[i].Err
//		return true          // false ends ReadLoop with a nil error
//	})
//	// err wraps net.ErrClosed after c.Close
//
// ReadBatch, ReadLoop and WriteBatch allocate nothing, and an idle reader
// is parked in the Go netpoller: it holds no thread and spends no CPU.
//
// # Other systems
//
// The batched implementation is Linux's. Elsewhere (and on Linux with
// -tags portableudp, which tests it) the same API is built on the standard
// library: a read returns one datagram, a write sends one system call per
// message, Drops is 0, ParkAfter is ignored, ReusePort and ShareAddress
// are refused with errors.ErrUnsupported, and ListenGroup returns n Conns
// sharing one socket. It is meant for building and developing off Linux,
// not for production traffic.
package udp
