// Package udp is Viaduct's batched UDP socket layer: SO_REUSEPORT sockets
// read and written with recvmmsg(2) and sendmmsg(2), shared by the proxy's
// workers (fastpath) and the load generator (bench). It is Linux only.
//
// # Usage
//
// Each worker opens its own socket on the shared address and owns one
// Batch for reading and one for writing:
//
//	c, err := udp.Listen(ctx, "127.0.0.1:5060", udp.Config{ReusePort: true, RecvBuffer: 8 << 20})
//	in := c.NewBatch(65535)  // receive slots
//	out := c.NewBatch(0)     // Buf points at the worker's output buffers
//	for {
//		n, err := c.ReadBatch(in)
//		if errors.Is(err, net.ErrClosed) {
//			return
//		}
//		k := 0
//		for _, m := range in.Msgs[:n] {
//			// m.Buf[:m.N] came from m.Addr ...
//			out.Msgs[k].SetData(reply, to)
//			k++
//		}
//		c.WriteBatch(out, k)
//	}
//
// ReadBatch and WriteBatch allocate nothing: the mmsghdr, iovec, sockaddr
// and control-message storage belong to the Batch, the callbacks handed
// to syscall.RawConn are bound once per Batch, and addresses are converted
// between sockaddr and netip.AddrPort in place. A goroutine with nothing
// to read is parked in the Go netpoller (the callbacks return false on
// EAGAIN), so idle workers cost no thread and no CPU; Close wakes a
// blocked ReadBatch with an error wrapping net.ErrClosed.
//
// # Kernel drops
//
// Listen enables SO_RXQ_OVFL, so every received datagram carries the
// socket's cumulative drop counter; ReadBatch keeps the latest value, and
// Conn.Drops also reads the live value with getsockopt(SO_MEMINFO). A
// growing Drops means the receive buffer overflowed: raise
// Config.RecvBuffer or add workers.
//
// # SO_REUSEPORT spreads by 4-tuple
//
// With ReusePort, the kernel picks the socket of the group for each
// incoming datagram by a hash of (source address, source port,
// destination address, destination port). The choice depends on nothing
// else, so every datagram of one source lands on the same socket, hence on
// one worker, however busy that source is, while the other workers idle.
// Many sources spread roughly evenly. Measured on loopback with 4 sockets
// in the group (TestReusePortSpreading, go test -run Spreading -v):
//
//	1 source,   256 datagrams: one socket got all 256, the others 0
//	64 sources, 4 datagrams each: see TestReusePortSpreading's log
//
// For a SIP proxy this means one heavy peer (a single SIPp instance, a
// single upstream proxy or SBC sending everything from one port) is capped
// at the throughput of one worker. A design that needs to spread one
// source over several cores must do so above this package (or attach a
// SO_ATTACH_REUSEPORT_CBPF program through Conn.SyscallConn), and must
// then itself keep the messages of one flow in order. The upside of the
// hash is that ordering per source comes for free: one socket, one
// reader, in arrival order.
package udp
